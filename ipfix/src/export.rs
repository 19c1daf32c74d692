//! The exporting process (RFC 7011 §10): records packed into messages of at most
//! `max_message_size` bytes, each message sent to every collector, over UDP or TCP.
//!
//! * **Messages.** Records are appended to the message being built, one Data Set per run of
//!   records of the same template; a message goes out when the next record would not fit, or
//!   on [`Exporter::flush`] (the vRouter flushes after every scan tick, so no record waits
//!   longer than a tick). The message is built once; its sequence number is patched per
//!   collector, since each collector is its own transport session.
//! * **Sequence numbers** (§3.1) count the data records sent to that collector before the
//!   message, modulo 2^32; template messages do not add to them. A UDP message that could not
//!   be sent does not count, so a collector sees gaps only for datagrams lost on the way.
//! * **Templates.** UDP: a template message before the first data message and again every
//!   `template_refresh` (§8.4: a collector that restarts, or lost the datagram, learns them
//!   again). TCP: once per connection, first on it (§8.1: a reliable session keeps them); a
//!   reconnect starts a new transport session, with sequence 0 and the templates again.
//! * **TCP** connects on the first flush and after a failure with exponential backoff
//!   (`backoff_base` doubled up to `backoff_max`); the socket is non-blocking, messages wait
//!   in a buffer of `tcp_buffer` bytes, and a message that does not fit is dropped whole
//!   (counted). A disconnect drops what was buffered (the stream cannot resume mid-message).
//! * Nothing here blocks the caller for long: UDP sends are non-blocking (a full socket
//!   buffer drops the message, counted), and the only wait is the TCP connect, bounded by
//!   `connect_timeout`.

use crate::ie::Record;
use crate::wire::{Message, TemplateRecord, MESSAGE_HEADER_LEN, SET_HEADER_LEN, TEMPLATE_SET_ID, VERSION};
use std::fmt;
use std::io::{ErrorKind, Write};
use std::marker::PhantomData;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use thiserror::Error;

/// The IANA port of IPFIX over UDP and TCP.
pub const IPFIX_PORT: u16 = 4739;

/// How a collector is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Datagrams (the default).
    Udp,
    /// A TCP stream.
    Tcp,
}

/// A collector's address and transport: `IP:PORT` (UDP), `udp://IP:PORT` or `tcp://IP:PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Collector {
    /// UDP or TCP.
    pub transport: Transport,
    /// Its address.
    pub addr: SocketAddr,
}

/// A collector string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("`{0}` is not IP:PORT, udp://IP:PORT or tcp://IP:PORT (e.g. \"127.0.0.1:4739\")")]
pub struct CollectorParseError(pub String);

impl FromStr for Collector {
    type Err = CollectorParseError;

    fn from_str(s: &str) -> Result<Collector, CollectorParseError> {
        let (transport, rest) = match s.split_once("://") {
            Some(("udp", r)) => (Transport::Udp, r),
            Some(("tcp", r)) => (Transport::Tcp, r),
            Some(_) => return Err(CollectorParseError(s.to_owned())),
            None => (Transport::Udp, s),
        };
        let addr: SocketAddr = rest.parse().map_err(|_| CollectorParseError(s.to_owned()))?;
        if addr.port() == 0 || addr.ip().is_unspecified() {
            return Err(CollectorParseError(s.to_owned()));
        }
        Ok(Collector { transport, addr })
    }
}

impl fmt::Display for Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.transport {
            Transport::Udp => write!(f, "udp://{}", self.addr),
            Transport::Tcp => write!(f, "tcp://{}", self.addr),
        }
    }
}

/// How the exporter sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExporterConfig {
    /// Where every message goes.
    pub collectors: Vec<Collector>,
    /// Observation Domain ID of every message.
    pub observation_domain_id: u32,
    /// UDP: templates are sent again after this long.
    pub template_refresh: Duration,
    /// Largest message, bytes (UDP: keep it under the path MTU).
    pub max_message_size: usize,
    /// Private enterprise number of the enterprise-specific elements.
    pub enterprise_number: u32,
    /// TCP: bytes of messages waiting for a slow collector before messages are dropped.
    pub tcp_buffer: usize,
    /// TCP: first reconnect delay.
    pub backoff_base: Duration,
    /// TCP: longest reconnect delay.
    pub backoff_max: Duration,
    /// TCP: longest wait for a connection.
    pub connect_timeout: Duration,
}

