//! The Sandesh TCP framing.
//!
//! Every message on the generator → collector stream is one frame:
//!
//! ```text
//! <sandesh length="NNNNNNNNNN">BODY</sandesh>
//! ```
//!
//! * The open tag is always 29 bytes: the 17-byte prefix `<sandesh length="`, exactly 10 decimal
//!   digits (zero padded), then `">`.
//! * The number is the length in **bytes** of the **whole frame**: the 29-byte open tag, the
//!   body, and the 10-byte `</sandesh>` close tag. A frame with an empty body therefore has
//!   length 39.
//! * There is no whitespace between frames or around the body; several frames may share one TCP
//!   segment and one frame may be split over many reads.
//!
//! A receiver needs 29 bytes to learn the length, then waits for the whole frame, checks the close
//! tag and hands the body (everything between the tags) on. A length of 0, anything that is not
//! ten digits, or a frame that does not end in `</sandesh>` is a protocol error after which the
//! session is closed; this module reports those as [`FrameError`].

use thiserror::Error;

/// The fixed start of every frame: `<sandesh length="` (17 bytes).
pub const OPEN_PREFIX: &[u8; 17] = b"<sandesh length=\"";
/// Number of decimal digits in the length field.
pub const LENGTH_DIGITS: usize = 10;
/// Length of the complete open tag `<sandesh length="NNNNNNNNNN">` (29 bytes).
pub const OPEN_TAG_LEN: usize = OPEN_PREFIX.len() + LENGTH_DIGITS + 2;
/// The close tag that ends every frame (10 bytes).
pub const CLOSE_TAG: &[u8; 10] = b"</sandesh>";
/// Bytes a frame adds around its body: open tag plus close tag (39). This is also the length
/// of the shortest valid frame.
pub const FRAME_OVERHEAD: usize = OPEN_TAG_LEN + CLOSE_TAG.len();
/// Largest frame (envelope included) this implementation encodes or accepts by default: 16 MiB.
///
/// The wire format itself allows up to 9 999 999 999 bytes; this project bound keeps a corrupt
/// or hostile length field from making a receiver buffer gigabytes. Real frames are far smaller
/// (the reference generators coalesce frames into 16 KiB socket writes).
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Why a frame could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The stream does not start with `<sandesh length="`.
    #[error("frame does not start with `<sandesh length=\"`: byte {offset} is {found:#04x}")]
    BadPrefix {
        /// Offset of the first mismatching byte, from the start of the frame.
        offset: usize,
        /// The byte found there.
        found: u8,
    },
    /// A byte of the 10-character length field is not an ASCII digit.
    #[error("frame length field: byte {offset} is {found:#04x}, not a decimal digit")]
    BadLengthDigit {
        /// Offset of the offending byte, from the start of the frame (17..=26).
        offset: usize,
        /// The byte found there.
        found: u8,
    },
    /// The length digits are not followed by `">`.
    #[error("frame open tag: byte {offset} is {found:#04x}, expected the closing `\">`")]
    BadOpenTagEnd {
        /// Offset of the offending byte (27 or 28).
        offset: usize,
        /// The byte found there.
        found: u8,
    },
    /// The declared length is too small to hold even the open and close tags (includes 0).
    #[error("frame length {len} is below the {FRAME_OVERHEAD}-byte minimum")]
    TooShort {
        /// The declared length.
        len: u64,
    },
    /// The frame length (declared, or that an encoded body would need) exceeds the limit.
    #[error("frame length {len} exceeds the maximum of {max} bytes")]
    Oversized {
        /// The declared or required length.
        len: u64,
        /// The limit in force.
        max: u64,
    },
    /// The complete frame does not end with `</sandesh>`.
    #[error("frame of {len} bytes does not end with `</sandesh>`")]
    MissingCloseTag {
        /// The declared (and buffered) frame length.
        len: u64,
    },
}

