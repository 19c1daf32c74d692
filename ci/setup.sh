#!/usr/bin/env bash
# Idempotent setup on Debian 12: install what the build, the tests and the demo need, then
# `cargo build --release --workspace`. Safe to run again and again: when everything is
# present it only checks (dpkg-query) and lets cargo find nothing to do.
#
#   ci/setup.sh              packages + release build
#   ci/setup.sh --deps-only  packages (and the Rust toolchain) only
#   --hugepages N            also: at least N 2 MiB huge pages in the kernel's pool and a
#                            hugetlbfs mounted at /dev/hugepages (never lowers the pool, never
#                            mounts twice; says so when the kernel grants fewer than N)
#
# Runs from any directory. Uses sudo for apt and the huge pages only when not root.
set -euo pipefail

cd "$(dirname "$0")/.."

BUILD=1
HUGEPAGES=""
while [ $# -gt 0 ]; do
    case "$1" in
        --deps-only) BUILD=0 ;;
        --hugepages)
            HUGEPAGES=${2:-}
            shift
            ;;
        --hugepages=*) HUGEPAGES=${1#--hugepages=} ;;
        -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "setup.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
if [ -n "$HUGEPAGES" ] && ! [[ "$HUGEPAGES" =~ ^[0-9]+$ ]]; then
    echo "setup.sh: --hugepages needs a number of 2 MiB pages, got '$HUGEPAGES'" >&2
    exit 2
fi

export DEBIAN_FRONTEND=noninteractive

log() { printf '[setup] %s\n' "$*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "setup.sh: not root and sudo is not installed; run as root" >&2
        exit 1
    fi
    SUDO=(sudo --preserve-env=DEBIAN_FRONTEND)
fi

# Huge pages (--hugepages N): the 2 MiB pool grown to N pages (the 2 MiB counterpart of
# /proc/sys/vm/nr_hugepages, right even where the default huge page size is 1 GiB) and
# hugetlbfs at /dev/hugepages, as systemd mounts it (no size= limit). Run time only: a reboot
# loses both (vm.nr_hugepages in /etc/sysctl.d and an fstab line keep them).
reserve_hugepages() {
    local want=$1 pool=/sys/kernel/mm/hugepages/hugepages-2048kB have got free
    if [ ! -d "$pool" ]; then
        echo "setup.sh: --hugepages: the kernel has no 2 MiB huge pages ($pool is missing)" >&2
        exit 1
    fi
    have=$(cat "$pool/nr_hugepages")
    if [ "$have" -lt "$want" ]; then
        log "huge pages: growing the 2 MiB pool from $have to $want pages ($pool/nr_hugepages)"
        echo "$want" | "${SUDO[@]}" tee "$pool/nr_hugepages" >/dev/null
    fi
    got=$(cat "$pool/nr_hugepages")
    free=$(cat "$pool/free_hugepages")
    if [ "$got" -lt "$want" ]; then
        echo "setup.sh: WARNING: asked the kernel for $want 2 MiB huge pages, it granted $got" \
            "($((got * 2)) MiB; too little free contiguous memory?); what needs more will say so" >&2
    else
        log "huge pages: $got 2 MiB pages in the pool, $free free"
    fi
    if awk '$2 == "/dev/hugepages" && $3 == "hugetlbfs" { found = 1 } END { exit !found }' /proc/mounts; then
        log "huge pages: hugetlbfs already mounted at /dev/hugepages"
    else
        log "huge pages: mounting hugetlbfs (pagesize=2M) at /dev/hugepages"
        "${SUDO[@]}" mkdir -p /dev/hugepages
        "${SUDO[@]}" mount -t hugetlbfs -o pagesize=2M hugetlbfs /dev/hugepages
    fi
}
if [ -n "$HUGEPAGES" ]; then
    reserve_hugepages "$HUGEPAGES"
fi

# Debian packages: DPDK 22.11 (headers, pkg-config file, PMDs; `dpdk-dev` has dpdk-testpmd,
# the benchmark's upper bound), libclang for bindgen, lld (ci/test.sh links its ~60 test
# binaries with it), libpcap for the pcap PMD, a C toolchain for the shim, python3 for the
# demo and bench traffic generators, tshark to read the pcaps (and, with the Lua dissector of
# tools/wireshark/, the mirror copies), iproute2 for test namespaces, systemd for
# `systemd-analyze verify` of the unit files in deploy/systemd/ (no running systemd needed),
# prometheus for the metrics test (vrouter/tests/prometheus.rs starts a Prometheus server on
# loopback; promtool, in the same package, checks the expositions; the package's own service
# is not started without a running systemd); nfdump for the real IPFIX collector (nfcapd) and
# reader (nfdump) of vrouter/tests/ipfix_export.rs; clickhouse-server (18.16) for the
# collector's ClickHouse backend: its tests start their own server on loopback as the current
# user, so the packaged service is not needed (see below).
PACKAGES=(
    libdpdk-dev dpdk dpdk-dev pkg-config libclang-dev libpcap-dev build-essential lld
    python3 tshark iproute2 ca-certificates systemd prometheus nfdump clickhouse-server
)

installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]
}

