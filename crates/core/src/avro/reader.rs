//! A bounds-checked cursor over an Avro binary datum. Every read either succeeds or returns
//! a [`DecodeError`] that says what was wrong and at which byte; nothing here panics or
//! allocates more than the input could justify.

use std::fmt;

/// What went wrong while decoding, and at which byte offset of the datum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// The datum ended inside a value.
    Truncated { needed: usize },
    /// A varint ran over 10 bytes or overflowed 64 bits.
    VarintOverflow,
    /// A length prefix was negative.
    NegativeLength(i64),
    /// A block of an array or map whose items do not take the bytes its size says.
    BlockSize { declared: usize, actual: usize },
    /// A length prefix pointed past the end of the datum.
    LengthBeyondInput { length: u64, remaining: usize },
    /// A union branch index that the schema does not have.
    UnionIndex { index: i64, branches: usize },
    /// An enum symbol index that the schema does not have.
    EnumIndex { index: i64, symbols: usize },
    /// A boolean byte other than 0 or 1.
    InvalidBoolean(u8),
    /// A string that is not UTF-8.
    InvalidUtf8,
    /// Bytes left over after the datum was fully decoded.
    TrailingBytes(usize),
    /// Nesting deeper than the decoder allows.
    TooDeep,
    /// A value the reader schema cannot accept from the writer's (schema resolution failed).
    Unresolvable(String),
    /// An `int` whose value does not fit 32 bits.
    IntOutOfRange(i64),
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed } => write!(f, "datum truncated ({needed} more bytes needed)"),
            Self::VarintOverflow => f.write_str("varint longer than 10 bytes"),
            Self::NegativeLength(n) => write!(f, "negative length {n}"),
            Self::BlockSize { declared, actual } => {
                write!(
                    f,
                    "block declared {declared} bytes, its items take {actual}"
                )
            }
            Self::LengthBeyondInput { length, remaining } => {
                write!(f, "length {length} exceeds the {remaining} bytes left")
            }
            Self::UnionIndex { index, branches } => write!(f, "union branch {index} of {branches}"),
            Self::EnumIndex { index, symbols } => write!(f, "enum symbol {index} of {symbols}"),
            Self::InvalidBoolean(b) => write!(f, "boolean byte {b:#04x}"),
            Self::InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            Self::TrailingBytes(n) => write!(f, "{n} trailing bytes after the datum"),
            Self::TooDeep => f.write_str("nesting too deep"),
            Self::Unresolvable(why) => write!(f, "cannot resolve: {why}"),
            Self::IntOutOfRange(v) => write!(f, "int value {v} out of range"),
        }
    }
}

/// Deepest nesting of records, arrays, maps and unions the decoder follows.
pub const MAX_DEPTH: usize = 64;

