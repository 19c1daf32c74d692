//! The IPFIX message format of RFC 7011 §3: checked views over byte buffers ([`Message`],
//! [`Set`]) in the style of smoltcp (`new_unchecked`, `new_checked`, accessors and setters,
//! never a panic on a checked view), and high-level representations that parse and emit
//! ([`MessageRepr`], [`SetRepr`], [`TemplateRecord`], [`FieldSpec`]).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-------------------------------+-------------------------------+
//! |       Version Number (10)     |            Length             |  message header
//! +-------------------------------+-------------------------------+  (RFC 7011 §3.1)
//! |                           Export Time                         |
//! +---------------------------------------------------------------+
//! |                       Sequence Number                         |
//! +---------------------------------------------------------------+
//! |                    Observation Domain ID                      |
//! +-------------------------------+-------------------------------+
//! |          Set ID               |          Length               |  set header (§3.3.2)
//! +-------------------------------+-------------------------------+
//! |   Template ID (>= 256)        |         Field Count           |  template record
//! +-+-----------------------------+-------------------------------+  header (§3.4.1)
//! |E|  Information Element id.    |        Field Length           |  field specifier
//! +-+-----------------------------+-------------------------------+  (§3.2), with the
//! |                  Enterprise Number (when E)                   |  enterprise number
//! +---------------------------------------------------------------+  when E is set
//! ```
//!
//! Set ID 2 is a Template Set, 3 an Options Template Set, 256 and up a Data Set of that
//! template; 0, 1 and 4..=255 are reserved (§3.3.2). A field of length 65535 in a template
//! is variable-length (§7): in the data record one length octet, or 255 and two length
//! octets for 255 bytes and more ([`put_varlen`], [`take_varlen`]).
//!
//! Data records are not split here: their layout is their template's, so a [`Set`] holds
//! them as bytes and [`DataRecords`] walks them with a template.

use std::ops::Range;
use thiserror::Error;

/// The version number of IPFIX messages.
pub const VERSION: u16 = 10;
/// Length of the message header.
pub const MESSAGE_HEADER_LEN: usize = 16;
/// Length of a set header.
pub const SET_HEADER_LEN: usize = 4;
/// Set ID of a Template Set.
pub const TEMPLATE_SET_ID: u16 = 2;
/// Set ID of an Options Template Set.
pub const OPTIONS_TEMPLATE_SET_ID: u16 = 3;
/// Lowest Template ID (and Data Set ID).
pub const MIN_TEMPLATE_ID: u16 = 256;
/// The field length that marks a variable-length field in a template.
pub const VARLEN: u16 = 65535;
/// The enterprise bit of a field specifier's element id.
pub const ENTERPRISE_BIT: u16 = 0x8000;

/// What is wrong with a buffer that does not hold a well-formed IPFIX message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// Fewer bytes than the structure needs.
    #[error("truncated {what}: needs {need} bytes, {have} left")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes it needs.
        need: usize,
        /// Bytes there are.
        have: usize,
    },
    /// A version other than 10.
    #[error("version {0}, not 10 (IPFIX)")]
    Version(u16),
    /// A length field below the header it counts.
    #[error("{what} length {length} is below its {min}-byte header")]
    ShortLength {
        /// Message or set.
        what: &'static str,
        /// The length field.
        length: usize,
        /// The header's size.
        min: usize,
    },
    /// A reserved set ID (0, 1, 4..=255).
    #[error("set id {0} is reserved")]
    ReservedSetId(u16),
    /// A template ID below 256.
    #[error("template id {0} is below 256")]
    TemplateId(u16),
    /// A data record that ends inside a field.
    #[error("data record of template {template}: field {field} needs {need} bytes, {have} left")]
    RecordTruncated {
        /// The template.
        template: u16,
        /// Index of the field in the template.
        field: usize,
        /// Bytes it needs.
        need: usize,
        /// Bytes there are.
        have: usize,
    },
    /// A template with no fields used for data (a withdrawal cannot describe records).
    #[error("template {0} has no fields")]
    EmptyTemplate(u16),
}

