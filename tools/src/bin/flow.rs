//! `flow`: the vRouter's flow table, read live from its shared-memory file.
//!
//! `flow -l` lists the flows, `flow --get N` shows one, `flow --match "..."` lists the
//! matching ones, `flow -r` prints the flow setup rate and `flow -s` a summary every
//! `--interval-ms`; `--json` on all of them. Output follows tf-vrouter's `flow` tool.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser};
use flow_table::{flags, FlowSnapshot, FlowTableReader};
use tools::control::Client;
use tools::flow::endpoints::{endpoints_json, gather};
use tools::flow::json::{render_flows_json, render_rate_json, render_summary_json, to_json, FlowJson};
use tools::flow::sample::{count_flows, rate_sample, unix_ms_now, LocalTime, SummaryTracker};
use tools::flow::text::{
    render_column_header, render_get, render_list_header, render_list_item, render_rate_line, render_summary,
    SystemDrops,
};
use tools::flow::{list_items, listed, open, warn_liveness, FlowMatch, Out, Stop};
use tools::{CommonArgs, Failure};

const AFTER_HELP: &str = "\
Match strings (--match): criteria separated by '&', endpoints by ','
  --match 1.1.1.1:20
  --match \"1.1.1.1:20,2.2.2.2:22\"
  --match \"[fe80::225:90ff:fec3:afa]:22\"
  --match \"10.204.217.10:56910 & vrf 0 & proto tcp\"
  --match \"10.204.217.10:56910,169.254.0.3:22 & vrf 0 & proto tcp\"
  proto {tcp, udp, icmp, icmp6, sctp}; a missing port or '*' matches any";

#[derive(Parser, Debug)]
#[command(name = "flow", version, about = "Show the vRouter flow table", after_help = AFTER_HELP)]
struct Cli {
    #[command(flatten)]
    mode: Mode,
    /// Also show evicted flows (-l, --match, --get).
    #[arg(long)]
    show_evicted: bool,
    /// Sampling interval of -r and -s, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 500,
          value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,
    /// Stop -r / -s after N samples (default: run until interrupted).
    #[arg(long, value_name = "N", requires = "periodic")]
    count: Option<u64>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = true)]
struct Mode {
    /// List the flows.
    #[arg(short = 'l', long, conflicts_with_all = ["get", "rate", "stats"])]
    list: bool,
    /// Show the flow at INDEX, one field per line.
    #[arg(short = 'g', long, value_name = "INDEX", conflicts_with_all = ["rate", "stats", "match"])]
    get: Option<u64>,
    /// Print the flow setup rate every --interval-ms (a line only when something happened).
    #[arg(short = 'r', long, group = "periodic", conflicts_with_all = ["stats", "match"])]
    rate: bool,
    /// Print a summary of the flows every --interval-ms.
    #[arg(short = 's', long, group = "periodic", conflicts_with = "match")]
    stats: bool,
    /// List the flows matching "IP:PORT[,IP:PORT] [& vrf N] [& proto P]" (implies -l).
    #[arg(id = "match", long = "match", value_name = "MATCH", value_parser = parse_match)]
    filter: Option<FlowMatch>,
}

fn parse_match(s: &str) -> Result<FlowMatch, String> {
    s.parse()
}

fn list(cli: &Cli, reader: &FlowTableReader, out: &mut Out) -> Result<(), Stop> {
    let filter = cli.mode.filter.as_ref();
    let show_evicted = cli.show_evicted;
    let keep = move |s: &FlowSnapshot| listed(s, show_evicted, filter);
    if cli.common.json {
        let flows: Vec<FlowSnapshot> = reader.iter_active().filter(|s| keep(s)).collect();
        return out.write(&render_flows_json(&flows, cli.common.pretty));
    }
    out.write(&render_list_header(&reader.header(), &reader.stats()))?;
    if let Some(m) = filter {
        out.write(&m.banner())?;
    }
    out.write(&render_column_header())?;
    for item in list_items(reader, keep, filter.is_none()) {
        out.write(&render_list_item(&item))?;
    }
    Ok(())
}

