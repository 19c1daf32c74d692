//! A `Vec`-backed [`PacketBuf`] with headroom and tailroom, like an mbuf: what the
//! pipeline's unit tests and the fuzz harness (`fuzz/`) run packets in.

use super::PacketBuf;

/// A packet buffer with headroom and tailroom, like an mbuf: `headroom` bytes before the
/// data (0xAA) and 64 after it (0xBB), so pushes and appends can be tested at both edges.
#[derive(Debug, Clone)]
pub struct VecBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecBuf {
    /// `data` with `headroom` bytes in front of it.
    pub fn new(headroom: usize, data: &[u8]) -> VecBuf {
        let mut buf = vec![0xAA; headroom];
        buf.extend_from_slice(data);
        buf.resize(buf.len() + 64, 0xBB);
        VecBuf { start: headroom, end: headroom + data.len(), buf }
    }
}

impl PacketBuf for VecBuf {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn trim_to(&mut self, len: usize) -> bool {
        if len > self.end - self.start {
            return false;
        }
        self.end = self.start + len;
        true
    }
    fn append(&mut self, n: usize) -> bool {
        if self.end + n > self.buf.len() {
            return false;
        }
        self.buf[self.end..self.end + n].fill(0);
        self.end += n;
        true
    }
}
