#!/usr/bin/env bash
# Run the vRouter on the bundled demo topology (demo/demo.toml): a fabric port and two VM
# ports, all DPDK pcap virtual devices, so no NIC and no hugepages are needed.
#
#   ./ci/demo.sh                  runs in the foreground until Ctrl-C
#   DEMO_SECONDS=10 ./ci/demo.sh  stops it (SIGINT) after 10 seconds
#
# A few seconds in, while the vRouter runs, it prints the headline: `flow -l` with each flow's
# mirror statistics to both analyzers (MStats, SMStats), the collector's flow records with
# analyzer names and mirrored bytes and packets, and the VMI and vRouter UVEs with their mirror
# counters. When the vRouter has stopped, it prints `vif --list`, `dropstats`, `mirror --dump`,
# the traces, the mirror copies decoded field by field by the Wireshark dissector
# (tools/wireshark/vrouter_mirror.lua) and what the vRouter sent out of each port.
#
# Needs root (DPDK keeps its runtime files in /var/run/dpdk/vrouter-demo): when not root, the
# setup and the build run as the calling user and the vRouter itself runs under sudo.
#
# Environment: DEMO_SECONDS (see above), DEMO_CONFIG (default demo/demo.toml), DEMO_BIN (the
# directory of the built binaries, default target/release).
set -euo pipefail

cd "$(dirname "$0")/.."

CONFIG="${DEMO_CONFIG:-demo/demo.toml}"
BIN="${DEMO_BIN:-target/release}"
DEMO_SECONDS="${DEMO_SECONDS:-}"
if [ -n "$DEMO_SECONDS" ] && ! [[ "$DEMO_SECONDS" =~ ^[0-9]+$ ]]; then
    echo "demo.sh: DEMO_SECONDS must be a whole number of seconds" >&2
    exit 2
fi

log() { printf '[demo] %s\n' "$*"; }

if [ "${1:-}" != "--no-setup" ]; then
    bash ci/setup.sh
    for f in demo/vm1.pcap demo/vm2.pcap demo/fabric.pcap; do
        if [ ! -s "$f" ]; then
            log "generating the demo traffic (demo/gen_demo_pcap.py)"
            python3 demo/gen_demo_pcap.py
            break
        fi
    done
    if [ "$(id -u)" -ne 0 ]; then
        log "not root: running the vRouter through sudo"
        exec sudo env DEMO_SECONDS="$DEMO_SECONDS" DEMO_CONFIG="$CONFIG" DEMO_BIN="$BIN" bash ci/demo.sh --no-setup
    fi
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: the vRouter needs root (or run ./ci/demo.sh as a sudoer)" >&2
    exit 1
fi
if [ ! -x "$BIN/vrouter" ]; then
    echo "demo.sh: $BIN/vrouter is missing (cargo build --release --workspace)" >&2
    exit 1
fi