/// Smallest `max_message_size`: a header, a set header and the templates of a record type
/// must fit.
pub const MIN_MESSAGE_SIZE: usize = 512;

impl ExporterConfig {
    /// Defaults (refresh 60 s, 1400-byte messages, the documentation PEN, domain 1) for
    /// `collectors`.
    pub fn new(collectors: Vec<Collector>) -> ExporterConfig {
        ExporterConfig {
            collectors,
            observation_domain_id: 1,
            template_refresh: Duration::from_secs(60),
            max_message_size: 1400,
            enterprise_number: crate::flow::DOCUMENTATION_PEN,
            tcp_buffer: 4 << 20,
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_millis(200),
        }
    }
}

/// Why the exporter could not start.
#[derive(Debug, Error)]
pub enum ExportError {
    /// A UDP socket could not be opened towards a collector.
    #[error("UDP socket for collector {collector}: {source}")]
    Udp {
        /// The collector.
        collector: Collector,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// `max_message_size` out of range, or too small for the templates.
    #[error("max_message_size {size}: must be {min}..=65535 and hold the templates ({templates} bytes)")]
    MessageSize {
        /// The size asked for.
        size: usize,
        /// The smallest allowed.
        min: usize,
        /// The template message's size.
        templates: usize,
    },
}

/// What the exporter did for one collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorStats {
    /// The collector.
    pub collector: Collector,
    /// TCP: connected now (UDP: always true).
    pub connected: bool,
    /// Data messages sent (UDP) or queued on the connection (TCP).
    pub messages: u64,
    /// Data records in them.
    pub records: u64,
    /// Bytes of all messages, templates included.
    pub bytes: u64,
    /// Template messages.
    pub template_messages: u64,
    /// Data records not sent: a send error, a full buffer, no TCP connection.
    pub records_dropped: u64,
    /// Send or connect errors.
    pub errors: u64,
    /// TCP connections established.
    pub connects: u64,
}

/// The exporter's counters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExporterStats {
    /// Records handed to [`Exporter::add`].
    pub records: u64,
    /// Data messages built.
    pub messages: u64,
    /// Records too large for one message (not sent).
    pub oversized_records: u64,
    /// Per collector.
    pub collectors: Vec<CollectorStats>,
}

struct TcpLink {
    stream: Option<TcpStream>,
    out: Vec<u8>,
    sent: usize,
    failures: u32,
    next_try: Option<Instant>,
}

enum Link {
    Udp(UdpSocket),
    Tcp(TcpLink),
}

struct Conn {
    seq: u32,
    templates_sent: Option<Instant>,
    link: Link,
    stats: CollectorStats,
}

/// Sends records of type `R` to the configured collectors (see the module docs).
pub struct Exporter<R: Record> {
    cfg: ExporterConfig,
    templates: Vec<TemplateRecord>,
    /// The message being built: header, then sets.
    buf: Vec<u8>,
    /// Where the open data set starts (its header), when one is open.
    set: Option<(usize, u16)>,
    records_in_msg: u32,
    scratch: Vec<u8>,
    conns: Vec<Conn>,
    stats: ExporterStats,
    _record: PhantomData<fn(&R)>,
}

fn unix_seconds() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

/// Writes a message header at the start of `msg` (length = `msg.len()`).
fn write_header(msg: &mut [u8], seq: u32, domain: u32) {
    let len = msg.len() as u16;
    let mut m = Message::new_unchecked(msg);
    m.set_version(VERSION);
    m.set_length(len);
    m.set_export_time(unix_seconds());
    m.set_sequence_number(seq);
    m.set_observation_domain_id(domain);
}

