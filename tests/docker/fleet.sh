# shellcheck shell=bash
# The fleet scenario of the docker test harness (issue 12: sync=redis://),
# sourced by tests/docker/run.sh, once per store it names in $fleet_store
# (redis: Debian's redis-server, image $img_redis; valkey: Debian's
# valkey-server, image $img_valkey), whose helpers, images, counters and
# clean-up (every container, network and volume named $run-*) it uses. It
# removes what it made when it ends, so that the next store's run starts
# from nothing.
#
# Two private networks: "ff" (front) holds the attacker and the other
# clients, the mock CloudStack and the three nodes; "fs" (sync) holds the
# store (with a password) and the three nodes. Cutting a node off the sync
# network (docker network disconnect) partitions it from the store while the
# clients and the mock still reach it, so every check is a real request.

fleet_store=${fleet_store:-redis}
case $fleet_store in
redis) fleet_store_img=$img_redis fleet_cli=redis-cli ;;
valkey) fleet_store_img=$img_valkey fleet_cli=valkey-cli ;;
*) die "unknown fleet store $fleet_store (redis or valkey)" ;;
esac
fl="fleet[$fleet_store]"
say "scenario fleet[$fleet_store]: three nodes sharing one zone through $fleet_store (sync=), a partition, a reconnect"
fleet_start=$SECONDS

fleet_nodes=(fl1 fl2 fl3)
fleet_pass=fleet-$RANDOM$RANDOM$RANDOM
fleet_redis=$run-redis
fleet_sync="redis://:$fleet_pass@$fleet_redis:6379"

# ---- helpers of this scenario -----------------------------------------------
sync_field() { api "$1" GET zone=cloudstack | jget "sync.$2"; } # sync_field NODE FIELD
is_sync() { # is_sync NODE FIELD WANT
    local got
    got=$(sync_field "$1" "$2")
    [ "$got" = "$3" ] || { printf '%s sync.%s = %s, want %s' "$1" "$2" "$got" "$3"; return 1; }
}
banned_on() { # banned_on NODE ADDR: the node's API says ADDR is banned
    local got
    got=$(api "$1" GET "zone=cloudstack&addr=$2" | jget banned)
    [ "$got" = true ] || { printf '%s: banned = %s' "$1" "$got"; return 1; }
}
refused() { # refused CLIENT NODE [WANT]: CLIENT's bad request to NODE gets WANT (403)
    local got
    got=$(req "$1" "http://$run-$2:8000$api?$(bad_query "x$RANDOM")")
    [ "$got" = "${3:-403}" ] || { printf '%s -> %s: %s' "$1" "$2" "$got"; return 1; }
}
field_ge() { # field_ge NODE FIELD MIN: the node's sync.FIELD is a number >= MIN
    local got
    got=$(sync_field "$1" "$2")
    [[ $got =~ ^[0-9]+$ ]] && [ "$got" -ge "$3" ] || { printf '  %s sync.%s = %s, want >= %s\n' "$1" "$2" "$got" "$3"; return 1; }
}
# settled_mock_failures MOCK ADDR: mock_failures_from, read again every
# 200 ms until it holds still (the mock logs after it answered), at most 5 s.
settled_mock_failures() {
    local last now i
    last=$(mock_failures_from "$1" "$2")
    for i in $(seq 25); do
        sleep 0.2
        now=$(mock_failures_from "$1" "$2")
        [ "$now" = "$last" ] && break
        last=$now
    done
    printf '%s' "$last"
}
redis_cli() { docker exec -e REDISCLI_AUTH="$fleet_pass" "$fleet_redis" "$fleet_cli" "$@"; }
logs_count() { # logs_count CONTAINER ERE: lines of its docker logs matching ERE
    docker logs "$run-$1" 2>&1 | grep -cE -- "$2" || true
}
# fleet_node NAME [SYNC_URL]: an authban container on both networks with the
# fleet template and AUTHBAN_SYNC; waits for /healthz.
fleet_node() {
    docker create --name "$run-$1" --network "$run-ff" -v "$run-$1-state:/var/lib/authban" \
        -e "CLOUDSTACK_UPSTREAM=$run-mock-f:8080" -e "AUTHBAN_SYNC=${2:-$fleet_sync}" "$img_ab" >/dev/null || return 1
    docker cp "$tmp/fleet.template" "$run-$1:/etc/nginx/templates/default.conf.template" || return 1
    docker network connect "$run-fs" "$run-$1" || return 1
    docker start "$run-$1" >/dev/null && wait_up "$1"
}

