//! What the collector ingests, independent of the wire format: the generator identity, flow
//! records (one decoded `FlowLogData`), UVE updates (one decoded UVE data struct), and trace
//! steps (one decoded `PacketTraceData`, kept in its wire form: its steps are stored field by
//! field).
//!
//! The Sandesh session ([`crate::session`]) turns decoded messages into these values and hands
//! them to the storage writer ([`crate::ingest`]); tests and benchmarks can feed the store the
//! same way without a socket.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identity of a generator: the four fields the reference collector keys generators by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GeneratorKey {
    /// Header `Source`: the host name of the generator.
    pub source: String,
    /// Header `NodeType` / ctrl `node_type_name`, e.g. `Compute`.
    pub node_type: String,
    /// Header `Module` / ctrl `module_name`, e.g. `contrail-vrouter-agent`.
    pub module: String,
    /// Header `InstanceId` / ctrl `instance_id_name`, e.g. `0`.
    pub instance_id: String,
}

impl fmt::Display for GeneratorKey {
    /// `source:node_type:module:instance_id`, the form the analytics API shows as a UVE origin.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}:{}", self.source, self.node_type, self.module, self.instance_id)
    }
}

/// One flow sample (a `FlowLogData` with the mirror extension), plus what the header adds.
///
/// Integer fields keep the wire's signedness where the wire is signed (`sport`, `dport` are
/// i16 on the wire); [`FlowRecordInput::sport_u16`] and friends give the port numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowRecordInput {
    /// Header `Source`: becomes the `vrouter` column.
    pub vrouter: String,
    /// Header `Timestamp` (µs): time of the sample, `T` of the series row.
    pub timestamp_us: i64,
    /// `flowuuid` (1): becomes `UuidKey`.
    pub flowuuid: String,
    /// `direction_ing` (2): 1 ingress, 0 egress.
    pub direction_ing: i8,
    /// `sourcevn` (3).
    pub sourcevn: String,
    /// `sourceip` (4), textual.
    pub sourceip: String,
    /// `destvn` (5).
    pub destvn: String,
    /// `destip` (6), textual.
    pub destip: String,
    /// `protocol` (7), a `byte` on the wire (signed).
    pub protocol: i8,
    /// `sport` (8), an `i16` on the wire.
    pub sport: i16,
    /// `dport` (9), an `i16` on the wire.
    pub dport: i16,
    /// `tcp_flags` (11).
    pub tcp_flags: Option<u16>,
    /// `vm` (12).
    pub vm: Option<String>,
    /// `reverse_uuid` (16).
    pub reverse_uuid: Option<String>,
    /// `setup_time` (17), µs.
    pub setup_time: Option<i64>,
    /// `teardown_time` (18), µs.
    pub teardown_time: Option<i64>,
    /// `bytes` (23): cumulative bytes of the flow.
    pub bytes: Option<i64>,
    /// `packets` (24): cumulative packets.
    pub packets: Option<i64>,
    /// `diff_bytes` (26): bytes since the previous sample.
    pub diff_bytes: Option<i64>,
    /// `diff_packets` (27): packets since the previous sample.
    pub diff_packets: Option<i64>,
    /// `action` (28), e.g. `pass|mirror`.
    pub action: Option<String>,
    /// `sg_rule_uuid` (29).
    pub sg_rule_uuid: Option<String>,
    /// `nw_ace_uuid` (30).
    pub nw_ace_uuid: Option<String>,
    /// `vrouter_ip` (31).
    pub vrouter_ip: Option<String>,
    /// `other_vrouter_ip` (32).
    pub other_vrouter_ip: Option<String>,
    /// `underlay_proto` (33).
    pub underlay_proto: Option<u16>,
    /// `underlay_source_port` (34).
    pub underlay_source_port: Option<u16>,
    /// `vmi_uuid` (35): becomes `vmi`.
    pub vmi_uuid: Option<String>,
    /// `drop_reason` (36).
    pub drop_reason: Option<String>,
    /// `forward_flow` (37).
    pub forward_flow: Option<bool>,
    /// `analyzer_name` (38): the primary mirror analyzer.
    pub analyzer_name: Option<String>,
    /// `mirror_bytes` (39): cumulative bytes mirrored to the primary analyzer.
    pub mirror_bytes: Option<i64>,
    /// `mirror_packets` (40): cumulative packets mirrored to the primary analyzer.
    pub mirror_packets: Option<i64>,
    /// `sec_analyzer_name` (41): the secondary mirror analyzer.
    pub sec_analyzer_name: Option<String>,
    /// `sec_mirror_bytes` (42): cumulative bytes mirrored to the secondary analyzer.
    pub sec_mirror_bytes: Option<i64>,
    /// `sec_mirror_packets` (43): cumulative packets mirrored to the secondary analyzer.
    pub sec_mirror_packets: Option<i64>,
    /// `mirror_lost_packets` (44): cumulative copies due to the primary analyzer, not sent.
    pub mirror_lost_packets: Option<i64>,
    /// `sec_mirror_lost_packets` (45): likewise for the secondary analyzer.
    pub sec_mirror_lost_packets: Option<i64>,
    /// `before_mirror_packets` (46): packets counted before the flow's mirroring started.
    pub before_mirror_packets: Option<i64>,
    /// `held_dropped_packets` (47): cumulative packets dropped while the flow was held.
    pub held_dropped_packets: Option<i64>,
}

