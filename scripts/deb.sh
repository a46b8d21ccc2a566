#!/usr/bin/env bash
# `make deb`: the Debian package libnginx-mod-http-authban for Debian's own
# nginx, built against its exact version, laid out like Debian's
# libnginx-mod-* packages:
#
#   /usr/lib/nginx/modules/ngx_http_authban_module.so
#   /usr/share/nginx/modules-available/mod-http-authban.conf  (load_module line)
#   /etc/nginx/modules-enabled/50-mod-http-authban.conf -> ... (made by postinst,
#        disabled on remove, deleted on purge)
#
# Depends: the nginx-abi-* virtual package the nginx package Provides (read
# from it, never guessed), so apt refuses the module with another nginx.
#
# The nginx it is built for: NGINX=/path (a binary from a Debian package),
# else the installed /usr/sbin/nginx, else the `nginx` package apt would
# install, downloaded and unpacked under target/ (not installed).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
repo=$PWD

die() {
    printf 'authban deb: %s\n' "$@" >&2
    exit 1
}
note() { printf 'authban deb: %s\n' "$*" >&2; }

command -v dpkg-deb >/dev/null || die "dpkg-deb is missing (a Debian or Ubuntu system is needed)"
arch=$(dpkg --print-architecture)
name=libnginx-mod-http-authban
conf_name=mod-http-authban.conf
link_name=50-$conf_name

# ---- which nginx, which package, which ABI -------------------------------
nginx=${1:-${NGINX:-}}
deb_source=""
if [ -z "$nginx" ] && [ -x /usr/sbin/nginx ] && dpkg -S /usr/sbin/nginx >/dev/null 2>&1; then
    nginx=/usr/sbin/nginx
fi
if [ -n "$nginx" ]; then
    nginx=$(readlink -f "$nginx")
    owner=$(dpkg -S "$nginx" 2>/dev/null | head -n 1 | cut -d: -f1) ||
        die "$nginx does not belong to a Debian package: make deb is for Debian's nginx" \
            "(for another nginx: make install-module NGINX=$nginx)"
    pkg_version=$(dpkg-query -W -f='${Version}' "$owner")
    provides=$(dpkg-query -W -f='${Provides}' "$owner")
    note "for $nginx, from the installed package $owner $pkg_version"
else
    # Not installed: take the package apt would install, without installing it.
    owner=nginx
    pkg_version=$(apt-cache policy "$owner" 2>/dev/null | sed -n 's/^ *Candidate: //p')
    [ -n "$pkg_version" ] && [ "$pkg_version" != "(none)" ] ||
        die "apt knows no package $owner (apt-get update?)"
    provides=$(apt-cache show "$owner=$pkg_version" | sed -n 's/^Provides: //p' | head -n 1)
    dl=$repo/target/deb/$owner-$pkg_version
    if [ ! -x "$dl/root/usr/sbin/nginx" ]; then
        rm -rf "$dl"
        mkdir -p "$dl/root"
        (cd "$dl" && apt-get download -o APT::Sandbox::User=root "$owner=$pkg_version" >/dev/null) ||
            die "cannot download $owner $pkg_version"
        dpkg-deb -x "$dl"/*.deb "$dl/root"
    fi
    nginx=$dl/root/usr/sbin/nginx
    [ -x "$nginx" ] || die "the package $owner $pkg_version has no /usr/sbin/nginx"
    deb_source=$(apt-cache show "$owner=$pkg_version" | sed -n 's/^Source: //p' | head -n 1)
    deb_source=${deb_source%% *}
    export AUTHBAN_DEB_SOURCE="${deb_source:-$owner}=$pkg_version"
    note "for $owner $pkg_version (not installed: unpacked in $dl)"
fi
abi=$(tr ',' '\n' <<<"$provides" | sed -n 's/^ *\(nginx-abi-[^ ]*\).*/\1/p' | head -n 1)
[ -n "$abi" ] || die "$owner $pkg_version provides no nginx-abi-* package (Provides: ${provides:-none});" \
    "without it the package could not require the nginx it was built for"

# ---- the module -------------------------------------------------------------
AUTHBAN_QUIET=1 scripts/module.sh build "$nginx"
version=""
# shellcheck source=/dev/null
. "$repo/build/nginx-$("$nginx" -v 2>&1 | sed -n 's|.*/\([0-9.]*\).*|\1|p')/module.env"
[ -f "$module" ] || die "module.sh left no module"

