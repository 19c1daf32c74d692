//! End-to-end configuration tests: text in, the accepted configuration or the exact error
//! (field, line and message) out.

use super::check::{canonical, is_uuid, Unique};
use super::*;
use crate::config::parse;

/// A complete, valid configuration: two VMs in VRF 1, a fabric vif and the host vif in
/// VRF 0, every nexthop type, IPv4 and IPv6 routes, a bridge entry and a label.
const VALID: &str = r#"# vRouter test configuration
[eal]
main_core = 0
forwarding_cores = [1, 2]
memory_mb = 256
no_huge = true
file_prefix = "vr-test_1"
vdevs = [
    "net_pcap0,rx_pcap=fabric-in.pcap,tx_pcap=fabric-out.pcap",
    "net_tap0,iface=vm1",
    "net_tap1,iface=vm2",
    "net_tap2,iface=vhost0",
]
mbufs = 8191
rx_desc = 512
tx_desc = 1024

[vrouter]
run_dir = "/run/vrouter"
router_ip = "10.1.1.1"
router_mac = "00:00:5e:00:01:00"
summary_interval_s = 5

[[vrf]]
id = 0
name = "fabric"

[[vrf]]
id = 1
name = "default-domain:demo:vn1"
vxlan_vni = 5001

[[vif]]
id = 0
name = "eth0"
type = "fabric"
device = "net_pcap0"
mac = "02:00:00:00:00:01"
ip = "10.1.1.1"
vrf = 0
rx_queues = 2
mtu = 9000

[[vif]]
id = 1
name = "vhost0"
type = "host"
device = "net_tap2"
mac = "02:00:00:00:00:02"
ip = "10.1.1.1"
vrf = 0

[[vif]]
id = 2
name = "tap-vm1"
type = "virtual"
device = "net_tap0"
mac = "02:00:00:00:01:01"
ip = "192.168.1.3"
ip6 = "fd00:1::3"
vrf = 1
mtu = 1500
vm_uuid = "6f1c2a3b-4d5e-4f60-8a1b-2c3d4e5f6a7b"
vmi_uuid = "0A1B2C3D-4E5F-4A6B-9C8D-7E6F5A4B3C2D"
vn_name = "default-domain:demo:vn1"
proxy_arp = true

[[vif]]
id = 3
name = "tap-vm2"
type = "vm"
device = "net_tap1"
mac = "02:00:00:00:01:02"
ip = "192.168.1.4"
vrf = 1

[[nexthop]]
id = 1
type = "encap"
vif = 2
dst_mac = "02:00:00:00:01:01"

[[nexthop]]
id = 2
type = "encap"
vif = 3
dst_mac = "02:00:00:00:01:02"
src_mac = "00:00:5e:00:01:00"

[[nexthop]]
id = 10
type = "tunnel"
encap = "mplsoudp"
remote_ip = "10.1.1.2"
label = 100
vif = 0
dst_mac = "02:00:00:00:00:fe"

[[nexthop]]
id = 11
type = "tunnel"
encap = "vxlan"
remote_ip = "10.1.1.3"
label = 5001
vif = 0
dst_mac = "02:00:00:00:00:fe"
inner_dst_mac = "02:00:00:00:02:01"

[[nexthop]]
id = 20
type = "ecmp"
members = [10, 11]

[[nexthop]]
id = 30
type = "discard"

[[nexthop]]
id = 40
type = "receive"
vif = 1

[[route]]
vrf = 1
prefix = "192.168.1.3/32"
nexthop = 1

[[route]]
vrf = 1
prefix = "192.168.1.4/32"
nexthop = 2

[[route]]
vrf = 1
prefix = "192.168.2.0/24"
nexthop = 20

[[route]]
vrf = 1
prefix = "0.0.0.0/0"
nexthop = 30

[[route]]
vrf = 1
prefix = "fd00:1::3/128"
nexthop = 1

[[route]]
vrf = 1
prefix = "fd00:2::/64"
nexthop = 10

[[route]]
vrf = 0
prefix = "10.1.1.1/32"
nexthop = 40

[[bridge]]
vrf = 1
mac = "02:00:00:00:01:01"
nexthop = 1

[[label]]
label = 17
nexthop = 1
"#;

/// The 1-based line of the only line containing `# HERE`.
fn marked_line(text: &str) -> usize {
    let lines: Vec<usize> =
        text.lines().enumerate().filter(|(_, l)| l.contains("# HERE")).map(|(i, _)| i + 1).collect();
    assert_eq!(lines.len(), 1, "exactly one line must be marked # HERE");
    lines[0]
}

/// `VALID` with `from` (which must occur exactly once) replaced by `to`.
fn edit(from: &str, to: &str) -> String {
    assert_eq!(VALID.matches(from).count(), 1, "{from:?} must occur once in VALID");
    VALID.replacen(from, to, 1)
}

/// `VALID` with `extra` appended.
fn with(extra: &str) -> String {
    format!("{VALID}\n{extra}")
}

/// Parses `text`, expects an `Invalid` error on `field` at the `# HERE` line (no line
/// when nothing is marked) whose message contains `needle`; returns it as displayed.
#[track_caller]
fn expect_invalid(text: &str, field: &str, needle: &str) -> String {
    let want_line = text.contains("# HERE").then(|| marked_line(text));
    let Err(e) = parse(text, "test.toml") else {
        panic!("expected an error on {field}, the config was accepted");
    };
    let shown = e.to_string();
    let ConfigError::Invalid { origin, line, field: f, message } = e else {
        panic!("expected an Invalid error on {field}, got {shown}");
    };
    assert_eq!(origin, "test.toml");
    assert_eq!(f, field, "wrong field in {shown:?}");
    assert_eq!(line, want_line, "wrong line in {shown:?}");
    assert!(message.contains(needle), "{shown:?} does not mention {needle:?}");
    let at = line.map(|l| format!(":{l}")).unwrap_or_default();
    assert_eq!(shown, format!("test.toml{at}: {field}: {message}"));
    shown
}

/// Parses `text`, expects a `Parse` error at the `# HERE` line in `table` whose
/// message contains `needle`; returns it as displayed.
#[track_caller]
fn expect_parse(text: &str, table: Option<&str>, needle: &str) -> String {
    let want_line = marked_line(text);
    let Err(e) = parse(text, "test.toml") else {
        panic!("expected a parse error, the config was accepted");
    };
    let shown = e.to_string();
    let ConfigError::Parse { line, table: t, message, .. } = e else {
        panic!("expected a parse error, got {shown}");
    };
    assert_eq!(line, Some(want_line), "wrong line in {shown:?}");
    assert_eq!(t.as_deref(), table, "wrong table in {shown:?}");
    assert!(message.contains(needle), "{shown:?} does not mention {needle:?}");
    assert!(!shown.contains('\n'), "one line expected: {shown:?}");
    shown
}

#[test]
fn full_config_is_valid() {
    let cfg = parse(VALID, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.vifs.len(), 4);
    assert_eq!(cfg.nexthops.len(), 7);
    assert_eq!(cfg.routes.len(), 7);
}

#[test]
fn display_format() {
    let text = edit("prefix = \"192.168.2.0/24\"\nnexthop = 20", "prefix = \"192.168.2.0/24\"\nnexthop = 99 # HERE");
    let shown = expect_invalid(&text, "route[2].nexthop", "nexthop 99 is not defined");
    let line = marked_line(&text);
    assert_eq!(shown, format!("test.toml:{line}: route[2].nexthop: nexthop 99 is not defined"));
    let e = ConfigError::Invalid { origin: "x.toml".into(), line: None, field: "vif".into(), message: "m".into() };
    assert_eq!(e.to_string(), "x.toml: vif: m");
}

// ---- parse errors ----

#[test]
fn unknown_field_names_field_table_and_line() {
    let text = edit("rx_queues = 2\n", "rx_queues = 2\nrx_queue = 2 # HERE\n");
    let shown = expect_parse(&text, Some("vif[0]"), "unknown field `rx_queue`");
    let line = marked_line(&text);
    assert!(shown.starts_with(&format!("test.toml:{line}: vif[0]: unknown field `rx_queue`")));
}

#[test]
fn unknown_field_in_eal_and_top_level() {
    expect_parse(&edit("mbufs = 8191", "mbuf = 8191 # HERE"), Some("eal"), "unknown field `mbuf`");
    expect_parse(&with("[[vifs]] # HERE\nid = 9\n"), None, "unknown field `vifs`");
    expect_parse(
        &edit("id = 30\ntype = \"discard\"", "id = 30\ntype = \"discard\"\nvif = 1 # HERE"),
        Some("nexthop[5]"),
        "unknown field `vif`",
    );
}

