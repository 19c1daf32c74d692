//! The session's send queue: encoded frames waiting for the socket, bounded by level
//! watermarks.
//!
//! The queue is measured in bytes. Crossing a *rising* watermark upwards, or a *falling*
//! watermark downwards, sets the queue's sending level (sandesh-reference §2.5). A message
//! whose header level is at or above the sending level is dropped and counted (lower levels are
//! more severe; the initial level, [`level::INVALID`], drops nothing). UVEs are never dropped
//! by level: when the sending level reaches [`level::SYS_UVE`] the session is closed and
//! re-established, which resynchronises every UVE from the cache.
//!
//! Flow records do not normally meet the level check at all: the session only moves records
//! from its flow buffer into this queue while the queue is below the first rising watermark,
//! so a slow collector backs records up in the (counted, bounded) flow buffer instead.

use crate::model::level;
use std::collections::VecDeque;

/// One watermark: at `bytes` queued, the sending level becomes `level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    /// Queue size in bytes.
    pub bytes: usize,
    /// The new sending level.
    pub level: i32,
}

/// The watermark set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermarks {
    /// Applied when the queue grows to or past `bytes`.
    pub rising: Vec<Watermark>,
    /// Applied when the queue shrinks below `bytes`.
    pub falling: Vec<Watermark>,
}

impl Default for Watermarks {
    /// The reference generator's values (`sandesh_client.cc`).
    fn default() -> Self {
        const MIB: usize = 1024 * 1024;
        let w = |bytes, level| Watermark { bytes, level };
        Self {
            rising: vec![
                w(MIB, level::SYS_DEBUG),
                w(20 * MIB, level::SYS_ERR),
                w(30 * MIB, level::SYS_EMERG),
                w(50 * MIB, level::SYS_UVE),
            ],
            falling: vec![
                w(35 * MIB, level::SYS_EMERG),
                w(25 * MIB, level::SYS_ERR),
                w(15 * MIB, level::SYS_DEBUG),
                w(2 * 1024, level::INVALID),
            ],
        }
    }
}

impl Watermarks {
    /// The smallest rising watermark (the point where the queue starts shedding load).
    pub fn first_rising(&self) -> usize {
        self.rising.iter().map(|w| w.bytes).min().unwrap_or(usize::MAX)
    }
}

/// What a queued frame carries; decides what survives a reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Flow records (`records` of them): kept across a reconnect.
    Flow {
        /// Number of records in the frame.
        records: u32,
    },
    /// Packet trace steps (`steps` of them, one message): kept across a reconnect like
    /// flow records.
    Trace {
        /// Number of steps in the frame.
        steps: u32,
    },
    /// A UVE: discarded on reconnect (the cache resync re-sends it).
    Uve {
        /// Sent with the SYNC hint (part of a resync).
        sync: bool,
    },
}

#[derive(Debug)]
struct Queued {
    data: Vec<u8>,
    kind: FrameKind,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelDrop {
    /// The frame's level.
    pub level: i32,
    /// The sending level that rejected it.
    pub sending_level: i32,
}

/// Encoded frames waiting to be written, with the bytes of the head frame already written.
#[derive(Debug)]
pub struct SendQueue {
    frames: VecDeque<Queued>,
    bytes: usize,
    head_written: usize,
    sending_level: i32,
    marks: Watermarks,
}

impl SendQueue {
    /// An empty queue with these watermarks.
    pub fn new(marks: Watermarks) -> Self {
        Self { frames: VecDeque::new(), bytes: 0, head_written: 0, sending_level: level::INVALID, marks }
    }

    /// Bytes queued (not yet written), the partly written head frame counted in full.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The current sending level.
    pub fn sending_level(&self) -> i32 {
        self.sending_level
    }

    /// Flow records in queued frames.
    pub fn flow_records(&self) -> u64 {
        self.frames
            .iter()
            .map(|f| match f.kind {
                FrameKind::Flow { records } => u64::from(records),
                FrameKind::Trace { .. } | FrameKind::Uve { .. } => 0,
            })
            .sum()
    }

