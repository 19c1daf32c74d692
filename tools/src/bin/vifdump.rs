//! `vifdump -i vif0/N [-w FILE] [-c COUNT] [FILTER...]`: captures a vif's packets, received
//! and sent, with Debian's `dpdk-dumpcap` (a DPDK secondary process attached to the running
//! vRouter, which needs huge pages and `[eal] pdump`). With `-w` the capture is written as
//! pcapng (`-w -`: to stdout); without, it is decoded line by line by `tshark`, as
//! `tcpdump -i tapXXX` would print it. `--dry-run` prints the command instead (`--json`: the
//! plan as an object).

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode, ExitStatus, Stdio};

use clap::Parser;
use tools::vifdump::{plan_for, render_plan, Plan, Request};
use tools::{emit, fail, CommonArgs, Failure};

#[derive(Parser, Debug)]
#[command(
    name = "vifdump",
    version,
    about = "Capture a vif's packets with dpdk-dumpcap (tcpdump -i for DPDK ports)",
    after_help = "The vRouter must run on huge pages ([eal] no_huge = false) with packet capture \
                  ([eal] pdump, on by default there). Stop with Ctrl-C, -c or --duration."
)]
struct Cli {
    /// The vif: vif0/N, N, its name (tap-vm1) or its DPDK device (net_vhost1).
    #[arg(short = 'i', long = "interface", value_name = "VIF")]
    interface: String,
    /// Write the packets to FILE as pcapng (- for stdout) instead of decoding them.
    #[arg(short = 'w', value_name = "FILE")]
    write: Option<String>,
    /// Stop after COUNT packets (with -w, dpdk-dumpcap writes the whole burst that reaches
    /// COUNT, which may hold a few more).
    #[arg(short = 'c', value_name = "COUNT", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Keep at most BYTES of each packet.
    #[arg(short = 's', long = "snapshot-length", value_name = "BYTES")]
    snaplen: Option<u32>,
    /// Write pcap instead of pcapng (with -w).
    #[arg(short = 'P', long, requires = "write")]
    pcap: bool,
    /// Print the dpdk-dumpcap command (and the tshark that decodes) instead of running it.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// The dpdk-dumpcap program.
    #[arg(long, value_name = "PATH", env = "VIFDUMP_DUMPCAP", default_value = "dpdk-dumpcap")]
    dumpcap: String,
    /// The tshark program that decodes the packets when there is no -w.
    #[arg(long, value_name = "PATH", env = "VIFDUMP_TSHARK", default_value = "tshark")]
    tshark: String,
    /// Capture filter, libpcap syntax (e.g. udp port 53), in one or several words.
    #[arg(value_name = "FILTER", trailing_var_arg = true)]
    filter: Vec<String>,
    #[command(flatten)]
    common: CommonArgs,
}

/// The failure of a program that did not start.
fn not_started(program: &str, e: &std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::NotFound {
        let pkg = if program.ends_with("tshark") { "tshark" } else { "dpdk" };
        Failure(format!("{program} not found: install it (apt install {pkg}) or name it with --dumpcap / --tshark"))
    } else {
        Failure(format!("starting {program}: {e}"))
    }
}

/// The tool's exit code for a child's status (a signal as the shell shows it).
fn code_of(st: ExitStatus) -> u8 {
    match (st.code(), st.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        _ => 1,
    }
}

/// `-w`: dpdk-dumpcap in this process's place (its signals, its exit code).
fn exec_dumpcap(p: &Plan) -> Failure {
    let e = Command::new(&p.dumpcap[0]).args(&p.dumpcap[1..]).exec();
    not_started(&p.dumpcap[0], &e)
}

/// No `-w`: dpdk-dumpcap's pcapng into tshark, which prints one line per packet.
fn decode(p: &Plan, d: &[String]) -> Result<ExitCode, Failure> {
    let mut tshark =
        Command::new(&d[0]).args(&d[1..]).stdin(Stdio::piped()).spawn().map_err(|e| not_started(&d[0], &e))?;
    let pipe = tshark.stdin.take().expect("piped");
    let dumpcap = Command::new(&p.dumpcap[0]).args(&p.dumpcap[1..]).stdout(Stdio::from(pipe)).spawn();
    let mut dumpcap = match dumpcap {
        Ok(c) => c,
        Err(e) => {
            let _ = tshark.kill();
            let _ = tshark.wait();
            return Err(not_started(&p.dumpcap[0], &e));
        }
    };
    // Ctrl-C reaches both children (the terminal's process group): dpdk-dumpcap stops its
    // capture and removes its callbacks from the vRouter, tshark prints what it got. This
    // process waits for them rather than die first.
    // SAFETY: sets the disposition of SIGINT for this process only (the children were started
    // before, with the default one); SIG_IGN needs no handler code.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let tst = tshark.wait().map_err(|e| Failure(format!("waiting for {}: {e}", d[0])))?;
    // tshark is done (its count, a closed output, Ctrl-C): dpdk-dumpcap would notice only at
    // its next packet; SIGINT is its own way to stop cleanly.
    if let Ok(None) = dumpcap.try_wait() {
        // SAFETY: a signal to our own child, which has not been waited for (its pid is ours).
        unsafe { libc::kill(dumpcap.id() as i32, libc::SIGINT) };
    }
    let dst = dumpcap.wait().map_err(|e| Failure(format!("waiting for {}: {e}", p.dumpcap[0])))?;
    // tshark ended by a closed output (`vifdump ... | head`) is not an error.
    let tshark_ok = tst.success() || tst.signal() == Some(libc::SIGPIPE);
    Ok(ExitCode::from(match (dst.success(), tshark_ok) {
        (true, true) => 0,
        (false, _) => code_of(dst).max(1),
        (true, false) => code_of(tst).max(1),
    }))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let req = Request {
        interface: cli.interface.clone(),
        write: cli.write.clone(),
        count: cli.count,
        snaplen: cli.snaplen,
        pcap: cli.pcap,
        filter: cli.filter.join(" "),
        dumpcap: cli.dumpcap.clone(),
        tshark: cli.tshark.clone(),
    };
    let plan = match plan_for(&cli.common.run_dir, &req) {
        Ok(p) => p,
        Err(e) => return fail(&Failure(format!("vifdump: {e}"))),
    };
    if cli.dry_run || cli.common.json {
        if !cli.dry_run {
            return fail(&Failure("vifdump: --json prints the plan: it goes with --dry-run".into()));
        }
        return emit(&if cli.common.json {
            tools::program::to_json(&plan, cli.common.pretty)
        } else {
            render_plan(&plan)
        });
    }
    match &plan.decode {
        None => fail(&exec_dumpcap(&plan)),
        Some(d) => match decode(&plan, d) {
            Ok(code) => code,
            Err(e) => fail(&Failure(format!("vifdump: {e}"))),
        },
    }
}
