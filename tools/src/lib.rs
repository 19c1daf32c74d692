//! Shared code of the operator tools (`vif`, `dropstats`): common options, loading a
//! consistent snapshot of the stats region, and the text/JSON renderers (pure functions
//! from data to `String`, tested without a running vRouter).

#![warn(missing_docs)]

pub mod control;
pub mod flow;
pub mod info;
pub mod metrics;
pub mod mirror;
pub mod mpls;
pub mod nh;
pub mod perf;
pub mod program;
pub mod rate;
pub mod rt;
pub mod trace;
pub mod vifdump;
pub mod vifprog;
pub mod vrfstats;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::ser::{Serialize, SerializeMap, Serializer};
use vrouter_abi::drop_reason::{DropReason, DROP_REASON_COUNT};
use vrouter_abi::stats::{
    format_uuid, vif_link_name, vif_type_key, vif_vhost_mode_name, HeaderInfo, Liveness, StatsReader, VifCounters,
    VifInfoOwned, VIF_FLAGS,
};

/// Where the vRouter creates its stats region unless told otherwise.
pub const DEFAULT_RUN_DIR: &str = "/var/run/vrouter";

/// Options every tool takes.
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Run directory of the vRouter (holds its `stats` region).
    #[arg(long, value_name = "DIR", env = "VROUTER_RUN_DIR", default_value = DEFAULT_RUN_DIR)]
    pub run_dir: PathBuf,
    /// Machine-readable JSON output (stable snake_case keys, flags as arrays).
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Indent the JSON output.
    #[arg(long, requires = "json")]
    pub pretty: bool,
}

/// A message for stderr; the tool exits with status 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<vrouter_abi::stats::StatsError> for Failure {
    fn from(e: vrouter_abi::stats::StatsError) -> Failure {
        Failure(e.to_string())
    }
}

/// One vif with its counters (all lcores, or the selected one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifRow {
    /// The vif's static description (id, name, type, flags, addresses).
    pub info: VifInfoOwned,
    /// Its packet and byte counters.
    pub counters: VifCounters,
    /// Per-reason drop counters, by [`DropReason::index`].
    pub drops: [u64; DROP_REASON_COUNT],
}

/// Everything the tools print, read from one mapping of the region.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The region file read.
    pub path: PathBuf,
    /// The region's header, decoded.
    pub header: HeaderInfo,
    /// Whether the vRouter that writes the region still runs (else the counters are its last).
    pub liveness: Liveness,
    /// The lcore the counters are restricted to, if any.
    pub core: Option<usize>,
    /// Every configured vif, by id.
    pub vifs: Vec<VifRow>,
    /// Global drop counters.
    pub drops: [u64; DROP_REASON_COUNT],
}

impl Snapshot {
    /// The row of vif `id`, or the tools' "does not exist" failure.
    pub fn vif(&self, id: u16) -> Result<&VifRow, Failure> {
        self.vifs.iter().find(|r| r.info.id == id).ok_or_else(|| Failure(format!("vif {id} does not exist")))
    }
}

/// Reads a snapshot of `<run_dir>/stats`, counters of lcore `core` only if given. If the
/// vRouter restarted while reading (the file was replaced), reads the new one again.
pub fn load(run_dir: &Path, core: Option<usize>) -> Result<Snapshot, Failure> {
    let mut attempt = 0;
    loop {
        let reader = StatsReader::open(run_dir)?;
        check_core(&reader, core)?;
        let snap = read_snapshot(&reader, core);
        attempt += 1;
        if !reader.restarted() || attempt == 3 {
            return Ok(snap);
        }
    }
}

/// The tools' failure for a `--core` the region has no block for.
pub fn check_core(reader: &StatsReader, core: Option<usize>) -> Result<(), Failure> {
    match core {
        Some(c) if c >= reader.n_lcores() => {
            let n = reader.n_lcores();
            Err(Failure(format!(
                "core {c} does not exist (the vRouter has {n} forwarding lcore{}: 0..={})",
                if n == 1 { "" } else { "s" },
                n - 1
            )))
        }
        _ => Ok(()),
    }
}

