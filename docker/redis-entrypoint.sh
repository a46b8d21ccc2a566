#!/bin/sh
# Entrypoint of the redis image (Dockerfile, --target redis): Debian's
# redis-server in the foreground, logging to stdout, listening on 6379 on
# every interface of the container, protected mode off, no persistence
# (authban's keys all expire). REDIS_PASSWORD, when set, is required of every
# client (requirepass). Arguments that begin with - are passed on to
# redis-server (e.g. --requirepass PASS, --maxmemory 256mb); any other
# command is run instead (e.g. redis-cli).
set -eu
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
    if [ -n "${REDIS_PASSWORD:-}" ]; then
        set -- --requirepass "$REDIS_PASSWORD" "$@"
    else
        echo "redis-entrypoint.sh: REDIS_PASSWORD is not set: any client that reaches port 6379 may use this Redis" >&2
    fi
    set -- redis-server --port 6379 --bind '*' '-::*' --protected-mode no \
        --daemonize no --logfile '' --dir /var/lib/redis --save '' --appendonly no "$@"
fi
exec "$@"
