//! One field of the flat walk at a time: varints, length prefixes, strings checked for ASCII
//! or UTF-8, decimals, nullable branches; and the word-at-a-time reads of a field of known
//! kind that the row's pairs inline (see [`Chain`](super::raw::Chain)).

use crate::avro::resolve::{SkipStep, decimal_not_minimal, fast_skip, fast_varint, varint_end};

use super::fast::Step;
use super::raw::ascii_long;

/// The length of a minimal varint of at most `max` bytes whose bytes start `w`.
#[inline(always)]
pub(super) fn lean_varint(w: u64, max: u32) -> Option<usize> {
    const HI: u64 = 0x8080_8080_8080_8080;
    const LO: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    if w & 0x80 == 0 {
        return Some(1);
    }
    // The high bit of the byte that ends it, alone (none if no byte in `w` does).
    let stops = !w & HI;
    let last = stops & stops.wrapping_neg();
    // Per byte, the high bit set where its value bits are not all zero: at the last byte,
    // whether the varint is minimal (a last byte of zero is not). No shift by its length.
    let valued = ((w & LO) + LO) & last;
    let within = if max >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * max)) - 1
    };
    (valued & within != 0).then(|| (last.trailing_zeros() / 8 + 1) as usize)
}

/// A minimal length prefix of one or two bytes (lengths below 8 KiB) whose bytes start `w`:
/// where its data starts and ends, from where it starts. (Not by [`len_word`]: its general
/// decoding of up to three bytes kept registers live in every pair; these two cases need
/// none, and longer prefixes go to the per-field walk.)
#[inline(always)]
pub(super) fn lean_len(w: u64) -> Option<(usize, usize)> {
    let (start, len) = if w & 0x81 == 0 {
        (1, ((w & 0x7f) >> 1) as usize)
    } else if w & 0x8081 == 0x80 && w & 0xff00 != 0 {
        // Continued, not negative, and a second byte that ends it and is not zero.
        (2, (((w & 0x7f) | ((w >> 1) & 0x3f80)) >> 1) as usize)
    } else {
        return None;
    };
    Some((start, start + len))
}

/// Whether `data`, of 8 bytes or more, is ASCII: up to 16 bytes, by its first and last words
/// ORed; more, by [`ascii_long`].
#[inline(always)]
pub(super) fn ascii_from_8(data: &[u8]) -> bool {
    const HI: u64 = 0x8080_8080_8080_8080;
    let word = |c: &[u8; 8]| u64::from_le_bytes(*c);
    match (data.len(), data.first_chunk::<8>(), data.last_chunk::<8>()) {
        (..=16, Some(first), Some(last)) => (word(first) | word(last)) & HI == 0,
        (..=16, ..) => data.is_ascii(),
        _ => ascii_long(data),
    }
}

/// Whether `buf[start..end]` (within the input) is ASCII, without a call: up to 8 bytes, by the
/// word at `start`, and a word that does not fit (the input's last bytes) answers "not known":
/// false, and the caller takes a slower check; more, as the lean walk reads strings.
#[inline(always)]
pub(super) fn ascii(buf: &[u8], start: usize, end: usize) -> bool {
    const HI: u64 = 0x8080_8080_8080_8080;
    let n = end - start;
    if n <= 8 {
        return match load8(buf, start) {
            Some(w) => n == 0 || w & HI & (u64::MAX >> (64 - 8 * n)) == 0,
            None => false,
        };
    }
    buf.get(start..end).is_some_and(ascii_from_8)
}

/// The end of a field of kind `K` (see [`kind`]) and [`arg`] `arg`; `chk`: its bytes must be
/// in canonical form.
#[inline(always)]
pub(super) fn field_of<const K: usize>(
    arg: u8,
    chk: bool,
    buf: &[u8],
    mut pos: usize,
    nm: &mut bool,
) -> Option<usize> {
    // The kind is known: no dispatch on the step.
    match K {
        0 => {
            let (end, n) = varint_end(buf, pos)?;
            *nm |= chk & n;
            Some(end)
        }
        1 => int_end(buf, pos, chk, nm),
        2 => str_end(buf, pos, chk, nm),
        3 => {
            let (_, end, n) = len_end(buf, pos)?;
            *nm |= chk & n;
            Some(end)
        }
        4 => decimal_end(buf, pos, chk, nm),
        5 | 6 => {
            if branch(buf, &mut pos, arg)? {
                pos = if K == 5 {
                    let (end, n) = varint_end(buf, pos)?;
                    *nm |= chk & n;
                    end
                } else {
                    str_end(buf, pos, chk, nm)?
                };
            }
            Some(pos)
        }
        _ => None,
    }
}