/// Frames `body` into a new buffer: open tag with the total length, body, close tag.
///
/// Fails with [`FrameError::Oversized`] when the frame would exceed [`MAX_FRAME_LEN`].
pub fn encode_frame(body: &[u8]) -> Result<Vec<u8>, FrameError> {
    let mut out = Vec::with_capacity(body.len().saturating_add(FRAME_OVERHEAD));
    encode_frame_into(&mut out, body)?;
    Ok(out)
}

/// Appends the frame for `body` to `out` (several frames may be packed into one socket write)
/// and returns the number of bytes appended. On error `out` is left unchanged.
pub fn encode_frame_into(out: &mut Vec<u8>, body: &[u8]) -> Result<usize, FrameError> {
    let total = body.len() as u64 + FRAME_OVERHEAD as u64;
    if total > MAX_FRAME_LEN as u64 {
        return Err(FrameError::Oversized { len: total, max: MAX_FRAME_LEN as u64 });
    }
    out.reserve(total as usize);
    out.extend_from_slice(OPEN_PREFIX);
    // `total` <= MAX_FRAME_LEN < 10^10, so the zero-padded number is exactly 10 digits.
    out.extend_from_slice(format!("{total:0width$}", width = LENGTH_DIGITS).as_bytes());
    out.extend_from_slice(b"\">");
    out.extend_from_slice(body);
    out.extend_from_slice(CLOSE_TAG);
    Ok(total as usize)
}

/// Looks for one complete frame at the start of `buf`.
///
/// Returns `Ok(Some((body, consumed)))` when a whole frame is present (`consumed` is its total
/// length), `Ok(None)` when more bytes are needed, and an error as soon as the bytes seen so far
/// cannot start a valid frame: the prefix and the digits are checked byte by byte as they arrive,
/// so garbage is reported without waiting for 29 bytes. Declared lengths above `max_frame_len`
/// are rejected before the frame is buffered.
pub fn split_frame(buf: &[u8], max_frame_len: usize) -> Result<Option<(&[u8], usize)>, FrameError> {
    let seen = buf.len().min(OPEN_TAG_LEN);
    for (offset, &found) in buf[..seen].iter().enumerate() {
        let ok = match offset {
            o if o < OPEN_PREFIX.len() => found == OPEN_PREFIX[o],
            o if o < OPEN_PREFIX.len() + LENGTH_DIGITS => {
                if !found.is_ascii_digit() {
                    return Err(FrameError::BadLengthDigit { offset, found });
                }
                true
            }
            o if o == OPEN_TAG_LEN - 2 => found == b'"',
            _ => found == b'>',
        };
        if !ok {
            return Err(if offset < OPEN_PREFIX.len() {
                FrameError::BadPrefix { offset, found }
            } else {
                FrameError::BadOpenTagEnd { offset, found }
            });
        }
    }
    if buf.len() < OPEN_TAG_LEN {
        return Ok(None);
    }
    let len = buf[OPEN_PREFIX.len()..OPEN_PREFIX.len() + LENGTH_DIGITS]
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    if len < FRAME_OVERHEAD as u64 {
        return Err(FrameError::TooShort { len });
    }
    if len > max_frame_len as u64 {
        return Err(FrameError::Oversized { len, max: max_frame_len as u64 });
    }
    let len_usize = len as usize;
    if buf.len() < len_usize {
        return Ok(None);
    }
    let frame = &buf[..len_usize];
    if !frame.ends_with(CLOSE_TAG) {
        return Err(FrameError::MissingCloseTag { len });
    }
    Ok(Some((&frame[OPEN_TAG_LEN..len_usize - CLOSE_TAG.len()], len_usize)))
}