#[test]
fn parse_errors_have_lines() {
    expect_parse(&edit("vrf = 0\nrx_queues", "vrf = \"zero\" # HERE\nrx_queues"), Some("vif[0].vrf"), "invalid type");
    expect_parse(
        &edit("\nmac = \"02:00:00:00:01:02\"", "\nmac = \"02:00:00:00:01\" # HERE"),
        Some("vif[3].mac"),
        "invalid MAC",
    );
    expect_parse(
        &with("[[route]] # HERE\nvrf = 1\nprefix = \"10.0.0.0/8\"\n"),
        Some("route[7]"),
        "missing field `nexthop`",
    );
    // Nexthops are an internally tagged enum: serde loses the entry's span, the
    // failing entry is still found.
    expect_parse(&with("[[nexthop]] # HERE\ntype = \"discard\"\n"), Some("nexthop[7]"), "missing field `id`");
    expect_parse(
        &edit("[[nexthop]]\nid = 10\n", "[[nexthop]] # HERE\nid = 10\n").replace("label = 100", "label = \"x\""),
        Some("nexthop[2]"),
        "invalid type",
    );
    expect_parse(
        &edit("type = \"discard\"", "type = \"drop\" # HERE"),
        Some("nexthop[5].type"),
        "unknown variant `drop`",
    );
    expect_parse(&edit("memory_mb = 256", "memory_mb = 256 x # HERE"), Some("eal.memory_mb"), "expected newline");
}

// ---- [eal] ----

#[test]
fn eal_forwarding_cores() {
    expect_invalid(
        &edit("forwarding_cores = [1, 2]", "forwarding_cores = [] # HERE"),
        "eal.forwarding_cores",
        "at least one",
    );
    expect_invalid(
        &edit("forwarding_cores = [1, 2]", "forwarding_cores = [1, 2, 1] # HERE"),
        "eal.forwarding_cores",
        "core 1 is listed twice",
    );
    expect_invalid(
        &edit("forwarding_cores = [1, 2]", "forwarding_cores = [0, 2] # HERE"),
        "eal.forwarding_cores",
        "main_core",
    );
    expect_invalid(
        &edit("forwarding_cores = [1, 2]", "forwarding_cores = [1, 1024] # HERE"),
        "eal.forwarding_cores",
        "1024",
    );
    expect_invalid(&edit("main_core = 0", "main_core = 4096 # HERE"), "eal.main_core", "4096");
}

#[test]
fn eal_forwarding_cpus() {
    // Three forwarding lcores on two CPUs: a CPU may carry several lcores.
    let text =
        edit("forwarding_cores = [1, 2]", "forwarding_cores = [1, 2, 3]\nforwarding_cpus = [1, 1, 0]\nmain_cpu = 0");
    let cfg = parse(&text, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.eal.forwarding_cpus(), vec![1, 1, 0]);
    assert_eq!(cfg.eal.main_cpu(), 0);
    assert!(cfg.eal.maps_cpus());
    // Defaults: each lcore on the CPU of its own number, no mapping.
    let cfg = parse(VALID, "test.toml").unwrap();
    assert_eq!((cfg.eal.forwarding_cpus(), cfg.eal.main_cpu(), cfg.eal.maps_cpus()), (vec![1, 2], 0, false));
    // main_cpu alone maps the lcores too; the forwarding ones keep their own numbers.
    let cfg = parse(&edit("main_core = 0", "main_core = 0\nmain_cpu = 3"), "test.toml").unwrap();
    assert_eq!((cfg.eal.forwarding_cpus(), cfg.eal.main_cpu(), cfg.eal.maps_cpus()), (vec![1, 2], 3, true));

    expect_invalid(
        &edit("forwarding_cores = [1, 2]", "forwarding_cores = [1, 2]\nforwarding_cpus = [1] # HERE"),
        "eal.forwarding_cpus",
        "1 CPU(s) for 2 forwarding core(s)",
    );
    expect_invalid(
        &edit("forwarding_cores = [1, 2]", "forwarding_cores = [1, 2]\nforwarding_cpus = [1, 1, 1] # HERE"),
        "eal.forwarding_cpus",
        "3 CPU(s) for 2 forwarding core(s)",
    );
    expect_invalid(
        &edit("forwarding_cores = [1, 2]", "forwarding_cores = [1, 2]\nforwarding_cpus = [1, 1024] # HERE"),
        "eal.forwarding_cpus",
        "CPU 1024 is not below 1024",
    );
    expect_invalid(&edit("main_core = 0", "main_core = 0\nmain_cpu = 1024 # HERE"), "eal.main_cpu", "CPU 1024");
    expect_parse(
        &edit("forwarding_cores = [1, 2]", "forwarding_cores = [1, 2]\nforwarding_cpus = [1, -1] # HERE"),
        Some("eal.forwarding_cpus"),
        "invalid value",
    );
}

#[test]
fn eal_sizes() {
    expect_invalid(&edit("memory_mb = 256", "memory_mb = 63 # HERE"), "eal.memory_mb", "at least 64");
    expect_invalid(&edit("mbufs = 8191", "mbufs = 1023 # HERE"), "eal.mbufs", "at least 1024");
    expect_invalid(&edit("rx_desc = 512", "rx_desc = 500 # HERE"), "eal.rx_desc", "power of two");
    expect_invalid(&edit("rx_desc = 512", "rx_desc = 32 # HERE"), "eal.rx_desc", "power of two");
    expect_invalid(&edit("tx_desc = 1024", "tx_desc = 32768 # HERE"), "eal.tx_desc", "power of two");
    // Bounds are inclusive.
    parse(&edit("rx_desc = 512", "rx_desc = 64").replace("tx_desc = 1024", "tx_desc = 16384"), "t").unwrap();
}

#[test]
fn eal_file_prefix_and_vdevs() {
    expect_invalid(&edit("file_prefix = \"vr-test_1\"", "file_prefix = \"\" # HERE"), "eal.file_prefix", "empty");
    expect_invalid(&edit("file_prefix = \"vr-test_1\"", "file_prefix = \"vr/1\" # HERE"), "eal.file_prefix", "'/'");
    let text = edit("    \"net_tap1,iface=vm2\",\n", "    \"net_tap1,iface=vm2\",\n    \"\",\n")
        .replace("vdevs = [\n", "vdevs = [ # HERE\n");
    expect_invalid(&text, "eal.vdevs", "entry 3 is empty");
}

#[test]
fn eal_packet_capture() {
    let long = "p".repeat(MAX_FILE_PREFIX + 1);
    let e = expect_invalid(
        &edit("file_prefix = \"vr-test_1\"", &format!("file_prefix = \"{long}\" # HERE")),
        "eal.file_prefix",
        "at most 48",
    );
    assert!(e.contains("has 49 characters"), "{e}");
    // Capture needs huge pages and a primary that secondaries can attach to.
    let e =
        expect_invalid(&edit("no_huge = true", "no_huge = true\npdump = true # HERE"), "eal.pdump", "no_huge = false");
    assert!(e.contains("secondary process"), "{e}");
    for arg in ["--in-memory", "--no-shconf", "--huge-unlink"] {
        let text = edit("no_huge = true", &format!("no_huge = false\nextra_args = [\"{arg}\"]\npdump = true # HERE"));
        expect_invalid(&text, "eal.pdump", &format!("extra_args has {arg}"));
    }
    // The default: on with huge pages unless such an argument rules it out; off on 4 KiB pages.
    let cfg = |text: &str| parse(text, "t").unwrap().eal;
    assert!(!cfg(VALID).pdump_enabled());
    assert!(cfg(&edit("no_huge = true", "no_huge = false")).pdump_enabled());
    assert!(!cfg(&edit("no_huge = true", "no_huge = false\npdump = false")).pdump_enabled());
    assert!(!cfg(&edit("no_huge = true", "no_huge = false\nextra_args = [\"--in-memory\"]")).pdump_enabled());
    assert!(cfg(&edit("no_huge = true", "no_huge = false\nextra_args = [\"--huge-unlink=never\"]")).pdump_enabled());
    assert!(!cfg(&edit("no_huge = true", "pdump = false")).pdump_enabled());
}

#[test]
fn eal_key_line_found_in_section() {
    // A commented-out key does not confuse the lookup.
    let text = edit("memory_mb = 256", "#memory_mb = 1024\nmemory_mb = 8 # HERE");
    expect_invalid(&text, "eal.memory_mb", "at least 64");
    // A key of an inline `eal = { ... }` table is found too.
    let inline = "eal = { forwarding_cores = [1], memory_mb = 8 } # HERE\n".to_string()
        + &VALID[VALID.find("[vrouter]").unwrap()..];
    expect_invalid(&inline, "eal.memory_mb", "at least 64");
}

// ---- [vrouter] ----

#[test]
fn vrouter_router_ip() {
    expect_invalid(
        &edit("router_ip = \"10.1.1.1\"", "router_ip = \"0.0.0.0\" # HERE"),
        "vrouter.router_ip",
        "unspecified",
    );
    expect_invalid(
        &edit("router_ip = \"10.1.1.1\"", "router_ip = \"224.0.0.1\" # HERE"),
        "vrouter.router_ip",
        "multicast",
    );
    expect_invalid(
        &edit("router_ip = \"10.1.1.1\"", "router_ip = \"255.255.255.255\" # HERE"),
        "vrouter.router_ip",
        "broadcast",
    );
}

