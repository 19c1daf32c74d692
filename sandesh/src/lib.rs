//! Sandesh wire-format primitives, byte-exact with the Contrail/Tungsten Fabric
//! generator → collector protocol (TCP, XML messages in a length-prefixed envelope).
//!
//! What this crate holds now: the `<sandesh length="NNNNNNNNNN">…</sandesh>` framing
//! ([`frame`]: encoder plus an incremental decoder for partial reads), the XML text escaping
//! the Sandesh readers and writers agree on ([`mod@escape`]), and the table of Sandesh type
//! names used in `type=`/`key=`/`value=` attributes ([`SandeshType`]). A later issue adds on top
//! of these the message model (SandeshHeader, field/struct/list encoding, FlowLogData and UVEs),
//! the strict reader, and the client session (control handshake, reconnect backoff).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod escape;
pub mod frame;
pub mod types;

pub use escape::{escape, escape_into, unescape, unescape_strict, UnescapeError};
pub use frame::{
    encode_frame, encode_frame_into, split_frame, FrameDecoder, FrameError, CLOSE_TAG,
    FRAME_OVERHEAD, LENGTH_DIGITS, MAX_FRAME_LEN, OPEN_PREFIX, OPEN_TAG_LEN,
};
pub use types::{SandeshType, UnknownTypeName};
