# shellcheck shell=bash
# shellcheck disable=SC2154 # run, img_*, tmp, api, want_403...: set by run.sh, which sources this
# shellcheck disable=SC2016 # bash -c '...' _ ARGS: the $1... are the script's own
# The CrowdSec scenario of the docker test harness (authban_crowdsec),
# sourced by tests/docker/run.sh, whose helpers, images, counters and
# clean-up (every container, network and volume named $run-*) it uses.
#
# One private network with no way out (docker network create --internal):
# the crowdsec container (the Dockerfile's crowdsec target: Debian's CrowdSec
# 1.4.6 local API, offline), the mock CloudStack, the authban container
# (the image's site with the management API, AUTHBAN_CROWDSEC_URL set, so
# its entrypoint adds `authban_crowdsec zone=cloudstack url=...
# bouncer_key_file=... machine_credentials_file=... interval=1s;`) and the
# clients. The crowdsec container writes the bouncer key and the machine
# credentials into a volume that the authban container mounts read-only.
#
# Checked: the LAPI itself and the plumbing (credentials made, readable by
# the authban image, accepted by the LAPI from that network; the directive
# written by the entrypoint); then, through authban_crowdsec, a decision
# added with cscli refuses its address within seconds and its deletion
# lifts it (pull), a ban authban makes by count shows in the LAPI as one
# alert with scenario authban/cloudstack and a decision of origin authban
# (push), and the zone's API block `crowdsec` says so.

say "scenario crowdsec: a CrowdSec local API, its decisions pulled by authban (interval=1s) and authban's bans pushed to it"
cs_start=$SECONDS
cs=$run-cs
cs_zone=cloudstack
cs_scenario=authban/$cs_zone
cs_dir=/etc/authban/crowdsec # where the authban containers mount the credentials
cs_url=http://$cs:8080

# ---- helpers of this scenario -----------------------------------------------
cs_cscli() { docker exec "$cs" cscli "$@"; } # cscli in the crowdsec container (its own machine)
quiet() { # quiet COMMAND...: COMMAND's output only when it fails (its last lines)
    local out
    out=$("$@" 2>&1) && return 0
    printf '%s\n' "$out" | tail -n 3 | sed 's/^/  /'
    return 1
}
# cs_status_is CLIENT URL WANT: CLIENT's request to URL gets WANT
cs_status_is() {
    local got
    got=$(req "$1" "$2")
    [ "$got" = "$3" ] || { printf '  %s: %s, want %s\n' "$1" "$got" "$3"; return 1; }
}
cs_field() { api cs-ng GET "zone=$cs_zone" 2>/dev/null | jget "crowdsec.$1"; } # cs_field FIELD
cs_is() { # cs_is FIELD WANT: the zone's crowdsec.FIELD is WANT (JSON)
    local got
    got=$(cs_field "$1")
    [ "$got" = "$2" ] || { printf '  crowdsec.%s = %s, want %s\n' "$1" "$got" "$2"; return 1; }
}
cs_ge() { # cs_ge FIELD MIN: the zone's crowdsec.FIELD is a number >= MIN
    local got
    got=$(cs_field "$1")
    if [[ $got =~ ^[0-9]+$ ]] && [ "$got" -ge "$2" ]; then return 0; fi
    printf '  crowdsec.%s = %s, want >= %s\n' "$1" "$got" "$2"
    return 1
}
cs_banned_is() { # cs_banned_is ADDR WANT: the zone's API says ADDR banned: WANT (true/false)
    local out got
    out=$(api cs-ng GET "zone=$cs_zone&addr=$1" 2>/dev/null)
    got=$(jget banned <<<"$out")
    # not banned: banned false, or a 404 (the lifted ban forgotten, as DELETE does)
    [ "$2" = false ] && [ "$got" = missing ] && [ "$(jget status <<<"$out")" = 404 ] && got=false
    [ "$got" = "$2" ] || { printf '  banned = %s, want %s\n' "$got" "$2"; return 1; }
}
# cs_alerts ADDR: how many of the LAPI's alerts (every origin: -a) are for
# ADDR with scenario authban/ZONE; "invalid" when cscli gave no JSON.
cs_alerts() {
    cs_cscli alerts list -a -o json 2>/dev/null | python3 -c '
import json, sys
try:
    alerts = json.load(sys.stdin) or []
except ValueError:
    print("invalid"); sys.exit()
addr, scenario = sys.argv[1], sys.argv[2]
def about(a):
    src = a.get("source") or {}
    return src.get("value") == addr or src.get("ip") == addr or any(
        d.get("value") == addr for d in a.get("decisions") or [])
print(sum(1 for a in alerts if a.get("scenario") == scenario and about(a)))' "$1" "$cs_scenario"
}
cs_alerts_ge() { # cs_alerts_ge ADDR MIN
    local n
    n=$(cs_alerts "$1")
    if [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge "$2" ]; then return 0; fi
    printf '  alerts for %s with scenario %s: %s\n' "$1" "$cs_scenario" "$n"
    return 1
}
# cs_decision ADDR ORIGIN: the LAPI lists (decisions list -a) a ban on ADDR of ORIGIN
cs_decision() {
    cs_cscli decisions list -a -o json 2>/dev/null | python3 -c '
import json, sys
try:
    alerts = json.load(sys.stdin) or []
except ValueError:
    sys.exit("no JSON from cscli decisions list")
addr, origin = sys.argv[1], sys.argv[2]
found = [d for a in alerts for d in a.get("decisions") or []
         if d.get("value") == addr and d.get("origin") == origin and d.get("type") == "ban"]
if not found:
    sys.exit("no ban on %s of origin %s in %s" % (addr, origin,
        [(d.get("value"), d.get("origin")) for a in alerts for d in a.get("decisions") or []]))
for d in found:
    print(d.get("scenario"))' "$1" "$2"
}
# cs_probe COMMAND...: COMMAND in a container of the authban image on the
# scenario's network, with the credentials volume mounted as authban's.
cs_probe() { docker exec "$run-cs-probe" "$@"; }

