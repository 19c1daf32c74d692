//! Information elements as data: abstract data types ([`DataType`]), the Rust types that
//! carry them ([`IeValue`]), one element's definition ([`ElementDef`]), and the
//! `information_elements!` declaration that [`crate::flow`] uses: one line per element —
//! namespace (`iana` or `pen`), element id, name, abstract type, the records it is in (`v4`,
//! `v6` or `all`) and the Rust field — from which the typed record struct, its templates,
//! its encoder, its decoder and the documentation table ([`markdown_table`]) all come. There
//! is no per-element hand-written code.

use crate::wire::{FieldSpec, TemplateRecord, VARLEN};
use std::net::{Ipv4Addr, Ipv6Addr};
use thiserror::Error;

/// The abstract data types of RFC 7011 §6.1 this crate encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    /// `unsigned8`.
    Unsigned8,
    /// `unsigned16`.
    Unsigned16,
    /// `unsigned32`.
    Unsigned32,
    /// `unsigned64`.
    Unsigned64,
    /// `dateTimeMilliseconds`: milliseconds since the UNIX epoch, as `unsigned64`.
    DateTimeMilliseconds,
    /// `ipv4Address`.
    Ipv4Address,
    /// `ipv6Address`.
    Ipv6Address,
    /// `string`: UTF-8, variable length.
    String,
}

impl DataType {
    /// The name RFC 7011 and the IANA registry give it.
    pub const fn name(self) -> &'static str {
        match self {
            DataType::Unsigned8 => "unsigned8",
            DataType::Unsigned16 => "unsigned16",
            DataType::Unsigned32 => "unsigned32",
            DataType::Unsigned64 => "unsigned64",
            DataType::DateTimeMilliseconds => "dateTimeMilliseconds",
            DataType::Ipv4Address => "ipv4Address",
            DataType::Ipv6Address => "ipv6Address",
            DataType::String => "string",
        }
    }

    /// Field length in templates: the type's full size, or [`VARLEN`].
    pub const fn length(self) -> u16 {
        match self {
            DataType::Unsigned8 => 1,
            DataType::Unsigned16 => 2,
            DataType::Unsigned32 => 4,
            DataType::Unsigned64 | DataType::DateTimeMilliseconds => 8,
            DataType::Ipv4Address => 4,
            DataType::Ipv6Address => 16,
            DataType::String => VARLEN,
        }
    }
}

/// A field value that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldError {
    /// A length the type does not allow (unsigned types take 1 up to their size: reduced-size
    /// encoding, RFC 7011 §6.2; addresses exactly theirs).
    #[error("{element}: {len} bytes do not hold a {data_type}")]
    Length {
        /// The element.
        element: &'static str,
        /// Its type.
        data_type: &'static str,
        /// The length found.
        len: usize,
    },
    /// A string that is not UTF-8.
    #[error("{element}: not UTF-8")]
    Utf8 {
        /// The element.
        element: &'static str,
    },
}

/// A Rust type that carries an abstract data type on the wire.
pub trait IeValue: Sized {
    /// The value of a record that did not set it (zero, the unspecified address, empty).
    fn zero() -> Self;
    /// Appends the value as the type's full size (strings: the length prefix first).
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes a field's bytes (without the variable-length prefix); `element` names it in
    /// errors.
    fn decode(b: &[u8], element: &'static str) -> Result<Self, FieldError>;
}

macro_rules! unsigned_value {
    ($($t:ty => $dt:literal),*) => {$(
        impl IeValue for $t {
            fn zero() -> Self {
                0
            }
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode(b: &[u8], element: &'static str) -> Result<Self, FieldError> {
                if b.is_empty() || b.len() > size_of::<$t>() {
                    return Err(FieldError::Length { element, data_type: $dt, len: b.len() });
                }
                Ok(b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)) as $t)
            }
        }
    )*};
}

unsigned_value!(u8 => "unsigned8", u16 => "unsigned16", u32 => "unsigned32", u64 => "unsigned64");