fn need(what: &'static str, buf: &[u8], n: usize) -> Result<(), WireError> {
    if buf.len() < n {
        Err(WireError::Truncated { what, need: n, have: buf.len() })
    } else {
        Ok(())
    }
}

fn get_u16(b: &[u8], r: Range<usize>) -> u16 {
    u16::from_be_bytes([b[r.start], b[r.start + 1]])
}

fn get_u32(b: &[u8], r: Range<usize>) -> u32 {
    u32::from_be_bytes([b[r.start], b[r.start + 1], b[r.start + 2], b[r.start + 3]])
}

mod field {
    use std::ops::Range;
    pub const VERSION: Range<usize> = 0..2;
    pub const LENGTH: Range<usize> = 2..4;
    pub const EXPORT_TIME: Range<usize> = 4..8;
    pub const SEQUENCE: Range<usize> = 8..12;
    pub const DOMAIN: Range<usize> = 12..16;
    pub const SET_ID: Range<usize> = 0..2;
    pub const SET_LENGTH: Range<usize> = 2..4;
}

// ---------------------------------------------------------------- message view

/// A checked view of an IPFIX message (its header and the sets after it).
#[derive(Debug, Clone)]
pub struct Message<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Message<T> {
    /// A view without checks: accessors may panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Message<T> {
        Message { buffer }
    }

    /// A view of a buffer that holds at least the header and the `length` it announces.
    pub fn new_checked(buffer: T) -> Result<Message<T>, WireError> {
        let m = Message::new_unchecked(buffer);
        m.check_len()?;
        Ok(m)
    }

    /// Checks that the header is there, that its length covers the header and that the
    /// buffer holds that many bytes (it may hold more: the next message of a TCP stream).
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        need("message header", b, MESSAGE_HEADER_LEN)?;
        let len = usize::from(self.length());
        if len < MESSAGE_HEADER_LEN {
            return Err(WireError::ShortLength { what: "message", length: len, min: MESSAGE_HEADER_LEN });
        }
        need("message", b, len)
    }

    /// The buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Version number (10 for IPFIX).
    pub fn version(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::VERSION)
    }

    /// Total length of the message, header included.
    pub fn length(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::LENGTH)
    }

    /// Export time, seconds since the UNIX epoch.
    pub fn export_time(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::EXPORT_TIME)
    }

    /// Data records sent in this transport session from this domain before this message,
    /// modulo 2^32.
    pub fn sequence_number(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::SEQUENCE)
    }

    /// Observation Domain ID.
    pub fn observation_domain_id(&self) -> u32 {
        get_u32(self.buffer.as_ref(), field::DOMAIN)
    }

    /// The sets (the bytes between the header and `length`).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[MESSAGE_HEADER_LEN..usize::from(self.length())]
    }

    /// The sets, each checked as it is reached.
    pub fn sets(&self) -> SetIter<'_> {
        SetIter { rest: self.payload(), failed: false }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Message<T> {
    fn put_u16(&mut self, r: Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    fn put_u32(&mut self, r: Range<usize>, v: u32) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the version number.
    pub fn set_version(&mut self, v: u16) {
        self.put_u16(field::VERSION, v);
    }

    /// Sets the total length.
    pub fn set_length(&mut self, v: u16) {
        self.put_u16(field::LENGTH, v);
    }

    /// Sets the export time.
    pub fn set_export_time(&mut self, v: u32) {
        self.put_u32(field::EXPORT_TIME, v);
    }

    /// Sets the sequence number.
    pub fn set_sequence_number(&mut self, v: u32) {
        self.put_u32(field::SEQUENCE, v);
    }

    /// Sets the Observation Domain ID.
    pub fn set_observation_domain_id(&mut self, v: u32) {
        self.put_u32(field::DOMAIN, v);
    }

    /// The bytes after the header, up to the end of the buffer.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[MESSAGE_HEADER_LEN..]
    }
}

