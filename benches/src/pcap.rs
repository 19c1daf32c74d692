//! The little of the pcap format the harness needs.

use anyhow::{bail, Context, Result};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// A classic pcap global header with no packets (LINKTYPE_ETHERNET, snaplen 65535): what
/// the fabric port's `rx_pcap` reads, so its RX returns nothing and its TX frees and counts.
pub fn empty_pcap() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    // thiszone 0, sigfigs 0
    h[16..20].copy_from_slice(&65535u32.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h
}

/// A little-endian pcap of `flows` 60-byte IPv4 UDP frames, one per flow: from
/// 02:00:00:00:00:01 to `dst_mac`, from 10.0.0.(1 + i) to `dst_net`.(1 + i) (a /24), UDP
/// 1000 -> 2000, IP checksum set. The route-storm benchmark's probe stream.
pub fn udp_v4_pcap(flows: u8, dst_mac: [u8; 6], dst_net: [u8; 3]) -> Vec<u8> {
    let mut w = empty_pcap().to_vec();
    for i in 0..flows {
        let mut f = [0u8; 60];
        f[0..6].copy_from_slice(&dst_mac);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&46u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[10, 0, 0, 1 + i]);
        ip[16..20].copy_from_slice(&[dst_net[0], dst_net[1], dst_net[2], 1 + i]);
        let mut sum: u32 = ip.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        let udp = &mut f[34..42];
        udp[0..2].copy_from_slice(&1000u16.to_be_bytes());
        udp[2..4].copy_from_slice(&2000u16.to_be_bytes());
        udp[4..6].copy_from_slice(&26u16.to_be_bytes());
        // ts_sec, ts_usec, caplen, len
        for x in [0u32, u32::from(i), 60, 60] {
            w.extend_from_slice(&x.to_le_bytes());
        }
        w.extend_from_slice(&f);
    }
    w
}

/// The timestamps (ns since the Unix epoch) of every record of a little-endian classic pcap
/// file, microsecond (`a1b2c3d4`) or nanosecond (`a1b23c4d`) precision.
pub fn timestamps_ns(path: &Path) -> Result<Vec<u64>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut gh = [0u8; 24];
    r.read_exact(&mut gh).with_context(|| format!("{}: no pcap header", path.display()))?;
    let sub = match u32::from_le_bytes(gh[0..4].try_into().unwrap()) {
        0xa1b2_c3d4 => 1000,
        0xa1b2_3c4d => 1,
        m => bail!("{}: not a little-endian pcap file (magic {m:#x})", path.display()),
    };
    let (mut pos, mut out) = (24u64, Vec::new());
    let mut rh = [0u8; 16];
    while pos + 16 <= len {
        r.read_exact(&mut rh)?;
        let word = |i: usize| u64::from(u32::from_le_bytes(rh[i..i + 4].try_into().unwrap()));
        out.push(word(0) * 1_000_000_000 + word(4) * sub);
        let caplen = word(8);
        r.seek_relative(caplen as i64)?;
        pos += 16 + caplen;
    }
    Ok(out)
}

/// Number of packets in a classic pcap file (either byte order).
pub fn count_packets(path: &Path) -> Result<u64> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 16, f);
    let mut gh = [0u8; 24];
    r.read_exact(&mut gh).with_context(|| format!("{}: no pcap header", path.display()))?;
    let le = match u32::from_le_bytes(gh[0..4].try_into().unwrap()) {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        m => bail!("{}: not a pcap file (magic {m:#x})", path.display()),
    };
    let mut pos = 24u64;
    let mut n = 0u64;
    let mut rh = [0u8; 16];
    while pos + 16 <= len {
        r.read_exact(&mut rh)?;
        let b: [u8; 4] = rh[8..12].try_into().unwrap();
        let caplen = if le { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) } as i64;
        r.seek(SeekFrom::Current(caplen))?;
        pos += 16 + caplen as u64;
        n += 1;
    }
    Ok(n)
}

/// Writes `out`: every IPv4 TCP/UDP datagram of the classic little-endian pcap `input` in
/// two fragments (the first carries the 8 bytes after the IP header: the ports; the second
/// the rest), each datagram with its own identification (its index in the file), frames
/// padded to 60 bytes; other records are copied. For the fragmented-traffic throughput row.
/// Returns the number of records written.
pub fn fragment_in_two(input: &Path, out: &Path) -> Result<u64> {
    let data = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    if data.len() < 24 || u32::from_le_bytes(data[0..4].try_into().unwrap()) != 0xa1b2_c3d4 {
        bail!("{}: not a little-endian microsecond pcap", input.display());
    }
    let mut w = data[..24].to_vec();
    let mut pos = 24;
    let mut n = 0u64;
    let mut ident = 0u16;
    let record = |w: &mut Vec<u8>, ts: &[u8], frame: &[u8]| {
        let len = frame.len().max(60) as u32;
        w.extend_from_slice(ts);
        w.extend_from_slice(&len.to_le_bytes());
        w.extend_from_slice(&len.to_le_bytes());
        w.extend_from_slice(frame);
        w.resize(w.len() + (len as usize - frame.len()), 0);
    };
    while pos + 16 <= data.len() {
        let caplen = u32::from_le_bytes(data[pos + 8..pos + 12].try_into().unwrap()) as usize;
        let (ts, frame) = (&data[pos..pos + 8], data.get(pos + 16..pos + 16 + caplen).context("truncated record")?);
        pos += 16 + caplen;
        let ipv4_l4 = frame.len() >= 34
            && frame[12..14] == [0x08, 0x00]
            && frame[14] == 0x45
            && (frame[23] == 6 || frame[23] == 17);
        let total = if ipv4_l4 { usize::from(u16::from_be_bytes([frame[16], frame[17]])) } else { 0 };
        if !ipv4_l4 || total < 20 + 16 || 14 + total > frame.len() {
            record(&mut w, ts, frame);
            n += 1;
            continue;
        }
        ident = ident.wrapping_add(1);
        let l4 = &frame[34..14 + total];
        for (off, part, more) in [(0usize, &l4[..8], true), (8, &l4[8..], false)] {
            let mut f = frame[..34].to_vec();
            f[16..18].copy_from_slice(&((20 + part.len()) as u16).to_be_bytes());
            f[18..20].copy_from_slice(&ident.to_be_bytes());
            f[20..22].copy_from_slice(&(((off / 8) as u16) | if more { 0x2000 } else { 0 }).to_be_bytes());
            f[24..26].copy_from_slice(&[0, 0]);
            let mut sum = 0u32;
            for c in f[14..34].chunks(2) {
                sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
            }
            while sum > 0xffff {
                sum = (sum & 0xffff) + (sum >> 16);
            }
            f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
            f.extend_from_slice(part);
            record(&mut w, ts, &f);
            n += 1;
        }
    }
    std::fs::write(out, &w).with_context(|| format!("writing {}", out.display()))?;
    Ok(n)
}

