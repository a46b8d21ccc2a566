#!/bin/sh
# Entrypoint of the crowdsec image (Dockerfile --target crowdsec): Debian's
# CrowdSec 1.4.6 as a local API (LAPI) alone, offline, for authban_crowdsec
# (README: Docker). Writes /etc/crowdsec/config.yaml (replacing Debian's):
# no online_client section (no Central API: nothing leaves the machine), no
# Prometheus listener, no log acquisition (-no-cs), the API on
# $CROWDSEC_LISTEN, the sqlite database in the volume /var/lib/crowdsec/data,
# logs on stdout (docker logs). Then registers, in the database:
#
#   - cscli's own machine (/etc/crowdsec/local_api_credentials.yaml, for
#     `docker exec CONTAINER cscli decisions add ...`);
#   - each machine of $CROWDSEC_MACHINES (default: authban): its
#     local_api_credentials.yaml (url, login, password) in $CREDS/NAME.yaml,
#     url $CROWDSEC_URL (default http://HOSTNAME:PORT/);
#   - then each bouncer of $CROWDSEC_BOUNCERS (default: authban): its key,
#     as `cscli bouncers add NAME -o raw` prints it, in $CREDS/NAME.key;
#
# $CREDS is /var/lib/crowdsec/credentials (a volume: mount it read-only
# where the bouncer runs, e.g. the authban container's
# /etc/authban/crowdsec). The files are mode 0640, owner root, group
# $CROWDSEC_CREDENTIALS_GID (default 33, www-data in Debian's images: the
# nginx workers of the authban image). A key or password already in $CREDS
# is registered again as it is, so that a restart, or a new database, keeps
# the credentials the bouncers hold. Then runs the command (the image's CMD:
# crowdsec -c /etc/crowdsec/config.yaml -no-cs).
set -eu

me=crowdsec-entrypoint.sh
note() { echo "$me: $*" >&2; }

config=/etc/crowdsec/config.yaml
data=/var/lib/crowdsec/data
creds=/var/lib/crowdsec/credentials
listen=${CROWDSEC_LISTEN:-0.0.0.0:8080}
port=${listen##*:}
url=${CROWDSEC_URL:-http://$(uname -n):$port/}
gid=${CROWDSEC_CREDENTIALS_GID:-33}
bouncers=${CROWDSEC_BOUNCERS-authban}
machines=${CROWDSEC_MACHINES-authban}

for n in $bouncers $machines; do
    case $n in
    *[!A-Za-z0-9._-]* | "") note "bouncer or machine name '$n': letters, digits, '.', '_', '-' only"; exit 1 ;;
    esac
done
case $port in
'' | *[!0-9]*) note "CROWDSEC_LISTEN=$listen: want HOST:PORT (e.g. 0.0.0.0:8080)"; exit 1 ;;
esac

mkdir -p "$data" "$creds" /var/log/crowdsec
cat >"$config" <<EOF
# Written by $me at each start: the local API alone, offline.
common:
  daemonize: false
  log_media: stdout
  log_level: ${CROWDSEC_LOG_LEVEL:-info}
  log_dir: /var/log/crowdsec
  working_dir: $data
config_paths:
  config_dir: /etc/crowdsec
  data_dir: $data
  simulation_path: /etc/crowdsec/simulation.yaml
  hub_dir: /var/lib/crowdsec/hub
  index_path: /var/lib/crowdsec/hub/.index.json
  notification_dir: /etc/crowdsec/notifications
  plugin_dir: /usr/lib/crowdsec/plugins
crowdsec_service:
  acquisition_path: /etc/crowdsec/acquis.yaml
  parser_routines: 1
cscli:
  output: human
  color: "no"
db_config:
  log_level: info
  type: sqlite
  db_path: $data/crowdsec.db
  use_wal: false
  flush:
    max_items: 5000
    max_age: 7d
api:
  client:
    insecure_skip_verify: false
    credentials_path: /etc/crowdsec/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: $listen
    profiles_path: /etc/crowdsec/profiles.yaml
    trusted_ips:
      - 127.0.0.1
      - ::1
prometheus:
  enabled: false
EOF
# 1.4.6 refuses to start without a profiles file (Debian's is a conffile).
[ -r /etc/crowdsec/profiles.yaml ] || { note "/etc/crowdsec/profiles.yaml is missing"; exit 1; }

cscli() { command cscli -c "$config" --error "$@"; }

umask 027
# cscli's own machine, new at each start (its file is not shared).
cscli machines add cscli --auto --force -f /etc/crowdsec/local_api_credentials.yaml \
    --url "http://127.0.0.1:$port/" >/dev/null

# secret_file FILE: root:$gid, 0640 (written under umask 027, before it is moved in place).
secret_file() { chgrp "$gid" "$1" && chmod 640 "$1"; }

for m in $machines; do
    f=$creds/$m.yaml
    pw=""
    [ -s "$f" ] && pw=$(sed -n 's/^password:[[:space:]]*"\{0,1\}\([^"]*\)"\{0,1\}[[:space:]]*$/\1/p' "$f")
    if [ -n "$pw" ]; then
        cscli machines add "$m" --password "$pw" --force -f "$f.new" --url "$url" >/dev/null
        note "machine $m: the password in $f (url $url)"
    else
        cscli machines add "$m" --auto --force -f "$f.new" --url "$url" >/dev/null
        note "machine $m: new credentials in $f (url $url)"
    fi
    secret_file "$f.new" && mv "$f.new" "$f"
done

# The bouncers last: a bouncer key in $CREDS means its machine file is there
# too (docker-entrypoint.sh of the authban image waits for the key).
for b in $bouncers; do
    f=$creds/$b.key
    if [ -s "$f" ]; then
        # The key the bouncer holds: registered again (a new database, or
        # one whose bouncer was deleted).
        cscli bouncers delete "$b" >/dev/null 2>&1 || true
        cscli bouncers add "$b" -k "$(cat "$f")" -o raw >/dev/null
        secret_file "$f"
        note "bouncer $b: the key in $f"
    else
        cscli bouncers delete "$b" >/dev/null 2>&1 || true
        cscli bouncers add "$b" -o raw >"$f.new"
        secret_file "$f.new" && mv "$f.new" "$f"
        note "bouncer $b: a new key in $f"
    fi
done

exec "$@"
