//! The Prometheus exposition of a running vRouter (`vrouter-exporter`, `GET /metrics`), read
//! at scrape time through the same readers the tools use, so a scraped counter is the figure
//! `vif --list --json`, `dropstats --json`, `mirror --dump --json`, `flow -s`, `lcore --stats`
//! and `vrouter-agent-stats` show:
//!
//! | source | reader | families |
//! | --- | --- | --- |
//! | `<run_dir>/stats` | [`crate::load`]'s snapshot, [`crate::perf::read_perf`] | `vrouter_up`, `vrouter_vif_*` (vif id and name), `vrouter_drops_total` (reason), `vrouter_lcore_*` (loop, mirror and performance counters, histograms), `vrouter_rxq_*` |
//! | `<run_dir>/flow` | [`crate::flow::open`] | `vrouter_flow_*`: occupancy (used, hold, overflow), capacity, created/added/processed/deleted |
//! | `<run_dir>/mirror` | [`crate::mirror::load_mirrors`] | `vrouter_mirror_*` per analyzer (index and name) |
//! | `<run_dir>/export.json` | [`vrouter_abi::export::read_counters`] | `vrouter_export_*`: flow records, the Sandesh session, trace steps |
//! | `<run_dir>/control.sock` `status` | [`crate::control::Client::try_status`] | `vrouter_agent_*`, `vrouter_agent_flow_setup_latency_seconds` |
//!
//! Names, types and help come from the declarations the readers share
//! ([`VifCounters::FIELDS`], [`LcoreCounters::FIELDS`], [`LcorePerf::FIELDS`],
//! [`vrouter_abi::mirror::EntryStats::FIELDS`], [`ExportCounters::FIELDS`],
//! [`vrouter_abi::agent::AgentCounters::FIELDS`], the drop reason table): a counter added there is exported
//! without a change here. Counters end in `_total`; a figure kept in milliseconds is
//! exported in seconds (`last_sweep_ms` as `vrouter_export_last_sweep_seconds`), TSC cycles
//! as cycles with `vrouter_tsc_hertz` beside them.
//!
//! A source that cannot be read (the vRouter is stopped, the export is off, the control
//! socket is another user's) leaves its families out and sets
//! `vrouter_exporter_source_up{source="..."}` to 0: the scrape itself succeeds. Per-vif drops
//! by reason are listed only where non-zero (vifs times reasons would be thousands of
//! series of zeros); the vRouter-wide `vrouter_drops_total` lists every reason.

use std::path::Path;

use promtext::{Exposition, ExpositionError, Family};
use vrouter_abi::agent::{AgentStatus, SETUP_LATENCY_BOUNDS_NS};
use vrouter_abi::drop_reason::DropReason;
use vrouter_abi::export::ExportCounters;
use vrouter_abi::fields::{Field, FieldKind};
use vrouter_abi::mirror::EntryStats;
use vrouter_abi::stats::perf::{BURST_SIZE_BOUNDS, PACKET_CYCLES_BOUNDS};
use vrouter_abi::stats::{LcoreCounters, LcorePerf, Liveness, StatsReader, VifCounters};

use crate::mirror::MirrorRow;
use crate::perf::PerfSnapshot;
use crate::{Failure, Snapshot};

/// Where `vrouter-exporter` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9433";

/// The stats region as one scrape reads it: the tools' snapshot and the lcores' counters,
/// from one mapping.
#[derive(Clone, Debug)]
pub struct StatsSource {
    /// Vifs with their counters, global drops, header, liveness (what `vif` and `dropstats`
    /// print).
    pub snapshot: Snapshot,
    /// Every lcore's loop and performance counters (what `lcore --stats` prints).
    pub perf: PerfSnapshot,
}

/// Everything one scrape read; a source that could not be read holds why.
#[derive(Clone, Debug)]
pub struct Sources {
    /// `<run_dir>/stats`.
    pub stats: Result<StatsSource, String>,
    /// `<run_dir>/flow`'s counters.
    pub flow: Result<flow_table::TableStats, String>,
    /// `<run_dir>/mirror`'s entries.
    pub mirror: Result<Vec<MirrorRow>, String>,
    /// `<run_dir>/export.json`.
    pub export: Result<ExportCounters, String>,
    /// The agent's `status`.
    pub agent: Result<AgentStatus, String>,
}

