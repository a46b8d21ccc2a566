#!/usr/bin/env bash
# Installs Debian's redis-server (and redis-tools) for the fleet tests
# (tests/fleet.rs), which start their own redis-server on a free loopback
# port. The packaged service must not start: while apt-get runs, a
# /usr/sbin/policy-rc.d answering 101 ("action forbidden") is in place,
# unless one already exists; ours is removed afterwards, whatever happens.
set -euo pipefail

packages=(redis-server redis-tools)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
((${#missing[@]})) || exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "the fleet tests need these Debian packages: ${missing[*]}" >&2
    echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
    echo "(then stop the packaged service if you do not want it: sudo systemctl disable --now redis-server)" >&2
    exit 1
fi

policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    trap 'rm -f "$policy"' EXIT
    printf '#!/bin/sh\n# authban scripts/deps-redis.sh: no service starts while it runs\nexit 101\n' >"$policy"
    chmod 755 "$policy"
fi

echo "installing ${missing[*]} (service start denied by policy-rc.d)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache policy redis-server 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get update -qq
fi
install() { apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
# Stale package lists (404 on download): refresh them once and retry.
install || { apt-get update -qq && install; }