/// A snapshot from an open reader (counters of lcore `core` only if given): what [`load`]
/// reads, for callers that read more from the same mapping (the metrics exporter).
pub fn read_snapshot(reader: &StatsReader, core: Option<usize>) -> Snapshot {
    let vifs = reader
        .vifs()
        .into_iter()
        .map(|info| VifRow {
            counters: reader.vif_counters(info.id, core),
            drops: reader.vif_drops(info.id, core),
            info,
        })
        .collect();
    Snapshot {
        path: reader.path().to_path_buf(),
        header: reader.header(),
        liveness: reader.liveness(),
        core,
        vifs,
        drops: reader.drops(core),
    }
}

/// The stderr warning for a region whose vRouter is not running, if any.
pub fn liveness_warning(liveness: Liveness, pid: u32) -> Option<String> {
    match liveness {
        Liveness::Running => None,
        Liveness::Stale => Some(format!("warning: vRouter (pid {pid}) is not running; counters are from its last run")),
        Liveness::Stopped => Some(format!("warning: vRouter (pid {pid}) has stopped; counters are from its last run")),
    }
}

/// Prints [`liveness_warning`] for this snapshot to stderr.
pub fn warn_liveness(snap: &Snapshot) {
    if let Some(w) = liveness_warning(snap.liveness, snap.header.creator_pid) {
        eprint_line(&w);
    }
}

/// Writes a line to stderr, ignoring errors (nothing better to do with them).
pub fn eprint_line(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

/// Prints the failure to stderr; exit status 1.
pub fn fail(f: &Failure) -> ExitCode {
    eprint_line(&f.0);
    ExitCode::FAILURE
}

/// Writes `text` to stdout (locked). A closed pipe (`vif --list | head -1`) is success.
pub fn emit(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(&Failure(format!("error writing output: {e}"))),
    }
}

// ---------------------------------------------------------------------------------------
// Text renderers (tf-vrouter formats, see docs/vrouter-reference.md 4.5 and 4.6)

const INDENT: &str = "            ";

/// `Flags: Sym=Name, ...`, four per line, continuation lines indented 7 spaces.
pub fn render_flags_legend() -> String {
    let mut s = String::from("Flags: ");
    for (i, f) in VIF_FLAGS.iter().enumerate() {
        if i > 0 {
            s.push_str(if i % 4 == 0 { "\n       " } else { ", " });
        }
        let _ = write!(s, "{}={}", f.symbol, f.name);
    }
    s.push('\n');
    s
}

/// One vif as `vif --list` prints it (ends with a blank line). With `core`, counter lines
/// are prefixed `Core N `.
pub fn render_vif(row: &VifRow, core: Option<usize>) -> String {
    let c = &row.counters;
    let v = &row.info;
    let mut s = render_vif_head(v);
    let p = core.map(|c| format!("Core {c} ")).unwrap_or_default();
    let _ = writeln!(s, "{INDENT}{p}RX packets:{}  bytes:{} errors:{}", c.rx_packets, c.rx_bytes, c.rx_errors);
    let _ = writeln!(s, "{INDENT}{p}TX packets:{}  bytes:{} errors:{}", c.tx_packets, c.tx_bytes, c.tx_errors);
    let _ = writeln!(
        s,
        "{INDENT}{p}Mirror packets:{}  bytes:{} errors:{}",
        c.mirror_packets, c.mirror_bytes, c.mirror_errors
    );
    let _ = writeln!(s, "{INDENT}{p}Drops:{}", c.drops);
    if v.mirror_id.is_some() {
        use vrouter_abi::stats::{VIF_FLAG_MIRROR_RX, VIF_FLAG_MIRROR_TX};
        for (bit, rx, label) in [
            (VIF_FLAG_MIRROR_RX, true, "Ingress Mirror Metadata: "),
            (VIF_FLAG_MIRROR_TX, false, "Egress Mirror Metadata: "),
        ] {
            if v.flags & bit != 0 {
                let md = vrouter_abi::mirror::interface_metadata(&v.vn_name, rx);
                let hex: Vec<String> = md.iter().map(|b| format!("{b:x}")).collect();
                let _ = writeln!(s, "{INDENT}{label}{}", hex.join(" "));
            }
        }
    }
    s.push('\n');
    s
}

