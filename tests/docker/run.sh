#!/usr/bin/env bash
# The docker test harness (`make test-docker`): the images of the top-level
# Dockerfile, built once per run, on private Docker networks where the mock
# CloudStack, nginx+authban, a load balancer and the clients are each a
# container with its own address. Prints PASS/FAIL per check and a closing
# 'N passed, N failed' line; exits non-zero on any failure.
#
# Environment: DEBIAN (default trixie, the Dockerfile's ARG),
# AUTHBAN_DOCKER_TIMEOUT (seconds for the build, default 1500),
# AUTHBAN_DOCKER_ONLY=fleet (only the fleet scenario, tests/docker/fleet.sh)
# or crowdsec (only the CrowdSec scenario, tests/docker/crowdsec.sh),
# AUTHBAN_DOCKER_STORES (the fleet's stores, each a run of the fleet
# scenario: default "redis valkey", Debian's redis-server and valkey-server).
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD

say() { printf 'docker-test: %s\n' "$*"; }
die() { printf 'docker-test: %s\n' "$*" >&2; exit 1; }

docker info >/dev/null 2>&1 || die "no Docker daemon answers (docker info failed): start dockerd, or skip with make test (which skips this part when there is none)"

debian=${DEBIAN:-trixie}
run=authban-t$$-$RANDOM
img_ab=authban-test:$debian
img_mock=authban-test-mock:$debian
img_redis=authban-test-redis:$debian
img_valkey=authban-test-valkey:$debian
img_cs=authban-test-crowdsec:$debian
only=${AUTHBAN_DOCKER_ONLY:-}
case $only in '' | fleet | crowdsec) ;; *) die "AUTHBAN_DOCKER_ONLY: unknown scenario $only (fleet, crowdsec)" ;; esac
stores=${AUTHBAN_DOCKER_STORES:-redis valkey}
[ "$only" = crowdsec ] && stores=""
for s in $stores; do
    case $s in redis | valkey) ;; *) die "AUTHBAN_DOCKER_STORES: unknown store $s (redis, valkey)" ;; esac
done
tmp=$(mktemp -d)
passed=0
failed=0

