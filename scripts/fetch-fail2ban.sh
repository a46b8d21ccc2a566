#!/usr/bin/env bash
# Unpacks Debian's fail2ban into build/fail2ban for the filter test, without
# installing it: no fail2ban service gets started on the test machine.
exec "$(dirname "$0")/unpack-deb.sh" fail2ban usr/bin/fail2ban-regex