/// The lines of a vif before its counters (`vif0/N PMD: ...`, type and addresses, VRF and
/// flags, vhost-user or link state).
pub(crate) fn render_vif_head(v: &VifInfoOwned) -> String {
    let mut s = format!("vif0/{}", v.id);
    while s.len() < 12 {
        s.push(' ');
    }
    let _ = write!(s, "PMD: {}", v.port_id);
    if !v.device.is_empty() {
        let _ = write!(s, " OS: {}", v.device);
    }
    if !v.name.is_empty() {
        let _ = write!(s, " Name: {}", v.name);
    }
    if let Some(nh) = v.nh_id {
        let _ = write!(s, " NH: {nh}");
    }
    if v.mtu != 0 {
        let _ = write!(s, " MTU: {}", v.mtu);
    }
    s.push('\n');
    let ip = v.ip.map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string());
    let _ = writeln!(s, "{INDENT}Type:{} HWaddr:{} IPaddr:{ip}", v.type_name(), v.mac_string());
    if let Some(ip6) = v.ip6 {
        let _ = writeln!(s, "{INDENT}IP6addr:{ip6}");
    }
    let flags = v.flag_symbols();
    let flags = if flags.is_empty() { "NULL" } else { &flags };
    let mirror = v.mirror_id.map(|m| format!(" Mirror index {m}")).unwrap_or_default();
    let _ = writeln!(s, "{INDENT}Vrf:{} Flags:{flags}{mirror}", v.vrf);
    if v.vhost_mode != 0 {
        let _ = writeln!(
            s,
            "{INDENT}Vhostuser Mode: {} Queues: {} Link: {}",
            vif_vhost_mode_name(v.vhost_mode),
            v.vhost_queues,
            vif_link_name(v.link)
        );
    } else if v.link == vrouter_abi::stats::VIF_LINK_DOWN {
        let _ = writeln!(s, "{INDENT}Link: down");
    }
    s
}

/// `vif --list` / `vif --get`: title, flags legend, then each vif.
pub fn render_vif_table(rows: &[VifRow], core: Option<usize>) -> String {
    let mut s = String::from("Vrouter Interface Table\n\n");
    s.push_str(&render_flags_legend());
    s.push('\n');
    for r in rows {
        s.push_str(&render_vif(r, core));
    }
    s
}

/// `dropstats`: the non-zero counters in table order, `%-28s  %lu`; `--core` adds the
/// `Statistics for core N` banner.
pub fn render_drop_stats(drops: &[u64; DROP_REASON_COUNT], core: Option<usize>) -> String {
    let mut s = String::new();
    if let Some(c) = core {
        let _ = write!(s, "Statistics for core {c}\n\n");
    }
    for r in DropReason::ALL {
        let n = drops[r.index()];
        if n != 0 {
            let _ = writeln!(s, "{:<28}  {}", r.name(), n);
        }
    }
    s
}

// ---------------------------------------------------------------------------------------
// JSON renderers

/// Drop counters as a JSON object keyed by [`DropReason::key`], in table order.
struct DropMap<'a> {
    drops: &'a [u64; DROP_REASON_COUNT],
    /// Include zero counters.
    all: bool,
    /// Append `"total"`.
    total: bool,
}

impl Serialize for DropMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        for r in DropReason::ALL {
            let n = self.drops[r.index()];
            if self.all || n != 0 {
                m.serialize_entry(r.key(), &n)?;
            }
        }
        if self.total {
            m.serialize_entry("total", &self.drops.iter().fold(0u64, |a, &n| a.wrapping_add(n)))?;
        }
        m.end()
    }
}

