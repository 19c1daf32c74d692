#!/usr/bin/env bash
# Coverage-guided fuzzing of the forwarding path (fuzz/, libFuzzer through cargo-fuzz) for a
# bounded time. Exits non-zero on a finding (the crashing input is in fuzz/artifacts/pipeline/).
#
#   ci/fuzz.sh [seconds]        default: $FUZZ_SECONDS or 60
#
# Installs cargo-fuzz only if it is missing. The toolchain is stable: cargo-fuzz's -Z flags
# are accepted through RUSTC_BOOTSTRAP=1, and no sanitizer is used (ASan needs nightly's
# -Zsanitizer; the code under test is safe Rust, the invariants are the harness's asserts
# and the pipeline's debug assertions and overflow checks, which the fuzz build keeps on
# with --debug-assertions).
#
# Environment:
#   FUZZ_SECONDS               run time when no argument is given (default 60)
#   VROUTER_FUZZ_FRAG_ORACLE   1: judge IPv4 fragments / IPv6 extension headers for the
#                              fragment-table target behaviour (default 0: today's pipeline
#                              keys them with ports 0 and fails it; see fuzz/README.md)
#   VROUTER_FUZZ_L2_ORACLE     1: judge bridged frames between VMs too (default 0)
#   FUZZ_CORPUS                working corpus directory (default fuzz/target/corpus-work;
#                              the committed seeds in fuzz/corpus/pipeline are read, not written)
set -euo pipefail

cd "$(dirname "$0")/.."
secs=${1:-${FUZZ_SECONDS:-60}}
start=$(date +%s)

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "[fuzz] installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
export VROUTER_FUZZ_FRAG_ORACLE=${VROUTER_FUZZ_FRAG_ORACLE:-0}
export VROUTER_FUZZ_L2_ORACLE=${VROUTER_FUZZ_L2_ORACLE:-0}

cd fuzz
echo "[fuzz] building (cargo fuzz build --sanitizer none --debug-assertions pipeline)"
cargo fuzz build --sanitizer none --debug-assertions pipeline
built=$(date +%s)

work=${FUZZ_CORPUS:-target/corpus-work}
mkdir -p "$work" artifacts/pipeline
echo "[fuzz] running pipeline for ${secs}s (frag oracle ${VROUTER_FUZZ_FRAG_ORACLE}, l2 oracle ${VROUTER_FUZZ_L2_ORACLE})"
set +e
cargo fuzz run --sanitizer none --debug-assertions pipeline "$work" corpus/pipeline -- \
    -max_total_time="$secs" -max_len=2048 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 2>&1 | tee target/fuzz-last.log
rc=${PIPESTATUS[0]}
set -e
end=$(date +%s)
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' target/fuzz-last.log | tail -1)
eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' target/fuzz-last.log | tail -1)
echo "[fuzz] ${runs:-?} inputs, ${eps:-?} exec/s; build $((built - start))s, run $((end - built))s"
if [ "$rc" -ne 0 ]; then
    echo "[fuzz] FINDING (exit $rc): see fuzz/artifacts/pipeline/; minimize with"
    echo "[fuzz]   (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz tmin --sanitizer none --debug-assertions pipeline artifacts/pipeline/<crash-file>)"
    exit "$rc"
fi
echo "[fuzz] OK"
