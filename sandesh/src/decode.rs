//! The strict decoder: reads Sandesh XML back into [`StructValue`]s by walking the same
//! definitions the encoder uses.
//!
//! It accepts exactly what a conforming writer produces and nothing else:
//! * no whitespace, comments, processing instructions or self-closing tags anywhere;
//! * every field element has exactly the attributes `type`, `identifier`, then the definition's
//!   annotations, in that order and with those values, and its element name, identifier and
//!   type name all agree with the definition;
//! * fields appear in definition order, each at most once; a required field that is missing or
//!   a field the definition does not have is an error (no silent skipping);
//! * containers carry the declared element types and exactly `size` elements, base-type
//!   elements wrapped in `<element>`;
//! * integers are canonical decimal (no sign on unsigned types, no `+`, no leading zeros, no
//!   `-0`) within the type's range; `bool` is `true`/`false`; `ipaddr` is the canonical text
//!   of an address; `uuid_t` is lower-case 8-4-4-4-12 hex; text uses only the four entities
//!   and has `>` and `'` escaped.
//!
//! Consequently anything the decoder accepts re-encodes to exactly the bytes it came from
//! (a property test checks this on mutated frames).
//!
//! Errors carry the byte offset into the decoded text and a typed [`DecodeErrorKind`]. The
//! decoder never panics on any input (a property test feeds it random bytes) and its recursion
//! depth is bounded by the definitions, not by the input.

use crate::escape::{unescape_strict, UnescapeError};
use crate::frame::FrameError;
use crate::model::{FieldDef, FieldType, MessageDef, StructDef, StructValue, Value};
use crate::types::SandeshType;
use std::net::{IpAddr, Ipv4Addr};
use thiserror::Error;

/// A decoding failure: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Byte offset into the frame body (or the text being decoded).
    pub offset: usize,
    /// What went wrong.
    pub kind: DecodeErrorKind,
}