/// The end of one field of a row, or of another primitive part of the envelope.
#[inline(always)]
pub(super) fn field_end(step: Step, buf: &[u8], pos: usize, nm: &mut bool) -> Option<usize> {
    match step {
        Step::Var { chk } => field_of::<0>(0, chk, buf, pos, nm),
        Step::Int { chk } => field_of::<1>(0, chk, buf, pos, nm),
        Step::Str { chk } => field_of::<2>(0, chk, buf, pos, nm),
        Step::Bytes { chk } => field_of::<3>(0, chk, buf, pos, nm),
        Step::Decimal { chk } => field_of::<4>(0, chk, buf, pos, nm),
        Step::OptVar { present, chk } => field_of::<5>(present, chk, buf, pos, nm),
        Step::OptStr { present, chk } => field_of::<6>(present, chk, buf, pos, nm),
        Step::Prim(s, chk) => prim_end(s, buf, pos, chk, nm),
        _ => None,
    }
}

#[inline(always)]
pub(super) fn unzigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// Reads a nullable's branch byte: whether the value is present; `None` for any other byte.
#[inline(always)]
pub(super) fn branch(buf: &[u8], pos: &mut usize, present: u8) -> Option<bool> {
    let b = *buf.get(*pos)?;
    *pos += 1;
    if b == present {
        Some(true)
    } else if b == 2 - present {
        Some(false)
    } else {
        None
    }
}

#[inline(always)]
pub(super) fn opt_present(buf: &[u8], pos: &mut usize, present: Option<u8>) -> Option<bool> {
    match present {
        None => Some(true),
        Some(p) => branch(buf, pos, p),
    }
}

#[inline(always)]
pub(super) fn load8(buf: &[u8], pos: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        buf.get(pos..pos + 8)?.try_into().expect("8 bytes"),
    ))
}

/// A length prefix of up to three bytes (lengths below 1 MiB) read from one 8-byte load
/// without a branch per byte; longer prefixes, negative lengths and the last bytes of the
/// input go the byte-wise way. Returns the data's start and end.
#[inline(always)]
pub(super) fn len_end(buf: &[u8], pos: usize) -> Option<(usize, usize, bool)> {
    if let Some(w) = load8(buf, pos)
        && let Some(prefix) = len_word(w, pos)
    {
        let (start, len, nm) = prefix?;
        let end = start + len as usize;
        return (end <= buf.len()).then_some((start, end, nm));
    }
    len_end_slow(buf, pos)
}

/// A length prefix at `pos` whose bytes start `w`, if it is up to three bytes long:
/// `Some(None)` if negative, else its data's start, its length, and whether the prefix was
/// longer than needed. `None` for a longer prefix: the byte-wise reader decides.
#[inline(always)]
fn len_word(w: u64, pos: usize) -> Option<Option<(usize, u64, bool)>> {
    // Most strings are shorter than 64 bytes: a one-byte prefix, whose end is found without
    // the general computation (the branch is predicted per field).
    if w & 0x81 == 0 {
        return Some(Some((pos + 1, (w & 0x7f) >> 1, false)));
    }
    let n = (!w & 0x8080_8080_8080_8080).trailing_zeros() / 8 + 1;
    if n > 3 {
        return None;
    }
    let raw = ((w & 0x7f) | ((w >> 1) & 0x3f80) | ((w >> 2) & 0x1f_c000)) & ((1u64 << (7 * n)) - 1);
    // Odd: a negative length. A last byte of zero after others: not minimal.
    let nm = n > 1 && (w >> ((n - 1) * 8)) as u8 == 0;
    Some((raw & 1 == 0).then_some((pos + n as usize, raw >> 1, nm)))
}

#[inline(never)]
fn len_end_slow(buf: &[u8], pos: usize) -> Option<(usize, usize, bool)> {
    let (raw, start, n) = fast_varint(buf, pos)?;
    if raw & 1 != 0 {
        return None;
    }
    let end = start.checked_add(usize::try_from(raw >> 1).ok()?)?;
    (end <= buf.len()).then_some((start, end, n))
}

#[inline(always)]
pub(super) fn str_end(buf: &[u8], pos: usize, chk: bool, nm: &mut bool) -> Option<usize> {
    let (start, end, n) = len_end(buf, pos)?;
    *nm |= chk & n;
    if chk && !ascii(buf, start, end) && std::str::from_utf8(&buf[start..end]).is_err() {
        return None;
    }
    Some(end)
}

#[inline(always)]
fn decimal_end(buf: &[u8], pos: usize, chk: bool, nm: &mut bool) -> Option<usize> {
    let (start, end, n) = len_end(buf, pos)?;
    if chk {
        *nm |= n;
        *nm |= decimal_not_minimal(&buf[start..end]);
    }
    Some(end)
}

#[inline(always)]
fn int_end(buf: &[u8], pos: usize, chk: bool, nm: &mut bool) -> Option<usize> {
    let (end, n) = varint_end(buf, pos)?;
    if end - pos >= 5 {
        let (raw, _, _) = fast_varint(buf, pos)?;
        i32::try_from(unzigzag(raw)).ok()?;
    }
    *nm |= chk & n;
    Some(end)
}

#[inline(never)]
fn prim_end(step: SkipStep, buf: &[u8], pos: usize, chk: bool, nm: &mut bool) -> Option<usize> {
    let (end, n) = fast_skip(&[step], buf, pos, chk)?;
    *nm |= chk & n;
    Some(end)
}