    fn resize(&mut self, new_bytes: usize) {
        let old = self.bytes;
        if new_bytes > old {
            for m in &self.marks.rising {
                if old < m.bytes && m.bytes <= new_bytes {
                    self.sending_level = m.level;
                }
            }
        } else {
            // Apply falling marks from the highest down, so the lowest crossed one wins.
            let mut crossed: Vec<&Watermark> =
                self.marks.falling.iter().filter(|m| new_bytes < m.bytes && m.bytes <= old).collect();
            crossed.sort_by_key(|m| std::cmp::Reverse(m.bytes));
            for m in crossed {
                self.sending_level = m.level;
            }
        }
        self.bytes = new_bytes;
    }

    /// Queues a frame of header level `msg_level`, unless the sending level drops it. UVEs
    /// ([`FrameKind::Uve`]) are never dropped by level.
    pub fn push(&mut self, data: Vec<u8>, kind: FrameKind, msg_level: i32) -> Result<(), LevelDrop> {
        if !matches!(kind, FrameKind::Uve { .. }) && msg_level >= self.sending_level {
            return Err(LevelDrop { level: msg_level, sending_level: self.sending_level });
        }
        let n = self.bytes + data.len();
        self.frames.push_back(Queued { data, kind });
        self.resize(n);
        Ok(())
    }

    /// The unwritten bytes of the head frame.
    pub fn head(&self) -> Option<&[u8]> {
        self.frames.front().map(|f| &f.data[self.head_written..])
    }

    /// Records that `n` bytes of the head frame were written; returns the head frame's kind
    /// when it is now complete (and removed).
    pub fn advance(&mut self, n: usize) -> Option<FrameKind> {
        let front = self.frames.front()?;
        self.head_written += n;
        if self.head_written < front.data.len() {
            return None;
        }
        let done = self.frames.pop_front()?;
        self.head_written = 0;
        self.resize(self.bytes - done.data.len());
        Some(done.kind)
    }

    /// Trace messages in queued frames.
    pub fn trace_messages(&self) -> u64 {
        self.frames.iter().filter(|f| matches!(f.kind, FrameKind::Trace { .. })).count() as u64
    }

    /// After a disconnect: keeps the flow and trace frames (to be re-sent whole on the next connection:
    /// a partly written frame is useless to the collector, which discards it with the old
    /// connection), drops the UVE frames, and returns how many UVE frames were dropped.
    pub fn retain_flows(&mut self) -> usize {
        let before = self.frames.len();
        self.frames.retain(|f| matches!(f.kind, FrameKind::Flow { .. } | FrameKind::Trace { .. }));
        self.head_written = 0;
        let n: usize = self.frames.iter().map(|f| f.data.len()).sum();
        self.resize(n);
        before - self.frames.len()
    }

