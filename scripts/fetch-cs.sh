#!/usr/bin/env bash
# Installs `cs`, the CloudStack Python client from PyPI (a pinned version),
# into a virtual environment of its own, build/cs-venv, for tests/cs_client.rs
# (issue 19): the client logs in and calls through nginx-conf/cloudstack.conf.
# Debian's python3 makes the venv (python3-venv, which `make test` installs
# with scripts/deps.sh); the system Python is never touched, so PEP 668
# (Debian 12's externally managed Python) does not stand in the way, as root
# or not. Does nothing when the venv already has this version.
set -euo pipefail
cd "$(dirname "$0")/.."

version=5.2.0
venv=build/cs-venv
python=/usr/bin/python3

have() {
    [ -x "$venv/bin/python" ] &&
        "$venv/bin/python" -c 'import sys, cs, importlib.metadata as m; sys.exit(m.version("cs") != sys.argv[1])' \
            "$version" 2>/dev/null
}

if have; then
    exit 0
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
    echo "fetch-cs: $python cannot make a venv: run scripts/deps.sh python3 python3-venv" >&2
    exit 1
fi
echo "fetch-cs: installing cs $version from PyPI into $venv" >&2
rm -rf "$venv"
mkdir -p build
"$python" -m venv "$venv"
timeout 600 "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    --no-input "cs==$version"
have || {
    echo "fetch-cs: cs $version is not importable from $venv after installing it" >&2
    exit 1
}
