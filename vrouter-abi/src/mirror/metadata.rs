//! The Juniper-header mirror metadata: TLVs in front of the mirrored Ethernet frame.
//!
//! Each TLV is `type` (1 byte), `length` (1 byte, length of the value), `value`:
//!
//! | type | name | value |
//! |---|---|---|
//! | 1 | CAPTURE_HOST | 4 bytes: IPv4 address of the vRouter that made the copy |
//! | 2 | FLAGS | 4 bytes, big-endian: flow action bitmap, `0x40000000` = ingress |
//! | 3 | SOURCE_VN | source virtual-network name (no terminator) |
//! | 4 | DEST_VN | destination virtual-network name (no terminator) |
//! | 255 | END | length 0; ends the metadata |
//!
//! The whole metadata, END included, is at most 255 bytes (`VIF_MAX_MIRROR_MD_SIZE`). Flow (ACL)
//! mirroring sends CAPTURE_HOST, FLAGS, SOURCE_VN, DEST_VN, END; interface mirroring sends
//! `{SOURCE_VN, END}` for received and `{DEST_VN, END}` for transmitted packets; with no
//! metadata available the datapath pushes END alone (`ff 00`).
//!
//! The encoder refuses what the format cannot carry; the decoder is strict (it is for our own
//! analyzer-side tests and tools): truncation, a value running past the buffer, wrong fixed
//! lengths, unknown types, a missing END and bytes after END are all typed errors.

use std::net::Ipv4Addr;
use thiserror::Error;

/// Largest metadata block, END TLV included.
pub const MAX_METADATA_LEN: usize = 255;
/// TLV type: capture host.
pub const TLV_CAPTURE_HOST: u8 = 1;
/// TLV type: flags.
pub const TLV_FLAGS: u8 = 2;
/// TLV type: source VN.
pub const TLV_SOURCE_VN: u8 = 3;
/// TLV type: destination VN.
pub const TLV_DEST_VN: u8 = 4;
/// TLV type: end of metadata.
pub const TLV_END: u8 = 255;
/// FLAGS bit marking an ingress flow.
pub const FLAG_INGRESS: u32 = 0x4000_0000;
/// The metadata pushed when nothing else is known: END alone.
pub const END_ONLY: [u8; 2] = [TLV_END, 0];

/// One metadata TLV (END is implicit: the encoder appends it, the decoder stops at it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaTlv {
    /// The vRouter that made the copy.
    CaptureHost(Ipv4Addr),
    /// Flow action bitmap; [`FLAG_INGRESS`] for ingress.
    Flags(u32),
    /// Source virtual network.
    SourceVn(String),
    /// Destination virtual network.
    DestVn(String),
}

impl MetaTlv {
    /// The TLV type byte.
    pub const fn tlv_type(&self) -> u8 {
        match self {
            MetaTlv::CaptureHost(_) => TLV_CAPTURE_HOST,
            MetaTlv::Flags(_) => TLV_FLAGS,
            MetaTlv::SourceVn(_) => TLV_SOURCE_VN,
            MetaTlv::DestVn(_) => TLV_DEST_VN,
        }
    }

    fn value_len(&self) -> usize {
        match self {
            MetaTlv::CaptureHost(_) | MetaTlv::Flags(_) => 4,
            MetaTlv::SourceVn(s) | MetaTlv::DestVn(s) => s.len(),
        }
    }
}

