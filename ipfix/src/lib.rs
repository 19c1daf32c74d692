//! IPFIX (RFC 7011) for the vRouter's flow export, next to Sandesh: the wire format, the
//! flow record declared once, and an exporting process over UDP and TCP.
//!
//! Layers, bottom up:
//! * [`wire`]: checked views of messages and sets ([`Message`], [`Set`]) and
//!   representations that parse and emit ([`MessageRepr`], [`SetRepr`], [`TemplateRecord`],
//!   [`FieldSpec`]); variable-length fields; [`DataRecords`] splits a data set with its
//!   template.
//! * [`ie`]: abstract data types and their Rust carriers, element definitions, and the
//!   one-line-per-element declaration macro behind [`flow`].
//! * [`flow`]: [`FlowRecord`], the vRouter's flow record: standard elements (5-tuple, delta
//!   and total counts, start/end, end reason, TCP flags, interfaces, VRFs, direction, VNI,
//!   forwarding status, firewall event) and enterprise-specific ones (analyzer names, mirror
//!   counters, Contrail names) under one private enterprise number; its templates, encoder,
//!   decoder and documentation table all come from that declaration.
//! * [`export`]: [`Exporter`], which packs records into messages and sends them to several
//!   collectors (UDP with periodic templates, TCP with templates per connection).
//! * [`collect`]: a [`Decoder`] for tests and tools (templates per domain, records out).
//!
//! ```
//! use ipfix::{Collector, Decoder, Exporter, ExporterConfig, FlowRecord, DOCUMENTATION_PEN};
//! use std::net::UdpSocket;
//! use std::time::Instant;
//!
//! let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
//! let to: Collector = collector.local_addr().unwrap().to_string().parse().unwrap();
//! let mut exporter = Exporter::<FlowRecord>::new(ExporterConfig::new(vec![to])).unwrap();
//! let mut r = FlowRecord { protocol: 6, source_port: 40000, destination_port: 80, ..Default::default() };
//! r.set_addresses("10.1.0.3".parse().unwrap(), "10.2.0.3".parse().unwrap());
//! r.octet_delta = 1500;
//! r.analyzer_name = "analyzer-a".into();
//! exporter.add(&r, Instant::now());
//! exporter.flush(Instant::now());
//!
//! let mut decoder = Decoder::new();
//! let mut buf = vec![0u8; 65536];
//! let n = collector.recv(&mut buf).unwrap(); // the templates come first
//! assert!(decoder.flow_records(&buf[..n], DOCUMENTATION_PEN).unwrap().is_empty());
//! let n = collector.recv(&mut buf).unwrap();
//! assert_eq!(decoder.flow_records(&buf[..n], DOCUMENTATION_PEN).unwrap(), vec![r]);
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod collect;
pub mod export;
pub mod flow;
pub mod ie;
pub mod wire;

pub use collect::{stream_message_len, DecodeError, Decoded, Decoder, RecordFields};
pub use export::{
    Collector, CollectorParseError, CollectorStats, ExportError, Exporter, ExporterConfig, ExporterStats, Transport,
    IPFIX_PORT,
};
pub use flow::{elements_table, FlowRecord, DOCUMENTATION_PEN, TEMPLATE_V4, TEMPLATE_V6};
pub use ie::{DataType, ElementDef, Family, FieldError, Record};
pub use wire::{DataRecords, FieldSpec, Message, MessageRepr, Set, SetRepr, TemplateRecord, WireError};
