//! Trace request ids: version 4 UUIDs, as strings in requests and as 16 bytes in step records.

/// A fresh random (version 4) UUID.
pub fn new_uuid() -> String {
    let mut b = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b)).is_ok();
    if !ok {
        // No /dev/urandom: time and pid still give a unique id on this host.
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        b = (t ^ (u128::from(std::process::id()) << 96)).to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_uuid(&b)
}

/// The hyphenated lowercase form of 16 UUID bytes.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// The 16 bytes of a UUID string (any case), `None` if it is not one.
pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || s.len() != 36 || [8, 13, 18, 23].iter().any(|&i| s.as_bytes()[i] != b'-') {
        return None;
    }
    let mut b = [0u8; 16];
    for (i, o) in b.iter_mut().enumerate() {
        *o = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_round_trip() {
        let u = new_uuid();
        let b = parse_uuid(&u).unwrap();
        assert_eq!(format_uuid(&b), u);
        assert_eq!(b[6] >> 4, 4);
        assert!(parse_uuid("not-a-uuid").is_none());
        assert!(parse_uuid("bbbbbbbb-0000-4000-8000-000000000080").is_some());
    }
}
