//! Runs the built `vifdump` and `vif --rate` against stats regions created in a temp directory
//! through the vRouter's writer API: the one-line reasons a capture cannot run, the
//! `dpdk-dumpcap` command it runs (through stand-in programs that record their arguments) and
//! the rates over an interval in which the test moves the counters by known amounts.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vrouter_abi::drop_reason::DropReason;
use vrouter_abi::stats::*;

const VIF: &str = env!("CARGO_BIN_EXE_vif");
const VIFDUMP: &str = env!("CARGO_BIN_EXE_vifdump");

fn vifs() -> Vec<VifInfo> {
    vec![
        VifInfo::new(0, VIF_TYPE_PHYSICAL, "fabric0").port(0, 1, 1).device("0000:00:04.0"),
        VifInfo::new(1, VIF_TYPE_VIRTUAL, "tap-vm1").port(1, 1, 1).device("net_vhost1"),
        VifInfo::new(2, VIF_TYPE_VIRTUAL, "tap-vm2").port(3, 1, 1).device("net_af_packet2"),
    ]
}

fn huge(prefix: &str) -> EalFacts {
    EalFacts { file_prefix: prefix.into(), hugepages: true, pdump: true }
}

fn region(dir: &Path, eal: &EalFacts) -> StatsRegion {
    StatsRegion::create_continuing_with(dir, 8, 1, &vifs(), 0, eal).unwrap().0
}

/// `bin --run-dir DIR args...` (options first: a capture filter takes the words after it).
fn run(bin: &str, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("--run-dir")
        .arg(dir)
        .args(args)
        .env_remove("VROUTER_RUN_DIR")
        .env_remove("VIFDUMP_DUMPCAP")
        .env_remove("VIFDUMP_TSHARK")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// `vifdump` fails with one line on stderr containing every needle.
#[track_caller]
fn fails_with(o: &Output, needles: &[&str]) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "stdout {} stderr {err}", text(&o.stdout));
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err}");
    }
    assert!(o.stdout.is_empty());
    err
}

#[test]
fn vifdump_says_why_it_cannot_capture() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // No vRouter at all.
    fails_with(&run(VIFDUMP, dir, &["-i", "vif0/1"]), &["vifdump: ", "stats"]);

    // A vRouter on 4 KiB pages: how to get huge pages.
    let facts = EalFacts { file_prefix: "vr1".into(), hugepages: false, pdump: false };
    let r = region(dir, &facts);
    let e = fails_with(&run(VIFDUMP, dir, &["-i", "vif0/1", "-w", "x.pcapng"]), &["[eal] no_huge = true"]);
    assert!(e.contains("secondary process") && e.contains("set [eal] no_huge = false"), "{e}");
    assert!(e.contains("ci/setup.sh --hugepages") && e.contains("Memory modes"), "{e}");
    drop(r);

    // Huge pages, capture off.
    let r = region(dir, &EalFacts { pdump: false, ..huge("vr1") });
    fails_with(&run(VIFDUMP, dir, &["-i", "vif0/1"]), &["[eal] pdump = true", "restart"]);
    drop(r);

    // A region that does not say (a build before packet capture).
    let r = StatsRegion::create(dir, 8, 1, &vifs(), 0).unwrap();
    fails_with(&run(VIFDUMP, dir, &["-i", "vif0/1"]), &["did not record its EAL file prefix"]);
    drop(r);

    // Ready, but no such vif; then a stopped vRouter.
    let r = region(dir, &huge("vr1"));
    let e = fails_with(&run(VIFDUMP, dir, &["-i", "vif0/7", "--dry-run"]), &["-i vif0/7: no such vif"]);
    assert!(e.contains("vif0/0 fabric0, vif0/1 tap-vm1, vif0/2 tap-vm2"), "{e}");
    fails_with(&run(VIFDUMP, dir, &["-i", "1", "--json"]), &["--json", "--dry-run"]);
    r.set_state(RegionState::Stopped);
    fails_with(&run(VIFDUMP, dir, &["-i", "vif0/1"]), &["has stopped", "nothing to capture"]);
}

