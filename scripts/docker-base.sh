#!/usr/bin/env bash
# The base images the Dockerfile names (debian:SUITE-slim), for a Docker
# engine that has no image registry: for each SUITE (default: trixie), when
# the engine has no debian:SUITE-slim and cannot pull it, builds one from
# Debian's packages with debootstrap (minbase) and imports it under that
# name. With a registry this does nothing but a pull; the Dockerfile stays
# the standard one.
#
#   scripts/docker-base.sh [SUITE...]      e.g. scripts/docker-base.sh trixie bookworm
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
note() { printf 'docker-base: %s\n' "$*" >&2; }

docker info >/dev/null 2>&1 || { note "no Docker daemon answers (docker info failed)"; exit 1; }
(($#)) || set -- trixie

for suite in "$@"; do
    image=debian:$suite-slim
    if docker image inspect "$image" >/dev/null 2>&1; then
        note "$image: present"
        continue
    fi
    if timeout 120 docker pull -q "$image" >/dev/null 2>&1; then
        note "$image: pulled"
        continue
    fi
    note "$image: missing and cannot be pulled; building it with debootstrap from $mirror"
    if ! command -v debootstrap >/dev/null; then
        [ "$(id -u)" -eq 0 ] || { note "debootstrap is missing: sudo apt-get install debootstrap"; exit 1; }
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    fi
    [ "$(id -u)" -eq 0 ] || { note "debootstrap needs root"; exit 1; }
    dir=$(mktemp -d "/var/tmp/docker-base-$suite.XXXXXX")
    trap 'rm -rf "$dir"' EXIT
    start=$SECONDS
    if ! debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$dir.log" 2>&1; then
        tail -n 20 "$dir.log" >&2
        note "debootstrap $suite failed (log: $dir.log)"
        exit 1
    fi
    rm -f "$dir.log"
    # What the official slim images have: the suite with its updates and
    # security archives, apt that keeps no downloaded .deb, no apt lists.
    rm -f "$dir/etc/apt/sources.list"
    case "$suite" in
    sid | unstable) security="" ;;
    *) security="
Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" ;;
    esac
    cat >"$dir/etc/apt/sources.list.d/debian.sources" <<SRC
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
$security
SRC
    printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };' \
        'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >"$dir/etc/apt/apt.conf.d/docker-clean"
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/archives/*.deb "$dir"/var/log/*.log
    tar --numeric-owner -C "$dir" -c . |
        docker import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            - "$image" >/dev/null
    rm -rf "$dir"
    trap - EXIT
    note "$image: imported ($((SECONDS - start)) s)"
done