/// Incremental frame decoder for a byte stream read in arbitrary pieces.
///
/// Feed it with [`push`](Self::push) and drain complete bodies with
/// [`next_frame`](Self::next_frame) until it returns `Ok(None)`. An error is sticky: the stream
/// cannot be resynchronised (there is no frame delimiter to search for), so every later call
/// returns the same error and further input is discarded; the owner closes the session.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Start of the unconsumed bytes in `buf`.
    start: usize,
    max_frame_len: usize,
    failed: Option<FrameError>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// Compact the buffer once this many consumed bytes sit in front of the unread ones.
    const COMPACT_THRESHOLD: usize = 64 * 1024;

    /// A decoder that accepts frames up to [`MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::with_max_frame_len(MAX_FRAME_LEN)
    }

    /// A decoder with a different frame-length limit (envelope included).
    pub fn with_max_frame_len(max_frame_len: usize) -> Self {
        Self { buf: Vec::new(), start: 0, max_frame_len, failed: None }
    }

    /// The frame-length limit in force.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Bytes received but not yet returned as part of a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The error that stopped this decoder, if any.
    pub fn error(&self) -> Option<&FrameError> {
        self.failed.as_ref()
    }

    /// Appends bytes read from the stream. Ignored once the decoder has failed.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed.is_none() {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Returns the body of the next complete frame, `Ok(None)` if more input is needed, or the
    /// (sticky) error that makes the stream unusable.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        match split_frame(&self.buf[self.start..], self.max_frame_len) {
            Ok(Some((body, consumed))) => {
                let body = body.to_vec();
                self.start += consumed;
                self.compact();
                Ok(Some(body))
            }
            Ok(None) => {
                self.compact();
                Ok(None)
            }
            Err(err) => {
                self.buf = Vec::new();
                self.start = 0;
                self.failed = Some(err.clone());
                Err(err)
            }
        }
    }

    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= Self::COMPACT_THRESHOLD && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The FlowLogDataObject frame from sandesh-reference §1.5, produced by the reference
    /// pysandesh encoder: 1684 bytes on the wire.
    const FLOWLOG_FRAME: &str = concat!(
        r#"<sandesh length="0000001684"><SandeshHeader><Namespace type="string" identifier="1"></Namespace>"#,
        r#"<Timestamp type="i64" identifier="2">1494846979256107</Timestamp>"#,
        r#"<Module type="string" identifier="3">contrail-vrouter-agent</Module>"#,
        r#"<Source type="string" identifier="4">host1</Source><Context type="string" identifier="5"></Context>"#,
        r#"<SequenceNum type="i32" identifier="6">0</SequenceNum>"#,
        r#"<VersionSig type="i32" identifier="7">-1793986532</VersionSig>"#,
        r#"<Type type="i32" identifier="8">8</Type><Hints type="i32" identifier="9">0</Hints>"#,
        r#"<Level type="i32" identifier="10">6</Level><Category type="string" identifier="11">__default__</Category>"#,
        r#"<NodeType type="string" identifier="12">Compute</NodeType>"#,
        r#"<InstanceId type="string" identifier="13">0</InstanceId></SandeshHeader>"#,
        r#"<FlowLogDataObject type="sandesh"><flowdata type="list" identifier="1"><list type="struct" size="1">"#,
        r#"<FlowLogData><flowuuid type="string" identifier="1">ed6bdc5b-6ebc-48ca-b8fc-d483fdbd89fc</flowuuid>"#,
        r#"<direction_ing type="byte" identifier="2">1</direction_ing>"#,
        r#"<sourcevn type="string" identifier="3">default-domain:demo:net</sourcevn>"#,
        r#"<sourceip type="ipaddr" identifier="4">11.0.0.4</sourceip>"#,
        r#"<destvn type="string" identifier="5">default-domain:demo:net</destvn>"#,
        r#"<destip type="ipaddr" identifier="6">11.0.0.3</destip>"#,
        r#"<protocol type="byte" identifier="7">1</protocol><sport type="i16" identifier="8">-31743</sport>"#,
        r#"<dport type="i16" identifier="9">0</dport><bytes type="i64" identifier="23">98</bytes>"#,
        r#"<packets type="i64" identifier="24">1</packets><action type="string" identifier="28">pass|mirror</action>"#,
        r#"<forward_flow type="bool" identifier="37">false</forward_flow></FlowLogData></list></flowdata>"#,
        r#"</FlowLogDataObject></sandesh>"#
    );

    /// The SandeshCtrlClientToServer frame from sandesh-reference §2.1 (1435 bytes).
    const CTRL_FRAME: &str = concat!(
        r#"<sandesh length="0000001435"><SandeshHeader><Namespace type="string" identifier="1"></Namespace>"#,
        r#"<Timestamp type="i64" identifier="2">1700000000000000</Timestamp>"#,
        r#"<Module type="string" identifier="3">contrail-vrouter-agent</Module>"#,
        r#"<Source type="string" identifier="4">host1</Source><Context type="string" identifier="5">ctrl</Context>"#,
        r#"<SequenceNum type="i32" identifier="6">0</SequenceNum>"#,
        r#"<VersionSig type="i32" identifier="7">-340245130</VersionSig>"#,
        r#"<Type type="i32" identifier="8">2</Type><Hints type="i32" identifier="9">2</Hints>"#,
        r#"<Level type="i32" identifier="10">2147483647</Level><Category type="string" identifier="11"></Category>"#,
        r#"<NodeType type="string" identifier="12">Compute</NodeType>"#,
        r#"<InstanceId type="string" identifier="13">0</InstanceId></SandeshHeader>"#,
        r#"<SandeshCtrlClientToServer type="sandesh"><source type="string" identifier="1">host1</source>"#,
        r#"<module_name type="string" identifier="2">contrail-vrouter-agent</module_name>"#,
        r#"<sucessful_connections type="u32" identifier="3">1</sucessful_connections>"#,
        r#"<uve_types type="list" identifier="4"><list type="string" size="2">"#,
        r#"<element>UveVMInterfaceAgentTrace</element><element>VrouterStats</element></list></uve_types>"#,
        r#"<pid type="u32" identifier="5">1234</pid><http_port type="u32" identifier="6">8085</http_port>"#,
        r#"<node_type_name type="string" identifier="7">Compute</node_type_name>"#,
        r#"<instance_id_name type="string" identifier="8">0</instance_id_name></SandeshCtrlClientToServer></sandesh>"#
    );

    fn body_of(frame: &str) -> &[u8] {
        &frame.as_bytes()[OPEN_TAG_LEN..frame.len() - CLOSE_TAG.len()]
    }

    #[test]
    fn envelope_constants() {
        assert_eq!(OPEN_PREFIX.len(), 17);
        assert_eq!(OPEN_TAG_LEN, 29);
        assert_eq!(CLOSE_TAG.len(), 10);
        assert_eq!(FRAME_OVERHEAD, 39);
    }

    #[test]
    fn reference_frames_are_byte_exact() {
        assert_eq!(FLOWLOG_FRAME.len(), 1684);
        assert_eq!(CTRL_FRAME.len(), 1435);
        for frame in [FLOWLOG_FRAME, CTRL_FRAME] {
            let encoded = encode_frame(body_of(frame)).unwrap();
            assert_eq!(std::str::from_utf8(&encoded).unwrap(), frame);
        }
    }

    #[test]
    fn empty_body_frame() {
        let f = encode_frame(b"").unwrap();
        assert_eq!(f, b"<sandesh length=\"0000000039\"></sandesh>");
        assert_eq!(split_frame(&f, MAX_FRAME_LEN).unwrap(), Some((&b""[..], 39)));
    }

    #[test]
    fn encode_into_appends_and_counts() {
        let mut out = b"xyz".to_vec();
        let n = encode_frame_into(&mut out, b"<a/>").unwrap();
        assert_eq!(n, 43);
        assert_eq!(out, b"xyz<sandesh length=\"0000000043\"><a/></sandesh>");
    }

    #[test]
    fn encode_rejects_oversized_body() {
        let body = vec![b'a'; MAX_FRAME_LEN - FRAME_OVERHEAD + 1];
        let mut out = Vec::new();
        assert_eq!(
            encode_frame_into(&mut out, &body),
            Err(FrameError::Oversized { len: MAX_FRAME_LEN as u64 + 1, max: MAX_FRAME_LEN as u64 })
        );
        assert!(out.is_empty());
        let body = vec![b'a'; MAX_FRAME_LEN - FRAME_OVERHEAD];
        assert_eq!(encode_frame(&body).unwrap().len(), MAX_FRAME_LEN);
    }

    #[test]
    fn decode_whole_frame() {
        let mut d = FrameDecoder::new();
        d.push(FLOWLOG_FRAME.as_bytes());
        assert_eq!(d.next_frame().unwrap().as_deref(), Some(body_of(FLOWLOG_FRAME)));
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn decode_byte_by_byte() {
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for b in FLOWLOG_FRAME.bytes().chain(CTRL_FRAME.bytes()) {
            d.push(&[b]);
            while let Some(body) = d.next_frame().unwrap() {
                got.push(body);
            }
        }
        assert_eq!(got, vec![body_of(FLOWLOG_FRAME).to_vec(), body_of(CTRL_FRAME).to_vec()]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn decode_every_split_point_of_two_frames() {
        let stream = [FLOWLOG_FRAME.as_bytes(), CTRL_FRAME.as_bytes()].concat();
        for cut in 0..=stream.len() {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for part in [&stream[..cut], &stream[cut..]] {
                d.push(part);
                while let Some(body) = d.next_frame().unwrap() {
                    got.push(body);
                }
            }
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!(got[0], body_of(FLOWLOG_FRAME));
            assert_eq!(got[1], body_of(CTRL_FRAME));
        }
    }

    #[test]
    fn many_frames_in_one_read() {
        let mut stream = Vec::new();
        for i in 0..1000 {
            encode_frame_into(&mut stream, format!("<m>{i}</m>").as_bytes()).unwrap();
        }
        let mut d = FrameDecoder::new();
        d.push(&stream);
        for i in 0..1000 {
            assert_eq!(d.next_frame().unwrap().unwrap(), format!("<m>{i}</m>").into_bytes());
        }
        assert_eq!(d.next_frame().unwrap(), None);
    }

    #[test]
    fn partial_frames_wait_for_more() {
        let f = FLOWLOG_FRAME.as_bytes();
        for n in [0, 1, 16, 17, 27, 28, 29, 100, f.len() - 1] {
            assert_eq!(split_frame(&f[..n], MAX_FRAME_LEN).unwrap(), None, "{n} bytes");
        }
    }

    #[test]
    fn garbage_is_rejected_early() {
        assert_eq!(
            split_frame(b"<sandesh lenght", MAX_FRAME_LEN),
            Err(FrameError::BadPrefix { offset: 13, found: b'h' })
        );
        assert_eq!(
            split_frame(b"GET / HTTP/1.1", MAX_FRAME_LEN),
            Err(FrameError::BadPrefix { offset: 0, found: b'G' })
        );
        assert_eq!(
            split_frame(b"<sandesh length=\"00000x", MAX_FRAME_LEN),
            Err(FrameError::BadLengthDigit { offset: 22, found: b'x' })
        );
        // A sign or a space is not a digit either (no strtoul-style leniency).
        assert_eq!(
            split_frame(b"<sandesh length=\" 000000039\"></sandesh>", MAX_FRAME_LEN),
            Err(FrameError::BadLengthDigit { offset: 17, found: b' ' })
        );
        // 11 digits: the 11th lands where the closing quote belongs.
        assert_eq!(
            split_frame(b"<sandesh length=\"00000000039\">", MAX_FRAME_LEN),
            Err(FrameError::BadOpenTagEnd { offset: 27, found: b'9' })
        );
        assert_eq!(
            split_frame(b"<sandesh length=\"0000000039\"/", MAX_FRAME_LEN),
            Err(FrameError::BadOpenTagEnd { offset: 28, found: b'/' })
        );
    }

    #[test]
    fn bad_lengths_are_rejected() {
        assert_eq!(
            split_frame(b"<sandesh length=\"0000000000\">", MAX_FRAME_LEN),
            Err(FrameError::TooShort { len: 0 })
        );
        assert_eq!(
            split_frame(b"<sandesh length=\"0000000038\"></sandesh>", MAX_FRAME_LEN),
            Err(FrameError::TooShort { len: 38 })
        );
        // Oversized is reported from the open tag alone, before anything else is buffered.
        assert_eq!(
            split_frame(b"<sandesh length=\"9999999999\">", MAX_FRAME_LEN),
            Err(FrameError::Oversized { len: 9_999_999_999, max: MAX_FRAME_LEN as u64 })
        );
        assert_eq!(
            split_frame(b"<sandesh length=\"0000000044\">", 43),
            Err(FrameError::Oversized { len: 44, max: 43 })
        );
        assert!(split_frame(b"<sandesh length=\"0000000043\"><a/></sandesh>", 43).unwrap().is_some());
    }

    #[test]
    fn length_must_match_close_tag() {
        // Declared one byte too long: the frame ends one byte into the next frame.
        let mut s = b"<sandesh length=\"0000000044\"><a/></sandesh>".to_vec();
        s.extend_from_slice(b"<");
        assert_eq!(split_frame(&s, MAX_FRAME_LEN), Err(FrameError::MissingCloseTag { len: 44 }));
        // Declared one byte too short.
        let s = b"<sandesh length=\"0000000042\"><a/></sandesh>";
        assert_eq!(split_frame(s, MAX_FRAME_LEN), Err(FrameError::MissingCloseTag { len: 42 }));
    }

    #[test]
    fn decoder_errors_are_sticky() {
        let mut d = FrameDecoder::with_max_frame_len(100);
        assert_eq!(d.max_frame_len(), 100);
        d.push(b"<sandesh length=\"0000000039\"></sandesh>");
        d.push(b"<sandesh length=\"0000000101\">");
        assert_eq!(d.next_frame().unwrap(), Some(Vec::new()));
        let err = FrameError::Oversized { len: 101, max: 100 };
        assert_eq!(d.next_frame(), Err(err.clone()));
        assert_eq!(d.error(), Some(&err));
        d.push(b"<sandesh length=\"0000000039\"></sandesh>");
        assert_eq!(d.buffered(), 0);
        assert_eq!(d.next_frame(), Err(err));
    }

    #[test]
    fn decoder_compacts_its_buffer() {
        let body = vec![b'x'; 1000];
        let frame = encode_frame(&body).unwrap();
        let mut d = FrameDecoder::new();
        for _ in 0..200 {
            d.push(&frame);
        }
        d.push(&frame[..10]);
        for _ in 0..200 {
            assert_eq!(d.next_frame().unwrap().unwrap(), body);
            // Consumed bytes never outweigh both the threshold and the unread bytes.
            assert!(d.start < FrameDecoder::COMPACT_THRESHOLD || d.start * 2 < d.buf.len());
        }
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.buffered(), 10);
        assert!(d.start < FrameDecoder::COMPACT_THRESHOLD);
        d.push(&frame[10..]);
        assert_eq!(d.next_frame().unwrap().unwrap(), body);
        assert_eq!((d.buffered(), d.start, d.buf.len()), (0, 0, 0));
    }

    #[test]
    fn error_messages_are_readable() {
        assert_eq!(FrameError::TooShort { len: 0 }.to_string(), "frame length 0 is below the 39-byte minimum");
        assert_eq!(
            FrameError::BadPrefix { offset: 0, found: b'G' }.to_string(),
            "frame does not start with `<sandesh length=\"`: byte 0 is 0x47"
        );
    }
}
