//! The `flow` tool: the vRouter's flow table, read live from its shared-memory file
//! (`<run_dir>/flow`, see the `flow-table` crate).
//!
//! Rendering is done by pure functions from [`FlowSnapshot`]s and table counters to
//! `String` ([`text`], [`json`]); the rate and summary arithmetic of `flow -r` / `flow -s`
//! lives in [`sample`]; `--match` parsing and filtering in [`matcher`]. This module holds
//! what touches the table file: opening it, the liveness warning, walking the listing,
//! and a stdout writer that treats a closed pipe as success.

pub mod endpoints;
pub mod json;
pub mod matcher;
pub mod sample;
pub mod text;

use std::io::{BufWriter, IsTerminal, StdoutLock, Write};
use std::iter::Peekable;
use std::path::Path;
use std::process::ExitCode;

use flow_table::{flags, FlowSnapshot, FlowTableReader};

pub use matcher::{Endpoint, FlowMatch};

use crate::Failure;

/// Opens `<run_dir>/flow` read-only, also when its vRouter is gone ([`warn_liveness`] says
/// so). A missing file reads as "vRouter is not running (no flow table at ...)".
pub fn open(run_dir: &Path) -> Result<FlowTableReader, Failure> {
    FlowTableReader::open_run_dir(run_dir).map_err(|e| Failure(e.to_string()))
}

/// The stderr warning for a table whose creating vRouter is gone, if any.
pub fn liveness_warning(alive: bool, pid: u32) -> Option<String> {
    (!alive).then(|| format!("warning: vRouter (pid {pid}) is not running; flows are from its last run"))
}

/// Prints [`liveness_warning`] for this table to stderr.
pub fn warn_liveness(reader: &FlowTableReader) {
    if let Some(w) = liveness_warning(reader.creator_alive(), reader.header().creator_pid) {
        crate::eprint_line(&w);
    }
}

/// Whether `flow -l` shows this flow: evicted flows only with `--show-evicted`, and only
/// flows accepted by the `--match` filter, if any.
pub fn listed(s: &FlowSnapshot, show_evicted: bool, filter: Option<&FlowMatch>) -> bool {
    (show_evicted || s.flags & flags::EVICTED == 0) && filter.is_none_or(|m| m.matches(s))
}

/// One block of `flow -l`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListItem {
    /// A listed flow and the overflow chain hanging off its slot.
    Flow {
        /// The flow.
        snap: FlowSnapshot,
        /// Overflow entries chained off its slot, in chain order (empty for most).
        chain: Vec<u32>,
    },
    /// An empty main slot (the last of its bucket) whose bucket has an overflow chain: tf
    /// prints the slot index and the chain.
    Chain {
        /// The empty main slot.
        index: u32,
        /// Overflow entries chained off it, in chain order.
        chain: Vec<u32>,
    },
}

impl ListItem {
    /// The main or overflow index the block starts with.
    pub fn index(&self) -> u32 {
        match self {
            ListItem::Flow { snap, .. } => snap.index,
            ListItem::Chain { index, .. } => *index,
        }
    }
}

/// The blocks of `flow -l` in index order: every active flow that passes `keep`, with its
/// overflow chain, and, when `empty_slot_chains`, the chains hanging off empty bucket
/// tails (tf prints those too; they are left out of a `--match` listing).
pub fn list_items<'a>(
    reader: &'a FlowTableReader,
    keep: impl Fn(&FlowSnapshot) -> bool + 'a,
    empty_slot_chains: bool,
) -> impl Iterator<Item = ListItem> + 'a {
    let tails: Vec<(u32, Vec<u32>)> = if empty_slot_chains {
        let h = reader.header();
        let width = h.bucket_width.max(1);
        (0..h.n_buckets)
            .map(|b| b * width + width - 1)
            .filter_map(|t| {
                let c = reader.overflow_chain(t);
                (!c.is_empty()).then_some((t, c))
            })
            .collect()
    } else {
        Vec::new()
    };
    Merge { active: reader.iter_active().peekable(), tails: tails.into_iter().peekable(), reader, keep }
}

/// Merges the active flows with the chains of empty bucket tails, by index.
struct Merge<'a, A: Iterator<Item = FlowSnapshot>, T: Iterator<Item = (u32, Vec<u32>)>, K> {
    active: Peekable<A>,
    tails: Peekable<T>,
    reader: &'a FlowTableReader,
    keep: K,
}

