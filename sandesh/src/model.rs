//! The message model: definitions declared once as data, and a dynamic value tree.
//!
//! Every Sandesh struct and message is described by a [`StructDef`]: its element name and its
//! fields in IDL order, each a [`FieldDef`] (identifier, wire name, [`FieldType`], whether it is
//! optional, and the IDL annotations that become extra XML attributes such as
//! `key="ObjectVMITable"`). The encoder ([`crate::encode`]) and the strict decoder
//! ([`crate::decode`]) walk these definitions; neither has per-field code.
//!
//! Values are carried as a [`Value`] tree; a struct value is a [`StructValue`], which pairs the
//! definition with one slot per defined field (`None` = optional field not set). The typed Rust
//! structs in [`crate::messages`] are generated from the same one-line-per-field declarations
//! and convert to and from [`StructValue`].

use crate::types::SandeshType;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// The type of a field (or of a container element), with what the wire needs to know about
/// nested types: the struct definition, the element type of a list or set, the key and value
/// types of a map.
#[derive(Debug, Clone, Copy)]
pub enum FieldType {
    /// `bool`.
    Bool,
    /// `byte` (signed 8-bit).
    Byte,
    /// `i16`.
    I16,
    /// `i32` (also enums).
    I32,
    /// `i64`.
    I64,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
    /// `ipv4`: an IPv4 address written as its `u32` value in decimal.
    Ipv4,
    /// `ipaddr`: textual IPv4 or IPv6 address.
    IpAddr,
    /// `double`.
    Double,
    /// `string`.
    String,
    /// `xml`: text in a CDATA section.
    Xml,
    /// `uuid_t`.
    Uuid,
    /// A nested struct.
    Struct(&'static StructDef),
    /// `list<T>`.
    List(&'static FieldType),
    /// `set<T>`.
    Set(&'static FieldType),
    /// `map<K, V>`.
    Map(&'static FieldType, &'static FieldType),
}

impl FieldType {
    /// The wire type name of this type (`struct`, `list`, … for the composite ones).
    pub const fn sandesh_type(&self) -> SandeshType {
        match self {
            Self::Bool => SandeshType::Bool,
            Self::Byte => SandeshType::Byte,
            Self::I16 => SandeshType::I16,
            Self::I32 => SandeshType::I32,
            Self::I64 => SandeshType::I64,
            Self::U16 => SandeshType::U16,
            Self::U32 => SandeshType::U32,
            Self::U64 => SandeshType::U64,
            Self::Ipv4 => SandeshType::Ipv4,
            Self::IpAddr => SandeshType::IpAddr,
            Self::Double => SandeshType::Double,
            Self::String => SandeshType::String,
            Self::Xml => SandeshType::Xml,
            Self::Uuid => SandeshType::Uuid,
            Self::Struct(_) => SandeshType::Struct,
            Self::List(_) => SandeshType::List,
            Self::Set(_) => SandeshType::Set,
            Self::Map(_, _) => SandeshType::Map,
        }
    }

    /// Whether a value of this type may be a container element. Containers of containers are
    /// not used by any Sandesh definition this project carries, and their element encoding is
    /// not pinned down by the reference; [`StructDef::validate`] rejects them.
    pub const fn is_valid_element(&self) -> bool {
        !matches!(self, Self::List(_) | Self::Set(_) | Self::Map(_, _))
    }

    /// Whether two types are the same (struct types compare by name: definitions are unique by
    /// name within this crate).
    pub fn same_as(&self, other: &FieldType) -> bool {
        match (self, other) {
            (Self::Struct(a), Self::Struct(b)) => a.name == b.name,
            (Self::List(a), Self::List(b)) | (Self::Set(a), Self::Set(b)) => a.same_as(b),
            (Self::Map(ak, av), Self::Map(bk, bv)) => ak.same_as(bk) && av.same_as(bv),
            (a, b) => {
                !matches!(a, Self::Struct(_) | Self::List(_) | Self::Set(_) | Self::Map(_, _))
                    && a.sandesh_type() == b.sandesh_type()
            }
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Struct(def) => write!(f, "struct {}", def.name),
            Self::List(e) => write!(f, "list<{e}>"),
            Self::Set(e) => write!(f, "set<{e}>"),
            Self::Map(k, v) => write!(f, "map<{k}, {v}>"),
            other => f.write_str(other.sandesh_type().as_str()),
        }
    }
}

/// One field of a struct or message, as declared in the IDL.
#[derive(Debug, Clone, Copy)]
pub struct FieldDef {
    /// The field identifier (`identifier="N"` on the wire).
    pub id: i16,
    /// The element name.
    pub name: &'static str,
    /// The type.
    pub ty: FieldType,
    /// Optional fields are written only when set; required ones always.
    pub optional: bool,
    /// IDL annotations, written as extra attributes after `type` and `identifier`, in this
    /// order (e.g. `("key", "ObjectVMITable")`, `("metric", "agg")`).
    pub annotations: &'static [(&'static str, &'static str)],
}

impl FieldDef {
    /// The value of annotation `name`, if the field has it.
    pub fn annotation(&self, name: &str) -> Option<&'static str> {
        self.annotations.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// A struct or message body definition: element name and fields in IDL order.
#[derive(Debug)]
pub struct StructDef {
    /// The element name (`<FlowLogData>`, or `<FlowLogDataObject type="sandesh">` for a message).
    pub name: &'static str,
    /// Fields in IDL (and wire) order.
    pub fields: &'static [FieldDef],
}

/// A definition that the encoder cannot write or the decoder cannot read unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("definition {strct}: {problem}")]
pub struct DefinitionError {
    /// The struct the problem is in.
    pub strct: &'static str,
    /// What is wrong.
    pub problem: String,
}

fn is_xml_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl StructDef {
    /// Position of the field called `name`.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The field with identifier `id`.
    pub fn field_by_id(&self, id: i16) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.id == id)
    }

    /// Checks that the definition (and every struct it nests) can be encoded and decoded:
    /// element and annotation names are plain XML names, field names and identifiers are unique,
    /// annotation values need no escaping, `type`/`identifier` are not used as annotation names,
    /// and no container holds a container.
    pub fn validate(&self) -> Result<(), DefinitionError> {
        let err = |problem: String| DefinitionError { strct: self.name, problem };
        if !is_xml_name(self.name) {
            return Err(err(format!("`{}` is not a plain element name", self.name)));
        }
        for (i, f) in self.fields.iter().enumerate() {
            if !is_xml_name(f.name) || f.name == "element" {
                return Err(err(format!("field name `{}` is not usable", f.name)));
            }
            if self.fields[..i].iter().any(|g| g.name == f.name || g.id == f.id) {
                return Err(err(format!("field `{}` ({}) repeats a name or identifier", f.name, f.id)));
            }
            for (k, v) in f.annotations {
                if !is_xml_name(k) || *k == "type" || *k == "identifier" {
                    return Err(err(format!("field `{}`: annotation name `{k}`", f.name)));
                }
                if v.contains(['"', '<', '>', '&']) {
                    return Err(err(format!("field `{}`: annotation `{k}` value needs escaping", f.name)));
                }
            }
            validate_type(&f.ty, self, f.name)?;
        }
        Ok(())
    }
}

fn validate_type(ty: &FieldType, parent: &StructDef, field: &str) -> Result<(), DefinitionError> {
    let nested = |e: &FieldType| -> Result<(), DefinitionError> {
        if !e.is_valid_element() {
            return Err(DefinitionError {
                strct: parent.name,
                problem: format!("field `{field}`: container of containers ({ty})"),
            });
        }
        validate_type(e, parent, field)
    };
    match ty {
        FieldType::Struct(def) => def.validate(),
        FieldType::List(e) | FieldType::Set(e) => nested(e),
        FieldType::Map(k, v) => {
            nested(k)?;
            nested(v)
        }
        _ => Ok(()),
    }
}

/// A value of any Sandesh type.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `bool`.
    Bool(bool),
    /// `byte`.
    Byte(i8),
    /// `i16`.
    I16(i16),
    /// `i32`.
    I32(i32),
    /// `i64`.
    I64(i64),
    /// `u16`.
    U16(u16),
    /// `u32`.
    U32(u32),
    /// `u64`.
    U64(u64),
    /// `ipv4`.
    Ipv4(Ipv4Addr),
    /// `ipaddr`.
    IpAddr(IpAddr),
    /// `double`.
    Double(f64),
    /// `string`.
    String(String),
    /// `xml`.
    Xml(String),
    /// `uuid_t`, as its 16 bytes.
    Uuid([u8; 16]),
    /// A nested struct.
    Struct(StructValue),
    /// `list` elements.
    List(Vec<Value>),
    /// `set` elements, in wire order.
    Set(Vec<Value>),
    /// `map` entries, in wire order.
    Map(Vec<(Value, Value)>),
}

impl Value {
    /// Short name of the variant, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bool(_) => "bool",
            Self::Byte(_) => "byte",
            Self::I16(_) => "i16",
            Self::I32(_) => "i32",
            Self::I64(_) => "i64",
            Self::U16(_) => "u16",
            Self::U32(_) => "u32",
            Self::U64(_) => "u64",
            Self::Ipv4(_) => "ipv4",
            Self::IpAddr(_) => "ipaddr",
            Self::Double(_) => "double",
            Self::String(_) => "string",
            Self::Xml(_) => "xml",
            Self::Uuid(_) => "uuid_t",
            Self::Struct(_) => "struct",
            Self::List(_) => "list",
            Self::Set(_) => "set",
            Self::Map(_) => "map",
        }
    }
}

