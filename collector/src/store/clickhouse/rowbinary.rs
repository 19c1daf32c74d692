//! ClickHouse's `RowBinary` input format: each row its columns in the insert's column order,
//! integers little-endian in their width, strings as a LEB128 length and the bytes,
//! `Nullable(T)` as one byte (1: null, nothing follows; 0: the value follows).

/// A buffer of rows being encoded, with their count.
#[derive(Debug, Default)]
pub struct Rows {
    /// The encoded rows.
    pub data: Vec<u8>,
    /// How many.
    pub count: usize,
}

impl Rows {
    /// Marks the end of a row.
    pub fn end_row(&mut self) {
        self.count += 1;
    }
    /// Takes the rows out, leaving the buffer empty.
    pub fn take(&mut self) -> Rows {
        std::mem::take(self)
    }
    /// `String`.
    pub fn str(&mut self, s: &str) -> &mut Self {
        let mut n = s.len() as u64;
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                self.data.push(byte);
                break;
            }
            self.data.push(byte | 0x80);
        }
        self.data.extend_from_slice(s.as_bytes());
        self
    }
    /// `Int64`.
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.data.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// `UInt64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.data.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// `UInt32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.data.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// `UInt16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.data.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// `UInt8`.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.data.push(v);
        self
    }
    /// `Int8`.
    pub fn i8(&mut self, v: i8) -> &mut Self {
        self.data.push(v as u8);
        self
    }
    /// `Nullable(T)`: the null marker, then `f` writes the value when there is one.
    pub fn opt<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T) -> &mut Self) -> &mut Self {
        match v {
            None => {
                self.data.push(1);
                self
            }
            Some(x) => {
                self.data.push(0);
                f(self, x)
            }
        }
    }
    /// `Nullable(String)`.
    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        self.opt(v, |r, s| r.str(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_the_row_binary_layout() {
        let mut r = Rows::default();
        r.str("ab").i64(-2).u16(0x1234).opt_str(None).opt(Some(7u8), |r, v| r.u8(v)).end_row();
        assert_eq!(r.data, [2, b'a', b'b', 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x34, 0x12, 1, 0, 7]);
        assert_eq!(r.count, 1);
        // LEB128 lengths past one byte.
        let mut r = Rows::default();
        r.str(&"x".repeat(300));
        assert_eq!(&r.data[..2], [0xac, 0x02]);
        assert_eq!(r.data.len(), 302);
        assert_eq!(r.take().count, 0);
        assert!(r.data.is_empty());
    }
}
