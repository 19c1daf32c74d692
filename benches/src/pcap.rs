//! The little of the pcap format the harness needs.

use anyhow::{bail, Context, Result};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

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

/// Number of packets in a classic pcap file (either byte order).
pub fn count_packets(path: &Path) -> Result<u64> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = f.metadata()?.len();
    let mut r = BufReader::with_capacity(1 << 16, f);
    let mut gh = [0u8; 24];
    r.read_exact(&mut gh)
        .with_context(|| format!("{}: no pcap header", path.display()))?;
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
        let caplen = if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        } as i64;
        r.seek(SeekFrom::Current(caplen))?;
        pos += 16 + caplen as u64;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

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