# ---- the network, the crowdsec container ------------------------------------
docker network create --internal "$run-c" >/dev/null || die "cannot create network $run-c"
docker run -d --name "$cs" --network "$run-c" --health-interval 2s -e "CROWDSEC_URL=$cs_url/" \
    -v "$run-cs-creds:/var/lib/crowdsec/credentials" -v "$run-cs-data:/var/lib/crowdsec/data" \
    "$img_cs" >/dev/null || die "crowdsec did not start"
check "crowdsec: the LAPI answers GET /health within 30 s" \
    within 30 docker exec "$cs" curl -fsS --max-time 2 http://127.0.0.1:8080/health
if ! docker exec "$cs" curl -fsS --max-time 2 -o /dev/null http://127.0.0.1:8080/health 2>/dev/null; then
    docker logs "$cs" 2>&1 | tail -n 20
fi
check "crowdsec: docker says the container is healthy (HEALTHCHECK) within 20 s" \
    within 20 bash -c '[ "$(docker inspect -f "{{.State.Health.Status}}" "$1")" = healthy ]' _ "$cs"
cs_version=$(docker exec "$cs" dpkg-query -W -f='${Version}' crowdsec 2>&1)
check "crowdsec: Debian's package crowdsec 1.4.6 is installed ($cs_version)" \
    bash -c '[[ $1 =~ ^1\.4\.6- ]]' _ "$cs_version"
check "crowdsec: LAPI alone, offline: no online_client (Central API), Prometheus off" \
    docker exec "$cs" sh -c '! grep -q online_client /etc/crowdsec/config.yaml && grep -A1 "^prometheus:" /etc/crowdsec/config.yaml | grep -q "enabled: false"'
check "crowdsec: docker logs say the Local API listens on 0.0.0.0:8080" \
    logs_have cs "CrowdSec Local API listening on 0.0.0.0:8080"
check "crowdsec: bouncer authban registered (cscli bouncers list)" \
    bash -c 'docker exec "$1" cscli bouncers list -o json | grep -E "\"name\": *\"authban\"" >/dev/null' _ "$cs"
check "crowdsec: machine authban registered (cscli machines list)" \
    bash -c 'docker exec "$1" cscli machines list -o json | grep -E "\"machineId\": *\"authban\"" >/dev/null' _ "$cs"
cs_modes=$(docker exec "$cs" stat -c '%n %a %u:%g' /var/lib/crowdsec/credentials/authban.key /var/lib/crowdsec/credentials/authban.yaml 2>&1 | tr '\n' ' ')
check "crowdsec: key and machine file are 0640 root:www-data (${cs_modes% })" \
    expect_eq modes "${cs_modes% }" "/var/lib/crowdsec/credentials/authban.key 640 0:33 /var/lib/crowdsec/credentials/authban.yaml 640 0:33"

# ---- the credentials, from a container of the authban image -------------------
docker run -d --name "$run-cs-probe" --network "$run-c" -v "$run-cs-creds:$cs_dir:ro" \
    --entrypoint sleep "$img_ab" 3600 >/dev/null || die "cannot start the probe container"
