//! The vRouter's flow table: a fixed-capacity hash table of flows in a memory-mapped file,
//! shared by the forwarding lcores (lookup, create, count), the agent (program, delete,
//! age) and tools in other processes (read-only snapshots). Also the flow hash
//! ([`hash`]), which the data plane uses for ECMP and tunnel source ports.
//!
//! Modelled on tf-vrouter's flow table (`vr_flow_entry`, `vr_htable`): main table in
//! buckets plus an overflow area, entry indices as flow handles (main slots `0..main`,
//! overflow `main..main+overflow`), per-entry generation ids, tf's flag / action / drop
//! reason numbering, an index-linked overflow chain that `flow -l` can print. Not
//! ABI-compatible with tf (different entry layout, 64-bit counters).
//!
//! # Using it
//!
//! ```no_run
//! use std::sync::Arc;
//! use flow_table::*;
//! # fn main() -> Result<(), FlowTableError> {
//! # let run_dir = std::path::Path::new("/run/vrouter");
//! let cfg = FlowTableConfig { main_entries: 1 << 20, overflow_entries: 0, max_lcores: 4 };
//! // hugetlbfs if mounted with room, else run_dir/flow; run_dir/flow always opens it
//! let table = Arc::new(FlowTable::create_in_run_dir(run_dir, &cfg)?);
//!
//! // Forwarding lcore `lcore`, per burst of packets (keys parsed from the headers):
//! # let lcore = 0; let (keys, lens, now) = ([FlowKey::v4(1, 6, [10,0,0,1].into(), [10,0,0,2].into(), 1, 2); 32], [64u32; 32], 0u64);
//! let mut hashes = [0u32; 32];
//! for (h, k) in hashes.iter_mut().zip(&keys) {
//!     *h = k.hash();
//!     table.prefetch(*h); // bucket lines of the whole burst
//! }
//! let mut idx = [None; 32];
//! table.lookup_burst(&keys, &hashes, &mut idx); // tags of all, then keys
//! for i in 0..keys.len() {
//!     if idx[i].is_none() {
//!         idx[i] = match table.lookup_or_hold(&keys[i], hashes[i], now) {
//!             Ok(Lookup::Created(f)) => Some(f), // trap to the agent with f and its gen
//!             Ok(Lookup::Hit(f)) => Some(f),     // another lcore created it a moment ago
//!             Err(_) => None,                    // table full: drop the packet
//!         };
//!     }
//! }
//! // Count only after all lookups of the burst (see "Design and measured figures").
//! for (i, f) in idx.iter().enumerate() {
//!     let Some(f) = *f else { continue };
//!     table.account_as(lcore, f, lens[i], now);
//!     let e = table.entry(f).unwrap();
//!     match e.action() { Action::Forward | Action::Nat => {}, Action::Drop | Action::Hold => {} }
//! }
//! table.quiescent(lcore); // no flow index is held past this point
//!
//! // Agent thread:
//! # let (f, gen) = (0u32, 1u16);
//! let r = table.create_reverse(f, now)?;
//! table.set_action(f, gen, &FlowUpdate::new(Action::Forward))?;
//! table.mark_delete(f, gen)?;
//! table.reclaim_with(|last| { /* final counters of a freed flow */ let _ = last.bytes; });
//! # let _ = r; Ok(()) }
//! ```
//!
//! Tools: [`FlowTableReader::open_run_dir`], then [`FlowTableReader::iter_active`] /
//! [`FlowTableReader::snapshot`] / [`FlowTableReader::stats`]. They map the file
//! read-only, never write and never wait for a writer.
//!
//! # File layout
//!
//! One file, no pointers (links are entry indices), every field an atomic integer in host
//! byte order, every struct `repr(C)` with explicit padding and `const` size/offset
//! assertions (`layout.rs`):
//!
//! | offset | size | what |
//! |---|---|---|
//! | 0 | 512 | header: line 0 the common region prefix ([`shm::RegionHeader`]: `magic` (written last), layout version, header and layout size, generation (bumped on every re-create at the same path), creator pid and process start time (`/proc/<pid>/stat` field 22, so a reused pid is detected), creation time); line 1: struct sizes, bucket width, main and overflow capacity, bucket count, `max_lcores`, offsets of every area; line 2: the grace-period token; line 3: the overflow allocator (free-list head with ABA count, bump index); line 4: the lcore block size |
//! | 512 | 128 × (`max_lcores` + 1) | per-lcore blocks: quiescent counter (own line), statistics (created, added, deleted, changed, processed, hold / used / overflow gauges as deltas, lost insert races); the last block counts threads that are not lcores |
//! | page | 64 × main/8 | buckets: 8 slot words (state + 16-bit hash tag) of the bucket's 8 main entries, overflow chain head, insert ticket counter |
//! | page | 128 × (main + overflow) | entries ([`FlowEntry`]) |
//! | page | 48 × (main + overflow) | side counters of each entry: mirror and secondary mirror bytes / packets, and the shared packets / bytes pair that lcores other than the owner add to |
//!
//! The file is sized up to the filesystem block (2 MiB on hugetlbfs). Entry (128 bytes,
//! 128-aligned):
//!
//! | line | offset | field |
//! |---|---|---|
//! | 0 | 0 | key: 6 × u64 ([`FlowKey`]: nexthop/VRF, family, protocol, ports, 16-byte addresses, zero padding) |
//! | 0 | 48 | control word: flags u32, action u8, drop reason u8, generation u16 (one load gives a consistent set; agent updates are one CAS) |
//! | 0 | 56 | packets |
//! | 1 | 64 | bytes, last-seen, setup time |
//! | 1 | 88 | reverse flow, RPF nexthop, mirror word (mirror, secondary mirror, underlay UDP source port), TCP state bits, owner lcore |
//! | 1 | 104 | sequence (seqlock), hash, insert ticket, overflow slot state, overflow chain link |
//!
//! [`FlowTableReader::open`] opens through the common region path ([`shm::open`]): it
//! checks magic, version, every size, the capacities, every offset and the file length
//! before reading anything, each with a typed [`RegionError`] in
//! [`FlowTableError::Region`] (`BadMagic`, `BadVersion`, `LayoutMismatch` naming the
//! field, `ShortFile`; `NotRunning` for a missing file, and `StaleOwner` for a gone creator
//! when opened with [`FlowTableReader::open_with`] and a strict [`OpenOptions`]).
//! The vRouter re-creates the file (temporary name, magic last, rename) on every start;
//! [`FlowTableReader::is_replaced`] tells a tool to reopen.
//!
//! **Path.** [`FlowTable::default_path`]: the first hugetlbfs mount in `/proc/mounts` with
//! room, as `<mount>/flow.<run dir with / as _>` (two vRouters sharing the mount do not
//! collide), else `<run_dir>/flow`. [`FlowTable::create_in_run_dir`] then leaves a
//! `<run_dir>/flow` symlink. Without hugetlbfs, keep the run directory on a tmpfs: on a
//! disk filesystem the kernel keeps writing the dirty counter pages back.
//!
//! # Concurrency
//!
//! **Lookup** (lcores, lock-free, loads only): hash -> bucket (multiply-shift on the
//! high bits) -> compare the 8 slot words with `VALID | tag` (branch-free mask) -> compare
//! the key of each match (6 words) -> else walk the bucket's overflow chain. Slot words
//! are read with `Acquire`; the key was written before the slot was published
//! (`Release`).
//!
//! **Insert** ([`FlowTable::lookup_or_hold`], lock-free): claim a free slot of the bucket
//! by CAS (`FREE -> CLAIMED|tag`), else pop an overflow entry and push it on the bucket's
//! chain (CAS on the head); initialize the entry (generation + 1, key, HOLD + NEW_FLOW,
//! counters 0); take a ticket from the bucket's counter; mark the slot `PENDING`; then scan
//! the bucket and chain for another `PENDING`/`VALID` entry with the same key (waiting out
//! `CLAIMED` slots with the same tag, which are a few dozen stores from `PENDING`). A
//! `VALID` one or an older ticket wins: the loser retires its entry and returns
//! [`Lookup::Hit`] with the winner's index; otherwise the entry becomes `VALID`. Tickets
//! settle every interleaving: an inserter that claims after another has scanned also takes
//! a later ticket, so all contenders see the oldest and agree on it (all of it `SeqCst`).
//! Two lcores racing on one key always end with one entry (`tests/race.rs`).
//!
//! **Counters** ([`FlowTable::account_as`]): the first forwarding lcore to count a flow
//! becomes its owner (one CAS on the entry's owner word) and from then on adds to the
//! entry's own packets/bytes with a plain load and store, as their only writer; any other
//! lcore (a flow whose packets arrive on two queues) `fetch_add`s the shared pair in the
//! side block, and so does [`FlowTable::account`] from a thread that is not a forwarding
//! lcore. Readers return the sum of both pairs. Mirror counters are `fetch_add`s. Last-seen
//! is a plain store. Never lost, whatever number of lcores count one flow
//! (`tests/stress.rs`). In the vRouter's profile at 1k flows (`perf record -e cpu-clock` of
//! the forwarding thread) the flow stage's share went from 11.5 % to 5.8 % of the samples
//! when its two locked adds became the owner's plain adds.
//!
//! **Agent updates** ([`FlowTable::set_action`], [`FlowTable::mark_delete`], links): under
//! the entry's sequence lock (odd while writing; writers exclude each other by CAS), the
//! control word changed by CAS after checking ACTIVE and the caller's generation (stale
//! handle: [`FlowTableError::GenMismatch`], tf's `-EBADF`); data-plane flag bits
//! (NEW_FLOW, EVICT_CANDIDATE, ...) are preserved.
//!
//! **Readers** ([`FlowTableReader::snapshot`], also used in-process): read the sequence
//! (retry while odd), the control word (None unless ACTIVE), key, metadata, counters, then
//! fence and re-read sequence and generation; any change means the entry was modified or
//! the slot reused during the copy, and the copy is retried (up to [`SNAPSHOT_ATTEMPTS`],
//! then [`FlowTableError::Torn`]). So a snapshot's key always belongs to its counters.
//! Reuse is caught twice: freeing and re-initializing a slot each take the sequence lock,
//! and re-initializing bumps the generation. Readers only use `Relaxed` loads and
//! `Acquire` fences (valid on a read-only mapping) and never block a writer.
//!
//! **Deletion and reuse** (QSBR). [`FlowTable::mark_delete`] / [`FlowTable::evict`] mark
//! the slot `DEAD` (lookups skip it at once), unlink an overflow entry from its chain, and
//! queue the slot. Each lcore calls [`FlowTable::quiescent`] once per burst loop, when it
//! holds no flow index: it copies the header's token into its own counter.
//! [`FlowTable::reclaim`] (agent thread, periodically) tags the slots queued since its
//! last call with a new token (`token += 1`) and frees a batch once every online lcore's
//! counter has reached the batch's token: each lcore finished the burst it was in when
//! the slots were retired, and its later lookups see them `DEAD`. Freeing zeroes the
//! counters (after handing the final snapshot to [`FlowTable::reclaim_with`]); the next
//! claim bumps the generation. [`FlowTable::lcore_offline`] stops reclaim from waiting for
//! a stopped lcore (coming back online is ordered with a `SeqCst` fence). The losing
//! entry of an insert race goes the same way. Threads other than registered lcores and
//! the reclaiming agent thread must not hold flow indices across a `reclaim`.
//!
//! # Design and measured figures
//!
//! Measured with `examples/flow_table_bench.rs` on the 2-vCPU KVM guest of
//! `performance-anchors.md` (AVX-512, no hugepages configured by default), shared with other
//! builds while measuring (load average 3-5), so the figures are CPU time of the benchmark
//! thread, best of 5 runs, and still pessimistic:
//!
//! ```text
//! cargo run --release -p flow-table --example flow_table_bench -- --dir /dev/shm
//! cargo run --release -p flow-table --example flow_table_bench -- --dir /mnt/huge   # hugetlbfs
//! ```
//!
//! | flows | main slots | in overflow | base | lookup | plain | batch32 | burst32 | pipe32 | insert | bytes/slot | bytes/flow | file |
//! |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
//! | 1 000 | 1 256 | 6.9 % | 3.9 | 12.3 | 16.9 | 17.3 | 22.3 | 23.5 | 52 | 169 | 385 | 0.4 MiB |
//! | 65 536 | 81 920 | 6.7 % | 3.8 | 28.8 | 34.4 | 27.8 | 27.9 | 29.8 | 102 | 167 | 250 | 15.6 MiB |
//! | 1 000 000 | 1 250 000 | 6.7 % | 3.9 | 114.9 | 138.1 | 94.0 | **52.1** | 63.5 | 271 | 167 | 250 | 239 MiB |
//! | 1 000 000, hugetlbfs | 1 250 000 | 6.7 % | 3.9 | 105.6 | 130.2 | 102.3 | 63.2 | 66.8 | 238 | 168 | 252 | 240 MiB |
//!
//! ns per packet (per insert), lowest of three runs on `/dev/shm` (4 KiB pages) and two on
//! a temporary 2 MiB hugetlbfs mount, each the best of 5 repetitions of 8 M packets. The
//! spread between runs was large: at 1 M flows `burst32` measured 52-65 ns on
//! `/dev/shm` and 63-65 ns on hugetlbfs, `plain` 138-146 and 130-132; at 64 k and 1 k
//! flows the runs agreed within ~10 %.
//!
//! (`base`: build the key from the flow number and hash it, the part outside the table;
//! `lookup`: + lookup; `plain`: + account, packet by packet; `batch32`: per burst of 32,
//! hash and prefetch all buckets, then lookup + account each; `burst32`: same prefetch,
//! then [`FlowTable::lookup_burst`], then account each; `pipe32`: `burst32` with the
//! buckets prefetched one burst ahead. Table sized `main = flows / 0.8`, overflow the
//! default 20 %; `insert` = `lookup_or_hold` of a new flow; memory = file size per slot and
//! per active flow.)
//!
//! What the numbers say, and the layout choices they justify:
//!
//! * **Memory.** 215 bytes per slot (128 entry + 80 side counters + 8 bytes of bucket
//!   index per main slot), against tf's 256 bytes per slot. The side block grew from 48 to
//!   80 bytes with layout version 5 (the mirror reconciliation counters: copies lost per
//!   mirror, packets before mirroring started, packets dropped while held); before that
//!   `vrouter-bench --stateful` reported 182.7 bytes per entry of capacity from the file
//!   size. The side block is written only by mirrored flows, flows counted on a second
//!   lcore and held drops, so the per-packet path is unchanged. (The figures below were
//!   measured with layout version 1, whose side block was the 32 bytes of mirror counters:
//!   167 bytes per slot, 250 per active flow at 80 % load.) The required fields (48-byte
//!   IPv6-capable key, six 64-bit counters, two timestamps, ...) need about 150 bytes:
//!   rather than a 192-byte entry, the four mirror counters, which only mirrored flows
//!   touch, and the shared packet/byte pair, which only a non-owner lcore touches, live in
//!   a parallel array and the entry stays a 128-byte aligned pair of cache lines.
//! * **One bucket line, then one entry.** A lookup reads the bucket's line of 8 tagged
//!   slot words and then only the entry whose 16-bit tag matches (a false match costs one
//!   extra key compare, 8/65536 of the time). The tag lines of all buckets are 8 bytes per
//!   main slot (10 MB at 1.25 M slots, 4 % of the table), the part of the table most likely
//!   to stay cached. Per packet the data plane touches the bucket line and the entry's two
//!   lines (key, control word, packets on the first; bytes and last-seen on the second),
//!   never the mirror counters unless the flow is mirrored.
//! * **Bucket width 8** (tf: 4). With `main = flows / 0.8`, 6.7 % of the flows spill into
//!   the overflow area with 8 slots per bucket, 12.3 % with 4 and 4.4 % with 12 (measured,
//!   equal to the Poisson estimate). Each spilled flow costs a chain walk (another
//!   dependent miss). At 1 M flows `burst32` measured 81-88 ns with width 4, 70-74 ns with
//!   8, 72-74 ns with 12 (same run, same load): 8 is the smallest width at the knee, and 8
//!   slot words leave room in the line for the chain head and the insert ticket.
//! * **Overflow chain** by index, as tf: all overflow entries of a bucket hang off one
//!   chain whose head is in the bucket line; snapshots report it as the `overflow_next`
//!   of the bucket's last main slot and of each chained entry (tf's
//!   `hentry_next_index`), so `flow -l` can print "Oflow entries". Default overflow area:
//!   20 % of main, rounded up to 1024 (tf), which covers the 14 % spill of a completely
//!   full main table at width 8.
//! * **Why far above the ~20 ns floor at 1 M flows.** The anchor (`performance-anchors.md`
//!   section 5) touches one 64-byte line per packet (16-byte key, plain adds). Here a
//!   packet needs the bucket line and the entry pair: two random DRAM accesses. On this
//!   guest one random 8-byte read in 256 MiB cost 13-16 ns with many in flight and
//!   170-280 ns when each depends on the previous (nested paging), and 22-28 ns /
//!   270-320 ns while the benchmark above ran (a scratch loop over anonymous and
//!   `/dev/shm` memory). So this layout's floor is about two such accesses, 30-55 ns, and
//!   `burst32` reaches the upper end. Getting there needs the burst pattern of
//!   the example above: a `lock`-prefixed add waits for every earlier load, so
//!   accounting a packet right after its own lookup (`plain`, `batch32`) serializes the
//!   misses of successive packets; doing all lookups of a burst first (tag scan of all,
//!   prefetch of the candidate entries, then keys) and all counter adds after keeps them
//!   overlapped: 2.2-2.7x faster than `plain` at 1 M flows, equal at 64 k. At 1 k flows (in
//!   cache) packet by packet is cheapest (13 ns over `base`); `lookup_burst` costs ~5 ns of
//!   prefetch work there. hugetlbfs (2 MiB pages, the production path) saved 5-10 %
//!   packet by packet at 1 M flows and made no clear difference in burst mode.
//! * **Insert** costs a few locked instructions (claim CAS, sequence lock, ticket, pending
//!   store, published flag) plus the misses of the lookup that precedes it: 46-53 ns in
//!   cache, 240-290 ns at 1 M flows; statistics go to the lcore's own block without locked
//!   adds. The agent's flow setup, not the table, bounds the setup rate.
#![warn(missing_docs)]