/// Why metadata could not be encoded or decoded. Offsets are from the start of the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetadataError {
    /// The metadata (END included) would be, or is, longer than [`MAX_METADATA_LEN`].
    #[error("mirror metadata of {len} bytes exceeds the maximum of {MAX_METADATA_LEN}")]
    TooLong {
        /// The length it needs or has (for the decoder: up to the end of the TLV that crossed
        /// the limit).
        len: usize,
    },
    /// A VN name of length 0.
    #[error("mirror metadata TLV type {tlv_type}: empty value")]
    EmptyValue {
        /// The TLV type.
        tlv_type: u8,
    },
    /// Only one byte left where a TLV header (type, length) was expected.
    #[error("mirror metadata truncated at byte {offset}: TLV header needs 2 bytes, 1 left")]
    Truncated {
        /// Where the TLV starts.
        offset: usize,
    },
    /// A TLV's declared length runs past the end of the buffer.
    #[error(
        "mirror metadata TLV type {tlv_type} at byte {offset}: length {len} overruns the \
         buffer ({available} bytes left)"
    )]
    Overrun {
        /// Where the TLV starts.
        offset: usize,
        /// The TLV type.
        tlv_type: u8,
        /// The declared value length.
        len: u8,
        /// Bytes actually left after the TLV header.
        available: usize,
    },
    /// A fixed-size TLV (CAPTURE_HOST, FLAGS, END) with the wrong length.
    #[error("mirror metadata TLV type {tlv_type} at byte {offset}: length {len}, expected {expected}")]
    BadLength {
        /// Where the TLV starts.
        offset: usize,
        /// The TLV type.
        tlv_type: u8,
        /// The declared length.
        len: u8,
        /// The required length.
        expected: u8,
    },
    /// A TLV type other than 1, 2, 3, 4, 255.
    #[error("mirror metadata: unknown TLV type {tlv_type} at byte {offset}")]
    UnknownType {
        /// Where the TLV starts.
        offset: usize,
        /// The type byte.
        tlv_type: u8,
    },
    /// A VN name that is not UTF-8.
    #[error("mirror metadata TLV type {tlv_type} at byte {offset}: value is not UTF-8")]
    InvalidUtf8 {
        /// Where the TLV starts.
        offset: usize,
        /// The TLV type.
        tlv_type: u8,
    },
    /// The buffer ended at a TLV boundary without an END TLV.
    #[error("mirror metadata has no END TLV")]
    MissingEnd,
    /// Bytes after the END TLV (only [`decode_metadata`], which expects the metadata alone).
    #[error("mirror metadata: {count} bytes after the END TLV at byte {offset}")]
    TrailingBytes {
        /// Offset of the first byte after END.
        offset: usize,
        /// How many bytes follow.
        count: usize,
    },
}

/// Encodes `tlvs` followed by END.
pub fn encode_metadata(tlvs: &[MetaTlv]) -> Result<Vec<u8>, MetadataError> {
    let len = tlvs.iter().map(|t| 2 + t.value_len()).sum::<usize>() + END_ONLY.len();
    if len > MAX_METADATA_LEN {
        return Err(MetadataError::TooLong { len });
    }
    let mut out = Vec::with_capacity(len);
    for tlv in tlvs {
        // Every value is shorter than MAX_METADATA_LEN here, so its length fits the byte.
        out.extend_from_slice(&[tlv.tlv_type(), tlv.value_len() as u8]);
        match tlv {
            MetaTlv::CaptureHost(ip) => out.extend_from_slice(&ip.octets()),
            MetaTlv::Flags(flags) => out.extend_from_slice(&flags.to_be_bytes()),
            MetaTlv::SourceVn(vn) | MetaTlv::DestVn(vn) => {
                if vn.is_empty() {
                    return Err(MetadataError::EmptyValue { tlv_type: tlv.tlv_type() });
                }
                out.extend_from_slice(vn.as_bytes());
            }
        }
    }
    out.extend_from_slice(&END_ONLY);
    Ok(out)
}

/// Metadata for a flow (ACL) mirror: capture host, flags, source and destination VN.
pub fn flow_metadata(
    capture_host: Ipv4Addr,
    flags: u32,
    source_vn: &str,
    dest_vn: &str,
) -> Result<Vec<u8>, MetadataError> {
    encode_metadata(&[
        MetaTlv::CaptureHost(capture_host),
        MetaTlv::Flags(flags),
        MetaTlv::SourceVn(source_vn.to_owned()),
        MetaTlv::DestVn(dest_vn.to_owned()),
    ])
}

/// Metadata for packets mirrored as a vif receives them: `{SOURCE_VN(vn), END}`.
pub fn interface_rx_metadata(vn: &str) -> Result<Vec<u8>, MetadataError> {
    encode_metadata(&[MetaTlv::SourceVn(vn.to_owned())])
}

/// Metadata for packets mirrored as a vif transmits them: `{DEST_VN(vn), END}`.
pub fn interface_tx_metadata(vn: &str) -> Result<Vec<u8>, MetadataError> {
    encode_metadata(&[MetaTlv::DestVn(vn.to_owned())])
}