#[derive(serde::Serialize)]
struct VifJson<'a> {
    id: u16,
    name: &'a str,
    #[serde(rename = "type")]
    vif_type: &'static str,
    device: &'a str,
    driver: Option<&'a str>,
    port: u16,
    rx_queues: u16,
    tx_queues: u16,
    mac: String,
    ip: Option<std::net::Ipv4Addr>,
    ip6: Option<std::net::Ipv6Addr>,
    vrf: u32,
    mtu: Option<u32>,
    nh: Option<u32>,
    flags: Vec<&'static str>,
    vn_name: Option<&'a str>,
    vm_uuid: Option<String>,
    vmi_uuid: Option<String>,
    rx_packets: u64,
    rx_bytes: u64,
    rx_errors: u64,
    tx_packets: u64,
    tx_bytes: u64,
    tx_errors: u64,
    link: Option<&'static str>,
    vhost: Option<VhostJson>,
    mirror_index: Option<u8>,
    mirror_packets: u64,
    mirror_bytes: u64,
    mirror_errors: u64,
    drops: u64,
    drop_stats: DropMap<'a>,
}

#[derive(serde::Serialize)]
struct VhostJson {
    mode: &'static str,
    queues: u8,
}

fn vif_json<'a>(r: &'a VifRow) -> VifJson<'a> {
    let v = &r.info;
    let c = &r.counters;
    let non_empty = |s: &'a str| -> Option<&'a str> { (!s.is_empty()).then_some(s) };
    VifJson {
        id: v.id,
        name: &v.name,
        vif_type: vif_type_key(v.vif_type),
        device: &v.device,
        driver: non_empty(&v.driver),
        port: v.port_id,
        rx_queues: v.rx_queues,
        tx_queues: v.tx_queues,
        mac: v.mac_string(),
        ip: v.ip,
        ip6: v.ip6,
        vrf: v.vrf,
        mtu: (v.mtu != 0).then_some(v.mtu),
        nh: v.nh_id,
        flags: v.flag_list().map(|f| f.key).collect(),
        vn_name: non_empty(&v.vn_name),
        vm_uuid: v.vm_uuid.as_ref().map(format_uuid),
        vmi_uuid: v.vmi_uuid.as_ref().map(format_uuid),
        rx_packets: c.rx_packets,
        rx_bytes: c.rx_bytes,
        rx_errors: c.rx_errors,
        tx_packets: c.tx_packets,
        tx_bytes: c.tx_bytes,
        tx_errors: c.tx_errors,
        link: (v.link != 0).then(|| vif_link_name(v.link)),
        vhost: (v.vhost_mode != 0)
            .then(|| VhostJson { mode: vif_vhost_mode_name(v.vhost_mode), queues: v.vhost_queues }),
        mirror_index: v.mirror_id,
        mirror_packets: c.mirror_packets,
        mirror_bytes: c.mirror_bytes,
        mirror_errors: c.mirror_errors,
        drops: c.drops,
        drop_stats: DropMap { drops: &r.drops, all: false, total: false },
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T, pretty: bool) -> String {
    let mut s = if pretty { serde_json::to_string_pretty(value) } else { serde_json::to_string(value) }
        .expect("serializing plain data cannot fail");
    s.push('\n');
    s
}

/// `vif --json`: an array of vif objects (also for `--get`, like `ip -j`).
pub fn render_vifs_json(rows: &[VifRow], pretty: bool) -> String {
    let objs: Vec<VifJson<'_>> = rows.iter().map(vif_json).collect();
    to_json(&objs, pretty)
}