#[test]
fn vrouter_router_mac_and_run_dir() {
    expect_invalid(
        &edit("router_mac = \"00:00:5e:00:01:00\"", "router_mac = \"01:00:5e:00:00:01\" # HERE"),
        "vrouter.router_mac",
        "multicast",
    );
    expect_invalid(
        &edit("router_mac = \"00:00:5e:00:01:00\"", "router_mac = \"00:00:00:00:00:00\" # HERE"),
        "vrouter.router_mac",
        "all zero",
    );
    expect_invalid(&edit("run_dir = \"/run/vrouter\"", "run_dir = \"\" # HERE"), "vrouter.run_dir", "empty");
}

// ---- [[vif]] ----

#[test]
fn vif_at_least_one() {
    let no_vifs = r#"
[eal]
forwarding_cores = [1]
[vrouter]
run_dir = "/run"
router_ip = "10.0.0.1"
[[vrf]]
id = 0
name = "f"
"#;
    expect_invalid(no_vifs, "vif", "at least one");
}

#[test]
fn vif_ids() {
    expect_invalid(
        &edit("id = 3\nname = \"tap-vm2\"", "id = 2 # HERE\nname = \"tap-vm2\""),
        "vif[3].id",
        "duplicate vif id 2",
    );
    expect_invalid(&edit("id = 3\nname = \"tap-vm2\"", "id = 4096 # HERE\nname = \"tap-vm2\""), "vif[3].id", "4096");
}

#[test]
fn vif_names_and_devices() {
    expect_invalid(&edit("name = \"tap-vm2\"", "name = \"tap-vm1\" # HERE"), "vif[3].name", "duplicate vif name");
    expect_invalid(&edit("name = \"tap-vm2\"", "name = \"\" # HERE"), "vif[3].name", "empty");
    expect_invalid(
        &edit("name = \"tap-vm2\"", &format!("name = \"{}\" # HERE", "x".repeat(32))),
        "vif[3].name",
        "31 bytes",
    );
    parse(&edit("name = \"tap-vm2\"", &format!("name = \"{}\"", "x".repeat(31))), "t").unwrap();
    expect_invalid(
        &edit("device = \"net_tap1\"", "device = \"net_tap0\" # HERE"),
        "vif[3].device",
        "already bound to vif[2]",
    );
    expect_invalid(&edit("device = \"net_tap1\"", "device = \" \" # HERE"), "vif[3].device", "empty");
}

#[test]
fn vif_mac_and_vrf() {
    expect_invalid(
        &edit("\nmac = \"02:00:00:00:01:02\"", "\nmac = \"03:00:00:00:01:02\" # HERE"),
        "vif[3].mac",
        "multicast",
    );
    expect_invalid(
        &edit("\nmac = \"02:00:00:00:01:02\"", "\nmac = \"00:00:00:00:00:00\" # HERE"),
        "vif[3].mac",
        "all zero",
    );
    expect_invalid(
        &edit("ip = \"192.168.1.4\"\nvrf = 1", "ip = \"192.168.1.4\"\nvrf = 7 # HERE"),
        "vif[3].vrf",
        "vrf 7 is not defined",
    );
}

#[test]
fn vif_queues_and_mtu() {
    expect_invalid(&edit("rx_queues = 2", "rx_queues = 0 # HERE"), "vif[0].rx_queues", "1..=16");
    expect_invalid(&edit("rx_queues = 2", "rx_queues = 17 # HERE"), "vif[0].rx_queues", "1..=16");
    expect_invalid(&edit("mtu = 9000", "mtu = 9001 # HERE"), "vif[0].mtu", "68..=9000");
    expect_invalid(&edit("mtu = 1500", "mtu = 67 # HERE"), "vif[2].mtu", "68..=9000");
}

#[test]
fn vif_one_host() {
    expect_invalid(&edit("type = \"vm\"", "type = \"host\" # HERE"), "vif[3].type", "only one host vif");
}

#[test]
fn vif_uuids_and_vn_name() {
    expect_invalid(
        &edit(
            "vm_uuid = \"6f1c2a3b-4d5e-4f60-8a1b-2c3d4e5f6a7b\"",
            "vm_uuid = \"6f1c2a3b-4d5e-4f60-8a1b-2c3d4e5f6a7\" # HERE",
        ),
        "vif[2].vm_uuid",
        "not a UUID",
    );
    expect_invalid(
        &edit(
            "vmi_uuid = \"0A1B2C3D-4E5F-4A6B-9C8D-7E6F5A4B3C2D\"",
            "vmi_uuid = \"0A1B2C3D-4E5F-4A6B-9C8D7E6F5A4B3C2D\" # HERE",
        ),
        "vif[2].vmi_uuid",
        "not a UUID",
    );
    expect_invalid(
        &edit(
            "vmi_uuid = \"0A1B2C3D-4E5F-4A6B-9C8D-7E6F5A4B3C2D\"",
            "vmi_uuid = \"0A1B2C3D-4E5F-4A6B-9C8D-7E6F5A4B3CZD\" # HERE",
        ),
        "vif[2].vmi_uuid",
        "not a UUID",
    );
    expect_invalid(
        &edit("vn_name = \"default-domain:demo:vn1\"", &format!("vn_name = \"{}\" # HERE", "v".repeat(64))),
        "vif[2].vn_name",
        "63 bytes",
    );
}

