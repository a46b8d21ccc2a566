#!/usr/bin/env bash
# Unpacks Debian's package PACKAGE into build/PACKAGE without installing it
# (no maintainer scripts run, no service starts), unless the FILEs it must
# provide (relative to build/PACKAGE) are already there.
#   scripts/unpack-deb.sh PACKAGE FILE...
set -euo pipefail
cd "$(dirname "$0")/.."

package=$1
shift
dest=build/$package
done=1
for f in "$@"; do [ -x "$dest/$f" ] || done=0; done
[ "$done" = 1 ] && exit 0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && { apt-get download "$package" >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get download "$package" >/dev/null; }; })
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
dpkg-deb -x "$tmp/${package}"_*.deb "$dest"
echo "unpacked $(ls "$tmp/${package}"_*.deb | xargs -n1 basename) into $dest"
