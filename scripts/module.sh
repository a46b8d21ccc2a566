#!/usr/bin/env bash
# `make module NGINX=/path/to/nginx`: builds authban for an nginx binary that
# is already there (a distribution's, nginx.org's, a container's), and
# `make install-module NGINX=...` installs it the way the distribution does.
#
#   scripts/module.sh build   [NGINX]   -> build/nginx-VERSION/ngx_http_authban_module.so
#   scripts/module.sh install [NGINX]   build, then copy into the modules path
#
# A dynamic module loads only into the nginx version it was built for, and
# only if both were configured --with-compat (or with identical options). So:
# read `nginx -V`, refuse a binary without --with-compat, find the source the
# binary was built from (the distribution's source package when the binary
# belongs to one; the vendored nginx-src crate when the version matches;
# else NGINX_SOURCE_DIR=), configure a copy of it with the binary's own
# arguments (without its other dynamic modules), and let nginx-sys generate
# the bindings from that tree (NGINX_BUILD_DIR) instead of vendoring.
#
# Environment: NGINX_SOURCE_DIR (source tree of exactly that version, taken
# as is), AUTHBAN_DEB_SOURCE=srcpkg=version (the Debian source package of a
# binary dpkg does not know, e.g. one unpacked from a .deb; used by deb.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
repo=$PWD

die() { # first argument: the message; the others: lines of explanation
    printf 'authban: %s\n' "$1" >&2
    shift
    if (($#)); then printf '  %s\n' "$@" >&2; fi
    exit 1
}
note() { printf 'authban: %s\n' "$*" >&2; }

action=${1:-build}
case "$action" in build | install) ;; *) die "usage: $0 build|install [/path/to/nginx]" ;; esac
nginx=${2:-${NGINX:-}}
if [ -z "$nginx" ]; then
    nginx=$(command -v nginx || true)
    [ -n "$nginx" ] || die "which nginx? Run: make module NGINX=/path/to/nginx"
    note "NGINX not given, using $nginx"
fi
[ -x "$nginx" ] || nginx=$(command -v "$nginx" || true)
[ -n "$nginx" ] && [ -x "$nginx" ] || die "${2:-${NGINX:-}}: not an executable nginx binary"
nginx=$(readlink -f "$nginx")

# ---- what the binary is -------------------------------------------------
nginx_v=$("$nginx" -V 2>&1) || die "$nginx -V failed:" "$nginx_v"
version=$(sed -n 's|^nginx version: [^/]*/\([0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*\).*|\1|p' <<<"$nginx_v")
[ -n "$version" ] || die "cannot read the version from \`$nginx -V\`:" "$nginx_v"
configure_line=$(sed -n 's/^configure arguments: //p' <<<"$nginx_v")
# The arguments as configure got them (nginx -V prints them shell-quoted).
orig_args=()
if [ -n "$configure_line" ]; then
    mapfile -t orig_args < <(xargs -n 1 printf '%s\n' <<<"$configure_line")
fi

if [ "$(printf '%s\n' 1.22.0 "$version" | sort -V | head -n 1)" != 1.22.0 ]; then
    die "$nginx is nginx $version; authban supports nginx 1.22.0 and later."
fi

has_arg() {
    local a
    for a in "${orig_args[@]}"; do [ "$a" = "$1" ] && return 0; done
    return 1
}
arg_value() { # arg_value --prefix  -> value of --prefix=..., or nothing
    local a
    for a in "${orig_args[@]}"; do
        case "$a" in "$1"=*) printf '%s\n' "${a#*=}" ;; esac
    done | tail -n 1
}

