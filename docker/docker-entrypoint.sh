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
#
# AUTHBAN_CROWDSEC_URL=http://HOST:PORT (a CrowdSec local API), when set,
# adds to the file of those that declares the zone one line
#   authban_crowdsec zone=ZONE url=URL bouncer_key_file=KEY
#                    [machine_credentials_file=MACHINE] [interval=TIME];
# (README: Docker) with
#   AUTHBAN_CROWDSEC_ZONE     the zone (default: the one authban_zone there);
#   AUTHBAN_CROWDSEC_BOUNCER_KEY_FILE  (default /etc/authban/crowdsec/authban.key,
#                             where the crowdsec image's volume of credentials
#                             is meant to be mounted, read-only);
#   AUTHBAN_CROWDSEC_MACHINE_CREDENTIALS_FILE  (default: authban.yaml beside
#                             the key when it is there; set empty: none, so no
#                             alerts are sent);
#   AUTHBAN_CROWDSEC_INTERVAL (default: the directive's, 10s);
# and waits up to AUTHBAN_CROWDSEC_WAIT seconds (default 30) for the key
# file, which the crowdsec container writes when it starts.
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

# zones_of FILE: the names of the zones the authban_zone directives of FILE
# declare (zone=NAME:SIZE), one a line.
zones_of() {
    awk '
    !inz && /^[ \t]*authban_zone([ \t]|$)/ { inz = 1 }
    inz {
        for (i = 1; i <= NF; i++) if ($i ~ /^"?zone=/) { z = $i; sub(/^"?zone=/, "", z); sub(/[:;"].*/, "", z); print z }
        if (index($0, ";")) inz = 0
    }' "$1"
}

# add_crowdsec FILE...: the authban_crowdsec line, appended (at http level)
# to the file among FILE... that declares the zone.
add_crowdsec() {
    cs_url=$AUTHBAN_CROWDSEC_URL
    cs_key=${AUTHBAN_CROWDSEC_BOUNCER_KEY_FILE:-/etc/authban/crowdsec/authban.key}
    cs_zone=${AUTHBAN_CROWDSEC_ZONE:-}
    cs_interval=${AUTHBAN_CROWDSEC_INTERVAL:-}
    cs_wait=${AUTHBAN_CROWDSEC_WAIT:-30}
    for v in "$cs_url" "$cs_key" "$cs_zone" "$cs_interval" "${AUTHBAN_CROWDSEC_MACHINE_CREDENTIALS_FILE:-}"; do
        if printf '%s' "$v" | grep -q "[[:space:]\"';{}#\$\\]"; then
            note "AUTHBAN_CROWDSEC_*: '$v' must not hold spaces, quotes, backslashes or ; { } # \$"
            exit 1
        fi
    done
    case $cs_wait in '' | *[!0-9]*) note "AUTHBAN_CROWDSEC_WAIT=$cs_wait: want seconds"; exit 1 ;; esac
    if [ -z "$cs_zone" ]; then
        cs_zone=$(for f in "$@"; do zones_of "$f"; done | sort -u)
        if [ "$(printf '%s\n' "$cs_zone" | grep -c .)" -ne 1 ]; then
            note "AUTHBAN_CROWDSEC_URL is set: set AUTHBAN_CROWDSEC_ZONE to the zone it feeds (the site declares: $(printf "%s" "$cs_zone" | tr "\n" " "))"
            exit 1
        fi
    fi
    cs_file=""
    for f in "$@"; do
        if zones_of "$f" | grep -qx -- "$cs_zone"; then cs_file=$f; fi
    done
    if [ -z "$cs_file" ]; then
        note "AUTHBAN_CROWDSEC_ZONE=$cs_zone: no authban_zone zone=$cs_zone in the files made from templates ($*)"
        exit 1
    fi
    # The crowdsec container writes the key when it starts.
    i=0
    while [ ! -s "$cs_key" ] && [ "$i" -lt "$((cs_wait * 2))" ]; do
        [ "$i" -eq 0 ] && note "waiting up to ${cs_wait}s for $cs_key (the CrowdSec bouncer key)"
        sleep 0.5
        i=$((i + 1))
    done
    [ -s "$cs_key" ] || note "$cs_key is missing or empty: nginx will refuse authban_crowdsec"
    line="authban_crowdsec zone=$cs_zone url=$cs_url bouncer_key_file=$cs_key"
    if [ "${AUTHBAN_CROWDSEC_MACHINE_CREDENTIALS_FILE+set}" = set ]; then
        cs_machine=$AUTHBAN_CROWDSEC_MACHINE_CREDENTIALS_FILE
    else
        cs_machine=$(dirname "$cs_key")/authban.yaml
        [ -f "$cs_machine" ] || cs_machine=""
    fi
    [ -n "$cs_machine" ] && line="$line machine_credentials_file=$cs_machine"
    [ -n "$cs_interval" ] && line="$line interval=$cs_interval"
    printf '\n# Added by %s (AUTHBAN_CROWDSEC_URL): decisions pulled from, bans pushed to CrowdSec.\n%s;\n' \
        "$me" "$line" >>"$cs_file"
    note "$cs_file: $line;"
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
    made=""
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
            made="$made $out"
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
    if [ -n "${AUTHBAN_CROWDSEC_URL:-}" ]; then
        if [ -z "$made" ]; then
            note "AUTHBAN_CROWDSEC_URL is set but $templates has no *.template: write authban_crowdsec in your configuration"
            exit 1
        fi
        # shellcheck disable=SC2086 # $made: paths without spaces (conf.d/NAME)
        add_crowdsec $made
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