# ---- the package tree -------------------------------------------------------
crate_version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
deb_version="$crate_version-1+nginx$version"
stage=$repo/target/deb/stage
rm -rf "$stage"
mods=$stage$modules_path
mkdir -p "$mods" "$stage/usr/share/nginx/modules-available" "$stage/usr/share/doc/$name" "$stage/DEBIAN"
# stripped, as dh_strip does for Debian's modules
strip --strip-unneeded -o "$mods/ngx_http_authban_module.so" "$module"
chmod 644 "$mods/ngx_http_authban_module.so"
# An absolute path (Debian's own mod-*.conf say modules/..., relative to the
# prefix, which `nginx -p` changes).
echo "load_module $modules_path/ngx_http_authban_module.so;" >"$stage/usr/share/nginx/modules-available/$conf_name"
cat >"$stage/usr/share/doc/$name/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: authban

Files: *
License: Apache-2.0
 On Debian systems, the complete text of the Apache License, Version 2.0,
 can be found in "/usr/share/common-licenses/Apache-2.0".
EOF

# Shared-library dependencies, as dh_shlibdeps computes them (the nginx
# symbols the module uses come from the nginx binary: not a library).
shlibs=$(
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mkdir -p "$tmp/debian"
    printf 'Source: authban\n\nPackage: %s\nArchitecture: any\n' "$name" >"$tmp/debian/control"
    cd "$tmp" && dpkg-shlibdeps -O --warnings=0 "$mods/ngx_http_authban_module.so" 2>/dev/null |
        sed -n 's/^shlibs:Depends=//p'
) || true
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no library dependencies (is dpkg-dev installed?)"

cat >"$stage/DEBIAN/control" <<EOF
Package: $name
Source: authban
Version: $deb_version
Architecture: $arch
Maintainer: authban developers <dev@authban.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: $abi, $shlibs
Recommends: nginx
Section: httpd
Priority: optional
Description: nginx module banning clients after repeated failed responses
 authban counts failed responses (HTTP 401, CloudStack's 531, ...) per
 client address in nginx shared memory, bans an address at the failure that
 crosses the limit and refuses it before any other access check: fail2ban
 inside nginx, without log parsing.
 .
 Built for nginx $version ($owner $pkg_version, $abi).
EOF

# Maintainer scripts: what dh_nginx generates for Debian's libnginx-mod-*
# packages. The modules-enabled link is made on a fresh install (and on a
# reinstall after a remove, unless the admin deleted it), renamed .removed
# on remove and deleted on purge; nginx-common's nginx-reload trigger
# reloads a running nginx.
cat >"$stage/DEBIAN/postinst" <<EOF
#!/bin/sh
set -e
from=$conf_name
to=$link_name
if [ -L /etc/nginx/modules-enabled/\$to.removed ]; then
	rm /etc/nginx/modules-enabled/\$to.removed
	removed_link=true
else
	removed_link=false
fi
if [ -z "\$2" ] || [ "\$removed_link" = true ]; then
	ln -sf /usr/share/nginx/modules-available/\$from /etc/nginx/modules-enabled/\$to
fi
if [ "\$1" = configure ] && command -v dpkg-trigger >/dev/null 2>&1; then
	dpkg-trigger --no-await nginx-reload
fi
EOF
cat >"$stage/DEBIAN/prerm" <<EOF
#!/bin/sh
set -e
to=$link_name
if [ "\$1" = remove ] || [ "\$1" = deconfigure ]; then
	if [ -L /etc/nginx/modules-enabled/\$to ]; then
		mv /etc/nginx/modules-enabled/\$to /etc/nginx/modules-enabled/\$to.removed
	fi
fi
EOF
cat >"$stage/DEBIAN/postrm" <<EOF
#!/bin/sh
set -e
to=$link_name
if [ "\$1" = purge ]; then
	rm -f /etc/nginx/modules-enabled/\$to /etc/nginx/modules-enabled/\$to.removed
fi
if [ "\$1" = remove ]; then
	if command -v dpkg-trigger >/dev/null 2>&1; then
		dpkg-trigger --no-await nginx-reload
	fi
fi
EOF
chmod 755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) >"$stage/DEBIAN/md5sums"

mkdir -p build/deb
deb=build/deb/${name}_${deb_version}_$arch.deb
rm -f build/deb/"${name}"_*.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
cat <<MSG

authban deb: built $deb
  for nginx $version ($owner $pkg_version); Depends: $abi, $shlibs
Install it with:   apt-get install ./$deb
(then: nginx -t && systemctl reload nginx). Remove with apt-get purge $name.
MSG