impl IeValue for Ipv4Addr {
    fn zero() -> Self {
        Ipv4Addr::UNSPECIFIED
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.octets());
    }
    fn decode(b: &[u8], element: &'static str) -> Result<Self, FieldError> {
        let a: [u8; 4] =
            b.try_into().map_err(|_| FieldError::Length { element, data_type: "ipv4Address", len: b.len() })?;
        Ok(Ipv4Addr::from(a))
    }
}

impl IeValue for Ipv6Addr {
    fn zero() -> Self {
        Ipv6Addr::UNSPECIFIED
    }
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.octets());
    }
    fn decode(b: &[u8], element: &'static str) -> Result<Self, FieldError> {
        let a: [u8; 16] =
            b.try_into().map_err(|_| FieldError::Length { element, data_type: "ipv6Address", len: b.len() })?;
        Ok(Ipv6Addr::from(a))
    }
}

/// Longest string this crate puts in a record (a longer one is cut at a character
/// boundary): names and UUIDs are far shorter, and a record must fit one message.
pub const MAX_STRING: usize = 1024;

impl IeValue for String {
    fn zero() -> Self {
        String::new()
    }
    fn encode(&self, out: &mut Vec<u8>) {
        let mut end = self.len().min(MAX_STRING);
        while !self.is_char_boundary(end) {
            end -= 1;
        }
        crate::wire::put_varlen(out, end);
        out.extend_from_slice(&self.as_bytes()[..end]);
    }
    fn decode(b: &[u8], element: &'static str) -> Result<Self, FieldError> {
        String::from_utf8(b.to_vec()).map_err(|_| FieldError::Utf8 { element })
    }
}

/// Which of a record type's templates a record goes out with: its addresses' family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Family {
    /// IPv4 addresses.
    #[default]
    V4,
    /// IPv6 addresses.
    V6,
}

/// The records an element is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every record.
    All,
    /// IPv4 records only.
    V4,
    /// IPv6 records only.
    V6,
}

impl Scope {
    /// Whether records of `f` carry the element.
    pub const fn includes(self, f: Family) -> bool {
        matches!((self, f), (Scope::All, _) | (Scope::V4, Family::V4) | (Scope::V6, Family::V6))
    }

    /// How the documentation names it.
    pub const fn name(self) -> &'static str {
        match self {
            Scope::All => "all",
            Scope::V4 => "IPv4",
            Scope::V6 => "IPv6",
        }
    }
}

/// One information element of a record type, as declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElementDef {
    /// Name (the IANA name, or this project's for enterprise-specific ones).
    pub name: &'static str,
    /// Element id (IANA's, or within the private enterprise number).
    pub id: u16,
    /// Enterprise-specific: sent with the exporter's private enterprise number.
    pub enterprise: bool,
    /// Abstract data type.
    pub data_type: DataType,
    /// The records it is in.
    pub scope: Scope,
    /// The Rust field that carries it.
    pub field: &'static str,
    /// What it means (the declaration's doc comment).
    pub doc: &'static str,
}

impl ElementDef {
    /// The field specifier of this element in a template, enterprise-specific ones under
    /// `pen`.
    pub fn spec(&self, pen: u32) -> FieldSpec {
        FieldSpec { id: self.id, length: self.data_type.length(), enterprise: self.enterprise.then_some(pen) }
    }
}

/// A record type declared with `information_elements!`.
pub trait Record {
    /// Every element, in template order.
    const ELEMENTS: &'static [ElementDef];
    /// The template ID of each family.
    const TEMPLATE_IDS: [(Family, u16); 2];

    /// The family this record goes out as.
    fn family(&self) -> Family;

    /// Appends the record's fields in its template's order.
    fn encode(&self, out: &mut Vec<u8>);

    /// The template this record goes out with.
    fn template_id(&self) -> u16 {
        template_id_of::<Self>(self.family())
    }

    /// The templates of this record type, enterprise-specific elements under `pen`.
    fn templates(pen: u32) -> Vec<TemplateRecord> {
        Self::TEMPLATE_IDS
            .iter()
            .map(|&(f, id)| TemplateRecord {
                id,
                fields: Self::ELEMENTS.iter().filter(|e| e.scope.includes(f)).map(|e| e.spec(pen)).collect(),
            })
            .collect()
    }
}