#[test]
fn vif_source_check() {
    let ok = edit(
        "proxy_arp = true",
        "proxy_arp = true\nsource_check = false\nvm_mac = \"02:00:00:00:01:01\"\n\
         allowed_address_pairs = [{ ip = \"10.0.0.0/24\", mac = \"02:00:00:00:00:09\" }, { ip = \"fd00:9::1\" }, { ip = \"10.9.9.9\" }]",
    );
    let cfg = parse(&ok, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    let vif = cfg.vifs[2].get_ref();
    assert_eq!((vif.source_check, vif.vm_mac), (Some(false), Some(Mac([2, 0, 0, 0, 1, 1]))));
    let pairs: Vec<_> = vif.allowed_address_pairs.iter().map(|p| (p.ip.to_string(), p.mac)).collect();
    assert_eq!(
        pairs,
        [
            ("10.0.0.0/24".to_string(), Some(Mac([2, 0, 0, 0, 0, 9]))),
            ("fd00:9::1/128".to_string(), None),
            ("10.9.9.9/32".to_string(), None),
        ]
    );
    // Unset: nothing configured (the FIB turns source_check on for VM vifs).
    let cfg = parse(VALID, "test.toml").unwrap();
    let vif = cfg.vifs[3].get_ref();
    assert!(vif.source_check.is_none() && vif.vm_mac.is_none() && vif.allowed_address_pairs.is_empty());

    // Only on virtual vifs.
    expect_invalid(
        &edit("mtu = 9000", "mtu = 9000\nsource_check = true # HERE"),
        "vif[0].source_check",
        "virtual (VM) vifs",
    );
    expect_invalid(
        &edit("name = \"vhost0\"", "name = \"vhost0\"\nvm_mac = \"02:00:00:00:00:09\" # HERE"),
        "vif[1].vm_mac",
        "is of type host",
    );
    expect_invalid(
        &edit("mtu = 9000", "mtu = 9000\nallowed_address_pairs = [{ ip = \"10.0.0.0/8\" }] # HERE"),
        "vif[0].allowed_address_pairs",
        "is of type fabric",
    );
    // MACs must be unicast.
    expect_invalid(
        &edit("proxy_arp = true", "proxy_arp = true\nvm_mac = \"03:00:00:00:00:01\" # HERE"),
        "vif[2].vm_mac",
        "multicast",
    );
    expect_invalid(
        &edit(
            "proxy_arp = true",
            "proxy_arp = true\nallowed_address_pairs = [{ ip = \"10.0.0.0/8\" }, { ip = \"10.1.0.0/16\", mac = \"00:00:00:00:00:00\" }] # HERE",
        ),
        "vif[2].allowed_address_pairs[1].mac",
        "all zero",
    );
    // Prefixes without host bits; the field names the pair.
    expect_invalid(
        &edit("proxy_arp = true", "proxy_arp = true\nallowed_address_pairs = [{ ip = \"10.0.0.5/24\" }] # HERE"),
        "vif[2].allowed_address_pairs[0].ip",
        "the prefix is 10.0.0.0/24",
    );
    // A bounded list (the data plane scans it).
    let many: Vec<String> = (0..33).map(|i| format!("{{ ip = \"10.0.{i}.0/24\" }}")).collect();
    expect_invalid(
        &edit("proxy_arp = true", &format!("proxy_arp = true\nallowed_address_pairs = [{}] # HERE", many.join(", "))),
        "vif[2].allowed_address_pairs",
        "at most 32",
    );
    // Parse errors: a bad address, an unknown key in a pair.
    expect_parse(
        &edit("proxy_arp = true", "proxy_arp = true\nallowed_address_pairs = [{ ip = \"10.0.0.300\" }] # HERE"),
        Some("vif[2].allowed_address_pairs"),
        "invalid address",
    );
    expect_parse(
        &edit(
            "proxy_arp = true",
            "proxy_arp = true\nallowed_address_pairs = [{ ip = \"10.0.0.0/8\", mask = 8 }] # HERE",
        ),
        Some("vif[2].allowed_address_pairs"),
        "unknown field `mask`",
    );
}

// ---- [[vrf]] ----

#[test]
fn vrf_ids_and_names() {
    expect_invalid(
        &edit("id = 1\nname = \"default-domain", "id = 0 # HERE\nname = \"default-domain"),
        "vrf[1].id",
        "duplicate VRF id 0",
    );
    expect_invalid(
        &edit("id = 1\nname = \"default-domain", "id = 4096 # HERE\nname = \"default-domain"),
        "vrf[1].id",
        "4096",
    );
    expect_invalid(
        &edit("name = \"default-domain:demo:vn1\"\nvxlan", "name = \"fabric\" # HERE\nvxlan"),
        "vrf[1].name",
        "duplicate VRF name",
    );
}

#[test]
fn vrf_vni() {
    expect_invalid(&edit("vxlan_vni = 5001", "vxlan_vni = 0 # HERE"), "vrf[1].vxlan_vni", "out of range");
    expect_invalid(&edit("vxlan_vni = 5001", "vxlan_vni = 16777216 # HERE"), "vrf[1].vxlan_vni", "out of range");
    expect_invalid(
        &edit("vxlan_vni = 5001", "vxlan_vni = 5001 # HERE")
            .replace("name = \"fabric\"\n", "name = \"fabric\"\nvxlan_vni = 5001\n"),
        "vrf[1].vxlan_vni",
        "already used by vrf[0]",
    );
}

#[test]
fn vrf_gateway_addresses() {
    let gw = |line: &str| edit("vxlan_vni = 5001", &format!("vxlan_vni = 5001\n{line}"));
    expect_invalid(&gw("gateway_ip = \"224.0.0.9\" # HERE"), "vrf[1].gateway_ip", "multicast");
    expect_invalid(&gw("gateway_ip = \"0.0.0.0\" # HERE"), "vrf[1].gateway_ip", "unspecified");
    expect_invalid(&gw("gateway_ip6 = \"ff02::1\" # HERE"), "vrf[1].gateway_ip6", "multicast");
    expect_invalid(&gw("gateway_ip6 = \"::\" # HERE"), "vrf[1].gateway_ip6", "unspecified");
    let cfg = parse(&gw("gateway_ip = \"192.168.1.1\"\ngateway_ip6 = \"fd00:1::1\""), "test.toml").unwrap();
    let v = cfg.vrfs[1].get_ref();
    assert_eq!(
        (v.gateway_ip, v.gateway_ip6),
        (Some("192.168.1.1".parse().unwrap()), Some("fd00:1::1".parse().unwrap()))
    );
    assert_eq!(cfg.vrfs[0].get_ref().gateway_ip, None, "default: none (the data plane uses DEFAULT_GATEWAY_IP)");
}

#[test]
fn vrouter_icmp_error_rate_and_burst() {
    let cfg = parse(VALID, "test.toml").unwrap();
    assert_eq!((cfg.vrouter.icmp_error_rate, cfg.vrouter.icmp_error_burst), (100, 10), "defaults");
    let with = |line: &str| edit("summary_interval_s = 5", &format!("summary_interval_s = 5\n{line}"));
    expect_invalid(&with("icmp_error_rate = 1000001 # HERE"), "vrouter.icmp_error_rate", "more than 1000000");
    expect_invalid(&with("icmp_error_burst = 0 # HERE"), "vrouter.icmp_error_burst", "out of range 1..=10000");
    expect_invalid(&with("icmp_error_burst = 10001 # HERE"), "vrouter.icmp_error_burst", "out of range");
    let ok = parse(&with("icmp_error_rate = 0\nicmp_error_burst = 1"), "test.toml").unwrap();
    assert_eq!((ok.vrouter.icmp_error_rate, ok.vrouter.icmp_error_burst), (0, 1));
}

// ---- [[nexthop]] ----

#[test]
fn nexthop_ids() {
    expect_invalid(&edit("id = 30\n", "id = 20 # HERE\n"), "nexthop[5].id", "duplicate nexthop id 20");
}

#[test]
fn nexthop_encap() {
    expect_invalid(&edit("vif = 3\ndst_mac", "vif = 9 # HERE\ndst_mac"), "nexthop[1].vif", "vif 9 is not defined");
    expect_invalid(
        &edit("dst_mac = \"02:00:00:00:01:02\"", "dst_mac = \"00:00:00:00:00:00\" # HERE"),
        "nexthop[1].dst_mac",
        "all zero",
    );
}

#[test]
fn nexthop_tunnel_vif() {
    expect_invalid(
        &edit("label = 100\nvif = 0", "label = 100\nvif = 8 # HERE"),
        "nexthop[2].vif",
        "vif 8 is not defined",
    );
    expect_invalid(&edit("label = 100\nvif = 0", "label = 100\nvif = 2 # HERE"), "nexthop[2].vif", "type virtual");
}

#[test]
fn nexthop_tunnel_labels() {
    expect_invalid(&edit("label = 100\n", "label = 15 # HERE\n"), "nexthop[2].label", "reserved");
    expect_invalid(&edit("label = 100\n", "label = 1048576 # HERE\n"), "nexthop[2].label", "20 bits");
    parse(&edit("label = 100\n", "label = 1048575\n"), "t").unwrap();
    parse(&edit("label = 100\n", "label = 16\n"), "t").unwrap();
    expect_invalid(&edit("label = 5001\n", "label = 0 # HERE\n"), "nexthop[3].label", "VNI 0");
    expect_invalid(&edit("label = 5001\n", "label = 16777216 # HERE\n"), "nexthop[3].label", "out of range");
    parse(&edit("label = 5001\n", "label = 16777215\n"), "t").unwrap();
}

#[test]
fn nexthop_tunnel_remote_ip() {
    expect_invalid(
        &edit("remote_ip = \"10.1.1.2\"", "remote_ip = \"239.1.1.1\" # HERE"),
        "nexthop[2].remote_ip",
        "multicast",
    );
    expect_invalid(
        &edit("remote_ip = \"10.1.1.2\"", "remote_ip = \"0.0.0.0\" # HERE"),
        "nexthop[2].remote_ip",
        "unspecified",
    );
    expect_invalid(
        &edit("remote_ip = \"10.1.1.3\"", "remote_ip = \"10.1.1.1\" # HERE"),
        "nexthop[3].remote_ip",
        "router_ip",
    );
}

#[test]
fn nexthop_receive() {
    expect_invalid(
        &edit("type = \"receive\"\nvif = 1", "type = \"receive\"\nvif = 5 # HERE"),
        "nexthop[6].vif",
        "not defined",
    );
    expect_invalid(
        &edit("type = \"receive\"\nvif = 1", "type = \"receive\"\nvif = 0 # HERE"),
        "nexthop[6].vif",
        "type fabric",
    );
}

#[test]
fn nexthop_ecmp() {
    let members = "members = [10, 11]";
    expect_invalid(&edit(members, "members = [] # HERE"), "nexthop[4].members", "1 to 16");
    let many: Vec<String> = (0..17).map(|_| "10".to_string()).collect();
    expect_invalid(
        &edit(members, &format!("members = [{}] # HERE", many.join(", "))),
        "nexthop[4].members",
        "17 members",
    );
    expect_invalid(&edit(members, "members = [10, 99] # HERE"), "nexthop[4].members", "nexthop 99 is not defined");
    expect_invalid(&edit(members, "members = [10, 20] # HERE"), "nexthop[4].members", "cannot be nested");
    expect_invalid(&edit(members, "members = [10, 11, 10] # HERE"), "nexthop[4].members", "10 is listed twice");
    // Members may be defined after the ECMP nexthop.
    parse(&edit(members, "members = [10, 30]"), "t").unwrap();
}

// ---- [[route]] ----

#[test]
fn route_references() {
    expect_invalid(
        &edit("vrf = 1\nprefix = \"192.168.2.0/24\"", "vrf = 2 # HERE\nprefix = \"192.168.2.0/24\""),
        "route[2].vrf",
        "vrf 2 is not defined",
    );
    expect_invalid(
        &edit("prefix = \"fd00:2::/64\"\nnexthop = 10", "prefix = \"fd00:2::/64\"\nnexthop = 12 # HERE"),
        "route[5].nexthop",
        "nexthop 12 is not defined",
    );
}

#[test]
fn route_host_bits() {
    expect_invalid(
        &edit("prefix = \"192.168.2.0/24\"", "prefix = \"192.168.2.1/24\" # HERE"),
        "route[2].prefix",
        "the prefix is 192.168.2.0/24",
    );
    expect_invalid(
        &edit("prefix = \"fd00:2::/64\"", "prefix = \"fd00:2::1/64\" # HERE"),
        "route[5].prefix",
        "the prefix is fd00:2::/64",
    );
    expect_invalid(&edit("prefix = \"0.0.0.0/0\"", "prefix = \"10.0.0.0/0\" # HERE"), "route[3].prefix", "0.0.0.0/0");
    assert_eq!(canonical("10.0.0.1/24".parse().unwrap()).to_string(), "10.0.0.0/24");
    assert_eq!(canonical("10.0.0.1/32".parse().unwrap()).to_string(), "10.0.0.1/32");
    assert_eq!(canonical("::1/0".parse().unwrap()).to_string(), "::/0");
}

#[test]
fn route_duplicates() {
    expect_invalid(
        &with("[[route]]\nvrf = 1\nprefix = \"192.168.2.0/24\" # HERE\nnexthop = 30\n"),
        "route[7].prefix",
        "duplicate route 192.168.2.0/24 in vrf 1",
    );
    // Same prefix in another VRF is fine.
    parse(&with("[[route]]\nvrf = 0\nprefix = \"192.168.2.0/24\"\nnexthop = 30\n"), "t").unwrap();
}

// ---- [[bridge]] ----

#[test]
fn bridge_entries() {
    let extra =
        |vrf: &str, mac: &str, nh: &str| with(&format!("[[bridge]]\nvrf = {vrf}\nmac = {mac}\nnexthop = {nh}\n"));
    let mac = "\"02:00:00:00:01:02\"";
    expect_invalid(&extra("3 # HERE", mac, "2"), "bridge[1].vrf", "vrf 3 is not defined");
    expect_invalid(&extra("1", mac, "77 # HERE"), "bridge[1].nexthop", "nexthop 77 is not defined");
    expect_invalid(&extra("1", "\"00:00:00:00:00:00\" # HERE", "2"), "bridge[1].mac", "all zero");
    expect_invalid(
        &extra("1", "\"02:00:00:00:01:01\" # HERE", "2"),
        "bridge[1].mac",
        "duplicate bridge entry 02:00:00:00:01:01 in vrf 1",
    );
    parse(&extra("0", "\"02:00:00:00:01:01\"", "2"), "t").unwrap();
    parse(&extra("1", "\"ff:ff:ff:ff:ff:ff\"", "20"), "t").unwrap();
}

// ---- [[label]] ----

#[test]
fn labels() {
    let extra = |label: &str, nh: &str| with(&format!("[[label]]\nlabel = {label}\nnexthop = {nh}\n"));
    expect_invalid(&extra("15 # HERE", "1"), "label[1].label", "reserved");
    expect_invalid(&extra("1048576 # HERE", "1"), "label[1].label", "20 bits");
    expect_invalid(&extra("17 # HERE", "2"), "label[1].label", "duplicate label 17");
    expect_invalid(&extra("18", "3 # HERE"), "label[1].nexthop", "nexthop 3 is not defined");
    parse(&extra("16", "2"), "t").unwrap();
    parse(&extra("1048575", "2"), "t").unwrap();
}

// ---- [flow], [[analyzer]], [[network_policy]], [[security_group]] ----

/// Flow settings, analyzers, a network policy and a security group (used by vif[2]).
const POLICY: &str = r#"
[flow]
entries = 4096
hold_limit = 100
held_packets_per_flow = 4
age_timeout_s = 60
hold_audit_s = 10
tcp_close_evict = false
flow_table_path = "/dev/hugepages/flow"

[[analyzer]]
name = "an-1"
ip = "10.1.1.20"

[[analyzer]]
name = "an-2"
ip = "10.1.1.21"
udp_port = 9000
juniper_header = false
vni = 77
nh_mode = "static"
index = 0

[[network_policy]]
name = "web-db"
uuid = "11111111-1111-4111-8111-111111111111"
vns = ["default-domain:demo:vn1", "default-domain:demo:vn2"]

[[network_policy.rule]]
uuid = "aaaaaaaa-0000-4000-8000-000000000001"
src = "vn:default-domain:demo:vn1"
dst = "10.2.0.0/16"
protocol = "tcp"
src_ports = "any"
dst_ports = "5432"
direction = "<>"
action = "pass"
log = true
mirror_to = ["an-1", "an-2"]

[[network_policy.rule]]
uuid = "aaaaaaaa-0000-4000-8000-000000000002"
dst = "fd00::/64"
protocol = 58
direction = ">"
action = "deny"

[[security_group]]
name = "web"
uuid = "22222222-2222-4222-8222-222222222222"

[[security_group.rule]]
uuid = "bbbbbbbb-0000-4000-8000-000000000001"
direction = "ingress"
remote = "sg:web"
protocol = "tcp"
ports = "80-443"
ethertype = "IPv4"

[[security_group.rule]]
uuid = "bbbbbbbb-0000-4000-8000-000000000002"
direction = "egress"
remote = "0.0.0.0/0"
"#;

/// `VALID` with vif[2] in security group "web", plus `POLICY`, with each `(from, to)`
/// applied (`from` must occur once), plus `extra` at the end.
fn policy_edits(edits: &[(&str, &str)], extra: &str) -> String {
    let mut text = edit(
        "vn_name = \"default-domain:demo:vn1\"",
        "vn_name = \"default-domain:demo:vn1\"\nsecurity_groups = [\"web\"]",
    ) + POLICY;
    for (from, to) in edits {
        assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
        text = text.replacen(from, to, 1);
    }
    text + extra
}

fn policy(from: &str, to: &str) -> String {
    policy_edits(&[(from, to)], "")
}

#[test]
fn policy_config_is_valid() {
    use crate::config::schema::*;
    let cfg = parse(&policy_edits(&[], ""), "test.toml").unwrap_or_else(|e| panic!("{e}"));
    let f = &cfg.flow;
    assert_eq!((f.entries, f.hold_limit, f.held_packets_per_flow), (4096, 100, 4));
    assert_eq!((f.age_timeout_s, f.hold_audit_s, f.tcp_close_evict), (60, 10, false));
    assert_eq!(f.overflow_entries_effective(), 1024);
    assert_eq!(f.flow_table_path.as_deref(), Some(Path::new("/dev/hugepages/flow")));

    let a = cfg.analyzers[0].get_ref();
    assert_eq!(
        (a.udp_port, a.juniper_header, a.nh_mode, a.vni, a.index),
        (8099, true, MirrorNhMode::Dynamic, None, None)
    );
    let a = cfg.analyzers[1].get_ref();
    assert_eq!(
        (a.udp_port, a.juniper_header, a.nh_mode, a.vni, a.index),
        (9000, false, MirrorNhMode::Static, Some(77), Some(0))
    );
    assert_eq!(assign_mirror_indices(&cfg.analyzers).unwrap(), [1, 0]);

    let p = cfg.network_policies[0].get_ref();
    assert_eq!(p.vns.len(), 2);
    let r = p.rules[0].get_ref();
    assert_eq!(r.src, PolicyAddress::Vn("default-domain:demo:vn1".into()));
    assert_eq!(r.dst, PolicyAddress::Prefix("10.2.0.0/16".parse().unwrap()));
    assert_eq!(r.protocol, Protocol::Number(6));
    assert_eq!((r.src_ports, r.dst_ports), (PortRange::ANY, PortRange { lo: 5432, hi: 5432 }));
    assert_eq!((r.direction, r.action, r.log), (PolicyDirection::Both, PolicyAction::Pass, true));
    assert_eq!(r.mirror_to, ["an-1", "an-2"]);
    let r = p.rules[1].get_ref();
    assert_eq!(
        (r.src.clone(), r.protocol, r.direction),
        (PolicyAddress::Any, Protocol::Number(58), PolicyDirection::OneWay)
    );
    assert!(!r.log && r.mirror_to.is_empty());

    let g = cfg.security_groups[0].get_ref();
    let r = g.rules[0].get_ref();
    assert_eq!(
        (r.direction, r.remote.clone(), r.ports),
        (SgDirection::Ingress, SgRemote::Sg("web".into()), PortRange { lo: 80, hi: 443 })
    );
    assert_eq!(r.ethertype, Some(EtherType::Ipv4));
    assert_eq!(g.rules[1].get_ref().ethertype, None);
    assert_eq!(cfg.vifs[2].get_ref().security_groups, ["web"]);
    assert!(cfg.vifs[3].get_ref().security_groups.is_empty());

    // The string forms round-trip through serialization.
    let text = toml::to_string(&cfg).unwrap();
    let again = parse(&text, "again.toml").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(again.flow, cfg.flow);
    let r2 = again.network_policies[0].get_ref().rules[0].get_ref().clone();
    assert_eq!(
        (r2.src, r2.dst, r2.protocol, r2.dst_ports),
        (
            PolicyAddress::Vn("default-domain:demo:vn1".into()),
            PolicyAddress::Prefix("10.2.0.0/16".parse().unwrap()),
            Protocol::Number(6),
            PortRange { lo: 5432, hi: 5432 }
        )
    );
}

#[test]
fn value_forms() {
    use crate::config::schema::*;
    assert_eq!("any".parse::<Protocol>().unwrap(), Protocol::Any);
    assert_eq!("ICMP6".parse::<Protocol>().unwrap(), Protocol::Number(58));
    assert_eq!("255".parse::<Protocol>().unwrap(), Protocol::Number(255));
    assert!("256".parse::<Protocol>().unwrap_err().contains("0..=255"));
    assert_eq!(Protocol::Number(17).to_string(), "udp");
    assert_eq!(Protocol::Number(132).to_string(), "132");
    assert_eq!("1000-2000".parse::<PortRange>().unwrap(), PortRange { lo: 1000, hi: 2000 });
    assert_eq!("any".parse::<PortRange>().unwrap(), PortRange::ANY);
    assert_eq!("0-65535".parse::<PortRange>().unwrap().to_string(), "any");
    assert!("80-".parse::<PortRange>().is_err());
    assert!("65536".parse::<PortRange>().is_err());
    assert_eq!("sg:web".parse::<SgRemote>().unwrap(), SgRemote::Sg("web".into()));
    assert_eq!("vn:".parse::<PolicyAddress>().unwrap(), PolicyAddress::Vn(String::new()));
    assert!("sg:web".parse::<PolicyAddress>().is_err());
    assert!("10.0.0.1".parse::<PolicyAddress>().is_err());
    assert_eq!("fd00::/64".parse::<PolicyAddress>().unwrap().to_string(), "fd00::/64");
}

#[test]
fn flow_defaults() {
    use crate::config::schema::FlowConfig;
    let cfg = parse(VALID, "test.toml").unwrap();
    assert_eq!(cfg.flow, FlowConfig::default());
    assert_eq!(cfg.flow.entries, 524_288);
    assert_eq!(cfg.flow.overflow_entries_effective(), 105_472);
    assert_eq!((cfg.flow.hold_limit, cfg.flow.held_packets_per_flow), (1000, 3));
    assert_eq!((cfg.flow.age_timeout_s, cfg.flow.hold_audit_s), (180, 5));
    assert!(cfg.flow.tcp_close_evict && cfg.flow.flow_table_path.is_none());
    let explicit = FlowConfig { overflow_entries: 5000, ..FlowConfig::default() };
    assert_eq!(explicit.overflow_entries_effective(), 5000);
    assert!(cfg.analyzers.is_empty() && cfg.network_policies.is_empty());
}

#[test]
fn flow_values() {
    let e = |to: &str| policy("entries = 4096", to);
    expect_invalid(&e("entries = 1000 # HERE"), "flow.entries", "power of two");
    expect_invalid(&e("entries = 512 # HERE"), "flow.entries", "from 1024");
    expect_invalid(&e("entries = 33554432 # HERE"), "flow.entries", "power of two");
    parse(&e("entries = 1024"), "t").unwrap();
    expect_invalid(&e("entries = 4096\noverflow_entries = 33554432 # HERE"), "flow.overflow_entries", "more than");
    expect_invalid(&policy("hold_limit = 100", "hold_limit = 0 # HERE"), "flow.hold_limit", "at least 1");
    for n in ["0", "17"] {
        expect_invalid(
            &policy("held_packets_per_flow = 4", &format!("held_packets_per_flow = {n} # HERE")),
            "flow.held_packets_per_flow",
            "1..=16",
        );
    }
    parse(&policy("held_packets_per_flow = 4", "held_packets_per_flow = 16"), "t").unwrap();
    expect_invalid(&policy("age_timeout_s = 60", "age_timeout_s = 0 # HERE"), "flow.age_timeout_s", "at least 1");
    expect_invalid(&policy("hold_audit_s = 10", "hold_audit_s = 0 # HERE"), "flow.hold_audit_s", "at least 1");
    expect_invalid(
        &policy("flow_table_path = \"/dev/hugepages/flow\"", "flow_table_path = \"\" # HERE"),
        "flow.flow_table_path",
        "empty",
    );
    expect_parse(&policy("hold_limit = 100", "hold_limt = 100 # HERE"), Some("flow"), "unknown field `hold_limt`");
}

#[test]
fn tenants() {
    let t = |name: &str, token: &str, vns: &str| {
        format!("\n[[tenant]]\nname = \"{name}\"\ntoken = \"{token}\"\nvns = [{vns}]\n")
    };
    let vn1 = "\"default-domain:demo:vn1\"";
    let ok = policy_edits(&[], &t("red", "red-token-0123456789", vn1));
    let cfg = parse(&ok, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.tenants[0].get_ref().name, "red");
    expect_invalid(
        &policy_edits(
            &[],
            &(t("red", "red-token-0123456789", vn1)
                + &t("blue", "short # HERE", vn1).replace("short # HERE\"", "short\" # HERE")),
        ),
        "tenant[1].token",
        "at least 16 characters",
    );
    expect_invalid(
        &policy_edits(
            &[],
            &(t("red", "red-token-0123456789", vn1)
                + &t("red", "blue-token-0123456789", vn1).replace("name = \"red\"\n", "name = \"red\" # HERE\n")),
        ),
        "tenant[1].name",
        "duplicate tenant name",
    );
    expect_invalid(
        &policy_edits(
            &[],
            &t("red", "red-token-0123456789", "\"nope\"").replace("vns = [\"nope\"]", "vns = [\"nope\"] # HERE"),
        ),
        "tenant[0].vns",
        "no vif is in virtual network \"nope\"",
    );
    let api = policy_edits(&[], "").replacen("[vrouter]\n", "[vrouter]\ntrace_api = \"127.0.0.1:8085\" # HERE\n", 1);
    assert!(api.contains("trace_api"));
    let e = parse(&api, "test.toml").unwrap_err().to_string();
    assert!(e.contains("vrouter.trace_api") && e.contains("[[tenant]]"), "{e}");
    let with_tenant = format!("{api}{}", t("red", "red-token-0123456789", vn1));
    let cfg = parse(&with_tenant, "test.toml").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.vrouter.trace_api, Some("127.0.0.1:8085".parse().unwrap()));
}

