#!/bin/sh
# Entrypoint of the authban image, as the official nginx image's: when the
# command is nginx, fills in /etc/nginx/templates/*.template into
# /etc/nginx/conf.d/ with envsubst (only variables that are set are
# replaced, so nginx's own $variables stay), checks that the state volume
# is writable by the workers, then runs the command.
set -eu

me=docker-entrypoint.sh
note() { echo "$me: $*" >&2; }

case "${1:-}" in
nginx | nginx-debug)
    templates=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
    outdir=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
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
        done
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