/// `dropstats --json`: every reason (zeros included) by key, plus `"total"`.
pub fn render_drop_stats_json(drops: &[u64; DROP_REASON_COUNT], pretty: bool) -> String {
    to_json(&DropMap { drops, all: true, total: true }, pretty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrouter_abi::stats::{
        parse_uuid, VifInfo, VIF_FLAG_L2_ENABLED, VIF_FLAG_L3_ENABLED, VIF_FLAG_MAC_PROXY, VIF_FLAG_PMD,
        VIF_TYPE_PHYSICAL, VIF_TYPE_VIRTUAL,
    };

    fn drops(pairs: &[(DropReason, u64)]) -> [u64; DROP_REASON_COUNT] {
        let mut d = [0; DROP_REASON_COUNT];
        for &(r, n) in pairs {
            d[r.index()] = n;
        }
        d
    }

    fn vm_row() -> VifRow {
        let info = VifInfo::new(1, VIF_TYPE_VIRTUAL, "vm1")
            .port(1, 1, 1)
            .vrf(1)
            .mtu(1500)
            .nh(12)
            .mac([2, 0, 0, 0, 1, 1])
            .ipv4("192.168.1.3".parse().unwrap())
            .ipv6("fd00::3".parse().unwrap())
            .flags(VIF_FLAG_L3_ENABLED | VIF_FLAG_L2_ENABLED | VIF_FLAG_PMD | VIF_FLAG_MAC_PROXY)
            .device("net_pcap1")
            .vm_uuid(parse_uuid("7c3a5f0e-1b2c-4d5e-8f90-a1b2c3d4e5f6").unwrap())
            .decode();
        VifRow {
            info,
            counters: VifCounters {
                rx_packets: 10,
                rx_bytes: 1000,
                rx_errors: 1,
                tx_packets: 9,
                tx_bytes: 900,
                tx_errors: 0,
                mirror_packets: 0,
                mirror_bytes: 0,
                mirror_errors: 0,
                drops: 2,
            },
            drops: drops(&[(DropReason::TtlExceeded, 2)]),
        }
    }

    #[test]
    fn legend_four_per_line() {
        let l = render_flags_legend();
        let lines: Vec<&str> = l.lines().collect();
        assert_eq!(lines[0], "Flags: P=Policy, X=Cross Connect, S=Service Chain, Mr=Receive Mirror");
        assert_eq!(lines[1], "       Mt=Transmit Mirror, Tc=Transmit Checksum Offload, L3=Layer 3, L2=Layer 2");
        assert_eq!(lines[3], "       Mnp=No MAC Proxy, Dpdk=DPDK PMD Interface, Rfl=Receive Filtering Offload, Mon=Interface is Monitored");
        assert_eq!(lines.len(), VIF_FLAGS.len().div_ceil(4));
        assert!(l.contains("Proxy=MAC Requests Proxied Always"));
    }

    #[test]
    fn vif_block() {
        let expected = "\
vif0/1      PMD: 1 OS: net_pcap1 Name: vm1 NH: 12 MTU: 1500
            Type:Virtual HWaddr:02:00:00:00:01:01 IPaddr:192.168.1.3
            IP6addr:fd00::3
            Vrf:1 Flags:L3L2DpdkProxy
            RX packets:10  bytes:1000 errors:1
            TX packets:9  bytes:900 errors:0
            Mirror packets:0  bytes:0 errors:0
            Drops:2

";
        assert_eq!(render_vif(&vm_row(), None), expected);
        let core = render_vif(&vm_row(), Some(3));
        assert!(core.contains("\n            Core 3 RX packets:10  bytes:1000 errors:1\n"));
        assert!(core.contains("\n            Core 3 Drops:2\n"));
    }

    #[test]
    fn mirrored_vif_block() {
        let mut row = vm_row();
        row.info = VifInfo::new(5, VIF_TYPE_VIRTUAL, "vm5").vn_name("vn").mirror(true, true, 0).decode();
        row.counters.mirror_packets = 24564;
        row.counters.mirror_bytes = 1695364;
        row.counters.mirror_errors = 3;
        let s = render_vif(&row, None);
        assert!(s.contains("            Vrf:0 Flags:MrMt Mirror index 0\n"), "{s}");
        assert!(s.contains("\n            Mirror packets:24564  bytes:1695364 errors:3\n"), "{s}");
        assert!(s.contains("\n            Ingress Mirror Metadata: 3 2 76 6e ff 0\n"), "{s}");
        assert!(s.contains("\n            Egress Mirror Metadata: 4 2 76 6e ff 0\n"), "{s}");
        let j: serde_json::Value = serde_json::from_str(&render_vifs_json(&[row], false)).unwrap();
        assert_eq!(j[0]["mirror_index"], 0);
        assert_eq!((j[0]["mirror_packets"].as_u64(), j[0]["mirror_errors"].as_u64()), (Some(24564), Some(3)));
        assert_eq!(j[0]["flags"], serde_json::json!(["receive_mirror", "transmit_mirror"]));
    }

    #[test]
    fn vif_block_without_optional_fields() {
        let row = VifRow {
            info: VifInfo::new(1000, VIF_TYPE_PHYSICAL, "").decode(),
            counters: VifCounters::default(),
            drops: [0; DROP_REASON_COUNT],
        };
        let s = render_vif(&row, None);
        assert!(
            s.starts_with("vif0/1000   PMD: 0\n            Type:Physical HWaddr:00:00:00:00:00:00 IPaddr:0.0.0.0\n")
        );
        assert!(s.contains("Flags:NULL"));
        assert!(!s.contains("IP6addr"));
    }

    #[test]
    fn drop_stats_text() {
        let d = drops(&[(DropReason::NoL3Route, 3), (DropReason::InvalidIf, 1), (DropReason::TtlExceeded, 20)]);
        assert_eq!(
            render_drop_stats(&d, None),
            "Invalid IF                    1\nTTL Exceeded                  20\nNo L3 Route                   3\n"
        );
        assert_eq!(render_drop_stats(&d, Some(0)).lines().next(), Some("Statistics for core 0"));
        assert!(render_drop_stats(&d, Some(0)).starts_with("Statistics for core 0\n\nInvalid IF "));
        assert_eq!(render_drop_stats(&[0; DROP_REASON_COUNT], None), "");
    }

    #[test]
    fn drop_stats_json_has_every_key_in_order() {
        let d = drops(&[(DropReason::Discard, 4), (DropReason::PullFails, 1)]);
        let s = render_drop_stats_json(&d, false);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let m = v.as_object().unwrap();
        assert_eq!(m.len(), DROP_REASON_COUNT + 1);
        assert_eq!(m["discard"], 4);
        assert_eq!(m["pull"], 1);
        assert_eq!(m["invalid_if"], 0);
        assert_eq!(m["total"], 5);
        assert!(s.starts_with("{\"invalid_if\":0,\"invalid_arp\":0,"));
        assert!(s.ends_with(",\"link_down\":0,\"total\":5}\n"));
    }

    #[test]
    fn vif_json_fields() {
        let s = render_vifs_json(&[vm_row()], true);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        let o = &v[0];
        assert_eq!(o["id"], 1);
        assert_eq!(o["name"], "vm1");
        assert_eq!(o["type"], "virtual");
        assert_eq!(o["device"], "net_pcap1");
        assert_eq!(o["port"], 1);
        assert_eq!(o["mac"], "02:00:00:00:01:01");
        assert_eq!(o["ip"], "192.168.1.3");
        assert_eq!(o["ip6"], "fd00::3");
        assert_eq!(o["vrf"], 1);
        assert_eq!(o["mtu"], 1500);
        assert_eq!(o["flags"], serde_json::json!(["l3", "l2", "dpdk", "mac_proxy"]));
        assert_eq!(o["vn_name"], serde_json::Value::Null);
        assert_eq!(o["vm_uuid"], "7c3a5f0e-1b2c-4d5e-8f90-a1b2c3d4e5f6");
        assert_eq!(o["vmi_uuid"], serde_json::Value::Null);
        assert_eq!(o["rx_packets"], 10);
        assert_eq!(o["drops"], 2);
        assert_eq!(o["drop_stats"], serde_json::json!({"ttl_exceeded": 2}));
    }

    #[test]
    fn warnings() {
        assert_eq!(liveness_warning(Liveness::Running, 7), None);
        assert_eq!(
            liveness_warning(Liveness::Stale, 7).unwrap(),
            "warning: vRouter (pid 7) is not running; counters are from its last run"
        );
    }
}