if ! has_arg --with-compat; then
    die "$nginx (nginx $version) was built without --with-compat: refusing." \
        "Without --with-compat, nginx accepts only modules built with its exact configure" \
        "arguments from its exact source, which cannot be checked from here: a module built" \
        "separately may be refused, or load with structures that do not match. Either" \
        "- use an nginx built --with-compat: Debian's and Ubuntu's nginx packages, nginx.org's" \
        "  packages and the official nginx Docker images all are; or" \
        "- build nginx and authban together from your nginx's source, then install that nginx:" \
        "    ./configure <the arguments \`$nginx -V\` shows> --add-dynamic-module=$repo" \
        "    make && make install" \
        "  (README.md, \"Install\"); adding --with-compat there lets make module serve later."
fi

prefix=$(arg_value --prefix)
prefix=${prefix:-/usr/local/nginx}
modules_path=$(arg_value --modules-path)
modules_path=${modules_path:-$prefix/modules}
case "$modules_path" in /*) ;; *) modules_path=$prefix/$modules_path ;; esac
conf_path=$(arg_value --conf-path)
conf_path=${conf_path:-conf/nginx.conf}
case "$conf_path" in /*) ;; *) conf_path=$prefix/$conf_path ;; esac

# ---- the configure arguments for the module build -----------------------
args=()
dropped=()
for a in "${orig_args[@]}"; do
    case "$a" in
    --add-dynamic-module=* | --with-*=dynamic | --builddir=*)
        # other dynamic modules are separate files: not needed, and their
        # sources and libraries are not here.
        dropped+=("$a")
        ;;
    --add-module=*)
        # a static third-party module: part of the binary, not of the
        # module interface (the version and signature checks still apply).
        dropped+=("$a")
        ;;
    --with-openssl=* | --with-pcre=* | --with-zlib=* | --with-libatomic=*)
        # library sources the binary was built with: use them if they are
        # here, else the system's headers (nginx keeps only pointers to
        # their objects in the structures a module sees).
        if [ -d "${a#*=}" ]; then args+=("$a"); else dropped+=("$a"); fi
        ;;
    *) args+=("$a") ;;
    esac
done
# A binary linked with the old PCRE must not get PCRE2 structures.
if ldd "$nginx" 2>/dev/null | grep -q 'libpcre\.so' && ! ldd "$nginx" | grep -q 'libpcre2-8'; then
    has_arg --without-pcre2 || args+=(--without-pcre2)
fi

# ---- the source ----------------------------------------------------------
work=$repo/target/nginx-$version
out=$repo/build/nginx-$version
mkdir -p "$work" "$out"

source_version() { # the NGINX_VERSION of a source tree
    sed -n 's/^#define NGINX_VERSION *"\([^"]*\)".*/\1/p' "$1/src/core/nginx.h" 2>/dev/null
}

vendored_source() {
    local manifest
    manifest=$(cargo metadata --format-version 1 --manifest-path "$repo/Cargo.toml" 2>/dev/null |
        grep -o '"manifest_path":"[^"]*/nginx-src-[^"]*/Cargo.toml"' | head -n 1 |
        sed 's/^"manifest_path":"//; s/"$//') || true
    [ -n "$manifest" ] && [ -f "$(dirname "$manifest")/nginx/src/core/nginx.h" ] &&
        printf '%s\n' "$(dirname "$manifest")/nginx"
}

# apt_src_init PKG: decides how to reach source packages. If the system's apt
# knows PKG's sources (deb-src configured), it is used as is; otherwise a
# private configuration in $work/apt mirrors the system's deb entries as
# deb-src, and /etc/apt is left untouched.
apt_src_init() {
    apt_mode=system
    apt-cache showsrc "$1" 2>/dev/null | grep -q '^Version:' && return
    apt_mode=private
    local conf=$work/apt f
    rm -rf "$conf"
    mkdir -p "$conf/sources.list.d" "$conf/lists/partial"
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        sed -n 's/^[[:space:]]*deb[[:space:]]/deb-src /p' "$f"
    done >"$conf/sources.list.d/deb-src.list"
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        sed 's/^Types:.*/Types: deb-src/' "$f" >"$conf/sources.list.d/$(basename "$f")"
    done
    note "fetching the source package index (deb-src of your apt sources, in $conf)"
    apt_src apt-get update -qq >/dev/null 2>"$conf/update.log" || true
}
# apt_src apt-get|apt-cache ARGS...
apt_src() {
    if [ "$apt_mode" = system ]; then
        "$@"
        return
    fi
    local conf=$work/apt
    "$1" -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts="$conf/sources.list.d" \
        -o Dir::State::Lists="$conf/lists" -o Dir::Cache::pkgcache="" -o Dir::Cache::srcpkgcache="" \
        -o APT::Sandbox::User=root "${@:2}"
}

