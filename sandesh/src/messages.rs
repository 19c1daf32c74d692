//! The Sandesh structs and messages this project sends and receives, each declared once.
//!
//! * [`SandeshHeader`]: fields 1–13 always, 14–15 optional (sandesh-reference §1.4).
//! * Control handshake: [`SandeshCtrlClientToServer`], [`SandeshCtrlServerToClient`] with
//!   [`UVETypeInfo`] (§2.1).
//! * Flow export: [`FlowLogDataObject`], a list of [`FlowLogData`] with the 28 fields of the last
//!   public definition (§3.2) plus the mirror fields 38–43 (§3.3).
//! * UVEs: [`UVEVMIStats`] carrying [`VMIStats`] whose [`VmInterfaceStats`] include `mir_pkts` /
//!   `mir_bytes` (`raw_if_stats` cumulative, `if_stats` per export interval, as in the mirror
//!   blueprint's `if_stats`), and [`VrouterStats`] carrying [`VrouterStatsAgent`] with
//!   `mir_tpkts` / `mir_bytes` and, per analyzer, [`MirrorAnalyzerStats`] (copies sent, lost
//!   by reason, sampled out: what the collector's mirror reconciliation needs).
//! * Packet tracing: [`PacketTraceData`], an object log of [`PacketTraceStep`]s (this
//!   project's own message; no public definition exists).
//!
//! Identifiers above the public definitions (FlowLogData 38–47, VmInterfaceStats 5–6,
//! VrouterStatsAgent 200–202, and the structs `MirrorAnalyzerStats`/`MirrorLossStats`) are
//! this project's extension; the rest follow the public IDL.
//! Fields that the public IDL marks required but that the reference Python encoder leaves out
//! when unset (VMIStats 3–5) are optional here, so that partial UVE updates stay partial.
//!
//! Encoding and decoding go through the generic walkers in [`crate::encode`] and
//! [`crate::decode`]; [`encode_message`] and [`decode_message`] are the typed entry points.

use crate::decode::{decode_body_with, DecodeError, DecodeErrorKind};
use crate::encode::EncodeError;
use crate::field::{SandeshStruct, ValueError};
use crate::frame::encode_frame_into;
use crate::model::{fingerprint, hints, level, FieldDef, FieldType, MessageDef, MessageKind, StructDef, Value};
use std::net::IpAddr;

crate::sandesh_struct! {
    /// The header in front of every message (`sandesh.sandesh`).
    pub struct SandeshHeader = "SandeshHeader" {
        /// Scope, normally empty.
        1: required namespace as "Namespace": String,
        /// UTC microseconds since the epoch.
        2: required timestamp as "Timestamp": i64,
        /// Generator module, e.g. `contrail-vrouter-agent`.
        3: required module as "Module": String,
        /// Generator host name.
        4: required source as "Source": String,
        /// `ctrl` for the control handshake, otherwise empty.
        5: required context as "Context": String,
        /// Per-message-type sequence number.
        6: required sequence_num as "SequenceNum": i32,
        /// Fingerprint of the message definition.
        7: required version_sig as "VersionSig": i32,
        /// [`MessageKind`] code.
        8: required kind as "Type": i32,
        /// [`hints`] bits.
        9: required hints as "Hints": i32,
        /// [`level`] value.
        10: required level as "Level": i32,
        /// Category; empty for agent flow logs.
        11: required category as "Category": String,
        /// Node type, e.g. `Compute`.
        12: required node_type as "NodeType": String,
        /// Instance id, normally `0`.
        13: required instance_id as "InstanceId": String,
        /// Not set by the reference senders.
        14: optional ip_address as "IPAddress": String,
        /// Not set by the reference senders.
        15: optional pid as "Pid": i32,
    }
}

crate::sandesh_struct! {
    /// The first message of every connection, generator to collector.
    pub struct SandeshCtrlClientToServer = "SandeshCtrlClientToServer" {
        /// Generator host name.
        1: required source: String,
        /// Module name.
        2: required module_name: String,
        /// Successful connections so far, this one included (the IDL's spelling).
        3: required sucessful_connections: u32,
        /// UVE types this generator sends.
        4: required uve_types: Vec<String>,
        /// Process id.
        5: required pid: u32,
        /// Introspect HTTP port.
        6: required http_port: u32,
        /// Node type; the collector rejects an empty one.
        7: required node_type_name: String,
        /// Instance id; the collector rejects an empty one.
        8: required instance_id_name: String,
    }
}

