//! [`Pod`]: plain shared-memory types, and [`Bytes`], the one place that turns an offset in
//! mapped memory into a reference.

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::sync::atomic::{AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicU16, AtomicU32, AtomicU64, AtomicU8};

/// A type that may live in a shared-memory region and be viewed in place.
///
/// # Safety
///
/// Implement it only for types (in the style of rust-vmm's `ByteValued`) where:
/// - every bit pattern of `size_of::<Self>()` bytes is a valid value (integers, atomic
///   integers, arrays and `repr(C)` structs of them; no `bool`, `char`, enums, references);
/// - the layout is fixed (`repr(C)` or `repr(transparent)`) and there is no padding whose
///   contents matter (regions declare explicit `_pad` fields and assert their size);
/// - there are no pointers (shared memory is mapped at different addresses in different
///   processes: links are indices);
/// - any mutation through a shared reference goes through atomics (another process may
///   write the bytes at any time).
pub unsafe trait Pod: Sized + 'static {}

macro_rules! pod {
    ($($t:ty),*) => {
        $(
            // SAFETY: an integer or atomic integer: every bit pattern is valid, no padding,
            // no pointer; atomics mutate through `&self` only atomically.
            unsafe impl Pod for $t {}
        )*
    };
}
pod!(u8, u16, u32, u64, i8, i16, i32, i64);
pod!(AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicI8, AtomicI16, AtomicI32, AtomicI64);

// SAFETY: an array of Pod elements is laid out without padding between them (size is a
// multiple of alignment) and is valid for every bit pattern when its elements are.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

/// Borrowed mapped bytes: a base pointer and a length, valid for `'a`.
///
/// Nothing creates a `&[u8]` over memory that another process may be writing (which would
/// assert that the bytes do not change): accessors hand out references to [`Pod`] types,
/// whose mutable parts are atomics.
#[derive(Clone, Copy)]
pub struct Bytes<'a> {
    base: *const u8,
    len: usize,
    _life: PhantomData<&'a [u8]>,
}

impl<'a> Bytes<'a> {
    /// # Safety
    /// `base` must point to `len` bytes of mapped memory that stay mapped, and are not
    /// truncated away, for `'a`; no `&mut` to them may exist during `'a`.
    #[inline(always)]
    pub unsafe fn new(base: *const u8, len: usize) -> Bytes<'a> {
        Bytes { base, len, _life: PhantomData }
    }

    /// A view of an ordinary byte slice (local buffers, tests).
    pub fn from_slice(bytes: &'a [u8]) -> Bytes<'a> {
        Bytes { base: bytes.as_ptr(), len: bytes.len(), _life: PhantomData }
    }

    /// Start of the bytes.
    #[inline(always)]
    pub fn as_ptr(&self) -> *const u8 {
        self.base
    }

    /// Number of bytes.
    #[inline(always)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `T` at `offset`, if it lies within the bytes and is aligned for `T`.
    #[inline]
    pub fn get<T: Pod>(self, offset: usize) -> Option<&'a T> {
        self.slice::<T>(offset, 1).map(|s| &s[0])
    }

    /// `n` consecutive `T`s from `offset`, if they lie within the bytes and are aligned.
    #[inline]
    pub fn slice<T: Pod>(self, offset: usize, n: usize) -> Option<&'a [T]> {
        let end = n.checked_mul(size_of::<T>())?.checked_add(offset)?;
        if end > self.len || !(self.base as usize).wrapping_add(offset).is_multiple_of(align_of::<T>()) {
            return None;
        }
        // SAFETY: `offset..end` lies within the `len` bytes `new`'s contract keeps mapped
        // for 'a; the address is aligned for T (checked); T is Pod, so any bytes are valid
        // Ts and shared mutation goes through atomics.
        Some(unsafe { std::slice::from_raw_parts(self.base.add(offset) as *const T, n) })
    }

    /// The `T` at `offset` without checks: for the per-packet accessors, which index arrays
    /// whose bounds were validated once (when the region was created or opened) and check
    /// the index against those bounds themselves.
    ///
    /// # Safety
    /// `offset + size_of::<T>() <= self.len()` and `self.as_ptr() + offset` is aligned for `T`.
    #[inline(always)]
    pub unsafe fn get_unchecked<T: Pod>(self, offset: usize) -> &'a T {
        debug_assert!(offset + size_of::<T>() <= self.len);
        debug_assert!((self.base as usize + offset).is_multiple_of(align_of::<T>()));
        // SAFETY: the caller keeps the T within the mapped bytes and aligned; T is Pod.
        unsafe { &*(self.base.add(offset) as *const T) }
    }
}

/// The `T` at `offset` of a mutable byte slice, if it lies within it and is aligned.
pub fn get_mut<T: Pod>(bytes: &mut [u8], offset: usize) -> Option<&mut T> {
    let end = offset.checked_add(size_of::<T>())?;
    if end > bytes.len() || !(bytes.as_ptr() as usize).wrapping_add(offset).is_multiple_of(align_of::<T>()) {
        return None;
    }
    // SAFETY: in bounds and aligned (checked); the slice is borrowed mutably, so the
    // reference is unique; T is Pod, so the bytes are a valid T and any T written is
    // valid bytes.
    Some(unsafe { &mut *(bytes.as_mut_ptr().add(offset) as *mut T) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[repr(C, align(8))]
    struct Buf([u8; 64]);

    #[test]
    fn get_checks_bounds_and_alignment() {
        let mut b = Buf([0; 64]);
        b.0[8..16].copy_from_slice(&0x1122_3344_5566_7788u64.to_ne_bytes());
        let bytes = Bytes::from_slice(&b.0);
        assert_eq!(bytes.get::<AtomicU64>(8).unwrap().load(Relaxed), 0x1122_3344_5566_7788);
        assert_eq!(*bytes.get::<u32>(12).unwrap(), u32::from_ne_bytes(b.0[12..16].try_into().unwrap()));
        assert!(bytes.get::<u64>(56).is_some());
        assert!(bytes.get::<u64>(57).is_none(), "past the end and misaligned");
        assert!(bytes.get::<u64>(60).is_none(), "misaligned");
        assert!(bytes.get::<u64>(64).is_none(), "past the end");
        assert!(bytes.get::<u64>(usize::MAX - 3).is_none(), "overflowing offset");
        assert_eq!(bytes.slice::<u64>(0, 8).unwrap().len(), 8);
        assert!(bytes.slice::<u64>(8, 8).is_none());
        assert!(bytes.slice::<u64>(0, usize::MAX).is_none(), "overflowing count");
        assert_eq!(bytes.get::<[u16; 4]>(8).unwrap().len(), 4);
    }

    #[test]
    fn get_mut_checks_bounds_and_alignment() {
        let mut b = Buf([0; 64]);
        *get_mut::<u32>(&mut b.0, 4).unwrap() = 7;
        assert_eq!(u32::from_ne_bytes(b.0[4..8].try_into().unwrap()), 7);
        assert!(get_mut::<u32>(&mut b.0, 2).is_none());
        assert!(get_mut::<u32>(&mut b.0, 62).is_none());
    }
}
