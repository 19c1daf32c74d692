//! The static per-vif record of the region ([`VifInfo`]), its builder and decoded form,
//! vif types and flag bits (tf-vrouter numbering and letters).

use std::net::{Ipv4Addr, Ipv6Addr};

/// vif types, numbered as tf-vrouter's `VIF_TYPE_*` (include/vr_interface.h).
pub const VIF_TYPE_HOST: u8 = 0;
/// The agent's packet interface (tf `pkt0`); this vRouter creates none.
pub const VIF_TYPE_AGENT: u8 = 1;
/// Physical (fabric) port.
pub const VIF_TYPE_PHYSICAL: u8 = 2;
/// VM interface.
pub const VIF_TYPE_VIRTUAL: u8 = 3;

const VIF_TYPE_NAMES: [(&str, &str); 10] = [
    ("Host", "host"),
    ("Agent", "agent"),
    ("Physical", "physical"),
    ("Virtual", "virtual"),
    ("XenLL", "xen_ll"),
    ("Gateway", "gateway"),
    ("Virtual(Vlan)", "virtual_vlan"),
    ("Stats", "stats"),
    ("VLAN", "vlan"),
    ("Monitoring", "monitoring"),
];

/// The `Type:` string `vif --list` prints for a type number (tf-vrouter spelling).
pub fn vif_type_name(t: u8) -> &'static str {
    VIF_TYPE_NAMES.get(t as usize).map_or("Invalid", |n| n.0)
}

/// Stable snake_case name of a type number, for JSON.
pub fn vif_type_key(t: u8) -> &'static str {
    VIF_TYPE_NAMES.get(t as usize).map_or("invalid", |n| n.1)
}

crate::flag_set! {
    /// Every vif flag (tf-vrouter's `VIF_FLAG_*` values), in tf-vrouter's `flag_metadata` print
    /// order (utils/vif.c): symbol as `vif --list` prints it in `Flags:`, name as its legend
    /// does, key for JSON.
    pub VIF_FLAGS: u32 {
        VIF_FLAG_POLICY_ENABLED = 0x1 => "policy", "Policy", "P";
        VIF_FLAG_XCONNECT = 0x2 => "cross_connect", "Cross Connect", "X";
        VIF_FLAG_SERVICE_IF = 0x4 => "service_chain", "Service Chain", "S";
        VIF_FLAG_MIRROR_RX = 0x8 => "receive_mirror", "Receive Mirror", "Mr";
        VIF_FLAG_MIRROR_TX = 0x10 => "transmit_mirror", "Transmit Mirror", "Mt";
        VIF_FLAG_TX_CSUM_OFFLOAD = 0x20 => "tx_checksum_offload", "Transmit Checksum Offload", "Tc";
        /// Routes IP packets (L3 forwarding enabled).
        VIF_FLAG_L3_ENABLED = 0x40 => "l3", "Layer 3", "L3";
        /// Bridges frames (L2 forwarding enabled).
        VIF_FLAG_L2_ENABLED = 0x80 => "l2", "Layer 2", "L2";
        VIF_FLAG_DHCP_ENABLED = 0x100 => "dhcp", "DHCP", "D";
        VIF_FLAG_VHOST_PHYS = 0x200 => "vhost_physical", "Vhost Physical", "Vp";
        VIF_FLAG_PROMISCUOUS = 0x400 => "promiscuous", "Promiscuous", "Pr";
        VIF_FLAG_NATIVE_VLAN_TAG = 0x800 => "native_vlan_tagged", "Native Vlan Tagged", "Vnt";
        /// Does not answer ARP/ND by proxy (`Mnp`).
        VIF_FLAG_NO_ARP_PROXY = 0x1000 => "no_mac_proxy", "No MAC Proxy", "Mnp";
        /// Bound to a DPDK poll-mode driver port (`Dpdk`).
        VIF_FLAG_PMD = 0x2000 => "dpdk", "DPDK PMD Interface", "Dpdk";
        VIF_FLAG_FILTERING_OFFLOAD = 0x4000 => "rx_filtering_offload", "Receive Filtering Offload", "Rfl";
        VIF_FLAG_MONITORED = 0x8000 => "monitored", "Interface is Monitored", "Mon";
        VIF_FLAG_UNKNOWN_UC_FLOOD = 0x10000 => "unknown_unicast_flood", "Unknown Unicast Flood", "Uuf";
        VIF_FLAG_VLAN_OFFLOAD = 0x20000 => "vlan_offload", "VLAN insert/strip offload", "Vof";
        VIF_FLAG_DROP_NEW_FLOWS = 0x40000 => "drop_new_flows", "Drop New Flows", "Df";
        VIF_FLAG_MAC_LEARN = 0x80000 => "mac_learning", "MAC Learning Enabled", "L";
        /// ARP/ND requests are always answered by the vRouter (`Proxy`).
        VIF_FLAG_MAC_PROXY = 0x100000 => "mac_proxy", "MAC Requests Proxied Always", "Proxy";
        VIF_FLAG_ETREE_ROOT = 0x200000 => "etree_root", "Etree Root", "Er";
        VIF_FLAG_MIRROR_NOTAG = 0x1000000 => "mirror_without_vlan_tag", "Mirror without Vlan Tag", "Mn";
        VIF_FLAG_IGMP_ENABLED = 0x2000000 => "igmp_trap", "Igmp Trap Enabled", "Ig";
    }
}