crate::sandesh_struct! {
    /// One UVE type the collector knows for this generator.
    pub struct UVETypeInfo = "UVETypeInfo" {
        /// UVE type name.
        1: required type_name: String,
        /// Last sequence number the collector saw.
        2: required seq_num: u32,
    }
}

crate::sandesh_struct! {
    /// The collector's reply to [`SandeshCtrlClientToServer`].
    pub struct SandeshCtrlServerToClient = "SandeshCtrlServerToClient" {
        /// Known UVE types.
        1: required type_info: Vec<UVETypeInfo>,
        /// False: the generator must close the connection.
        2: required success: bool,
    }
}

crate::sandesh_struct! {
    /// One flow record (one direction of one flow) as exported by the agent.
    pub struct FlowLogData = "FlowLogData" {
        /// Flow UUID.
        1: required flowuuid: String,
        /// 1 ingress, 0 egress.
        2: required direction_ing: i8,
        /// Source virtual network.
        3: required sourcevn: String,
        /// Source address.
        4: required sourceip: IpAddr,
        /// Destination virtual network.
        5: required destvn: String,
        /// Destination address.
        6: required destip: IpAddr,
        /// IP protocol (signed byte on the wire).
        7: required protocol: i8,
        /// Source port (signed 16-bit on the wire: port 33793 is -31743).
        8: required sport: i16,
        /// Destination port (signed 16-bit on the wire).
        9: required dport: i16,
        /// TCP flags seen.
        11: optional tcp_flags: u16,
        /// VM UUID.
        12: optional vm: String,
        /// UUID of the reverse flow.
        16: optional reverse_uuid: String,
        /// Setup time, µs since the epoch.
        17: optional setup_time: i64,
        /// Teardown time, µs since the epoch.
        18: optional teardown_time: i64,
        /// Cumulative bytes.
        23: optional bytes: i64,
        /// Cumulative packets.
        24: optional packets: i64,
        /// Bytes since the previous export of this flow.
        26: optional diff_bytes: i64,
        /// Packets since the previous export of this flow.
        27: optional diff_packets: i64,
        /// `|`-joined action names, e.g. `pass|mirror`.
        28: optional action: String,
        /// Security-group rule UUID.
        29: optional sg_rule_uuid: String,
        /// Network ACE UUID.
        30: optional nw_ace_uuid: String,
        /// This vRouter's address.
        31: optional vrouter_ip: String,
        /// The peer vRouter's address.
        32: optional other_vrouter_ip: String,
        /// Underlay protocol.
        33: optional underlay_proto: u16,
        /// Underlay source port (0 for GRE and local flows).
        34: optional underlay_source_port: u16,
        /// VMI UUID.
        35: optional vmi_uuid: String,
        /// Drop reason name.
        36: optional drop_reason: String,
        /// Forward (true) or reverse flow.
        37: optional forward_flow: bool,
        /// Name of the first analyzer this flow is mirrored to.
        38: optional analyzer_name: String,
        /// Cumulative bytes mirrored to the first analyzer.
        39: optional mirror_bytes: i64,
        /// Cumulative packets mirrored to the first analyzer.
        40: optional mirror_packets: i64,
        /// Name of the second analyzer.
        41: optional sec_analyzer_name: String,
        /// Cumulative bytes mirrored to the second analyzer.
        42: optional sec_mirror_bytes: i64,
        /// Cumulative packets mirrored to the second analyzer.
        43: optional sec_mirror_packets: i64,
        /// Cumulative copies due to the first analyzer and not sent (mirror reconciliation).
        44: optional mirror_lost_packets: i64,
        /// Cumulative copies due to the second analyzer and not sent.
        45: optional sec_mirror_lost_packets: i64,
        /// Packets the flow counted before its mirroring was turned on (set up before the
        /// rule that mirrors it).
        46: optional before_mirror_packets: i64,
        /// Cumulative packets dropped while the flow waited in HOLD (never copied).
        47: optional held_dropped_packets: i64,
    }
}

