//! One mirror (analyzer) definition and its validation.
//!
//! An analyzer is reached in one of two ways:
//!
//! * **Juniper header** (the classic analyzer): the copy is sent in plain IP/UDP to the analyzer
//!   address and port (default 8099), its payload being the [metadata TLVs](super::metadata)
//!   followed by the original Ethernet frame. The datapath entry carries the DYNAMIC flag, which
//!   is what makes it push the metadata.
//! * **No Juniper header**: the copy is sent VXLAN-encapsulated with the entry's VNI, either
//!   through a static VXLAN tunnel to the analyzer address or through the bridge route of the
//!   analyzer in the mirror VRF (dynamic nexthop, the VNI being that route's label). No DYNAMIC
//!   flag, no metadata.
//!
//! Independently, NIC-assisted mirroring (HW_ASSISTED flag) has the NIC make the copy, tagged
//! with a mirror VLAN.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::BitOr;
use std::str::FromStr;
use thiserror::Error;

/// Default analyzer UDP port (`ContrailPorts::AnalyzerUdpPort`).
pub const DEFAULT_ANALYZER_PORT: u16 = 8099;
/// Longest analyzer name accepted (bytes). A project bound: names are printed by the CLI and
/// exported in flow records, so they are kept short and ASCII.
pub const MAX_ANALYZER_NAME_LEN: usize = 255;
/// Largest VXLAN network identifier (24 bits): the one bound, [`crate::MAX_VNI`].
pub use crate::limits::MAX_VNI;

/// How the nexthop towards the analyzer is chosen (configuration `nh_mode`, spelled
/// `dynamic` or `static` in TOML and JSON as by [`NhMode::as_str`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NhMode {
    /// Resolved from routing: a UDP tunnel to the analyzer IP, or, without the Juniper header,
    /// the bridge route of the analyzer in the mirror VRF (tf default).
    #[default]
    Dynamic,
    /// A statically configured tunnel to the analyzer IP.
    Static,
}

impl NhMode {
    /// The configuration spelling: `dynamic` or `static`.
    pub const fn as_str(self) -> &'static str {
        match self {
            NhMode::Dynamic => "dynamic",
            NhMode::Static => "static",
        }
    }
}

impl fmt::Display for NhMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NhMode {
    type Err = EntryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "dynamic" => Ok(NhMode::Dynamic),
            "static" => Ok(NhMode::Static),
            other => Err(EntryError::NhMode { value: other.to_owned() }),
        }
    }
}

/// The four agent-side mirror modes (`MirrorEntryData` flags 1–4): nexthop mode × header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MirrorEncap {
    /// 1: dynamic nexthop, Juniper header.
    DynamicWithJuniperHdr = 1,
    /// 2: dynamic nexthop, VXLAN without Juniper header.
    DynamicWithoutJuniperHdr = 2,
    /// 3: static nexthop, Juniper header.
    StaticWithJuniperHdr = 3,
    /// 4: static nexthop, VXLAN without Juniper header.
    StaticWithoutJuniperHdr = 4,
}

/// The datapath flag word of a mirror entry (`mir_flags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MirrorFlags(u16);

impl MirrorFlags {
    /// Metadata (Juniper header) is pushed in front of the copy.
    pub const DYNAMIC: MirrorFlags = MirrorFlags(0x1);
    /// Entry is being deleted (set by the datapath, never by configuration).
    pub const MARKED_DELETE: MirrorFlags = MirrorFlags(0x2);
    /// The NIC makes the copy, tagged with the entry's VLAN.
    pub const HW_ASSISTED: MirrorFlags = MirrorFlags(0x4);
    const KNOWN: u16 = 0x7;