impl FlowRecordInput {
    /// The source port number (the wire's i16 reinterpreted as u16: -31743 is 33793).
    pub fn sport_u16(&self) -> u16 {
        self.sport as u16
    }
    /// The destination port number.
    pub fn dport_u16(&self) -> u16 {
        self.dport as u16
    }
    /// The IP protocol number (the wire's signed byte reinterpreted as u8).
    pub fn protocol_u8(&self) -> u8 {
        self.protocol as u8
    }
}

/// A field of a UVE struct as it came off the wire: the Sandesh type name, the field id, the
/// IDL annotations (`key`, `metric`, `aggtype`, ...) in wire order, and the value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UveField {
    /// Element name.
    pub name: String,
    /// `type=` attribute (`u64`, `string`, `struct`, `list`, ...).
    #[serde(rename = "t")]
    pub sandesh_type: String,
    /// `identifier=` attribute.
    #[serde(rename = "i")]
    pub identifier: i32,
    /// Further attributes, in wire order.
    #[serde(rename = "a", default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<(String, String)>,
    /// The value.
    #[serde(rename = "v")]
    pub value: UveValue,
}

impl UveField {
    /// The value of annotation `name`, if present.
    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.annotations.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// The value of a UVE field or container element.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum UveValue {
    /// A base-type value: the type name and the unescaped text.
    Scalar {
        /// Sandesh type name (`u64`, `string`, `bool`, ...).
        ty: String,
        /// The text between the tags, unescaped.
        text: String,
    },
    /// A struct: its type name and fields.
    Struct {
        /// Struct type name, e.g. `VmInterfaceStats`.
        name: String,
        /// Its fields in wire order.
        fields: Vec<UveField>,
    },
    /// A `list` or `set`.
    List {
        /// `list` or `set`.
        kind: String,
        /// Element type name.
        elem_ty: String,
        /// The elements.
        items: Vec<UveValue>,
    },
    /// A `map`.
    Map {
        /// Key type name.
        key_ty: String,
        /// Value type name.
        value_ty: String,
        /// Key/value pairs in wire order.
        entries: Vec<(UveValue, UveValue)>,
    },
}

impl UveValue {
    /// A scalar value.
    pub fn scalar(ty: &str, text: impl Into<String>) -> Self {
        UveValue::Scalar { ty: ty.to_owned(), text: text.into() }
    }
}

/// One UVE message: the data struct of a `uve sandesh` after the key fields were taken out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UveUpdate {
    /// The table from the first `key=` annotation, e.g. `ObjectVMITable`.
    pub table: String,
    /// The object name: the key fields' values joined with `:`.
    pub name: String,
    /// The data struct's type name, e.g. `VMIStats`.
    pub struct_type: String,
    /// `deleted=true`: remove this struct of this generator.
    pub deleted: bool,
    /// Header `Timestamp` (µs).
    pub timestamp_us: i64,
    /// Every other field that was present (partial updates carry only some).
    pub attrs: Vec<UveField>,
}

/// The UVE types of the REST API: URL type name → table.
pub const UVE_TYPES: &[(&str, &str)] = &[
    ("virtual-machine-interface", "ObjectVMITable"),
    ("vrouter", "ObjectVRouter"),
    ("virtual-network", "ObjectVNTable"),
    ("virtual-machine", "ObjectVMTable"),
];

/// The table of a REST UVE type (`vrouter` → `ObjectVRouter`).
pub fn uve_table_of(url_type: &str) -> Option<&'static str> {
    UVE_TYPES.iter().find(|(t, _)| *t == url_type).map(|(_, table)| *table)
}