impl FlowLogData {
    /// A record with the required 7-tuple fields and nothing optional set.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        flowuuid: String,
        direction_ing: i8,
        sourcevn: String,
        sourceip: IpAddr,
        destvn: String,
        destip: IpAddr,
        protocol: u8,
        sport: u16,
        dport: u16,
    ) -> Self {
        Self {
            flowuuid,
            direction_ing,
            sourcevn,
            sourceip,
            destvn,
            destip,
            // The wire types are signed: the bit patterns carry over.
            protocol: protocol as i8,
            sport: sport as i16,
            dport: dport as i16,
            tcp_flags: None,
            vm: None,
            reverse_uuid: None,
            setup_time: None,
            teardown_time: None,
            bytes: None,
            packets: None,
            diff_bytes: None,
            diff_packets: None,
            action: None,
            sg_rule_uuid: None,
            nw_ace_uuid: None,
            vrouter_ip: None,
            other_vrouter_ip: None,
            underlay_proto: None,
            underlay_source_port: None,
            vmi_uuid: None,
            drop_reason: None,
            forward_flow: None,
            analyzer_name: None,
            mirror_bytes: None,
            mirror_packets: None,
            sec_analyzer_name: None,
            sec_mirror_bytes: None,
            sec_mirror_packets: None,
            mirror_lost_packets: None,
            sec_mirror_lost_packets: None,
            before_mirror_packets: None,
            held_dropped_packets: None,
        }
    }
}

crate::sandesh_struct! {
    /// A batch of flow records (the reference agent sends at most 16 per message).
    pub struct FlowLogDataObject = "FlowLogDataObject" {
        /// The records.
        1: required flowdata: Vec<FlowLogData>,
    }
}

crate::sandesh_struct! {
    /// Interface packet and byte counters, with the mirror counters of the mirror blueprint.
    pub struct VmInterfaceStats = "VmInterfaceStats" {
        /// Packets received from the VM.
        1: required in_pkts: u64,
        /// Bytes received from the VM.
        2: required in_bytes: u64,
        /// Packets sent to the VM.
        3: required out_pkts: u64,
        /// Bytes sent to the VM.
        4: required out_bytes: u64,
        /// Packets mirrored by interface mirroring.
        5: optional mir_pkts: u64,
        /// Bytes mirrored by interface mirroring (including encapsulation).
        6: optional mir_bytes: u64,
    }
}

crate::sandesh_struct! {
    /// Per-VMI statistics UVE data (table `ObjectVMITable`).
    pub struct VMIStats = "VMIStats" {
        /// VMI FQ name; the UVE key.
        1: required name: String [key = "ObjectVMITable"],
        /// Set to true to delete the UVE.
        2: optional deleted: bool,
        /// VM name.
        3: optional vm_name: String,
        /// VM UUID.
        4: optional vm_uuid: String,
        /// Virtual network FQ name.
        5: optional virtual_network: String,
        /// Cumulative counters.
        9: optional raw_if_stats: VmInterfaceStats [metric = "agg"],
        /// Counters over the last UVE interval (the blueprint's `if_stats`).
        30: optional if_stats: VmInterfaceStats,
    }
}

crate::sandesh_struct! {
    /// The VMI statistics UVE message.
    pub struct UVEVMIStats = "UVEVMIStats" {
        /// The UVE data.
        1: required data: VMIStats,
    }
}

crate::sandesh_struct! {
    /// Mirror copies of one analyzer lost for one reason (see [`MirrorAnalyzerStats`]).
    pub struct MirrorLossStats = "MirrorLossStats" {
        /// The drop reason's key (`mirror_no_nh`, `mirror_encap_fail`, ...).
        1: required reason: String,
        /// Copies of flow mirroring lost.
        2: required flow_pkts: u64,
        /// Copies of interface mirroring lost.
        3: required iface_pkts: u64,
    }
}