#[test]
fn vifdump_runs_dpdk_dumpcap_on_the_vif_s_port() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let _r = region(dir, &huge("vr7.t99"));

    // --dry-run: the command, by any of the vif's names.
    for name in ["vif0/2", "2", "tap-vm2", "net_af_packet2"] {
        let o = run(VIFDUMP, dir, &["-i", name, "--dry-run", "-c", "5", "udp", "port", "53"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(
            text(&o.stdout),
            "dpdk-dumpcap --file-prefix=vr7.t99 -i net_af_packet2 -p -w - -c 5 -q --capture-comment \
             'vif0/2 tap-vm2 (vifdump)' -f 'udp port 53' | tshark -l -n -r - -c 5\n"
        );
    }
    let o = run(VIFDUMP, dir, &["-i", "tap-vm1", "-n", "--json", "-w", "/tmp/a.pcapng"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["vif"].as_u64(), v["port"].as_u64()), (Some(1), Some(1)));
    assert_eq!((v["device"].as_str(), v["file_prefix"].as_str()), (Some("net_vhost1"), Some("vr7.t99")));
    assert_eq!(v["decode"], Value::Null);
    assert_eq!(v["dumpcap"][1], "--file-prefix=vr7.t99");

    // Running it: stand-ins record their arguments. With -w, dpdk-dumpcap takes the tool's
    // place (its exit code is the tool's).
    let args_file = dir.join("args");
    let dumpcap = dir.join("fake-dumpcap");
    std::fs::write(
        &dumpcap,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}\nprintf 'PCAPNG'\nexit ${{FAKE_EXIT:-0}}\n",
            args_file.display()
        ),
    )
    .unwrap();
    let tshark = dir.join("fake-tshark");
    let decoded = dir.join("decoded");
    std::fs::write(&tshark, format!("#!/bin/sh\n{{ printf '%s\\n' \"$@\"; cat; }} > {}\n", decoded.display())).unwrap();
    for f in [&dumpcap, &tshark] {
        Command::new("chmod").arg("+x").arg(f).status().unwrap();
    }
    let with = |args: &[&str], exit: &str| {
        Command::new(VIFDUMP)
            .arg("--run-dir")
            .arg(dir)
            .arg("--dumpcap")
            .arg(&dumpcap)
            .arg("--tshark")
            .arg(&tshark)
            .args(args)
            .env("FAKE_EXIT", exit)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = with(&["-i", "vif0/0", "-w", "out.pcapng", "tcp"], "3");
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), "PCAPNG");
    let args = std::fs::read_to_string(&args_file).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "--file-prefix=vr7.t99",
            "-i",
            "0000:00:04.0",
            "-p",
            "-w",
            "out.pcapng",
            "--capture-comment",
            "vif0/0 fabric0 (vifdump)",
            "-f",
            "tcp"
        ]
    );
    // Without -w: dpdk-dumpcap's stdout into tshark's stdin.
    let o = with(&["-i", "tap-vm1", "-c", "2"], "0");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(std::fs::read_to_string(&decoded).unwrap(), "-l\n-n\n-r\n-\n-c\n2\nPCAPNG");
    assert!(std::fs::read_to_string(&args_file)
        .unwrap()
        .starts_with("--file-prefix=vr7.t99\n-i\nnet_vhost1\n-p\n-w\n-\n-c\n2\n-q\n"));
    // dpdk-dumpcap's failure is the tool's.
    assert_eq!(with(&["-i", "tap-vm1"], "2").status.code(), Some(2));
    // A missing program: one line naming the package.
    let o = run(VIFDUMP, dir, &["-i", "1", "-w", "x", "--dumpcap", "/nonexistent/dpdk-dumpcap"]);
    fails_with(&o, &["/nonexistent/dpdk-dumpcap not found", "apt install dpdk"]);
}

/// Whether process `pid` is blocked in a sleep system call (nanosleep or clock_nanosleep):
/// `vif --rate` has taken its first read and waits for the second.
fn sleeping(pid: u32) -> bool {
    let s = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    matches!(s.split_whitespace().next(), Some("35" | "230"))
}

