//! The README's first command, `ci/demo.sh`, run for a few seconds on the binaries of this
//! build: while the vRouter runs it must show the product's headline (flows mirrored to two
//! analyzers in `flow -l`, the collector's flow records with analyzer names and mirrored bytes,
//! the VMI and vRouter UVEs with their mirror counters), and after the stop the mirror copies
//! decoded by the Wireshark dissector.

use std::path::Path;
use std::process::Command;

/// The first number after `key` in `text`'s first line containing `key`.
fn number_after(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.contains(key))?;
    let rest = &line[line.find(key)? + key.len()..];
    rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

#[test]
fn the_demo_shows_the_headline_while_the_vrouter_runs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_vrouter")).parent().unwrap();
    for b in ["collector", "flow", "vif", "mirror", "trace"] {
        assert!(bin.join(b).exists(), "{b} not built next to vrouter (run the tests with --workspace)");
    }
    let out = Command::new("bash")
        .args(["ci/demo.sh", "--no-setup"])
        .current_dir(root)
        .env("DEMO_SECONDS", "7")
        .env("DEMO_BIN", bin)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo exited with {}\n{text}\n{err}", out.status);
    // Everything of the headline comes before the stop.
    let stop = text.find("elapsed: sending SIGINT").unwrap_or_else(|| panic!("no stop line:\n{text}"));
    let running = &text[..stop];
    assert!(running.contains("-l (while the vRouter runs"), "{text}");
    let mstats = number_after(running, " MStats:").expect("flow -l shows MStats");
    let smstats = number_after(running, " SMStats:").expect("flow -l shows SMStats");
    assert!(mstats > 0 && smstats > 0, "mirrored packets to both analyzers:\n{running}");
    let rec = running
        .lines()
        .find(|l| l.contains("analyzer_name=demo-analyzer ") && !l.contains("agg-mir-bytes=0"))
        .unwrap_or_else(|| panic!("no mirrored flow record while running:\n{running}"));
    assert!(rec.contains("sec_analyzer_name=demo-analyzer-2"), "{rec}");
    assert!(number_after(rec, "agg-mir-packets=").unwrap() > 0, "{rec}");
    let line = |key: &str| running.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("no {key}:\n{running}"));
    let vmi = line("VMI UVE tap-vm1:");
    assert!(number_after(vmi, "mir_pkts=").unwrap_or(0) > 0, "VMI UVE mirror counters: {vmi}");
    let vr = line("vRouter UVE demo-vrouter:");
    assert!(number_after(vr, "mir_tpkts=").unwrap_or(0) > 0, "vRouter UVE mirror counters: {vr}");
    // After the stop: the copies decoded field by field, for both analyzers and the
    // interface mirroring of vm1.
    let after = &text[stop..];
    for group in ["analyzer 10.10.0.9 flow:", "analyzer 10.10.0.10 flow:", "analyzer 10.10.0.9 interface-rx:"] {
        assert!(after.contains(group), "no {group:?} in the decoded copies:\n{after}");
    }
    assert!(after.contains("source_vn=default-domain:demo:vn1"), "{after}");
}
