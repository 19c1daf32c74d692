//! Sandesh type names, as written in the `type=`, `key=` and `value=` attributes.
//!
//! A field is written `<fname type="T" identifier="ID">…</fname>`, a list
//! `<list type="ELEM" size="N">`, a map `<map key="K" value="V" size="N">`. The names are
//! fixed strings; readers silently skip a field whose `type=` does not match the definition, so
//! getting them exactly right matters. Note that `uuid_t` is the wire name even where newer IDL
//! spells the type `ct_uuid_t`, and enums are written as `i32`.
//!
//! This is the *field type* table; the message kind carried in the header's `Type` field
//! (SYSTEM, UVE, FLOW, …) is a different enumeration.

use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// One Sandesh type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SandeshType {
    /// `bool`: text `true` / `false`.
    Bool,
    /// `byte`: signed 8-bit, decimal text.
    Byte,
    /// `i16`: decimal text.
    I16,
    /// `i32`: decimal text; also used for enums.
    I32,
    /// `i64`: decimal text.
    I64,
    /// `u16`: decimal text.
    U16,
    /// `u32`: decimal text.
    U32,
    /// `u64`: decimal text.
    U64,
    /// `ipv4`: the address as a `u32` in decimal.
    Ipv4,
    /// `ipaddr`: textual IPv4 or IPv6 address.
    IpAddr,
    /// `double`: decimal floating point text.
    Double,
    /// `string`: escaped text.
    String,
    /// `struct`: a nested `<StructName>…</StructName>` element.
    Struct,
    /// `map`: `<map key=… value=… size=…>`.
    Map,
    /// `set`: `<set type=… size=…>`.
    Set,
    /// `list`: `<list type=… size=…>`.
    List,
    /// `sandesh`: the top-level message element, `<Name type="sandesh">`.
    Sandesh,
    /// `xml`: text carried in a CDATA section.
    Xml,
    /// `uuid_t`: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    Uuid,
}

/// A `type=` value that is not a Sandesh type name.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown Sandesh type name `{0}`")]
pub struct UnknownTypeName(pub String);

impl SandeshType {
    /// Every type, in the order the protocol implementation lists them.
    pub const ALL: [SandeshType; 19] = [
        Self::Bool,
        Self::Byte,
        Self::I16,
        Self::I32,
        Self::I64,
        Self::U16,
        Self::U32,
        Self::U64,
        Self::Ipv4,
        Self::IpAddr,
        Self::Double,
        Self::String,
        Self::Struct,
        Self::Map,
        Self::Set,
        Self::List,
        Self::Sandesh,
        Self::Xml,
        Self::Uuid,
    ];

    /// The exact wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Bool => "bool",
            Self::Byte => "byte",
            Self::I16 => "i16",
            Self::I32 => "i32",
            Self::I64 => "i64",
            Self::U16 => "u16",
            Self::U32 => "u32",
            Self::U64 => "u64",
            Self::Ipv4 => "ipv4",
            Self::IpAddr => "ipaddr",
            Self::Double => "double",
            Self::String => "string",
            Self::Struct => "struct",
            Self::Map => "map",
            Self::Set => "set",
            Self::List => "list",
            Self::Sandesh => "sandesh",
            Self::Xml => "xml",
            Self::Uuid => "uuid_t",
        }
    }

    /// Integer types whose value is decimal text (`byte` … `u64`; not `ipv4`, although it is
    /// also written as a decimal number).
    pub const fn is_integer(self) -> bool {
        matches!(self, Self::Byte | Self::I16 | Self::I32 | Self::I64 | Self::U16 | Self::U32 | Self::U64)
    }

    /// Container types: `list`, `set`, `map`. Their base-type elements are wrapped in
    /// `<element>…</element>`.
    pub const fn is_container(self) -> bool {
        matches!(self, Self::List | Self::Set | Self::Map)
    }
}

impl fmt::Display for SandeshType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SandeshType {
    type Err = UnknownTypeName;

    /// Exact, case-sensitive match on the wire name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownTypeName(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_the_reference_list() {
        // The `fieldTypeName` list from the reference, in its order.
        let reference = "bool byte i16 i32 i64 u16 u32 u64 ipv4 ipaddr double string struct map set list \
                         sandesh xml uuid_t";
        let ours: Vec<&str> = SandeshType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(ours, reference.split_whitespace().collect::<Vec<_>>());
    }

    #[test]
    fn parse_display_round_trip() {
        for t in SandeshType::ALL {
            assert_eq!(t.as_str().parse::<SandeshType>(), Ok(t));
            assert_eq!(t.to_string(), t.as_str());
        }
    }

    #[test]
    fn parse_rejects_other_names() {
        for bad in ["", "String", "I32", "int", "i8", "uuid", "ct_uuid_t", "enum", " i32", "i32 "] {
            assert_eq!(bad.parse::<SandeshType>(), Err(UnknownTypeName(bad.to_owned())), "{bad:?}");
        }
        assert_eq!("int".parse::<SandeshType>().unwrap_err().to_string(), "unknown Sandesh type name `int`");
    }

    #[test]
    fn names_render_into_reference_attributes() {
        // Field and container attributes as in the reference examples.
        let field = format!(r#"<sport type="{}" identifier="8">-31743</sport>"#, SandeshType::I16);
        assert_eq!(field, r#"<sport type="i16" identifier="8">-31743</sport>"#);
        let map = format!(r#"<map key="{}" value="{}" size="1">"#, SandeshType::String, SandeshType::I32);
        assert_eq!(map, r#"<map key="string" value="i32" size="1">"#);
    }

    #[test]
    fn classification() {
        let ints: Vec<_> = SandeshType::ALL.into_iter().filter(|t| t.is_integer()).collect();
        assert_eq!(
            ints,
            [
                SandeshType::Byte,
                SandeshType::I16,
                SandeshType::I32,
                SandeshType::I64,
                SandeshType::U16,
                SandeshType::U32,
                SandeshType::U64
            ]
        );
        let containers: Vec<_> = SandeshType::ALL.into_iter().filter(|t| t.is_container()).collect();
        assert_eq!(containers, [SandeshType::Map, SandeshType::Set, SandeshType::List]);
    }
}