#[derive(Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Set when a varint was encoded with more bytes than needed: the bytes are then not
    /// the canonical form of their value, so the identity fast path must not hash them.
    pub non_minimal: bool,
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            non_minimal: false,
        }
    }

    #[inline]
    pub fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    pub fn input(&self) -> &'a [u8] {
        self.buf
    }

    /// Moves to `pos`, a position a fast path has validated.
    #[inline]
    pub(crate) fn advance_to(&mut self, pos: usize) {
        debug_assert!(pos >= self.pos && pos <= self.buf.len());
        self.pos = pos;
    }

    #[inline]
    pub fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            kind,
            offset: self.pos,
        }
    }

    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.err(DecodeErrorKind::TrailingBytes(n))),
        }
    }

    #[inline(always)]
    pub fn read_u8(&mut self) -> Result<u8, DecodeError> {
        match self.buf.get(self.pos) {
            Some(b) => {
                self.pos += 1;
                Ok(*b)
            }
            None => Err(self.err(DecodeErrorKind::Truncated { needed: 1 })),
        }
    }

    /// A zigzag varint (`int` or `long`).
    #[inline(always)]
    pub fn read_long(&mut self) -> Result<i64, DecodeError> {
        let rest = &self.buf[self.pos..];
        if let Some(&b) = rest.first() {
            if b & 0x80 == 0 {
                self.pos += 1;
                return Ok(((b >> 1) as i64) ^ -((b & 1) as i64));
            }
            if rest.len() >= 10 {
                // Enough input for any varint: no bounds check per byte.
                let mut value = (b & 0x7f) as u64;
                let mut i = 1;
                loop {
                    let b = rest[i];
                    value |= ((b & 0x7f) as u64) << (7 * i);
                    i += 1;
                    if b & 0x80 == 0 {
                        if b == 0 {
                            self.non_minimal = true;
                        }
                        if i == 10 && b > 1 {
                            return Err(self.err(DecodeErrorKind::VarintOverflow));
                        }
                        break;
                    }
                    if i == 10 {
                        return Err(self.err(DecodeErrorKind::VarintOverflow));
                    }
                }
                self.pos += i;
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        self.read_long_slow()
    }

    #[inline(never)]
    fn read_long_slow(&mut self) -> Result<i64, DecodeError> {
        let start = self.pos;
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let Some(&b) = self.buf.get(self.pos) else {
                self.pos = start;
                return Err(self.err(DecodeErrorKind::Truncated { needed: 1 }));
            };
            self.pos += 1;
            if shift == 63 && b > 1 {
                self.pos = start;
                return Err(self.err(DecodeErrorKind::VarintOverflow));
            }
            value |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    self.non_minimal = true;
                }
                break;
            }
            shift += 7;
            if shift > 63 {
                self.pos = start;
                return Err(self.err(DecodeErrorKind::VarintOverflow));
            }
        }
        Ok(((value >> 1) as i64) ^ -((value & 1) as i64))
    }

    #[inline(always)]
    pub fn read_int(&mut self) -> Result<i32, DecodeError> {
        let at = self.pos;
        let v = self.read_long()?;
        i32::try_from(v).map_err(|_| DecodeError {
            kind: DecodeErrorKind::IntOutOfRange(v),
            offset: at,
        })
    }

    /// A length prefix, checked against the bytes that remain (so a huge or negative length
    /// never turns into an allocation).
    #[inline(always)]
    pub fn read_len(&mut self) -> Result<usize, DecodeError> {
        let at = self.pos;
        let n = self.read_long()?;
        if n < 0 {
            return Err(DecodeError {
                kind: DecodeErrorKind::NegativeLength(n),
                offset: at,
            });
        }
        if n as u64 > self.remaining() as u64 {
            return Err(DecodeError {
                kind: DecodeErrorKind::LengthBeyondInput {
                    length: n as u64,
                    remaining: self.remaining(),
                },
                offset: at,
            });
        }
        Ok(n as usize)
    }

    #[inline(always)]
    pub fn read_fixed(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(self.err(DecodeErrorKind::Truncated {
                needed: n - self.remaining(),
            }));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline(always)]
    pub fn read_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.read_len()?;
        self.read_fixed(n)
    }

    #[inline(always)]
    pub fn read_str(&mut self) -> Result<&'a str, DecodeError> {
        let at = self.pos;
        let b = self.read_bytes()?;
        std::str::from_utf8(b).map_err(|_| DecodeError {
            kind: DecodeErrorKind::InvalidUtf8,
            offset: at,
        })
    }

    #[inline(always)]
    pub fn read_bool(&mut self) -> Result<bool, DecodeError> {
        match self.read_u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => {
                self.pos -= 1;
                Err(self.err(DecodeErrorKind::InvalidBoolean(b)))
            }
        }
    }

    /// A block count of an array or map; a negative count is followed by the block's size
    /// in bytes. Returns the count and, with a size, where the block ends: pass it to
    /// [`block_done`](Self::block_done) after the items, so that a size the items do not
    /// fill is refused by every reader alike (one that skips by the size and one that reads
    /// the items would otherwise disagree on where the datum goes on).
    #[inline]
    pub fn read_block(&mut self) -> Result<(usize, Option<(usize, usize)>), DecodeError> {
        let at = self.pos;
        let n = self.read_long()?;
        if n < 0 {
            self.non_minimal = true; // the byte-size form is not the canonical encoding
            let size = self.read_len()?;
            let count = n.checked_neg().ok_or(DecodeError {
                kind: DecodeErrorKind::NegativeLength(n),
                offset: at,
            })?;
            // Every item takes at least zero bytes, so the count alone cannot be bounded by the
            // input; callers bound the work by the bytes actually consumed per item.
            return Ok((count as usize, Some((self.pos, size))));
        }
        Ok((n as usize, None))
    }

    /// Checks that a block's items took the bytes its size declared (see
    /// [`read_block`](Self::read_block)).
    #[inline]
    pub fn block_done(&self, sized: Option<(usize, usize)>) -> Result<(), DecodeError> {
        match sized {
            Some((start, size)) if self.pos - start != size => Err(DecodeError {
                kind: DecodeErrorKind::BlockSize {
                    declared: size,
                    actual: self.pos - start,
                },
                offset: start,
            }),
            _ => Ok(()),
        }
    }
}

/// Appends the zigzag varint encoding of `v` to `out`.
#[inline]
pub fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            1 << 20,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut b = Vec::new();
            write_long(&mut b, v);
            let mut r = Reader::new(&b);
            assert_eq!(r.read_long().unwrap(), v);
            assert!(!r.non_minimal);
            r.finish().unwrap();
        }
    }

    #[test]
    fn non_minimal_varint_is_flagged() {
        let mut r = Reader::new(&[0x82, 0x00]); // 1 encoded in two bytes
        assert_eq!(r.read_long().unwrap(), 1);
        assert!(r.non_minimal);
    }

    #[test]
    fn overlong_varint_is_an_error() {
        let b = [0xffu8; 11];
        let e = Reader::new(&b).read_long().unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::VarintOverflow);
    }

    #[test]
    fn huge_and_negative_lengths_are_errors_not_allocations() {
        let mut b = Vec::new();
        write_long(&mut b, i64::MAX);
        let e = Reader::new(&b).read_bytes().unwrap_err();
        assert!(matches!(e.kind, DecodeErrorKind::LengthBeyondInput { .. }));
        let mut b = Vec::new();
        write_long(&mut b, -5);
        assert_eq!(
            Reader::new(&b).read_bytes().unwrap_err().kind,
            DecodeErrorKind::NegativeLength(-5)
        );
    }

    #[test]
    fn truncation_and_trailing_bytes_report_offsets() {
        let e = Reader::new(&[0x80]).read_long().unwrap_err();
        assert_eq!(
            e,
            DecodeError {
                kind: DecodeErrorKind::Truncated { needed: 1 },
                offset: 0
            }
        );
        let mut r = Reader::new(&[0x02, 0x00]);
        r.read_long().unwrap();
        assert_eq!(
            r.finish().unwrap_err(),
            DecodeError {
                kind: DecodeErrorKind::TrailingBytes(1),
                offset: 1
            }
        );
    }
}
