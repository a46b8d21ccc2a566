#!/bin/sh
# Entrypoint of the authban image, as the official nginx image's: when the
# command is nginx, fills in /etc/nginx/templates/*.template into
# /etc/nginx/conf.d/ with envsubst (only variables that are set are
# replaced, so nginx's own $variables stay), checks that the state volume
# is writable by the workers, then runs the command.
#
# AUTHBAN_SYNC=redis://[:PASSWORD@]HOST[:PORT][/DB], when set, shares the
# zones of those files with a fleet of nodes (README: Several nginx nodes):
# it is added as sync=... to every authban_zone directive there that has no
# sync= of its own.
set -eu

me=docker-entrypoint.sh
note() { echo "$me: $*" >&2; }

# add_sync FILE: appends sync=$AUTHBAN_SYNC to each authban_zone directive that begins a line of
# FILE (from its name to the first ';') that has no sync=; prints how many
# it changed. Quoted for nginx when the value holds ; { } # or $.
add_sync() {
    awk -v out="$1.sync" '
    BEGIN { v = ENVIRON["AUTHBAN_SYNC"]; if (v ~ /[;{}#$]/) v = "\"sync=" v "\""; else v = "sync=" v }
    !inz && /^[ \t]*authban_zone([ \t]|$)/ { inz = 1; has = 0 }
    inz {
        if ($0 ~ /(^|[ \t"])sync=/) has = 1
        i = index($0, ";")
        if (i) {
            if (!has) { $0 = substr($0, 1, i - 1) " " v substr($0, i); n++ }
            inz = 0
        }
    }
    { print > out }
    END { print n + 0 }' "$1" && mv "$1.sync" "$1"
}

case "${1:-}" in
nginx | nginx-debug)
    templates=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
    outdir=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
    sync=${AUTHBAN_SYNC:-}
    if [ -n "$sync" ]; then
        if printf '%s' "$sync" | grep -q "[[:space:]\"'\\]"; then
            note "AUTHBAN_SYNC (redis://[:PASSWORD@]HOST[:PORT][/DB]) must not hold spaces, quotes or backslashes"
            exit 1
        fi
    fi
    synced=0
    if [ -d "$templates" ]; then
        # The variables that are set, as envsubst's ${A} ${B} list.
        defined=$(printf '${%s} ' $(awk 'END { for (n in ENVIRON) if (n ~ /^[A-Za-z_][A-Za-z0-9_]*$/) print n }' </dev/null))
        for t in "$templates"/*.template; do
            [ -f "$t" ] || continue
            for v in $(grep -o '\${[A-Z_][A-Z0-9_]*}' "$t" | sort -u | tr -d '${}'); do
                if ! printenv "$v" >/dev/null 2>&1 || [ -z "$(printenv "$v")" ]; then
                    note "$t needs \$$v (e.g. docker run -e $v=...); it is not set"
                    [ "$v" = CLOUDSTACK_UPSTREAM ] &&
                        note "CLOUDSTACK_UPSTREAM is your CloudStack management server, host:port (e.g. 10.0.0.5:8080)"
                    exit 1
                fi
            done
            out=$outdir/$(basename "$t" .template)
            mkdir -p "$outdir"
            envsubst "$defined" <"$t" >"$out"
            if [ ! -f /proc/net/if_inet6 ]; then
                # no IPv6 in this container: drop the IPv6 listen lines
                sed -i '/^[[:space:]]*listen[[:space:]]*\[::\]/d' "$out"
            fi
            note "$out from $t"
            if [ -n "$sync" ]; then
                n=$(add_sync "$out")
                synced=$((synced + n))
                if [ "$n" -gt 0 ]; then
                    note "$out: sync=$(printf '%s' "$sync" | sed 's#^\([a-z]*://\).*@#\1***@#') added to $n authban_zone directive(s)"
                fi
            fi
        done
    fi
    if [ -n "$sync" ] && [ "$synced" -eq 0 ]; then
        note "AUTHBAN_SYNC is set but no authban_zone without sync= was found in $templates/*.template: nothing is shared"
    fi
    state=/var/lib/authban
    if [ -d "$state" ] && [ "$(id -u)" = 0 ] && [ "$(stat -c %U "$state")" != www-data ]; then
        # e.g. a bind mount owned by root: the workers (www-data) write the state.
        note "$state is owned by $(stat -c %U "$state"); giving it to www-data (the nginx workers write the state file)"
        chown www-data:www-data "$state"
    fi
    ;;
esac

exec "$@"