pub mod hash;

mod defs;
mod error;
mod key;
mod layout;
mod path;
mod reader;
mod reattach;
mod snapshot;
mod table;

pub use defs::*;
pub use error::FlowTableError;
pub use hash::{flow_hash_v4, flow_hash_v6, tunnel_source_port};
pub use key::{FlowKey, KEY_WORDS};
pub use layout::{EntryState, FlowEntry, Origin, BUCKET_WIDTH, LAYOUT_VERSION, MAGIC, MAX_ENTRIES, MAX_LCORES};
pub use path::{
    file_name_for_run_dir, hugepage_pool, hugepage_pools, hugetlbfs_mounts, is_on_hugetlbfs, mount_free_bytes,
    parse_hugetlbfs_options, parse_pool_dir_name, parse_size, pick_mount, pool_dir, pool_dir_name, HugepagePool,
    HugetlbfsMount, HugetlbfsOptions, FLOW_FILE_NAME, HUGEPAGES_SYSFS, HUGETLBFS_MAGIC,
};
pub use reader::FlowTableReader;
pub use reattach::{ReattachReport, TableStart};
/// The region framework's open options and error, which the table's open paths take and return.
pub use shm::{OpenOptions, RegionError};
pub use snapshot::{FlowAccounting, FlowSnapshot, HeaderInfo, TableIdentity, TableStats, SNAPSHOT_ATTEMPTS};
pub use table::{FlowTable, FlowTableConfig, FlowUpdate, Lookup, ReclaimStats};

#[cfg(test)]
mod tests {
    #[test]
    fn handles_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::FlowTable>();
        check::<super::FlowTableReader>();
    }
}