/// The kinds of decoding failure.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeErrorKind {
    /// The frame envelope is bad.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The body is not UTF-8.
    #[error("body is not valid UTF-8")]
    Utf8,
    /// The input ended early.
    #[error("input ends where {expected} was expected")]
    Eof {
        /// What was expected.
        expected: &'static str,
    },
    /// Whitespace where the format allows none.
    #[error("whitespace where {expected} was expected")]
    Whitespace {
        /// What was expected.
        expected: &'static str,
    },
    /// Some other unexpected character.
    #[error("found `{found}` where {expected} was expected")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// The text found (a few characters).
        found: String,
    },
    /// An element with another name than expected.
    #[error("element <{found}> where <{expected}> was expected")]
    WrongElement {
        /// The expected element name.
        expected: String,
        /// The element found.
        found: String,
    },
    /// A top-level message name that no known definition has.
    #[error("unknown message <{0}>")]
    UnknownMessage(String),
    /// A field element the struct definition does not have.
    #[error("{strct} has no field <{name}>")]
    UnknownField {
        /// The struct.
        strct: &'static str,
        /// The element name found.
        name: String,
    },
    /// A field that comes after a later field, or twice.
    #[error("{strct}.{field} is out of order or repeated")]
    FieldOrder {
        /// The struct.
        strct: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A required field is absent.
    #[error("{strct}.{field} is required but missing")]
    MissingField {
        /// The struct.
        strct: &'static str,
        /// The field.
        field: &'static str,
    },
    /// An element's attributes are not exactly the expected ones in the expected order.
    #[error("<{element}> attributes are `{found}`, expected `{expected}`")]
    Attributes {
        /// The element.
        element: String,
        /// The expected attribute list, as XML.
        expected: String,
        /// The attribute list found, as XML.
        found: String,
    },
    /// A value text that is not a valid value of its type.
    #[error("`{text}` is not a canonical {ty} value")]
    BadValue {
        /// The type.
        ty: SandeshType,
        /// The text (truncated to 64 bytes).
        text: String,
    },
    /// A container's element count differs from its `size` attribute.
    #[error("container declares {declared} elements but holds {}", if *more { "more" } else { "fewer" })]
    SizeMismatch {
        /// The declared size.
        declared: u32,
        /// True when there are more elements than declared.
        more: bool,
    },
    /// An entity other than the four.
    #[error(transparent)]
    Escape(#[from] UnescapeError),
    /// Text after the end of the message.
    #[error("{0} bytes after the end of the message")]
    TrailingData(usize),
    /// A decoded value does not convert to the typed struct (only possible when the
    /// definitions and the typed structs disagree, which the tests rule out).
    #[error(transparent)]
    Value(#[from] crate::field::ValueError),
    /// The header's `Type` does not match the message definition.
    #[error("header Type {found} for message {message}, whose definition says {expected}")]
    HeaderType {
        /// The message.
        message: &'static str,
        /// The definition's kind code.
        expected: i32,
        /// The header value.
        found: i32,
    },
}

const MAX_ATTRS: usize = 8;

/// An open tag: name and attributes, in order.
struct Tag<'a> {
    name: &'a str,
    attrs: [(&'a str, &'a str); MAX_ATTRS],
    n_attrs: usize,
}

impl<'a> Tag<'a> {
    fn attrs(&self) -> &[(&'a str, &'a str)] {
        &self.attrs[..self.n_attrs]
    }

    fn attrs_xml(&self) -> String {
        attrs_xml(self.attrs())
    }
}

fn attrs_xml(attrs: &[(&str, &str)]) -> String {
    attrs.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(" ")
}

/// A cursor over the text being decoded.
pub struct Reader<'a> {
    s: &'a str,
    pos: usize,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether `n` is what [`Reader::name`] reads in full: name bytes, the first not a digit.
fn is_plain_name(n: &str) -> bool {
    n.bytes().next().is_some_and(|b| !b.is_ascii_digit()) && n.bytes().all(is_name_byte)
}

/// The canonical decimal text of a field identifier, in `buf`.
fn id_text(id: i16, buf: &mut [u8; 21]) -> &[u8] {
    crate::encode::decimal(u64::from(id.unsigned_abs()), id < 0, buf)
}

impl<'a> Reader<'a> {
    /// A reader at the start of `s`.
    pub fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }

    /// Current byte offset.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Whether everything has been read.
    pub fn at_end(&self) -> bool {
        self.pos == self.s.len()
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset: self.pos, kind }
    }

    fn unexpected(&self, expected: &'static str) -> DecodeError {
        let rest = self.rest();
        match rest.chars().next() {
            None => self.err(DecodeErrorKind::Eof { expected }),
            Some(c) if c.is_whitespace() => self.err(DecodeErrorKind::Whitespace { expected }),
            Some(_) => self.err(DecodeErrorKind::Unexpected { expected, found: rest.chars().take(16).collect() }),
        }
    }

    fn expect(&mut self, lit: &'static str, what: &'static str) -> Result<(), DecodeError> {
        if self.rest().starts_with(lit) {
            self.pos += lit.len();
            Ok(())
        } else {
            // Point at the first differing byte.
            let common = self.rest().bytes().zip(lit.bytes()).take_while(|(a, b)| a == b).count();
            self.pos += common;
            // `common` stops before the first differing byte, which for an ASCII literal
            // is a char boundary of the input.
            if !self.s.is_char_boundary(self.pos) {
                self.pos -= common;
            }
            Err(self.unexpected(what))
        }
    }

    fn name(&mut self, what: &'static str) -> Result<&'a str, DecodeError> {
        let rest = self.rest().as_bytes();
        let len = rest.iter().take_while(|b| is_name_byte(**b)).count();
        if len == 0 || rest[0].is_ascii_digit() {
            return Err(self.unexpected(what));
        }
        let n = &self.s[self.pos..self.pos + len];
        self.pos += len;
        Ok(n)
    }

    /// Whether a close tag comes next.
    fn at_close(&self) -> bool {
        self.rest().starts_with("</")
    }

    /// Reads `<name attr="v" …>`.
    fn open_tag(&mut self) -> Result<Tag<'a>, DecodeError> {
        let start = self.pos;
        self.expect("<", "an element")?;
        if self.rest().starts_with('/') || self.rest().starts_with('!') {
            self.pos = start;
            return Err(self.unexpected("an element"));
        }
        let name = self.name("an element name")?;
        let mut tag = Tag { name, attrs: [("", ""); MAX_ATTRS], n_attrs: 0 };
        loop {
            match self.rest().as_bytes().first() {
                Some(b'>') => {
                    self.pos += 1;
                    return Ok(tag);
                }
                Some(b' ') => {
                    self.pos += 1;
                    let k = self.name("an attribute name")?;
                    self.expect("=\"", "`=\"` after an attribute name")?;
                    let rest = self.rest();
                    let Some(end) = rest.find('"') else {
                        self.pos = self.s.len();
                        return Err(self.unexpected("the end of an attribute value"));
                    };
                    let v = &rest[..end];
                    if let Some(bad) = v.find(['<', '>', '&']) {
                        self.pos += bad;
                        return Err(self.unexpected("attribute value text"));
                    }
                    self.pos += end + 1;
                    if tag.n_attrs == MAX_ATTRS {
                        return Err(self.unexpected("`>` (too many attributes)"));
                    }
                    tag.attrs[tag.n_attrs] = (k, v);
                    tag.n_attrs += 1;
                }
                _ => return Err(self.unexpected("` attribute=` or `>`")),
            }
        }
    }

    /// Whether the rest starts with `open`, `name`, `close`; if so, moves past them.
    fn eat_around(&mut self, open: &str, name: &str, close: u8) -> bool {
        let rest = self.rest().as_bytes();
        let n = open.len() + name.len();
        if rest.len() > n
            && rest[n] == close
            && rest.starts_with(open.as_bytes())
            && &rest[open.len()..n] == name.as_bytes()
            && is_plain_name(name)
        {
            self.pos += n + 1;
            true
        } else {
            false
        }
    }

    /// The open tag of a field of `def` from `def.fields[next]` on, exactly as a conforming
    /// writer puts it (`<name type="T" identifier="N"` and the annotations, then `>`): moves
    /// past it and returns the field's index. Anything else (another field, any difference
    /// in the attributes) returns `None` and leaves the reader where it was, for
    /// [`Reader::open_tag`] and the checks after it, which accept the same tags (what the
    /// fast path accepts they read as this field with these attributes) and say what is
    /// wrong with the others.
    fn open_field(&mut self, def: &'static StructDef, next: usize) -> Option<usize> {
        let rest = self.rest().as_bytes();
        if rest.first() != Some(&b'<') {
            return None;
        }
        let len = rest[1..].iter().take_while(|b| is_name_byte(**b)).count();
        let name = &rest[1..1 + len];
        let idx = next + def.fields.get(next..)?.iter().position(|f| f.name.as_bytes() == name)?;
        let f = &def.fields[idx];
        if !is_plain_name(f.name) || 2 + f.annotations.len() > MAX_ATTRS {
            return None;
        }
        let mut at = 1 + len;
        let mut eat = |lit: &[u8]| {
            let ok = rest.get(at..).is_some_and(|r| r.starts_with(lit));
            if ok {
                at += lit.len();
            }
            ok
        };
        let mut id = [0u8; 21];
        let ok = eat(b" type=\"")
            && eat(f.ty.sandesh_type().as_str().as_bytes())
            && eat(b"\" identifier=\"")
            && eat(id_text(f.id, &mut id))
            && eat(b"\"")
            && f.annotations.iter().all(|(k, v)| {
                is_plain_name(k)
                    && !v.contains(['"', '<', '>', '&'])
                    && eat(b" ")
                    && eat(k.as_bytes())
                    && eat(b"=\"")
                    && eat(v.as_bytes())
                    && eat(b"\"")
            })
            && eat(b">");
        if !ok {
            return None;
        }
        self.pos += at;
        Some(idx)
    }

    /// Reads `<name>` with no attributes.
    fn open_plain(&mut self, name: &str) -> Result<(), DecodeError> {
        if self.eat_around("<", name, b'>') {
            return Ok(());
        }
        let at = self.pos;
        let tag = self.open_tag()?;
        if tag.name != name {
            return Err(DecodeError {
                offset: at,
                kind: DecodeErrorKind::WrongElement { expected: name.to_owned(), found: tag.name.to_owned() },
            });
        }
        if tag.n_attrs != 0 {
            return Err(DecodeError {
                offset: at,
                kind: DecodeErrorKind::Attributes {
                    element: name.to_owned(),
                    expected: String::new(),
                    found: tag.attrs_xml(),
                },
            });
        }
        Ok(())
    }

    /// Reads `</name>`.
    fn close(&mut self, name: &str) -> Result<(), DecodeError> {
        if self.eat_around("</", name, b'>') {
            return Ok(());
        }
        let at = self.pos;
        self.expect("</", "a close tag")?;
        let found = self.name("a close tag name")?;
        if found != name {
            return Err(DecodeError {
                offset: at,
                kind: DecodeErrorKind::WrongElement { expected: format!("/{name}"), found: format!("/{found}") },
            });
        }
        self.expect(">", "`>`")
    }

    /// Reads element text up to the next `<` (which must exist); `>` and `'` may not appear
    /// raw (writers always escape them), so accepted text re-encodes to the same bytes.
    fn text(&mut self) -> Result<&'a str, DecodeError> {
        let rest = self.rest();
        // ASCII bytes: never part of a multi-byte character.
        let end = rest.bytes().position(|b| matches!(b, b'<' | b'>' | b'\'')).unwrap_or(rest.len());
        if rest.as_bytes().get(end) != Some(&b'<') {
            self.pos += end;
            return Err(self.unexpected("`<` after element text"));
        }
        self.pos += end;
        Ok(&rest[..end])
    }
}