# Fetches and unpacks Debian source package $1 at version $2 (the binary's),
# or the nearest revision of the same upstream version when the archive no
# longer (or not yet) serves that one; prints the unpacked directory.
debian_source() {
    local pkg=$1 want=$2 dir=$work/debian-source upstream v got=""
    upstream=${want#*:}
    upstream=${upstream%-*}
    if [ -f "$dir/.authban-source" ] && [ "$(head -n 1 "$dir/.authban-source")" = "$pkg=$want" ]; then
        sed -n 2p "$dir/.authban-source"
        return
    fi
    rm -rf "$dir"
    mkdir -p "$dir"
    local versions
    apt_src_init "$pkg"
    versions=$(apt_src apt-cache showsrc "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | sort -u) || true
    local candidates=("$want")
    while read -r v; do
        [ -n "$v" ] && [ "$v" != "$want" ] || continue
        local u=${v#*:}
        [ "${u%-*}" = "$upstream" ] && candidates+=("$v")
    done < <(printf '%s\n' "$versions" | sort -r -V)
    for v in "${candidates[@]}"; do
        rm -rf "$dir/unpack"
        mkdir -p "$dir/unpack"
        if (cd "$dir/unpack" && apt_src apt-get source -qq --only-source "$pkg=$v") >"$dir/apt-source-$v.log" 2>&1 &&
            [ -f "$dir/unpack/$pkg-$upstream/src/core/nginx.h" ]; then
            got=$v
            break
        fi
        # keep a downloaded upstream tarball: the last resort below.
        cp -n "$dir"/unpack/*.orig.tar.* "$dir/" 2>/dev/null || true
    done
    local src desc
    if [ -n "$got" ]; then
        src=$dir/unpack/$pkg-$upstream
        desc="Debian source package $pkg $got"
        if [ "$got" != "$want" ]; then
            desc="$desc ($want, the binary's, is not served by your apt sources; the nearest revision)"
        fi
    else
        local orig
        orig=$(ls "$dir"/*.orig.tar.* 2>/dev/null | head -n 1) || true
        if [ -z "$orig" ]; then
            note "cannot fetch the source of Debian package $pkg $want from your apt sources (logs in $dir)"
            return 1
        fi
        mkdir -p "$dir/orig"
        tar -xf "$orig" -C "$dir/orig"
        src=$(dirname "$(ls -d "$dir"/orig/*/src/core/nginx.h | head -n 1)")
        src=${src%/src/core}
        desc="$(basename "$orig") WITHOUT Debian's patches (no revision of $pkg $upstream could be unpacked from your apt sources; logs in $dir)"
    fi
    printf '%s\n%s\n%s\n' "$pkg=$want" "$src" "$desc" >"$dir/.authban-source"
    printf '%s\n' "$src"
}

# Which source: NGINX_SOURCE_DIR if given; else, for a binary from a Debian
# package, that package's source (with the distribution's patches, which
# may change structures); else, or if that cannot be had, the vendored
# source when it is the same version.
source_dir=""
source_desc=""
vend=$(vendored_source) || true
vend_version=$([ -n "$vend" ] && source_version "$vend" || true)
deb_pkg=""
if [ -n "${NGINX_SOURCE_DIR:-}" ]; then
    source_dir=$(readlink -f "$NGINX_SOURCE_DIR")
    source_desc="NGINX_SOURCE_DIR=$NGINX_SOURCE_DIR"
elif [ -n "${AUTHBAN_DEB_SOURCE:-}" ]; then
    deb_pkg=${AUTHBAN_DEB_SOURCE%%=*}
    deb_ver=${AUTHBAN_DEB_SOURCE#*=}
elif command -v dpkg-query >/dev/null && owner=$(dpkg -S "$nginx" 2>/dev/null | head -n 1 | cut -d: -f1) &&
    [ -n "$owner" ]; then
    deb_pkg=$(dpkg-query -W -f='${source:Package}' "$owner")
    deb_ver=$(dpkg-query -W -f='${source:Version}' "$owner")
    note "$nginx belongs to Debian package $owner $(dpkg-query -W -f='${Version}' "$owner") (source $deb_pkg $deb_ver)"
fi
if [ -n "$deb_pkg" ]; then
    command -v dpkg-source >/dev/null || die "dpkg-source is missing: apt-get install dpkg-dev"
    if source_dir=$(debian_source "$deb_pkg" "$deb_ver"); then
        source_desc=$(sed -n 3p "$work/debian-source/.authban-source")
    elif [ "$vend_version" = "$version" ]; then
        source_dir=$vend
        source_desc="the vendored nginx-src crate (the source of $deb_pkg $deb_ver could not be fetched)"
    else
        die "cannot fetch the source of Debian package $deb_pkg $deb_ver (logs in $work/debian-source):" \
            "download it (apt-get source $deb_pkg=$deb_ver) and run again with" \
            "NGINX_SOURCE_DIR=/path/to/the/unpacked/source"
    fi
elif [ -z "$source_dir" ] && [ "$vend_version" = "$version" ]; then
    source_dir=$vend
    source_desc="the vendored nginx-src crate"
elif [ -z "$source_dir" ]; then
    die "no source for nginx $version: give it with NGINX_SOURCE_DIR=." \
        "A module must be built against the headers of the source the binary was built from;" \
        "$nginx is not the vendored version (nginx ${vend_version:-?}) and dpkg does not know it." \
        "Download nginx-$version (https://nginx.org/download/nginx-$version.tar.gz, plus the" \
        "patches your vendor applied, if any), unpack it and run:" \
        "  make module NGINX=$nginx NGINX_SOURCE_DIR=/path/to/nginx-$version"
fi
[ -f "$source_dir/src/core/nginx.h" ] || die "$source_dir is not an nginx source tree (no src/core/nginx.h)"
src_version=$(source_version "$source_dir")
[ "$src_version" = "$version" ] ||
    die "$source_dir is nginx $src_version, but $nginx is nginx $version: they must be the same version"

# ---- configure a copy of the source with the binary's arguments ---------
tree=$work/nginx
stamp=$(printf '%s\n' "$source_dir" "${args[@]}")
if [ -f "$tree/objs/ngx_auto_config.h" ] && [ -f "$tree/objs/Makefile" ] &&
    [ "$(cat "$tree/.authban-configured" 2>/dev/null)" = "$stamp" ]; then
    note "using $tree, configured earlier with the same arguments"
else
    note "configuring nginx $version ($source_desc) in $tree"
    ((${#dropped[@]})) && note "left out of configure: ${dropped[*]}"
    rm -rf "$tree"
    cp -a "$source_dir" "$tree"
    rm -rf "$tree/objs" "$tree/Makefile"
    configure=./configure
    [ -x "$tree/configure" ] || configure=auto/configure
    if ! (cd "$tree" && "$configure" "${args[@]}") >"$work/configure.log" 2>&1; then
        tail -n 15 "$work/configure.log" >&2
        die "configure failed (full log: $work/configure.log). A missing library?" \
            "Install its -dev package (e.g. libpcre2-dev, libssl-dev, zlib1g-dev) and run again."
    fi
    printf '%s\n' "$stamp" >"$tree/.authban-configured"
fi

# ---- build: bindings from that tree, a target dir per nginx version -----
note "building the module against $tree/objs (cargo target dir $work)"
NGINX_SOURCE_DIR=$tree NGINX_BUILD_DIR=$tree/objs CARGO_TARGET_DIR=$work \
    cargo build --release --package authban --lib
module=$out/ngx_http_authban_module.so
install -m 644 "$work/release/libauthban.so" "$module"

# ---- check that this binary loads it ------------------------------------
check=$(mktemp -d)
trap 'rm -rf "$check"' EXIT
{
    printf 'load_module "%s";\n' "$module"
    printf 'pid "%s/nginx.pid";\nerror_log "%s/error.log";\n' "$check" "$check"
    printf 'events {}\nhttp {\n'
    for t in client_body proxy fastcgi uwsgi scgi; do
        has_arg "--without-http_${t}_module" || printf '    %s_temp_path "%s/%s";\n' "$t" "$check" "$t"
    done
    printf '    authban_zone zone=loadcheck:1m;\n}\n'
} >"$check/nginx.conf"
if ! out_t=$("$nginx" -t -p "$check/" -c "$check/nginx.conf" -e "$check/error.log" 2>&1); then
    printf '%s\n' "$out_t" >&2
    die "$nginx does not load $module (above); please report this with the output of $nginx -V"
fi

# What deb.sh (and anyone scripting) needs to know, in shell syntax.
{
    echo "# written by scripts/module.sh for $nginx"
    for v in nginx version prefix modules_path conf_path module source_desc; do
        printf '%s=%q\n' "$v" "${!v}"
    done
} >"$out/module.env"

# The load_module line, with an absolute path: a relative one is resolved
# against the prefix, which `nginx -p` changes.
load_line="load_module $modules_path/ngx_http_authban_module.so;"
conf_dir=$(dirname "$conf_path")

if [ "$action" = build ]; then
    [ -n "${AUTHBAN_QUIET:-}" ] && exit 0
    rel=${module#"$repo"/}
    cat <<MSG

authban: built $rel
  for $nginx (nginx $version, from $source_desc); $nginx -t loads it.

Install it into the binary's modules path ($modules_path):
    install -m 644 $rel $modules_path/
and load it at the top of $conf_path (outside any block):
    $load_line
or let \`make install-module NGINX=$nginx\` do both.
MSG
    exit 0
fi

# ---- install ----------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || die "installing into $modules_path needs root: sudo make install-module NGINX=$nginx"
target=$modules_path/ngx_http_authban_module.so
if owner=$(dpkg -S "$target" 2>/dev/null | cut -d: -f1) && [ -n "$owner" ]; then
    die "$target belongs to the package $owner: upgrade or remove it with apt, not make install-module"
fi
mkdir -p "$modules_path"
install -m 644 "$module" "$target"
echo "installed $target"
if [ -d "$conf_dir/modules-enabled" ]; then
    # Debian/Ubuntu: nginx.conf includes modules-enabled/*.conf; modules
    # ship their load_module line in modules-available and are enabled by
    # a symbolic link, which `rm` disables (what libnginx-mod-* do).
    avail=/usr/share/nginx/modules-available
    mkdir -p "$avail"
    printf '%s\n' "$load_line" >"$avail/mod-http-authban.conf"
    ln -sfn "$avail/mod-http-authban.conf" "$conf_dir/modules-enabled/50-mod-http-authban.conf"
    echo "installed $avail/mod-http-authban.conf, enabled by $conf_dir/modules-enabled/50-mod-http-authban.conf"
    grep -qs 'modules-enabled' "$conf_path" ||
        echo "note: $conf_path does not include modules-enabled/*.conf; add: $load_line"
else
    echo "now add at the top of $conf_path (outside any block):"
    echo "    $load_line"
fi
echo "then: $nginx -t && reload nginx (systemctl reload nginx, or $nginx -s reload)"
