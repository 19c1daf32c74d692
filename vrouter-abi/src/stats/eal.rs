//! What the stats region records of the vRouter's DPDK process for tools that attach to it
//! ([`EalFacts`]): its EAL `--file-prefix`, whether its memory is on huge pages and whether it
//! initialised DPDK's packet-capture framework. `vifdump` runs `dpdk-dumpcap`, a DPDK
//! secondary process, on that prefix.
//!
//! Written in the header with the other static fields, before `magic`. The bytes were
//! reserved (zero) in the files of earlier builds of the same layout version: a flags word of
//! 0 reads as "not recorded" ([`EalFacts`] absent), and earlier readers ignore them.

/// The flags word says the facts were recorded.
pub(crate) const EAL_RECORDED: u32 = 1;
/// DPDK's memory is on huge pages (`[eal] no_huge = false`).
pub(crate) const EAL_HUGEPAGES: u32 = 2;
/// `rte_pdump_init` succeeded: `dpdk-dumpcap` can capture the ports.
pub(crate) const EAL_PDUMP: u32 = 4;

/// Bytes the header keeps for the file prefix (a longer one is not recorded).
pub const FILE_PREFIX_BYTES: usize = 64;

/// The vRouter's DPDK process as a secondary process needs to know it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EalFacts {
    /// The EAL `--file-prefix` (`[eal] file_prefix`, or `<prefix>.t<pid>` after a takeover).
    pub file_prefix: String,
    /// DPDK's memory is on huge pages (`no_huge = false`).
    pub hugepages: bool,
    /// The packet-capture framework is initialised (`[eal] pdump`).
    pub pdump: bool,
}

impl EalFacts {
    /// The header's flags word and prefix bytes; `None` when the prefix does not fit (then
    /// nothing is recorded).
    pub(crate) fn encode(&self) -> Option<(u32, [u8; FILE_PREFIX_BYTES])> {
        let b = self.file_prefix.as_bytes();
        if b.is_empty() || b.len() > FILE_PREFIX_BYTES || b.contains(&0) {
            return None;
        }
        let mut prefix = [0u8; FILE_PREFIX_BYTES];
        prefix[..b.len()].copy_from_slice(b);
        let mut flags = EAL_RECORDED;
        if self.hugepages {
            flags |= EAL_HUGEPAGES;
        }
        if self.pdump {
            flags |= EAL_PDUMP;
        }
        Some((flags, prefix))
    }

    /// The facts of a header's flags word and prefix bytes; `None` when not recorded.
    pub(crate) fn decode(flags: u32, prefix: &[u8; FILE_PREFIX_BYTES]) -> Option<EalFacts> {
        if flags & EAL_RECORDED == 0 {
            return None;
        }
        let len = prefix.iter().position(|&b| b == 0).unwrap_or(FILE_PREFIX_BYTES);
        Some(EalFacts {
            file_prefix: String::from_utf8_lossy(&prefix[..len]).into_owned(),
            hugepages: flags & EAL_HUGEPAGES != 0,
            pdump: flags & EAL_PDUMP != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let f = EalFacts { file_prefix: "vr1.t42".into(), hugepages: true, pdump: true };
        let (flags, bytes) = f.encode().unwrap();
        assert_eq!(flags, EAL_RECORDED | EAL_HUGEPAGES | EAL_PDUMP);
        assert_eq!(EalFacts::decode(flags, &bytes), Some(f));
        let f = EalFacts { file_prefix: "x".repeat(FILE_PREFIX_BYTES), hugepages: false, pdump: false };
        let (flags, bytes) = f.encode().unwrap();
        assert_eq!(EalFacts::decode(flags, &bytes), Some(f.clone()));
        assert_eq!(EalFacts { file_prefix: "x".repeat(FILE_PREFIX_BYTES + 1), ..f }.encode(), None);
        assert_eq!(EalFacts::default().encode(), None, "an empty prefix is not recorded");
        // A file of an earlier build: reserved zero bytes.
        assert_eq!(EalFacts::decode(0, &[0; FILE_PREFIX_BYTES]), None);
    }
}