    /// No flags.
    pub const fn empty() -> Self {
        MirrorFlags(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Flags from raw bits; `None` if a bit outside DYNAMIC | MARKED_DELETE | HW_ASSISTED is set.
    pub const fn from_bits(bits: u16) -> Option<Self> {
        if bits & !Self::KNOWN == 0 {
            Some(MirrorFlags(bits))
        } else {
            None
        }
    }

    /// True if every flag in `other` is set.
    pub const fn contains(self, other: MirrorFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for MirrorFlags {
    type Output = MirrorFlags;

    fn bitor(self, rhs: MirrorFlags) -> MirrorFlags {
        MirrorFlags(self.0 | rhs.0)
    }
}

/// A field of a [`MirrorEntry`] that failed validation. Every message starts with the field
/// name, and [`EntryError::field`] returns it for callers that build their own paths.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EntryError {
    /// Empty analyzer name.
    #[error("analyzer_name: must not be empty")]
    AnalyzerNameEmpty,
    /// Analyzer name longer than [`MAX_ANALYZER_NAME_LEN`].
    #[error("analyzer_name: {len} bytes, longer than the maximum of {MAX_ANALYZER_NAME_LEN}")]
    AnalyzerNameTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A character outside printable ASCII in the analyzer name.
    #[error("analyzer_name: character {ch:?} at byte {offset} is not printable ASCII")]
    AnalyzerNameChar {
        /// Byte offset of the character.
        offset: usize,
        /// The character.
        ch: char,
    },
    /// Analyzer address that cannot be a unicast destination.
    #[error("analyzer_ip: {ip} is not a unicast address")]
    AnalyzerIp {
        /// The address given.
        ip: Ipv4Addr,
    },
    /// UDP port 0.
    #[error("udp_port: must not be 0")]
    UdpPort,
    /// Unknown nexthop mode string.
    #[error("nh_mode: {value:?} is neither \"dynamic\" nor \"static\"")]
    NhMode {
        /// The value given.
        value: String,
    },
    /// Header-less mode without a VNI.
    #[error("vni: required when juniper_header is false (the copy is VXLAN-encapsulated)")]
    VniMissing,
    /// A VNI given together with the Juniper header, where it would be ignored.
    #[error("vni: {vni} given but juniper_header is true (the VNI is only used without it)")]
    VniUnused {
        /// The value given.
        vni: u32,
    },
    /// VNI outside 1..=16777215.
    #[error("vni: {vni} is outside 1..={MAX_VNI}")]
    VniRange {
        /// The value given.
        vni: u32,
    },
    /// NIC-assisted mirror VLAN outside 1..=4094.
    #[error("hw_vlan: {vlan} is outside 1..=4094")]
    HwVlanRange {
        /// The value given.
        vlan: u16,
    },
}

impl EntryError {
    /// The name of the offending field.
    pub const fn field(&self) -> &'static str {
        match self {
            EntryError::AnalyzerNameEmpty
            | EntryError::AnalyzerNameTooLong { .. }
            | EntryError::AnalyzerNameChar { .. } => "analyzer_name",
            EntryError::AnalyzerIp { .. } => "analyzer_ip",
            EntryError::UdpPort => "udp_port",
            EntryError::NhMode { .. } => "nh_mode",
            EntryError::VniMissing | EntryError::VniUnused { .. } | EntryError::VniRange { .. } => "vni",
            EntryError::HwVlanRange { .. } => "hw_vlan",
        }
    }
}

/// One analyzer definition, the content of a mirror-table slot.
///
/// Fields are public so configuration code can fill them; [`MirrorEntry::validate`] checks
/// them, and the [`MirrorTable`](super::MirrorTable) only stores entries that pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorEntry {
    /// Analyzer name; the key users and flow records refer to.
    pub analyzer_name: String,
    /// Analyzer (tunnel destination) address.
    pub analyzer_ip: Ipv4Addr,
    /// Destination UDP port of the Juniper-header encapsulation (VXLAN mode uses the VXLAN port).
    pub udp_port: u16,
    /// How the nexthop to the analyzer is resolved.
    pub nh_mode: NhMode,
    /// Prefix the copy with the metadata TLVs (true) or VXLAN-encapsulate it (false).
    pub juniper_header: bool,
    /// VXLAN network identifier; required exactly when `juniper_header` is false.
    pub vni: Option<u32>,
    /// NIC-assisted mirroring with this VLAN (sets HW_ASSISTED).
    pub hw_vlan: Option<u16>,
}

impl MirrorEntry {
    /// A classic analyzer: dynamic nexthop, Juniper header, UDP port 8099.
    pub fn analyzer(name: impl Into<String>, ip: Ipv4Addr) -> Self {
        MirrorEntry {
            analyzer_name: name.into(),
            analyzer_ip: ip,
            udp_port: DEFAULT_ANALYZER_PORT,
            nh_mode: NhMode::Dynamic,
            juniper_header: true,
            vni: None,
            hw_vlan: None,
        }
    }

    /// A header-less (VXLAN) analyzer with the given nexthop mode and VNI.
    pub fn vxlan(name: impl Into<String>, ip: Ipv4Addr, nh_mode: NhMode, vni: u32) -> Self {
        MirrorEntry { nh_mode, juniper_header: false, vni: Some(vni), ..Self::analyzer(name, ip) }
    }

    /// The same entry with another UDP port.
    pub fn with_udp_port(self, udp_port: u16) -> Self {
        MirrorEntry { udp_port, ..self }
    }

