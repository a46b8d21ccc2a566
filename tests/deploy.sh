#!/usr/bin/env bash
# `make test-deploy` (part of `make test`): authban with the nginx a user
# already has, on Debian 12. As root; needs `make build` (the vendored nginx
# and the mock). Steps:
#
#  1. install Debian's nginx package (its service kept from starting);
#  2. `make module NGINX=/usr/sbin/nginx`, then every integration suite
#     against Debian's binary with that module (AUTHBAN_NGINX/AUTHBAN_MODULE);
#  3. `make install-module NGINX=/usr/sbin/nginx`: files in place, Debian's
#     `nginx -t` of its own nginx.conf loads it; removed again;
#  4. `make module NGINX=build/sbin/nginx` (the vendored-source branch);
#  5. `./configure --add-dynamic-module=<repo> && make modules` in a copy of
#     the vendored source, configured as build/sbin/nginx was: that binary
#     loads the result (`nginx -t`) and the ban suite passes with it;
#  6. `make deb`, `apt-get install ./...deb`, Debian's nginx with the test's
#     own config including /etc/nginx/modules-enabled/*.conf bans
#     (tests/deploy.rs), `apt-get purge`: its files are gone;
#  7. whatever happens: every package installed here purged, policy-rc.d as
#     it was, and a check that the package set is the one we started with.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export DEBIAN_FRONTEND=noninteractive
repo=$PWD

started=$SECONDS
step_start=$SECONDS
step() {
    printf '\n== deploy [%ss, previous step %ss]: %s\n' "$((SECONDS - started))" "$((SECONDS - step_start))" "$*"
    step_start=$SECONDS
}
fail() {
    printf 'deploy test FAILED: %s\n' "$@" >&2
    exit 1
}

[ "$(id -u)" -eq 0 ] || fail "needs root: it installs and purges Debian packages (run make test as root)"
[ -x build/sbin/nginx ] && [ -x build/bin/mock-cloudstack ] || fail "run make build first"

# One deploy test at a time on a machine (other worktrees, other users):
# they share the system's packages.
exec 9>/tmp/authban-deploy-test.lock
flock -w 1800 9 || fail "another deploy test holds /tmp/authban-deploy-test.lock"

if dpkg-query -W -f='${Status}' libnginx-mod-http-authban 2>/dev/null | grep -q 'install ok installed'; then
    fail "libnginx-mod-http-authban is installed on this machine: the test would replace it; remove it first"
fi
[ ! -e /usr/lib/nginx/modules/ngx_http_authban_module.so ] ||
    fail "/usr/lib/nginx/modules/ngx_http_authban_module.so exists (make install-module?): remove it first"

# apt waits for a dpkg lock another apt holds instead of failing.
apt=(apt-get -o DPkg::Lock::Timeout=600 -y -qq)
installed() { dpkg-query -W -f='${Package} ${db:Status-Status}\n' | awk '$2 == "installed" { print $1 }' | sort; }
packages_before=$(installed)
# The packages this test installed (nginx and what it pulled in), purged
# at the end; only those, as others may install packages meanwhile.
ours=()
policy=/usr/sbin/policy-rc.d
policy_saved=""
created_dirs=()