/// One vif flag: its bit, `vif --list` symbol and legend name, and JSON key.
pub type VifFlag = crate::codes::Flag<u32>;

/// The vif mirror index meaning "no interface mirroring".
pub const VIF_NO_MIRROR: u8 = 255;

/// Link state byte of a vif record: up.
pub const VIF_LINK_UP: u8 = 1;
/// Link state byte of a vif record: down (a vhost-user port without a connected, running guest
/// driver); what is sent to it is dropped as `Link Down`.
pub const VIF_LINK_DOWN: u8 = 2;
/// Offset of the link byte in a [`VifInfo`] (the only byte written while the record is valid).
pub(crate) const VIF_LINK_OFFSET: usize = 289;
/// vhost-user mode byte: the vRouter connects to the VM's socket (QEMU is the server), and
/// reconnects when it goes away.
pub const VIF_VHOST_CLIENT: u8 = 1;
/// vhost-user mode byte: the vRouter listens on the socket and the VM connects.
pub const VIF_VHOST_SERVER: u8 = 2;

/// The name of a link state byte (`up`, `down`, `unknown`).
pub fn vif_link_name(link: u8) -> &'static str {
    match link {
        VIF_LINK_UP => "up",
        VIF_LINK_DOWN => "down",
        _ => "unknown",
    }
}

/// The name of a vhost-user mode byte (`client`, `server`; empty when not vhost-user).
pub fn vif_vhost_mode_name(mode: u8) -> &'static str {
    match mode {
        VIF_VHOST_CLIENT => "client",
        VIF_VHOST_SERVER => "server",
        _ => "",
    }
}

/// `nh_id` value meaning "no nexthop recorded".
pub const VIF_UNSET_NH: u32 = u32::MAX;

/// The static record of one vif in the region (320 bytes, `repr(C)`, no pointers).
///
/// Text fields are UTF-8, NUL-padded, truncated (at a character boundary) to their size.
/// Build one with [`VifInfo::new`] and the chained setters (the vRouter builds a configured
/// vif's with `vrouter::vif_info::from_config`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VifInfo {
    /// 1: a configured vif; 2: a deleted vif whose counters are kept; 0: none (or being
    /// rewritten).
    valid: u8,
    vif_type: u8,
    has_ip: u8,
    has_ip6: u8,
    id: u16,
    port_id: u16,
    rx_queues: u16,
    tx_queues: u16,
    vrf: u32,
    mtu: u32,
    flags: u32,
    mac: [u8; 6],
    _pad0: [u8; 2],
    ipv4: [u8; 4],
    nh_id: u32,
    _pad1: [u8; 8],
    ipv6: [u8; 16],
    name: [u8; 32],
    device: [u8; 64],
    vn_name: [u8; 64],
    vm_uuid: [u8; 16],
    vmi_uuid: [u8; 16],
    driver: [u8; 32],
    /// Mirror index of interface mirroring (`Mr`/`Mt`), 255 when none.
    mirror_id: u8,
    /// Link state ([`VIF_LINK_UP`], [`VIF_LINK_DOWN`]; 0 when not reported): written as an
    /// atomic byte while the record is valid ([`super::StatsRegion::set_vif_link`]).
    link: u8,
    /// vhost-user mode ([`VIF_VHOST_CLIENT`], [`VIF_VHOST_SERVER`]; 0: not a vhost-user port).
    vhost_mode: u8,
    /// vhost-user queue pairs configured (0: not a vhost-user port).
    vhost_queues: u8,
    _reserved: [u8; 28],
}