/// Decodes the metadata at the start of `payload` (as an analyzer receives it: metadata, then
/// the mirrored frame) and returns the TLVs and the bytes after END.
pub fn split_metadata(payload: &[u8]) -> Result<(Vec<MetaTlv>, &[u8]), MetadataError> {
    let mut tlvs = Vec::new();
    let mut offset = 0;
    loop {
        let (tlv_type, len) = match payload.len() - offset {
            0 => return Err(MetadataError::MissingEnd),
            1 => return Err(MetadataError::Truncated { offset }),
            _ => (payload[offset], payload[offset + 1]),
        };
        let start = offset + 2;
        let end = start + usize::from(len);
        if end > payload.len() {
            return Err(MetadataError::Overrun { offset, tlv_type, len, available: payload.len() - start });
        }
        if end > MAX_METADATA_LEN {
            return Err(MetadataError::TooLong { len: end });
        }
        let value = &payload[start..end];
        let fixed = |expected: u8| {
            if len == expected {
                Ok(())
            } else {
                Err(MetadataError::BadLength { offset, tlv_type, len, expected })
            }
        };
        let text = || match std::str::from_utf8(value) {
            _ if value.is_empty() => Err(MetadataError::EmptyValue { tlv_type }),
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(MetadataError::InvalidUtf8 { offset, tlv_type }),
        };
        let tlv = match tlv_type {
            TLV_CAPTURE_HOST => {
                fixed(4)?;
                MetaTlv::CaptureHost(Ipv4Addr::new(value[0], value[1], value[2], value[3]))
            }
            TLV_FLAGS => {
                fixed(4)?;
                MetaTlv::Flags(u32::from_be_bytes([value[0], value[1], value[2], value[3]]))
            }
            TLV_SOURCE_VN => MetaTlv::SourceVn(text()?),
            TLV_DEST_VN => MetaTlv::DestVn(text()?),
            TLV_END => {
                fixed(0)?;
                return Ok((tlvs, &payload[end..]));
            }
            _ => return Err(MetadataError::UnknownType { offset, tlv_type }),
        };
        tlvs.push(tlv);
        offset = end;
    }
}

/// Decodes a metadata block that must end exactly with its END TLV.
pub fn decode_metadata(bytes: &[u8]) -> Result<Vec<MetaTlv>, MetadataError> {
    let (tlvs, rest) = split_metadata(bytes)?;
    if !rest.is_empty() {
        return Err(MetadataError::TrailingBytes { offset: bytes.len() - rest.len(), count: rest.len() });
    }
    Ok(tlvs)
}