impl<R: Record> Exporter<R> {
    /// An exporter for `cfg`: UDP sockets are opened now, TCP connections on the first
    /// [`Exporter::flush`].
    pub fn new(cfg: ExporterConfig) -> Result<Exporter<R>, ExportError> {
        let templates = R::templates(cfg.enterprise_number);
        let tlen = MESSAGE_HEADER_LEN + SET_HEADER_LEN + templates.iter().map(TemplateRecord::wire_len).sum::<usize>();
        if !(MIN_MESSAGE_SIZE..=65535).contains(&cfg.max_message_size) || cfg.max_message_size < tlen {
            return Err(ExportError::MessageSize {
                size: cfg.max_message_size,
                min: MIN_MESSAGE_SIZE,
                templates: tlen,
            });
        }
        let mut conns = Vec::new();
        for &c in &cfg.collectors {
            let link = match c.transport {
                Transport::Udp => {
                    let open = || -> std::io::Result<UdpSocket> {
                        let local: SocketAddr = match c.addr {
                            SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
                            SocketAddr::V6(_) => "[::]:0".parse().expect("literal"),
                        };
                        let s = UdpSocket::bind(local)?;
                        s.connect(c.addr)?;
                        s.set_nonblocking(true)?;
                        Ok(s)
                    };
                    Link::Udp(open().map_err(|source| ExportError::Udp { collector: c, source })?)
                }
                Transport::Tcp => {
                    Link::Tcp(TcpLink { stream: None, out: Vec::new(), sent: 0, failures: 0, next_try: None })
                }
            };
            let stats = CollectorStats {
                collector: c,
                connected: c.transport == Transport::Udp,
                messages: 0,
                records: 0,
                bytes: 0,
                template_messages: 0,
                records_dropped: 0,
                errors: 0,
                connects: 0,
            };
            conns.push(Conn { seq: 0, templates_sent: None, link, stats });
        }
        let mut buf = Vec::with_capacity(cfg.max_message_size);
        buf.resize(MESSAGE_HEADER_LEN, 0);
        Ok(Exporter {
            cfg,
            templates,
            buf,
            set: None,
            records_in_msg: 0,
            scratch: Vec::new(),
            conns,
            stats: ExporterStats::default(),
            _record: PhantomData,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ExporterConfig {
        &self.cfg
    }

    /// The counters.
    pub fn stats(&self) -> ExporterStats {
        ExporterStats { collectors: self.conns.iter().map(|c| c.stats.clone()).collect(), ..self.stats.clone() }
    }

    /// Adds one record to the message being built; sends that message first when the record
    /// does not fit in it.
    pub fn add(&mut self, rec: &R, now: Instant) {
        self.stats.records += 1;
        self.scratch.clear();
        rec.encode(&mut self.scratch);
        let tid = rec.template_id();
        if MESSAGE_HEADER_LEN + SET_HEADER_LEN + self.scratch.len() > self.cfg.max_message_size {
            self.stats.oversized_records += 1;
            return;
        }
        let new_set = self.set.is_none_or(|(_, id)| id != tid);
        let need = self.scratch.len() + if new_set { SET_HEADER_LEN } else { 0 };
        if self.buf.len() + need > self.cfg.max_message_size {
            self.send_pending(now);
        }
        if self.set.is_none_or(|(_, id)| id != tid) {
            self.close_set();
            self.set = Some((self.buf.len(), tid));
            self.buf.extend_from_slice(&tid.to_be_bytes());
            self.buf.extend_from_slice(&[0, 0]);
        }
        self.buf.extend_from_slice(&self.scratch);
        self.records_in_msg += 1;
    }

    fn close_set(&mut self) {
        if let Some((start, _)) = self.set.take() {
            let len = (self.buf.len() - start) as u16;
            self.buf[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
        }
    }

    /// Sends the message being built (if it holds a record), then does what is due: UDP
    /// template refreshes, TCP reconnects and writes of buffered bytes.
    pub fn flush(&mut self, now: Instant) {
        self.send_pending(now);
        for i in 0..self.conns.len() {
            self.maintain(i, now);
        }
    }

    fn send_pending(&mut self, now: Instant) {
        if self.records_in_msg == 0 {
            return;
        }
        self.close_set();
        let records = self.records_in_msg;
        self.stats.messages += 1;
        write_header(&mut self.buf, 0, self.cfg.observation_domain_id);
        for i in 0..self.conns.len() {
            self.maintain(i, now);
            let mut msg = std::mem::take(&mut self.buf);
            self.send_data(i, &mut msg, records, now);
            self.buf = msg;
        }
        self.buf.truncate(MESSAGE_HEADER_LEN);
        self.records_in_msg = 0;
    }

    /// The template message for connection `i` (its current sequence number).
    fn template_message(&self, seq: u32) -> Vec<u8> {
        let mut m = vec![0u8; MESSAGE_HEADER_LEN];
        let body: usize = self.templates.iter().map(TemplateRecord::wire_len).sum();
        m.extend_from_slice(&TEMPLATE_SET_ID.to_be_bytes());
        m.extend_from_slice(&((SET_HEADER_LEN + body) as u16).to_be_bytes());
        for t in &self.templates {
            t.emit(&mut m);
        }
        write_header(&mut m, seq, self.cfg.observation_domain_id);
        m
    }

    /// Connects (TCP), sends due templates, writes buffered bytes.
    fn maintain(&mut self, i: usize, now: Instant) {
        let refresh = self.cfg.template_refresh;
        let c = &self.conns[i];
        match &c.link {
            Link::Udp(_) => {
                if c.templates_sent.is_none_or(|t| now.duration_since(t) >= refresh) {
                    let m = self.template_message(c.seq);
                    let c = &mut self.conns[i];
                    if let Link::Udp(s) = &c.link {
                        match s.send(&m) {
                            Ok(_) => {
                                c.stats.template_messages += 1;
                                c.stats.bytes += m.len() as u64;
                                c.templates_sent = Some(now);
                            }
                            Err(_) => c.stats.errors += 1,
                        }
                    }
                }
            }
            Link::Tcp(t) => {
                if t.stream.is_none() && t.next_try.is_none_or(|at| now >= at) {
                    self.connect(i, now);
                }
                self.drain(i, now);
            }
        }
    }

    fn connect(&mut self, i: usize, now: Instant) {
        let addr = self.conns[i].stats.collector.addr;
        let timeout = self.cfg.connect_timeout;
        let result = TcpStream::connect_timeout(&addr, timeout).and_then(|s| {
            s.set_nonblocking(true)?;
            s.set_nodelay(true)?;
            Ok(s)
        });
        match result {
            Ok(s) => {
                let m = self.template_message(0);
                let c = &mut self.conns[i];
                let Link::Tcp(t) = &mut c.link else { return };
                t.stream = Some(s);
                t.failures = 0;
                t.out.clear();
                t.sent = 0;
                t.out.extend_from_slice(&m);
                c.seq = 0;
                c.templates_sent = Some(now);
                c.stats.connected = true;
                c.stats.connects += 1;
                c.stats.template_messages += 1;
                c.stats.bytes += m.len() as u64;
            }
            Err(_) => self.disconnect(i, now),
        }
    }

    fn disconnect(&mut self, i: usize, now: Instant) {
        let (base, max) = (self.cfg.backoff_base, self.cfg.backoff_max);
        let c = &mut self.conns[i];
        let Link::Tcp(t) = &mut c.link else { return };
        t.stream = None;
        t.out.clear();
        t.sent = 0;
        let delay = base.saturating_mul(1 << t.failures.min(16)).min(max);
        t.failures = t.failures.saturating_add(1);
        t.next_try = Some(now + delay);
        c.stats.connected = false;
        c.stats.errors += 1;
    }

    /// Writes what the TCP connection has buffered, as far as the socket takes it.
    fn drain(&mut self, i: usize, now: Instant) {
        let c = &mut self.conns[i];
        let Link::Tcp(t) = &mut c.link else { return };
        let Some(s) = t.stream.as_mut() else { return };
        while t.sent < t.out.len() {
            match s.write(&t.out[t.sent..]) {
                Ok(0) => return self.disconnect(i, now),
                Ok(n) => t.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.disconnect(i, now),
            }
        }
        if t.sent == t.out.len() {
            t.out.clear();
            t.sent = 0;
        } else if t.sent > t.out.len() / 2 {
            t.out.drain(..t.sent);
            t.sent = 0;
        }
    }

    /// Sends a built data message of `records` records to connection `i`, with its
    /// sequence number.
    fn send_data(&mut self, i: usize, msg: &mut [u8], records: u32, now: Instant) {
        let tcp_buffer = self.cfg.tcp_buffer;
        let c = &mut self.conns[i];
        msg[8..12].copy_from_slice(&c.seq.to_be_bytes());
        let sent = match &mut c.link {
            Link::Udp(s) => match s.send(msg) {
                Ok(_) => true,
                Err(e) => {
                    if e.kind() != ErrorKind::WouldBlock {
                        c.stats.errors += 1;
                    }
                    false
                }
            },
            Link::Tcp(t) => {
                if t.stream.is_some() && t.out.len() - t.sent + msg.len() <= tcp_buffer {
                    t.out.extend_from_slice(msg);
                    true
                } else {
                    false
                }
            }
        };
        if sent {
            c.seq = c.seq.wrapping_add(records);
            c.stats.messages += 1;
            c.stats.records += u64::from(records);
            c.stats.bytes += msg.len() as u64;
        } else {
            c.stats.records_dropped += u64::from(records);
        }
        if matches!(c.link, Link::Tcp(_)) {
            self.drain(i, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::Decoder;
    use crate::flow::{FlowRecord, DOCUMENTATION_PEN};
    use std::io::Read;
    use std::net::TcpListener;

    fn record(i: u32) -> FlowRecord {
        let mut r = FlowRecord { protocol: 17, source_port: i as u16, destination_port: 53, ..Default::default() };
        r.set_addresses("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        r.octet_delta = u64::from(i) * 100;
        r.packet_delta = u64::from(i);
        r.flow_uuid = format!("uuid-{i}");
        r
    }

    fn udp_sink() -> (UdpSocket, Collector) {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let c = Collector { transport: Transport::Udp, addr: s.local_addr().unwrap() };
        (s, c)
    }

    fn recv_all(s: &UdpSocket) -> Vec<Vec<u8>> {
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = s.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    #[test]
    fn collector_strings() {
        let c: Collector = "127.0.0.1:4739".parse().unwrap();
        assert_eq!(c, Collector { transport: Transport::Udp, addr: "127.0.0.1:4739".parse().unwrap() });
        assert_eq!(c.to_string(), "udp://127.0.0.1:4739");
        let t: Collector = "tcp://[::1]:4739".parse().unwrap();
        assert_eq!(t.transport, Transport::Tcp);
        assert_eq!(t.to_string().parse::<Collector>().unwrap(), t);
        for bad in ["localhost:4739", "sctp://127.0.0.1:4739", "127.0.0.1", "127.0.0.1:0", "0.0.0.0:4739"] {
            assert!(bad.parse::<Collector>().is_err(), "{bad}");
        }
    }

    #[test]
    fn udp_messages_carry_templates_first_then_records_with_sequence_numbers() {
        let (sock_a, a) = udp_sink();
        let (sock_b, b) = udp_sink();
        let mut cfg = ExporterConfig::new(vec![a, b]);
        cfg.observation_domain_id = 77;
        cfg.template_refresh = Duration::from_secs(10);
        let mut ex = Exporter::<FlowRecord>::new(cfg).unwrap();
        let t0 = Instant::now();
        let n = 100u32;
        for i in 0..n {
            ex.add(&record(i), t0);
        }
        ex.flush(t0);
        for sock in [&sock_a, &sock_b] {
            let msgs = recv_all(sock);
            let mut d = Decoder::new();
            let mut seq_expected = 0u32;
            let mut got = Vec::new();
            for (k, m) in msgs.iter().enumerate() {
                assert!(m.len() <= 1400, "message {k}: {} bytes", m.len());
                let dec = d.message(m).unwrap();
                assert_eq!(dec.observation_domain_id, 77);
                if k == 0 {
                    assert_eq!(dec.templates, 2, "the first message holds the two templates");
                    assert!(dec.records.is_empty());
                }
                assert_eq!(dec.sequence_number, seq_expected, "message {k}");
                seq_expected += dec.records.len() as u32;
                for (tid, fields) in dec.records {
                    got.push(
                        FlowRecord::from_fields(tid, fields.iter().map(|(s, b)| (*s, &b[..])), DOCUMENTATION_PEN)
                            .unwrap(),
                    );
                }
            }
            assert!(msgs.len() > 2, "100 records do not fit one 1400-byte message");
            assert_eq!(got, (0..n).map(record).collect::<Vec<_>>());
        }
        let st = ex.stats();
        assert_eq!(st.records, u64::from(n));
        assert!(st.collectors.iter().all(|c| c.records == u64::from(n) && c.template_messages == 1));
        // Before the refresh time: no template message; after: one, ahead of the data.
        ex.add(&record(1), t0 + Duration::from_secs(5));
        ex.flush(t0 + Duration::from_secs(5));
        let msgs = recv_all(&sock_a);
        assert_eq!(msgs.len(), 1);
        ex.add(&record(2), t0 + Duration::from_secs(11));
        ex.flush(t0 + Duration::from_secs(11));
        let msgs = recv_all(&sock_a);
        assert_eq!(msgs.len(), 2);
        let mut d = Decoder::new();
        assert_eq!(d.message(&msgs[0]).unwrap().templates, 2);
        let data = d.message(&msgs[1]).unwrap();
        assert_eq!((data.records.len(), data.sequence_number), (1, n + 1));
        // A refresh is due even without data.
        ex.flush(t0 + Duration::from_secs(22));
        assert_eq!(recv_all(&sock_a).len(), 1);
    }

    #[test]
    fn ipv4_and_ipv6_records_share_a_message_in_separate_sets() {
        let (sock, c) = udp_sink();
        let mut ex = Exporter::<FlowRecord>::new(ExporterConfig::new(vec![c])).unwrap();
        let now = Instant::now();
        let mut v6 = record(9);
        v6.set_addresses("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        ex.add(&record(1), now);
        ex.add(&v6, now);
        ex.add(&record(2), now);
        ex.flush(now);
        let msgs = recv_all(&sock);
        assert_eq!(msgs.len(), 2);
        let m = Message::new_checked(&msgs[1][..]).unwrap();
        let ids: Vec<u16> = m.sets().map(|s| s.unwrap().set_id()).collect();
        assert_eq!(ids, [256, 257, 256]);
        let mut d = Decoder::new();
        d.message(&msgs[0]).unwrap();
        let recs = d.flow_records(&msgs[1], DOCUMENTATION_PEN).unwrap();
        assert_eq!(recs, vec![record(1), v6, record(2)]);
    }

    #[test]
    fn a_message_size_too_small_for_the_templates_is_refused() {
        let (_s, c) = udp_sink();
        let mut cfg = ExporterConfig::new(vec![c]);
        cfg.max_message_size = 100;
        assert!(matches!(Exporter::<FlowRecord>::new(cfg), Err(ExportError::MessageSize { .. })));
    }

    #[test]
    fn tcp_sends_templates_once_per_connection_and_reconnects_with_backoff() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = Collector { transport: Transport::Tcp, addr: l.local_addr().unwrap() };
        let mut cfg = ExporterConfig::new(vec![c]);
        cfg.template_refresh = Duration::from_millis(1);
        cfg.backoff_base = Duration::from_millis(50);
        let mut ex = Exporter::<FlowRecord>::new(cfg).unwrap();
        let t0 = Instant::now();
        for i in 0..30 {
            ex.add(&record(i), t0);
        }
        ex.flush(t0);
        ex.flush(t0 + Duration::from_secs(1)); // no second template message on TCP
        let (mut s, _) = l.accept().unwrap();
        let read_messages = |s: &mut TcpStream, want_records: usize| {
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut d = Decoder::new();
            let mut buf = Vec::new();
            let (mut templates, mut recs, mut seqs) = (0, Vec::new(), Vec::new());
            let mut chunk = [0u8; 4096];
            while recs.len() < want_records {
                let n = s.read(&mut chunk).unwrap();
                assert!(n > 0, "connection closed");
                buf.extend_from_slice(&chunk[..n]);
                while let Some(len) = crate::collect::stream_message_len(&buf) {
                    let m: Vec<u8> = buf.drain(..len).collect();
                    let dec = d.message(&m).unwrap();
                    templates += dec.templates;
                    seqs.push(dec.sequence_number);
                    recs.extend(d.flow_records(&m, DOCUMENTATION_PEN).unwrap());
                }
            }
            (templates, recs, seqs)
        };
        let (templates, recs, seqs) = read_messages(&mut s, 30);
        assert_eq!(templates, 2);
        assert_eq!(recs, (0..30).map(record).collect::<Vec<_>>());
        assert_eq!(seqs[0], 0);
        // The collector goes away: the exporter notices on a write, backs off, reconnects,
        // and the new session starts at sequence 0 with the templates again.
        drop(s);
        let mut now = t0 + Duration::from_secs(2);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            ex.add(&record(99), now);
            ex.flush(now);
            if ex.stats().collectors[0].errors > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the exporter never noticed the closed connection");
            std::thread::sleep(Duration::from_millis(10));
            now += Duration::from_millis(10);
        }
        assert!(!ex.stats().collectors[0].connected);
        // Within the backoff: no connection, the record is dropped (counted).
        ex.add(&record(4), now + Duration::from_millis(10));
        ex.flush(now + Duration::from_millis(10));
        assert_eq!(ex.stats().collectors[0].records_dropped, 1);
        now += Duration::from_millis(60);
        ex.add(&record(5), now);
        ex.flush(now);
        ex.add(&record(6), now);
        ex.flush(now);
        let (mut s2, _) = l.accept().unwrap();
        let (templates, recs, seqs) = read_messages(&mut s2, 2);
        assert_eq!(templates, 2);
        assert_eq!(seqs, [0, 0, 1], "templates, then the two data messages of the new session");
        assert_eq!(recs, [record(5), record(6)]);
        let st = &ex.stats().collectors[0];
        assert_eq!(st.connects, 2);
        assert_eq!(st.records_dropped, 1);
    }
}
