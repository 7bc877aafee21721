//! A minimal Avro binary encoder that appends to a byte buffer.
//!
//! The simulator writes millions of envelopes per second, so it encodes directly from its row
//! structs instead of building generic Avro values: no allocation per field, one growable buffer
//! per record. The tests cross-check the output against `apache-avro`.

/// The Confluent wire-format magic byte.
pub const MAGIC: u8 = 0;

/// Appends Avro primitives to `buf`.
pub struct Enc<'a> {
    pub buf: &'a mut Vec<u8>,
}

impl<'a> Enc<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        Enc { buf }
    }

    /// Confluent wire-format header: magic byte and big-endian schema id.
    #[inline]
    pub fn wire_header(&mut self, schema_id: u32) {
        self.buf.push(MAGIC);
        self.buf.extend_from_slice(&schema_id.to_be_bytes());
    }

    #[inline]
    pub fn long(&mut self, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            self.buf.push((z as u8) | 0x80);
            z >>= 7;
        }
        self.buf.push(z as u8);
    }

    #[inline]
    pub fn int(&mut self, v: i32) {
        self.long(v as i64)
    }

    #[inline]
    pub fn boolean(&mut self, v: bool) {
        self.buf.push(v as u8);
    }

    #[inline]
    pub fn bytes(&mut self, v: &[u8]) {
        self.long(v.len() as i64);
        self.buf.extend_from_slice(v);
    }

    #[inline]
    pub fn string(&mut self, v: &str) {
        self.bytes(v.as_bytes())
    }

    /// The branch index of a union; the branch's value follows.
    #[inline]
    pub fn union_index(&mut self, index: u32) {
        self.long(index as i64)
    }

    /// `["null", T]` written as null.
    #[inline]
    pub fn null(&mut self) {
        self.buf.push(0)
    }

    /// `["null", T]`: writes branch 1 and lets `f` write the value, or branch 0.
    #[inline]
    pub fn optional<T>(&mut self, v: Option<T>, f: impl FnOnce(&mut Self, T)) {
        match v {
            None => self.buf.push(0),
            Some(v) => {
                self.buf.push(2); // zigzag(1)
                f(self, v)
            }
        }
    }

    /// A `bytes` decimal: the unscaled value as minimal two's-complement big-endian bytes, the
    /// form Java's `BigInteger.toByteArray()` (and so Kafka Connect) produces.
    #[inline]
    pub fn decimal(&mut self, unscaled: i64) {
        let be = unscaled.to_be_bytes();
        let mut start = 0;
        // Drop leading bytes that only repeat the sign of the next byte.
        while start < 7 {
            let (b, next) = (be[start], be[start + 1]);
            if (b == 0x00 && next & 0x80 == 0) || (b == 0xff && next & 0x80 != 0) {
                start += 1;
            } else {
                break;
            }
        }
        self.bytes(&be[start..]);
    }

    /// A string made of pieces that a closure writes into `scratch`; the length prefix is only
    /// known afterwards, so the pieces go through a reusable scratch buffer.
    #[inline]
    pub fn string_with(&mut self, scratch: &mut Vec<u8>, f: impl FnOnce(&mut Vec<u8>)) {
        scratch.clear();
        f(scratch);
        self.bytes(scratch);
    }
}

/// Appends the decimal digits of `v`.
#[inline]
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends `v` zero-padded to at least `width` digits.
#[inline]
pub fn push_u64_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut tmp = [0u8; 20];
    let mut n = v;
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let digits = tmp.len() - i;
    for _ in digits..width {
        out.push(b'0');
    }
    out.extend_from_slice(&tmp[i..]);
}

/// Appends the canonical 8-4-4-4-12 lowercase hex form of a UUID.
pub fn push_uuid(out: &mut Vec<u8>, v: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = v.to_be_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push(b'-');
        }
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0xf) as usize]);
    }
}

/// Reads a zigzag varint long; used by tests and by the capture tooling to peek at envelopes.
pub fn read_long(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut z: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        z |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((z >> 1) as i64) ^ -((z & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut Enc)) -> Vec<u8> {
        let mut buf = Vec::new();
        f(&mut Enc::new(&mut buf));
        buf
    }

    #[test]
    fn zigzag_varints_match_the_spec() {
        assert_eq!(enc(|e| e.long(0)), [0x00]);
        assert_eq!(enc(|e| e.long(-1)), [0x01]);
        assert_eq!(enc(|e| e.long(1)), [0x02]);
        assert_eq!(enc(|e| e.long(-64)), [0x7f]);
        assert_eq!(enc(|e| e.long(64)), [0x80, 0x01]);
        for v in [0, 1, -1, 63, 64, -65, i64::MAX, i64::MIN, 1 << 40] {
            let b = enc(|e| e.long(v));
            let mut p = 0;
            assert_eq!(read_long(&b, &mut p), Some(v));
            assert_eq!(p, b.len());
        }
    }

    #[test]
    fn decimals_are_minimal_twos_complement() {
        assert_eq!(enc(|e| e.decimal(0)), [2, 0x00]);
        assert_eq!(enc(|e| e.decimal(127)), [2, 0x7f]);
        assert_eq!(enc(|e| e.decimal(128)), [4, 0x00, 0x80]);
        assert_eq!(enc(|e| e.decimal(-1)), [2, 0xff]);
        assert_eq!(enc(|e| e.decimal(-128)), [2, 0x80]);
        assert_eq!(enc(|e| e.decimal(-129)), [4, 0xff, 0x7f]);
        assert_eq!(enc(|e| e.decimal(1999)), [4, 0x07, 0xcf]);
    }

    #[test]
    fn number_and_uuid_formatting() {
        let mut v = Vec::new();
        push_u64(&mut v, 0);
        push_u64(&mut v, 1234);
        push_u64_padded(&mut v, 42, 5);
        assert_eq!(v, b"0123400042");
        let mut u = Vec::new();
        push_uuid(&mut u, 0x123e4567_e89b_12d3_a456_426614174000);
        assert_eq!(u, b"123e4567-e89b-12d3-a456-426614174000");
    }
}