const _: () = {
    use std::mem::offset_of;
    assert!(offset_of!(VifInfo, id) == 4);
    assert!(offset_of!(VifInfo, vrf) == 12);
    assert!(offset_of!(VifInfo, flags) == 20);
    assert!(offset_of!(VifInfo, mac) == 24);
    assert!(offset_of!(VifInfo, ipv4) == 32);
    assert!(offset_of!(VifInfo, nh_id) == 36);
    assert!(offset_of!(VifInfo, ipv6) == 48);
    assert!(offset_of!(VifInfo, name) == 64);
    assert!(offset_of!(VifInfo, device) == 96);
    assert!(offset_of!(VifInfo, vn_name) == 160);
    assert!(offset_of!(VifInfo, vm_uuid) == 224);
    assert!(offset_of!(VifInfo, vmi_uuid) == 240);
    assert!(offset_of!(VifInfo, driver) == 256);
    assert!(offset_of!(VifInfo, mirror_id) == 288);
    assert!(offset_of!(VifInfo, link) == VIF_LINK_OFFSET);
    assert!(offset_of!(VifInfo, vhost_mode) == 290);
    assert!(offset_of!(VifInfo, _reserved) == 292);
};

// SAFETY: repr(C), integers and byte arrays only, explicit padding (`_pad0`, `_pad1`,
// `_reserved`; offsets asserted above, size asserted in layout.rs), no pointers; every bit
// pattern is a valid VifInfo (readers check `valid` and the id themselves).
unsafe impl shm::Pod for VifInfo {}

fn put_str<const N: usize>(dst: &mut [u8; N], s: &str) {
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    *dst = [0; N];
    dst[..end].copy_from_slice(&s.as_bytes()[..end]);
}

fn get_str(src: &[u8]) -> String {
    let end = src.iter().position(|&b| b == 0).unwrap_or(src.len());
    String::from_utf8_lossy(&src[..end]).into_owned()
}

impl VifInfo {
    /// A valid record for vif `id` of type `vif_type` (a `VIF_TYPE_*`), named `name`; one
    /// RX and one TX queue, everything else zero/empty and no nexthop.
    pub fn new(id: u16, vif_type: u8, name: &str) -> VifInfo {
        let mut v = VifInfo {
            valid: 1,
            vif_type,
            has_ip: 0,
            has_ip6: 0,
            id,
            port_id: 0,
            rx_queues: 1,
            tx_queues: 1,
            vrf: 0,
            mtu: 0,
            flags: 0,
            mac: [0; 6],
            _pad0: [0; 2],
            ipv4: [0; 4],
            nh_id: VIF_UNSET_NH,
            _pad1: [0; 8],
            ipv6: [0; 16],
            name: [0; 32],
            device: [0; 64],
            vn_name: [0; 64],
            vm_uuid: [0; 16],
            vmi_uuid: [0; 16],
            driver: [0; 32],
            mirror_id: VIF_NO_MIRROR,
            link: 0,
            vhost_mode: 0,
            vhost_queues: 0,
            _reserved: [0; 28],
        };
        put_str(&mut v.name, name);
        v
    }

