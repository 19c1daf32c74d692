//! A bounded, lock-free single-producer single-consumer ring.
//!
//! Each forwarding lcore owns the producer side of one ring to the agent thread (flow setup
//! requests), so the data plane never contends with another writer. Head and tail live on
//! their own cache lines (`CachePadded`), and each side caches the other side's index so the
//! common case touches only its own line.

use crossbeam_utils::CachePadded;
use std::cell::{Cell, UnsafeCell};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct Shared<T> {
    /// Next slot the consumer reads (written by the consumer only).
    head: CachePadded<AtomicUsize>,
    /// Next slot the producer writes (written by the producer only).
    tail: CachePadded<AtomicUsize>,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
    mask: usize,
}

// SAFETY: a slot is written only by the producer before it publishes the slot (Release store
// of tail) and read only by the consumer after it observed that store (Acquire load), then
// handed back by the consumer's Release store of head; the two sides never access the same
// slot at the same time. T: Send is required to move values across threads.
unsafe impl<T: Send> Sync for Shared<T> {}
// SAFETY: see above; the ring owns Ts and may drop them on another thread.
unsafe impl<T: Send> Send for Shared<T> {}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        let head = *self.head.get_mut();
        let tail = *self.tail.get_mut();
        for i in head..tail {
            // SAFETY: slots in [head, tail) were written and not yet read; we own them now.
            unsafe { (*self.slots[i & self.mask].get()).assume_init_drop() };
        }
    }
}

/// The producing end (one thread).
pub struct Producer<T> {
    ring: Arc<Shared<T>>,
    /// Consumer position last seen (stale is safe: it only under-reports free space).
    head_cache: Cell<usize>,
}

/// The consuming end (one thread).
pub struct Consumer<T> {
    ring: Arc<Shared<T>>,
    tail_cache: Cell<usize>,
}

// SAFETY: each end is used by one thread at a time (not Sync); moving it to another thread is
// fine because all shared state is behind the Arc'd ring with the protocol above.
unsafe impl<T: Send> Send for Producer<T> {}
// SAFETY: as for Producer.
unsafe impl<T: Send> Send for Consumer<T> {}

/// A ring with room for `capacity` items (rounded up to a power of two).
pub fn ring<T>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let cap = capacity.max(2).next_power_of_two();
    let slots = (0..cap).map(|_| UnsafeCell::new(MaybeUninit::uninit())).collect();
    let ring = Arc::new(Shared {
        head: CachePadded::new(AtomicUsize::new(0)),
        tail: CachePadded::new(AtomicUsize::new(0)),
        slots,
        mask: cap - 1,
    });
    (Producer { ring: ring.clone(), head_cache: Cell::new(0) }, Consumer { ring, tail_cache: Cell::new(0) })
}

impl<T> Producer<T> {
    /// Enqueues `v`, or gives it back when the ring is full.
    #[inline]
    pub fn push(&self, v: T) -> Result<(), T> {
        let r = &*self.ring;
        let tail = r.tail.load(Ordering::Relaxed);
        if tail - self.head_cache.get() > r.mask {
            self.head_cache.set(r.head.load(Ordering::Acquire));
            if tail - self.head_cache.get() > r.mask {
                return Err(v);
            }
        }
        // SAFETY: slot `tail` is free (tail - head <= mask) and only this producer writes it.
        unsafe { (*r.slots[tail & r.mask].get()).write(v) };
        r.tail.store(tail + 1, Ordering::Release);
        Ok(())
    }

    /// Items currently queued (approximate from the producer's view).
    pub fn len(&self) -> usize {
        self.ring.tail.load(Ordering::Relaxed) - self.ring.head.load(Ordering::Acquire)
    }

    /// Whether the ring is empty (approximate from the producer's view).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Consumer<T> {
    /// Dequeues the oldest item, if any.
    #[inline]
    pub fn pop(&self) -> Option<T> {
        let r = &*self.ring;
        let head = r.head.load(Ordering::Relaxed);
        if head == self.tail_cache.get() {
            self.tail_cache.set(r.tail.load(Ordering::Acquire));
            if head == self.tail_cache.get() {
                return None;
            }
        }
        // SAFETY: head < tail, so the slot was written and published by the producer, and
        // only this consumer reads it; after reading we hand the slot back.
        let v = unsafe { (*r.slots[head & r.mask].get()).assume_init_read() };
        r.head.store(head + 1, Ordering::Release);
        Some(v)
    }

    /// Whether an item is waiting (reads the producer's index: for a consumer about to sleep).
    pub fn has_items(&self) -> bool {
        let r = &*self.ring;
        r.tail.load(Ordering::Acquire) != r.head.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_full() {
        let (p, c) = ring::<u32>(4);
        for i in 0..4 {
            p.push(i).unwrap();
        }
        assert_eq!(p.push(9), Err(9));
        assert_eq!(c.pop(), Some(0));
        p.push(4).unwrap();
        assert_eq!((1..=4).map(|_| c.pop().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
        assert_eq!(c.pop(), None);
        assert!(!c.has_items());
        p.push(5).unwrap();
        assert!(c.has_items());
    }

    #[test]
    fn threads_lose_nothing_and_keep_order() {
        let (p, c) = ring::<u64>(64);
        const N: u64 = 200_000;
        let t = std::thread::spawn(move || {
            for i in 0..N {
                let mut v = i;
                loop {
                    match p.push(v) {
                        Ok(()) => break,
                        Err(back) => {
                            v = back;
                            std::hint::spin_loop();
                        }
                    }
                }
            }
        });
        let mut next = 0;
        while next < N {
            if let Some(v) = c.pop() {
                assert_eq!(v, next);
                next += 1;
            }
        }
        t.join().unwrap();
        assert_eq!(c.pop(), None);
    }

    #[test]
    fn unread_items_are_dropped_with_the_ring() {
        let item = Arc::new(());
        let (p, c) = ring::<Arc<()>>(8);
        p.push(item.clone()).unwrap();
        p.push(item.clone()).unwrap();
        drop(c.pop());
        drop((p, c));
        assert_eq!(Arc::strong_count(&item), 1);
    }
}
