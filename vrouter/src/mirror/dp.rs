//! Data-plane mirroring on a forwarding lcore: copy, encapsulate, buffer per fabric vif,
//! send with one `rte_eth_tx_burst` per buffer, and count.
//!
//! Each copy is a fresh mbuf from the lcore's pool holding the outer headers of the entry,
//! the metadata TLVs (Juniper header) and a byte copy of the original frame, so the
//! original packet is never touched or delayed: it goes on through the pipeline as if no
//! mirror existed.
//!
//! # Where the counters move (the blueprint's "just before handing the copy to the nexthop")
//!
//! A copy is counted when the fabric TX queue has taken it, with the bytes of the copy as
//! sent (encapsulation included): on the flow (`mirror_*` or `sec_mirror_*` in the flow
//! table), on the mirror entry (region counters), on the mirrored vif for interface
//! mirroring (`Mirror packets`) and vRouter-wide (`mir_tpkts`/`mir_bytes`), and, like every
//! frame that leaves a port, as TX packets and bytes of the fabric vif it left on, so the
//! vif agrees with the NIC and with a capture of the port. Every copy that was due and not
//! sent counts one entry error, one vRouter-wide mirror error and one drop under its reason
//! (on the mirrored vif for interface mirroring, on the input vif for flow mirroring):
//! `Mirror No Entry`, `Mirror No NH`, `Mirror Clone Fail`, `Mirror Encap Fail`,
//! `Mirror TX Queue Full`. A copy the fabric TX queue refused is in addition a TX error of
//! the fabric vif (as a refused original is); its one drop is `Mirror TX Queue Full`, not
//! also `IF TX Discard`, so the drop table counts each lost frame once.
//! So for every flow, `packets matched` = `mirror_packets` + the flow's share of those drops,
//! and for the fabric vif, TX packets = originals sent + copies sent (`mir_tpkts`).

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_utils::CachePadded;
use dpdk_sys::rte_mbuf;
use flow_table::{FlowTable, NO_MIRROR};

use super::encap::{finish, flow_metadata, interface_metadata};
use super::region::{CopyKind, MirrorCounters, MirrorRegion, NO_NH};
use crate::config::{Config, VifType};
use crate::dpdk::Mbuf;
use crate::drop_reason::DropReason;
use crate::fib::{Fib, Nexthop};
use crate::pipeline::flow::CopyResults;
use crate::pipeline::{FlowMirror, MirrorFrame};
use crate::stats::LcoreStats;

/// Copies buffered per fabric vif before a TX burst.
const MIRROR_BURST: usize = 32;
/// `CopyInfo::flow` of an interface-mirror copy.
const NO_FLOW: u32 = u32::MAX;

/// Interface mirroring of one vif: the mirror index and the metadata of each direction.
#[derive(Clone, Debug, Default)]
struct VifMirror {
    rx: Option<u8>,
    tx: Option<u8>,
    rx_md: Vec<u8>,
    tx_md: Vec<u8>,
}

/// Read-only mirroring state shared by the lcores: interface mirroring per vif and the VN
/// names the flow metadata is built from.
pub struct MirrorMeta {
    router_ip: Ipv4Addr,
    /// Mirror index of RX / TX interface mirroring by vif id (255 = none); checked once per
    /// burst (RX) and once per transmitted packet (TX).
    rx: Vec<u8>,
    tx: Vec<u8>,
    vifs: Vec<VifMirror>,
    /// VN name of each vif (empty when none) and of each VRF (the VN of its VM vifs, else
    /// the VRF name).
    vif_vn: Vec<Box<[u8]>>,
    vrf_vn: Vec<Box<[u8]>>,
}