# The run directory holds the stats region and the tx pcaps; the pcap device cannot create
# the directory of its tx_pcap file, so it must exist before the EAL starts.
RUN_DIR=$(sed -n 's/^[[:space:]]*run_dir[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$CONFIG" | head -n1)
if [ -z "$RUN_DIR" ]; then
    echo "demo.sh: no run_dir in $CONFIG" >&2
    exit 1
fi
mkdir -p "$RUN_DIR"
rm -f "$RUN_DIR"/*-out.pcap

# The analytics collector next to the vRouter (Sandesh on 127.0.0.1:8086, where the vRouter
# exports by default; REST API on 127.0.0.1:8081), its database in the run directory.
COLLECTOR_HTTP=127.0.0.1:8081
cpid=""
if [ -x $BIN/collector ]; then
    # A fresh database per demo run, so what it shows is this run's traffic.
    rm -rf "$RUN_DIR/collector"
    mkdir -p "$RUN_DIR/collector"
    log "$BIN/collector --data-dir $RUN_DIR/collector (REST API http://$COLLECTOR_HTTP)"
    $BIN/collector --data-dir "$RUN_DIR/collector" --sandesh-listen 127.0.0.1:8086 \
        --http-listen "$COLLECTOR_HTTP" --hostname demo-collector </dev/null \
        >"$RUN_DIR/collector.out" 2>"$RUN_DIR/collector.log" &
    cpid=$!
    for _ in $(seq 50); do
        [ -s "$RUN_DIR/collector.out" ] && break
        kill -0 "$cpid" 2>/dev/null || break
        sleep 0.1
    done
    if ! kill -0 "$cpid" 2>/dev/null; then
        log "the collector did not start (see $RUN_DIR/collector.log); continuing without it"
        cpid=""
    fi
else
    log "($BIN/collector is missing: no analytics collector)"
fi
stop_collector() {
    if [ -n "$cpid" ]; then
        kill -TERM "$cpid" 2>/dev/null || true
        wait "$cpid" 2>/dev/null || true
        cpid=""
    fi
}
trap stop_collector EXIT
# The headline, while the vRouter runs (the UVEs live as long as its session): flows mirrored to
# two analyzers, in the flow table and in analytics.
show_headline() {
    echo
    log "$BIN/flow --run-dir $RUN_DIR -l (while the vRouter runs; MStats/SMStats: packets/bytes mirrored to the primary/secondary analyzer)"
    "$BIN/flow" --run-dir "$RUN_DIR" -l || log "(flow -l failed)"
    [ -n "$cpid" ] || return 0
    echo
    log "analytics while the vRouter runs: flow records with analyzer names and mirror bytes, UVEs with mirror counters"
    python3 - "$COLLECTOR_HTTP" <<'PY' || log "(querying the collector failed)"
import json, sys, time, urllib.request
base = "http://" + sys.argv[1]
def call(path, body=None):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)
fields = ["sourceip", "sport", "destip", "dport", "protocol", "action", "agg-packets", "agg-bytes",
          "analyzer_name", "agg-mir-packets", "agg-mir-bytes", "sec_analyzer_name", "agg-sec-mir-packets",
          "agg-sec-mir-bytes"]
q = {"table": "FlowRecordTable", "start_time": "now-1h", "end_time": "now", "select_fields": fields,
     "where": [[{"name": "analyzer_name", "value": "demo-analyzer", "op": 1}]],
     "sort_fields": ["agg-mir-bytes"], "sort": 2, "limit": 10}
rows = []
for _ in range(50):
    try:
        rows = call("/analytics/query", q)["value"]
    except Exception:
        rows = []
    if rows:
        break
    time.sleep(0.2)
print(f"POST /analytics/query FlowRecordTable where analyzer_name=demo-analyzer: {len(rows)} mirrored flows (top 10 by agg-mir-bytes)")
for r in rows:
    print("  " + " ".join(f"{k}={'-' if r.get(k) is None else r[k]}" for k in fields))
def uve(t, name):
    return call(f"/analytics/uves/{t}/{name}?flat")
for u in call("/analytics/uves/virtual-machine-interfaces"):
    raw = uve("virtual-machine-interface", u["name"]).get("VMIStats", {}).get("raw_if_stats", {})
    print(f"  VMI UVE {u['name']}: raw_if_stats " +
          " ".join(f"{k}={raw.get(k)}" for k in ("in_pkts", "out_pkts", "mir_pkts", "mir_bytes")))
for u in call("/analytics/uves/vrouters"):
    agent = uve("vrouter", u["name"]).get("VrouterStatsAgent", {})
    print(f"  vRouter UVE {u['name']}: VrouterStatsAgent " +
          " ".join(f"{k}={agent.get(k)}" for k in ("in_tpkts", "out_tpkts", "mir_tpkts", "mir_bytes")))
PY
}
if [ -n "$cpid" ]; then
    log "query it while the demo runs: curl -s http://$COLLECTOR_HTTP/analytics/uves (README: Analytics collector)"
fi

# One packet-trace request, enabled: vm1's TCP connection to vm2:80 (its first packet is held
# for flow setup, then released). Requests persist in the run directory; this replaces them.
DEMO_TRACE_ID=dddddddd-de00-4000-8000-000000000080
mkdir -p "$RUN_DIR"
cat >"$RUN_DIR/trace-requests.json" <<EOF
{"version": 1, "requests": [{"id": "$DEMO_TRACE_ID", "condition": {"protocol": 6, "dst_port": 80},
 "scope": {"type": "vrouter"}, "limit": {"packets": 5}, "enabled": true, "creationTimestampMs": $(($(date +%s) * 1000))}]}
EOF
log "trace request $DEMO_TRACE_ID: tcp dst port 80, 5 packets, enabled ($RUN_DIR/trace-requests.json)"

if [ -n "$DEMO_SECONDS" ]; then
    log "$BIN/vrouter --config $CONFIG (stops after ${DEMO_SECONDS}s)"
else
    log "$BIN/vrouter --config $CONFIG (Ctrl-C stops it)"
fi

# Start it as its own job (set -m): a background command of a script would otherwise
# inherit SIGINT as ignored. The script forwards Ctrl-C / SIGTERM to it.
set -m
$BIN/vrouter --config "$CONFIG" </dev/null &
pid=$!
set +m
stop() { kill -INT "$pid" 2>/dev/null || true; }
trap stop INT TERM

start=$(date +%s)
stop_sent=""
# The headline once the demo traffic is through and exported (4 s in, or just before the stop
# of a shorter run).
HEADLINE_AT=4
if [ -n "$DEMO_SECONDS" ] && [ "$DEMO_SECONDS" -le "$HEADLINE_AT" ]; then
    HEADLINE_AT=$((DEMO_SECONDS > 1 ? DEMO_SECONDS - 1 : 0))
fi
headline_shown=""
while kill -0 "$pid" 2>/dev/null; do
    now=$(date +%s)
    if [ -z "$headline_shown" ] && [ $((now - start)) -ge "$HEADLINE_AT" ]; then
        show_headline
        headline_shown=1
    fi
    if [ -n "$DEMO_SECONDS" ] && [ -z "$stop_sent" ] && [ $((now - start)) -ge "$DEMO_SECONDS" ]; then
        log "$BIN/trace --run-dir $RUN_DIR show (the trace requests, from the running vRouter):"
        $BIN/trace --run-dir "$RUN_DIR" show || log "(trace show failed)"
        log "${DEMO_SECONDS}s elapsed: sending SIGINT"
        stop
        stop_sent=$now
    fi
    if [ -n "$stop_sent" ] && [ $((now - stop_sent)) -ge 15 ]; then
        log "still running 15s after SIGINT: killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # A Ctrl-C also hits this sleep; the trap has forwarded it, carry on waiting.
    sleep 0.2 || true
done
trap - INT TERM
set +e
wait "$pid"
rc=$?
set -e
log "vrouter exited with status $rc"

run_tool() {
    local tool=$1
    shift
    echo
    log "$BIN/$tool --run-dir $RUN_DIR${*:+ $*}"
    if [ -x "$BIN/$tool" ]; then
        "$BIN/$tool" --run-dir "$RUN_DIR" "$@" || log "($tool failed)"
    else
        log "($BIN/$tool is missing)"
    fi
}
run_tool vif --list
run_tool dropstats
run_tool mirror --dump
run_tool trace list
# The first trace's step-by-step story.
first_trace=$($BIN/trace --run-dir "$RUN_DIR" list --json 2>/dev/null |
    python3 -c 'import json, sys; t = json.load(sys.stdin); print(t[0]["trace_id"] if t else "")' 2>/dev/null || true)
if [ -n "$first_trace" ]; then
    run_tool trace get "$first_trace"
fi

if [ -n "$cpid" ]; then
    echo
    log "the collector's flow records and UVEs (POST /analytics/query, GET /analytics/uves/...):"
    python3 - "$COLLECTOR_HTTP" <<'PY' || log "(querying the collector failed)"
import json, sys, urllib.request
base = "http://" + sys.argv[1]
def call(path, body=None):
    req = urllib.request.Request(base + path, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)
q = {"table": "FlowRecordTable", "start_time": "now-1h", "end_time": "now",
     "select_fields": ["vrouter", "sourceip", "sport", "destip", "dport", "protocol", "action",
                       "agg-bytes", "agg-packets", "agg-mir-bytes", "agg-mir-packets", "analyzer_name"],
     "sort_fields": ["agg-bytes"], "sort": 2, "limit": 20}
rows = call("/analytics/query", q)["value"]
print(f"FlowRecordTable: {len(rows)} flow records (top 20 by bytes)")
for r in rows:
    print("  " + " ".join(f"{k}={'-' if r[k] is None else r[k]}" for k in q["select_fields"]))
for t in ("virtual-machine-interfaces", "vrouters"):
    print(f"{t}: {[u['name'] for u in call('/analytics/uves/' + t)]}")
print("(UVEs live as long as the vRouter's session: query them while the demo runs)")
traces = call("/analytics/traces")["value"]
print(f"traces exported (GET /analytics/traces): {len(traces)}")
for t in traces[:5]:
    print("  " + json.dumps(t))
stats = call("/analytics/collector/stats")
print("collector: " + ", ".join(f"{k}={stats[k]}" for k in
      ("sessions_established", "frames_received", "flow_records_stored", "uve_updates_stored", "malformed_frames")))
PY
    stop_collector
fi

echo
if ! command -v tshark >/dev/null 2>&1; then
    log "output pcaps: $RUN_DIR/*-out.pcap (install tshark to print them)"
    stop_collector
    exit "$rc"
fi
DISSECTOR=tools/wireshark/vrouter_mirror.lua
if [ -f "$DISSECTOR" ] && [ -e "$RUN_DIR/fabric-out.pcap" ]; then
    log "the mirror copies on the fabric, decoded by the Wireshark dissector (tshark -X lua_script:$DISSECTOR):"
    # Per analyzer and kind of copy: how many, and the first two with the inner packet.
    tshark -X "lua_script:$DISSECTOR" -r "$RUN_DIR/fabric-out.pcap" -Y vrouter_mirror -T fields -E separator='|' \
        -e ip.dst -e ip.src -e vrouter_mirror.kind -e vrouter_mirror.source_vn -e vrouter_mirror.dest_vn \
        -e vrouter_mirror.flags.ingress -e frame.len -e _ws.col.Protocol 2>/dev/null | python3 -c '
import collections, sys
groups = collections.OrderedDict()
for line in sys.stdin:
    dst, src, kind, svn, dvn, ing, flen, proto = (line.rstrip("\n").split("|") + [""] * 8)[:8]
    outer, inner = dst.split(",")[0], dst.split(",")[1:]
    isrc = src.split(",")[1:]
    groups.setdefault((outer, kind), []).append((proto, isrc, inner, svn, dvn, ing, flen))
def j(x):
    return ",".join(x) or "-"
for (analyzer, kind), copies in groups.items():
    print("  analyzer %s %s: %d copies" % (analyzer, kind, len(copies)))
    for proto, isrc, inner, svn, dvn, ing, flen in copies[:2]:
        print("    inner %s %s -> %s source_vn=%s dest_vn=%s ingress=%s frame %s bytes"
              % (proto, j(isrc), j(inner), svn or "-", dvn or "-", ing or "-", flen))
'

fi
log "packets the vRouter sent (tshark -r FILE):"
for f in "$RUN_DIR"/*-out.pcap; do
    [ -e "$f" ] || continue
    n=$(tshark -r "$f" 2>/dev/null | wc -l)
    echo "--- $f: $n packets"
    tshark -r "$f" 2>/dev/null | head -n 40
done
exit "$rc"