#[test]
fn analyzer_names_and_addresses() {
    expect_invalid(
        &policy("name = \"an-2\"", "name = \"an-1\" # HERE"),
        "analyzer[1].name",
        "duplicate analyzer name \"an-1\"",
    );
    expect_invalid(&policy("name = \"an-2\"", "name = \"\" # HERE"), "analyzer[1].name", "empty");
    expect_invalid(&policy("ip = \"10.1.1.20\"", "ip = \"224.0.0.5\" # HERE"), "analyzer[0].ip", "multicast");
    expect_invalid(&policy("udp_port = 9000", "udp_port = 0 # HERE"), "analyzer[1].udp_port", "0");
    expect_parse(
        &policy("nh_mode = \"static\"", "nh_mode = \"fixed\" # HERE"),
        Some("analyzer[1].nh_mode"),
        "unknown variant `fixed`",
    );
}

#[test]
fn analyzer_vni() {
    expect_invalid(
        &policy_edits(&[("juniper_header = false", "juniper_header = false # HERE"), ("vni = 77\n", "")], ""),
        "analyzer[1].juniper_header",
        "needs a vni",
    );
    expect_invalid(
        &policy_edits(&[("juniper_header = false", "juniper_header = true"), ("vni = 77", "vni = 77 # HERE")], ""),
        "analyzer[1].vni",
        "only used with juniper_header = false",
    );
    expect_invalid(&policy("vni = 77", "vni = 0 # HERE"), "analyzer[1].vni", "out of range");
    expect_invalid(&policy("vni = 77", "vni = 16777216 # HERE"), "analyzer[1].vni", "out of range");
}

