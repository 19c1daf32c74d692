//! The vhost-user test host: the real vRouter binary with vif 1 and vif 2 on `net_vhost`
//! ports in client mode and two `vm-guest` processes as the VMs (DPDK `net_virtio_user` in
//! server mode, as QEMU is); the fabric is an af_packet port on a veth pair whose other end
//! the test reads and writes. Used by `vhost.rs` and `restart.rs`.

use super::guest::Guest;
use super::*;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use vrouter::drop_reason::DropReason;
use vrouter::stats::{StatsReader, VifCounters};
use vrouter_abi::stats::VIF_LINK_UP;

/// One vRouter and its guests at a time: each polls CPUs of its own.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The standard topology with the VMs on vhost-user sockets in `d` and the fabric on the
/// af_packet port of `fabric_if`.
pub fn write_config(d: &Path, run_dir: &Path, fabric_if: &str, prefix: &str, o: &Layout) -> PathBuf {
    let vdevs = format!("\"net_af_packet0,iface={fabric_if},framecnt=4096,blocksz=4096,framesz=2048\"");
    let vhost = |vm: usize, queues: u16| {
        format!("vhost = {{ socket = \"{}\", queues = {queues} }}", d.join(format!("vm{vm}.sock")).display())
    };
    let mut cfg = topology(&vdevs, prefix, run_dir)
        .replacen("device = \"net_pcap0\"", "device = \"net_af_packet0\"", 1)
        .replacen("device = \"net_pcap1\"", &vhost(1, o.vif_queues[0]), 1)
        .replacen("device = \"net_pcap2\"", &vhost(2, o.vif_queues[1]), 1);
    if let Some(dir) = &o.huge_dir {
        cfg = cfg.replacen(
            "memory_mb = 256",
            &format!("memory_mb = 256\nno_huge = false\nhuge_dir = \"{}\"", dir.display()),
            1,
        );
    }
    if o.lcores > 1 {
        // More forwarding lcores than this machine may have CPUs: all on CPU 1 (EAL --lcores).
        let cores: Vec<String> = (1..=o.lcores).map(|c| c.to_string()).collect();
        let cpus = vec!["1"; usize::from(o.lcores)];
        cfg = cfg.replacen(
            "forwarding_cores = [1]",
            &format!("forwarding_cores = [{}]\nforwarding_cpus = [{}]", cores.join(", "), cpus.join(", ")),
            1,
        );
    }
    cfg.push_str(&o.extra);
    let path = d.join("vrouter.toml");
    std::fs::write(&path, cfg).unwrap();
    path
}

/// Forwarding lcores and queue pairs of a test host.
pub struct Layout {
    pub lcores: u16,
    /// `vhost.queues` of vif 1 and vif 2.
    pub vif_queues: [u16; 2],
    /// Queue pairs of the guests on them (a guest may enable fewer than the vif has).
    pub guest_queues: [u16; 2],
    /// DPDK memory on huge pages from this hugetlbfs mount, for the vRouter (`huge_dir`) and
    /// the guests (`--huge`); `None`: `--no-huge` everywhere.
    pub huge_dir: Option<PathBuf>,
    /// TOML appended to the configuration (analyzers, policies, `[export]`, ...).
    pub extra: String,
}

impl Default for Layout {
    /// One lcore, one queue pair per VM, no huge pages, nothing appended.
    fn default() -> Layout {
        Layout { lcores: 1, vif_queues: [1, 1], guest_queues: [1, 1], huge_dir: None, extra: String::new() }
    }
}

/// A vRouter with two VMs attached over vhost-user and a fabric the test drives.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub run_dir: PathBuf,
    pub cfg: PathBuf,
    pub prefix: String,
    pub vrouter: Option<Running>,
    pub vm1: Option<Guest>,
    pub vm2: Option<Guest>,
    /// A VM attached at run time.
    pub vm3: Option<Guest>,
    pub fabric: Raw,
    pub _veth: Veth,
}

impl Host {
    pub fn start(tag: &str) -> Host {
        Host::start_with(tag, &Layout::default())
    }