crate::sandesh_struct! {
    /// One analyzer as the vRouter counts it (this project's extension, for mirror
    /// reconciliation at the collector): the entry's copies sent and lost by reason, and the
    /// packets of its flows whose records export sampling left out.
    pub struct MirrorAnalyzerStats = "MirrorAnalyzerStats" {
        /// Analyzer name.
        1: required name: String,
        /// Analyzer address.
        2: optional analyzer_ip: String,
        /// Mirror index.
        3: optional index: u16,
        /// Copies of flow mirroring sent.
        4: optional flow_pkts: u64,
        /// Bytes of those.
        5: optional flow_bytes: u64,
        /// Copies of interface mirroring sent.
        6: optional iface_pkts: u64,
        /// Bytes of those.
        7: optional iface_bytes: u64,
        /// Copies lost, one element per reason.
        8: optional lost: Vec<MirrorLossStats>,
        /// Packets of flows mirrored to it that no exported record carries yet: their
        /// records were left out by export sampling (and no later record caught up).
        9: optional sampled_out_pkts: u64,
        /// Bytes of those.
        10: optional sampled_out_bytes: u64,
        /// Copies sent of those packets.
        11: optional sampled_out_mir_pkts: u64,
    }
}

crate::sandesh_struct! {
    /// vRouter statistics UVE data (table `ObjectVRouter`).
    pub struct VrouterStatsAgent = "VrouterStatsAgent" {
        /// vRouter name; the UVE key.
        1: required name: String [key = "ObjectVRouter"],
        /// Set to true to delete the UVE.
        2: optional deleted: bool,
        /// Packets received on all interfaces.
        3: optional in_tpkts: u64,
        /// Bytes received on all interfaces.
        4: optional in_bytes: u64,
        /// Packets sent on all interfaces.
        5: optional out_tpkts: u64,
        /// Bytes sent on all interfaces.
        6: optional out_bytes: u64,
        /// Packets mirrored to analyzers.
        200: optional mir_tpkts: u64,
        /// Bytes mirrored to analyzers.
        201: optional mir_bytes: u64,
        /// Per analyzer: copies sent and lost by reason, and what sampling left out.
        202: optional mirror_analyzers: Vec<MirrorAnalyzerStats>,
    }
}

crate::sandesh_struct! {
    /// The vRouter statistics UVE message.
    pub struct VrouterStats = "VrouterStats" {
        /// The UVE data.
        1: required data: VrouterStatsAgent,
    }
}

crate::sandesh_struct! {
    /// One step of a traced packet on one vRouter (see [`PacketTraceData`]).
    pub struct PacketTraceStep = "PacketTraceStep" {
        /// Packet number within the trace (1 = the packet that started it).
        1: required pkt: u32,
        /// Wall-clock time, µs since the epoch, from the trace region's TSC calibration.
        2: required time_us: i64,
        /// The raw TSC stamp: orders the steps of one vRouter exactly (µs ties are common).
        3: required tsc: u64,
        /// The ring the record came from (one per forwarding lcore; the last is the agent's).
        4: required ring: u16,
        /// The record's position in its ring (with `ring`, unique within a region generation).
        5: required seq: u64,
        /// Step kind name (`ingress`, `parse`, `flow_lookup`, `policy`, `egress`, `drop`, ...).
        6: required step: String,
        /// The step rendered as text, exactly as `trace get` shows it.
        7: required detail: String,
        /// Ingress or egress vif.
        8: optional vif: u16,
        /// Drop reason key (the drop-reason table's key) of a `drop` step or a failed mirror.
        9: optional drop_reason: String,
        /// Flow index of a lookup, hold, release or policy step.
        10: optional flow: u32,
        /// Action of a lookup, policy or flow-action step (`forward`, `drop`, `hold`, `nat`).
        11: optional action: String,
        /// UUID of the policy rule that decided.
        12: optional rule: String,
        /// Parse step: IP protocol.
        13: optional protocol: u16,
        /// Parse step: source port.
        14: optional sport: u16,
        /// Parse step: destination port.
        15: optional dport: u16,
        /// Parse or route step: VRF.
        16: optional vrf: u32,
        /// Addresses step: source address.
        17: optional src_ip: IpAddr,
        /// Addresses step: destination address.
        18: optional dst_ip: IpAddr,
    }
}