impl MirrorMeta {
    /// Builds the state from the configuration: vifs with `mirror_rx`/`mirror_tx` get the
    /// index of their `mirror_to` analyzer (`index_of`).
    pub fn new(cfg: &Config, fib: &Fib, index_of: impl Fn(&str) -> Option<u8>) -> MirrorMeta {
        let n = fib.vifs.len();
        let mut m = MirrorMeta {
            router_ip: fib.router_ip,
            rx: vec![NO_MIRROR; n],
            tx: vec![NO_MIRROR; n],
            vifs: vec![VifMirror::default(); n],
            vif_vn: vec![Box::default(); n],
            vrf_vn: fib
                .vrfs
                .iter()
                .map(|v| v.as_ref().map_or_else(Box::default, |v| v.name.as_bytes().into()))
                .collect(),
        };
        for v in fib.vif_list() {
            if let Some(vn) = &v.vn_name {
                m.vif_vn[usize::from(v.id)] = vn.as_bytes().into();
                if v.kind == VifType::Virtual {
                    if let Some(slot) = m.vrf_vn.get_mut(v.vrf as usize) {
                        *slot = vn.as_bytes().into();
                    }
                }
            }
        }
        for vc in &cfg.vifs {
            let vc = vc.get_ref();
            let Some(index) = vc.mirror_to.as_deref().and_then(&index_of) else { continue };
            let id = usize::from(vc.id);
            let vn = vc.vn_name.as_deref().unwrap_or("");
            let e = &mut m.vifs[id];
            if vc.mirror_rx {
                m.rx[id] = index;
                e.rx = Some(index);
                e.rx_md = interface_metadata(vn, true);
            }
            if vc.mirror_tx {
                m.tx[id] = index;
                e.tx = Some(index);
                e.tx_md = interface_metadata(vn, false);
            }
        }
        m
    }

    /// The interface-mirroring index of `vif` for RX or TX, if any.
    pub fn vif_mirror(&self, vif: u16, rx: bool) -> Option<u8> {
        let e = self.vifs.get(usize::from(vif))?;
        if rx {
            e.rx
        } else {
            e.tx
        }
    }
}

/// What the data plane needs to mirror: the region and the shared per-vif state.
pub struct MirrorSetup {
    /// The shared mirror region: the mirror table entries and the per-lcore counter blocks.
    pub region: MirrorRegion,
    /// Interface mirroring per vif and VN names, shared by every lcore; replaced when the
    /// forwarding state changes (live programming), taken by each lcore with the new state.
    pub meta: Arc<std::sync::Mutex<Arc<MirrorMeta>>>,
}

/// A spinlock guarding a TX queue shared by several lcores (the data plane's own).
pub type TxLock = CachePadded<AtomicBool>;

/// One copy in a TX buffer and what to count when it leaves.
#[derive(Clone, Copy, Default)]
struct CopyInfo {
    bytes: u32,
    flow: u32,
    slot: u8,
    secondary: bool,
    /// Interface mirroring (per-vif mirror counters) rather than flow mirroring.
    iface: bool,
    /// Mirrored vif (interface mirroring) or input vif (flow mirroring).
    vif: u16,
}

/// Copies waiting for one fabric vif's TX queue.
struct MirrorTx {
    /// The fabric vif (its TX counters count the copies that leave).
    vif: u16,
    port: u16,
    queue: u16,
    lock: Option<Arc<TxLock>>,
    n: usize,
    pkts: [*mut rte_mbuf; MIRROR_BURST],
    info: [CopyInfo; MIRROR_BURST],
}

/// Where a fabric vif's copies go from this lcore.
pub struct MirrorPort {
    /// The fabric vif the copies leave on (its TX counters count them).
    pub vif: u16,
    /// DPDK port id of that vif.
    pub port: u16,
    /// The lcore's TX queue on that port.
    pub queue: u16,
    /// Spinlock of the queue when several lcores share it (`None`: the lcore's own queue).
    pub lock: Option<Arc<TxLock>>,
}

/// Mirroring state owned by one forwarding lcore.
pub struct MirrorLcore {
    counters: MirrorCounters,
    meta: Arc<MirrorMeta>,
    /// Where a new `meta` is published.
    meta_cell: Arc<std::sync::Mutex<Arc<MirrorMeta>>>,
    fib: Arc<Fib>,
    pool: *mut dpdk_sys::rte_mempool,
    table: Option<Arc<FlowTable>>,
    /// By vif id; only fabric vifs have one.
    tx: Vec<Option<MirrorTx>>,
    /// Some vif has TX mirroring (else the per-packet TX check is this one flag).
    any_tx: bool,
}