/// Decodes one struct's fields, up to (not including) its close tag.
fn decode_fields(r: &mut Reader<'_>, def: &'static StructDef) -> Result<StructValue, DecodeError> {
    let mut value = StructValue::empty(def);
    let mut next = 0; // index of the first field that may still come
    while !r.at_close() {
        let at = r.offset();
        let (idx, tag) = match r.open_field(def, next) {
            Some(idx) => (idx, None),
            None => {
                let tag = r.open_tag()?;
                let Some(idx) = def.field_index(tag.name) else {
                    return Err(DecodeError {
                        offset: at,
                        kind: DecodeErrorKind::UnknownField { strct: def.name, name: tag.name.to_owned() },
                    });
                };
                if idx < next {
                    return Err(DecodeError {
                        offset: at,
                        kind: DecodeErrorKind::FieldOrder { strct: def.name, field: def.fields[idx].name },
                    });
                }
                (idx, Some(tag))
            }
        };
        let f = &def.fields[idx];
        if let Some(missing) = def.fields[next..idx].iter().find(|g| !g.optional) {
            return Err(DecodeError {
                offset: at,
                kind: DecodeErrorKind::MissingField { strct: def.name, field: missing.name },
            });
        }
        if let Some(tag) = tag {
            check_field_attrs(&tag, f, at)?;
        }
        value.fields[idx] = Some(decode_value(r, &f.ty)?);
        r.close(f.name)?;
        next = idx + 1;
    }
    if let Some(missing) = def.fields[next..].iter().find(|g| !g.optional) {
        return Err(r.err(DecodeErrorKind::MissingField { strct: def.name, field: missing.name }));
    }
    Ok(value)
}