fn read_stats(run_dir: &Path) -> Result<StatsSource, Failure> {
    let mut attempt = 0;
    loop {
        let reader = StatsReader::open(run_dir)?;
        let src =
            StatsSource { snapshot: crate::read_snapshot(&reader, None), perf: crate::perf::read_perf(&reader, None) };
        attempt += 1;
        if !reader.restarted() || attempt == 3 {
            return Ok(src);
        }
    }
}

/// Reads every source of the vRouter whose run directory is `run_dir`.
pub fn read_sources(run_dir: &Path) -> Sources {
    Sources {
        stats: read_stats(run_dir).map_err(|e| e.0),
        flow: crate::flow::open(run_dir).map(|r| r.stats()).map_err(|e| e.0),
        mirror: crate::mirror::load_mirrors(run_dir).map_err(|e| e.0),
        export: vrouter_abi::export::read_counters(run_dir),
        agent: crate::control::Client::new(run_dir, "vrouter-exporter").try_status().map_err(|e| format!("{e:?}")),
    }
}

/// A scrape of `run_dir`: [`read_sources`] then [`render`].
pub fn scrape(run_dir: &Path) -> Result<String, ExpositionError> {
    render(&read_sources(run_dir))
}

/// `help` as a sentence.
fn sentence(help: &str) -> String {
    format!("{help}.")
}

/// The metric name and value scale of a declared figure under `prefix`: counters end in
/// `_total`; `_ms` figures become `_seconds`.
fn figure_name(prefix: &str, f: &Field) -> (String, f64) {
    let (key, scale) = match f.key.strip_suffix("_ms") {
        Some(k) => (format!("{k}_seconds"), 1e-3),
        None => (f.key.to_string(), 1.0),
    };
    match f.kind {
        FieldKind::Counter => (format!("{prefix}_{key}_total"), scale),
        FieldKind::Gauge => (format!("{prefix}_{key}"), scale),
    }
}

/// Writes a declared figure's family with one sample.
fn figure(e: &mut Exposition, prefix: &str, f: &Field, v: u64) -> Result<(), ExpositionError> {
    let (name, scale) = figure_name(prefix, f);
    let help = sentence(f.help);
    let mut fam = match f.kind {
        FieldKind::Counter => e.counter(&name, &help)?,
        FieldKind::Gauge => e.gauge(&name, &help)?,
    };
    if scale == 1.0 {
        fam.sample(&[], v)?;
    } else {
        fam.sample(&[], v as f64 * scale)?;
    }
    Ok(())
}

/// One counter family over rows: `rows` gives each row's labels and value.
fn counter_rows<'r, R: 'r>(
    e: &mut Exposition,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = &'r R>,
    mut sample: impl FnMut(&mut Family<'_>, &'r R) -> Result<(), ExpositionError>,
) -> Result<(), ExpositionError> {
    let mut fam = e.counter(name, &sentence(help))?;
    for r in rows {
        sample(&mut fam, r)?;
    }
    Ok(())
}

/// The exposition of what `s` holds.
pub fn render(s: &Sources) -> Result<String, ExpositionError> {
    let mut e = Exposition::new();
    let up = s.stats.as_ref().is_ok_and(|st| st.snapshot.liveness == Liveness::Running);
    e.gauge("vrouter_up", "1 while the vRouter of the run directory forwards (its stats region is live), else 0.")?
        .sample(&[], up)?;
    {
        let mut f = e.gauge(
            "vrouter_exporter_source_up",
            "1 if the source could be read in this scrape (stats, flow, mirror, export, agent), else 0.",
        )?;
        for (source, ok) in [
            ("stats", s.stats.is_ok()),
            ("flow", s.flow.is_ok()),
            ("mirror", s.mirror.is_ok()),
            ("export", s.export.is_ok()),
            ("agent", s.agent.is_ok()),
        ] {
            f.sample(&[("source", source)], ok)?;
        }
    }
    if let Ok(st) = &s.stats {
        stats_families(&mut e, st)?;
    }
    if let Ok(t) = &s.flow {
        flow_families(&mut e, t)?;
    }
    if let Ok(rows) = &s.mirror {
        mirror_families(&mut e, rows)?;
    }
    if let Ok(c) = &s.export {
        for (f, v) in c.values() {
            figure(&mut e, "vrouter_export", f, v)?;
        }
        e.gauge("vrouter_export_session_state", "The Sandesh session's state: 1 for the current one.")?
            .sample(&[("state", &c.session_state)], 1u64)?;
    }
    if let Ok(a) = &s.agent {
        agent_families(&mut e, a)?;
    }
    Ok(e.into_string())
}