fn get(cli: &Cli, reader: &FlowTableReader, index: u64, out: &mut Out) -> Result<(), Stop> {
    let fail = |m: String| Stop::Failed(Failure(m));
    let idx = u32::try_from(index)
        .ok()
        .filter(|&i| i < reader.capacity())
        .ok_or_else(|| fail(format!("Invalid flow index value {index}")))?;
    let snap = reader
        .snapshot(idx)
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail(format!("Flow index {index} is not active")))?;
    if snap.flags & flags::EVICTED != 0 && !cli.show_evicted {
        return Err(fail(format!("Flow at index {index} is EVICTED. Use --show-evicted")));
    }
    // The Source/Destination Information blocks: routes and nexthops from the control
    // socket, interfaces and their counters from the stats region (when there is one).
    let stats = tools::load(&cli.common.run_dir, None).ok();
    let rows = stats.as_ref().map_or(&[][..], |s| &s.vifs[..]);
    let endpoints = gather(&snap, rows, &Client::new(&cli.common.run_dir, "flow"));
    if cli.common.json {
        let mut obj = serde_json::to_value(FlowJson::new(&snap)).map_err(|e| fail(e.to_string()))?;
        if let Some(o) = obj.as_object_mut() {
            o.extend(endpoints_json(&endpoints));
        }
        return out.write(&to_json(&[obj], cli.common.pretty));
    }
    // The system-wide drop counters come from the stats region, when there is one.
    let drops = stats.map(|s| SystemDrops::from_drops(&s.drops));
    out.write(&render_get(&snap, Some(&endpoints), drops.as_ref()))
}

/// Reopens the table if the vRouter re-created it; returns whether it did.
fn reopen_if_replaced(run_dir: &Path, reader: &mut FlowTableReader) -> Result<bool, Stop> {
    if !reader.is_replaced() {
        return Ok(false);
    }
    *reader = open(run_dir)?;
    warn_liveness(reader);
    Ok(true)
}

fn now() -> (u64, LocalTime) {
    let ms = unix_ms_now();
    (ms, LocalTime::from_unix_ms(ms))
}

fn rate(cli: &Cli, mut reader: FlowTableReader, out: &mut Out) -> Result<(), Stop> {
    let interval = Duration::from_millis(cli.interval_ms);
    let mut prev = reader.stats();
    let mut last = Instant::now();
    let mut n = 0u64;
    while cli.count.is_none_or(|c| n < c) {
        std::thread::sleep(interval);
        if reopen_if_replaced(&cli.common.run_dir, &mut reader)? {
            prev = reader.stats();
        }
        let cur = reader.stats();
        let t = Instant::now();
        let (unix_ms, time) = now();
        let elapsed = t.duration_since(last).as_millis() as u64;
        let sample = rate_sample(&prev, &cur, elapsed, unix_ms, time);
        if cli.common.json {
            out.write(&render_rate_json(&sample, cli.common.pretty))?;
        } else if !sample.is_quiet() {
            out.write(&render_rate_line(&sample))?;
        }
        out.flush()?;
        prev = cur;
        last = t;
        n += 1;
    }
    Ok(())
}

fn stats(cli: &Cli, mut reader: FlowTableReader, out: &mut Out) -> Result<(), Stop> {
    let interval = Duration::from_millis(cli.interval_ms);
    let mut tracker = SummaryTracker::new();
    let mut last = Instant::now();
    let mut n = 0u64;
    while cli.count.is_none_or(|c| n < c) {
        std::thread::sleep(interval);
        reopen_if_replaced(&cli.common.run_dir, &mut reader)?;
        let counts = count_flows(reader.iter_active());
        let t = Instant::now();
        let (unix_ms, time) = now();
        let sample = tracker.sample(counts, t.duration_since(last).as_millis() as u64, unix_ms, time);
        if cli.common.json {
            out.write(&render_summary_json(&sample, cli.common.pretty))?;
        } else {
            if out.is_terminal() {
                out.write("\x1b[H\x1b[2J")?;
            } else if n > 0 {
                out.write("\n")?;
            }
            out.write(&render_summary(&sample))?;
        }
        out.flush()?;
        last = t;
        n += 1;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let reader = match open(&cli.common.run_dir) {
        Ok(r) => r,
        Err(e) => return tools::fail(&e),
    };
    warn_liveness(&reader);
    let mut out = Out::stdout();
    let done = if let Some(i) = cli.mode.get {
        get(&cli, &reader, i, &mut out)
    } else if cli.mode.rate {
        rate(&cli, reader, &mut out)
    } else if cli.mode.stats {
        stats(&cli, reader, &mut out)
    } else {
        list(&cli, &reader, &mut out)
    };
    match done.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(stop) => stop.exit_code(),
    }
}
