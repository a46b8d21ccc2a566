#!/usr/bin/env bash
# Builds nginx (vendored source, via the nginx-sys crate), the module and the
# mock CloudStack API, and lays them out under build/.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

mkdir -p target build/sbin build/modules build/bin
cargo build --release --workspace --message-format=json-render-diagnostics >target/build-messages.json

# nginx-sys compiles nginx in its build script's OUT_DIR; cargo reports where.
out_dir=$(grep '"reason":"build-script-executed"' target/build-messages.json |
    grep '"package_id":"[^"]*nginx-sys' |
    sed -n 's/.*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1)
if [ -z "$out_dir" ] || [ ! -x "$out_dir/objs/nginx" ]; then
    echo "build: cannot find the nginx binary built by nginx-sys" >&2
    exit 1
fi
install -m 755 "$out_dir/objs/nginx" build/sbin/nginx
install -m 644 target/release/libauthban.so build/modules/ngx_http_authban_module.so
install -m 755 target/release/mock-cloudstack build/bin/mock-cloudstack
echo "built: build/sbin/nginx ($(build/sbin/nginx -v 2>&1 | sed 's/.*: //')), build/modules/ngx_http_authban_module.so"