/// The template ID of family `f` of record type `R`.
pub fn template_id_of<R: Record + ?Sized>(f: Family) -> u16 {
    R::TEMPLATE_IDS.iter().find(|(g, _)| *g == f).map_or(0, |(_, id)| *id)
}

/// The documentation table of `elements` (Markdown): id, name, type, length, records and
/// meaning; enterprise-specific ids shown under `pen`.
pub fn markdown_table(elements: &[ElementDef], pen: u32) -> String {
    let mut out = String::from(
        "| id | information element | type | length | records | meaning |\n| --- | --- | --- | --- | --- | --- |\n",
    );
    for e in elements {
        let id = if e.enterprise { format!("{pen}/{}", e.id) } else { e.id.to_string() };
        let len = match e.data_type.length() {
            VARLEN => "variable".to_owned(),
            n => n.to_string(),
        };
        // One line per row; a `|` (even in code) would end the cell.
        let doc = e.doc.split_whitespace().collect::<Vec<_>>().join(" ").replace('|', "\\|");
        out.push_str(&format!(
            "| {id} | `{}` | {} | {len} | {} | {doc} |\n",
            e.name,
            e.data_type.name(),
            e.scope.name()
        ));
    }
    out
}

/// The Rust type of an abstract data type.
macro_rules! ie_rust_type {
    (unsigned8) => {
        u8
    };
    (unsigned16) => {
        u16
    };
    (unsigned32) => {
        u32
    };
    (unsigned64) => {
        u64
    };
    (dateTimeMilliseconds) => {
        u64
    };
    (ipv4Address) => {
        ::std::net::Ipv4Addr
    };
    (ipv6Address) => {
        ::std::net::Ipv6Addr
    };
    (string) => {
        String
    };
}

/// The [`DataType`] of an abstract data type's name.
macro_rules! ie_data_type {
    (unsigned8) => {
        $crate::ie::DataType::Unsigned8
    };
    (unsigned16) => {
        $crate::ie::DataType::Unsigned16
    };
    (unsigned32) => {
        $crate::ie::DataType::Unsigned32
    };
    (unsigned64) => {
        $crate::ie::DataType::Unsigned64
    };
    (dateTimeMilliseconds) => {
        $crate::ie::DataType::DateTimeMilliseconds
    };
    (ipv4Address) => {
        $crate::ie::DataType::Ipv4Address
    };
    (ipv6Address) => {
        $crate::ie::DataType::Ipv6Address
    };
    (string) => {
        $crate::ie::DataType::String
    };
}

/// The [`Scope`] of `all`, `v4`, `v6`.
macro_rules! ie_scope {
    (all) => {
        $crate::ie::Scope::All
    };
    (v4) => {
        $crate::ie::Scope::V4
    };
    (v6) => {
        $crate::ie::Scope::V6
    };
}

/// Whether a namespace (`iana` or `pen`) is enterprise-specific.
macro_rules! ie_enterprise {
    (iana) => {
        false
    };
    (pen) => {
        true
    };
}

