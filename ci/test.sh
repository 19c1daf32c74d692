#!/usr/bin/env bash
# The whole test suite: ci/setup.sh --deps-only (packages, toolchain), `cargo fmt --check`,
# `cargo clippy -D warnings`, then `cargo test --workspace --profile test-release`: optimised
# because the data-plane integration tests run a real DPDK EAL and compare frames, which is
# slow in debug; no LTO and parallel codegen because building the test binaries is most of
# the suite's time (Cargo.toml says why). The release binaries (`ci/setup.sh`, the demo, the
# benchmarks) keep the release profile.
#
# Needs root or sudo: DPDK keeps its runtime files in /var/run/dpdk/<file-prefix>. When not
# root, the test binaries (only) are run through `sudo -E`.
#
# Environment:
#   TEST_THREADS     libtest threads per test binary (default 2; the machine has 2 cores)
#   TEST_TIMEOUT_S   stop the test run after this many seconds (default 1500)
#   FUZZ_SECONDS     after the cargo tests, fuzz the forwarding path this long with ci/fuzz.sh
#                    (default 60; 0 skips it). A finding fails the suite. From scratch,
#                    building the fuzz crate (~3 CPU-min from scratch) comes first.
#   FUZZ_TIMEOUT_S   bound on the whole fuzz step, build included (default 900)
#   extra arguments  passed to `cargo test` (e.g. `ci/test.sh -p vrouter`)
set -euo pipefail

cd "$(dirname "$0")/.."
start=$(date +%s)

bash ci/setup.sh --deps-only

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

if [ "$(id -u)" -ne 0 ]; then
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="sudo -E"
fi
# Through the environment rather than `-- --test-threads`: test binaries with their own
# harness (harness = false, one EAL per process) do not take libtest's arguments.
export RUST_TEST_THREADS="${TEST_THREADS:-2}"

log=$(mktemp -t vrouter-test.XXXXXX.log)
trap 'rm -f "$log"' EXIT

# Guards first: they are quick and a finding fails the suite before a long build.
since() { echo "$(($(date +%s) - $1))s"; }
echo "[test] cargo fmt --check"
cargo fmt --all --check
(cd fuzz && cargo fmt --all --check)
echo "[test] cargo clippy --workspace --all-targets --profile test-release -- -D warnings"
t=$(date +%s)
cargo clippy --workspace --all-targets --profile test-release -- -D warnings
echo "[test] clippy: $(since "$t")"

# The build on its own first, so the log says where the time goes.
echo "[test] cargo test --workspace --profile test-release --no-run"
t=$(date +%s)
set +e
cargo test --workspace --profile test-release --no-run "$@"
build_rc=$?
set -e
echo "[test] build: $(since "$t")"

echo "[test] cargo test --workspace --profile test-release --no-fail-fast $* (RUST_TEST_THREADS=$RUST_TEST_THREADS)"
t=$(date +%s)
set +e
timeout --signal=INT --kill-after=30 "${TEST_TIMEOUT_S:-1500}" \
    cargo test --workspace --profile test-release --no-fail-fast "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
echo "[test] run: $(since "$t")"
[ "$build_rc" -eq 0 ] || rc=$build_rc

# Summary: totals over every "test result:" line, and the names of failed tests.
awk '
    /^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/)   passed  += $(i - 1)
            if ($(i) ~ /^failed;?$/)   failed  += $(i - 1)
            if ($(i) ~ /^ignored;?$/)  ignored += $(i - 1)
        }
        suites++
    }
    /^test .* \.\.\. FAILED$/ { sub(/^test /, ""); sub(/ \.\.\. FAILED$/, ""); bad[++nbad] = $0 }
    END {
        printf "\n[test] summary: %d passed, %d failed, %d ignored in %d test suites\n", \
            passed, failed, ignored, suites
        for (i = 1; i <= nbad; i++) printf "[test]   FAILED %s\n", bad[i]
    }
' "$log"

# Coverage-guided fuzzing of the forwarding path, bounded (its build is the fuzz crate's,
# outside the workspace; nothing is installed). Not run as root's runner:
# the fuzz target needs no EAL.
fuzz_rc=0
if [ "${FUZZ_SECONDS:-60}" != "0" ]; then
    echo "[test] ci/fuzz.sh ${FUZZ_SECONDS:-60}"
    fuzz_start=$(date +%s)
    (unset CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER
     timeout --signal=INT --kill-after=30 "${FUZZ_TIMEOUT_S:-900}" bash ci/fuzz.sh "${FUZZ_SECONDS:-60}") || fuzz_rc=$?
    echo "[test] fuzz: exit $fuzz_rc after $(($(date +%s) - fuzz_start))s"
fi

elapsed=$(($(date +%s) - start))
if [ "$rc" -eq 0 ] && [ "$fuzz_rc" -ne 0 ]; then
    if [ "$fuzz_rc" -eq 124 ] || [ "$fuzz_rc" -eq 137 ]; then
        echo "[test] FAILED: the fuzz step ran out of its ${FUZZ_TIMEOUT_S:-900}s (build + run) after ${elapsed}s"
    else
        echo "[test] FAILED: fuzzing found a problem (exit $fuzz_rc) after ${elapsed}s"
    fi
    exit "$fuzz_rc"
fi
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    echo "[test] TIMED OUT after ${TEST_TIMEOUT_S:-1500}s of testing (${elapsed}s in all)"
elif [ "$rc" -ne 0 ]; then
    echo "[test] FAILED (cargo exit $rc) after ${elapsed}s"
else
    echo "[test] OK after ${elapsed}s"
fi
exit "$rc"