fn check_field_attrs(tag: &Tag<'_>, f: &FieldDef, at: usize) -> Result<(), DecodeError> {
    let mut id_buf = String::new();
    crate::encode::push_int(&mut id_buf, i64::from(f.id));
    let attrs = tag.attrs();
    let ok = attrs.len() == 2 + f.annotations.len()
        && attrs[0] == ("type", f.ty.sandesh_type().as_str())
        && attrs[1] == ("identifier", id_buf.as_str())
        && attrs[2..].iter().zip(f.annotations).all(|(a, b)| a == b);
    if ok {
        return Ok(());
    }
    let mut expected = vec![("type", f.ty.sandesh_type().as_str()), ("identifier", &id_buf)];
    expected.extend(f.annotations.iter().copied());
    Err(DecodeError {
        offset: at,
        kind: DecodeErrorKind::Attributes {
            element: f.name.to_owned(),
            expected: attrs_xml(&expected),
            found: tag.attrs_xml(),
        },
    })
}

/// Decodes the content of a field element of type `ty`.
fn decode_value(r: &mut Reader<'_>, ty: &FieldType) -> Result<Value, DecodeError> {
    match ty {
        FieldType::Struct(def) => {
            r.open_plain(def.name)?;
            let v = decode_fields(r, def)?;
            r.close(def.name)?;
            Ok(Value::Struct(v))
        }
        FieldType::List(e) | FieldType::Set(e) => {
            let tag_name = if matches!(ty, FieldType::List(_)) { "list" } else { "set" };
            let size = container_open(r, tag_name, &[("type", e)])?;
            let mut items = Vec::with_capacity(size.min(1024) as usize);
            for _ in 0..size {
                if r.at_close() {
                    return Err(r.err(DecodeErrorKind::SizeMismatch { declared: size, more: false }));
                }
                items.push(decode_element(r, e)?);
            }
            container_close(r, tag_name, size)?;
            Ok(if tag_name == "list" { Value::List(items) } else { Value::Set(items) })
        }
        FieldType::Map(k, v) => {
            let size = container_open(r, "map", &[("key", k), ("value", v)])?;
            let mut entries = Vec::with_capacity(size.min(1024) as usize);
            for _ in 0..size {
                if r.at_close() {
                    return Err(r.err(DecodeErrorKind::SizeMismatch { declared: size, more: false }));
                }
                let key = decode_element(r, k)?;
                let val = decode_element(r, v)?;
                entries.push((key, val));
            }
            container_close(r, "map", size)?;
            Ok(Value::Map(entries))
        }
        FieldType::Xml => {
            r.expect("<![CDATA[", "`<![CDATA[`")?;
            let rest = r.rest();
            let Some(end) = rest.find("]]>") else {
                r.pos = r.s.len();
                return Err(r.unexpected("`]]>`"));
            };
            r.pos += end + 3;
            Ok(Value::Xml(rest[..end].to_owned()))
        }
        _ => {
            let at = r.offset();
            let text = r.text()?;
            parse_scalar(ty.sandesh_type(), text).map_err(|kind| DecodeError { offset: at, kind })
        }
    }
}