    /// The same entry with another nexthop mode.
    pub fn with_nh_mode(self, nh_mode: NhMode) -> Self {
        MirrorEntry { nh_mode, ..self }
    }

    /// The same entry, NIC-assisted with the given VLAN.
    pub fn with_hw_vlan(self, vlan: u16) -> Self {
        MirrorEntry { hw_vlan: Some(vlan), ..self }
    }

    /// Checks every field; the first problem found is returned.
    pub fn validate(&self) -> Result<(), EntryError> {
        let name = &self.analyzer_name;
        if name.is_empty() {
            return Err(EntryError::AnalyzerNameEmpty);
        }
        if name.len() > MAX_ANALYZER_NAME_LEN {
            return Err(EntryError::AnalyzerNameTooLong { len: name.len() });
        }
        if let Some((offset, ch)) = name.char_indices().find(|(_, c)| !(' '..='~').contains(c)) {
            return Err(EntryError::AnalyzerNameChar { offset, ch });
        }
        let ip = self.analyzer_ip;
        if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            return Err(EntryError::AnalyzerIp { ip });
        }
        if self.udp_port == 0 {
            return Err(EntryError::UdpPort);
        }
        match (self.juniper_header, self.vni) {
            (true, Some(vni)) => return Err(EntryError::VniUnused { vni }),
            (false, None) => return Err(EntryError::VniMissing),
            (false, Some(vni)) if vni == 0 || vni > MAX_VNI => return Err(EntryError::VniRange { vni }),
            _ => {}
        }
        if let Some(vlan) = self.hw_vlan {
            if !(1..=4094).contains(&vlan) {
                return Err(EntryError::HwVlanRange { vlan });
            }
        }
        Ok(())
    }

    /// The datapath flag word: DYNAMIC when the Juniper header is pushed, HW_ASSISTED when a
    /// NIC VLAN is set. MARKED_DELETE is the datapath's own and never derived from config.
    pub fn flags(&self) -> MirrorFlags {
        let mut flags = MirrorFlags::empty();
        if self.juniper_header {
            flags = flags | MirrorFlags::DYNAMIC;
        }
        if self.hw_vlan.is_some() {
            flags = flags | MirrorFlags::HW_ASSISTED;
        }
        flags
    }