impl PacketTraceStep {
    /// A step with its required fields and none of the optional typed query fields (the
    /// exporter fills those that the step kind has).
    pub fn new(
        pkt: u32,
        time_us: i64,
        tsc: u64,
        ring: u16,
        seq: u64,
        step: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        PacketTraceStep {
            pkt,
            time_us,
            tsc,
            ring,
            seq,
            step: step.into(),
            detail: detail.into(),
            vif: None,
            drop_reason: None,
            flow: None,
            action: None,
            rule: None,
            protocol: None,
            sport: None,
            dport: None,
            vrf: None,
            src_ip: None,
            dst_ip: None,
        }
    }
}

crate::sandesh_struct! {
    /// Trace steps of one trace id recorded by one vRouter (an object log, header Type
    /// OBJECT): the vRouter is the header's `Source`.
    ///
    /// Shape: one message per (trace id, batch) rather than one per step, so the per-trace
    /// fields (request, project) travel once and a trace's steps arrive together; each step
    /// carries its kind name and rendered text (what an operator reads, rendered once by the
    /// exporter so the collector needs no knowledge of the binary step layout), the exact
    /// ordering keys (`tsc`, `ring`, `seq`; `seq` also makes a re-sent step idempotent at the
    /// collector), and as optional typed fields only what queries and the trace list need
    /// (vif, drop reason, flow index, action, rule, and the parse/addresses 5-tuple).
    /// Optional fields are written only when set, so a typical step is a few hundred bytes.
    /// `file`/`line` are the fields the reference compiler appends to every object log.
    pub struct PacketTraceData = "PacketTraceData" {
        /// The trace id (32 bits: what the cross-host trace mark carries).
        1: required trace_id: u64,
        /// UUID of the trace request that started the trace, when this vRouter knows it (the
        /// vRouter that continued a marked trace does not).
        2: optional request: String,
        /// Project (tenant) of that request; absent for the operator's own requests.
        3: optional project: String,
        /// Generation of the trace region the steps were read from (a vRouter restart
        /// starts a new one, with positions from 0 again).
        4: required generation: u64,
        /// Index of the agent's ring in that region (steps from it are the agent's).
        5: required agent_ring: u16,
        /// The steps, in ring order.
        6: required steps: Vec<PacketTraceStep>,
        /// Source file of the sender (object-log convention).
        -32768: required file: String,
        /// Source line of the sender (object-log convention).
        -32767: required line: i32,
    }
}

/// A top-level message type.
pub trait SandeshMessage: SandeshStruct {
    /// Its message definition.
    const MESSAGE: &'static MessageDef;
}

macro_rules! message {
    ($t:ty, $static:ident, $kind:expr, $sig:expr) => {
        /// Message definition.
        pub static $static: MessageDef = MessageDef { body: &<$t>::STRUCT, kind: $kind, version_sig: $sig };
        impl SandeshMessage for $t {
            const MESSAGE: &'static MessageDef = &$static;
        }
    };
}

message!(
    SandeshCtrlClientToServer,
    CTRL_CLIENT_TO_SERVER,
    MessageKind::Request,
    // The reference compiler's fingerprint of the identical definition (§2.1 frame).
    -340_245_130
);
message!(
    SandeshCtrlServerToClient,
    CTRL_SERVER_TO_CLIENT,
    MessageKind::Request,
    fingerprint(&SandeshCtrlServerToClient::STRUCT)
);
message!(FlowLogDataObject, FLOW_LOG_DATA_OBJECT, MessageKind::Flow, fingerprint(&FlowLogDataObject::STRUCT));
message!(UVEVMIStats, UVE_VMI_STATS, MessageKind::Uve, fingerprint(&UVEVMIStats::STRUCT));
message!(VrouterStats, VROUTER_STATS, MessageKind::Uve, fingerprint(&VrouterStats::STRUCT));
message!(PacketTraceData, PACKET_TRACE_DATA, MessageKind::Object, fingerprint(&PacketTraceData::STRUCT));

/// Every message definition this crate knows, for [`decode_body_with`] (each has a
/// [`Message`] variant; `every_known_message_has_a_variant` checks it).
pub static MESSAGES: [&MessageDef; 6] = [
    &CTRL_CLIENT_TO_SERVER,
    &CTRL_SERVER_TO_CLIENT,
    &FLOW_LOG_DATA_OBJECT,
    &UVE_VMI_STATS,
    &VROUTER_STATS,
    &PACKET_TRACE_DATA,
];