/// Builds a [`UveUpdate`] from a decoded data struct: takes the fields carrying a `key=`
/// annotation as the key (table = the first key annotation, name = their values joined by
/// `:`), `deleted` as the delete flag, and everything else as attributes.
pub fn uve_update_from_struct(
    struct_type: &str,
    fields: Vec<UveField>,
    timestamp_us: i64,
) -> Result<UveUpdate, UveShapeError> {
    let mut table = None;
    let mut names = Vec::new();
    let mut deleted = false;
    let mut attrs = Vec::new();
    for f in fields {
        if let Some(t) = f.annotation("key") {
            if table.is_none() {
                table = Some(t.to_owned());
            }
            match &f.value {
                UveValue::Scalar { text, .. } => names.push(text.clone()),
                _ => return Err(UveShapeError::KeyNotScalar { field: f.name }),
            }
        } else if f.name == "deleted" {
            deleted = matches!(&f.value, UveValue::Scalar { text, .. } if text == "true");
        } else {
            attrs.push(f);
        }
    }
    let table = table.ok_or_else(|| UveShapeError::NoKey { struct_type: struct_type.to_owned() })?;
    let name = names.join(":");
    if name.is_empty() {
        return Err(UveShapeError::EmptyName { struct_type: struct_type.to_owned() });
    }
    Ok(UveUpdate { table, name, struct_type: struct_type.to_owned(), deleted, timestamp_us, attrs })
}

/// Why a decoded UVE struct cannot be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UveShapeError {
    /// No field carries a `key=` annotation.
    #[error("UVE struct {struct_type} has no field with a key annotation")]
    NoKey {
        /// The struct type.
        struct_type: String,
    },
    /// The key fields are empty.
    #[error("UVE struct {struct_type} has an empty name")]
    EmptyName {
        /// The struct type.
        struct_type: String,
    },
    /// A key field is not a base type.
    #[error("UVE key field {field} is not a scalar")]
    KeyNotScalar {
        /// The field.
        field: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, ty: &str, id: i32, ann: &[(&str, &str)], v: UveValue) -> UveField {
        UveField {
            name: name.into(),
            sandesh_type: ty.into(),
            identifier: id,
            annotations: ann.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            value: v,
        }
    }

    #[test]
    fn key_and_deleted_are_taken_out() {
        let fields = vec![
            field("name", "string", 1, &[("key", "ObjectVMITable")], UveValue::scalar("string", "vmi1")),
            field("deleted", "bool", 2, &[], UveValue::scalar("bool", "true")),
            field("vm_name", "string", 3, &[], UveValue::scalar("string", "vm1")),
        ];
        let u = uve_update_from_struct("VMIStats", fields, 7).unwrap();
        assert_eq!(u.table, "ObjectVMITable");
        assert_eq!(u.name, "vmi1");
        assert!(u.deleted);
        assert_eq!(u.attrs.len(), 1);
        assert_eq!(u.attrs[0].name, "vm_name");
        assert_eq!(u.timestamp_us, 7);
    }

    #[test]
    fn missing_key_is_an_error() {
        let fields = vec![field("x", "u64", 1, &[], UveValue::scalar("u64", "1"))];
        assert_eq!(uve_update_from_struct("S", fields, 0), Err(UveShapeError::NoKey { struct_type: "S".into() }));
        let fields = vec![field("name", "string", 1, &[("key", "T")], UveValue::scalar("string", ""))];
        assert!(matches!(uve_update_from_struct("S", fields, 0), Err(UveShapeError::EmptyName { .. })));
    }

    #[test]
    fn generator_display_and_ports() {
        let g = GeneratorKey {
            source: "host1".into(),
            node_type: "Compute".into(),
            module: "contrail-vrouter-agent".into(),
            instance_id: "0".into(),
        };
        assert_eq!(g.to_string(), "host1:Compute:contrail-vrouter-agent:0");
        let f = FlowRecordInput { sport: -31743, protocol: -124, ..Default::default() };
        assert_eq!(f.sport_u16(), 33793);
        assert_eq!(f.protocol_u8(), 132);
        assert_eq!(uve_table_of("vrouter"), Some("ObjectVRouter"));
        assert_eq!(uve_table_of("vrouters"), None);
    }
}

/// One `PacketTraceData` from a vRouter: the steps of one trace id it recorded, and the
/// vRouter (header `Source`) that recorded them.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceInput {
    /// Header `Source`: the vRouter.
    pub host: String,
    /// The message as decoded.
    pub data: sandesh::PacketTraceData,
}