    /// The agent-side mode number (1–4) for this entry.
    pub fn encap(&self) -> MirrorEncap {
        match (self.nh_mode, self.juniper_header) {
            (NhMode::Dynamic, true) => MirrorEncap::DynamicWithJuniperHdr,
            (NhMode::Dynamic, false) => MirrorEncap::DynamicWithoutJuniperHdr,
            (NhMode::Static, true) => MirrorEncap::StaticWithJuniperHdr,
            (NhMode::Static, false) => MirrorEncap::StaticWithoutJuniperHdr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn analyzer_defaults() {
        let e = MirrorEntry::analyzer("analyzer-1", ip("10.10.0.9"));
        assert_eq!(e.udp_port, 8099);
        assert_eq!(e.nh_mode, NhMode::Dynamic);
        assert!(e.juniper_header);
        assert_eq!(e.vni, None);
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(e.flags(), MirrorFlags::DYNAMIC);
        assert_eq!(e.encap(), MirrorEncap::DynamicWithJuniperHdr);
        assert_eq!(e.encap() as u8, 1);
    }

    #[test]
    fn vxlan_modes() {
        let s = MirrorEntry::vxlan("a", ip("10.0.0.1"), NhMode::Static, 50);
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.flags(), MirrorFlags::empty());
        assert_eq!(s.encap(), MirrorEncap::StaticWithoutJuniperHdr);
        assert_eq!(s.encap() as u8, 4);
        let d = MirrorEntry::vxlan("a", ip("10.0.0.1"), NhMode::Dynamic, MAX_VNI);
        assert_eq!(d.validate(), Ok(()));
        assert_eq!(d.encap() as u8, 2);
        let sj = MirrorEntry::analyzer("a", ip("10.0.0.1")).with_nh_mode(NhMode::Static);
        assert_eq!(sj.encap() as u8, 3);
        assert_eq!(sj.flags(), MirrorFlags::DYNAMIC);
    }

    #[test]
    fn hw_assisted() {
        let e = MirrorEntry::analyzer("a", ip("10.0.0.1")).with_hw_vlan(100);
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(e.flags(), MirrorFlags::DYNAMIC | MirrorFlags::HW_ASSISTED);
        assert_eq!(e.flags().bits(), 0x5);
        for vlan in [0, 4095] {
            let e = MirrorEntry::analyzer("a", ip("10.0.0.1")).with_hw_vlan(vlan);
            assert_eq!(e.validate(), Err(EntryError::HwVlanRange { vlan }));
        }
    }

    #[test]
    fn name_validation() {
        let base = MirrorEntry::analyzer("", ip("10.0.0.1"));
        assert_eq!(base.validate(), Err(EntryError::AnalyzerNameEmpty));
        let long = MirrorEntry { analyzer_name: "a".repeat(256), ..base.clone() };
        assert_eq!(long.validate(), Err(EntryError::AnalyzerNameTooLong { len: 256 }));
        let ok = MirrorEntry { analyzer_name: "a".repeat(255), ..base.clone() };
        assert_eq!(ok.validate(), Ok(()));
        let tab = MirrorEntry { analyzer_name: "a\tb".into(), ..base.clone() };
        assert_eq!(tab.validate(), Err(EntryError::AnalyzerNameChar { offset: 1, ch: '\t' }));
        let utf = MirrorEntry { analyzer_name: "ané".into(), ..base };
        assert_eq!(utf.validate(), Err(EntryError::AnalyzerNameChar { offset: 2, ch: 'é' }));
    }

    #[test]
    fn address_and_port_validation() {
        for bad in ["0.0.0.0", "255.255.255.255", "224.0.0.1", "239.1.2.3"] {
            let e = MirrorEntry::analyzer("a", ip(bad));
            assert_eq!(e.validate(), Err(EntryError::AnalyzerIp { ip: ip(bad) }), "{bad}");
        }
        let e = MirrorEntry::analyzer("a", ip("10.0.0.1")).with_udp_port(0);
        assert_eq!(e.validate(), Err(EntryError::UdpPort));
        let e = MirrorEntry::analyzer("a", ip("10.0.0.1")).with_udp_port(9000);
        assert_eq!(e.validate(), Ok(()));
    }

    #[test]
    fn vni_validation() {
        let mut e = MirrorEntry::analyzer("a", ip("10.0.0.1"));
        e.vni = Some(5);
        assert_eq!(e.validate(), Err(EntryError::VniUnused { vni: 5 }));
        e.juniper_header = false;
        assert_eq!(e.validate(), Ok(()));
        e.vni = None;
        assert_eq!(e.validate(), Err(EntryError::VniMissing));
        for vni in [0, MAX_VNI + 1] {
            e.vni = Some(vni);
            assert_eq!(e.validate(), Err(EntryError::VniRange { vni }));
        }
    }

    #[test]
    fn errors_name_their_field() {
        let cases = [
            (EntryError::AnalyzerNameEmpty, "analyzer_name"),
            (EntryError::AnalyzerIp { ip: Ipv4Addr::UNSPECIFIED }, "analyzer_ip"),
            (EntryError::UdpPort, "udp_port"),
            (EntryError::NhMode { value: "x".into() }, "nh_mode"),
            (EntryError::VniMissing, "vni"),
            (EntryError::VniRange { vni: 0 }, "vni"),
            (EntryError::HwVlanRange { vlan: 0 }, "hw_vlan"),
        ];
        for (err, field) in cases {
            assert_eq!(err.field(), field);
            assert!(err.to_string().starts_with(&format!("{field}: ")), "{err}");
        }
        assert_eq!(EntryError::VniRange { vni: 0 }.to_string(), "vni: 0 is outside 1..=16777215");
    }

    #[test]
    fn nh_mode_strings() {
        assert_eq!("dynamic".parse::<NhMode>(), Ok(NhMode::Dynamic));
        assert_eq!("static".parse::<NhMode>(), Ok(NhMode::Static));
        assert_eq!("Static".parse::<NhMode>(), Err(EntryError::NhMode { value: "Static".into() }));
        assert_eq!(NhMode::Static.to_string(), "static");
    }

    #[test]
    fn flag_bits() {
        assert_eq!(MirrorFlags::DYNAMIC.bits(), 0x1);
        assert_eq!(MirrorFlags::MARKED_DELETE.bits(), 0x2);
        assert_eq!(MirrorFlags::HW_ASSISTED.bits(), 0x4);
        assert_eq!(MirrorFlags::from_bits(0x7).map(MirrorFlags::bits), Some(0x7));
        assert_eq!(MirrorFlags::from_bits(0x8), None);
        let f = MirrorFlags::DYNAMIC | MirrorFlags::MARKED_DELETE;
        assert!(f.contains(MirrorFlags::DYNAMIC));
        assert!(!f.contains(MirrorFlags::HW_ASSISTED));
        assert!(f.contains(MirrorFlags::empty()));
    }
}
