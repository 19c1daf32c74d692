//! `vifdump`: `tcpdump -i tapXXX` for a vif. DPDK ports have no kernel interface; the
//! vRouter initialises DPDK's packet-capture framework (`[eal] pdump`), and Debian's
//! `dpdk-dumpcap` attaches to it as a DPDK secondary process. This module turns what an
//! operator names (`vif0/3`, `3`, the vif's name or its DPDK device) and what the stats region
//! recorded (the vif's DPDK device and port, the vRouter's EAL file prefix, its memory mode)
//! into the `dpdk-dumpcap` command line, or into the one line that says why it cannot run.

use std::path::Path;

use serde::Serialize;
use vrouter_abi::stats::{EalFacts, Liveness, StatsReader, VifInfoOwned};

use crate::Failure;

/// What the operator asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// The vif: `vif0/N`, `N`, its name or its DPDK device name.
    pub interface: String,
    /// Where the capture goes (`-` for stdout); `None`: decoded by tshark to stdout.
    pub write: Option<String>,
    /// Stop after this many packets.
    pub count: Option<u64>,
    /// Bytes kept of each packet (dpdk-dumpcap's default when `None`).
    pub snaplen: Option<u32>,
    /// pcap instead of pcapng.
    pub pcap: bool,
    /// A libpcap capture filter (empty: everything).
    pub filter: String,
    /// The `dpdk-dumpcap` program.
    pub dumpcap: String,
    /// The `tshark` program (decoding when there is no `write`).
    pub tshark: String,
}

/// The capture to run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The vif id.
    pub vif: u16,
    /// The vif's name.
    pub name: String,
    /// Its DPDK device name (what `dpdk-dumpcap -D` lists), or empty.
    pub device: String,
    /// Its DPDK port id.
    pub port: u16,
    /// The vRouter's EAL file prefix.
    pub file_prefix: String,
    /// The `dpdk-dumpcap` command line, program first.
    pub dumpcap: Vec<String>,
    /// The `tshark` command line that decodes the capture from its stdin, when there is no
    /// `-w`.
    pub decode: Option<Vec<String>>,
}

/// The vif an operator's name designates: `vif0/N` or `N` by id, else a vif whose name or
/// DPDK device is `name`.
pub fn find_vif<'a>(vifs: &'a [VifInfoOwned], name: &str) -> Result<&'a VifInfoOwned, Failure> {
    let id = name.strip_prefix("vif0/").unwrap_or(name).parse::<u16>().ok();
    let found = match id {
        Some(id) => vifs.iter().find(|v| v.id == id),
        None => vifs.iter().find(|v| v.name == name).or_else(|| vifs.iter().find(|v| v.device == name)),
    };
    found.ok_or_else(|| {
        let known: Vec<String> = vifs.iter().map(|v| format!("vif0/{} {}", v.id, v.name)).collect();
        Failure(format!(
            "-i {name}: no such vif (the vRouter has {}); name it vif0/N, N, its name or its DPDK device",
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        ))
    })
}

/// Why `dpdk-dumpcap` cannot attach to the vRouter of these facts, or nothing.
pub fn capture_problem(eal: Option<&EalFacts>, pid: u32) -> Option<String> {
    let Some(e) = eal else {
        return Some(format!(
            "the vRouter (pid {pid}) did not record its EAL file prefix in its stats region (a build without \
             packet capture): restart it with this build"
        ));
    };
    if !e.hugepages {
        return Some(format!(
            "the vRouter (pid {pid}) runs on 4 KiB pages ([eal] no_huge = true): dpdk-dumpcap attaches as a DPDK \
             secondary process, which maps the vRouter's memory from its hugepage files; set [eal] no_huge = false \
             in its configuration (reserve the pages first, e.g. `ci/setup.sh --hugepages 512`; README, \"Memory \
             modes\") and restart it"
        ));
    }
    if !e.pdump {
        return Some(format!(
            "the vRouter (pid {pid}) did not initialise packet capture ([eal] pdump = false, or extra_args with \
             --in-memory, --no-shconf or --huge-unlink, after which no secondary process can attach): set \
             [eal] pdump = true in its configuration and restart it"
        ));
    }
    None
}