cleanup() {
    local ids
    ids=$(docker ps -aq --filter "name=^$run-" 2>/dev/null)
    [ -n "$ids" ] && docker rm -fv $ids >/dev/null 2>&1
    for n in $(docker network ls -q --filter "name=^$run-" 2>/dev/null); do docker network rm "$n" >/dev/null 2>&1; done
    for v in $(docker volume ls -q --filter "name=^$run-" 2>/dev/null); do docker volume rm "$v" >/dev/null 2>&1; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

check() { # check NAME COMMAND...: PASS if the command succeeds
    local name=$1
    shift
    if "$@"; then
        printf 'PASS: %s\n' "$name"
        passed=$((passed + 1))
    else
        printf 'FAIL: %s\n' "$name"
        failed=$((failed + 1))
    fi
}
expect_eq() { # expect_eq WHAT GOT WANT
    [ "$2" = "$3" ] && return 0
    printf '  %s: got [%s], want [%s]\n' "$1" "$2" "$3"
    return 1
}

# ---- base images and the images, once --------------------------------------
scripts/docker-base.sh "$debian" || die "cannot make the base image debian:$debian-slim"

# BuildKit (RUN --mount): buildx if there is one; else a Docker CLI older
# than 23 has BuildKit built in behind DOCKER_BUILDKIT=1 (a newer CLI
# without buildx refuses it). Here: Debian's /usr/bin/docker 20.10.
builder=()
if docker buildx version >/dev/null 2>&1; then
    builder=(docker buildx build --load)
else
    for c in docker /usr/bin/docker /usr/local/bin/docker; do
        cli=$(command -v "$c") || continue
        v=$("$cli" version --format '{{.Client.Version}}' 2>/dev/null) || continue
        if [ "${v%%.*}" -lt 23 ] 2>/dev/null; then
            builder=(env DOCKER_BUILDKIT=1 "$cli" build)
            break
        fi
    done
fi
((${#builder[@]})) || die "no way to build with BuildKit: install docker buildx (or use a Docker CLI < 23 with DOCKER_BUILDKIT=1)"
build_args=(--network host --build-arg "DEBIAN=$debian")
# A TLS-inspecting proxy's CA for cargo, as a build secret (never in an image).
[ -f /etc/ssl/certs/ca-certificates.crt ] && build_args+=(--secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt)
build_timeout=${AUTHBAN_DOCKER_TIMEOUT:-1500}
targets=(authban:"$img_ab" mock-cloudstack:"$img_mock")
for s in $stores; do
    if [ "$s" = redis ]; then targets+=(redis:"$img_redis"); else targets+=(valkey:"$img_valkey"); fi
done
[ "$only" = fleet ] || targets+=(crowdsec:"$img_cs")
for target in "${targets[@]}"; do
    start=$SECONDS
    say "building --target ${target%%:*} -> ${target#*:} (${builder[*]})"
    if ! timeout "$build_timeout" "${builder[@]}" "${build_args[@]}" --target "${target%%:*}" -t "${target#*:}" . >"$tmp/build.log" 2>&1; then
        tail -n 40 "$tmp/build.log"
        die "docker build --target ${target%%:*} failed"
    fi
    say "built ${target#*:} in $((SECONDS - start)) s"
done

# ---- helpers ---------------------------------------------------------------
template=$repo/docker/templates/default.conf.template
api=/client/api
bad_query() { printf 'command=listZones&apiKey=authban-demo-key&signature=guess%s' "$1"; }

client() { # client NAME NETWORK [IMAGE]: a container that sleeps, for docker exec
    docker run -d --name "$run-$1" --network "$run-$2" --entrypoint sleep "${3:-$img_ab}" 3600 >/dev/null
}
mock() { # mock NAME NETWORK [SERVE_ARGS...]
    docker run -d --name "$run-$1" --network "$run-$2" "$img_mock" "${@:3}" >/dev/null
}
logs_have() { # logs_have CONTAINER TEXT: docker logs of CONTAINER contain TEXT
    # no grep -q: with pipefail, docker logs would die of SIGPIPE on an early match
    docker logs "$run-$1" 2>&1 | grep -F -- "$2" >/dev/null
}
# nginx_ab NAME NETWORK UPSTREAM [TEMPLATE_FILE]: an authban container with
# its own state volume, the image's template or the given one.
nginx_ab() {
    docker create --name "$run-$1" --network "$run-$2" -v "$run-$1-state:/var/lib/authban" \
        -e "CLOUDSTACK_UPSTREAM=$3" "$img_ab" >/dev/null || return 1
    if [ -n "${4:-}" ]; then
        docker cp "$4" "$run-$1:/etc/nginx/templates/default.conf.template" || return 1
    fi
    docker start "$run-$1" >/dev/null && wait_up "$1"
}
wait_up() { # until nginx answers /healthz inside the container
    local i
    for i in $(seq 100); do
        docker exec "$run-$1" curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:8000/healthz 2>/dev/null && return 0
        sleep 0.2
    done
    docker logs "$run-$1" 2>&1 | tail -n 20
    return 1
}
# req CLIENT URL [CURL_ARGS...]: prints the status (000 and curl's exit code
# when there is no response, e.g. "000/52" for a closed connection).
req() {
    local c=$1 url=$2 out rc
    shift 2
    out=$(docker exec "$run-$c" curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" "$url")
    rc=$?
    if [ "$rc" -ne 0 ]; then out="$out/$rc"; fi
    printf '%s' "$out"
}
addr() { # addr CONTAINER NETWORK [6]: the container's address on that network
    local f=IPAddress
    [ "${3:-}" = 6 ] && f=GlobalIPv6Address
    docker inspect -f "{{(index .NetworkSettings.Networks \"$run-$2\").$f}}" "$run-$1"
}
mock_failures_from() { # mock_failures_from MOCK ADDR: 401s the mock logged for ADDR
    docker logs "$run-$1" 2>&1 | grep -c -- " 401 xff=$2 " || true
}
# brute ATTACKER URL_BASE N [LEGIT URL]: N bad requests from ATTACKER, and
# after each one a signed request from LEGIT; prints the attacker's
# statuses on line 1 and the legitimate client's on line 2.
brute() {
    local att=$1 base=$2 n=$3 legit=${4:-} lurl=${5:-} i a="" l=""
    for i in $(seq "$n"); do
        a+="$(req "$att" "$base$api?$(bad_query "$i")") "
        if [ -n "$legit" ]; then l+="$(req "$legit" "$lurl") "; fi
    done
    printf '%s\n%s\n' "${a% }" "${l% }"
}
repeat() { # repeat WORD N
    local i s=""
    for i in $(seq "$2"); do s+="$1 "; done
    printf '%s' "${s% }"
}
want_403=$(printf '%s %s' "$(repeat 401 25)" "$(repeat 403 5)")
want_444=$(printf '%s %s' "$(repeat 401 25)" "$(repeat 000/52 5)")
want_200=$(repeat 200 30)

# ---- helpers of the fleet and crowdsec scenarios ----------------------------
now_ms() { date +%s%3N; }
# within SECONDS COMMAND...: COMMAND succeeds within SECONDS (polled every
# 100 ms); prints how long it took, or what the last try printed.
within() {
    local limit=$(($1 * 1000)) start out
    shift
    start=$(now_ms)
    while :; do
        if out=$("$@" 2>&1); then
            printf '  (%d ms)\n' $(($(now_ms) - start))
            return 0
        fi
        if [ $(($(now_ms) - start)) -ge "$limit" ]; then
            printf '  not within %d ms: %s\n' "$limit" "$out"
            return 1
        fi
        sleep 0.1
    done
}
# api NODE METHOD QUERY: the node's management API, from inside the node
# (the location allows 127.0.0.1 only), whatever network it is on.
api() {
    docker exec "$run-$1" curl -s --max-time 5 -X "$2" "http://127.0.0.1:8000/authban?$3"
}
# jget PATH: a field of the JSON on stdin (a.b.c), as JSON; "missing" when
# absent, "invalid" when the input is no JSON.
jget() {
    python3 -c '
import json, sys
try:
    v = json.load(sys.stdin)
except ValueError:
    print("invalid"); sys.exit()
for k in sys.argv[1].split("."):
    if not isinstance(v, dict) or k not in v:
        print("missing"); sys.exit()
    v = v[k]
print(json.dumps(v))' "$1"
}
# api_template OUT: the image's site with the management API (location
# /authban, for 127.0.0.1 only: api above, through docker exec).
api_template() {
    awk '/^ *# The image.s HEALTHCHECK/ {
            print "    location = /authban {"; print "        allow 127.0.0.1;"; print "        deny all;"
            print "        authban_api;"; print "    }"; print "" }
         { print }' "$template" >"$1"
    grep -q '^ *authban_api;' "$1"
}

summary() {
    printf 'docker: %d passed, %d failed\n' "$passed" "$failed"
    [ "$failed" -eq 0 ]
}
fleets() { # the fleet scenario once per store
    for fleet_store in $stores; do
        . tests/docker/fleet.sh
    done
}
crowdsec_scenario() { . tests/docker/crowdsec.sh; } # the CrowdSec scenario
case $only in
fleet) fleets; summary; exit ;;
crowdsec) crowdsec_scenario; summary; exit ;;
esac

# ---- scenario 1: a brute force refused at maxretry, a legitimate key served -
say "scenario 1: authban_status 403 (the image's default configuration)"
docker network create "$run-a" >/dev/null
mock mock-a a
nginx_ab ng-a a "$run-mock-a:8080" || die "nginx+authban (ng-a) did not start"
client att-a a
client legit-a a "$img_mock"
signed=$(docker exec "$run-legit-a" mock-cloudstack sign 'command=listZones&response=json')
legit_url="http://$run-ng-a:8000$api?$signed"
att_a=$(addr att-a a)
legit_a=$(addr legit-a a)
mapfile -t out < <(brute att-a "http://$run-ng-a:8000" 30 legit-a "$legit_url")
check "403: attacker $att_a gets 25 x 401 then 403" expect_eq attacker "${out[0]}" "$want_403"
check "403: legitimate client $legit_a gets 200 throughout" expect_eq legit "${out[1]}" "$want_200"
check "403: the mock saw exactly 25 failures from $att_a" expect_eq failures "$(mock_failures_from mock-a "$att_a")" 25
check "403: docker logs carry the ban line" \
    logs_have ng-a "authban: ban zone=cloudstack addr=$att_a failures=25 "
check "403: access log on stdout shows BANNED" \
    bash -c "docker logs '$run-ng-a' 2>/dev/null | grep -q '^$att_a .* 403 authban=BANNED'"

# ---- scenario 2: authban_status 444 ----------------------------------------
say "scenario 2: authban_status 444 (connection closed)"
sed 's/^\( *\)authban cloudstack;/&\n\1authban_status 444;/' "$template" >"$tmp/444.template"
grep -q 'authban_status 444;' "$tmp/444.template" || die "cannot make the 444 template"
nginx_ab ng-b a "$run-mock-a:8080" "$tmp/444.template" || die "nginx+authban (ng-b) did not start"
client att-b a
att_b=$(addr att-b a)
legit_url_b="http://$run-ng-b:8000$api?$signed"
mapfile -t out < <(brute att-b "http://$run-ng-b:8000" 30 legit-a "$legit_url_b")
check "444: attacker $att_b gets 25 x 401 then closed connections" expect_eq attacker "${out[0]}" "$want_444"
check "444: legitimate client gets 200 throughout" expect_eq legit "${out[1]}" "$want_200"
check "444: the mock saw exactly 25 failures from $att_b" expect_eq failures "$(mock_failures_from mock-a "$att_b")" 25

# ---- scenario 3: reload and restart keep the ban ---------------------------
say "scenario 3: nginx -s reload and docker restart keep the ban (state volume)"
docker exec "$run-ng-a" nginx -s reload >/dev/null 2>&1
sleep 1
check "reload: attacker still refused" expect_eq after-reload "$(req att-a "http://$run-ng-a:8000$api?$(bad_query r)")" 403
check "reload: legitimate client still served" expect_eq after-reload "$(req legit-a "$legit_url")" 200
docker restart -t 20 "$run-ng-a" >/dev/null && wait_up ng-a || say "ng-a did not come back after docker restart"
check "restart: the state file on the volume holds the ban" \
    docker exec "$run-ng-a" grep -q "^ban $att_a " /var/lib/authban/cloudstack.state
check "restart: attacker still refused" expect_eq after-restart "$(req att-a "http://$run-ng-a:8000$api?$(bad_query s)")" 403
check "restart: legitimate client served" expect_eq after-restart "$(req legit-a "$legit_url")" 200
check "restart: the mock still saw exactly 25 failures from $att_a" expect_eq failures "$(mock_failures_from mock-a "$att_a")" 25
check "restart: docker logs carry the ban line" \
    logs_have ng-a "authban: ban zone=cloudstack addr=$att_a failures=25 "

# ---- scenario 4: IPv6 --------------------------------------------------------
say "scenario 4: IPv6 network, per address and per /64"
sub6=$(printf 'fd%02x:%x:%x:%x::/64' $((RANDOM % 256)) $((RANDOM | 1)) $((RANDOM | 1)) $((RANDOM | 1)))
if ! docker network create --ipv6 --subnet "$sub6" "$run-v6" >/dev/null 2>"$tmp/net6.err"; then
    cat "$tmp/net6.err"
    check "ipv6: network $sub6 created" false
else
    mock mock-6 v6 serve --listen '[::]:8080'
    sed 's/ ipv6_prefix=64 widen=3//' "$template" >"$tmp/128.template"
    nginx_ab ng-6 v6 "$run-mock-6:8080" "$tmp/128.template" || die "nginx+authban (ng-6) did not start"
    nginx_ab ng-64 v6 "$run-mock-6:8080" || die "nginx+authban (ng-64) did not start"
    client att-6a v6
    client att-6b v6
    a6=$(addr att-6a v6 6)
    b6=$(addr att-6b v6 6)
    ng6=$(addr ng-6 v6 6)
    ng64=$(addr ng-64 v6 6)
    say "attackers $a6 and $b6 (same /64 $sub6); nginx $ng6 and $ng64"
    mapfile -t out < <(brute att-6a "http://[$ng6]:8000" 30)
    check "ipv6 /128: attacker $a6 gets 25 x 401 then 403" expect_eq attacker "${out[0]}" "$want_403"
    check "ipv6 /128: the mock saw exactly 25 failures from $a6" expect_eq failures "$(mock_failures_from mock-6 "$a6")" 25
    check "ipv6 /128: ban line for $a6" logs_have ng-6 "authban: ban zone=cloudstack addr=$a6 failures=25 "
    check "ipv6 /128: another address of the /64 is not refused" \
        expect_eq neighbour "$(req att-6b "http://[$ng6]:8000$api?$(bad_query n)")" 401
    mapfile -t out < <(brute att-6a "http://[$ng64]:8000" 30)
    check "ipv6_prefix=64: attacker $a6 gets 25 x 401 then 403" expect_eq attacker "${out[0]}" "$want_403"
    check "ipv6_prefix=64: a second address $b6 of the /64 is refused" \
        expect_eq neighbour "$(req att-6b "http://[$ng64]:8000$api?$(bad_query m)")" 403
    check "ipv6_prefix=64: the ban line names the /64" \
        logs_have ng-64 "authban: ban zone=cloudstack addr=${sub6%/64}/64 failures=25 "
fi

# ---- scenario 5: behind a load balancer -------------------------------------
say "scenario 5: authban behind a load balancer (set_real_ip_from) counts the real client"
docker network create "$run-front" >/dev/null
docker network create "$run-back" >/dev/null
back_subnet=$(docker network inspect -f '{{(index .IPAM.Config 0).Subnet}}' "$run-back")
mock mock-lb back
sed "s|# set_real_ip_from 10.0.0.0/24;.*|set_real_ip_from $back_subnet;|; s|# real_ip_header X-Forwarded-For;|real_ip_header X-Forwarded-For;|" \
    "$template" >"$tmp/realip.template"
grep -q "^ *set_real_ip_from $back_subnet;" "$tmp/realip.template" || die "cannot make the realip template"
nginx_ab ng-lb back "$run-mock-lb:8080" "$tmp/realip.template" || die "nginx+authban (ng-lb) did not start"
# The balancer: plain nginx (the same image, another site), on both networks.
cat >"$tmp/lb.template" <<'EOF'
server {
    listen 8000;
    location = /healthz { return 200 "ok\n"; }
    location / {
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header Host $host;
        proxy_pass http://${BACKEND};
    }
}
EOF
docker create --name "$run-lb" --network "$run-front" -e "BACKEND=$run-ng-lb:8000" "$img_ab" >/dev/null
docker cp "$tmp/lb.template" "$run-lb:/etc/nginx/templates/default.conf.template"
docker network connect "$run-back" "$run-lb"
docker start "$run-lb" >/dev/null && wait_up lb || die "load balancer did not start"
client att-lb front
client legit-lb front "$img_mock"
att_lb=$(addr att-lb front)
lb_back=$(addr lb back)
mapfile -t out < <(brute att-lb "http://$run-lb:8000" 30 legit-lb "http://$run-lb:8000$api?$signed")
check "lb: attacker $att_lb (through balancer $lb_back) gets 25 x 401 then 403" expect_eq attacker "${out[0]}" "$want_403"
check "lb: legitimate client through the same balancer gets 200 throughout" expect_eq legit "${out[1]}" "$want_200"
check "lb: the ban is on the client $att_lb, not the balancer" \
    logs_have ng-lb "authban: ban zone=cloudstack addr=$att_lb failures=25 "
check "lb: the balancer $lb_back is never banned" \
    bash -c "! docker logs '$run-ng-lb' 2>&1 | grep -q 'authban: ban zone=cloudstack addr=$lb_back '"
check "lb: the mock saw exactly 25 failures from $att_lb" expect_eq failures "$(mock_failures_from mock-lb "$att_lb")" 25

# ---- scenario 6: a fleet of three nodes sharing one zone, through Redis, then Valkey
fleets

# ---- scenario 7: a CrowdSec local API: its decisions pulled, authban's bans pushed
crowdsec_scenario

summary