/// The sets of a message, each checked; after an error the iterator ends.
#[derive(Debug, Clone)]
pub struct SetIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for SetIter<'a> {
    type Item = Result<Set<&'a [u8]>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        match Set::new_checked(self.rest) {
            Ok(s) => {
                let len = usize::from(s.length());
                let (this, rest) = self.rest.split_at(len);
                self.rest = rest;
                Some(Ok(Set::new_unchecked(this)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

// ---------------------------------------------------------------- set view

/// A checked view of one set (header and body).
#[derive(Debug, Clone)]
pub struct Set<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Set<T> {
    /// A view without checks.
    pub const fn new_unchecked(buffer: T) -> Set<T> {
        Set { buffer }
    }

    /// A view of a buffer that holds the set header and the `length` it announces, with a
    /// set ID that is not reserved.
    pub fn new_checked(buffer: T) -> Result<Set<T>, WireError> {
        let s = Set::new_unchecked(buffer);
        s.check_len()?;
        let id = s.set_id();
        if id < MIN_TEMPLATE_ID && id != TEMPLATE_SET_ID && id != OPTIONS_TEMPLATE_SET_ID {
            return Err(WireError::ReservedSetId(id));
        }
        Ok(s)
    }

    /// Checks the header and the length.
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        need("set header", b, SET_HEADER_LEN)?;
        let len = usize::from(self.length());
        if len < SET_HEADER_LEN {
            return Err(WireError::ShortLength { what: "set", length: len, min: SET_HEADER_LEN });
        }
        need("set", b, len)
    }

    /// Set ID: 2 template, 3 options template, 256 and up data of that template.
    pub fn set_id(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SET_ID)
    }

    /// Length of the set, header and padding included.
    pub fn length(&self) -> u16 {
        get_u16(self.buffer.as_ref(), field::SET_LENGTH)
    }

    /// The records (and padding) after the header.
    pub fn body(&self) -> &[u8] {
        &self.buffer.as_ref()[SET_HEADER_LEN..usize::from(self.length())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Set<T> {
    /// Sets the set ID.
    pub fn set_set_id(&mut self, v: u16) {
        self.buffer.as_mut()[field::SET_ID].copy_from_slice(&v.to_be_bytes());
    }

    /// Sets the length.
    pub fn set_length(&mut self, v: u16) {
        self.buffer.as_mut()[field::SET_LENGTH].copy_from_slice(&v.to_be_bytes());
    }
}

// ---------------------------------------------------------------- templates

/// One field of a template: an information element, its length in the records, and its
/// enterprise number when it is enterprise-specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldSpec {
    /// Information element identifier (15 bits, without the enterprise bit).
    pub id: u16,
    /// Length in the data records, or [`VARLEN`].
    pub length: u16,
    /// Private enterprise number of an enterprise-specific element.
    pub enterprise: Option<u32>,
}

impl FieldSpec {
    /// Bytes of this specifier in a template.
    pub fn wire_len(&self) -> usize {
        if self.enterprise.is_some() {
            8
        } else {
            4
        }
    }

    /// Appends the specifier.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let id = self.id & !ENTERPRISE_BIT;
        match self.enterprise {
            Some(pen) => {
                out.extend_from_slice(&(id | ENTERPRISE_BIT).to_be_bytes());
                out.extend_from_slice(&self.length.to_be_bytes());
                out.extend_from_slice(&pen.to_be_bytes());
            }
            None => {
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&self.length.to_be_bytes());
            }
        }
    }

    /// Parses one specifier from the start of `b`; returns it and the bytes it took.
    pub fn parse(b: &[u8]) -> Result<(FieldSpec, usize), WireError> {
        need("field specifier", b, 4)?;
        let raw = get_u16(b, 0..2);
        let length = get_u16(b, 2..4);
        if raw & ENTERPRISE_BIT == 0 {
            return Ok((FieldSpec { id: raw, length, enterprise: None }, 4));
        }
        need("enterprise field specifier", b, 8)?;
        Ok((FieldSpec { id: raw & !ENTERPRISE_BIT, length, enterprise: Some(get_u32(b, 4..8)) }, 8))
    }
}

/// A template record: its ID and field specifiers (none: a template withdrawal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRecord {
    /// Template ID, 256 and up.
    pub id: u16,
    /// The fields, in record order.
    pub fields: Vec<FieldSpec>,
}