cs_key=$(cs_probe cat "$cs_dir/authban.key" 2>&1)
check "credentials: the authban image reads the bouncer key (32 hex digits, cscli's raw output)" \
    bash -c '[[ $1 =~ ^[0-9a-f]{32}$ ]] || { echo "  key file: $1"; exit 1; }' _ "$cs_key"
check "credentials: ... and the nginx workers' user www-data reads it too" \
    quiet docker exec -u www-data "$run-cs-probe" cat "$cs_dir/authban.key"
cs_machine=$(cs_probe cat "$cs_dir/authban.yaml" 2>&1)
check "credentials: the machine file holds url: $cs_url/, login: authban, a password" \
    bash -c 'grep -qx "url: $2/" <<<"$1" && grep -qx "login: authban" <<<"$1" && grep -Eqx "password: .{16,}" <<<"$1" || { echo "  machine file: $(grep -v password <<<"$1")"; exit 1; }' _ "$cs_machine" "$cs_url"
cs_pw=$(sed -n 's/^password: //p' <<<"$cs_machine")
check "credentials: the key opens LAPI's decision stream from the authban network (200)" \
    expect_eq stream "$(cs_probe sh -c 'curl -s -o /dev/null -w "%{http_code}" --max-time 5 -H "X-Api-Key: $(cat "$1/authban.key")" "$2/v1/decisions/stream?startup=true"' _ "$cs_dir" "$cs_url")" 200
check "credentials: the machine logs in (POST /v1/watchers/login: a token)" \
    bash -c 'docker exec "$1" curl -s --max-time 5 -A authban/0.1.0 -H "Content-Type: application/json" \
        -d "{\"machine_id\":\"authban\",\"password\":\"$2\"}" "$3/v1/watchers/login" | grep -E "\"token\": *\"[^\"]+\"" >/dev/null' \
    _ "$run-cs-probe" "$cs_pw" "$cs_url"

# ---- the authban container: the directive, nginx -t, the node -------------------
mock cs-mock c # nginx -t resolves the upstream
cs_env=(-e "CLOUDSTACK_UPSTREAM=$run-cs-mock:8080" -e "AUTHBAN_CROWDSEC_URL=$cs_url" -e AUTHBAN_CROWDSEC_INTERVAL=1s)
cs_line=$(docker run --rm --name "$run-cs-t" --network "$run-c" -v "$run-cs-creds:$cs_dir:ro" "${cs_env[@]}" \
    --entrypoint sh "$img_ab" -c '/docker-entrypoint.sh nginx -t >/dev/null 2>&1; grep "^authban_crowdsec" /etc/nginx/conf.d/default.conf' 2>&1)
check "entrypoint: AUTHBAN_CROWDSEC_URL adds the authban_crowdsec line" \
    expect_eq line "$cs_line" "authban_crowdsec zone=$cs_zone url=$cs_url bouncer_key_file=$cs_dir/authban.key machine_credentials_file=$cs_dir/authban.yaml interval=1s;"
cs_t=$(docker run --rm --name "$run-cs-t" --network "$run-c" -v "$run-cs-creds:$cs_dir:ro" "${cs_env[@]}" "$img_ab" nginx -t 2>&1)
cs_t_rc=$?
check "entrypoint: nginx -t accepts the configuration with authban_crowdsec" \
    bash -c '[ "$1" -eq 0 ] || { printf "  rc=%s: %s\n" "$1" "$(grep -E "emerg|error" <<<"$2" | tail -n 2)"; exit 1; }' _ "$cs_t_rc" "$cs_t"

api_template "$tmp/cs.template" || die "cannot make the crowdsec template"
cs_up=false
if docker create --name "$run-cs-ng" --network "$run-c" -v "$run-cs-ng-state:/var/lib/authban" \
    -v "$run-cs-creds:$cs_dir:ro" "${cs_env[@]}" "$img_ab" >/dev/null &&
    docker cp "$tmp/cs.template" "$run-cs-ng:/etc/nginx/templates/default.conf.template" &&
    docker start "$run-cs-ng" >/dev/null && wait_up cs-ng; then
    cs_up=true
fi
check "node: authban with authban_crowdsec starts and answers /healthz" $cs_up
check "node: the API's crowdsec block says connected within 5 s" within 5 cs_is connected true