#[test]
fn analyzer_indices() {
    expect_invalid(&policy("index = 0", "index = 255 # HERE"), "analyzer[1].index", "no mirror");
    expect_invalid(&policy("index = 0", "index = 300 # HERE"), "analyzer[1].index", "out of range 0..=254");
    parse(&policy("index = 0", "index = 254"), "t").unwrap();
    expect_invalid(
        &policy_edits(
            &[("ip = \"10.1.1.20\"", "ip = \"10.1.1.20\"\nindex = 3"), ("index = 0", "index = 3 # HERE")],
            "",
        ),
        "analyzer[1].index",
        "mirror index 3 is already used by analyzer[0]",
    );
    // 255 analyzers fit (indices 0..=254), the 256th has no index left.
    let more = |n: usize, mark: usize| -> String {
        (0..n)
            .map(|i| {
                let here = if i == mark { " # HERE" } else { "" };
                format!("\n[[analyzer]]{here}\nname = \"x{i}\"\nip = \"10.1.2.3\"\n")
            })
            .collect()
    };
    parse(&policy_edits(&[], &more(253, usize::MAX)), "t").unwrap();
    expect_invalid(&policy_edits(&[], &more(254, 253)), "analyzer[255].index", "no free mirror index");
}

#[test]
fn policy_mirror_to() {
    let m = "mirror_to = [\"an-1\", \"an-2\"]";
    expect_invalid(
        &policy(m, "mirror_to = [\"an-1\", \"an-9\"] # HERE"),
        "network_policy[0].rule[0].mirror_to",
        "analyzer \"an-9\" is not defined",
    );
    expect_invalid(
        &policy(m, "mirror_to = [\"an-1\", \"an-2\", \"an-1\"] # HERE"),
        "network_policy[0].rule[0].mirror_to",
        "3 analyzers; a flow is mirrored to at most 2",
    );
    expect_invalid(
        &policy(m, "mirror_to = [\"an-2\", \"an-2\"] # HERE"),
        "network_policy[0].rule[0].mirror_to",
        "listed twice",
    );
    parse(&policy(m, "mirror_to = []"), "t").unwrap();
}

