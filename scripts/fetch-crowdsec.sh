#!/usr/bin/env bash
# Unpacks Debian's crowdsec into build/crowdsec for the CrowdSec tests
# (issue 18), without installing it: its post-install step registers with an
# online service (and fails offline), and no crowdsec service gets started on
# the test machine. The tests run build/crowdsec/usr/bin/crowdsec -no-cs (the
# local API alone) and cscli with a configuration of their own.
exec "$(dirname "$0")/unpack-deb.sh" crowdsec usr/bin/crowdsec usr/bin/cscli