fn stats_families(e: &mut Exposition, st: &StatsSource) -> Result<(), ExpositionError> {
    let snap = &st.snapshot;
    e.gauge("vrouter_start_time_seconds", "Start time of the vRouter run that writes the stats region, Unix seconds.")?
        .sample(&[], snap.header.start_time_unix)?;
    e.gauge("vrouter_tsc_hertz", "TSC frequency of the forwarding lcores (cycles per second).")?
        .sample(&[], snap.header.tsc_hz)?;
    let ids: Vec<String> = snap.vifs.iter().map(|r| r.info.id.to_string()).collect();
    let vif_labels = |i: usize| [("vif", ids[i].as_str()), ("name", snap.vifs[i].info.name.as_str())];
    let rows: Vec<usize> = (0..snap.vifs.len()).collect();
    for (k, field) in VifCounters::FIELDS.iter().enumerate() {
        let name = format!("vrouter_vif_{}_total", field.key);
        counter_rows(e, &name, field.help, &rows, |f, &i| {
            f.sample(&vif_labels(i), snap.vifs[i].counters.values()[k].1).map(|_| ())
        })?;
    }
    counter_rows(e, "vrouter_vif_drops_total", "Packets dropped on the vif, every reason", &rows, |f, &i| {
        f.sample(&vif_labels(i), snap.vifs[i].counters.drops).map(|_| ())
    })?;
    counter_rows(
        e,
        "vrouter_vif_reason_drops_total",
        "Packets dropped on the vif, by reason (only reasons counted at least once)",
        &rows,
        |f, &i| {
            for r in DropReason::ALL {
                let n = snap.vifs[i].drops[r.index()];
                if n != 0 {
                    let [a, b] = vif_labels(i);
                    f.sample(&[a, b, ("reason", r.key())], n)?;
                }
            }
            Ok(())
        },
    )?;
    counter_rows(
        e,
        "vrouter_drops_total",
        "Packets dropped by the vRouter, by reason (dropstats)",
        DropReason::ALL,
        |f, r| f.sample(&[("reason", r.key())], snap.drops[r.index()]).map(|_| ()),
    )?;
    lcore_families(e, &st.perf)
}

/// A figure of a row type: metric name, help, how to read it.
type Figure<T> = (&'static str, &'static str, fn(&T) -> u64);

fn lcore_families(e: &mut Exposition, p: &PerfSnapshot) -> Result<(), ExpositionError> {
    let idx: Vec<String> = p.lcores.iter().map(|l| l.index.to_string()).collect();
    let rows: Vec<usize> = (0..p.lcores.len()).collect();
    for (k, field) in LcoreCounters::FIELDS.iter().enumerate() {
        let name = format!("vrouter_lcore_{}_total", field.key);
        counter_rows(e, &name, field.help, &rows, |f, &i| {
            f.sample(&[("lcore", &idx[i])], p.lcores[i].loop_counters.values()[k].1).map(|_| ())
        })?;
    }
    for (k, field) in LcorePerf::FIELDS.iter().enumerate() {
        let name = format!("vrouter_lcore_{}_total", field.key);
        counter_rows(e, &name, field.help, &rows, |f, &i| {
            f.sample(&[("lcore", &idx[i])], p.lcores[i].perf.counters.values()[k].1).map(|_| ())
        })?;
    }
    let gauges: [Figure<vrouter_abi::stats::LcorePerfStats>; 3] = [
        ("vrouter_lcore_burst_cycles_max", "Most TSC cycles one burst took since the vRouter started.", |p| {
            p.burst_cycles_max
        }),
        (
            "vrouter_lcore_burst_cycles_max_recent",
            "Most TSC cycles one burst took in the last complete window of about a second.",
            |p| p.burst_cycles_max_recent,
        ),
        ("vrouter_lcore_rx_queues", "RX queues the lcore polls.", |p| p.rx_queues),
    ];
    for (name, help, get) in gauges {
        let mut f = e.gauge(name, help)?;
        for (i, l) in p.lcores.iter().enumerate() {
            f.sample(&[("lcore", &idx[i])], get(&l.perf))?;
        }
    }
    let bounds = |b: &[u64]| b.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let mut f = e.histogram("vrouter_lcore_packets_per_burst", "Non-empty RX bursts by their number of packets.")?;
    for (i, l) in p.lcores.iter().enumerate() {
        f.observe(
            &[("lcore", &idx[i])],
            &bounds(&BURST_SIZE_BOUNDS),
            &l.perf.burst_sizes,
            l.perf.counters.burst_packets,
        )?;
    }
    let mut f = e.histogram(
        "vrouter_lcore_cycles_per_packet",
        "Packets by the TSC cycles per packet of their burst (sum: the bursts' cycles).",
    )?;
    for (i, l) in p.lcores.iter().enumerate() {
        f.observe(
            &[("lcore", &idx[i])],
            &bounds(&PACKET_CYCLES_BOUNDS),
            &l.perf.packet_cycles,
            l.perf.counters.burst_cycles,
        )?;
    }
    let queues: Vec<(usize, String, String, vrouter_abi::stats::RxqUsage)> = p
        .lcores
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.perf.rxqs.iter().map(move |q| (i, q.vif.to_string(), q.queue.to_string(), *q)))
        .collect();
    let per_queue: [Figure<vrouter_abi::stats::RxqUsage>; 3] = [
        ("vrouter_rxq_packets_total", "Packets received from the RX queue", |q| q.packets),
        ("vrouter_rxq_bursts_total", "Non-empty bursts received from the RX queue", |q| q.bursts),
        ("vrouter_rxq_cycles_total", "TSC cycles of the RX queue's bursts on its lcore", |q| q.cycles),
    ];
    for (name, help, get) in per_queue {
        counter_rows(e, name, help, &queues, |f, (i, vif, queue, q)| {
            f.sample(&[("lcore", &idx[*i]), ("vif", vif), ("queue", queue)], get(q)).map(|_| ())
        })?;
    }
    Ok(())
}