/// The plan of `req` for the vRouter of `eal` with these vifs (no check of the facts: see
/// [`capture_problem`]).
pub fn plan(req: &Request, eal: &EalFacts, vifs: &[VifInfoOwned]) -> Result<Plan, Failure> {
    let v = find_vif(vifs, &req.interface)?;
    // dpdk-dumpcap takes a device name or a port index.
    let iface = if v.device.is_empty() { v.port_id.to_string() } else { v.device.clone() };
    let mut cmd = vec![req.dumpcap.clone(), format!("--file-prefix={}", eal.file_prefix), "-i".into(), iface];
    // The vRouter keeps its ports promiscuous; dpdk-dumpcap would turn that on, and off again
    // when it stops.
    cmd.push("-p".into());
    cmd.extend(["-w".into(), req.write.clone().unwrap_or_else(|| "-".into())]);
    if let Some(c) = req.count {
        cmd.extend(["-c".into(), c.to_string()]);
    }
    if let Some(s) = req.snaplen {
        cmd.extend(["-s".into(), s.to_string()]);
    }
    if req.pcap {
        cmd.push("-P".into());
    }
    if req.write.is_none() {
        // Its running count would mix with the decoded lines on a terminal.
        cmd.push("-q".into());
    }
    if !req.pcap {
        let what = if v.name.is_empty() { format!("vif0/{}", v.id) } else { format!("vif0/{} {}", v.id, v.name) };
        cmd.extend(["--capture-comment".into(), format!("{what} (vifdump)")]);
    }
    if !req.filter.trim().is_empty() {
        cmd.extend(["-f".into(), req.filter.trim().to_string()]);
    }
    let decode = req.write.is_none().then(|| {
        let mut d = vec![req.tshark.clone(), "-l".into(), "-n".into(), "-r".into(), "-".into()];
        // dpdk-dumpcap stops after the burst that reaches its count, which may hold a few
        // more: tshark prints exactly COUNT.
        if let Some(c) = req.count {
            d.extend(["-c".into(), c.to_string()]);
        }
        d
    });
    Ok(Plan {
        vif: v.id,
        name: v.name.clone(),
        device: v.device.clone(),
        port: v.port_id,
        file_prefix: eal.file_prefix.clone(),
        dumpcap: cmd,
        decode,
    })
}

/// The plan for the vRouter of `run_dir`: its stats region must be there, its vRouter running
/// with packet capture.
pub fn plan_for(run_dir: &Path, req: &Request) -> Result<Plan, Failure> {
    let r = StatsReader::open(run_dir)?;
    let h = r.header();
    match r.liveness() {
        Liveness::Running => {}
        Liveness::Stopped => {
            return Err(Failure(format!("the vRouter (pid {}) has stopped: nothing to capture", h.creator_pid)))
        }
        Liveness::Stale => {
            return Err(Failure(format!("the vRouter (pid {}) is not running: nothing to capture", h.creator_pid)))
        }
    }
    let eal = r.eal();
    if let Some(why) = capture_problem(eal.as_ref(), h.creator_pid) {
        return Err(Failure(why));
    }
    plan(req, &eal.expect("checked above"), &r.vifs())
}