/// A struct (or message body) value: its definition and one slot per defined field, in the
/// definition's order. `None` means "not set" and is only valid for optional fields.
#[derive(Debug, Clone)]
pub struct StructValue {
    /// The definition.
    pub def: &'static StructDef,
    /// `fields[i]` is the value of `def.fields[i]`.
    pub fields: Vec<Option<Value>>,
}

impl PartialEq for StructValue {
    fn eq(&self, other: &Self) -> bool {
        self.def.name == other.def.name && self.fields == other.fields
    }
}

impl StructValue {
    /// A value with every field unset.
    pub fn empty(def: &'static StructDef) -> Self {
        Self { def, fields: vec![None; def.fields.len()] }
    }

    /// The value of field `name`, if set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.def.field_index(name).and_then(|i| self.fields.get(i)).and_then(Option::as_ref)
    }

    /// Sets field `name`; returns false when the definition has no such field.
    pub fn set(&mut self, name: &str, value: Value) -> bool {
        match self.def.field_index(name) {
            Some(i) => {
                self.fields[i] = Some(value);
                true
            }
            None => false,
        }
    }
}

/// What the header's `Type` field says a message is (`SandeshType` in `sandesh.sandesh`; not
/// to be confused with the field type names in [`SandeshType`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum MessageKind {
    /// SYSTEM (1): systemlog.
    System = 1,
    /// REQUEST (2): requests, including the control handshake.
    Request = 2,
    /// RESPONSE (3).
    Response = 3,
    /// TRACE (4).
    Trace = 4,
    /// UVE (6).
    Uve = 6,
    /// OBJECT (7).
    Object = 7,
    /// FLOW (8): flowlog.
    Flow = 8,
    /// SESSION (12): sessionlog.
    Session = 12,
}

