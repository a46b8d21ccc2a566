#!/usr/bin/env bash
# Unpacks Debian's crowdsec into build/crowdsec and its
# crowdsec-firewall-bouncer into build/crowdsec-firewall-bouncer for the
# CrowdSec tests (issue 18), without installing either: crowdsec's
# post-install step registers with an online service (and fails offline), the
# bouncer's registers with a local crowdsec and starts a service, and neither
# service may start on the test machine. The tests run
# build/crowdsec/usr/bin/crowdsec -no-cs (the local API alone), cscli and the
# bouncer (in a network namespace of their own) with configurations of their
# own. The bouncer's nftables mode talks netlink itself (no `nft` needed); the
# tests read its rules back with `nft`, which scripts/deps.sh installs.
set -euo pipefail
cd "$(dirname "$0")"
./unpack-deb.sh crowdsec usr/bin/crowdsec usr/bin/cscli
./unpack-deb.sh crowdsec-firewall-bouncer usr/bin/crowdsec-firewall-bouncer