/// Declares a record type from one line per information element (see the module docs):
///
/// ```text
/// /// What the element means (goes to the struct field and the documentation table).
/// iana 8 sourceIPv4Address: ipv4Address [v4] => source_ipv4,
/// pen 1 analyzerName: string [all] => analyzer_name,
/// ```
///
/// It produces the struct (the fields, plus `family`), its [`Default`] (every field
/// [`IeValue::zero`]), [`Record`] (elements, templates, the encoder) and `from_fields`, the
/// decoder from a data record's fields.
macro_rules! information_elements {
    (
        $(#[$meta:meta])*
        pub struct $name:ident;
        templates { v4 = $v4:literal, v6 = $v6:literal }
        $(
            $(#[doc = $doc:literal])*
            $ns:ident $id:literal $ie:ident : $dt:ident [$scope:ident] => $field:ident,
        )*
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            /// Which template the record goes out with (the family of its addresses).
            pub family: $crate::ie::Family,
            $(
                $(#[doc = $doc])*
                pub $field: $crate::ie::ie_rust_type!($dt),
            )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    family: $crate::ie::Family::V4,
                    $( $field: <$crate::ie::ie_rust_type!($dt) as $crate::ie::IeValue>::zero(), )*
                }
            }
        }

        impl $crate::ie::Record for $name {
            const ELEMENTS: &'static [$crate::ie::ElementDef] = &[
                $(
                    $crate::ie::ElementDef {
                        name: stringify!($ie),
                        id: $id,
                        enterprise: $crate::ie::ie_enterprise!($ns),
                        data_type: $crate::ie::ie_data_type!($dt),
                        scope: $crate::ie::ie_scope!($scope),
                        field: stringify!($field),
                        doc: concat!($($doc, "\n",)*),
                    },
                )*
            ];
            const TEMPLATE_IDS: [($crate::ie::Family, u16); 2] =
                [($crate::ie::Family::V4, $v4), ($crate::ie::Family::V6, $v6)];

            fn family(&self) -> $crate::ie::Family {
                self.family
            }

            fn encode(&self, out: &mut Vec<u8>) {
                let f = self.family;
                $(
                    if $crate::ie::ie_scope!($scope).includes(f) {
                        $crate::ie::IeValue::encode(&self.$field, out);
                    }
                )*
            }
        }

        impl $name {
            /// The record of one data record of template `template_id`, from its fields as
            /// [`crate::wire::DataRecords`] splits them; enterprise-specific elements are
            /// those of `pen`, elements this type does not declare are skipped.
            pub fn from_fields<'a>(
                template_id: u16,
                fields: impl IntoIterator<Item = ($crate::wire::FieldSpec, &'a [u8])>,
                pen: u32,
            ) -> Result<$name, $crate::ie::FieldError> {
                let mut r = $name::default();
                r.family = if template_id == $v6 { $crate::ie::Family::V6 } else { $crate::ie::Family::V4 };
                for (spec, bytes) in fields {
                    let enterprise = match spec.enterprise {
                        None => false,
                        Some(p) if p == pen => true,
                        Some(_) => continue,
                    };
                    $(
                        if enterprise == $crate::ie::ie_enterprise!($ns) && spec.id == $id {
                            r.$field = $crate::ie::IeValue::decode(bytes, stringify!($ie))?;
                            continue;
                        }
                    )*
                }
                Ok(r)
            }
        }
    };
}

pub(crate) use {ie_data_type, ie_enterprise, ie_rust_type, ie_scope, information_elements};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_values_take_reduced_size_encodings() {
        assert_eq!(u64::decode(&[1, 2], "x"), Ok(0x0102));
        assert_eq!(u32::decode(&[0, 0, 1, 0], "x"), Ok(256));
        assert_eq!(u16::decode(&[7], "x"), Ok(7));
        assert_eq!(u8::decode(&[1, 2], "x"), Err(FieldError::Length { element: "x", data_type: "unsigned8", len: 2 }));
        assert!(u64::decode(&[], "x").is_err());
        let mut out = Vec::new();
        0x0102_0304_0506_0708u64.encode(&mut out);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn strings_are_prefixed_and_cut_at_a_character_boundary() {
        let mut out = Vec::new();
        "ab".to_string().encode(&mut out);
        assert_eq!(out, [2, b'a', b'b']);
        let long = "é".repeat(MAX_STRING); // 2 bytes each
        let mut out = Vec::new();
        long.encode(&mut out);
        assert_eq!(&out[..3], &[255, (MAX_STRING >> 8) as u8, MAX_STRING as u8]);
        assert_eq!(out.len(), 3 + MAX_STRING);
        assert!(String::decode(&out[3..], "x").is_ok());
        assert_eq!(String::decode(&[0xff], "x"), Err(FieldError::Utf8 { element: "x" }));
        assert!(Ipv4Addr::decode(&[1, 2, 3], "x").is_err());
        assert!(Ipv6Addr::decode(&[0; 4], "x").is_err());
    }
}
