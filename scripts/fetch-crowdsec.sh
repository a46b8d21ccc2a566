#!/usr/bin/env bash
# Unpacks Debian's crowdsec into build/crowdsec for the CrowdSec tests
# (issue 18), without installing it: its post-install step registers with an
# online service (and fails offline), and no crowdsec service gets started on
# the test machine. The tests run build/crowdsec/usr/bin/crowdsec -no-cs (the
# local API alone) and cscli with a configuration of their own.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=build/crowdsec
[ -x "$dest/usr/bin/crowdsec" ] && [ -x "$dest/usr/bin/cscli" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && { apt-get download crowdsec >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get download crowdsec >/dev/null; }; })
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
dpkg-deb -x "$tmp"/crowdsec_*.deb "$dest"
echo "unpacked $(ls "$tmp"/crowdsec_*.deb | xargs -n1 basename) into $dest"
