//! The encoder: writes [`StructValue`]s as Sandesh XML by walking their definitions.
//!
//! Output rules (sandesh-reference §1.3): a field is
//! `<name type="T" identifier="ID"[ annotation="v"…]>value</name>`; a nested struct is
//! `<StructName>fields</StructName>`; a list is `<list type="E" size="N">…</list>` (sets and maps
//! alike) whose base-type elements are wrapped in `<element>…</element>` while struct elements
//! are the struct element itself; strings escape exactly `& ' < >`; no whitespace anywhere.
//! Optional fields are written only when set, required ones always (a required field without
//! a value is an error, never a silently invented default).

use crate::escape::escape_into;
use crate::frame::{encode_frame_into, FrameError};
use crate::model::{FieldDef, FieldType, MessageDef, StructValue, Value};
use crate::types::SandeshType;
use std::fmt::Write as _;
use thiserror::Error;

/// Why a value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A required field has no value.
    #[error("{strct}.{field}: required field is not set")]
    MissingField {
        /// The struct.
        strct: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A value does not have the type its definition declares.
    #[error("{strct}.{field}: a {found} value where the definition says {expected}")]
    TypeMismatch {
        /// The struct.
        strct: &'static str,
        /// The field.
        field: &'static str,
        /// The declared type.
        expected: String,
        /// The kind of value found.
        found: &'static str,
    },
    /// A struct value has a different number of slots than its definition has fields.
    #[error("{strct}: {slots} value slots for {fields} defined fields")]
    Shape {
        /// The struct.
        strct: &'static str,
        /// Slots in the value.
        slots: usize,
        /// Fields in the definition.
        fields: usize,
    },
    /// An `xml` value contains `]]>`, which cannot be carried inside one CDATA section.
    #[error("{strct}.{field}: xml text contains `]]>`")]
    CdataTerminator {
        /// The struct.
        strct: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A container holds more elements than the `size` attribute can express.
    #[error("{strct}.{field}: {len} elements do not fit the u32 size attribute")]
    TooManyElements {
        /// The struct.
        strct: &'static str,
        /// The field.
        field: &'static str,
        /// Element count.
        len: usize,
    },
    /// The message body does not use the definition it claims to.
    #[error("message body is a {found}, the message definition says {expected}")]
    WrongBody {
        /// The definition's body name.
        expected: &'static str,
        /// The value's struct name.
        found: &'static str,
    },
    /// The frame could not be built (too large).
    #[error(transparent)]
    Frame(#[from] FrameError),
}

/// Appends the fields of `value` (not the surrounding struct element).
pub fn encode_fields(out: &mut String, value: &StructValue) -> Result<(), EncodeError> {
    let def = value.def;
    if value.fields.len() != def.fields.len() {
        return Err(EncodeError::Shape { strct: def.name, slots: value.fields.len(), fields: def.fields.len() });
    }
    for (f, slot) in def.fields.iter().zip(&value.fields) {
        match slot {
            Some(v) => encode_field(out, def.name, f, v)?,
            None if f.optional => {}
            None => return Err(EncodeError::MissingField { strct: def.name, field: f.name }),
        }
    }
    Ok(())
}

/// Appends `<Name>fields</Name>` for a struct value.
pub fn encode_struct(out: &mut String, value: &StructValue) -> Result<(), EncodeError> {
    out.push('<');
    out.push_str(value.def.name);
    out.push('>');
    encode_fields(out, value)?;
    out.push_str("</");
    out.push_str(value.def.name);
    out.push('>');
    Ok(())
}

/// Appends a frame body: the header struct, then `<Name type="sandesh">fields</Name>`.
pub fn encode_body(
    out: &mut String,
    header: &StructValue,
    def: &MessageDef,
    body: &StructValue,
) -> Result<(), EncodeError> {
    if body.def.name != def.body.name {
        return Err(EncodeError::WrongBody { expected: def.body.name, found: body.def.name });
    }
    encode_struct(out, header)?;
    out.push('<');
    out.push_str(def.body.name);
    out.push_str(" type=\"sandesh\">");
    encode_fields(out, body)?;
    out.push_str("</");
    out.push_str(def.body.name);
    out.push('>');
    Ok(())
}

/// Encodes header and body and appends the complete frame (length prefix included) to `out`;
/// returns the frame length. `scratch` is a reusable buffer for the body text.
pub fn encode_frame_with(
    out: &mut Vec<u8>,
    scratch: &mut String,
    header: &StructValue,
    def: &MessageDef,
    body: &StructValue,
) -> Result<usize, EncodeError> {
    scratch.clear();
    encode_body(scratch, header, def, body)?;
    Ok(encode_frame_into(out, scratch.as_bytes())?)
}

/// Appends a field's open tag, `<name type="T" identifier="ID"[ annotation="v"…]>`.
pub fn field_open(out: &mut String, f: &FieldDef) {
    out.push('<');
    out.push_str(f.name);
    out.push_str(" type=\"");
    out.push_str(f.ty.sandesh_type().as_str());
    out.push_str("\" identifier=\"");
    push_int(out, i64::from(f.id));
    out.push('"');
    for (k, a) in f.annotations {
        out.push(' ');
        out.push_str(k);
        out.push_str("=\"");
        out.push_str(a);
        out.push('"');
    }
    out.push('>');
}

/// Appends a field's close tag.
pub fn field_close(out: &mut String, f: &FieldDef) {
    out.push_str("</");
    out.push_str(f.name);
    out.push('>');
}

/// Writes the content of a field element of type `ty` from a dynamic value (the typed fast
/// path falls back to this for the rarely used types).
pub fn encode_content(
    out: &mut String,
    strct: &'static str,
    field: &'static str,
    ty: &FieldType,
    v: &Value,
) -> Result<(), EncodeError> {
    let f = FieldDef { id: 0, name: field, ty: *ty, optional: false, annotations: &[] };
    encode_value(out, strct, &f, ty, v)
}

fn mismatch(strct: &'static str, f: &FieldDef, ty: &FieldType, v: &Value) -> EncodeError {
    EncodeError::TypeMismatch { strct, field: f.name, expected: ty.to_string(), found: v.kind() }
}

/// Appends one field element, `<name type="T" identifier="ID"…>value</name>` (`strct` names
/// the enclosing struct in errors). A collector storing UVE attributes as XML uses this.
pub fn encode_field(out: &mut String, strct: &'static str, f: &FieldDef, v: &Value) -> Result<(), EncodeError> {
    field_open(out, f);
    encode_value(out, strct, f, &f.ty, v)?;
    field_close(out, f);
    Ok(())
}

/// Writes the content of a field element.
fn encode_value(
    out: &mut String,
    strct: &'static str,
    f: &FieldDef,
    ty: &FieldType,
    v: &Value,
) -> Result<(), EncodeError> {
    match (ty, v) {
        (FieldType::Struct(def), Value::Struct(sv)) if sv.def.name == def.name => encode_struct(out, sv),
        (FieldType::List(e), Value::List(items)) | (FieldType::Set(e), Value::Set(items)) => {
            let tag = if matches!(ty, FieldType::List(_)) { "list" } else { "set" };
            let size = u32::try_from(items.len()).map_err(|_| EncodeError::TooManyElements {
                strct,
                field: f.name,
                len: items.len(),
            })?;
            let _ = write!(out, "<{tag} type=\"{}\" size=\"{size}\">", e.sandesh_type().as_str());
            for item in items {
                encode_element(out, strct, f, e, item)?;
            }
            out.push_str("</");
            out.push_str(tag);
            out.push('>');
            Ok(())
        }
        (FieldType::Map(k, val), Value::Map(entries)) => {
            let size = u32::try_from(entries.len()).map_err(|_| EncodeError::TooManyElements {
                strct,
                field: f.name,
                len: entries.len(),
            })?;
            let _ = write!(
                out,
                "<map key=\"{}\" value=\"{}\" size=\"{size}\">",
                k.sandesh_type().as_str(),
                val.sandesh_type().as_str()
            );
            for (kv, vv) in entries {
                encode_element(out, strct, f, k, kv)?;
                encode_element(out, strct, f, val, vv)?;
            }
            out.push_str("</map>");
            Ok(())
        }
        _ => encode_scalar(out, strct, f, ty, v),
    }
}

/// Writes one container element: base types wrapped in `<element>`, structs as themselves.
fn encode_element(
    out: &mut String,
    strct: &'static str,
    f: &FieldDef,
    ty: &FieldType,
    v: &Value,
) -> Result<(), EncodeError> {
    match (ty, v) {
        (FieldType::Struct(def), Value::Struct(sv)) if sv.def.name == def.name => encode_struct(out, sv),
        (FieldType::Struct(_) | FieldType::List(_) | FieldType::Set(_) | FieldType::Map(..), _) => {
            Err(mismatch(strct, f, ty, v))
        }
        _ => {
            out.push_str("<element>");
            encode_scalar(out, strct, f, ty, v)?;
            out.push_str("</element>");
            Ok(())
        }
    }
}

/// Writes the text of a base-type value.
fn encode_scalar(
    out: &mut String,
    strct: &'static str,
    f: &FieldDef,
    ty: &FieldType,
    v: &Value,
) -> Result<(), EncodeError> {
    match (ty.sandesh_type(), v) {
        (SandeshType::Bool, Value::Bool(b)) => out.push_str(if *b { "true" } else { "false" }),
        (SandeshType::Byte, Value::Byte(n)) => push_int(out, i64::from(*n)),
        (SandeshType::I16, Value::I16(n)) => push_int(out, i64::from(*n)),
        (SandeshType::I32, Value::I32(n)) => push_int(out, i64::from(*n)),
        (SandeshType::I64, Value::I64(n)) => push_int(out, *n),
        (SandeshType::U16, Value::U16(n)) => push_uint(out, u64::from(*n)),
        (SandeshType::U32, Value::U32(n)) => push_uint(out, u64::from(*n)),
        (SandeshType::U64, Value::U64(n)) => push_uint(out, *n),
        (SandeshType::Ipv4, Value::Ipv4(a)) => push_uint(out, u64::from(u32::from(*a))),
        (SandeshType::IpAddr, Value::IpAddr(a)) => {
            let _ = write!(out, "{a}");
        }
        (SandeshType::Double, Value::Double(d)) => {
            let _ = write!(out, "{d}");
        }
        (SandeshType::String, Value::String(s)) => escape_into(out, s),
        (SandeshType::Xml, Value::Xml(s)) => {
            if s.contains("]]>") {
                return Err(EncodeError::CdataTerminator { strct, field: f.name });
            }
            out.push_str("<![CDATA[");
            out.push_str(s);
            out.push_str("]]>");
        }
        (SandeshType::Uuid, Value::Uuid(u)) => push_uuid(out, u),
        _ => return Err(mismatch(strct, f, ty, v)),
    }
    Ok(())
}

/// Appends a signed decimal without going through `fmt` (the hot path of flow export).
pub(crate) fn push_int(out: &mut String, n: i64) {
    if n < 0 {
        out.push('-');
    }
    push_uint(out, n.unsigned_abs());
}

/// Appends an unsigned decimal.
pub(crate) fn push_uint(out: &mut String, n: u64) {
    // The digits are ASCII.
    out.push_str(std::str::from_utf8(decimal(n, false, &mut [0; 21])).unwrap_or_default());
}

/// The decimal text of `n` (with a leading `-` when `negative`), written at the end of `buf`.
pub(crate) fn decimal(mut n: u64, negative: bool, buf: &mut [u8; 21]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        i -= 1;
        buf[i] = b'-';
    }
    &buf[i..]
}

/// Appends a UUID as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` (lower case).
pub fn push_uuid(out: &mut String, u: &[u8; 16]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in u.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_render_like_the_reference() {
        let mut s = String::new();
        for n in [0i64, 1, -1, -31743, i64::MIN, i64::MAX] {
            s.clear();
            push_int(&mut s, n);
            assert_eq!(s, n.to_string());
        }
        s.clear();
        push_uint(&mut s, u64::MAX);
        assert_eq!(s, u64::MAX.to_string());
    }

    #[test]
    fn uuid_format() {
        let mut s = String::new();
        push_uuid(
            &mut s,
            &[0xed, 0x6b, 0xdc, 0x5b, 0x6e, 0xbc, 0x48, 0xca, 0xb8, 0xfc, 0xd4, 0x83, 0xfd, 0xbd, 0x89, 0xfc],
        );
        assert_eq!(s, "ed6bdc5b-6ebc-48ca-b8fc-d483fdbd89fc");
    }
}
