#!/usr/bin/env bash
# The whole test suite:
#   1. ci/setup.sh --deps-only (packages, toolchain with rustfmt and clippy);
#   2. `cargo fmt --check` (rustfmt.toml);
#   3. the test build, `cargo test --workspace --profile test-release --no-run`, compiled by
#      clippy-driver with warnings denied: clippy's lints (the workspace lints of Cargo.toml)
#      run in the same pass that compiles the test binaries, which is what
#      `cargo clippy --all-targets -- -D warnings` checks, without a second build;
#   4. the tests, and a pass/fail summary;
#   5. coverage-guided fuzzing of the forwarding path (ci/fuzz.sh), built and run in the
#      background from the start so that it uses the CPU the build and the tests leave idle.
# The test-release profile is optimised (the data-plane integration tests run a real DPDK EAL
# and compare frames, slow in debug) but cheap to build (Cargo.toml says how). The release
# binaries (ci/setup.sh, the demo, the benchmarks) keep the release profile.
#
# Needs root or sudo: DPDK keeps its runtime files in /var/run/dpdk/<file-prefix>. When not
# root, the test binaries (only) are run through `sudo -E`.
#
# Environment:
#   TEST_HUGEPAGES   2 MiB huge pages ci/setup.sh reserves (and hugetlbfs at /dev/hugepages)
#                    for the tests on huge pages (default 512 = 1 GiB; they need ~120 and grow
#                    the pool themselves as root when short); with a non-zero value those tests
#                    must run (VROUTER_HUGEPAGE_TESTS=require), 0 lets them skip
#   TEST_THREADS     libtest threads per test binary (default 2; the machine has 2 cores)
#   TEST_TIMEOUT_S   stop the test run after this many seconds (default 1500)
#   FUZZ_SECONDS     fuzz the forwarding path this long with ci/fuzz.sh (default 60; 0 skips
#                    it). A finding fails the suite.
#   FUZZ_TIMEOUT_S   bound on the whole fuzz step, build included (default 900)
#   FUZZ_OPT_LEVEL   optimisation level of the fuzz build here (default 1)
#   extra arguments  passed to `cargo test` (e.g. `ci/test.sh -p vrouter`)
set -euo pipefail

cd "$(dirname "$0")/.."
start=$(date +%s)
since() { echo "$(($(date +%s) - $1))s"; }

hugepages=${TEST_HUGEPAGES:-512}
if [ "$hugepages" != "0" ]; then
    bash ci/setup.sh --deps-only --hugepages "$hugepages"
    # The tests on huge pages fail rather than skip (they skip when not root, or when the
    # kernel grants too few pages).
    export VROUTER_HUGEPAGE_TESTS=require
else
    bash ci/setup.sh --deps-only
fi

# setup.sh installed clickhouse-server: the collector's ClickHouse tests fail rather than skip.
export COLLECTOR_REQUIRE_CLICKHOUSE=1

if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

log=$(mktemp -t vrouter-test.XXXXXX.log)
fuzz_log=$(mktemp -t vrouter-fuzz.XXXXXX.log)
fuzz_pid=""
cleanup() {
    [ -n "$fuzz_pid" ] && kill -- "$fuzz_pid" 2>/dev/null
    rm -f "$log" "$fuzz_log"
}
trap cleanup EXIT

# The fuzz step (its own workspace and flags; no EAL, so not through sudo) in the background.
fuzz_secs=${FUZZ_SECONDS:-60}
if [ "$fuzz_secs" != "0" ]; then
    echo "[test] ci/fuzz.sh $fuzz_secs (in the background; its log follows the tests)"
    # timeout passes a signal it gets on to ci/fuzz.sh: the cleanup's kill stops the step.
    # A smoke run: LLVM's cheap optimisation level and no debug info build the target in
    # about half the time (long runs use ci/fuzz.sh on its own, fully optimised).
    CARGO_PROFILE_RELEASE_OPT_LEVEL=${FUZZ_OPT_LEVEL:-1} CARGO_PROFILE_RELEASE_DEBUG=false \
        timeout --signal=INT --kill-after=30 "${FUZZ_TIMEOUT_S:-900}" bash ci/fuzz.sh "$fuzz_secs" >"$fuzz_log" 2>&1 &
    fuzz_pid=$!
fi

# ci/setup.sh installed Prometheus: the metrics test must run rather than skip.
export VROUTER_PROMETHEUS_TESTS=require

if [ "$(id -u)" -ne 0 ]; then
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="sudo -E"
fi
# Through the environment rather than `-- --test-threads`: test binaries with their own
# harness (harness = false, one EAL per process) do not take libtest's arguments.
export RUST_TEST_THREADS="${TEST_THREADS:-2}"

echo "[test] cargo fmt --check"
cargo fmt --all --check
(cd fuzz && cargo fmt --all --check)

# clippy-driver compiles the workspace's crates (dependencies are built by rustc with their
# lints capped, as under `cargo clippy`); -D warnings denies rustc's and clippy's warnings.
# The same environment for the build and the run, so the run finds nothing to rebuild.
RUSTC_WORKSPACE_WRAPPER=$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
export RUSTC_WORKSPACE_WRAPPER
# lld links the ~60 test binaries in a fraction of the time GNU ld takes.
export RUSTFLAGS="${RUSTFLAGS:-} -D warnings -C link-arg=-fuse-ld=lld"

echo "[test] cargo test --workspace --profile test-release --no-run (clippy-driver, -D warnings)"
t=$(date +%s)
set +e
cargo test --workspace --profile test-release --no-run "$@"
build_rc=$?
set -e
echo "[test] build and lints: $(since "$t")"

echo "[test] cargo test --workspace --profile test-release --no-fail-fast $* (RUST_TEST_THREADS=$RUST_TEST_THREADS)"
t=$(date +%s)
rc=$build_rc
if [ "$build_rc" -eq 0 ]; then
    set +e
    timeout --signal=INT --kill-after=30 "${TEST_TIMEOUT_S:-1500}" \
        cargo test --workspace --profile test-release --no-fail-fast "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
fi
echo "[test] run: $(since "$t")"

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

fuzz_rc=0
if [ -n "$fuzz_pid" ]; then
    t=$(date +%s)
    wait "$fuzz_pid" || fuzz_rc=$?
    fuzz_pid=""
    cat "$fuzz_log"
    echo "[test] fuzz: exit $fuzz_rc (waited $(since "$t") for it after the tests)"
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
elif [ "$build_rc" -ne 0 ]; then
    echo "[test] FAILED: the build or a lint (cargo exit $build_rc) after ${elapsed}s"
elif [ "$rc" -ne 0 ]; then
    echo "[test] FAILED (cargo exit $rc) after ${elapsed}s"
else
    echo "[test] OK after ${elapsed}s"
fi
exit "$rc"