# The image's site with the management API, for 127.0.0.1 only (docker exec).
api_template "$tmp/fleet.template" || die "cannot make the fleet template"

# ---- the networks, Redis, the mock, the three nodes --------------------------
docker network create "$run-ff" >/dev/null
docker network create "$run-fs" >/dev/null
docker run -d --name "$fleet_redis" --network "$run-fs" -e "REDIS_PASSWORD=$fleet_pass" "$fleet_store_img" >/dev/null ||
    die "$fleet_store did not start"
for i in $(seq 50); do
    [ "$(redis_cli ping 2>/dev/null)" = PONG ] && break
    sleep 0.2
done
check "$fl: the store answers PING with the password" expect_eq ping "$(redis_cli ping 2>&1)" PONG
# The server really is the one named: Valkey's INFO has valkey_version (and a
# redis_version for compatibility), Redis's has no valkey_version.
fleet_info=$(redis_cli info server 2>&1 | tr -d '\r')
case $fleet_store in
valkey) check "$fl: the store is Valkey ($(grep -E '^valkey_version:' <<<"$fleet_info"))" \
    grep -Eq '^(server_name:valkey|valkey_version:[0-9])' <<<"$fleet_info" ;;
redis) check "$fl: the store is Redis ($(grep -E '^redis_version:' <<<"$fleet_info"))" \
    bash -c '! grep -Eq "^valkey_version:" <<<"$1" && grep -Eq "^redis_version:[0-9]" <<<"$1"' _ "$fleet_info" ;;
esac
check "$fl: the store refuses a client without the password" \
    bash -c "docker exec '$fleet_redis' $fleet_cli ping 2>&1 | grep -E '^(NOAUTH|.*Authentication required)' >/dev/null"

# A bad sync= is refused by nginx -t, with the contract's message.
bad_out=$(docker run --rm --name "$run-badsync" -e CLOUDSTACK_UPSTREAM=127.0.0.1:8080 \
    -e AUTHBAN_SYNC=redis:/nohost "$img_ab" nginx -t 2>&1)
bad_rc=$?
check "$fl: AUTHBAN_SYNC=redis:/nohost fails nginx -t (invalid sync ...)" \
    bash -c '[ "$1" -ne 0 ] && printf "%s\n" "$2" | grep -F "invalid sync \"redis:/nohost\": expected redis://" >/dev/null || { printf "  rc=%s: %s\n" "$1" "$2" | tail -n 3; exit 1; }' _ "$bad_rc" "$bad_out"

mock mock-f ff
for n in "${fleet_nodes[@]}"; do
    fleet_node "$n" || die "nginx+authban ($n) did not start"
done
for n in "${fleet_nodes[@]}"; do
    check "$fl: $n's sync link is up (API sync.connected)" within 10 is_sync "$n" connected true
done
client att-f ff
client vic-f ff
client legit-f ff "$img_mock"
att_f=$(addr att-f ff)
vic_f=$(addr vic-f ff)
say "$fl: nodes $(for n in "${fleet_nodes[@]}"; do printf '%s ' "$(addr "$n" ff)"; done)attacker $att_f, victim $vic_f"

url_fl1=$(sync_field fl1 url)
check "$fl: API sync.url is redis://HOST:6379/0, no password" \
    bash -c '[[ $1 =~ ^\"redis://[^@/]+:6379/0\"$ ]] || { echo "  url: $1"; exit 1; }' _ "$url_fl1"

# ---- a brute force spread round-robin over the three nodes -------------------
# 36 bad requests, one at a time, the i-th to node i mod 3: 12 a node, far
# below maxretry (25) on each; only the fleet's count can ban.
rr=""
for i in $(seq 36); do
    n=${fleet_nodes[$(((i - 1) % 3))]}
    rr+="$(req att-f "http://$run-$n:8000$api?$(bad_query "rr$i")") "
done
rr=${rr% }
read -r -a st <<<"$rr"
say "$fl: round-robin statuses: $rr"
check "$fl: round-robin attacker gets 25 x 401 first (failures below maxretry pass)" \
    expect_eq first-25 "${st[*]:0:25}" "$(repeat 401 25)"