cleanup() {
    local rc=$? p st left
    set +e
    trap - EXIT
    step "cleanup"
    rm -f /etc/nginx/modules-enabled/50-mod-http-authban.conf \
        /usr/share/nginx/modules-available/mod-http-authban.conf \
        /usr/lib/nginx/modules/ngx_http_authban_module.so 2>/dev/null
    for ((i = ${#created_dirs[@]} - 1; i >= 0; i--)); do rmdir "${created_dirs[i]}" 2>/dev/null; done
    if ((${#ours[@]} == 0)); then
        # failed while installing: everything new is ours
        mapfile -t ours < <(comm -13 <(printf '%s\n' "$packages_before") <(installed))
    fi
    ours+=(libnginx-mod-http-authban)
    left=()
    for p in "${ours[@]}"; do
        st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)
        [ -n "$st" ] && [ "$st" != not-installed ] && left+=("$p")
    done
    if ((${#left[@]})); then
        echo "purging what this test installed: ${left[*]}"
        "${apt[@]}" purge "${left[@]}" >/dev/null || rc=1
    fi
    if [ -n "$policy_saved" ]; then
        mv -f "$policy_saved" "$policy"
    else
        rm -f "$policy"
    fi
    for p in "${ours[@]}"; do
        if dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qv '^not-installed$'; then
            echo "deploy test: $p is still on the machine" >&2
            rc=1
        fi
    done
    for p in $(pgrep -x nginx); do
        case "$(readlink "/proc/$p/exe")" in
        /usr/sbin/nginx*)
            echo "deploy test: Debian's nginx is running (pid $p): was its service started?" >&2
            rc=1
            ;;
        esac
    done
    echo "deploy test: $([ "$rc" -eq 0 ] && echo passed || echo FAILED) in $((SECONDS - started))s"
    exit "$rc"
}
trap cleanup EXIT

# ---- 1. Debian's nginx ---------------------------------------------------
step "install Debian's nginx (service start denied by policy-rc.d)"
if [ -e "$policy" ]; then
    policy_saved=$policy.authban-saved
    mv -f "$policy" "$policy_saved"
fi
printf '#!/bin/sh\n# authban tests/deploy.sh: no service starts while it runs\nexit 101\n' >"$policy"
chmod 755 "$policy"
if ! apt-cache policy nginx 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    "${apt[@]}" update
fi
# `nginx` is the binary in Debian 12 (nginx-light/-core only add modules);
# it has realip, proxy, auth_request, addition, ssi and mirror.
"${apt[@]}" install --no-install-recommends nginx >/dev/null
mapfile -t ours < <(comm -13 <(printf '%s\n' "$packages_before") <(installed))
echo "installed: ${ours[*]}"
[ -x /usr/sbin/nginx ] || fail "no /usr/sbin/nginx after installing nginx"
/usr/sbin/nginx -v

# ---- 2. make module, the suites against Debian's nginx -------------------
step "make module NGINX=/usr/sbin/nginx"
make --no-print-directory module NGINX=/usr/sbin/nginx
debian_version=$(/usr/sbin/nginx -v 2>&1 | sed 's|.*/||')
debian_module=$repo/build/nginx-$debian_version/ngx_http_authban_module.so
[ -f "$debian_module" ] || fail "make module left no $debian_module"

step "integration suites against Debian's nginx $debian_version with that module"
AUTHBAN_NGINX=/usr/sbin/nginx AUTHBAN_MODULE=$debian_module \
    timeout 900 cargo test --release --test '*' -- --test-threads=4

# ---- 3. make install-module ------------------------------------------------
step "make install-module NGINX=/usr/sbin/nginx"
for d in /usr/lib/nginx /usr/lib/nginx/modules /usr/share/nginx/modules-available; do
    [ -d "$d" ] || created_dirs+=("$d")
done
make --no-print-directory install-module NGINX=/usr/sbin/nginx
cmp /usr/lib/nginx/modules/ngx_http_authban_module.so "$debian_module"
[ "$(readlink /etc/nginx/modules-enabled/50-mod-http-authban.conf)" = \
    /usr/share/nginx/modules-available/mod-http-authban.conf ] || fail "no modules-enabled link"
# nginx -t creates the (empty) pid file of nginx.conf to check its path.
pid_existed=$([ -e /run/nginx.pid ] && echo yes || true)
out=$(/usr/sbin/nginx -t -c /etc/nginx/nginx.conf 2>&1) || fail "Debian's nginx -t with the installed module:" "$out"
echo "$out"
[ -n "$pid_existed" ] || rm -f /run/nginx.pid
rm -f /etc/nginx/modules-enabled/50-mod-http-authban.conf \
    /usr/share/nginx/modules-available/mod-http-authban.conf \
    /usr/lib/nginx/modules/ngx_http_authban_module.so
for ((i = ${#created_dirs[@]} - 1; i >= 0; i--)); do rmdir "${created_dirs[i]}"; done
created_dirs=()

# ---- 4. make module for the vendored version -------------------------------
step "make module NGINX=build/sbin/nginx (vendored source)"
make --no-print-directory module NGINX=build/sbin/nginx
vendored_version=$(build/sbin/nginx -v 2>&1 | sed 's|.*/||')
[ -f "build/nginx-$vendored_version/ngx_http_authban_module.so" ] || fail "no module for the vendored nginx"

# ---- 5. ./configure --add-dynamic-module -----------------------------------
step "./configure --add-dynamic-module=$repo && make modules (vendored nginx $vendored_version source)"
# The source tree module.sh copied for step 4 is the vendored one.
vend=$(cargo metadata --format-version 1 2>/dev/null |
    grep -o '"manifest_path":"[^"]*/nginx-src-[^"]*/Cargo.toml"' | head -n 1 |
    sed 's/^"manifest_path":"//; s/"$//')
vend=$(dirname "$vend")/nginx
[ -f "$vend/src/core/nginx.h" ] || fail "vendored nginx source not found"
mapfile -t vargs < <(build/sbin/nginx -V 2>&1 | sed -n 's/^configure arguments: //p' | xargs -n 1 printf '%s\n')
cargs=()
for a in "${vargs[@]}"; do case "$a" in --builddir=*) ;; *) cargs+=("$a") ;; esac; done
cargs+=("--add-dynamic-module=$repo")
tree=$repo/target/deploy/configure-$vendored_version/nginx
stamp=$(printf '%s\n' "$vend" "${cargs[@]}"; cat config config.make)
if [ "$(cat "$tree/.authban-configured" 2>/dev/null)" != "$stamp" ] || [ ! -f "$tree/objs/Makefile" ]; then
    rm -rf "$tree"
    mkdir -p "$(dirname "$tree")"
    cp -a "$vend" "$tree"
    rm -f "$tree/Makefile"
    echo "(cd $tree && auto/configure ${cargs[*]})"
    (cd "$tree" && auto/configure "${cargs[@]}") >"$tree/../configure.log" 2>&1 ||
        { tail -n 20 "$tree/../configure.log"; fail "configure failed"; }
    printf '%s\n' "$stamp" >"$tree/.authban-configured"
fi
make -C "$tree" -j2 modules
so=$tree/objs/ngx_http_authban_module.so
[ -f "$so" ] || fail "make modules left no $so"
check=$(mktemp -d)
printf 'load_module "%s";\npid "%s/nginx.pid";\nevents {}\nhttp { authban_zone zone=z:1m; }\n' "$so" "$check" >"$check/nginx.conf"
build/sbin/nginx -t -p "$check/" -c "$check/nginx.conf" -e "$check/error.log"
rm -rf "$check"
AUTHBAN_MODULE=$so timeout 300 cargo test --release --test ban -- --test-threads=4

# ---- 6. the Debian package -----------------------------------------------------
step "make deb"
make --no-print-directory deb
deb=$(ls build/deb/libnginx-mod-http-authban_*.deb)
abi=$(dpkg-query -W -f='${Provides}' nginx | tr ',' '\n' | grep -o 'nginx-abi-[^ ]*')
dpkg-deb -f "$deb" Depends | grep -q "^$abi, " || fail "$deb does not depend on $abi first"

step "apt-get install ./$deb, Debian's nginx through modules-enabled, purge"
"${apt[@]}" install "./$deb" >/dev/null
dpkg -L libnginx-mod-http-authban
[ -L /etc/nginx/modules-enabled/50-mod-http-authban.conf ] || fail "postinst made no modules-enabled link"
AUTHBAN_NGINX=/usr/sbin/nginx timeout 300 cargo test --release --test deploy -- --ignored --test-threads=1
"${apt[@]}" purge libnginx-mod-http-authban >/dev/null
for f in /etc/nginx/modules-enabled/50-mod-http-authban.conf \
    /etc/nginx/modules-enabled/50-mod-http-authban.conf.removed \
    /usr/share/nginx/modules-available/mod-http-authban.conf \
    /usr/lib/nginx/modules/ngx_http_authban_module.so; do
    [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f left after purge"
done
! dpkg-query -W libnginx-mod-http-authban >/dev/null 2>&1 || fail "package still known to dpkg after purge"