impl MessageKind {
    /// The header `Type` value.
    pub const fn code(self) -> i32 {
        self as i32
    }
}

/// Header `Hints` bits.
pub mod hints {
    /// The message carries a key annotation (UVEs).
    pub const KEY: i32 = 0x1;
    /// Control handshake message.
    pub const CONTROL: i32 = 0x2;
    /// UVE re-sent from the cache after a (re)connect.
    pub const SYNC: i32 = 0x4;
}

/// Header `Level` values (`SandeshLevel`).
pub mod level {
    /// SYS_UVE.
    pub const SYS_UVE: i32 = -100;
    /// SYS_EMERG.
    pub const SYS_EMERG: i32 = 0;
    /// SYS_ALERT.
    pub const SYS_ALERT: i32 = 1;
    /// SYS_CRIT.
    pub const SYS_CRIT: i32 = 2;
    /// SYS_ERR.
    pub const SYS_ERR: i32 = 3;
    /// SYS_WARN.
    pub const SYS_WARN: i32 = 4;
    /// SYS_NOTICE.
    pub const SYS_NOTICE: i32 = 5;
    /// SYS_INFO.
    pub const SYS_INFO: i32 = 6;
    /// SYS_DEBUG.
    pub const SYS_DEBUG: i32 = 7;
    /// INVALID: the level of control messages, and "drop nothing" as a sending level.
    pub const INVALID: i32 = 0x7fff_ffff;
}

