# authban in Debian's own nginx, and the mock CloudStack API.
#
#   docker build -t authban .                                  nginx + authban (default)
#   docker build --target mock-cloudstack -t mock-cloudstack . the mock API on 8080
#   docker build --target redis -t authban-redis .             Debian's redis-server on 6379,
#                                                              for a fleet (sync=, README)
#   docker build --target valkey -t authban-valkey .           Debian's valkey-server instead
#                                                              (trixie and later)
#   docker build --target crowdsec -t authban-crowdsec .       Debian's CrowdSec local API on
#                                                              8080, offline (authban_crowdsec)
#   docker build --build-arg DEBIAN=bookworm ...               another Debian (README: Docker)
#
# The module is built exactly as `make module NGINX=/usr/sbin/nginx` builds
# it on a host: against the Debian source package of the nginx installed in
# the build stage, configured with that binary's own `nginx -V` arguments;
# the runtime stage installs the same nginx version and loads it.
#
# Behind a TLS-inspecting proxy, give cargo the proxy's CA at build time only
# (never stored in an image):
#   DOCKER_BUILDKIT=1 docker build --secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt ...
# Needs BuildKit (RUN --mount): docker buildx, or DOCKER_BUILDKIT=1 with a
# Docker CLI older than 23.

ARG DEBIAN=trixie

# ---- the toolchain: Debian's Rust, nginx, and what configure needs -------
FROM debian:${DEBIAN}-slim AS toolchain
ENV DEBIAN_FRONTEND=noninteractive
# No service starts while installing nginx (policy-rc.d), as in a chroot.
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      nginx cargo rustc build-essential pkg-config libclang-dev \
      libpcre2-dev zlib1g-dev libssl-dev dpkg-dev ca-certificates curl \
 && rm -f /usr/sbin/policy-rc.d \
 && cargo --version && rustc --version \
 && dpkg-query -W -f='${Version}\n' nginx
# authban (the ngx crate) needs Rust 1.81 or later: Debian 13 (trixie) and
# later have it; Debian 12 (bookworm) has 1.63: refused here with that message.
RUN v=$(rustc --version | cut -d' ' -f2); \
    if [ "$(printf '%s\n' 1.81.0 "$v" | sort -V | head -n 1)" != 1.81.0 ]; then \
      echo "authban: this Debian's Rust is $v; authban needs 1.81 or later (use DEBIAN=trixie or later)" >&2; exit 1; \
    fi
WORKDIR /src
COPY . /src

# ---- the module, for the nginx of this stage ------------------------------
FROM toolchain AS build
# scripts/module.sh = `make module NGINX=/usr/sbin/nginx`: fetches nginx's
# Debian source package, configures it with `nginx -V`'s arguments, builds
# the module against it and checks that /usr/sbin/nginx loads it.
RUN --mount=type=secret,id=cacert \
    --mount=type=cache,id=authban-cargo-registry,target=/root/.cargo/registry,sharing=locked \
    --mount=type=cache,id=authban-target,target=/src/target,sharing=locked \
    if [ -f /run/secrets/cacert ]; then export CARGO_HTTP_CAINFO=/run/secrets/cacert; fi; \
    set -e; \
    AUTHBAN_QUIET=1 scripts/module.sh build /usr/sbin/nginx; \
    mkdir -p /out; \
    cp build/nginx-*/ngx_http_authban_module.so /out/; \
    dpkg-query -W -f='${Version}' nginx >/out/nginx.version; \
    cp build/nginx-*/module.env /out/; \
    cat /out/module.env

# ---- the mock CloudStack API ----------------------------------------------
FROM toolchain AS mock-build
RUN --mount=type=secret,id=cacert \
    --mount=type=cache,id=authban-cargo-registry,target=/root/.cargo/registry,sharing=locked \
    --mount=type=cache,id=authban-target,target=/src/target,sharing=locked \
    if [ -f /run/secrets/cacert ]; then export CARGO_HTTP_CAINFO=/run/secrets/cacert; fi; \
    set -e; \
    CARGO_TARGET_DIR=/src/target/mock cargo build --release --package mock-cloudstack; \
    install -D -m 755 target/mock/release/mock-cloudstack /out/mock-cloudstack

FROM debian:${DEBIAN}-slim AS mock-cloudstack
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=mock-build /out/mock-cloudstack /usr/local/bin/mock-cloudstack
USER nobody
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=2s \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/_mock/stats || exit 1
ENTRYPOINT ["mock-cloudstack"]
CMD ["serve", "--listen", "0.0.0.0:8080"]