impl MirrorLcore {
    /// The mirroring state of lcore `index`: its counter block, the pool copies come from
    /// and the fabric TX queues it sends them on.
    pub fn new(
        setup: &MirrorSetup,
        index: usize,
        fib: Arc<Fib>,
        pool: *mut dpdk_sys::rte_mempool,
        table: Option<Arc<FlowTable>>,
        ports: Vec<MirrorPort>,
    ) -> Option<MirrorLcore> {
        let counters = setup.region.lcore(index)?;
        let mut tx: Vec<Option<MirrorTx>> = (0..fib.vifs.len()).map(|_| None).collect();
        for p in ports {
            if let Some(slot) = tx.get_mut(usize::from(p.vif)) {
                *slot = Some(MirrorTx {
                    vif: p.vif,
                    port: p.port,
                    queue: p.queue,
                    lock: p.lock,
                    n: 0,
                    pkts: [std::ptr::null_mut(); MIRROR_BURST],
                    info: [CopyInfo::default(); MIRROR_BURST],
                });
            }
        }
        let meta = setup.meta.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let any_tx = meta.tx.iter().any(|&m| m != NO_MIRROR);
        Some(MirrorLcore { counters, meta, meta_cell: setup.meta.clone(), fib, pool, table, tx, any_tx })
    }

    /// Takes a newly published forwarding state: analyzer nexthops resolve in `fib`, and the
    /// interface mirroring and VN names of its vifs apply.
    pub fn set_fib(&mut self, fib: Arc<Fib>) {
        self.fib = fib;
        self.meta = self.meta_cell.lock().unwrap_or_else(|e| e.into_inner()).clone();
        self.any_tx = self.meta.tx.iter().any(|&m| m != NO_MIRROR);
    }

    /// RX interface mirroring of `vif` (one load and branch per burst).
    #[inline(always)]
    pub fn rx_index(&self, vif: u16) -> u8 {
        self.meta.rx.get(usize::from(vif)).copied().unwrap_or(NO_MIRROR)
    }

    /// TX interface mirroring of `vif` (one load and branch per transmitted packet).
    #[inline(always)]
    pub fn tx_index(&self, vif: u16) -> u8 {
        if !self.any_tx {
            return NO_MIRROR;
        }
        self.meta.tx.get(usize::from(vif)).copied().unwrap_or(NO_MIRROR)
    }

    /// Copies `frame`, received (`rx`) or about to be transmitted on `vif`, to the vif's
    /// mirror entry `slot`.
    #[cold]
    pub fn copy_interface(&mut self, stats: &LcoreStats, vif: u16, rx: bool, slot: u8, frame: &[u8]) {
        let mut md = [0u8; 255];
        let n = match self.meta.vifs.get(usize::from(vif)) {
            Some(e) => {
                let src = if rx { &e.rx_md[..] } else { &e.tx_md[..] };
                let n = src.len().min(md.len());
                md[..n].copy_from_slice(&src[..n]);
                n
            }
            None => 0,
        };
        let info = CopyInfo { bytes: 0, flow: NO_FLOW, slot, secondary: false, iface: true, vif };
        let _ = self.copy(stats, slot, &[], frame, &md[..n], info, u32::from(vif));
    }

    /// A copy of `vif`'s traffic for entry `slot` that cannot be made at all (e.g. a chained
    /// mbuf, whose frame is not in one segment): counted like any failed copy.
    #[cold]
    pub fn interface_copy_failed(&mut self, stats: &LcoreStats, vif: u16, slot: u8, reason: DropReason) {
        let info = CopyInfo { bytes: 0, flow: NO_FLOW, slot, secondary: false, iface: true, vif };
        count_lost(stats, &self.counters, None, &info, reason);
    }

