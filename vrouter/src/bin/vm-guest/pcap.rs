//! The classic pcap format the guest reads its traffic from and records what it receives to
//! (microsecond timestamps, Ethernet link type), both byte orders on input.

use anyhow::{bail, Context, Result};
use std::io::{BufWriter, Write};
use std::path::Path;

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;
/// Largest frame the guest sends (one mbuf of DPDK's default data room holds 2048 bytes).
pub const MAX_FRAME: usize = 2048;

/// The frames of a pcap file, in order. Fails on anything but an Ethernet capture or on a
/// frame larger than [`MAX_FRAME`], naming the file and the record.
pub fn read(path: &Path) -> Result<Vec<Vec<u8>>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&data).with_context(|| format!("pcap {}", path.display()))
}

fn parse(data: &[u8]) -> Result<Vec<Vec<u8>>> {
    if data.len() < 24 {
        bail!("{} bytes: shorter than a pcap file header", data.len());
    }
    let magic = u32::from_le_bytes(data[0..4].try_into().expect("4 bytes"));
    let swapped = magic.swap_bytes();
    let le = match (magic, swapped) {
        (MAGIC_US | MAGIC_NS, _) => true,
        (_, MAGIC_US | MAGIC_NS) => false,
        _ => bail!("magic {magic:#010x} is not a pcap magic"),
    };
    let u32_at = |off: usize| -> u32 {
        let b: [u8; 4] = data[off..off + 4].try_into().expect("4 bytes");
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let link = u32_at(20);
    if link != LINKTYPE_ETHERNET {
        bail!("link type {link} is not Ethernet (1)");
    }
    let mut frames = Vec::new();
    let mut off = 24;
    while off < data.len() {
        if off + 16 > data.len() {
            bail!("record {}: truncated record header at byte {off}", frames.len());
        }
        let caplen = u32_at(off + 8) as usize;
        off += 16;
        if off + caplen > data.len() {
            bail!("record {}: {caplen} bytes announced, {} left", frames.len(), data.len() - off);
        }
        if caplen > MAX_FRAME {
            bail!("record {}: {caplen} bytes is larger than the {MAX_FRAME}-byte frames the guest sends", frames.len());
        }
        frames.push(data[off..off + caplen].to_vec());
        off += caplen;
    }
    Ok(frames)
}

/// A pcap file being written frame by frame.
pub struct Writer {
    out: BufWriter<std::fs::File>,
}

impl Writer {
    /// Creates (truncates) `path` and writes the file header.
    pub fn create(path: &Path) -> Result<Writer> {
        let f = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::new(f);
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_US.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&65535u32.to_le_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(Writer { out })
    }

    /// Appends one frame stamped with the current time.
    pub fn write(&mut self, frame: &[u8]) -> Result<()> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let len = frame.len() as u32;
        self.out.write_all(&(now.as_secs() as u32).to_le_bytes())?;
        self.out.write_all(&now.subsec_micros().to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(frame)?;
        Ok(())
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.pcap");
        let frames = vec![vec![1u8; 60], vec![2u8; 1514], vec![]];
        let mut w = Writer::create(&p).unwrap();
        for f in &frames {
            w.write(f).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(read(&p).unwrap(), frames);
    }

    #[test]
    fn bad_files_name_the_problem() {
        assert!(parse(&[0; 10]).unwrap_err().to_string().contains("shorter than a pcap file header"));
        let mut h = vec![0u8; 24];
        h[0..4].copy_from_slice(&MAGIC_US.to_le_bytes());
        h[20..24].copy_from_slice(&101u32.to_le_bytes());
        assert!(parse(&h).unwrap_err().to_string().contains("link type 101"));
        h[20..24].copy_from_slice(&1u32.to_le_bytes());
        let mut rec = h.clone();
        rec.extend_from_slice(&[0; 8]);
        rec.extend_from_slice(&100u32.to_le_bytes());
        rec.extend_from_slice(&100u32.to_le_bytes());
        rec.extend_from_slice(&[0; 10]);
        assert!(parse(&rec).unwrap_err().to_string().contains("record 0: 100 bytes announced, 10 left"));
        let mut be = h.clone();
        be[0..4].copy_from_slice(&MAGIC_US.to_be_bytes());
        be[20..24].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(parse(&be).unwrap(), Vec::<Vec<u8>>::new());
    }
}