fn flow_families(e: &mut Exposition, t: &flow_table::TableStats) -> Result<(), ExpositionError> {
    let gauges: [(&str, &str, u64); 4] = [
        (
            "vrouter_flow_used_entries",
            "Published flows whose slot is not reclaimed yet (tf ftable_used_entries).",
            t.used_entries,
        ),
        (
            "vrouter_flow_hold_entries",
            "Flows in HOLD, waiting for the agent's verdict (tf ftable_hold_entries).",
            t.hold_count,
        ),
        (
            "vrouter_flow_overflow_used_entries",
            "Overflow entries in use (tf ftable_oflow_entries).",
            t.used_overflow_entries,
        ),
        (
            "vrouter_flow_capacity_entries",
            "Entries the flow table holds: main table plus overflow.",
            u64::from(t.main_entries) + u64::from(t.overflow_entries),
        ),
    ];
    for (name, help, v) in gauges {
        e.gauge(name, help)?.sample(&[], v)?;
    }
    let counters: [(&str, &str, u64); 6] = [
        (
            "vrouter_flow_created_total",
            "Flows created in HOLD by the forwarding lcores (tf ftable_created).",
            t.created,
        ),
        ("vrouter_flow_added_total", "Flows created by the agent, reverse flows (tf ftable_added).", t.added),
        (
            "vrouter_flow_processed_total",
            "HOLD to action transitions, flows set up (tf ftable_processed).",
            t.processed,
        ),
        ("vrouter_flow_changed_total", "Updates of flows that already had an action (tf ftable_changed).", t.changed),
        ("vrouter_flow_deleted_total", "Flows delete-marked or evicted (tf ftable_deleted).", t.deleted),
        (
            "vrouter_flow_insert_races_lost_total",
            "Inserts that found a concurrent insert of the same key and took its entry.",
            t.insert_races_lost,
        ),
    ];
    for (name, help, v) in counters {
        e.counter(name, help)?.sample(&[], v)?;
    }
    Ok(())
}

fn mirror_families(e: &mut Exposition, rows: &[MirrorRow]) -> Result<(), ExpositionError> {
    let idx: Vec<String> = rows.iter().map(|r| r.index.to_string()).collect();
    for (k, field) in EntryStats::FIELDS.iter().enumerate() {
        let name = format!("vrouter_mirror_{}_total", field.key);
        let mut f = e.counter(&name, &sentence(field.help))?;
        for (i, r) in rows.iter().enumerate() {
            f.sample(&[("index", &idx[i]), ("analyzer", &r.entry.analyzer_name)], r.stats.values()[k].1)?;
        }
    }
    Ok(())
}