/// A top-level message definition: the body struct plus what goes into its header.
#[derive(Debug)]
pub struct MessageDef {
    /// Element name and fields of the body (`<Name type="sandesh">fields</Name>`).
    pub body: &'static StructDef,
    /// Header `Type`.
    pub kind: MessageKind,
    /// Header `VersionSig`: the reference compiler's fingerprint where the reference shows
    /// it, otherwise [`fingerprint`] of the definition.
    pub version_sig: i32,
}

impl PartialEq for MessageDef {
    /// Message definitions are unique by name.
    fn eq(&self, other: &Self) -> bool {
        self.body.name == other.body.name
    }
}

/// A 32-bit fingerprint of a definition (FNV-1a over `name`, then `id:type:name:opt` per field,
/// nested structs included), used as `VersionSig` for messages the reference shows no value
/// for. The collector stores this field but does not validate it.
pub const fn fingerprint(def: &StructDef) -> i32 {
    const fn mix(mut h: u32, s: &[u8]) -> u32 {
        let mut i = 0;
        while i < s.len() {
            h ^= s[i] as u32;
            h = h.wrapping_mul(0x0100_0193);
            i += 1;
        }
        h
    }
    const fn mix_def(mut h: u32, def: &StructDef) -> u32 {
        h = mix(h, def.name.as_bytes());
        let mut i = 0;
        while i < def.fields.len() {
            let f = &def.fields[i];
            h = mix(h, &f.id.to_le_bytes());
            h = mix_type(h, &f.ty);
            h = mix(h, f.name.as_bytes());
            h = mix(h, if f.optional { b"o" } else { b"r" });
            i += 1;
        }
        h
    }
    const fn mix_type(h: u32, ty: &FieldType) -> u32 {
        let h = mix(h, ty.sandesh_type().as_str().as_bytes());
        match ty {
            FieldType::Struct(d) => mix_def(h, d),
            FieldType::List(e) | FieldType::Set(e) => mix_type(h, e),
            FieldType::Map(k, v) => mix_type(mix_type(h, k), v),
            _ => h,
        }
    }
    mix_def(0x811c_9dc5, def) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    static INNER: StructDef = StructDef {
        name: "Inner",
        fields: &[FieldDef { id: 1, name: "a", ty: FieldType::I32, optional: false, annotations: &[] }],
    };

    #[test]
    fn validate_catches_bad_definitions() {
        static DUP: StructDef = StructDef {
            name: "Dup",
            fields: &[
                FieldDef { id: 1, name: "a", ty: FieldType::I32, optional: false, annotations: &[] },
                FieldDef { id: 1, name: "b", ty: FieldType::I32, optional: false, annotations: &[] },
            ],
        };
        assert!(DUP.validate().unwrap_err().problem.contains("repeats"));
        static NESTED: StructDef = StructDef {
            name: "Nested",
            fields: &[FieldDef {
                id: 1,
                name: "a",
                ty: FieldType::List(&FieldType::List(&FieldType::I32)),
                optional: false,
                annotations: &[],
            }],
        };
        assert!(NESTED.validate().unwrap_err().problem.contains("container of containers"));
        static ANN: StructDef = StructDef {
            name: "Ann",
            fields: &[FieldDef {
                id: 1,
                name: "a",
                ty: FieldType::Struct(&INNER),
                optional: false,
                annotations: &[("type", "x")],
            }],
        };
        assert!(ANN.validate().is_err());
        assert!(INNER.validate().is_ok());
    }

    #[test]
    fn fingerprint_depends_on_the_definition() {
        static OTHER: StructDef = StructDef {
            name: "Inner",
            fields: &[FieldDef { id: 1, name: "a", ty: FieldType::I64, optional: false, annotations: &[] }],
        };
        assert_ne!(fingerprint(&INNER), fingerprint(&OTHER));
        assert_eq!(fingerprint(&INNER), fingerprint(&INNER));
    }

    #[test]
    fn same_as_compares_structure() {
        assert!(FieldType::List(&FieldType::I32).same_as(&FieldType::List(&FieldType::I32)));
        assert!(!FieldType::List(&FieldType::I32).same_as(&FieldType::List(&FieldType::I64)));
        assert!(FieldType::Struct(&INNER).same_as(&FieldType::Struct(&INNER)));
        assert!(!FieldType::I32.same_as(&FieldType::U32));
    }
}