    /// Builds and buffers one copy (`md`: the metadata TLVs, used with the Juniper header);
    /// any failure is counted under its reason.
    #[allow(clippy::too_many_arguments)]
    fn copy(
        &mut self,
        stats: &LcoreStats,
        slot: u8,
        l2: &[u8],
        frame: &[u8],
        md: &[u8],
        info: CopyInfo,
        entropy: u32,
    ) -> Result<u32, DropReason> {
        let table = self.table.as_deref();
        let fail = |c: &MirrorCounters, reason: DropReason| {
            count_lost(stats, c, table, &info, reason);
            Err(reason)
        };
        let Some(e) = self.counters.entry(slot) else { return fail(&self.counters, DropReason::MirrorNoEntry) };
        if e.nh_vif == NO_NH || e.hdr_len == 0 {
            return fail(&self.counters, DropReason::MirrorNoNh);
        }
        let Some(t) = self.tx.get_mut(e.nh_vif as usize).and_then(Option::as_mut) else {
            return fail(&self.counters, DropReason::MirrorNoNh);
        };
        let md = if e.juniper { md } else { &[][..] };
        let total = e.hdr_len + md.len() + l2.len() + frame.len();
        // SAFETY: the pool outlives the data plane (it is freed at EAL cleanup, after the
        // lcores stopped); allocation is safe from any EAL lcore.
        let raw = unsafe { dpdk_sys::rte_pktmbuf_alloc(self.pool) };
        if raw.is_null() {
            return fail(&self.counters, DropReason::MirrorCloneFail);
        }
        // SAFETY: freshly allocated, owned by this lcore until handed to tx_burst or freed.
        let mut m = unsafe { Mbuf::from_raw(raw) };
        if !m.append(total) {
            // SAFETY: still ours, referenced nowhere else.
            unsafe { dpdk_sys::rte_pktmbuf_free(raw) };
            return fail(&self.counters, DropReason::MirrorEncapFail);
        }
        {
            let d = m.data_mut();
            let mut off = 0;
            for part in [&e.hdr[..e.hdr_len], md, l2, frame] {
                d[off..off + part.len()].copy_from_slice(part);
                off += part.len();
            }
            if !finish(d, e.ip_csum_base, entropy) {
                // SAFETY: as above.
                unsafe { dpdk_sys::rte_pktmbuf_free(raw) };
                return fail(&self.counters, DropReason::MirrorEncapFail);
            }
        }
        if t.n == MIRROR_BURST {
            flush(t, stats, &self.counters, table);
        }
        t.pkts[t.n] = raw;
        t.info[t.n] = CopyInfo { bytes: total as u32, ..info };
        t.n += 1;
        Ok(total as u32)
    }

    /// Sends every buffered copy (end of burst).
    #[inline]
    pub fn flush_all(&mut self, stats: &LcoreStats) {
        for t in self.tx.iter_mut().flatten() {
            if t.n > 0 {
                flush(t, stats, &self.counters, self.table.as_deref());
            }
        }
    }

    /// The flow copy sink for one packet received on `vif`.
    #[inline]
    pub fn flow_sink<'a>(&'a mut self, stats: &'a LcoreStats, vif: u16, from_vm: bool) -> FlowCopy<'a> {
        FlowCopy { m: self, stats, vif, from_vm }
    }
}

impl CopyInfo {
    fn kind(&self) -> CopyKind {
        if self.iface {
            CopyKind::Interface
        } else {
            CopyKind::Flow
        }
    }
}

/// One copy due and not sent, counted under `reason` wherever a lost copy counts: a drop
/// of that reason (on the mirrored vif for interface mirroring, on the input vif for flow
/// mirroring) and a vRouter-wide mirror error, the entry's error and its count for the
/// reason, and for flow mirroring the flow's lost copies of that mirror (primary or
/// secondary), so that every copy a flow offered is either sent or lost.
fn count_lost(
    stats: &LcoreStats,
    counters: &MirrorCounters,
    table: Option<&FlowTable>,
    info: &CopyInfo,
    reason: DropReason,
) {
    stats.mirror_error(Some(info.vif), info.iface, reason, 1);
    counters.lost(info.slot, info.kind(), reason);
    if info.flow != NO_FLOW {
        if let Some(table) = table {
            table.account_mirror_lost(info.flow, info.secondary);
        }
    }
}