/// A decoded message of one of the known types.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Control handshake, generator side.
    CtrlClientToServer(SandeshCtrlClientToServer),
    /// Control handshake, collector side.
    CtrlServerToClient(SandeshCtrlServerToClient),
    /// Flow records.
    FlowLogDataObject(FlowLogDataObject),
    /// VMI statistics UVE.
    UveVmiStats(UVEVMIStats),
    /// vRouter statistics UVE.
    VrouterStats(VrouterStats),
    /// Packet trace steps.
    PacketTraceData(PacketTraceData),
}

impl Message {
    /// The message element name.
    pub fn name(&self) -> &'static str {
        self.def().body.name
    }

    /// The message definition.
    pub fn def(&self) -> &'static MessageDef {
        match self {
            Self::CtrlClientToServer(_) => &CTRL_CLIENT_TO_SERVER,
            Self::CtrlServerToClient(_) => &CTRL_SERVER_TO_CLIENT,
            Self::FlowLogDataObject(_) => &FLOW_LOG_DATA_OBJECT,
            Self::UveVmiStats(_) => &UVE_VMI_STATS,
            Self::VrouterStats(_) => &VROUTER_STATS,
            Self::PacketTraceData(_) => &PACKET_TRACE_DATA,
        }
    }
}

/// A decoded frame body.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The header.
    pub header: SandeshHeader,
    /// The message.
    pub message: Message,
}

/// Strictly decodes a frame body (the bytes between `<sandesh length="…">` and `</sandesh>`)
/// into a header and one of the known messages.
pub fn decode_message(body: &[u8]) -> Result<Decoded, DecodeError> {
    let dm = decode_body_with(body, &SandeshHeader::STRUCT, &MESSAGES)?;
    let conv = |e: ValueError| DecodeError { offset: 0, kind: DecodeErrorKind::Value(e) };
    let header = SandeshHeader::from_struct_value(dm.header).map_err(conv)?;
    let b = dm.body;
    let message = match dm.def.body.name {
        "SandeshCtrlClientToServer" => {
            Message::CtrlClientToServer(SandeshCtrlClientToServer::from_struct_value(b).map_err(conv)?)
        }
        "SandeshCtrlServerToClient" => {
            Message::CtrlServerToClient(SandeshCtrlServerToClient::from_struct_value(b).map_err(conv)?)
        }
        "FlowLogDataObject" => Message::FlowLogDataObject(FlowLogDataObject::from_struct_value(b).map_err(conv)?),
        "UVEVMIStats" => Message::UveVmiStats(UVEVMIStats::from_struct_value(b).map_err(conv)?),
        "VrouterStats" => Message::VrouterStats(VrouterStats::from_struct_value(b).map_err(conv)?),
        "PacketTraceData" => Message::PacketTraceData(PacketTraceData::from_struct_value(b).map_err(conv)?),
        other => return Err(DecodeError { offset: 0, kind: DecodeErrorKind::UnknownMessage(other.to_owned()) }),
    };
    Ok(Decoded { header, message })
}

/// Encodes `header` and `msg` as a frame body into `scratch` (cleared first), then appends the
/// framed bytes to `out`. Returns the frame length.
pub fn encode_message<M: SandeshMessage>(
    out: &mut Vec<u8>,
    scratch: &mut String,
    header: &SandeshHeader,
    msg: &M,
) -> Result<usize, EncodeError> {
    scratch.clear();
    encode_body_typed(scratch, header, msg)?;
    Ok(encode_frame_into(out, scratch.as_bytes())?)
}

/// Appends a frame body for `header` and `msg` straight from the typed values (what
/// [`encode_body`](crate::encode::encode_body) writes for their dynamic forms, without
/// building them).
pub fn encode_body_typed<M: SandeshMessage>(
    out: &mut String,
    header: &SandeshHeader,
    msg: &M,
) -> Result<(), EncodeError> {
    let h = SandeshHeader::STRUCT.name;
    out.push('<');
    out.push_str(h);
    out.push('>');
    header.encode_fields_into(out)?;
    out.push_str("</");
    out.push_str(h);
    out.push('>');
    let name = M::MESSAGE.body.name;
    out.push('<');
    out.push_str(name);
    out.push_str(" type=\"sandesh\">");
    msg.encode_fields_into(out)?;
    out.push_str("</");
    out.push_str(name);
    out.push('>');
    Ok(())
}