#[test]
fn policy_ports_and_protocol() {
    expect_invalid(
        &policy("dst_ports = \"5432\"", "dst_ports = \"2000-1000\" # HERE"),
        "network_policy[0].rule[0].dst_ports",
        "port range 2000-1000 is empty",
    );
    expect_invalid(
        &policy("protocol = 58", "protocol = 58\nsrc_ports = \"80\" # HERE"),
        "network_policy[0].rule[1].src_ports",
        "protocol icmp6 has no ports",
    );
    expect_invalid(
        &policy("protocol = 58", "protocol = \"icmp\" # HERE"),
        "network_policy[0].rule[1].protocol",
        "icmp never matches IPv6",
    );
    parse(&policy("dst_ports = \"5432\"", "dst_ports = 5432"), "t").unwrap();
    parse(&policy("protocol = \"tcp\"\nsrc_ports", "protocol = \"any\"\nsrc_ports"), "t").unwrap();
    expect_parse(
        &policy("protocol = \"tcp\"\nsrc_ports", "protocol = \"tcpx\" # HERE\nsrc_ports"),
        Some("network_policy[0].rule[0].protocol"),
        "invalid protocol \"tcpx\"",
    );
    expect_parse(
        &policy("protocol = 58", "protocol = 256 # HERE"),
        Some("network_policy[0].rule[1].protocol"),
        "out of range 0..=255",
    );
    expect_parse(
        &policy("dst_ports = \"5432\"", "dst_ports = \"http\" # HERE"),
        Some("network_policy[0].rule[0].dst_ports"),
        "invalid port range",
    );
    expect_parse(
        &policy("direction = \">\"", "direction = \"<\" # HERE"),
        Some("network_policy[0].rule[1].direction"),
        "unknown variant `<`",
    );
}

#[test]
fn policy_addresses() {
    expect_invalid(
        &policy("src = \"vn:default-domain:demo:vn1\"", "src = \"vn:\" # HERE"),
        "network_policy[0].rule[0].src",
        "VN name is empty",
    );
    // VNs need not be local.
    parse(&policy("src = \"vn:default-domain:demo:vn1\"", "src = \"vn:elsewhere\""), "t").unwrap();
    expect_invalid(
        &policy("dst = \"10.2.0.0/16\"", "dst = \"10.2.0.1/16\" # HERE"),
        "network_policy[0].rule[0].dst",
        "host bits set; the prefix is 10.2.0.0/16",
    );
    expect_invalid(
        &policy("dst = \"fd00::/64\"", "src = \"10.0.0.0/8\"\ndst = \"fd00::/64\" # HERE"),
        "network_policy[0].rule[1].dst",
        "different IP versions",
    );
    expect_parse(
        &policy("dst = \"10.2.0.0/16\"", "dst = \"10.2.0.1\" # HERE"),
        Some("network_policy[0].rule[0].dst"),
        "invalid address",
    );
    expect_parse(
        &policy("dst = \"10.2.0.0/16\"", "dst = \"sg:web\" # HERE"),
        Some("network_policy[0].rule[0].dst"),
        "vn:<name>",
    );
}

#[test]
fn policy_names_vns_and_uuids() {
    let vns = "vns = [\"default-domain:demo:vn1\", \"default-domain:demo:vn2\"]";
    expect_invalid(&policy(vns, "vns = [\"a\", \"\"] # HERE"), "network_policy[0].vns", "entry 1");
    expect_invalid(&policy(vns, "vns = [\"a\", \"a\"] # HERE"), "network_policy[0].vns", "listed twice");
    expect_invalid(
        &policy(vns, &format!("vns = [\"{}\"] # HERE", "v".repeat(64))),
        "network_policy[0].vns",
        "63 bytes",
    );
    expect_invalid(&policy("name = \"web-db\"", "name = \"\" # HERE"), "network_policy[0].name", "empty");
    expect_invalid(
        &policy_edits(&[], "\n[[network_policy]]\nname = \"web-db\" # HERE\n"),
        "network_policy[1].name",
        "duplicate network policy name",
    );
    expect_invalid(
        &policy("uuid = \"11111111-1111-4111-8111-111111111111\"", "uuid = \"1111\" # HERE"),
        "network_policy[0].uuid",
        "not a UUID",
    );
    expect_invalid(
        &policy(
            "uuid = \"aaaaaaaa-0000-4000-8000-000000000002\"",
            "uuid = \"aaaaaaaa-0000-4000-8000-00000000002\" # HERE",
        ),
        "network_policy[0].rule[1].uuid",
        "not a UUID",
    );
    // Rule UUIDs are unique (case-insensitively) across policies and security groups.
    expect_invalid(
        &policy(
            "uuid = \"aaaaaaaa-0000-4000-8000-000000000002\"",
            "uuid = \"AAAAAAAA-0000-4000-8000-000000000001\" # HERE",
        ),
        "network_policy[0].rule[1].uuid",
        "duplicate rule uuid AAAAAAAA-0000-4000-8000-000000000001 (first used by network_policy[0].rule[0] at line",
    );
    expect_invalid(
        &policy(
            "uuid = \"bbbbbbbb-0000-4000-8000-000000000002\"",
            "uuid = \"aaaaaaaa-0000-4000-8000-000000000002\" # HERE",
        ),
        "security_group[0].rule[1].uuid",
        "first used by network_policy[0].rule[1]",
    );
    expect_parse(
        &policy(
            "[[network_policy.rule]]\nuuid = \"aaaaaaaa-0000-4000-8000-000000000002\"",
            "[[network_policy.rule]] # HERE\nuuid = \"aaaaaaaa-0000-4000-8000-000000000002\"",
        )
        .replace("action = \"deny\"\n", ""),
        Some("network_policy[0].rule[1]"),
        "missing field `action`",
    );
    expect_parse(
        &policy("action = \"deny\"", "action = \"deny\"\nactoin = \"pass\" # HERE"),
        Some("network_policy[0].rule[1]"),
        "unknown field `actoin`",
    );
}

#[test]
fn security_group_rules() {
    expect_invalid(
        &policy("remote = \"sg:web\"", "remote = \"sg:db\" # HERE"),
        "security_group[0].rule[0].remote",
        "security group \"db\" is not defined",
    );
    expect_invalid(
        &policy("remote = \"sg:web\"", "remote = \"sg:\" # HERE"),
        "security_group[0].rule[0].remote",
        "needs a security group name",
    );
    expect_invalid(
        &policy("remote = \"0.0.0.0/0\"", "remote = \"::/0\" # HERE\nethertype = \"IPv4\""),
        "security_group[0].rule[1].remote",
        "::/0 is not IPv4",
    );
    expect_invalid(
        &policy("remote = \"0.0.0.0/0\"", "remote = \"10.0.0.1/8\" # HERE"),
        "security_group[0].rule[1].remote",
        "host bits",
    );
    expect_invalid(
        &policy("protocol = \"tcp\"\nports = \"80-443\"", "protocol = \"icmp6\" # HERE"),
        "security_group[0].rule[0].protocol",
        "icmp6 never matches IPv4 traffic (use icmp) (ethertype is IPv4)",
    );
    expect_invalid(
        &policy("ports = \"80-443\"", "ports = \"443-80\" # HERE"),
        "security_group[0].rule[0].ports",
        "port range 443-80 is empty",
    );
    expect_invalid(
        &policy("protocol = \"tcp\"\nports = \"80-443\"", "protocol = \"icmp\"\nports = \"8\" # HERE"),
        "security_group[0].rule[0].ports",
        "has no ports",
    );
    expect_parse(
        &policy("ethertype = \"IPv4\"", "ethertype = \"IPv5\" # HERE"),
        Some("security_group[0].rule[0].ethertype"),
        "unknown variant `IPv5`",
    );
    expect_parse(
        &policy("direction = \"egress\"", "direction = \"out\" # HERE"),
        Some("security_group[0].rule[1].direction"),
        "unknown variant `out`",
    );
    parse(&policy("ethertype = \"IPv4\"", "ethertype = \"ipv4\""), "t").unwrap();
}

#[test]
fn security_group_names() {
    expect_invalid(
        &policy_edits(&[], "\n[[security_group]]\nname = \"web\" # HERE\n"),
        "security_group[1].name",
        "duplicate security group name \"web\"",
    );
    expect_invalid(
        &policy("uuid = \"22222222-2222-4222-8222-222222222222\"", "uuid = \"x\" # HERE"),
        "security_group[0].uuid",
        "not a UUID",
    );
    expect_invalid(
        &policy_edits(
            &[],
            "\n[[security_group]]\nname = \"db\"\nuuid = \"22222222-2222-4222-8222-222222222222\" # HERE\n",
        ),
        "security_group[1].uuid",
        "duplicate security group uuid",
    );
}

#[test]
fn vif_security_groups() {
    let sgs = "security_groups = [\"web\"]";
    expect_invalid(
        &policy(sgs, "security_groups = [\"web\", \"db\"] # HERE"),
        "vif[2].security_groups",
        "security group \"db\" is not defined",
    );
    expect_invalid(
        &policy(sgs, "security_groups = [\"web\", \"web\"] # HERE"),
        "vif[2].security_groups",
        "listed twice",
    );
    expect_invalid(
        &policy("rx_queues = 2", "rx_queues = 2\nsecurity_groups = [\"web\"] # HERE"),
        "vif[0].security_groups",
        "type fabric",
    );
    parse(&policy(sgs, "security_groups = []"), "t").unwrap();
}