fn agent_families(e: &mut Exposition, a: &AgentStatus) -> Result<(), ExpositionError> {
    for (f, v) in a.counters.values() {
        figure(e, "vrouter_agent", f, v)?;
    }
    let l = &a.setup_latency_ns;
    // An agent that keeps no buckets: everything in +Inf, so that _count is still right.
    let counts = if l.buckets.len() == SETUP_LATENCY_BOUNDS_NS.len() + 1 {
        l.buckets.clone()
    } else {
        let mut c = vec![0; SETUP_LATENCY_BOUNDS_NS.len() + 1];
        c[SETUP_LATENCY_BOUNDS_NS.len()] = l.count;
        c
    };
    let bounds: Vec<f64> = SETUP_LATENCY_BOUNDS_NS.iter().map(|&ns| ns as f64 * 1e-9).collect();
    e.histogram(
        "vrouter_agent_flow_setup_latency_seconds",
        "Flow setup latency, from the forwarding lcore's miss to the action programmed by the agent.",
    )?
    .observe(&[], &bounds, &counts, l.sum as f64 * 1e-9)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perf::LcoreRow;
    use crate::VifRow;
    use vrouter_abi::agent::{AgentCounters, SetupLatency};
    use vrouter_abi::drop_reason::DROP_REASON_COUNT;
    use vrouter_abi::stats::{HeaderInfo, LcorePerfStats, RxqUsage, VifInfo, VIF_TYPE_VIRTUAL};

    fn header() -> HeaderInfo {
        HeaderInfo {
            layout_version: 8,
            file_size: 0,
            max_vifs: 4,
            n_lcores: 1,
            n_drop_reasons: DROP_REASON_COUNT,
            generation: 1,
            creator_pid: 1,
            start_time_unix: 1_700_000_000,
            tsc_hz: 2_000_000_000,
            state: 1,
            heartbeat_ms: 0,
        }
    }

    fn sources() -> Sources {
        let mut vif_drops = [0u64; DROP_REASON_COUNT];
        vif_drops[DropReason::FlowActionDrop.index()] = 4;
        let mut drops = vif_drops;
        drops[DropReason::InvalidIf.index()] = 1;
        let info = VifInfo::new(3, VIF_TYPE_VIRTUAL, "tap\"3").decode();
        let snapshot = Snapshot {
            path: "/run/vrouter/stats".into(),
            header: header(),
            liveness: Liveness::Running,
            core: None,
            vifs: vec![VifRow {
                info,
                counters: VifCounters { rx_packets: 10, tx_bytes: 640, drops: 4, ..Default::default() },
                drops: vif_drops,
            }],
            drops,
        };
        let mut perf = LcorePerfStats { rx_queues: 1, ..Default::default() };
        perf.counters = LcorePerf { busy_cycles: 9, idle_cycles: 1, bursts: 2, burst_packets: 10, burst_cycles: 7 };
        perf.burst_sizes[3] = 2;
        perf.packet_cycles[0] = 10;
        perf.rxqs = vec![RxqUsage { vif: 3, queue: 0, packets: 10, bursts: 2, cycles: 7 }];
        let perf = PerfSnapshot {
            header: header(),
            liveness: Liveness::Running,
            lcores: vec![LcoreRow {
                index: 0,
                loop_counters: LcoreCounters { busy_polls: 2, idle_polls: 5, ..Default::default() },
                perf,
            }],
        };
        let mut buckets = vec![0; SETUP_LATENCY_BOUNDS_NS.len() + 1];
        (buckets[2], buckets[19]) = (3, 1);
        Sources {
            stats: Ok(StatsSource { snapshot, perf }),
            flow: Ok(flow_table::TableStats {
                used_entries: 6,
                hold_count: 1,
                created: 3,
                added: 3,
                ..Default::default()
            }),
            mirror: Err("no mirror region".into()),
            export: Ok(ExportCounters {
                records_exported: 5,
                last_sweep_ms: 1500,
                session_state: "Established".into(),
                ..Default::default()
            }),
            agent: Ok(AgentStatus {
                counters: AgentCounters { setups: 3, ..Default::default() },
                setup_latency_ns: SetupLatency { count: 4, sum: 2_000_000_000, buckets, ..Default::default() },
            }),
        }
    }

    fn has(text: &str, line: &str) {
        assert!(text.lines().any(|l| l == line), "no line `{line}` in\n{text}");
    }

    #[test]
    fn the_exposition_carries_every_source() {
        let t = render(&sources()).unwrap();
        has(&t, "vrouter_up 1");
        has(&t, "vrouter_exporter_source_up{source=\"mirror\"} 0");
        has(&t, "vrouter_exporter_source_up{source=\"agent\"} 1");
        has(&t, "# TYPE vrouter_vif_rx_packets_total counter");
        has(&t, "# HELP vrouter_vif_rx_packets_total Packets received on the vif.");
        has(&t, "vrouter_vif_rx_packets_total{vif=\"3\",name=\"tap\\\"3\"} 10");
        has(&t, "vrouter_vif_tx_bytes_total{vif=\"3\",name=\"tap\\\"3\"} 640");
        has(&t, "vrouter_vif_drops_total{vif=\"3\",name=\"tap\\\"3\"} 4");
        has(&t, "vrouter_vif_reason_drops_total{vif=\"3\",name=\"tap\\\"3\",reason=\"flow_action_drop\"} 4");
        has(&t, &format!("vrouter_drops_total{{reason=\"{}\"}} 1", DropReason::InvalidIf.key()));
        assert_eq!(t.lines().filter(|l| l.starts_with("vrouter_drops_total{")).count(), DROP_REASON_COUNT);
        assert_eq!(t.lines().filter(|l| l.starts_with("vrouter_vif_reason_drops_total{")).count(), 1);
        has(&t, "vrouter_lcore_busy_polls_total{lcore=\"0\"} 2");
        has(&t, "vrouter_lcore_busy_cycles_total{lcore=\"0\"} 9");
        has(&t, "vrouter_lcore_packets_per_burst_bucket{lcore=\"0\",le=\"8\"} 2");
        has(&t, "vrouter_lcore_packets_per_burst_sum{lcore=\"0\"} 10");
        has(&t, "vrouter_lcore_cycles_per_packet_count{lcore=\"0\"} 10");
        has(&t, "vrouter_rxq_packets_total{lcore=\"0\",vif=\"3\",queue=\"0\"} 10");
        has(&t, "vrouter_tsc_hertz 2000000000");
        has(&t, "vrouter_flow_used_entries 6");
        has(&t, "vrouter_flow_created_total 3");
        has(&t, "vrouter_export_records_exported_total 5");
        has(&t, "vrouter_export_last_sweep_seconds 1.5");
        has(&t, "# TYPE vrouter_export_flows_tracked gauge");
        has(&t, "vrouter_export_session_state{state=\"Established\"} 1");
        has(&t, "vrouter_agent_setups_total 3");
        has(&t, "vrouter_agent_flow_setup_latency_seconds_bucket{le=\"0.000005\"} 3");
        has(&t, "vrouter_agent_flow_setup_latency_seconds_bucket{le=\"+Inf\"} 4");
        has(&t, "vrouter_agent_flow_setup_latency_seconds_sum 2");
        assert!(!t.contains("vrouter_mirror_"), "no mirror source, no mirror families");
    }

    #[test]
    fn every_declared_figure_is_exported() {
        let t = render(&sources()).unwrap();
        for f in VifCounters::FIELDS {
            has(&t, &format!("# TYPE vrouter_vif_{}_total counter", f.key));
        }
        for f in LcoreCounters::FIELDS.iter().chain(LcorePerf::FIELDS) {
            has(&t, &format!("# TYPE vrouter_lcore_{}_total counter", f.key));
        }
        for f in ExportCounters::FIELDS.iter().chain(AgentCounters::FIELDS) {
            let prefix = if ExportCounters::FIELDS.contains(f) { "vrouter_export" } else { "vrouter_agent" };
            let (name, _) = figure_name(prefix, f);
            let kind = if f.kind == FieldKind::Counter { "counter" } else { "gauge" };
            has(&t, &format!("# TYPE {name} {kind}"));
        }
    }

    #[test]
    fn a_stopped_vrouter_scrapes_as_down() {
        let s = Sources {
            stats: Err("vRouter is not running".into()),
            flow: Err("x".into()),
            mirror: Ok(vec![]),
            export: Err("x".into()),
            agent: Err("x".into()),
        };
        let t = render(&s).unwrap();
        has(&t, "vrouter_up 0");
        has(&t, "vrouter_exporter_source_up{source=\"stats\"} 0");
        has(&t, "# TYPE vrouter_mirror_packets_total counter");
        assert!(!t.contains("vrouter_vif_"));
    }
}