/// Runs `vif --rate` with `args`; once it sleeps between its reads, `during` moves counters.
fn rate_run(dir: &Path, args: &[&str], during: impl FnOnce()) -> Output {
    let child = Command::new(VIF)
        .arg("--run-dir")
        .arg(dir)
        .args(args)
        .env_remove("VROUTER_RUN_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let by = Instant::now() + Duration::from_secs(10);
    while !sleeping(child.id()) {
        assert!(Instant::now() < by, "vif --rate never slept between its reads");
        std::thread::sleep(Duration::from_millis(2));
    }
    during();
    child.wait_with_output().unwrap()
}

#[test]
fn vif_rate_is_the_counters_moves_over_the_interval() {
    if std::fs::read_to_string(format!("/proc/{}/syscall", std::process::id())).is_err() {
        eprintln!("skipped: /proc/PID/syscall is not readable here (needs ptrace access to own children)");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let r = region(dir, &huge("vr1"));
    let l0 = r.lcore(0).unwrap();
    // Before the first read: not in the rates.
    l0.rx(1, 1000, 64_000);
    l0.tx(2, 1000, 64_000);

    // Stopped counters: every rate is 0.
    let o = rate_run(dir, &["--list", "--rate", "--interval", "0.5"], || {});
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.starts_with("Vrouter Interface Table: rates per second over 0.5"), "{out}");
    assert_eq!(out.matches("RX packets:0/s  bytes:0/s errors:0/s").count(), 3, "{out}");
    assert_eq!(out.matches("TX packets:0/s  bytes:0/s errors:0/s").count(), 3, "{out}");
    assert_eq!(out.matches("Drops:0/s").count(), 3, "{out}");
    assert!(out.contains("vif0/2      PMD: 3 OS: net_af_packet2 Name: tap-vm2"), "{out}");

    // Known counts within the interval: exactly those deltas, per second of the interval.
    let o = rate_run(dir, &["--list", "--rate", "--interval", "2", "--json"], || {
        l0.rx(1, 500, 32_000);
        l0.tx(2, 499, 31_936);
        l0.drop(Some(1), DropReason::NoL3Route, 1);
        l0.tx_error(0, 3);
    });
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let secs = rows[1]["interval_s"].as_f64().unwrap();
    assert!((2.0..3.0).contains(&secs), "{secs}");
    let delta = |vif: usize, k: &str| rows[vif]["delta"][k].as_u64().unwrap();
    let rate = |vif: usize, k: &str| rows[vif][format!("{k}_per_s")].as_f64().unwrap();
    assert_eq!((delta(1, "rx_packets"), delta(1, "rx_bytes"), delta(1, "drops")), (500, 32_000, 1));
    assert_eq!((delta(2, "tx_packets"), delta(2, "tx_bytes")), (499, 31_936));
    assert_eq!((delta(0, "tx_errors"), delta(0, "rx_packets"), delta(2, "rx_packets")), (3, 0, 0));
    for (vif, k, n) in
        [(1, "rx_packets", 500.0), (1, "rx_bytes", 32_000.0), (2, "tx_packets", 499.0), (0, "tx_errors", 3.0)]
    {
        assert!((rate(vif, k) - n / secs).abs() < 1e-9 * n, "{k} of vif {vif}: {} vs {}", rate(vif, k), n / secs);
    }
    assert_eq!(rate(0, "rx_packets"), 0.0);

    // --get: one vif; --core of a missing lcore and a bad interval are refused.
    let o = rate_run(dir, &["--get", "2", "--rate", "--interval", "0.2", "--json"], || l0.tx(2, 10, 640));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!((v[0]["id"].as_u64(), v[0]["delta"]["tx_packets"].as_u64()), (Some(2), Some(10)));
    let o = run(VIF, dir, &["--list", "--rate", "--interval", "0"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("--interval: 0 s is not between 0 and 3600 s"), "{}", text(&o.stderr));
    let o = run(VIF, dir, &["--list", "--rate", "--core", "4"]);
    assert!(text(&o.stderr).contains("core 4 does not exist"), "{}", text(&o.stderr));
    let o = run(VIF, dir, &["--list", "--interval", "2"]);
    assert_eq!(o.status.code(), Some(2), "--interval needs --rate");
}