/// A command line as a shell would take it back (single quotes where needed).
pub fn shell_line(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            let plain = !a.is_empty() && a.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The plan as `--dry-run` prints it: the command line (with `| tshark ...` when decoding).
pub fn render_plan(p: &Plan) -> String {
    let mut s = shell_line(&p.dumpcap);
    if let Some(d) = &p.decode {
        s.push_str(" | ");
        s.push_str(&shell_line(d));
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use vrouter_abi::stats::{VifInfo, VIF_TYPE_PHYSICAL, VIF_TYPE_VIRTUAL};

    fn vifs() -> Vec<VifInfoOwned> {
        vec![
            VifInfo::new(0, VIF_TYPE_PHYSICAL, "fabric0").port(0, 1, 1).device("0000:00:03.0").decode(),
            VifInfo::new(3, VIF_TYPE_VIRTUAL, "tap-vm3").port(2, 1, 1).device("net_vhost3").decode(),
            VifInfo::new(4, VIF_TYPE_VIRTUAL, "").port(5, 1, 1).decode(),
        ]
    }

    fn req(iface: &str) -> Request {
        Request {
            interface: iface.into(),
            dumpcap: "dpdk-dumpcap".into(),
            tshark: "tshark".into(),
            ..Default::default()
        }
    }

    const EAL: fn() -> EalFacts = || EalFacts { file_prefix: "vr1".into(), hugepages: true, pdump: true };

    #[test]
    fn names_as_operators_do() {
        let v = vifs();
        for name in ["vif0/3", "3", "tap-vm3", "net_vhost3"] {
            assert_eq!(find_vif(&v, name).unwrap().id, 3, "{name}");
        }
        assert_eq!(find_vif(&v, "0000:00:03.0").unwrap().id, 0);
        let e = find_vif(&v, "vif0/9").unwrap_err().0;
        assert_eq!(
            e,
            "-i vif0/9: no such vif (the vRouter has vif0/0 fabric0, vif0/3 tap-vm3, vif0/4 ); name it vif0/N, N, \
             its name or its DPDK device"
        );
    }

    #[test]
    fn command_lines() {
        let v = vifs();
        let p = plan(&req("vif0/3"), &EAL(), &v).unwrap();
        assert_eq!(
            render_plan(&p),
            "dpdk-dumpcap --file-prefix=vr1 -i net_vhost3 -p -w - -q --capture-comment 'vif0/3 tap-vm3 (vifdump)' \
             | tshark -l -n -r -\n"
        );
        assert_eq!((p.vif, p.port, p.device.as_str(), p.file_prefix.as_str()), (3, 2, "net_vhost3", "vr1"));
        let r = Request {
            write: Some("/tmp/x.pcapng".into()),
            count: Some(10),
            snaplen: Some(128),
            filter: " udp port 53 ".into(),
            ..req("tap-vm3")
        };
        let p = plan(&r, &EAL(), &v).unwrap();
        assert_eq!(p.decode, None);
        assert_eq!(
            render_plan(&p),
            "dpdk-dumpcap --file-prefix=vr1 -i net_vhost3 -p -w /tmp/x.pcapng -c 10 -s 128 --capture-comment \
             'vif0/3 tap-vm3 (vifdump)' -f 'udp port 53'\n"
        );
        let p = plan(&Request { count: Some(2), ..req("3") }, &EAL(), &v).unwrap();
        let line = render_plan(&p);
        assert!(
            line.ends_with(" -c 2 -q --capture-comment 'vif0/3 tap-vm3 (vifdump)' | tshark -l -n -r - -c 2\n"),
            "{line}"
        );
        // No device recorded: the port index; pcap has no comment.
        let p = plan(&Request { pcap: true, write: Some("-".into()), ..req("4") }, &EAL(), &v).unwrap();
        assert_eq!(render_plan(&p), "dpdk-dumpcap --file-prefix=vr1 -i 5 -p -w - -P\n");
        assert_eq!(shell_line(&["it's".into(), String::new()]), r"'it'\''s' ''");
    }

    #[test]
    fn why_it_cannot_capture() {
        assert_eq!(capture_problem(Some(&EAL()), 7), None);
        let e = capture_problem(None, 7).unwrap();
        assert!(e.contains("pid 7") && e.contains("did not record"), "{e}");
        let e = capture_problem(Some(&EalFacts { hugepages: false, pdump: false, ..EAL() }), 7).unwrap();
        assert!(e.contains("[eal] no_huge = true") && e.contains("set [eal] no_huge = false"), "{e}");
        assert!(e.contains("secondary process") && e.contains("Memory modes"), "{e}");
        let e = capture_problem(Some(&EalFacts { pdump: false, ..EAL() }), 7).unwrap();
        assert!(e.contains("[eal] pdump = true"), "{e}");
    }
}