# Cargo from rustup (~/.cargo/bin) may not be on PATH in a non-login shell.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
NEED_RUST=0
command -v cargo >/dev/null 2>&1 || NEED_RUST=1

missing=()
for p in "${PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
done
if [ "$NEED_RUST" -eq 1 ] && ! installed curl; then
    missing+=(curl)
fi

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    # tshark asks whether non-root users may capture; answer 'no' without a prompt.
    echo "wireshark-common wireshark-common/install-setuid boolean false" |
        "${SUDO[@]}" debconf-set-selections
    "${SUDO[@]}" apt-get update -q
    "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
    # The package enables a system-wide server (ports 8123, 9000) where systemd runs; this
    # setup installed it only for the tests, which run their own: switch it off again.
    if [[ " ${missing[*]} " == *" clickhouse-server "* ]] && [ -d /run/systemd/system ]; then
        "${SUDO[@]}" systemctl disable --now clickhouse-server >/dev/null 2>&1 || true
    fi
else
    log "system packages present"
fi

if [ "$NEED_RUST" -eq 1 ]; then
    log "cargo not found: installing the stable Rust toolchain with rustup (user $(id -un))"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
        sh -s -- -y --profile minimal --default-toolchain stable
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi

# The workspace needs Rust >= rust-version in Cargo.toml (Debian's own rustc is too old).
need=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n1)
have=$(rustc --version | awk '{print $2}')
if [ -n "$need" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
    if command -v rustup >/dev/null 2>&1; then
        log "rustc $have is older than $need: rustup update stable"
        rustup update stable
    else
        echo "setup.sh: rustc $have is older than the required $need and rustup is missing;" >&2
        echo "          remove the distribution's cargo/rustc or install rustup" >&2
        exit 1
    fi
fi

# ci/test.sh checks formatting and lints: rustup's minimal profile has neither tool.
if command -v rustup >/dev/null 2>&1; then
    for c in rustfmt clippy; do
        if ! rustup component list --installed 2>/dev/null | grep -q "^$c"; then
            log "rustup component add $c"
            rustup component add "$c"
        fi
    done
fi
for c in rustfmt clippy-driver; do
    command -v "$c" >/dev/null 2>&1 || { echo "setup.sh: $c is missing (rustup component add ${c%-driver})" >&2; exit 1; }
done

if ! pkg-config --atleast-version=22.11 libdpdk; then
    echo "setup.sh: pkg-config does not find libdpdk >= 22.11 (apt libdpdk-dev)" >&2
    exit 1
fi

if [ "$BUILD" -eq 1 ]; then
    log "cargo build --release --workspace ($(cargo --version))"
    cargo build --release --workspace
fi
log "done"