/// Metadata of an interface mirror copy: `{SOURCE_VN(vn), END}` for received packets,
/// `{DEST_VN(vn), END}` for transmitted ones, END alone without a VN (as the vRouter pushes
/// when no metadata is set).
pub fn interface_metadata(vn: &str, rx: bool) -> Vec<u8> {
    let vn = &vn.as_bytes()[..vn.len().min(250)];
    let mut out = Vec::with_capacity(vn.len() + 4);
    if !vn.is_empty() {
        out.push(if rx { TLV_SOURCE_VN } else { TLV_DEST_VN });
        out.push(vn.len() as u8);
        out.extend_from_slice(vn);
    }
    out.extend_from_slice(&END_ONLY);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VN: &str = "default-domain:demo:net";

    /// Parses the space-separated hex bytes the `vif --get` sample in the mirror blueprint prints.
    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace().map(|b| u8::from_str_radix(b, 16).unwrap()).collect()
    }

    #[test]
    fn interface_metadata_matches_blueprint_dump() {
        // "Ingress Mirror Metadata" / "Egress Mirror Metadata" of vif0/5 in the blueprint.
        let ingress = hex("3 17 64 65 66 61 75 6c 74 2d 64 6f 6d 61 69 6e 3a 64 65 6d 6f 3a 6e 65 74 ff 0");
        let egress = hex("4 17 64 65 66 61 75 6c 74 2d 64 6f 6d 61 69 6e 3a 64 65 6d 6f 3a 6e 65 74 ff 0");
        assert_eq!(interface_rx_metadata(VN).unwrap(), ingress);
        assert_eq!(interface_tx_metadata(VN).unwrap(), egress);
        assert_eq!(decode_metadata(&ingress).unwrap(), [MetaTlv::SourceVn(VN.into())]);
        assert_eq!(decode_metadata(&egress).unwrap(), [MetaTlv::DestVn(VN.into())]);
    }

    #[test]
    fn flow_metadata_exact_bytes() {
        let md = flow_metadata(Ipv4Addr::new(10, 10, 0, 1), FLAG_INGRESS | 0xa0, "vn-a", "vn-b").unwrap();
        assert_eq!(
            md,
            [
                1, 4, 10, 10, 0, 1, // CAPTURE_HOST
                2, 4, 0x40, 0x00, 0x00, 0xa0, // FLAGS, big-endian
                3, 4, b'v', b'n', b'-', b'a', // SOURCE_VN
                4, 4, b'v', b'n', b'-', b'b', // DEST_VN
                0xff, 0, // END
            ]
        );
    }

    #[test]
    fn round_trip() {
        let tlvs = vec![
            MetaTlv::CaptureHost(Ipv4Addr::new(172, 16, 0, 26)),
            MetaTlv::Flags(0),
            MetaTlv::SourceVn(VN.into()),
            MetaTlv::DestVn("default-domain:admin:other".into()),
        ];
        let md = encode_metadata(&tlvs).unwrap();
        assert_eq!(decode_metadata(&md).unwrap(), tlvs);
    }

    #[test]
    fn end_only() {
        assert_eq!(encode_metadata(&[]).unwrap(), END_ONLY);
        assert_eq!(decode_metadata(&END_ONLY).unwrap(), []);
    }

    #[test]
    fn length_limit() {
        // Single VN: 2 + n + 2 bytes. n = 251 is exactly 255.
        let fits = "v".repeat(251);
        let md = interface_rx_metadata(&fits).unwrap();
        assert_eq!(md.len(), MAX_METADATA_LEN);
        assert_eq!(decode_metadata(&md).unwrap(), [MetaTlv::SourceVn(fits)]);
        assert_eq!(interface_rx_metadata(&"v".repeat(252)), Err(MetadataError::TooLong { len: 256 }));
        // A value too long for the length byte is caught by the total, not truncated.
        assert_eq!(interface_rx_metadata(&"v".repeat(300)), Err(MetadataError::TooLong { len: 304 }));
        // Flow metadata: 6 + 6 + (2 + s) + (2 + d) + 2 <= 255, so s + d <= 237.
        assert!(flow_metadata(Ipv4Addr::LOCALHOST, 0, &"s".repeat(118), &"d".repeat(119)).is_ok());
        assert_eq!(
            flow_metadata(Ipv4Addr::LOCALHOST, 0, &"s".repeat(119), &"d".repeat(119)),
            Err(MetadataError::TooLong { len: 256 })
        );
    }

    #[test]
    fn decoder_rejects_overlong_input() {
        // Two well-formed 127-byte TLVs end at byte 254; the END after them would end at 256.
        let mut md = Vec::new();
        for t in [TLV_SOURCE_VN, TLV_DEST_VN] {
            md.extend_from_slice(&[t, 125]);
            md.extend_from_slice(&[b'x'; 125]);
        }
        md.extend_from_slice(&END_ONLY);
        assert_eq!(decode_metadata(&md), Err(MetadataError::TooLong { len: 254 + 2 }));
        // END itself crossing the limit.
        let mut md = vec![TLV_SOURCE_VN, 251];
        md.extend_from_slice(&[b'x'; 251]);
        md.extend_from_slice(&[TLV_END, 0]);
        assert_eq!(decode_metadata(&md).unwrap().len(), 1);
        let mut md = vec![TLV_SOURCE_VN, 252];
        md.extend_from_slice(&[b'x'; 252]);
        md.extend_from_slice(&[TLV_END, 0]);
        assert_eq!(decode_metadata(&md), Err(MetadataError::TooLong { len: 256 }));
    }

    #[test]
    fn empty_vn_is_rejected_both_ways() {
        assert_eq!(interface_rx_metadata(""), Err(MetadataError::EmptyValue { tlv_type: TLV_SOURCE_VN }));
        assert_eq!(
            decode_metadata(&[TLV_DEST_VN, 0, TLV_END, 0]),
            Err(MetadataError::EmptyValue { tlv_type: TLV_DEST_VN })
        );
    }

    #[test]
    fn truncation_and_overrun() {
        let good = flow_metadata(Ipv4Addr::new(1, 2, 3, 4), 7, "a", "b").unwrap();
        // Every strict prefix fails, each with the error its cut point implies.
        for cut in 0..good.len() {
            let err = decode_metadata(&good[..cut]).unwrap_err();
            match err {
                MetadataError::MissingEnd | MetadataError::Truncated { .. } | MetadataError::Overrun { .. } => {}
                other => panic!("cut {cut}: unexpected {other:?}"),
            }
        }
        assert_eq!(decode_metadata(&[]), Err(MetadataError::MissingEnd));
        assert_eq!(decode_metadata(&[TLV_END]), Err(MetadataError::Truncated { offset: 0 }));
        assert_eq!(decode_metadata(&good[..6]), Err(MetadataError::MissingEnd));
        assert_eq!(decode_metadata(&good[..7]), Err(MetadataError::Truncated { offset: 6 }));
        assert_eq!(
            decode_metadata(&good[..9]),
            Err(MetadataError::Overrun { offset: 6, tlv_type: TLV_FLAGS, len: 4, available: 1 })
        );
        assert_eq!(
            decode_metadata(&[TLV_SOURCE_VN, 23, b'a', b'b']),
            Err(MetadataError::Overrun { offset: 0, tlv_type: TLV_SOURCE_VN, len: 23, available: 2 })
        );
    }

    #[test]
    fn malformed_tlvs() {
        assert_eq!(
            decode_metadata(&[TLV_CAPTURE_HOST, 3, 1, 2, 3, TLV_END, 0]),
            Err(MetadataError::BadLength { offset: 0, tlv_type: 1, len: 3, expected: 4 })
        );
        assert_eq!(
            decode_metadata(&[TLV_FLAGS, 5, 0, 0, 0, 0, 0, TLV_END, 0]),
            Err(MetadataError::BadLength { offset: 0, tlv_type: 2, len: 5, expected: 4 })
        );
        assert_eq!(
            decode_metadata(&[TLV_END, 1, 0]),
            Err(MetadataError::BadLength { offset: 0, tlv_type: 255, len: 1, expected: 0 })
        );
        assert_eq!(decode_metadata(&[5, 0, TLV_END, 0]), Err(MetadataError::UnknownType { offset: 0, tlv_type: 5 }));
        assert_eq!(
            decode_metadata(&[TLV_SOURCE_VN, 2, 0xc3, 0x28, TLV_END, 0]),
            Err(MetadataError::InvalidUtf8 { offset: 0, tlv_type: TLV_SOURCE_VN })
        );
        assert_eq!(decode_metadata(&[TLV_END, 0, 0xaa]), Err(MetadataError::TrailingBytes { offset: 2, count: 1 }));
    }

    #[test]
    fn split_returns_the_mirrored_frame() {
        let mut payload = interface_tx_metadata(VN).unwrap();
        let frame = [0x02u8, 0x15, 0x92, 0x87, 0x39, 0x41];
        payload.extend_from_slice(&frame);
        let (tlvs, rest) = split_metadata(&payload).unwrap();
        assert_eq!(tlvs, [MetaTlv::DestVn(VN.into())]);
        assert_eq!(rest, frame);
    }

    #[test]
    fn error_text() {
        assert_eq!(
            MetadataError::Overrun { offset: 6, tlv_type: 2, len: 4, available: 1 }.to_string(),
            "mirror metadata TLV type 2 at byte 6: length 4 overruns the buffer (1 bytes left)"
        );
    }

    #[test]
    fn interface_metadata_truncates_and_ends() {
        assert_eq!(interface_metadata("vn", true), [3, 2, b'v', b'n', 255, 0]);
        assert_eq!(interface_metadata("vn", false), [4, 2, b'v', b'n', 255, 0]);
        assert_eq!(interface_metadata("", false), [255, 0]);
    }
}
