//! The agent's control socket: one JSON request per line, one JSON reply per line. The
//! request types are in [`protocol`].

pub mod program;
pub mod protocol;