impl TemplateRecord {
    /// Bytes of this record in a template set.
    pub fn wire_len(&self) -> usize {
        4 + self.fields.iter().map(FieldSpec::wire_len).sum::<usize>()
    }

    /// Appends the record.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&(self.fields.len() as u16).to_be_bytes());
        for f in &self.fields {
            f.emit(out);
        }
    }

    /// Parses the template records of a Template Set's body (padding after the last one is
    /// allowed: fewer than 4 bytes, or zeros).
    pub fn parse_set(body: &[u8]) -> Result<Vec<TemplateRecord>, WireError> {
        let mut out = Vec::new();
        let mut b = body;
        while b.len() >= 4 && !b.iter().all(|&x| x == 0) {
            let id = get_u16(b, 0..2);
            let count = usize::from(get_u16(b, 2..4));
            if id < MIN_TEMPLATE_ID {
                return Err(WireError::TemplateId(id));
            }
            let mut off = 4;
            let mut fields = Vec::with_capacity(count);
            for _ in 0..count {
                let (f, n) = FieldSpec::parse(&b[off..])?;
                fields.push(f);
                off += n;
            }
            out.push(TemplateRecord { id, fields });
            b = &b[off..];
        }
        Ok(out)
    }

    /// Fewest bytes a data record of this template takes (a variable-length field at least
    /// its length octet).
    pub fn min_record_len(&self) -> usize {
        self.fields.iter().map(|f| if f.length == VARLEN { 1 } else { usize::from(f.length) }).sum()
    }
}

// ---------------------------------------------------------------- variable-length fields

/// Appends the length prefix of a variable-length field of `len` bytes (RFC 7011 §7): one
/// octet below 255, else 255 and two octets. Values longer than 65535 bytes do not fit a
/// message; callers cut them (see [`crate::ie::IeValue`] for `String`).
pub fn put_varlen(out: &mut Vec<u8>, len: usize) {
    if len < 255 {
        out.push(len as u8);
    } else {
        out.push(255);
        out.extend_from_slice(&(len.min(usize::from(u16::MAX)) as u16).to_be_bytes());
    }
}

/// Reads a variable-length prefix at the start of `b`: (value length, prefix length).
pub fn take_varlen(b: &[u8]) -> Option<(usize, usize)> {
    match *b.first()? {
        255 => Some((usize::from(u16::from_be_bytes([*b.get(1)?, *b.get(2)?])), 3)),
        n => Some((usize::from(n), 1)),
    }
}

/// The data records of one Data Set's body, split with their template into the bytes of
/// each field. Padding after the last record (fewer bytes than the smallest record) ends the
/// walk; after an error the iterator ends.
#[derive(Debug, Clone)]
pub struct DataRecords<'a, 't> {
    template: &'t TemplateRecord,
    rest: &'a [u8],
    failed: bool,
}

impl<'a, 't> DataRecords<'a, 't> {
    /// The records of `body` (a Data Set's body) laid out by `template`.
    pub fn new(template: &'t TemplateRecord, body: &'a [u8]) -> DataRecords<'a, 't> {
        DataRecords { template, rest: body, failed: false }
    }
}

impl<'a> Iterator for DataRecords<'a, '_> {
    type Item = Result<Vec<(FieldSpec, &'a [u8])>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let t = self.template;
        if self.failed || self.rest.is_empty() || self.rest.len() < t.min_record_len() {
            return None;
        }
        if t.fields.is_empty() {
            self.failed = true;
            return Some(Err(WireError::EmptyTemplate(t.id)));
        }
        let mut b = self.rest;
        let mut out = Vec::with_capacity(t.fields.len());
        for (i, f) in t.fields.iter().enumerate() {
            let (len, skip) = if f.length == VARLEN {
                match take_varlen(b) {
                    Some(x) => x,
                    None => {
                        self.failed = true;
                        return Some(Err(WireError::RecordTruncated {
                            template: t.id,
                            field: i,
                            need: 3,
                            have: b.len(),
                        }));
                    }
                }
            } else {
                (usize::from(f.length), 0)
            };
            if b.len() < skip + len {
                self.failed = true;
                return Some(Err(WireError::RecordTruncated {
                    template: t.id,
                    field: i,
                    need: skip + len,
                    have: b.len(),
                }));
            }
            out.push((*f, &b[skip..skip + len]));
            b = &b[skip + len..];
        }
        self.rest = b;
        Some(Ok(out))
    }
}