/// `<out>/pcaps/udp_<n>.pcap`: `n` UDP flows made by `<shared>/bench/gen_flows_pcap.py`, made
/// once (an existing non-empty file is reused); the command run is appended to `commands`.
pub fn ensure_flows_pcap(out: &Path, shared: &Path, n: u64, commands: &mut Vec<String>) -> Result<PathBuf> {
    make_flows_pcap(out, shared, n, None, commands)
}

/// `<out>/pcaps/udp_<n>_once.pcap`: the `n` flows of [`ensure_flows_pcap`], one frame each
/// (`--min-pkts 1`), in the same shuffled order: a sender that cycles over the file sends
/// every flow once per pass.
pub fn ensure_flows_pcap_once(out: &Path, shared: &Path, n: u64, commands: &mut Vec<String>) -> Result<PathBuf> {
    make_flows_pcap(out, shared, n, Some(1), commands)
}

fn make_flows_pcap(
    out: &Path,
    shared: &Path,
    n: u64,
    min_pkts: Option<u64>,
    commands: &mut Vec<String>,
) -> Result<PathBuf> {
    let name = match min_pkts {
        None => format!("udp_{n}.pcap"),
        Some(1) => format!("udp_{n}_once.pcap"),
        Some(m) => format!("udp_{n}_min{m}.pcap"),
    };
    let p = out.join("pcaps").join(name);
    if std::fs::metadata(&p).map(|m| m.len() > 24).unwrap_or(false) {
        println!("# using existing {}", p.display());
        return Ok(p);
    }
    if let Some(dir) = p.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut argv = vec![
        "python3".to_string(),
        shared.join("bench/gen_flows_pcap.py").display().to_string(),
        "-n".into(),
        n.to_string(),
        "-o".into(),
        p.display().to_string(),
    ];
    if let Some(m) = min_pkts {
        argv.extend(["--min-pkts".to_string(), m.to_string()]);
    }
    let line = crate::shell_line(&argv);
    println!("$ {line}");
    commands.push(line);
    let st = std::process::Command::new(&argv[0]).args(&argv[1..]).status().context("running gen_flows_pcap.py")?;
    if !st.success() {
        bail!("gen_flows_pcap.py failed ({st})");
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_every_datagram_in_two() {
        let dir = std::env::temp_dir().join(format!("bench-frag-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (i, o) = (dir.join("in.pcap"), dir.join("out.pcap"));
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 46, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        frame.extend_from_slice(&[0x27, 0x10, 0x00, 0x35, 0, 26, 0, 0]);
        frame.extend((0..18u8).collect::<Vec<_>>());
        let mut data = empty_pcap().to_vec();
        data.extend_from_slice(&[0u8; 8]);
        data.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        data.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        data.extend_from_slice(&frame);
        std::fs::write(&i, &data).unwrap();
        assert_eq!(fragment_in_two(&i, &o).unwrap(), 2);
        let out = std::fs::read(&o).unwrap();
        let first = &out[24 + 16..24 + 16 + 60];
        let second = &out[24 + 16 + 60 + 16..];
        assert_eq!((first[16], first[17], first[20], first[21]), (0, 28, 0x20, 0), "20 + 8 bytes, MF, offset 0");
        assert_eq!(&first[34..42], &frame[34..42], "the UDP header");
        assert_eq!((second[16], second[17], second[20], second[21]), (0, 38, 0, 1), "20 + 18 bytes, offset 8");
        assert_eq!(&second[34..52], &frame[42..60]);
        assert_eq!(first[18..20], second[18..20], "one identification");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn counts_records() {
        let dir = std::env::temp_dir().join(format!("bench-pcap-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.pcap");
        let mut data = empty_pcap().to_vec();
        for len in [60u32, 42, 100] {
            data.extend_from_slice(&[0u8; 8]);
            data.extend_from_slice(&len.to_le_bytes());
            data.extend_from_slice(&len.to_le_bytes());
            data.extend(vec![0xabu8; len as usize]);
        }
        std::fs::write(&p, &data).unwrap();
        assert_eq!(count_packets(&p).unwrap(), 3);
        std::fs::write(&p, empty_pcap()).unwrap();
        assert_eq!(count_packets(&p).unwrap(), 0);
        std::fs::write(&p, b"not a pcap at all, definitely not").unwrap();
        assert!(count_packets(&p).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