client cs-vic c "$img_mock"
client cs-att c
cs_vic=$(addr cs-vic c)
cs_att=$(addr cs-att c)
cs_ng=$(addr cs-ng c)
say "crowdsec: LAPI $(addr cs c), node ${cs_ng:-(not running)}, client $cs_vic, attacker $cs_att"
cs_signed=$(docker exec "$run-cs-vic" mock-cloudstack sign 'command=listZones&response=json')
cs_vic_url="http://$run-cs-ng:8000$api?$cs_signed"

# ---- pull: a decision made with cscli refuses its address; its deletion lifts it
check "pull: $cs_vic is served (200) before any decision" cs_status_is cs-vic "$cs_vic_url" 200
check "pull: cscli decisions add --ip $cs_vic --duration 1h" \
    quiet cs_cscli decisions add --ip "$cs_vic" --duration 1h --reason "authban docker harness"
check "pull: the LAPI holds the ban on $cs_vic (origin cscli)" quiet cs_decision "$cs_vic" cscli
check "pull: $cs_vic refused (403) within 5 s" within 5 cs_status_is cs-vic "$cs_vic_url" 403
check "pull: the zone's API says $cs_vic banned" cs_banned_is "$cs_vic" true
check "pull: cscli decisions delete --ip $cs_vic" quiet cs_cscli decisions delete --ip "$cs_vic"
check "pull: $cs_vic served again (200) within 5 s" within 5 cs_status_is cs-vic "$cs_vic_url" 200
check "pull: the zone's API says $cs_vic not banned" cs_banned_is "$cs_vic" false

# ---- push: a ban by count goes to the LAPI as an alert ------------------------------
mapfile -t out < <(brute cs-att "http://$run-cs-ng:8000" 30)
check "push: attacker $cs_att gets 25 x 401 then 403" expect_eq attacker "${out[0]}" "$want_403"
check "push: docker logs carry the ban line" \
    logs_have cs-ng "authban: ban zone=$cs_zone addr=$cs_att failures=25 "
check "push: the LAPI holds an alert for $cs_att with scenario $cs_scenario within 10 s" \
    within 10 cs_alerts_ge "$cs_att" 1
sleep 3 # a few pulls more: authban's own ban comes back in its stream (the echo)
check "push: ... exactly one (not posted again on the echo)" expect_eq alerts "$(cs_alerts "$cs_att")" 1
check "push: the LAPI's ban on $cs_att has origin authban and scenario $cs_scenario" \
    expect_eq scenario "$(cs_decision "$cs_att" authban 2>&1)" "$cs_scenario"
check "push: the mock saw exactly 25 failures from $cs_att" expect_eq failures "$(mock_failures_from cs-mock "$cs_att")" 25

# ---- the zone's API: the crowdsec block ----------------------------------------------
check "api: crowdsec.connected is true" cs_is connected true
check "api: crowdsec.url names the LAPI ($cs_url)" \
    bash -c '[[ $1 == \"$2* ]] || { echo "  crowdsec.url = $1"; exit 1; }' _ "$(cs_field url)" "$cs_url"
check "api: crowdsec.pulls >= 1" cs_ge pulls 1
check "api: crowdsec.decisions_applied >= 1 (the cscli decision)" cs_ge decisions_applied 1
check "api: crowdsec.alerts_sent >= 1 (the ban of $cs_att)" cs_ge alerts_sent 1

# ---- no secret in logs or in the API ----------------------------------------------
check "secrets: the node's docker logs never show the key or the password" \
    bash -c '! grep -F -e "$2" -e "$3" <<<"$1" >/dev/null' _ "$(docker logs "$run-cs-ng" 2>&1)" "${cs_key:-none}" "${cs_pw:-none}"
check "secrets: the crowdsec container's logs never show them" \
    bash -c '! grep -F -e "$2" -e "$3" <<<"$1" >/dev/null' _ "$(docker logs "$cs" 2>&1)" "${cs_key:-none}" "${cs_pw:-none}"
check "secrets: the zone's API never shows them" \
    bash -c '! grep -F -e "$2" -e "$3" <<<"$1" >/dev/null' _ "$(api cs-ng GET "zone=$cs_zone" 2>&1)" "${cs_key:-none}" "${cs_pw:-none}"
say "crowdsec: scenario took $((SECONDS - cs_start)) s"

# What this run made, removed with their anonymous volumes (the harness's
# clean-up removes it too, at exit).
for c in cs cs-ng cs-mock cs-probe cs-vic cs-att; do
    docker rm -fv "$run-$c" >/dev/null 2>&1
done
for v in cs-creds cs-data cs-ng-state; do docker volume rm "$run-$v" >/dev/null 2>&1; done
docker network rm "$run-c" >/dev/null 2>&1