// ---------------------------------------------------------------- representations

/// One set, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetRepr {
    /// A Template Set.
    Template(Vec<TemplateRecord>),
    /// An Options Template Set (kept as its body: this crate neither sends nor reads options).
    OptionsTemplate(Vec<u8>),
    /// A Data Set: its template and its records as bytes (padding included).
    Data {
        /// The template ID (the set ID).
        template_id: u16,
        /// The records.
        records: Vec<u8>,
    },
}

impl SetRepr {
    /// Parses a checked set.
    pub fn parse<T: AsRef<[u8]>>(set: &Set<T>) -> Result<SetRepr, WireError> {
        Ok(match set.set_id() {
            TEMPLATE_SET_ID => SetRepr::Template(TemplateRecord::parse_set(set.body())?),
            OPTIONS_TEMPLATE_SET_ID => SetRepr::OptionsTemplate(set.body().to_vec()),
            id if id >= MIN_TEMPLATE_ID => SetRepr::Data { template_id: id, records: set.body().to_vec() },
            id => return Err(WireError::ReservedSetId(id)),
        })
    }

    /// Bytes of the set, header included.
    pub fn buffer_len(&self) -> usize {
        SET_HEADER_LEN
            + match self {
                SetRepr::Template(t) => t.iter().map(TemplateRecord::wire_len).sum(),
                SetRepr::OptionsTemplate(b) => b.len(),
                SetRepr::Data { records, .. } => records.len(),
            }
    }

    /// Appends the set.
    pub fn emit(&self, out: &mut Vec<u8>) {
        let id = match self {
            SetRepr::Template(_) => TEMPLATE_SET_ID,
            SetRepr::OptionsTemplate(_) => OPTIONS_TEMPLATE_SET_ID,
            SetRepr::Data { template_id, .. } => *template_id,
        };
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(self.buffer_len() as u16).to_be_bytes());
        match self {
            SetRepr::Template(t) => t.iter().for_each(|t| t.emit(out)),
            SetRepr::OptionsTemplate(b) | SetRepr::Data { records: b, .. } => out.extend_from_slice(b),
        }
    }
}

/// A whole message, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRepr {
    /// Export time, seconds since the epoch.
    pub export_time: u32,
    /// Sequence number.
    pub sequence_number: u32,
    /// Observation Domain ID.
    pub observation_domain_id: u32,
    /// The sets, in order.
    pub sets: Vec<SetRepr>,
}

impl MessageRepr {
    /// Parses a checked message: version 10, every set well-formed.
    pub fn parse<T: AsRef<[u8]>>(msg: &Message<T>) -> Result<MessageRepr, WireError> {
        msg.check_len()?;
        if msg.version() != VERSION {
            return Err(WireError::Version(msg.version()));
        }
        let sets = msg.sets().map(|s| s.and_then(|s| SetRepr::parse(&s))).collect::<Result<_, _>>()?;
        Ok(MessageRepr {
            export_time: msg.export_time(),
            sequence_number: msg.sequence_number(),
            observation_domain_id: msg.observation_domain_id(),
            sets,
        })
    }

    /// Bytes of the message.
    pub fn buffer_len(&self) -> usize {
        MESSAGE_HEADER_LEN + self.sets.iter().map(SetRepr::buffer_len).sum::<usize>()
    }