    /// The vif id (`vif0/<id>`), which is also its slot in the table.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// DPDK port id and the number of RX and TX queues opened on it.
    pub fn port(mut self, port_id: u16, rx_queues: u16, tx_queues: u16) -> Self {
        self.port_id = port_id;
        self.rx_queues = rx_queues;
        self.tx_queues = tx_queues;
        self
    }
    /// VRF id of the vif (`Vrf:` in `vif --list`).
    pub fn vrf(mut self, vrf: u32) -> Self {
        self.vrf = vrf;
        self
    }
    /// MTU in bytes (`MTU:` in `vif --list`); 0 means unknown.
    pub fn mtu(mut self, mtu: u32) -> Self {
        self.mtu = mtu;
        self
    }
    /// `VIF_FLAG_*` bits (replaces the current set).
    pub fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }
    /// The vif's MAC (`HWaddr:`).
    pub fn mac(mut self, mac: [u8; 6]) -> Self {
        self.mac = mac;
        self
    }
    /// The vif's IPv4 address (`IPaddr:`; the VM's on a VM vif); marks it as set.
    pub fn ipv4(mut self, ip: Ipv4Addr) -> Self {
        self.ipv4 = ip.octets();
        self.has_ip = 1;
        self
    }
    /// The vif's IPv6 address (`IP6addr:`; the VM's on a VM vif); marks it as set.
    pub fn ipv6(mut self, ip: Ipv6Addr) -> Self {
        self.ipv6 = ip.octets();
        self.has_ip6 = 1;
        self
    }
    /// The vif's receive nexthop id (`NH:` in `vif --list`).
    pub fn nh(mut self, nh_id: u32) -> Self {
        self.nh_id = nh_id;
        self
    }
    /// DPDK device name (`net_pcap0`, a PCI address, ...), printed as `OS:`; 64 bytes max.
    pub fn device(mut self, device: &str) -> Self {
        put_str(&mut self.device, device);
        self
    }
    /// Virtual network name; 64 bytes max.
    pub fn vn_name(mut self, vn_name: &str) -> Self {
        put_str(&mut self.vn_name, vn_name);
        self
    }
    /// UUID of the VM the vif belongs to (16 bytes in text order; all zero = none).
    pub fn vm_uuid(mut self, uuid: [u8; 16]) -> Self {
        self.vm_uuid = uuid;
        self
    }
    /// UUID of the VM interface (tf VMI; 16 bytes in text order; all zero = none).
    pub fn vmi_uuid(mut self, uuid: [u8; 16]) -> Self {
        self.vmi_uuid = uuid;
        self
    }
    /// PMD driver name (e.g. `net_pcap`); 32 bytes max.
    pub fn driver(mut self, driver: &str) -> Self {
        put_str(&mut self.driver, driver);
        self
    }

    /// Interface mirroring: sets the `Mr` (`rx`) and `Mt` (`tx`) flags and the mirror index
    /// the copies go to. With neither flag the index is stored as none (255), as tf does.
    pub fn mirror(mut self, rx: bool, tx: bool, index: u8) -> Self {
        self.flags &= !(VIF_FLAG_MIRROR_RX | VIF_FLAG_MIRROR_TX);
        if rx {
            self.flags |= VIF_FLAG_MIRROR_RX;
        }
        if tx {
            self.flags |= VIF_FLAG_MIRROR_TX;
        }
        self.mirror_id = if rx || tx { index } else { VIF_NO_MIRROR };
        self
    }

    /// The link state byte ([`VIF_LINK_UP`] or [`VIF_LINK_DOWN`]) the record starts with.
    pub fn link(mut self, link: u8) -> Self {
        self.link = link;
        self
    }

    /// A vhost-user port: its mode byte ([`VIF_VHOST_CLIENT`], [`VIF_VHOST_SERVER`]) and
    /// queue pairs.
    pub fn vhost(mut self, mode: u8, queues: u8) -> Self {
        self.vhost_mode = mode;
        self.vhost_queues = queues;
        self
    }

    pub(crate) fn is_valid(&self) -> bool {
        self.valid == 1
    }

    /// A deleted vif whose counters are kept ([`super::StatsRegion::retire_vif`]).
    pub(crate) fn is_retired(&self) -> bool {
        self.valid == 2
    }

    /// The decoded, owned form.
    pub fn decode(&self) -> VifInfoOwned {
        let nonzero = |u: [u8; 16]| (u != [0; 16]).then_some(u);
        VifInfoOwned {
            id: self.id,
            vif_type: self.vif_type,
            port_id: self.port_id,
            rx_queues: self.rx_queues,
            tx_queues: self.tx_queues,
            vrf: self.vrf,
            mtu: self.mtu,
            flags: self.flags,
            mac: self.mac,
            ip: (self.has_ip != 0).then(|| Ipv4Addr::from(self.ipv4)),
            ip6: (self.has_ip6 != 0).then(|| Ipv6Addr::from(self.ipv6)),
            nh_id: (self.nh_id != VIF_UNSET_NH).then_some(self.nh_id),
            name: get_str(&self.name),
            device: get_str(&self.device),
            vn_name: get_str(&self.vn_name),
            vm_uuid: nonzero(self.vm_uuid),
            vmi_uuid: nonzero(self.vmi_uuid),
            driver: get_str(&self.driver),
            mirror_id: (self.mirror_id != VIF_NO_MIRROR).then_some(self.mirror_id),
            link: self.link,
            vhost_mode: self.vhost_mode,
            vhost_queues: self.vhost_queues,
        }
    }
}

