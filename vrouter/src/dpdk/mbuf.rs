//! Per-packet mbuf access done in Rust from the struct fields (no FFI call per packet), as
//! the mbuf data pointer is `buf_addr + data_off`.
//!
//! Only the first segment is visible as packet bytes; the vRouter's receive path uses a
//! 2 KiB data room, so frames up to the standard MTU are single-segment. Operations that
//! would have to move bytes across segments return `false` and the caller drops the packet
//! with a named reason.

use dpdk_sys::rte_mbuf;

/// A borrowed mbuf the lcore currently owns (between rx_burst and tx_burst/free).
pub struct Mbuf {
    raw: *mut rte_mbuf,
}

impl Mbuf {
    /// Wraps an mbuf pointer.
    ///
    /// # Safety
    /// `raw` must be a valid mbuf owned by the calling lcore for the lifetime of the wrapper
    /// (received from rx_burst or allocated, and not yet freed or handed to tx_burst).
    #[inline(always)]
    pub unsafe fn from_raw(raw: *mut rte_mbuf) -> Mbuf {
        Mbuf { raw }
    }

    /// The raw mbuf pointer (for burst calls and freeing); ownership stays with `self`.
    #[inline(always)]
    pub fn as_ptr(&self) -> *mut rte_mbuf {
        self.raw
    }

    #[inline(always)]
    fn m(&self) -> &rte_mbuf {
        // SAFETY: from_raw's contract: raw is a valid mbuf owned by this lcore.
        unsafe { &*self.raw }
    }

    #[inline(always)]
    fn m_mut(&mut self) -> &mut rte_mbuf {
        // SAFETY: as in m(); &mut self gives exclusive access.
        unsafe { &mut *self.raw }
    }

    /// Total packet length over all segments.
    #[inline(always)]
    pub fn pkt_len(&self) -> u32 {
        self.m().pkt_len
    }

    /// Bytes in the first segment.
    #[inline(always)]
    pub fn data_len(&self) -> u16 {
        self.m().data_len
    }

    /// Whether the packet is in one segment (the pipeline only handles contiguous packets).
    #[inline(always)]
    pub fn is_contiguous(&self) -> bool {
        self.m().nb_segs == 1
    }

    /// The RSS hash the NIC computed (0 for virtual devices without RSS).
    #[inline(always)]
    pub fn rss_hash(&self) -> u32 {
        // SAFETY: reading a u32 out of a plain-data union; any bit pattern is a valid u32.
        unsafe { self.m().__bindgen_anon_2.hash.rss }
    }

    #[inline(always)]
    fn data_ptr(&self) -> *mut u8 {
        let m = self.m();
        // SAFETY: buf_addr + data_off is within the mbuf's buffer by mbuf invariants.
        unsafe { (m.buf_addr as *mut u8).add(usize::from(m.data_off)) }
    }

    /// The first segment's bytes.
    #[inline(always)]
    pub fn data(&self) -> &[u8] {
        // SAFETY: [data_ptr, data_ptr + data_len) is initialised packet data of this mbuf,
        // which this lcore owns; the borrow of self keeps it from being freed or modified.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), usize::from(self.data_len())) }
    }

    /// The packet data of the first segment (`data_len` bytes from the data offset), writable.
    #[inline(always)]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in data(); &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), usize::from(self.data_len())) }
    }

    /// Grows the packet at the front by `n` bytes (uninitialised: the caller writes them).
    #[inline(always)]
    pub fn prepend(&mut self, n: usize) -> bool {
        let m = self.m_mut();
        if n > usize::from(m.data_off) {
            return false;
        }
        m.data_off -= n as u16;
        m.data_len += n as u16;
        m.pkt_len += n as u32;
        true
    }

    /// Removes `n` bytes from the front.
    #[inline(always)]
    pub fn adj(&mut self, n: usize) -> bool {
        let m = self.m_mut();
        if n > usize::from(m.data_len) {
            return false;
        }
        m.data_off += n as u16;
        m.data_len -= n as u16;
        m.pkt_len -= n as u32;
        true
    }

    /// Shrinks the packet to `len` bytes (drops trailing padding). Single segment only.
    #[inline(always)]
    pub fn trim_to(&mut self, len: usize) -> bool {
        let m = self.m_mut();
        if m.nb_segs != 1 || len > usize::from(m.data_len) {
            return false;
        }
        m.data_len = len as u16;
        m.pkt_len = len as u32;
        true
    }

    /// Grows the packet at the end by `n` bytes (zeroed). Single segment only.
    #[inline(always)]
    pub fn append(&mut self, n: usize) -> bool {
        let (off, len, buf_len, segs) = {
            let m = self.m();
            (usize::from(m.data_off), usize::from(m.data_len), usize::from(m.buf_len), m.nb_segs)
        };
        if segs != 1 || off + len + n > buf_len {
            return false;
        }
        // SAFETY: the range [off+len, off+len+n) lies inside the buffer (checked above).
        unsafe { std::ptr::write_bytes(self.data_ptr().add(len), 0, n) };
        let m = self.m_mut();
        m.data_len += n as u16;
        m.pkt_len += n as u32;
        true
    }
}