check "$fl: round-robin attacker refused (403) from request 28 on" \
    expect_eq from-28 "${st[*]:27}" "$(repeat 403 9)"
fails=$(settled_mock_failures mock-f "$att_f")
check "$fl: failures reaching the mock from $att_f: $fails, within maxretry..maxretry+2 (25..27)" \
    test "$fails" -ge 25 -a "$fails" -le 27
for n in "${fleet_nodes[@]}"; do
    check "$fl: $n refuses $att_f within 1 s" within 1 refused att-f "$n"
done
signed_f=$(docker exec "$run-legit-f" mock-cloudstack sign 'command=listZones&response=json')
legit_st=""
for n in "${fleet_nodes[@]}"; do legit_st+="$(req legit-f "http://$run-$n:8000$api?$signed_f") "; done
check "$fl: a legitimate client is served by every node" expect_eq legit "${legit_st% }" "200 200 200"

# Who banned: the node of the 25th failure, by the fleet's count; the
# others received it.
fleet_banner=""
for n in "${fleet_nodes[@]}"; do
    if [ "$(logs_count "$n" "authban: ban zone=cloudstack addr=$att_f failures=25 .*by=fleet")" -ge 1 ]; then
        fleet_banner+="$n "
    fi
done
fleet_banner=${fleet_banner% }
check "$fl: one node logs the ban by the fleet's count (failures=25 ... by=fleet): [$fleet_banner]" \
    test "$(wc -w <<<"$fleet_banner")" -eq 1
for n in "${fleet_nodes[@]}"; do
    [ "$n" = "$fleet_banner" ] && continue
    check "$fl: $n logs the ban it received (addr=$att_f ... by=sync)" \
        logs_have "$n" "authban: ban zone=cloudstack addr=$att_f "
    check "$fl: $n's ban line for $att_f says by=sync" \
        bash -c "docker logs '$run-$n' 2>&1 | grep -E 'authban: ban zone=cloudstack addr=$att_f .*by=sync' >/dev/null"
done
if [ -n "$fleet_banner" ]; then
    check "$fl: $fleet_banner counts the ban it sent (sync.bans_sent >= 1)" field_ge "$fleet_banner" bans_sent 1
    for n in "${fleet_nodes[@]}"; do
        [ "$n" = "$fleet_banner" ] && continue
        check "$fl: $n counts the ban it received (sync.bans_received >= 1)" field_ge "$n" bans_received 1
    done
fi
sent_total=0
for n in "${fleet_nodes[@]}"; do
    s=$(sync_field "$n" failures_sent)
    [[ $s =~ ^[0-9]+$ ]] || s=0
    sent_total=$((sent_total + s))
done
check "$fl: failures sent to the store by the three nodes ($sent_total) = failures counted ($fails)" \
    test "$sent_total" -eq "$fails"
ttl=$(redis_cli ttl "authban:cloudstack:ban:$att_f" 2>&1)
check "$fl: the store holds authban:cloudstack:ban:$att_f expiring within bantime (ttl $ttl)" \
    test "$ttl" -gt 0 -a "$ttl" -le 3600
check "$fl: the store no longer holds authban:cloudstack:fail:$att_f (deleted at the ban)" \
    expect_eq exists "$(redis_cli exists "authban:cloudstack:fail:$att_f" 2>&1)" 0
idx=$(redis_cli zscore authban:cloudstack:index "$att_f" 2>&1)
check "$fl: the store's index authban:cloudstack:index holds $att_f (score $idx)" \
    bash -c '[[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]]' _ "$idx"

# ---- a partition: fl3 cut off Redis, bans on both sides, then a reconnect -----
say "$fl: docker network disconnect $run-fs $run-fl3"
down_before=$(logs_count fl3 'sync link to redis://[^ ]+ is down')
check "$fl: fl3's logs have no link-down line before the partition" expect_eq down-lines "$down_before" 0
docker network disconnect "$run-fs" "$run-fl3" || die "cannot disconnect fl3"
check "$fl: fl3 sees its sync link down within 5 s (sync.connected false)" within 5 is_sync fl3 connected false
api fl1 POST "zone=cloudstack&addr=$vic_f" >/dev/null
check "$fl: a ban of $vic_f made through fl1's API is refused by fl2 within 1 s" within 1 refused vic-f fl2
check "$fl: fl1 refuses $vic_f" refused vic-f fl1
check "$fl: partitioned fl3 does not have the ban: $vic_f still served (401 from the mock)" \
    refused vic-f fl3 401
