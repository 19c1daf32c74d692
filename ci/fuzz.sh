#!/usr/bin/env bash
# Coverage-guided fuzzing of the forwarding path (fuzz/, libFuzzer through cargo-fuzz) for a
# bounded time. Exits non-zero on a finding (the crashing input is in fuzz/artifacts/pipeline/).
#
#   ci/fuzz.sh [seconds]        default: $FUZZ_SECONDS or 60
#
# Builds the target with plain cargo and the instrumentation flags cargo-fuzz would pass
# (SanitizerCoverage through stable -C options; libFuzzer itself comes from libfuzzer-sys),
# so nothing needs installing and no nightly feature is used. No sanitizer: the code under
# test is safe Rust; the invariants are the harness's checks plus the pipeline's debug
# assertions and overflow checks, which this build keeps on.
#
# Environment:
#   FUZZ_SECONDS               run time when no argument is given (default 60)
#   VROUTER_FUZZ_FRAG_ORACLE   0: do not judge IPv4 fragments / IPv6 extension headers
#                              (default on; see fuzz/README.md)
#   VROUTER_FUZZ_L2_ORACLE     0: do not judge bridged frames between VMs (default on)
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
export VROUTER_FUZZ_FRAG_ORACLE=${VROUTER_FUZZ_FRAG_ORACLE:-1}
export VROUTER_FUZZ_L2_ORACLE=${VROUTER_FUZZ_L2_ORACLE:-1}

triple=$(rustc -vV | sed -n 's/^host: //p')
cd fuzz
echo "[fuzz] building the pipeline target (SanitizerCoverage, debug assertions, $triple)"
# --target keeps build scripts uninstrumented, as cargo-fuzz does.
RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks" \
    cargo build --release --target "$triple" --bin pipeline
bin="target/$triple/release/pipeline"
built=$(date +%s)

work=${FUZZ_CORPUS:-target/corpus-work}
mkdir -p "$work" artifacts/pipeline
echo "[fuzz] running pipeline for ${secs}s (frag oracle ${VROUTER_FUZZ_FRAG_ORACLE}, l2 oracle ${VROUTER_FUZZ_L2_ORACLE})"
set +e
"$bin" "$work" corpus/pipeline \
    -max_total_time="$secs" -max_len=2048 -timeout=10 -rss_limit_mb=2048 -artifact_prefix=artifacts/pipeline/ \
    -print_final_stats=1 2>&1 | tee target/fuzz-last.log
rc=${PIPESTATUS[0]}
set -e
end=$(date +%s)
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' target/fuzz-last.log | tail -1)
eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' target/fuzz-last.log | tail -1)
echo "[fuzz] ${runs:-?} inputs, ${eps:-?} exec/s; build $((built - start))s, run $((end - built))s"
if [ "$rc" -ne 0 ]; then
    echo "[fuzz] FINDING (exit $rc): see fuzz/artifacts/pipeline/; minimize with"
    echo "[fuzz]   fuzz/$bin -minimize_crash=1 -runs=100000 fuzz/artifacts/pipeline/<crash-file>"
    exit "$rc"
fi
echo "[fuzz] OK"
