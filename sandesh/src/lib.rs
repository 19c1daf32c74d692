//! Sandesh wire protocol, byte-exact with the Contrail/Tungsten Fabric generator → collector
//! protocol (TCP, XML messages in a length-prefixed envelope), and the generator session.
//!
//! Layers, bottom up:
//! * [`frame`]: the `<sandesh length="NNNNNNNNNN">…</sandesh>` envelope (encoder plus an
//!   incremental decoder for partial reads); [`mod@escape`]: the four-entity text escaping;
//!   [`types`]: the wire type names.
//! * [`model`]: struct and message definitions as data ([`StructDef`], [`FieldDef`],
//!   [`FieldType`], [`MessageDef`]) and the dynamic [`Value`] / [`StructValue`] tree.
//! * [`encode`] / [`decode`]: the encoder and the strict decoder, both generic walkers over the
//!   definitions (no per-field code).
//! * [`field`]: Rust types ↔ Sandesh types, and `sandesh_struct!`, which declares a typed struct
//!   and its definition from one field list.
//! * [`messages`]: the header, the control handshake, `FlowLogDataObject` (with the mirror
//!   fields) and the VMI / vRouter UVEs; typed [`encode_message`] / [`decode_message`].
//! * [`sendq`] and [`session`]: the generator session (handshake, states, backoff, rotation,
//!   UVE cache with SYNC resync, bounded flow buffer with drop counts, level watermarks) on its
//!   own thread, fed without blocking through [`SessionHandle`].
//!
//! # Using the decoder (collector side)
//!
//! ```
//! use sandesh::{decode_message, FrameDecoder, Message};
//! # let generator = sandesh::GeneratorId { source: "host1".into(), module: "m".into(),
//! #     node_type: "Compute".into(), instance_id: "0".into() };
//! # let hello = sandesh::SandeshCtrlClientToServer { source: "host1".into(),
//! #     module_name: "m".into(), sucessful_connections: 1, uve_types: vec![], pid: 1,
//! #     http_port: 0, node_type_name: "Compute".into(), instance_id_name: "0".into() };
//! # let header = generator.header::<sandesh::SandeshCtrlClientToServer>(0, 0, sandesh::CTRL_LEVEL, 0);
//! # let bytes_from_socket = sandesh::encode_message_frame(&header, &hello).unwrap();
//! let mut frames = FrameDecoder::new();
//! frames.push(&bytes_from_socket);
//! while let Some(body) = frames.next_frame().unwrap() {
//!     let decoded = decode_message(&body).unwrap();
//!     match decoded.message {
//!         Message::CtrlClientToServer(hello) => assert_eq!(hello.source, "host1"),
//!         other => panic!("unexpected {}", other.name()),
//!     }
//! }
//! ```

//!
//! # Collector side: the handshake reply and generic UVE handling
//!
//! ```
//! use sandesh::messages::{uve_key, MESSAGES};
//! use sandesh::*;
//! # let g = GeneratorId { source: "host1".into(), module: "m".into(),
//! #     node_type: "Compute".into(), instance_id: "0".into() };
//! # let uve = VrouterStats { data: VrouterStatsAgent { name: "host1".into(), deleted: None,
//! #     in_tpkts: Some(1), in_bytes: None, out_tpkts: None, out_bytes: None,
//! #     mir_tpkts: Some(2), mir_bytes: Some(3), mirror_analyzers: None } };
//! # let frame = encode_message_frame(&g.header::<VrouterStats>(0, 1, level::SYS_NOTICE, 0), &uve).unwrap();
//! # let body = &frame[OPEN_TAG_LEN..frame.len() - CLOSE_TAG.len()];
//! // Reply to a SandeshCtrlClientToServer (Context "ctrl" and the CONTROL hint are set by
//! // `header`):
//! let me = GeneratorId { source: "collector1".into(), module: "contrail-collector".into(),
//!     node_type: "Analytics".into(), instance_id: "0".into() };
//! let reply = SandeshCtrlServerToClient { type_info: vec![], success: true };
//! let bytes = encode_message_frame(
//!     &me.header::<SandeshCtrlServerToClient>(0, 0, CTRL_LEVEL, 0), &reply).unwrap();
//! # assert!(bytes.starts_with(OPEN_PREFIX));
//! // Any UVE, generically: table and key from the `key=` annotation, every other attribute
//! // re-encoded as its XML element.
//! let m = decode_body_with(body, &SandeshHeader::STRUCT, &MESSAGES).unwrap();
//! assert_eq!(m.header.get("Hints"), Some(&Value::I32(hints::KEY)));
//! let (table, key) = uve_key(&m.body).unwrap();
//! assert_eq!((table, key), ("ObjectVRouter", "host1"));
//! let Some(Value::Struct(data)) = &m.body.fields[0] else { unreachable!() };
//! for (f, v) in data.def.fields.iter().zip(&data.fields) {
//!     let (Some(v), None) = (v, f.annotation("key")) else { continue };
//!     let mut xml = String::new();
//!     encode_field(&mut xml, data.def.name, f, v).unwrap();
//!     // e.g. `<mir_tpkts type="u64" identifier="200">2</mir_tpkts>`
//! #   if f.name == "mir_tpkts" { assert_eq!(xml, r#"<mir_tpkts type="u64" identifier="200">2</mir_tpkts>"#); }
//! }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod decode;
pub mod encode;
pub mod escape;
pub mod field;
pub mod frame;
pub mod messages;
pub mod model;
pub mod sendq;
pub mod session;
pub mod types;

pub use decode::{decode_body_with, decode_struct, DecodeError, DecodeErrorKind, DynamicMessage};
pub use encode::{encode_body, encode_field, encode_fields, encode_struct, EncodeError};
pub use escape::{escape, escape_into, unescape, unescape_strict, UnescapeError};
pub use field::{SandeshField, SandeshStruct, Uuid, ValueError, Xml};
pub use frame::{
    encode_frame, encode_frame_into, split_frame, FrameDecoder, FrameError, CLOSE_TAG, FRAME_OVERHEAD, LENGTH_DIGITS,
    MAX_FRAME_LEN, OPEN_PREFIX, OPEN_TAG_LEN,
};
pub use messages::{
    decode_message, encode_message, encode_message_frame, Decoded, FlowLogData, FlowLogDataObject, GeneratorId,
    Message, MirrorAnalyzerStats, MirrorLossStats, PacketTraceData, PacketTraceStep, SandeshCtrlClientToServer,
    SandeshCtrlServerToClient, SandeshHeader, SandeshMessage, UVETypeInfo, UVEVMIStats, VMIStats, VmInterfaceStats,
    VrouterStats, VrouterStatsAgent, CTRL_LEVEL,
};
pub use model::{hints, level, FieldDef, FieldType, MessageDef, MessageKind, StructDef, StructValue, Value};
pub use session::{
    SessionConfig, SessionError, SessionEvent, SessionHandle, SessionState, SessionStats, DEFAULT_COLLECTOR_PORT,
};
pub use types::{SandeshType, UnknownTypeName};