#[test]
fn vif_interface_mirroring() {
    let sgs = "security_groups = [\"web\"]";
    let cfg = parse(
        &policy(sgs, "security_groups = [\"web\"]\nmirror_to = \"an-2\"\nmirror_rx = true\nmirror_tx = true"),
        "t",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let v = cfg.vifs[2].get_ref();
    assert_eq!((v.mirror_to.as_deref(), v.mirror_rx, v.mirror_tx), (Some("an-2"), true, true));
    assert!(!cfg.vifs[0].get_ref().mirror_rx && cfg.vifs[0].get_ref().mirror_to.is_none());
    expect_invalid(
        &policy(sgs, "security_groups = [\"web\"]\nmirror_rx = true\nmirror_to = \"an-9\" # HERE"),
        "vif[2].mirror_to",
        "analyzer \"an-9\" is not defined",
    );
    expect_invalid(
        &policy(sgs, "security_groups = [\"web\"]\nmirror_to = \"an-1\" # HERE"),
        "vif[2].mirror_to",
        "set mirror_rx and/or mirror_tx",
    );
    expect_invalid(
        &policy(sgs, "security_groups = [\"web\"]\nmirror_tx = true # HERE"),
        "vif[2].mirror_tx",
        "needs mirror_to",
    );
}

#[test]
fn key_lines_from_spans() {
    // A quoted key in an entry.
    expect_invalid(&edit("mtu = 9000", "\"mtu\" = 9001 # HERE"), "vif[0].mtu", "68..=9000");
    // Dotted keys at the top level instead of an [eal] table.
    let dotted = "eal.forwarding_cores = [1]\neal . \"memory_mb\" = 8 # HERE\n".to_string()
        + &VALID[VALID.find("[vrouter]").unwrap()..];
    expect_invalid(&dotted, "eal.memory_mb", "at least 64");
    // An inline table for [flow].
    let inline = format!("flow = {{ hold_limit = 0 }} # HERE\n{VALID}");
    expect_invalid(&inline, "flow.hold_limit", "at least 1");
    // A key of a nested [[network_policy.rule]]: the line of the earlier rule's key.
    let text = policy(
        "uuid = \"aaaaaaaa-0000-4000-8000-000000000002\"",
        "uuid = \"aaaaaaaa-0000-4000-8000-000000000001\" # HERE",
    );
    let first = text.lines().position(|l| l == "uuid = \"aaaaaaaa-0000-4000-8000-000000000001\"").unwrap() + 1;
    expect_invalid(
        &text,
        "network_policy[0].rule[1].uuid",
        &format!("(first used by network_policy[0].rule[0] at line {first})"),
    );
}

// ---- helpers ----

#[test]
fn text_helpers() {
    assert!(is_uuid("6f1c2a3b-4d5e-4f60-8a1b-2c3d4e5f6a7b"));
    assert!(!is_uuid("6f1c2a3b4d5e4f608a1b2c3d4e5f6a7b"));
}

#[test]
fn unique_keeps_the_first() {
    let mut items = Unique::items();
    assert!(!items.repeated(3));
    assert!(!items.repeated(4));
    assert!(items.repeated(3));
    assert!(items.repeated(4));
    let mut keys: Unique<'_, &str> = Unique::items();
    assert_eq!(keys.first("a", 5), None);
    assert_eq!(keys.first("b", 6), None);
    assert_eq!(keys.first("a", 7), Some(5));
    assert_eq!(keys.first("a", 9), Some(5));
}

/// `VALID`'s second VM as a vhost-user port: `device` left out.
fn vhost_vm2(vhost: &str) -> String {
    edit("device = \"net_tap1\"\n", &format!("vhost = {vhost} # HERE\n"))
}

#[test]
fn vhost_vif_gets_its_device_and_queues() {
    let cfg =
        parse(&vhost_vm2(r#"{ socket = "/run/vm2.sock", queues = 2 }"#), "test.toml").unwrap_or_else(|e| panic!("{e}"));
    let vif = cfg.vifs.iter().map(|v| v.get_ref()).find(|v| v.id == 3).unwrap();
    assert_eq!(vif.device, "net_vhost3");
    assert_eq!(vif.rx_queues, 2);
    let v = vif.vhost.as_ref().unwrap();
    assert_eq!(v.mode, VhostMode::Client, "client mode is the default");
    assert_eq!(vif.probe_args().as_deref(), Some("net_vhost3,iface=/run/vm2.sock,queues=2,client=1"));

    let cfg = parse(&vhost_vm2(r#"{ socket = "/run/vm2.sock", mode = "server" }"#), "test.toml").unwrap();
    let vif = cfg.vifs.iter().map(|v| v.get_ref()).find(|v| v.id == 3).unwrap();
    assert_eq!(vif.rx_queues, 1);
    assert_eq!(vif.probe_args().as_deref(), Some("net_vhost3,iface=/run/vm2.sock,queues=1,client=0"));
    // A plain vif is probed by the EAL, not by the vRouter.
    let plain = cfg.vifs.iter().map(|v| v.get_ref()).find(|v| v.id == 2).unwrap();
    assert_eq!(plain.probe_args(), None);
}

#[test]
fn vhost_vif_errors_name_the_field() {
    expect_invalid(&vhost_vm2(r#"{ socket = "vm2.sock" }"#), "vif[3].vhost.socket", "not an absolute path");
    expect_invalid(&vhost_vm2(r#"{ socket = "/run/a,b.sock" }"#), "vif[3].vhost.socket", "comma");
    let long = format!("{{ socket = \"/{}\" }}", "s".repeat(120));
    expect_invalid(&vhost_vm2(&long), "vif[3].vhost.socket", "at most 107");
    expect_invalid(&vhost_vm2(r#"{ socket = "/run/vm2.sock", queues = 17 }"#), "vif[3].vhost.queues", "1..=16");
    expect_invalid(&vhost_vm2(r#"{ socket = "/run/vm2.sock", queues = 0 }"#), "vif[3].vhost.queues", "1..=16");
    expect_parse(&vhost_vm2(r#"{ socket = "/run/vm2.sock", mode = "both" }"#), Some("vif[3].vhost"), "unknown variant");
    // Not on a fabric vif, not with devargs, not with another driver's device.
    let fabric = edit("device = \"net_pcap0\"\n", "vhost = { socket = \"/run/f.sock\" } # HERE\n");
    expect_invalid(&fabric, "vif[0].vhost", "virtual (VM) vifs");
    let both = vhost_vm2(r#"{ socket = "/run/vm2.sock" }"#).replacen(
        "type = \"vm\"\n",
        "type = \"vm\"\ndevargs = \"x=1\"\n",
        1,
    );
    let both = both.replacen(" # HERE", "", 1).replacen("devargs = \"x=1\"\n", "devargs = \"x=1\" # HERE\n", 1);
    expect_invalid(&both, "vif[3].devargs", "come from vhost");
    let other = vhost_vm2(r#"{ socket = "/run/vm2.sock" }"#).replacen(" # HERE", "\ndevice = \"net_tap1\" # HERE", 1);
    expect_invalid(&other, "vif[3].device", "net_vhost");
    let rxq = vhost_vm2(r#"{ socket = "/run/vm2.sock", queues = 2 }"#).replacen(" # HERE", "\nrx_queues = 3 # HERE", 1);
    expect_invalid(&rxq, "vif[3].rx_queues", "leave rx_queues out");
    // Two vifs on one socket.
    let two = vhost_vm2(r#"{ socket = "/run/vm2.sock" }"#).replacen(
        "device = \"net_tap0\"\n",
        "vhost = { socket = \"/run/vm2.sock\" }\n",
        1,
    );
    expect_invalid(&two, "vif[3].vhost", "already vif[2]'s");
}

// ---- [log] ----

#[test]
fn log_section() {
    let cfg = parse(VALID, "test.toml").unwrap();
    assert_eq!(cfg.log, LogConfig::default(), "no [log]: info, no filter, text");
    let ok = parse(&with("[log]\nlevel = \"debug\"\nfilter = \"vrouter::agent=trace,warn\"\nformat = \"json\""), "t")
        .unwrap();
    assert_eq!((ok.log.level.as_str(), ok.log.format()), ("debug", logging::LogFormat::Json));
    expect_invalid(&with("[log]\nformat = \"xml\" # HERE"), "log.format", "expected \"text\" or \"json\"");
    expect_invalid(&with("[log]\nlevel = \"loud\" # HERE"), "log.level", "`loud` is not a level");
    expect_invalid(&with("[log]\nfilter = \"vrouter=bogus\" # HERE"), "log.filter", "is not a filter");
    let e = parse(&with("[log]\ncolour = true"), "test.toml").unwrap_err().to_string();
    assert!(e.contains("unknown field `colour`"), "{e}");
}
