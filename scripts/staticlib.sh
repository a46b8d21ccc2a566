#!/bin/sh
# Used by the Makefile rules of config.make: turns the static library cargo
# built from the authban crate into one nginx's own module build can link.
#
#   scripts/staticlib.sh IN.a OUT.a
#
# - nginx generates its own ngx_modules, ngx_module_names and
#   ngx_module_order (objs/ngx_http_authban_module_modules.c, or
#   objs/ngx_modules.c with --add-module); the crate's, meant for its cdylib
#   build, are made local so they do not clash.
# - that generated file refers to the module as `ngx_http_authban_module`;
#   the crate's static has a Rust (mangled) name unless it is #[no_mangle],
#   so it is given the C name.
# OUT is replaced only when it changes, so make does not relink for nothing.
set -eu
in=$1
out=$2

syms=$(nm --defined-only "$in" 2>/dev/null | awk '{ print $NF }' | sort -u)
rename=
if ! printf '%s\n' "$syms" | grep -qx 'ngx_http_authban_module'; then
    mangled=$(printf '%s\n' "$syms" | grep -E '^_ZN.*23ngx_http_authban_module17h[0-9a-f]{16}E$' || true)
    if [ "$(printf '%s\n' "$mangled" | grep -c .)" != 1 ]; then
        echo "authban: cannot find the static ngx_http_authban_module in $in" >&2
        exit 1
    fi
    rename="--redefine-sym $mangled=ngx_http_authban_module"
fi

# shellcheck disable=SC2086 # $rename is two words or none
objcopy --localize-symbol=ngx_modules --localize-symbol=ngx_module_names \
    --localize-symbol=ngx_module_order $rename "$in" "$out.tmp"
if cmp -s "$out.tmp" "$out"; then
    rm -f "$out.tmp"
else
    mv -f "$out.tmp" "$out"
fi
