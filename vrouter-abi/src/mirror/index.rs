//! The mirror index carried by flows and interfaces.

use std::fmt;
use thiserror::Error;

/// Number of mirror-table slots (`VR_MAX_MIRROR_INDICES`); valid indices are `0..=254`.
pub const MAX_MIRROR_INDICES: usize = 255;

/// A mirror-table index as stored in a flow entry or a vif: one byte, where 255 means "not
/// mirrored" ([`MirrorIndex::NONE`]).
///
/// [`MirrorIndex::new`] only yields a real slot (0..=254); [`MirrorIndex::from_raw`] accepts any
/// byte read from a flow or vif, 255 included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MirrorIndex(u8);

/// A value that is not a usable mirror-table slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum IndexError {
    /// The value is beyond the last slot (254). 255 is the "none" marker, not a slot.
    #[error("mirror index {0} is out of range (valid: 0..=254; 255 means none)")]
    OutOfRange(u32),
    /// [`MirrorIndex::NONE`] was used where a real slot is required.
    #[error("mirror index 255 (none) does not name a table slot")]
    None,
}

impl MirrorIndex {
    /// "No mirror": the value flows and vifs hold when mirroring is off.
    pub const NONE: MirrorIndex = MirrorIndex(255);

    /// A table slot, `0..=254`. Takes a `u32` so out-of-range configuration values are reported
    /// as they were given.
    pub fn new(index: u32) -> Result<Self, IndexError> {
        match u8::try_from(index) {
            Ok(i) if usize::from(i) < MAX_MIRROR_INDICES => Ok(MirrorIndex(i)),
            _ => Err(IndexError::OutOfRange(index)),
        }
    }

    /// The index as stored in a flow or vif byte; 255 becomes [`MirrorIndex::NONE`].
    pub const fn from_raw(raw: u8) -> Self {
        MirrorIndex(raw)
    }

    /// The byte to store in a flow or vif.
    pub const fn raw(self) -> u8 {
        self.0
    }

    /// True for [`MirrorIndex::NONE`].
    pub const fn is_none(self) -> bool {
        self.0 == Self::NONE.0
    }

    /// The table slot this index names, or `None` for [`MirrorIndex::NONE`].
    pub const fn slot(self) -> Option<usize> {
        if self.is_none() {
            None
        } else {
            Some(self.0 as usize)
        }
    }

    /// The table slot, or [`IndexError::None`].
    pub fn require_slot(self) -> Result<usize, IndexError> {
        self.slot().ok_or(IndexError::None)
    }
}

impl Default for MirrorIndex {
    /// Not mirrored.
    fn default() -> Self {
        Self::NONE
    }
}

impl fmt::Display for MirrorIndex {
    /// The number, as the CLI prints it (`Mirror Index:1`); NONE prints as 255.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_range() {
        assert_eq!(MirrorIndex::new(0).unwrap().slot(), Some(0));
        assert_eq!(MirrorIndex::new(254).unwrap().raw(), 254);
        assert_eq!(MirrorIndex::new(255), Err(IndexError::OutOfRange(255)));
        assert_eq!(MirrorIndex::new(256), Err(IndexError::OutOfRange(256)));
        assert_eq!(MirrorIndex::new(u32::MAX), Err(IndexError::OutOfRange(u32::MAX)));
    }

    #[test]
    fn none_marker() {
        assert_eq!(MirrorIndex::NONE.raw(), 255);
        assert!(MirrorIndex::NONE.is_none());
        assert_eq!(MirrorIndex::from_raw(255), MirrorIndex::NONE);
        assert_eq!(MirrorIndex::default(), MirrorIndex::NONE);
        assert_eq!(MirrorIndex::NONE.slot(), None);
        assert_eq!(MirrorIndex::NONE.require_slot(), Err(IndexError::None));
        assert!(!MirrorIndex::from_raw(7).is_none());
        assert_eq!(MirrorIndex::from_raw(7).require_slot(), Ok(7));
    }

    #[test]
    fn display_and_errors() {
        assert_eq!(MirrorIndex::new(1).unwrap().to_string(), "1");
        assert_eq!(MirrorIndex::NONE.to_string(), "255");
        assert_eq!(
            IndexError::OutOfRange(300).to_string(),
            "mirror index 300 is out of range (valid: 0..=254; 255 means none)"
        );
    }
}