    /// Appends the message (at most 65535 bytes: longer ones do not fit the length field).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + MESSAGE_HEADER_LEN, 0);
        for s in &self.sets {
            s.emit(out);
        }
        let len = (out.len() - start) as u16;
        let mut m = Message::new_unchecked(&mut out[start..]);
        m.set_version(VERSION);
        m.set_length(len);
        m.set_export_time(self.export_time);
        m.set_sequence_number(self.sequence_number);
        m.set_observation_domain_id(self.observation_domain_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A message written out by hand from RFC 7011 §3: one template (id 256: IE 8 length 4,
    /// IE 2 length 8, enterprise IE 1 of PEN 32473 variable-length) and one data set of that
    /// template with two records.
    fn hand_made() -> Vec<u8> {
        let mut v = vec![
            0x00, 0x0a, 0x00, 0x00, // version 10, length (patched below)
            0x65, 0x00, 0x00, 0x01, // export time
            0x00, 0x00, 0x00, 0x07, // sequence number 7
            0x00, 0x00, 0x00, 0x2a, // domain 42
            0x00, 0x02, 0x00, 0x18, // template set, 24 bytes
            0x01, 0x00, 0x00, 0x03, // template 256, 3 fields
            0x00, 0x08, 0x00, 0x04, // sourceIPv4Address, 4
            0x00, 0x02, 0x00, 0x08, // packetDeltaCount, 8
            0x80, 0x01, 0xff, 0xff, // enterprise IE 1, variable length
            0x00, 0x00, 0x7e, 0xd9, // PEN 32473
            0x01, 0x00, 0x00, 0x23, // data set of 256, 35 bytes
            10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 2, b'a', b'b', // record 1
            10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 1, 0, 0, // record 2 (empty string)
            0, 0, 0, // padding
        ];
        let len = v.len() as u16;
        v[2..4].copy_from_slice(&len.to_be_bytes());
        v
    }

    fn template() -> TemplateRecord {
        TemplateRecord {
            id: 256,
            fields: vec![
                FieldSpec { id: 8, length: 4, enterprise: None },
                FieldSpec { id: 2, length: 8, enterprise: None },
                FieldSpec { id: 1, length: VARLEN, enterprise: Some(32473) },
            ],
        }
    }

    #[test]
    fn parses_a_hand_made_message_and_emits_it_byte_for_byte() {
        let bytes = hand_made();
        let m = Message::new_checked(&bytes[..]).unwrap();
        assert_eq!((m.version(), m.sequence_number(), m.observation_domain_id()), (10, 7, 42));
        let repr = MessageRepr::parse(&m).unwrap();
        assert_eq!(repr.sets.len(), 2);
        assert_eq!(repr.sets[0], SetRepr::Template(vec![template()]));
        let SetRepr::Data { template_id, records } = &repr.sets[1] else { panic!("{repr:?}") };
        assert_eq!(*template_id, 256);
        let recs: Vec<_> = DataRecords::new(&template(), records).collect::<Result<_, _>>().unwrap();
        assert_eq!(recs.len(), 2, "the 3 padding bytes are not a record");
        assert_eq!(recs[0][0].1, &[10, 0, 0, 1]);
        assert_eq!(recs[0][1].1, &5u64.to_be_bytes());
        assert_eq!(recs[0][2].1, b"ab");
        assert_eq!(recs[1][2].1, b"");
        assert_eq!(repr.buffer_len(), bytes.len());
        let mut out = Vec::new();
        repr.emit(&mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn checked_views_refuse_what_is_not_there() {
        let bytes = hand_made();
        for cut in 0..MESSAGE_HEADER_LEN {
            assert!(matches!(Message::new_checked(&bytes[..cut]), Err(WireError::Truncated { .. })), "{cut}");
        }
        // The announced length is longer than the buffer.
        assert!(matches!(Message::new_checked(&bytes[..bytes.len() - 1]), Err(WireError::Truncated { .. })));
        // A length below the header.
        let mut b = bytes.clone();
        b[2..4].copy_from_slice(&8u16.to_be_bytes());
        assert_eq!(
            Message::new_checked(&b[..]).unwrap_err(),
            WireError::ShortLength { what: "message", length: 8, min: 16 }
        );
        // Version 9 (NetFlow v9) is not IPFIX.
        let mut b = bytes.clone();
        b[1] = 9;
        assert_eq!(MessageRepr::parse(&Message::new_checked(&b[..]).unwrap()), Err(WireError::Version(9)));
        // A set running past the message.
        let mut b = bytes.clone();
        b[18..20].copy_from_slice(&200u16.to_be_bytes());
        assert!(matches!(MessageRepr::parse(&Message::new_unchecked(&b[..])), Err(WireError::Truncated { .. })));
        // A set length below its header, and a reserved set id.
        let mut b = bytes.clone();
        b[18..20].copy_from_slice(&2u16.to_be_bytes());
        assert!(matches!(MessageRepr::parse(&Message::new_unchecked(&b[..])), Err(WireError::ShortLength { .. })));
        let mut b = bytes.clone();
        b[16..18].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(MessageRepr::parse(&Message::new_unchecked(&b[..])), Err(WireError::ReservedSetId(4)));
        // A template id below 256.
        let mut b = bytes.clone();
        b[20..22].copy_from_slice(&255u16.to_be_bytes());
        assert_eq!(MessageRepr::parse(&Message::new_unchecked(&b[..])), Err(WireError::TemplateId(255)));
        // An enterprise specifier cut before its PEN.
        assert!(matches!(FieldSpec::parse(&[0x80, 1, 0, 4, 0]), Err(WireError::Truncated { .. })));
    }

    #[test]
    fn a_record_that_ends_inside_a_field_is_an_error() {
        let t = template();
        // Fixed part complete, varlen prefix says 9 bytes, 2 follow.
        let body = [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 9, b'a', b'b'];
        let mut it = DataRecords::new(&t, &body);
        assert_eq!(it.next(), Some(Err(WireError::RecordTruncated { template: 256, field: 2, need: 10, have: 3 })));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn variable_length_prefixes_follow_section_7() {
        for (len, prefix) in
            [(0usize, vec![0u8]), (254, vec![254]), (255, vec![255, 0, 255]), (1000, vec![255, 3, 232])]
        {
            let mut out = Vec::new();
            put_varlen(&mut out, len);
            assert_eq!(out, prefix, "{len}");
            assert_eq!(take_varlen(&out), Some((len, prefix.len())));
        }
        assert_eq!(take_varlen(&[255, 1]), None);
        assert_eq!(take_varlen(&[]), None);
    }

    #[test]
    fn setters_write_the_header_fields_where_the_accessors_read_them() {
        let mut b = [0u8; 16];
        let mut m = Message::new_unchecked(&mut b[..]);
        m.set_version(VERSION);
        m.set_length(16);
        m.set_export_time(0x0102_0304);
        m.set_sequence_number(0x0506_0708);
        m.set_observation_domain_id(0x090a_0b0c);
        assert_eq!(b, [0, 10, 0, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let m = Message::new_checked(&b[..]).unwrap();
        assert_eq!(m.sets().count(), 0);
    }

    proptest::proptest! {
        #[test]
        fn parsing_never_panics(mut bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 16..200)) {
            // A header that passes, so the sets behind it are what varies.
            let len = bytes.len() as u16;
            bytes[0..4].copy_from_slice(&[0, 10, (len >> 8) as u8, len as u8]);
            if let Ok(m) = Message::new_checked(&bytes[..]) {
                if let Ok(repr) = MessageRepr::parse(&m) {
                    for s in &repr.sets {
                        if let SetRepr::Data { records, .. } = s {
                            DataRecords::new(&template(), records).for_each(drop);
                        }
                    }
                    // What parses emits to the same bytes, up to the message's length (a
                    // template set's padding is not kept).
                    if !repr.sets.iter().any(|s| matches!(s, SetRepr::Template(_))) {
                        let mut out = Vec::new();
                        repr.emit(&mut out);
                        proptest::prop_assert_eq!(&out[..], &bytes[..usize::from(m.length())]);
                    }
                }
            }
        }
    }
}