w_addr=198.51.100.7
api fl3 POST "zone=cloudstack&addr=$w_addr" >/dev/null
check "$fl: partitioned fl3 bans $w_addr locally (its API)" banned_on fl3 "$w_addr"
check "$fl: fl3 keeps refusing $att_f while partitioned" refused att-f fl3
sleep 2 # a few more reconnection attempts while cut off: still one warn line
say "$fl: docker network connect $run-fs $run-fl3"
docker network connect "$run-fs" "$run-fl3" || die "cannot reconnect fl3"
check "$fl: reconnected fl3 refuses $vic_f (banned during the partition) within 5 s" within 5 refused vic-f fl3
check "$fl: reconnected fl3's sync link is up (sync.connected true)" within 5 is_sync fl3 connected true
check "$fl: the ban fl3 made while partitioned ($w_addr) reaches fl1 within 5 s" within 5 banned_on fl1 "$w_addr"
check "$fl: ... and fl2" within 2 banned_on fl2 "$w_addr"
check "$fl: fl3's docker logs show the link-down warn (sync link to redis://... is down (...); banning locally)" \
    bash -c "docker logs '$run-fl3' 2>&1 | grep -E 'authban: zone=cloudstack sync link to redis://[^ @]+:6379/0 is down \(.+\); banning locally' >/dev/null"
check "$fl: one link-down line for the one drop (not one per retry or request)" \
    expect_eq down-lines "$(logs_count fl3 'sync link to redis://[^ ]+ is down')" 1
check "$fl: fl3's docker logs show the link-up notice after the drop" \
    bash -c "docker logs '$run-fl3' 2>&1 | grep -E 'sync link to redis://[^ ]+ is (down|up)' | tail -n 1 | grep -E 'authban: zone=cloudstack sync link to redis://[^ @]+:6379/0 is up' >/dev/null"
check "$fl: fl1 and fl2 logged no link drop" \
    expect_eq down-lines "$(($(logs_count fl1 'sync link to redis://[^ ]+ is down') + $(logs_count fl2 'sync link to redis://[^ ]+ is down')))" 0

# ---- a wrong password: a clear error, local-only operation -------------------
fleet_node flbad "redis://:wrong-$fleet_pass@$fleet_redis:6379" || die "nginx+authban (flbad) did not start"
check "$fl: a node with a wrong password logs the refusal (sync to ... refused: ...)" \
    within 5 bash -c "docker logs '$run-flbad' 2>&1 | grep -E 'authban: zone=cloudstack sync to redis://[^ @]+:6379/0 refused: (WRONGPASS|NOAUTH|ERR)' >/dev/null"
check "$fl: ... its sync link counts as down (sync.connected false)" is_sync flbad connected false
check "$fl: ... and it serves: the attacker's fleet ban is not there, its failures reach the mock (401)" \
    refused att-f flbad 401

for n in "${fleet_nodes[@]}" flbad; do
    if docker logs "$run-$n" 2>&1 | grep -F -- "$fleet_pass" >/dev/null; then
        check "$fl: $n's docker logs never show the store's password" false
        continue
    fi
    check "$fl: $n's docker logs never show the store's password" true
done
check "$fl: the API never shows the store's password" \
    bash -c "! docker exec '$run-fl1' curl -s http://127.0.0.1:8000/authban | grep -F -- '$fleet_pass' >/dev/null"
say "$fl: scenario took $((SECONDS - fleet_start)) s"

# What this run made, removed (the harness's clean-up removes it too, at
# exit): the next store's run uses the same names.
for c in fl1 fl2 fl3 flbad mock-f att-f vic-f legit-f redis; do
    docker rm -fv "$run-$c" >/dev/null 2>&1
done
for c in fl1 fl2 fl3 flbad; do docker volume rm "$run-$c-state" >/dev/null 2>&1; done
docker network rm "$run-ff" "$run-fs" >/dev/null 2>&1