# ---- Redis for a fleet of authban nodes (sync=redis://...) ---------------
# Debian's own redis-server, in the foreground, as the redis user, on every
# interface of the container with protected mode off: give it a password
# (REDIS_PASSWORD, or --requirepass in the command) and keep it on a private
# network. No persistence: the fleet's keys all expire (findtime, bantime).
#   docker run -d --name redis --network fleet -e REDIS_PASSWORD=... authban-redis
FROM debian:${DEBIAN}-slim AS redis
ENV DEBIAN_FRONTEND=noninteractive
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -f /usr/sbin/policy-rc.d \
 && rm -rf /var/lib/apt/lists/* \
 && redis-server --version
COPY docker/redis-entrypoint.sh /redis-entrypoint.sh
RUN chmod 755 /redis-entrypoint.sh
USER redis
WORKDIR /var/lib/redis
EXPOSE 6379
HEALTHCHECK --interval=10s --timeout=3s --start-period=2s \
    CMD if [ -n "${REDIS_PASSWORD:-}" ]; then export REDISCLI_AUTH="$REDIS_PASSWORD"; fi; \
        redis-cli ping | grep -q PONG || exit 1
ENTRYPOINT ["/redis-entrypoint.sh"]

# ---- Valkey instead of Redis (the same entrypoint, the same use) ----------
# Debian's valkey-server (Debian 13 trixie and later; bookworm has none) as
# the valkey user, in /var/lib/valkey. Debian has no valkey-redis-compat:
# the links redis-server and redis-cli (to valkey-server and valkey-cli) and
# /var/lib/redis (to /var/lib/valkey) let the redis target's entrypoint and
# healthcheck run it unchanged (REDIS_PASSWORD, arguments passed on).
#   docker run -d --name valkey --network fleet -e REDIS_PASSWORD=... authban-valkey
FROM debian:${DEBIAN}-slim AS valkey
ENV DEBIAN_FRONTEND=noninteractive
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends valkey-server \
 && rm -f /usr/sbin/policy-rc.d \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o valkey -g valkey -m 750 /var/lib/valkey \
 && ln -s /var/lib/valkey /var/lib/redis \
 && ln -s /usr/bin/valkey-server /usr/local/bin/redis-server \
 && ln -s /usr/bin/valkey-cli /usr/local/bin/redis-cli \
 && valkey-server --version && redis-server --version && redis-cli --version
COPY docker/redis-entrypoint.sh /redis-entrypoint.sh
RUN chmod 755 /redis-entrypoint.sh
USER valkey
WORKDIR /var/lib/valkey
EXPOSE 6379
HEALTHCHECK --interval=10s --timeout=3s --start-period=2s \
    CMD if [ -n "${REDIS_PASSWORD:-}" ]; then export REDISCLI_AUTH="$REDIS_PASSWORD"; fi; \
        redis-cli ping | grep -q PONG || exit 1
ENTRYPOINT ["/redis-entrypoint.sh"]

# ---- a CrowdSec local API for authban_crowdsec (README: Docker) ------------
# Debian's crowdsec package (1.4.6 in bookworm and trixie), run as the local
# API alone (crowdsec -no-cs: no log acquisition) with a configuration that
# has no Central API and no Prometheus (docker/crowdsec-entrypoint.sh, which
# also makes the bouncer key and machine credentials authban reads, in the
# volume /var/lib/crowdsec/credentials). The package's post-install script
# registers with CrowdSec's online Central API (cscli capi register, which
# fails offline) and sets up the hub for log acquisition, neither of which a
# LAPI alone needs: the package is unpacked with dpkg --unpack, that script
# replaced by a no-op, and configured (dpkg --configure), so that dpkg knows
# it as installed. Its dependencies are installed first. The first RUN is the
# mock-cloudstack target's, so the two share that layer.
#   docker run -d --name crowdsec --network private -v crowdsec-creds:/var/lib/crowdsec/credentials \
#       -v crowdsec-data:/var/lib/crowdsec/data authban-crowdsec
FROM debian:${DEBIAN}-slim AS crowdsec
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN apt-get update \
 && apt-get install -y --no-install-recommends libsqlite3-0 \
 && cd /tmp && apt-get download crowdsec \
 && dpkg --unpack /tmp/crowdsec_*.deb \
 && printf '#!/bin/sh\n# neutralised by the authban image: no Central API, no hub\nexit 0\n' \
      >/var/lib/dpkg/info/crowdsec.postinst \
 && dpkg --configure crowdsec \
 && rm -f /tmp/crowdsec_*.deb \
 && rm -rf /var/lib/apt/lists/* \
 && dpkg-query -W -f='crowdsec ${Version}\n' crowdsec \
 && cscli version 2>&1 | head -n 3
COPY docker/crowdsec-entrypoint.sh /crowdsec-entrypoint.sh
RUN chmod 755 /crowdsec-entrypoint.sh
VOLUME ["/var/lib/crowdsec/data", "/var/lib/crowdsec/credentials"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
    CMD l=${CROWDSEC_LISTEN:-0.0.0.0:8080}; curl -fsS -o /dev/null "http://127.0.0.1:${l##*:}/health" || exit 1
ENTRYPOINT ["/crowdsec-entrypoint.sh"]
CMD ["crowdsec", "-c", "/etc/crowdsec/config.yaml", "-no-cs"]

# ---- nginx + authban (the default target) ---------------------------------
FROM debian:${DEBIAN}-slim AS authban
ENV DEBIAN_FRONTEND=noninteractive
COPY --from=build /out/ /tmp/authban/
# The same nginx version the module was built for; logs to the container's
# stdout/stderr; the state directory writable by the workers (www-data).
RUN printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d \
 && apt-get update \
 && apt-get install -y --no-install-recommends \
      "nginx=$(cat /tmp/authban/nginx.version)" curl ca-certificates gettext-base \
 && rm -f /usr/sbin/policy-rc.d \
 && rm -rf /var/lib/apt/lists/* \
 && . /tmp/authban/module.env \
 && install -D -m 644 /tmp/authban/ngx_http_authban_module.so "$modules_path/ngx_http_authban_module.so" \
 && rm -rf /tmp/authban \
 && rm -f /etc/nginx/sites-enabled/default \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log \
 && mkdir -p /var/lib/authban /etc/nginx/templates \
 && chown www-data:www-data /var/lib/authban && chmod 750 /var/lib/authban
COPY docker/nginx.conf /etc/nginx/nginx.conf
COPY docker/templates/ /etc/nginx/templates/
COPY docker/docker-entrypoint.sh /docker-entrypoint.sh
RUN chmod 755 /docker-entrypoint.sh && nginx -V 2>&1 | head -n 1
VOLUME /var/lib/authban
EXPOSE 8000
STOPSIGNAL SIGQUIT
HEALTHCHECK --interval=10s --timeout=3s --start-period=3s \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8000/healthz || exit 1
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["nginx", "-g", "daemon off;"]