    /// Moves every queued frame behind `front` (used to put the UVE resync first after a
    /// reconnect).
    pub fn prepend(&mut self, front: Vec<(Vec<u8>, FrameKind)>) {
        debug_assert_eq!(self.head_written, 0);
        let mut n = self.bytes;
        for (data, kind) in front.into_iter().rev() {
            n += data.len();
            self.frames.push_front(Queued { data, kind });
        }
        self.resize(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks() -> Watermarks {
        let w = |bytes, level| Watermark { bytes, level };
        Watermarks {
            rising: vec![w(100, level::SYS_DEBUG), w(200, level::SYS_ERR), w(300, level::SYS_UVE)],
            falling: vec![w(250, level::SYS_ERR), w(150, level::SYS_DEBUG), w(50, level::INVALID)],
        }
    }

    #[test]
    fn watermarks_set_the_sending_level_and_drop_by_level() {
        let mut q = SendQueue::new(marks());
        assert_eq!(q.sending_level(), level::INVALID);
        q.push(vec![0; 99], FrameKind::Flow { records: 1 }, level::SYS_DEBUG).unwrap();
        assert_eq!(q.sending_level(), level::INVALID);
        q.push(vec![0; 1], FrameKind::Flow { records: 1 }, level::SYS_INFO).unwrap();
        assert_eq!((q.bytes(), q.sending_level()), (100, level::SYS_DEBUG));
        // DEBUG messages are now dropped, INFO still passes.
        assert_eq!(
            q.push(vec![0; 10], FrameKind::Flow { records: 1 }, level::SYS_DEBUG),
            Err(LevelDrop { level: level::SYS_DEBUG, sending_level: level::SYS_DEBUG })
        );
        q.push(vec![0; 150], FrameKind::Flow { records: 1 }, level::SYS_INFO).unwrap();
        assert_eq!((q.bytes(), q.sending_level()), (250, level::SYS_ERR));
        assert!(q.push(vec![0; 1], FrameKind::Flow { records: 1 }, level::SYS_WARN).is_err());
        // UVEs pass whatever the level, and can push the level to SYS_UVE.
        q.push(vec![0; 60], FrameKind::Uve { sync: false }, level::SYS_NOTICE).unwrap();
        assert_eq!((q.bytes(), q.sending_level()), (310, level::SYS_UVE));
        // Draining: 310 -> 211 crosses the falling 250 mark.
        assert_eq!(q.advance(99), Some(FrameKind::Flow { records: 1 }));
        assert_eq!((q.bytes(), q.sending_level()), (211, level::SYS_ERR));
        // Partial write: nothing completes, size unchanged.
        assert_eq!(q.advance(0), None);
        assert_eq!(q.head().map(<[u8]>::len), Some(1));
        assert_eq!(q.advance(1), Some(FrameKind::Flow { records: 1 }));
        // 210 -> 60 crosses 150 (DEBUG).
        q.advance(100);
        assert_eq!(q.head().map(<[u8]>::len), Some(50));
        q.advance(50);
        assert_eq!((q.bytes(), q.sending_level()), (60, level::SYS_DEBUG));
        // 60 -> 0 crosses 50 (INVALID: nothing dropped any more).
        assert_eq!(q.advance(60), Some(FrameKind::Uve { sync: false }));
        assert_eq!((q.bytes(), q.sending_level()), (0, level::INVALID));
        assert!(q.is_empty());
    }

    #[test]
    fn a_big_drop_applies_the_lowest_crossed_falling_mark() {
        let mut q = SendQueue::new(marks());
        q.push(vec![0; 400], FrameKind::Uve { sync: false }, level::SYS_NOTICE).unwrap();
        assert_eq!(q.sending_level(), level::SYS_UVE);
        q.advance(400);
        assert_eq!(q.sending_level(), level::INVALID);
    }

    #[test]
    fn reconnect_keeps_flow_frames_whole() {
        let mut q = SendQueue::new(Watermarks::default());
        q.push(b"flow-1".to_vec(), FrameKind::Flow { records: 3 }, 6).unwrap();
        q.push(b"uve".to_vec(), FrameKind::Uve { sync: false }, 5).unwrap();
        q.push(b"flow-2".to_vec(), FrameKind::Flow { records: 2 }, 6).unwrap();
        q.push(b"trace".to_vec(), FrameKind::Trace { steps: 4 }, 6).unwrap();
        assert_eq!(q.trace_messages(), 1);
        q.advance(2);
        assert_eq!(q.flow_records(), 5);
        assert_eq!(q.retain_flows(), 1);
        assert_eq!(q.head(), Some(&b"flow-1"[..]));
        assert_eq!(q.bytes(), 17, "flow and trace frames are kept");
        assert_eq!(q.trace_messages(), 1);
        q.prepend(vec![(b"sync".to_vec(), FrameKind::Uve { sync: false })]);
        assert_eq!(q.head(), Some(&b"sync"[..]));
        assert_eq!((q.len(), q.bytes()), (4, 21));
    }
}
