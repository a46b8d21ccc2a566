#!/usr/bin/env bash
# `make fuzz`: builds the fuzz targets in fuzz/ with cargo-fuzz (libFuzzer)
# and runs each for FUZZ_SECONDS (default 60), one after another. Fails if
# any target crashes; the crashing input is left in fuzz/artifacts/<target>/
# (add it to fuzz/regressions/<target>/ and to src/fuzz_regressions.rs).
#
#   FUZZ_SECONDS=600 make fuzz          # the long runs
#   FUZZ_SECONDS=5 make fuzz            # a smoke test, as in CI
#   FUZZ_TARGETS="table_ops" make fuzz  # some targets only
#
# Toolchain: only stable Rust is installed, and cargo-fuzz needs nightly
# flags (-Zsanitizer=address, and the sanitizer-coverage instrumentation it
# asks rustc for). RUSTC_BOOTSTRAP=1 lets stable rustc accept them. It is
# set here, for the fuzz/ crate only (its own workspace and target dir), so
# the module itself keeps building with plain stable and nothing else sees
# unstable features.
#
# Each run replays fuzz/seeds/<target>/ and fuzz/regressions/<target>/ and
# grows a local corpus in fuzz/corpus/<target>/ (not committed), so later
# runs start where earlier ones stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

seconds=${FUZZ_SECONDS:-60}
targets=${FUZZ_TARGETS:-mgmt_query state_file directives table_ops fleet_session crowdsec_stream}

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    timeout 1200 cargo install cargo-fuzz --locked
fi
# libFuzzer (built by libfuzzer-sys) is C++.
command -v c++ >/dev/null 2>&1 || scripts/deps.sh g++

export RUSTC_BOOTSTRAP=1
# cargo-fuzz builds optimised with debug assertions and overflow checks on
# (an arithmetic slip in the engine is a crash here, not a wrapped value)
# and with AddressSanitizer (the table works on raw slices of a region).
build_flags=(--sanitizer address)

echo "fuzz: building the fuzz targets" >&2
timeout 1800 cargo fuzz build --fuzz-dir fuzz "${build_flags[@]}"

failed=()
for t in $targets; do
    mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t" "fuzz/regressions/$t"
    args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    [ -f "fuzz/dicts/$t.dict" ] && args+=(-dict="fuzz/dicts/$t.dict")
    [ "$t" = table_ops ] && args+=(-max_len=8192)
    echo "fuzz: $t for ${seconds}s" >&2
    if ! timeout --kill-after=30 $((seconds + 300)) \
        cargo fuzz run --fuzz-dir fuzz "${build_flags[@]}" "$t" \
        "fuzz/corpus/$t" "fuzz/seeds/$t" "fuzz/regressions/$t" -- "${args[@]}"; then
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "fuzz: all targets ran ${seconds}s without a crash" >&2