    pub fn start_with(tag: &str, o: &Layout) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        let run_dir = d.join("run");
        let (fa, fb) =
            (format!("vh{tag}{}a", std::process::id() % 10000), format!("vh{tag}{}b", std::process::id() % 10000));
        let veth = veth_pair(&fa, &fb);
        let fabric = Raw::open(&fb);
        let prefix = unique_prefix();
        let cfg = write_config(&d, &run_dir, &fa, &prefix, o);
        // The VMs listen first, as QEMU does; the vRouter connects to them.
        let guest_args: &[&str] = if o.huge_dir.is_some() { &["--huge", "--memory-mb", "128"] } else { &[] };
        let vm1 = Guest::start(&d, "vm1", &d.join("vm1.sock"), o.guest_queues[0], guest_args);
        let vm2 = Guest::start(&d, "vm2", &d.join("vm2.sock"), o.guest_queues[1], guest_args);
        let mut h = Host {
            dir,
            run_dir,
            cfg,
            prefix,
            vrouter: None,
            vm1: Some(vm1),
            vm2: Some(vm2),
            vm3: None,
            fabric,
            _veth: veth,
        };
        h.start_vrouter();
        h.vm1().ready();
        h.vm2().ready();
        h.wait_link(1, VIF_LINK_UP);
        h.wait_link(2, VIF_LINK_UP);
        h
    }

    pub fn d(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn start_vrouter(&mut self) {
        let child = spawn_vrouter(&self.cfg, self.prefix.clone());
        self.adopt_vrouter(child);
    }

    /// Makes `child` (a vRouter started on this host's configuration) the host's vRouter once
    /// its agent answers.
    pub fn adopt_vrouter(&mut self, mut child: Running) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(self.run_dir.join("control.sock").exists()
            && std::os::unix::net::UnixStream::connect(self.run_dir.join("control.sock")).is_ok()
            && control(&self.run_dir, &serde_json::json!({"cmd": "info"}))["ok"] == true)
        {
            if Instant::now() > deadline || matches!(child.0.try_wait(), Ok(Some(_))) {
                let mut child = child;
                let _ = child.0.kill();
                let (mut out, mut err) = (String::new(), String::new());
                use std::io::Read;
                let _ = child.0.stdout.take().map(|mut s| s.read_to_string(&mut out));
                let _ = child.0.stderr.take().map(|mut s| s.read_to_string(&mut err));
                panic!("the vRouter did not start:\n{out}\n{err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.vrouter = Some(child);
    }

    pub fn stop_vrouter(&mut self) -> String {
        let mut child = self.vrouter.take().expect("vRouter running");
        stop(&mut child)
    }

    pub fn vm1(&mut self) -> &mut Guest {
        self.vm1.as_mut().expect("vm1 running")
    }

    pub fn vm2(&mut self) -> &mut Guest {
        self.vm2.as_mut().expect("vm2 running")
    }

    pub fn guest(&mut self, vm: u8) -> &mut Guest {
        match vm {
            1 => self.vm1(),
            2 => self.vm2(),
            _ => self.vm3.as_mut().expect("vm3 running"),
        }
    }

    pub fn stats(&self) -> StatsReader {
        StatsReader::open(&self.run_dir).unwrap()
    }

    /// Waits until the vRouter shows vif `vif`'s link as `state`.
    pub fn wait_link(&self, vif: u16, state: u8) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let link = self.stats().vifs().into_iter().find(|v| v.id == vif).map(|v| v.link);
            if link == Some(state) {
                return;
            }
            assert!(Instant::now() < deadline, "vif {vif}: link {link:?}, waited for {state}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn counters(&self, vif: u16) -> VifCounters {
        self.stats().vif_counters(vif, None)
    }

    /// Writes `frames` to a pcap in the test directory for a guest to send.
    pub fn pcap(&self, name: &str, frames: &[Vec<u8>]) -> PathBuf {
        let p = self.d().join(format!("{name}.pcap"));
        write_pcap(&p, frames);
        p
    }

    /// Frames the vRouter sent on the fabric until `n` arrived or `timeout` passed, then what
    /// else arrives within 200 ms (so an extra frame is seen).
    pub fn fabric_frames(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let deadline = Instant::now() + timeout;
        while got.len() < n && Instant::now() < deadline {
            if let Some(f) = self.fabric.recv() {
                got.push(f);
            }
        }
        let tail = Instant::now() + Duration::from_millis(200);
        while Instant::now() < tail {
            if let Some(f) = self.fabric.recv() {
                got.push(f);
            }
        }
        got
    }

    /// In = out + drops for the whole vRouter, from its stats region.
    pub fn assert_accounted(&self) {
        let r = self.stats();
        let (mut rx, mut tx) = (0, 0);
        for v in 0..3u16 {
            let c = r.vif_counters(v, None);
            rx += c.rx_packets;
            tx += c.tx_packets;
        }
        let drops: u64 = r.drops(None).iter().sum();
        assert_eq!(rx, tx + drops, "in {rx} != out {tx} + drops {drops}: {:?}", drop_list(&r));
    }
}

/// Sends `frames` (whose first `flows` frames each open a new flow) from guest `from`: the
/// first frames alone, until guest `to` has them (a flow's packets beyond the first few wait
/// for its set-up and are dropped past the hold queue's limit, as in TF), then the rest.
pub fn send_flows(h: &mut Host, from: u8, to: u8, frames: &[Vec<u8>], flows: usize, name: &str) {
    send_flows_on(h, from, to, frames, flows, name, "0");
}

/// [`send_flows`] on the guest's TX queue `queue` (a number or `hash`).
pub fn send_flows_on(h: &mut Host, from: u8, to: u8, frames: &[Vec<u8>], flows: usize, name: &str, queue: &str) {
    let open = h.pcap(&format!("{name}-open"), &frames[..flows]);
    let rest = h.pcap(&format!("{name}-rest"), &frames[flows..]);
    let base = h.guest(to).stats()["received"].as_u64().unwrap();
    assert_eq!(h.guest(from).send(&open, queue)["sent"], flows as u64);
    let got = h.guest(to).wait_rx(base + flows as u64, Duration::from_secs(20));
    assert_eq!(got["received"].as_u64(), Some(base + flows as u64), "{name}: {got} drops {:?}", drop_list(&h.stats()));
    assert_eq!(h.guest(from).send(&rest, queue)["sent"], (frames.len() - flows) as u64);
}

pub fn drop_list(r: &StatsReader) -> Vec<(DropReason, u64)> {
    let d = r.drops(None);
    DropReason::ALL.iter().copied().filter(|x| d[*x as usize] > 0).map(|x| (x, d[x as usize])).collect()
}

/// `n` UDP frames from `src` (VM `src_mac`) to `dst`, over `flows` flows (source ports
/// 40000.., or as destination ports when `answer`); with the frames a router emits for them
/// toward `dst_mac` (TTL decremented).
pub fn udp_frames(
    (src, src_mac): (&str, &str),
    (dst, dst_mac): (&str, &str),
    n: usize,
    flows: u16,
    tag: &str,
    answer: bool,
) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut sent = Vec::new();
    let mut expect = Vec::new();
    for i in 0..n {
        let payload = format!("{tag}-{i:05}");
        // Flows from port 40000.. to 5201; answers (from `.4` to `.3`... as the caller asks)
        // are the same flows seen the other way when `answer` is set.
        let port = 40000 + (i as u16 % flows);
        let (sport, dport) = if answer { (5201, port) } else { (port, 5201) };
        let ip = ipv4_udp(ip4(src), ip4(dst), 64, sport, dport, payload.as_bytes());
        sent.push(eth(mac(ROUTER_MAC), mac(src_mac), 0x0800, &ip));
        expect.push(eth(mac(dst_mac), mac(ROUTER_MAC), 0x0800, &decrement_ttl_v4(&ip)));
    }
    (sent, expect)
}

pub fn bytes(frames: &[Vec<u8>]) -> u64 {
    frames.iter().map(|f| f.len() as u64).sum()
}

pub fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}
