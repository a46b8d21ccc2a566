#!/usr/bin/env bash
# `make asan`: builds nginx (vendored source, via nginx-sys) with
# AddressSanitizer into target/asan/build/, builds the module against it,
# and runs the integration suite on that build. Fails on a test failure or on any
# ASan report.
#
# - nginx is compiled with gcc's -fsanitize=address (Debian's libasan), plus
#   --with-debug, NGX_DEBUG_PALLOC (every pool allocation is its own malloc,
#   so ASan sees pool overruns) and NGX_DEBUG_MALLOC (slab memory is
#   junk-filled, so a zone read before it is written shows up).
# - The module is plain stable Rust, not instrumented: its own memory
#   safety is the compiler's job, and the fuzz targets run the engine's
#   unsafe code (the table over a raw region) under ASan. What ASan checks
#   here is nginx's memory as the module drives it (pools, buffers, shared
#   zones, strings handed across the FFI).
# - The ASan options are linked into nginx (__asan_default_options), so
#   every nginx started from this build has them whatever its environment
#   (the harness's, a shell's, or the one nginx itself passes on an exec).
#   detect_leaks=0 because nginx leaves its cycle to exit() by design.
#   Reports go to target/asan/build/asan-reports/ (world-writable: the
#   workers run as nobody), one file per reporting process; a worker that
#   aborts also fails the harness's assert_clean ("exited on signal").
#
# Env: ASAN_TESTS="--test ban --test api" to run a subset (default: every
# integration suite), ASAN_TIMEOUT (seconds, default 2400).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

root=$PWD
export CARGO_TARGET_DIR=$root/target/asan
out=$CARGO_TARGET_DIR/build
reports=$out/asan-reports

mkdir -p "$out/sbin" "$out/modules" "$out/bin" "$out/obj" "$CARGO_TARGET_DIR"

# The options every process of the ASan nginx starts with.
cat >"$out/obj/asan_options.c" <<EOF
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "detect_leaks=0:abort_on_error=1:halt_on_error=1"
           ":detect_stack_use_after_return=1:check_initialization_order=1"
           ":log_path=$reports/asan";
}
EOF
gcc -O1 -c -o "$out/obj/asan_options.o" "$out/obj/asan_options.c"

san="-fsanitize=address -fno-omit-frame-pointer"
# The modules the suites need, as every build has them (.cargo/config.toml's
# [env], which a variable set here would otherwise replace), and --with-debug.
base_args=$(sed -n 's/^NGX_CONFIGURE_ARGS *= *"\(.*\)"$/\1/p' .cargo/config.toml)
export NGX_CONFIGURE_ARGS="$base_args --with-debug"
export NGX_CFLAGS="$san -g -O1 -DNGX_DEBUG_PALLOC=1 -DNGX_DEBUG_MALLOC=1"
export NGX_LDFLAGS="-fsanitize=address $out/obj/asan_options.o"

echo "asan: building nginx and the module (target/asan)" >&2
msgs=$CARGO_TARGET_DIR/build-messages.json
timeout 1800 cargo build --release -p authban \
    --message-format=json-render-diagnostics >"$msgs"
so=$CARGO_TARGET_DIR/release/libauthban.so
timeout 900 cargo build --release -p mock-cloudstack

out_dir=$(grep '"reason":"build-script-executed"' "$msgs" |
    grep '"package_id":"[^"]*nginx-sys' |
    sed -n 's/.*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1)
if [ -z "$out_dir" ] || [ ! -x "$out_dir/objs/nginx" ]; then
    echo "asan: cannot find the nginx binary built by nginx-sys" >&2
    exit 1
fi
# grep without -q reads all of nm's output: with pipefail, an early exit
# would fail the pipeline on nm's SIGPIPE, whatever it found.
if ! nm -D "$out_dir/objs/nginx" | grep __asan_init >/dev/null; then
    echo "asan: $out_dir/objs/nginx is not built with ASan" >&2
    exit 1
fi
install -m 755 "$out_dir/objs/nginx" "$out/sbin/nginx"
install -m 644 "$so" "$out/modules/ngx_http_authban_module.so"
install -m 755 "$CARGO_TARGET_DIR/release/mock-cloudstack" "$out/bin/mock-cloudstack"
echo "asan: built $out/sbin/nginx ($("$out/sbin/nginx" -V 2>&1 | sed -n 's/.*version: //p'))" >&2

[ "${ASAN_BUILD_ONLY:-0}" = 1 ] && exit 0

# The fail2ban filter test looks for fail2ban under the build dir.
scripts/fetch-fail2ban.sh
ln -sfn "$root/build/fail2ban" "$out/fail2ban"
# So do the CrowdSec tests (issue 18) for crowdsec and cscli.
scripts/fetch-crowdsec.sh
ln -sfn "$root/build/crowdsec" "$out/crowdsec"

rm -rf "$reports"
mkdir -p "$reports"
chmod 1777 "$reports"

# The suites as `make test` runs them, against target/asan/build/ (the harness
# reads AUTHBAN_BUILD). Unit tests are left out: they never load nginx.
suites=${ASAN_TESTS:-$(for f in tests/*.rs; do printf -- '--test %s ' "$(basename "$f" .rs)"; done)}
status=0
# shellcheck disable=SC2086 # word splitting of $suites is intended
AUTHBAN_BUILD=$out timeout --kill-after=30 "${ASAN_TIMEOUT:-2400}" \
    cargo test --release --no-fail-fast -p authban $suites -- --test-threads=2 || status=$?

found=$(find "$reports" -type f | sort)
if [ -n "$found" ]; then
    echo "asan: AddressSanitizer reports:" >&2
    for f in $found; do
        echo "=== $f" >&2
        cat "$f" >&2
    done
    exit 1
fi
if [ "$status" -ne 0 ]; then
    echo "asan: the integration suite failed under ASan (status $status)" >&2
    exit "$status"
fi
echo "asan: integration suite passed, no AddressSanitizer report" >&2