/// Transmits a mirror buffer, counting what left and what the queue refused.
fn flush(t: &mut MirrorTx, stats: &LcoreStats, counters: &MirrorCounters, table: Option<&FlowTable>) {
    let n = t.n;
    t.n = 0;
    if let Some(lock) = &t.lock {
        while lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            std::hint::spin_loop();
        }
    }
    // SAFETY: the first n entries are mbufs owned by this lcore; the queue is ours or we
    // hold its lock; tx_burst takes ownership of the first `sent`.
    let sent = usize::from(unsafe { dpdk_sys::rte_eth_tx_burst(t.port, t.queue, t.pkts.as_mut_ptr(), n as u16) });
    if let Some(lock) = &t.lock {
        lock.store(false, Ordering::Release);
    }
    let mut sent_bytes = 0;
    for i in &t.info[..sent] {
        let b = u64::from(i.bytes);
        sent_bytes += b;
        stats.mirror(i.iface.then_some(i.vif), b);
        counters.sent(i.slot, i.kind(), b);
        if i.flow != NO_FLOW {
            if let Some(table) = table {
                table.account_mirror(i.flow, i.secondary, i.bytes);
            }
        }
    }
    // The copies are TX of the fabric vif too (bytes as sent: `bytes` is the copy's whole
    // single-segment length, its pkt_len, as the data path counts originals). Counted after
    // `mir_tpkts`, so a reader never sees a copy in TX before it is in `mir_tpkts`.
    stats.tx(t.vif, sent as u64, sent_bytes);
    if sent < n {
        // Refused by the queue: a TX error of the fabric vif, one drop (below) per copy.
        stats.tx_error(t.vif, (n - sent) as u64);
        for i in &t.info[sent..n] {
            count_lost(stats, counters, table, i, DropReason::MirrorTxFull);
        }
        // SAFETY: the unsent mbufs are still ours.
        unsafe { dpdk_sys::rte_pktmbuf_free_bulk(t.pkts.as_mut_ptr().add(sent), (n - sent) as u32) };
    }
}

/// The [`FlowMirror`] of one packet: the lcore's mirror state, its stats and the input vif.
pub struct FlowCopy<'a> {
    m: &'a mut MirrorLcore,
    stats: &'a LcoreStats,
    vif: u16,
    from_vm: bool,
}

impl FlowMirror for FlowCopy<'_> {
    #[cold]
    fn flow_copy(&mut self, flow: u32, mirrors: [u8; 2], vrf: u32, frame: &MirrorFrame<'_>) -> CopyResults {
        // The metadata, built once for both analyzers: source VN = the input vif's (else the
        // flow VRF's), destination VN = the local destination vif's (else the VRF's).
        let mut md = [0u8; 255];
        let n = {
            let meta = &self.m.meta;
            let vrf_vn = meta.vrf_vn.get(vrf as usize).map_or(&[][..], |v| &v[..]);
            let vn_of = |vif: u16| meta.vif_vn.get(usize::from(vif)).map(|v| &v[..]).filter(|v| !v.is_empty());
            let src_vn = vn_of(self.vif).unwrap_or(vrf_vn);
            let dst_vif = frame.nh.and_then(|nh| match self.m.fib.nexthop(nh) {
                Some(Nexthop::Encap { vif, .. }) => Some(*vif),
                _ => None,
            });
            let dst_vn = dst_vif.and_then(vn_of).unwrap_or(vrf_vn);
            let flags = if self.from_vm { vrouter_abi::mirror::FLAG_INGRESS } else { 0 };
            flow_metadata(&mut md, meta.router_ip, flags, src_vn, dst_vn)
        };
        let l2 = frame.l2.as_ref().map_or(&[][..], |h| &h[..]);
        let mut out: CopyResults = [None, None];
        for (k, &slot) in mirrors.iter().enumerate() {
            if slot == NO_MIRROR {
                continue;
            }
            let info = CopyInfo { bytes: 0, flow, slot, secondary: k == 1, iface: false, vif: self.vif };
            out[k] = Some(self.m.copy(self.stats, slot, l2, frame.bytes, &md[..n], info, flow));
        }
        out
    }
}
