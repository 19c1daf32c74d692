//! The fixed-size mirror table.

use super::entry::{EntryError, MirrorEntry};
use super::index::{IndexError, MirrorIndex, MAX_MIRROR_INDICES};
use thiserror::Error;

/// Why a table operation failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TableError {
    /// The index is not a slot (e.g. [`MirrorIndex::NONE`]).
    #[error(transparent)]
    Index(#[from] IndexError),
    /// The entry failed validation.
    #[error("mirror entry: {0}")]
    Entry(#[from] EntryError),
    /// `add` on a slot that already holds an entry.
    #[error("mirror index {index} is already in use by analyzer {name:?}")]
    InUse {
        /// The slot.
        index: MirrorIndex,
        /// The analyzer occupying it.
        name: String,
    },
    /// Another slot already holds an analyzer with this name (names are the key flow records
    /// and users refer to, so they are unique).
    #[error("analyzer name {name:?} is already used by mirror index {index}")]
    DuplicateName {
        /// The name.
        name: String,
        /// The slot holding it.
        index: MirrorIndex,
    },
    /// `delete` of an empty slot.
    #[error("mirror index {0} is empty")]
    NotFound(MirrorIndex),
    /// No free slot left for [`MirrorTable::allocate`].
    #[error("mirror table is full ({MAX_MIRROR_INDICES} entries)")]
    Full,
}

/// The mirror table: [`MAX_MIRROR_INDICES`] (255) slots addressed by [`MirrorIndex`] 0..=254.
///
/// Only validated entries are stored, and analyzer names are unique across slots.
#[derive(Debug, Clone)]
pub struct MirrorTable {
    slots: Vec<Option<MirrorEntry>>,
    len: usize,
}

impl Default for MirrorTable {
    fn default() -> Self {
        Self::new()
    }
}

impl MirrorTable {
    /// Number of slots.
    pub const CAPACITY: usize = MAX_MIRROR_INDICES;

    /// An empty table.
    pub fn new() -> Self {
        MirrorTable { slots: vec![None; Self::CAPACITY], len: 0 }
    }

    /// Number of occupied slots.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no slot is occupied.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check_name(&self, entry: &MirrorEntry, at: usize) -> Result<(), TableError> {
        match self.find_by_name(&entry.analyzer_name) {
            Some((index, _)) if index.slot() != Some(at) => {
                Err(TableError::DuplicateName { name: entry.analyzer_name.clone(), index })
            }
            _ => Ok(()),
        }
    }

    /// Stores `entry` in the empty slot `index`.
    pub fn add(&mut self, index: MirrorIndex, entry: MirrorEntry) -> Result<(), TableError> {
        let slot = index.require_slot()?;
        entry.validate()?;
        if let Some(existing) = &self.slots[slot] {
            return Err(TableError::InUse { index, name: existing.analyzer_name.clone() });
        }
        self.check_name(&entry, slot)?;
        self.slots[slot] = Some(entry);
        self.len += 1;
        Ok(())
    }

    /// Stores `entry` in slot `index`, replacing what was there (an update of an existing
    /// mirror); returns the previous entry.
    pub fn replace(&mut self, index: MirrorIndex, entry: MirrorEntry) -> Result<Option<MirrorEntry>, TableError> {
        let slot = index.require_slot()?;
        entry.validate()?;
        self.check_name(&entry, slot)?;
        let previous = self.slots[slot].replace(entry);
        if previous.is_none() {
            self.len += 1;
        }
        Ok(previous)
    }

    /// Stores `entry` in the lowest free slot and returns its index.
    pub fn allocate(&mut self, entry: MirrorEntry) -> Result<MirrorIndex, TableError> {
        entry.validate()?;
        let index = self.first_free().ok_or(TableError::Full)?;
        self.add(index, entry)?;
        Ok(index)
    }

    /// The entry in slot `index`; `None` for an empty slot or [`MirrorIndex::NONE`].
    pub fn get(&self, index: MirrorIndex) -> Option<&MirrorEntry> {
        self.slots.get(index.slot()?)?.as_ref()
    }

    /// Empties slot `index` and returns what it held.
    pub fn delete(&mut self, index: MirrorIndex) -> Result<MirrorEntry, TableError> {
        let slot = index.require_slot()?;
        let entry = self.slots[slot].take().ok_or(TableError::NotFound(index))?;
        self.len -= 1;
        Ok(entry)
    }

    /// Occupied slots in index order.
    pub fn iter(&self) -> impl Iterator<Item = (MirrorIndex, &MirrorEntry)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, e)| {
            // `i` < 255, so it is a valid slot index.
            e.as_ref().map(|e| (MirrorIndex::from_raw(i as u8), e))
        })
    }

    /// The lowest empty slot.
    pub fn first_free(&self) -> Option<MirrorIndex> {
        self.slots.iter().position(Option::is_none).map(|i| MirrorIndex::from_raw(i as u8))
    }

    /// The slot holding the analyzer called `name`.
    pub fn find_by_name(&self, name: &str) -> Option<(MirrorIndex, &MirrorEntry)> {
        self.iter().find(|(_, e)| e.analyzer_name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn entry(name: &str) -> MirrorEntry {
        MirrorEntry::analyzer(name, Ipv4Addr::new(10, 10, 0, 9))
    }

    fn idx(i: u32) -> MirrorIndex {
        MirrorIndex::new(i).unwrap()
    }

    #[test]
    fn add_get_delete() {
        let mut t = MirrorTable::new();
        assert!(t.is_empty());
        t.add(idx(1), entry("a1")).unwrap();
        t.add(idx(254), entry("a254")).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(idx(1)).unwrap().analyzer_name, "a1");
        assert_eq!(t.get(idx(254)).unwrap().analyzer_name, "a254");
        assert_eq!(t.get(idx(0)), None);
        assert_eq!(t.get(MirrorIndex::NONE), None);
        assert_eq!(t.delete(idx(1)).unwrap().analyzer_name, "a1");
        assert_eq!(t.delete(idx(1)), Err(TableError::NotFound(idx(1))));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn none_index_is_not_a_slot() {
        let mut t = MirrorTable::new();
        assert_eq!(t.add(MirrorIndex::NONE, entry("a")), Err(TableError::Index(IndexError::None)));
        assert_eq!(t.delete(MirrorIndex::NONE), Err(TableError::Index(IndexError::None)));
        assert_eq!(t.replace(MirrorIndex::NONE, entry("a")), Err(TableError::Index(IndexError::None)));
    }

    #[test]
    fn add_refuses_occupied_slot_and_duplicate_name() {
        let mut t = MirrorTable::new();
        t.add(idx(3), entry("a")).unwrap();
        assert_eq!(t.add(idx(3), entry("b")), Err(TableError::InUse { index: idx(3), name: "a".into() }));
        assert_eq!(t.add(idx(4), entry("a")), Err(TableError::DuplicateName { name: "a".into(), index: idx(3) }));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn invalid_entries_are_not_stored() {
        let mut t = MirrorTable::new();
        let bad = entry("a").with_udp_port(0);
        assert_eq!(t.add(idx(0), bad.clone()), Err(TableError::Entry(EntryError::UdpPort)));
        assert_eq!(t.replace(idx(0), bad.clone()), Err(TableError::Entry(EntryError::UdpPort)));
        assert_eq!(t.allocate(bad), Err(TableError::Entry(EntryError::UdpPort)));
        assert!(t.is_empty());
        assert_eq!(t.add(idx(0), entry("")).unwrap_err().to_string(), "mirror entry: analyzer_name: must not be empty");
    }

    #[test]
    fn replace_updates_in_place() {
        let mut t = MirrorTable::new();
        assert_eq!(t.replace(idx(5), entry("a")), Ok(None));
        assert_eq!(t.len(), 1);
        let updated = entry("a").with_udp_port(9000);
        assert_eq!(t.replace(idx(5), updated.clone()).unwrap().unwrap().udp_port, 8099);
        assert_eq!(t.get(idx(5)), Some(&updated));
        assert_eq!(t.len(), 1);
        t.add(idx(6), entry("b")).unwrap();
        assert_eq!(t.replace(idx(5), entry("b")), Err(TableError::DuplicateName { name: "b".into(), index: idx(6) }));
    }

    #[test]
    fn allocate_fills_all_255_slots() {
        let mut t = MirrorTable::new();
        for i in 0..MirrorTable::CAPACITY {
            assert_eq!(t.allocate(entry(&format!("a{i}"))), Ok(idx(i as u32)));
        }
        assert_eq!(t.len(), 255);
        assert_eq!(t.first_free(), None);
        assert_eq!(t.allocate(entry("extra")), Err(TableError::Full));
        t.delete(idx(17)).unwrap();
        assert_eq!(t.allocate(entry("again")), Ok(idx(17)));
    }

    #[test]
    fn iter_in_index_order_and_find_by_name() {
        let mut t = MirrorTable::new();
        for i in [9, 2, 200] {
            t.add(idx(i), entry(&format!("a{i}"))).unwrap();
        }
        let order: Vec<u8> = t.iter().map(|(i, _)| i.raw()).collect();
        assert_eq!(order, [2, 9, 200]);
        let (i, e) = t.find_by_name("a200").unwrap();
        assert_eq!((i, e.analyzer_name.as_str()), (idx(200), "a200"));
        assert!(t.find_by_name("nope").is_none());
    }
}
