#!/usr/bin/env bash
# Unpacks Debian's fail2ban into build/fail2ban for the filter test, without
# installing it: no fail2ban service gets started on the test machine.
set -euo pipefail
cd "$(dirname "$0")/.."

dest=build/fail2ban
[ -x "$dest/usr/bin/fail2ban-regex" ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && { apt-get download fail2ban >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get download fail2ban >/dev/null; }; })
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
dpkg-deb -x "$tmp"/fail2ban_*.deb "$dest"
echo "unpacked $(ls "$tmp"/fail2ban_*.deb | xargs -n1 basename) into $dest"