impl<A, T, K> Iterator for Merge<'_, A, T, K>
where
    A: Iterator<Item = FlowSnapshot>,
    T: Iterator<Item = (u32, Vec<u32>)>,
    K: Fn(&FlowSnapshot) -> bool,
{
    type Item = ListItem;

    fn next(&mut self) -> Option<ListItem> {
        loop {
            let next_active = self.active.peek().map(|s| s.index);
            let next_tail = self.tails.peek().map(|t| t.0);
            match (next_active, next_tail) {
                (None, None) => return None,
                (Some(a), t) if t.is_none_or(|t| a <= t) => {
                    if t == Some(a) {
                        // The tail is active: its chain goes with the flow (if listed).
                        self.tails.next();
                    }
                    let snap = self.active.next().expect("peeked");
                    if !(self.keep)(&snap) {
                        continue;
                    }
                    let chain = match snap.overflow_next {
                        Some(_) => self.reader.overflow_chain(snap.index),
                        None => Vec::new(),
                    };
                    return Some(ListItem::Flow { snap, chain });
                }
                _ => {
                    let (index, chain) = self.tails.next().expect("peeked");
                    return Some(ListItem::Chain { index, chain });
                }
            }
        }
    }
}

/// Why output stopped early.
#[derive(Debug)]
pub enum Stop {
    /// The reader went away (`flow -l | head -1`): success.
    Closed,
    /// Writing failed otherwise.
    Failed(Failure),
}

impl Stop {
    /// The process exit code: success for a closed pipe; otherwise prints the failure to
    /// stderr and returns failure.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Stop::Closed => ExitCode::SUCCESS,
            Stop::Failed(f) => crate::fail(&f),
        }
    }
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Stop {
        Stop::Failed(f)
    }
}

/// Buffered, locked stdout for output written piece by piece (a large table, or the
/// samples of `-r`/`-s`). A closed pipe ends the output with [`Stop::Closed`].
pub struct Out {
    w: BufWriter<StdoutLock<'static>>,
    terminal: bool,
}

impl Out {
    /// Locks stdout behind a 64 KiB buffer.
    pub fn stdout() -> Out {
        let s = std::io::stdout();
        let terminal = s.is_terminal();
        Out { w: BufWriter::with_capacity(64 * 1024, s.lock()), terminal }
    }

    /// Whether stdout is a terminal (then `flow -s` clears the screen between samples).
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// Writes `s`; a closed pipe gives [`Stop::Closed`].
    pub fn write(&mut self, s: &str) -> Result<(), Stop> {
        self.w.write_all(s.as_bytes()).map_err(io_stop)
    }

    /// Flushes the buffer to stdout; a closed pipe gives [`Stop::Closed`].
    pub fn flush(&mut self) -> Result<(), Stop> {
        self.w.flush().map_err(io_stop)
    }
}

fn io_stop(e: std::io::Error) -> Stop {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Stop::Closed
    } else {
        Stop::Failed(Failure(format!("error writing output: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flow_table::{Action, FlowKey};

    fn snap(index: u32, flags: u32) -> FlowSnapshot {
        FlowSnapshot {
            index,
            gen: 1,
            key: FlowKey::v4(1, 6, [10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 1000, 80),
            flags,
            action: Action::Forward,
            drop_reason: 0,
            rflow: None,
            src_nh: 0,
            tcp_flags: 0,
            setup_time: 0,
            last_seen: 0,
            mirror: 255,
            sec_mirror: 255,
            underlay_sport: 0,
            bytes: 0,
            packets: 0,
            mirror_bytes: 0,
            mirror_packets: 0,
            sec_mirror_bytes: 0,
            sec_mirror_packets: 0,
            accounting: Default::default(),
            hash: 0,
            bucket: 0,
            overflow_next: None,
        }
    }

    #[test]
    fn evicted_flows_need_show_evicted() {
        let live = snap(1, flags::ACTIVE);
        let evicted = snap(2, flags::ACTIVE | flags::EVICTED);
        assert!(listed(&live, false, None));
        assert!(!listed(&evicted, false, None));
        assert!(listed(&evicted, true, None));
        let m: FlowMatch = "10.0.0.9".parse().unwrap();
        assert!(!listed(&live, false, Some(&m)));
        let m: FlowMatch = "10.0.0.2:80".parse().unwrap();
        assert!(listed(&live, false, Some(&m)));
    }

    #[test]
    fn warning_text() {
        assert_eq!(liveness_warning(true, 5), None);
        assert_eq!(
            liveness_warning(false, 5).unwrap(),
            "warning: vRouter (pid 5) is not running; flows are from its last run"
        );
    }
}