impl std::fmt::Debug for VifInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.decode().fmt(f)
    }
}

/// A vif record decoded into plain Rust values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VifInfoOwned {
    /// The vif id (`vif0/<id>`).
    pub id: u16,
    /// A `VIF_TYPE_*` number.
    pub vif_type: u8,
    /// DPDK port id the vif is bound to.
    pub port_id: u16,
    /// RX queues opened on the port.
    pub rx_queues: u16,
    /// TX queues opened on the port.
    pub tx_queues: u16,
    /// VRF id of the vif.
    pub vrf: u32,
    /// 0 when unknown.
    pub mtu: u32,
    /// `VIF_FLAG_*` bits.
    pub flags: u32,
    /// The vif's MAC.
    pub mac: [u8; 6],
    /// The vif's IPv4 address, when set.
    pub ip: Option<Ipv4Addr>,
    /// The vif's IPv6 address, when set.
    pub ip6: Option<Ipv6Addr>,
    /// The vif's receive nexthop id (`NH:`), when recorded.
    pub nh_id: Option<u32>,
    /// Interface name.
    pub name: String,
    /// DPDK device name (`OS:`); empty when unset.
    pub device: String,
    /// Virtual network name; empty when unset.
    pub vn_name: String,
    /// UUID of the VM the vif belongs to, when set.
    pub vm_uuid: Option<[u8; 16]>,
    /// UUID of the VM interface (tf VMI), when set.
    pub vmi_uuid: Option<[u8; 16]>,
    /// PMD driver name (e.g. `net_pcap`); empty when unset.
    pub driver: String,
    /// Mirror index of interface mirroring (`Mirror index N`), when `Mr` or `Mt` is set.
    pub mirror_id: Option<u8>,
    /// Link state byte ([`VIF_LINK_UP`], [`VIF_LINK_DOWN`], 0 when not reported).
    pub link: u8,
    /// vhost-user mode byte ([`VIF_VHOST_CLIENT`], [`VIF_VHOST_SERVER`], 0: not vhost-user).
    pub vhost_mode: u8,
    /// vhost-user queue pairs (0: not vhost-user).
    pub vhost_queues: u8,
}

impl VifInfoOwned {
    /// `Physical`, `Virtual`, `Host`, ... as `vif --list` prints it.
    pub fn type_name(&self) -> &'static str {
        vif_type_name(self.vif_type)
    }

    /// The flags set, in [`VIF_FLAGS`] order.
    pub fn flag_list(&self) -> impl Iterator<Item = &'static VifFlag> + '_ {
        VIF_FLAGS.iter().filter(move |f| self.flags & f.bit != 0)
    }

    /// Flag symbols concatenated (`L3L2DpdkProxy`); empty when none is set.
    pub fn flag_symbols(&self) -> String {
        self.flag_list().map(|f| f.symbol).collect()
    }

    /// `aa:bb:cc:dd:ee:ff`.
    pub fn mac_string(&self) -> String {
        let m = self.mac;
        format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
    }
}

/// Parses a textual UUID (`8-4-4-4-12` hex digits, or 32 hex digits) into its 16 bytes.
pub fn parse_uuid(s: &str) -> Result<[u8; 16], String> {
    let bad = || format!("invalid UUID {s:?} (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)");
    let hyphenated = s.len() == 36 && s.char_indices().all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'));
    if !hyphenated && s.len() != 32 {
        return Err(bad());
    }
    let mut out = [0u8; 16];
    let mut digits = s.bytes().filter(|&b| b != b'-');
    for byte in &mut out {
        let mut v = 0u8;
        for _ in 0..2 {
            let d = digits.next().and_then(|c| (c as char).to_digit(16)).ok_or_else(bad)?;
            v = v << 4 | d as u8;
        }
        *byte = v;
    }
    if digits.next().is_some() {
        return Err(bad());
    }
    Ok(out)
}

/// Formats 16 bytes as a lowercase hyphenated UUID.
pub fn format_uuid(u: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}