/// Reads `<tag attr="T"… size="N">` and returns N.
fn container_open(
    r: &mut Reader<'_>,
    tag_name: &'static str,
    types: &[(&'static str, &FieldType)],
) -> Result<u32, DecodeError> {
    let at = r.offset();
    let tag = r.open_tag()?;
    if tag.name != tag_name {
        return Err(DecodeError {
            offset: at,
            kind: DecodeErrorKind::WrongElement { expected: tag_name.to_owned(), found: tag.name.to_owned() },
        });
    }
    let attrs = tag.attrs();
    let types_ok = attrs.len() == types.len() + 1
        && attrs.iter().zip(types).all(|((k, v), (ek, et))| k == ek && *v == et.sandesh_type().as_str());
    let size = match attrs.last() {
        Some(("size", n)) if types_ok => match parse_scalar(SandeshType::U32, n) {
            Ok(Value::U32(n)) => Some(n),
            _ => None,
        },
        _ => None,
    };
    size.ok_or_else(|| {
        let mut expected: Vec<(&str, &str)> = types.iter().map(|(k, t)| (*k, t.sandesh_type().as_str())).collect();
        expected.push(("size", "N"));
        DecodeError {
            offset: at,
            kind: DecodeErrorKind::Attributes {
                element: tag_name.to_owned(),
                expected: attrs_xml(&expected),
                found: tag.attrs_xml(),
            },
        }
    })
}

fn container_close(r: &mut Reader<'_>, tag_name: &str, size: u32) -> Result<(), DecodeError> {
    if !r.at_close() && r.rest().starts_with('<') {
        return Err(r.err(DecodeErrorKind::SizeMismatch { declared: size, more: true }));
    }
    r.close(tag_name)
}

fn decode_element(r: &mut Reader<'_>, ty: &FieldType) -> Result<Value, DecodeError> {
    match ty {
        FieldType::Struct(def) => {
            r.open_plain(def.name)?;
            let v = decode_fields(r, def)?;
            r.close(def.name)?;
            Ok(Value::Struct(v))
        }
        _ => {
            r.open_plain("element")?;
            let v = decode_value(r, ty)?;
            r.close("element")?;
            Ok(v)
        }
    }
}

fn bad(ty: SandeshType, text: &str) -> DecodeErrorKind {
    let mut t: String = text.chars().take(64).collect();
    if t.len() < text.len() {
        t.push('…');
    }
    DecodeErrorKind::BadValue { ty, text: t }
}

/// Canonical unsigned decimal: digits only, no leading zero unless the number is 0.
fn parse_canonical_u64(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    text.parse().ok()
}

/// Canonical signed decimal: as unsigned with an optional `-`, and no `-0`.
fn parse_canonical_i64(text: &str) -> Option<i64> {
    match text.strip_prefix('-') {
        Some(mag) => {
            let m = parse_canonical_u64(mag)?;
            if m == 0 {
                return None;
            }
            0i64.checked_sub_unsigned(m).or((m == 1u64 << 63).then_some(i64::MIN))
        }
        None => i64::try_from(parse_canonical_u64(text)?).ok(),
    }
}

/// Parses the text of a base-type value (already located between tags, still escaped).
pub fn parse_scalar(ty: SandeshType, text: &str) -> Result<Value, DecodeErrorKind> {
    let int = |lo: i64, hi: i64| parse_canonical_i64(text).filter(|n| (lo..=hi).contains(n));
    let uint = |hi: u64| parse_canonical_u64(text).filter(|n| *n <= hi);
    let v = match ty {
        SandeshType::Bool => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        SandeshType::Byte => int(i8::MIN.into(), i8::MAX.into()).map(|n| Value::Byte(n as i8)),
        SandeshType::I16 => int(i16::MIN.into(), i16::MAX.into()).map(|n| Value::I16(n as i16)),
        SandeshType::I32 => int(i32::MIN.into(), i32::MAX.into()).map(|n| Value::I32(n as i32)),
        SandeshType::I64 => int(i64::MIN, i64::MAX).map(Value::I64),
        SandeshType::U16 => uint(u16::MAX.into()).map(|n| Value::U16(n as u16)),
        SandeshType::U32 => uint(u32::MAX.into()).map(|n| Value::U32(n as u32)),
        SandeshType::U64 => uint(u64::MAX).map(Value::U64),
        SandeshType::Ipv4 => uint(u32::MAX.into()).map(|n| Value::Ipv4(Ipv4Addr::from(n as u32))),
        SandeshType::IpAddr => text.parse::<IpAddr>().ok().filter(|a| a.to_string() == text).map(Value::IpAddr),
        SandeshType::Double => {
            // Digits, sign, point and exponent only (Rust would also take `inf`/`NaN`).
            if text.is_empty()
                || !text.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
            {
                None
            } else {
                text.parse::<f64>().ok().map(Value::Double)
            }
        }
        SandeshType::String => Some(Value::String(unescape_strict(text)?.into_owned())),
        SandeshType::Uuid => parse_uuid(text).map(Value::Uuid),
        SandeshType::Xml
        | SandeshType::Struct
        | SandeshType::Map
        | SandeshType::Set
        | SandeshType::List
        | SandeshType::Sandesh => None,
    };
    v.ok_or_else(|| bad(ty, text))
}

/// Parses lower-case `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
pub fn parse_uuid(text: &str) -> Option<[u8; 16]> {
    let b = text.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let mut n = 0;
    let mut i = 0;
    while i < 36 {
        if matches!(i, 8 | 13 | 18 | 23) {
            if b[i] != b'-' {
                return None;
            }
            i += 1;
            continue;
        }
        let hex = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[n] = hex(b[i])? << 4 | hex(b[i + 1])?;
        n += 1;
        i += 2;
    }
    Some(out)
}

/// Decodes a standalone struct element `<Name>…</Name>` that must make up all of `text`.
pub fn decode_struct(text: &str, def: &'static StructDef) -> Result<StructValue, DecodeError> {
    let mut r = Reader::new(text);
    r.open_plain(def.name)?;
    let v = decode_fields(&mut r, def)?;
    r.close(def.name)?;
    if !r.at_end() {
        return Err(r.err(DecodeErrorKind::TrailingData(text.len() - r.offset())));
    }
    Ok(v)
}

/// A decoded frame body in its dynamic form.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicMessage {
    /// The `SandeshHeader` struct.
    pub header: StructValue,
    /// The message definition found by name.
    pub def: &'static MessageDef,
    /// The message body.
    pub body: StructValue,
}

/// Decodes a frame body (the text between the frame tags): `<SandeshHeader>` per
/// `header_def`, then `<Name type="sandesh">` for one of `messages`, then nothing else. The
/// header's `Type` (field 8) must equal the message definition's kind.
pub fn decode_body_with(
    body: &[u8],
    header_def: &'static StructDef,
    messages: &[&'static MessageDef],
) -> Result<DynamicMessage, DecodeError> {
    let text =
        std::str::from_utf8(body).map_err(|e| DecodeError { offset: e.valid_up_to(), kind: DecodeErrorKind::Utf8 })?;
    let mut r = Reader::new(text);
    r.open_plain(header_def.name)?;
    let header = decode_fields(&mut r, header_def)?;
    r.close(header_def.name)?;
    let at = r.offset();
    let tag = r.open_tag()?;
    let Some(def) = messages.iter().copied().find(|m| m.body.name == tag.name) else {
        return Err(DecodeError { offset: at, kind: DecodeErrorKind::UnknownMessage(tag.name.to_owned()) });
    };
    if tag.attrs() != [("type", "sandesh")] {
        return Err(DecodeError {
            offset: at,
            kind: DecodeErrorKind::Attributes {
                element: tag.name.to_owned(),
                expected: "type=\"sandesh\"".to_owned(),
                found: tag.attrs_xml(),
            },
        });
    }
    let msg = decode_fields(&mut r, def.body)?;
    r.close(def.body.name)?;
    if !r.at_end() {
        return Err(r.err(DecodeErrorKind::TrailingData(text.len() - r.offset())));
    }
    if let Some(Value::I32(t)) =
        header_def.fields.iter().position(|f| f.id == 8).and_then(|i| header.fields[i].as_ref())
    {
        if *t != def.kind.code() {
            return Err(DecodeError {
                offset: 0,
                kind: DecodeErrorKind::HeaderType { message: def.body.name, expected: def.kind.code(), found: *t },
            });
        }
    }
    Ok(DynamicMessage { header, def, body: msg })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_integers() {
        assert_eq!(parse_scalar(SandeshType::I16, "-31743"), Ok(Value::I16(-31743)));
        assert_eq!(parse_scalar(SandeshType::Byte, "-128"), Ok(Value::Byte(-128)));
        assert_eq!(parse_scalar(SandeshType::I64, "-9223372036854775808"), Ok(Value::I64(i64::MIN)));
        assert_eq!(parse_scalar(SandeshType::U64, "18446744073709551615"), Ok(Value::U64(u64::MAX)));
        for (ty, text) in [
            (SandeshType::Byte, "128"),
            (SandeshType::Byte, "-129"),
            (SandeshType::I32, "007"),
            (SandeshType::I32, "-0"),
            (SandeshType::I32, "+1"),
            (SandeshType::I32, " 1"),
            (SandeshType::I32, ""),
            (SandeshType::U16, "-1"),
            (SandeshType::U16, "65536"),
            (SandeshType::U64, "18446744073709551616"),
            (SandeshType::I64, "9223372036854775808"),
            (SandeshType::Bool, "True"),
            (SandeshType::Bool, "1"),
            (SandeshType::IpAddr, "011.0.0.4"),
            (SandeshType::IpAddr, "FE80::1"),
            (SandeshType::Uuid, "ED6BDC5B-6EBC-48CA-B8FC-D483FDBD89FC"),
            (SandeshType::Uuid, "ed6bdc5b6ebc48cab8fcd483fdbd89fc"),
            (SandeshType::Double, "NaN"),
        ] {
            assert!(matches!(parse_scalar(ty, text), Err(DecodeErrorKind::BadValue { .. })), "{ty} {text:?}");
        }
        assert_eq!(parse_scalar(SandeshType::IpAddr, "fe80::1"), Ok(Value::IpAddr("fe80::1".parse().unwrap())));
        assert_eq!(parse_scalar(SandeshType::Ipv4, "167772164"), Ok(Value::Ipv4(Ipv4Addr::new(10, 0, 0, 4))));
    }

    #[test]
    fn strict_strings() {
        assert_eq!(parse_scalar(SandeshType::String, "a&amp;b\"c"), Ok(Value::String("a&b\"c".into())));
        assert!(matches!(parse_scalar(SandeshType::String, "a&quot;"), Err(DecodeErrorKind::Escape(_))));
    }

    #[test]
    fn identifier_text_is_canonical() {
        for id in [0, 1, 9, 10, -1, -10, 999, i16::MAX, i16::MIN] {
            let mut want = String::new();
            crate::encode::push_int(&mut want, i64::from(id));
            assert_eq!(id_text(id, &mut [0; 21]), want.as_bytes());
        }
    }

    /// A field tag the fast path does not take is read by the general path, which says
    /// what is wrong with it.
    #[test]
    fn field_tags_off_the_fast_path() {
        use crate::model::{FieldDef, StructDef};
        static DEF: StructDef = StructDef {
            name: "S",
            fields: &[
                FieldDef { id: 1, name: "a", ty: FieldType::I32, optional: true, annotations: &[] },
                FieldDef { id: -2, name: "b", ty: FieldType::String, optional: false, annotations: &[("key", "k")] },
            ],
        };
        let dec = |t: &str| decode_struct(t, &DEF);
        let ok =
            dec(r#"<S><a type="i32" identifier="1">5</a><b type="string" identifier="-2" key="k">x</b></S>"#).unwrap();
        assert_eq!(ok.fields, [Some(Value::I32(5)), Some(Value::String("x".into()))]);
        assert!(dec(r#"<S><b type="string" identifier="-2" key="k">x</b></S>"#).is_ok());
        let kind = |t: &str| dec(t).unwrap_err().kind;
        assert!(matches!(
            kind(r#"<S><b identifier="-2" type="string" key="k">x</b></S>"#),
            DecodeErrorKind::Attributes { .. }
        ));
        assert!(matches!(kind(r#"<S><b type="string" identifier="-2">x</b></S>"#), DecodeErrorKind::Attributes { .. }));
        assert!(matches!(
            kind(r#"<S><b type="string" identifier="-2" key="k">x</b><a type="i32" identifier="1">5</a></S>"#),
            DecodeErrorKind::FieldOrder { field: "a", .. }
        ));
        assert!(matches!(
            kind(r#"<S><a type="i32" identifier="1">5</a></S>"#),
            DecodeErrorKind::MissingField { field: "b", .. }
        ));
        assert!(matches!(kind(r#"<S><c type="i32" identifier="3">5</c></S>"#), DecodeErrorKind::UnknownField { .. }));
        assert!(matches!(kind(r#"<S><a type="i32" identifier="1">5</ab></S>"#), DecodeErrorKind::WrongElement { .. }));
        assert!(matches!(kind(r#"<S><a type="i32" identifier="1">5</a >"#), DecodeErrorKind::Whitespace { .. }));
    }

    #[test]
    fn reader_rejects_whitespace_and_self_closing() {
        let mut r = Reader::new("<a  b=\"1\">");
        assert!(matches!(r.open_tag().map(|_| ()).unwrap_err().kind, DecodeErrorKind::Whitespace { .. }));
        let mut r = Reader::new("<a b=\"1\" >");
        assert!(matches!(r.open_tag().map(|_| ()).unwrap_err().kind, DecodeErrorKind::Unexpected { .. }));
        let mut r = Reader::new(" <a>");
        assert!(matches!(r.open_tag().map(|_| ()).unwrap_err().kind, DecodeErrorKind::Whitespace { .. }));
        let mut r = Reader::new("<a/>");
        assert!(r.open_tag().is_err());
        let mut r = Reader::new("<a b='1'>");
        assert!(r.open_tag().is_err());
    }
}
