#!/usr/bin/env bash
# `make run`: the mock CloudStack API and nginx with nginx-conf/cloudstack.conf,
# in the foreground. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."

root=$PWD
mkdir -p build/logs
: >build/logs/error.log

build/bin/mock-cloudstack serve --listen 127.0.0.1:8080 &
mock=$!
build/sbin/nginx -p "$root/build/" -c "$root/nginx-conf/cloudstack.conf" -g 'daemon off;' &
nginx=$!

stop() {
    trap - INT TERM EXIT
    kill -TERM "$nginx" "$mock" 2>/dev/null || true
    wait "$nginx" "$mock" 2>/dev/null || true
    echo
    echo "stopped nginx (pid $nginx) and the mock API (pid $mock)"
}
trap stop INT TERM EXIT

for _ in $(seq 50); do
    if curl -s -o /dev/null http://127.0.0.1:8000/client/api 2>/dev/null; then break; fi
    sleep 0.1
done

signed=$(build/bin/mock-cloudstack sign 'command=listZones&response=json')
cat <<MSG

authban demo: nginx on http://127.0.0.1:8000 in front of a mock CloudStack API
(zone "cloudstack": maxretry=25 findtime=10m bantime=1h). In another terminal:

  # a correctly signed API call: 200
  curl -s 'http://127.0.0.1:8000/client/api?$signed'

  # a brute force with bad signatures: 25 x 401 from CloudStack, then 403
  for i in \$(seq 30); do
    curl -s -o /dev/null -w '%{http_code} ' 'http://127.0.0.1:8000/client/api?command=listZones&apiKey=authban-demo-key&signature=guess'\$i
  done; echo

  # the ban, as the error log records it
  grep 'authban: ban' build/logs/error.log

Your own address (127.0.0.1) is banned for an hour afterwards; another
loopback address is not: curl --interface 127.0.0.2 ... still reaches the API.
Ctrl-C stops nginx and the mock.

MSG

tail -n 0 -f build/logs/error.log &
tailer=$!
trap 'kill $tailer 2>/dev/null; stop; exit 0' INT TERM EXIT
wait "$nginx"