/// Encodes one message as a complete frame in a new buffer.
pub fn encode_message_frame<M: SandeshMessage>(header: &SandeshHeader, msg: &M) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_message(&mut out, &mut String::new(), header, msg)?;
    Ok(out)
}

/// Who a generator is: the fields that identify it in every header and in the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratorId {
    /// Host name (`Source`).
    pub source: String,
    /// Module (`Module`), e.g. `contrail-vrouter-agent`.
    pub module: String,
    /// Node type (`NodeType`), e.g. `Compute`.
    pub node_type: String,
    /// Instance id (`InstanceId`), normally `0`.
    pub instance_id: String,
}

impl GeneratorId {
    /// A header for message type `M`; see [`GeneratorId::header_for`].
    pub fn header<M: SandeshMessage>(
        &self,
        timestamp_us: i64,
        sequence_num: i32,
        level: i32,
        extra_hints: i32,
    ) -> SandeshHeader {
        self.header_for(M::MESSAGE, timestamp_us, sequence_num, level, extra_hints)
    }

    /// A header for a message of definition `def`: Context `ctrl` and the CONTROL hint for the
    /// handshake messages, the KEY hint for UVEs (plus `extra_hints`), Category empty,
    /// VersionSig and Type from the definition.
    pub fn header_for(
        &self,
        def: &'static MessageDef,
        timestamp_us: i64,
        sequence_num: i32,
        level: i32,
        extra_hints: i32,
    ) -> SandeshHeader {
        let ctrl = matches!(def.body.name, "SandeshCtrlClientToServer" | "SandeshCtrlServerToClient");
        let mut h = extra_hints;
        if ctrl {
            h |= hints::CONTROL;
        }
        if def.kind == MessageKind::Uve {
            h |= hints::KEY;
        }
        SandeshHeader {
            namespace: String::new(),
            timestamp: timestamp_us,
            module: self.module.clone(),
            source: self.source.clone(),
            context: if ctrl { "ctrl".into() } else { String::new() },
            sequence_num,
            version_sig: def.version_sig,
            kind: def.kind.code(),
            hints: h,
            level,
            category: String::new(),
            node_type: self.node_type.clone(),
            instance_id: self.instance_id.clone(),
            ip_address: None,
            pid: None,
        }
    }
}

/// The level of control messages.
pub const CTRL_LEVEL: i32 = level::INVALID;

/// Every struct definition reachable from the known messages and the header (for validation
/// tests and documentation).
pub fn all_struct_defs() -> Vec<&'static StructDef> {
    fn walk(def: &'static StructDef, out: &mut Vec<&'static StructDef>) {
        if out.iter().any(|d| d.name == def.name) {
            return;
        }
        out.push(def);
        for f in def.fields {
            walk_type(&f.ty, out);
        }
    }
    fn walk_type(ty: &'static FieldType, out: &mut Vec<&'static StructDef>) {
        match ty {
            FieldType::Struct(d) => walk(d, out),
            FieldType::List(e) | FieldType::Set(e) => walk_type(e, out),
            FieldType::Map(k, v) => {
                walk_type(k, out);
                walk_type(v, out);
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&SandeshHeader::STRUCT, &mut out);
    for m in MESSAGES {
        walk(m.body, &mut out);
    }
    out
}

/// The UVE key of a UVE message body: the value of the data struct's field annotated `key=`,
/// as (table, name).
pub fn uve_key(body: &crate::model::StructValue) -> Option<(&'static str, &str)> {
    let Some(Value::Struct(data)) = body.fields.first().and_then(Option::as_ref) else {
        return None;
    };
    data.def.fields.iter().zip(&data.fields).find_map(|(f, v): (&FieldDef, _)| match (f.annotation("key"), v) {
        (Some(table), Some(Value::String(name))) => Some((table, name.as_str())),
        _ => None,
    })
}
