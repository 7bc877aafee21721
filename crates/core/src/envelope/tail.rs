//! The tail of an envelope — `source`, `op`, `ts_ms`, `transaction`, everything after the row
//! images — checked against a template learned of the last envelopes of the same partition
//! (see [`Hint`]), and the values the verifier needs read from it.

use crate::avro::resolve::{fast_varint, varint_end};
use crate::digest::Op;

use super::Event;
use super::fast::{FastEnvelope, Step};
use super::fields::{len_end, opt_present, unzigzag};
use super::general::parse_position;

/// What the flat walk learned of the last envelope it read of one stream of records (a
/// partition): the shape of its tail — `source`, `op`, `ts_ms`, `transaction`, everything
/// after the row images. A connector writes the same strings there event after event, so
/// the bytes that decide the tail's structure (union branches, length prefixes, the
/// continuation bits of varints) mostly repeat; when they all match, the tail is checked in
/// masked compares of 32 bytes at a time instead of a step per field, and only the values
/// the verifier needs are read from it. Anything else — a changed length, another branch —
/// walks the tail and learns it again.
#[derive(Debug, Clone, Default)]
pub struct Hint {
    pub(super) owner: u64,
    pub(super) tail: Option<Tail>,
    /// Tails walked since the template last matched: a partition whose tails keep changing
    /// is learned from less and less often, not at every record.
    pub(super) misses: u32,
}

impl Hint {
    /// Whether a template of the tail has been learned.
    pub fn has_template(&self) -> bool {
        self.tail.is_some()
    }
}

#[derive(Debug, Clone)]
pub(super) struct Tail {
    /// The tail's length in bytes (it ends the datum).
    len: usize,
    /// Per 32 bytes of the tail, in order, and then the 32 that end it (the tail is at
    /// least that long): the bits that must match, and their values, as four words each.
    /// Every structural byte of the learned tail lies in one.
    chunks: Vec<[[u64; 4]; 2]>,
    /// Where the values the verifier reads lie in the tail (their data, after any branch
    /// and length prefix), from the steps that read them.
    op: Option<(usize, usize)>,
    position: Option<PositionAt>,
    ts_ms: Option<(usize, usize)>,
    order: Option<(usize, usize)>,
}

/// Where the position lies in a tail.
#[derive(Debug, Clone, Copy)]
enum PositionAt {
    Long(usize, usize),
    /// A string, and where its number began in the learned tail (after the last `:` and
    /// `-`, as `parse_position` reads it).
    Str(usize, usize, usize),
}

impl FastEnvelope {
    /// Reads the tail at `pos` by the hint's template, if it has one of this walk and the tail
    /// matches it: whether it did (`None`: it matched, but a value in it is not one the
    /// verifier reads, and the general walk decides).
    #[inline(always)]
    pub(super) fn tail_by_template(
        &self,
        hint: Option<&mut Hint>,
        buf: &[u8],
        pos: usize,
        ev: &mut Event,
        have_op: &mut bool,
        have_pos: &mut bool,
    ) -> Option<bool> {
        if let Some(h) = hint
            && h.owner == self.id
            && let Some(t) = &h.tail
            && t.matches(buf, pos)
        {
            t.read(buf, pos, ev, have_op, have_pos)?;
            if h.misses != 0 {
                h.misses = 0;
            }
            return Some(true);
        }
        Some(false)
    }

    /// The tail of a datum the flat walk accepted, as a template; `None` if it has a part
    /// the template cannot check (a long varint, whose last byte has a range).
    #[cold]
    pub(super) fn learn_tail(&self, buf: &[u8], at: usize) -> Option<Tail> {
        let len = buf.len() - at;
        // (Shorter than any Debezium tail: its `source` alone is longer.)
        if len < 32 {
            return None;
        }
        // Per byte of the tail: the bits that decide its structure.
        let mut mask = vec![0u8; len];
        let (mut op, mut position, mut ts_ms, mut order) = (None, None, None, None);
        let mut pos = at;
        let mut i = self.tail_from?;
        while let Some(&step) = self.steps.get(i) {
            i += 1;
            let start = pos;
            let head = |m: &mut [u8], p: usize| m[start - at..p - at].fill(0xff);
            let varint = |m: &mut [u8], p: usize| -> Option<usize> {
                let (end, _) = varint_end(buf, p)?;
                // Up to 9 bytes: the continuation bits decide the length, and any last
                // byte is in range.
                if end - p > 9 {
                    return None;
                }
                m[p - at..end - at].fill(0x80);
                Some(end)
            };
            let string = |m: &mut [u8], p: usize| -> Option<(usize, usize)> {
                let (data, end, _) = len_end(buf, p)?;
                m[p - at..data - at].fill(0xff);
                Some((data, end))
            };
            let mut branch_of = |present: Option<u8>, pos: &mut usize| -> Option<bool> {
                let p = opt_present(buf, pos, present)?;
                head(&mut mask, *pos);
                Some(p)
            };
            match step {
                Step::Var { .. } | Step::OptVar { .. } | Step::Int { .. } => {
                    let present = match step {
                        Step::OptVar { present, .. } => Some(present),
                        _ => None,
                    };
                    if branch_of(present, &mut pos)? {
                        let end = varint(&mut mask, pos)?;
                        if matches!(step, Step::Int { .. }) && end - pos >= 5 {
                            return None;
                        }
                        pos = end;
                    }
                }
                Step::Str { .. } | Step::Bytes { .. } | Step::Decimal { .. } => {
                    pos = string(&mut mask, pos)?.1
                }
                Step::OptStr { present, .. } => {
                    if branch_of(Some(present), &mut pos)? {
                        pos = string(&mut mask, pos)?.1;
                    }
                }
                Step::OpCode { present } | Step::PositionStr { present } => {
                    if branch_of(present, &mut pos)? {
                        let (data, end) = string(&mut mask, pos)?;
                        let (d, e) = (data - at, end - at);
                        if matches!(step, Step::OpCode { .. }) {
                            op = Some((d, e));
                        } else {
                            let value = &buf[data..end];
                            let digits = value
                                .iter()
                                .rposition(|c| *c == b':' || *c == b'-')
                                .map_or(0, |i| i + 1);
                            position = Some(PositionAt::Str(d, e, d + digits));
                        }
                        pos = end;
                    } else if matches!(step, Step::OpCode { .. }) {
                        // A null op is read as the walk reads it: empty.
                        op = Some((pos - at, pos - at));
                    }
                }
                Step::PositionLong { present }
                | Step::TsMs { present }
                | Step::TotalOrder { present } => {
                    if branch_of(present, &mut pos)? {
                        let end = varint(&mut mask, pos)?;
                        let range = (pos - at, end - at);
                        match step {
                            Step::PositionLong { .. } => {
                                position = Some(PositionAt::Long(range.0, range.1))
                            }
                            Step::TsMs { .. } => ts_ms = Some(range),
                            _ => order = Some(range),
                        }
                        pos = end;
                    }
                }
                Step::Tx { present, next } => {
                    if !branch_of(Some(present), &mut pos)? {
                        i = next as usize;
                    }
                }
                Step::Prim(..) | Step::Image { .. } => return None,
            }
        }
        if pos != buf.len() {
            return None;
        }
        Some(Tail {
            len,
            chunks: chunks(&mask, &buf[at..]),
            op,
            position,
            ts_ms,
            order,
        })
    }
}

impl Tail {
    /// Whether the tail at `pos` has the learned structure (in the walk compiled for AVX2, a
    /// chunk is compared in one register).
    #[inline(always)]
    fn matches(&self, buf: &[u8], pos: usize) -> bool {
        buf.len() - pos == self.len && tail_matches(&buf[pos..], &self.chunks)
    }

    /// Reads the values the verifier needs from a matching tail.
    #[inline(always)]
    fn read(
        &self,
        buf: &[u8],
        pos: usize,
        ev: &mut Event,
        have_op: &mut bool,
        have_pos: &mut bool,
    ) -> Option<()> {
        let tail = &buf[pos..];
        if let Some((start, end)) = self.op {
            ev.op = Op::from_code(&tail[start..end])?;
            *have_op = true;
        }
        match self.position {
            Some(PositionAt::Long(start, end)) => {
                ev.position.tx = unzigzag(varint_value(tail, start, end)?) as u64;
                *have_pos = true;
            }
            Some(PositionAt::Str(start, end, digits)) => {
                ev.position.tx = position_number(tail, start, end, digits)?;
                ev.origin = Some(((pos + start) as u32, (pos + end) as u32));
                *have_pos = true;
            }
            None => {}
        }
        if let Some((start, end)) = self.ts_ms {
            ev.ts_ms = unzigzag(varint_value(tail, start, end)?);
        }
        if let Some((start, end)) = self.order {
            ev.position.order =
                unzigzag(varint_value(tail, start, end)?).clamp(0, u32::MAX as i64) as u32;
        }
        Some(())
    }
}

/// A [`Tail`]'s `chunks`: the bits of `tail` (of 32 bytes or more) that `mask` sets, per 32
/// bytes and then the 32 that end it.
pub(super) fn chunks(mask: &[u8], tail: &[u8]) -> Vec<[[u64; 4]; 2]> {
    let word = |bytes: &[u8], off: usize| {
        u64::from_le_bytes(bytes[off..off + 8].try_into().expect("8 bytes"))
    };
    let chunk = |off: usize| {
        let m: [u64; 4] = std::array::from_fn(|k| word(mask, off + 8 * k));
        [m, std::array::from_fn(|k| word(tail, off + 8 * k) & m[k])]
    };
    (0..tail.len() / 32)
        .map(|k| chunk(32 * k))
        .chain([chunk(tail.len() - 32)])
        .collect()
}

/// Whether `tail` has the learned bits of a [`Tail`]'s `chunks`: 32 bytes at a time, then
/// the 32 that end it.
#[inline(always)]
pub(super) fn tail_matches(tail: &[u8], chunks: &[[[u64; 4]; 2]]) -> bool {
    let word =
        |c: &[u8], k: usize| u64::from_le_bytes(c[8 * k..8 * k + 8].try_into().expect("8 bytes"));
    let Some((last, full)) = chunks.split_last() else {
        return false;
    };
    let Some(end) = tail.len().checked_sub(32) else {
        return false;
    };
    let mut diff = [0u64; 4];
    for (c, [m, v]) in tail.chunks_exact(32).zip(full) {
        for k in 0..4 {
            diff[k] |= (word(c, k) & m[k]) ^ v[k];
        }
    }
    let [m, v] = last;
    for k in 0..4 {
        diff[k] |= (word(&tail[end..], k) & m[k]) ^ v[k];
    }
    diff == [0; 4]
}

/// The value of the varint `buf[start..end]`, whose continuation bits a template checked
/// (every byte but the last has its high bit set): up to 8 bytes from one word.
#[inline(always)]
pub(super) fn varint_value(buf: &[u8], start: usize, end: usize) -> Option<u64> {
    let n = end - start;
    // (A small number, as a transaction's order mostly is: its byte.)
    if n == 1 {
        return buf.get(start).map(|b| *b as u64);
    }
    if n > 8 || end < 8 {
        return fast_varint(buf.get(start..end)?, 0).map(|v| v.0);
    }
    // The word that ends at the varint's end, its bytes moved to the bottom.
    let w = u64::from_le_bytes(buf[end - 8..end].try_into().expect("8 bytes")) >> (8 * (8 - n));
    // The 7-bit groups, packed: pairs, then fours, then all eight.
    let x = w & 0x7f7f_7f7f_7f7f_7f7f;
    let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    Some((x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4))
}

/// The number of the position string `buf[start..end]`, as `parse_position` reads it. The
/// template learned where its digits began (`digits`); while that is still so — they follow
/// a `:` or `-`, or begin the string, and only digits follow — only they are parsed.
#[inline(always)]
pub(super) fn position_number(buf: &[u8], start: usize, end: usize, digits: usize) -> Option<u64> {
    let s = &buf[start..end];
    let d = digits - start;
    if (d == 0 || matches!(s[d - 1], b':' | b'-'))
        && let Some(v) = digits_value(buf, digits, end)
    {
        return Some(v);
    }
    parse_position(s)
}

/// The value of `buf[start..end]` if it is 1 to 16 ASCII digits (fewer than 20 digits never
/// overflow), read eight at a time; `None` otherwise, or where a word does not fit.
#[inline(always)]
pub(super) fn digits_value(buf: &[u8], start: usize, end: usize) -> Option<u64> {
    let n = end - start;
    if n == 0 || n > 16 || end < 16 {
        return None;
    }
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
    // Eight digits, most significant first in memory: bytes below `k` are taken as '0'.
    #[inline(always)]
    fn eight(w: u64, k: usize) -> Option<u64> {
        let keep = if k == 0 { 0 } else { u64::MAX >> (64 - 8 * k) };
        let w = (w & !keep) | (ZEROS & keep);
        if w & 0xf0f0_f0f0_f0f0_f0f0 != ZEROS
            || w.wrapping_add(0x0606_0606_0606_0606) & 0xf0f0_f0f0_f0f0_f0f0 != ZEROS
        {
            return None;
        }
        let v = w - ZEROS;
        let v = v.wrapping_mul(10).wrapping_add(v >> 8);
        const MASK: u64 = 0x0000_00ff_0000_00ff;
        let v = ((v & MASK).wrapping_mul(100 + (1_000_000 << 32)))
            .wrapping_add(((v >> 16) & MASK).wrapping_mul(1 + (10_000 << 32)))
            >> 32;
        Some(v & 0xffff_ffff)
    }
    if n <= 8 {
        return eight(word(end - 8), 8 - n);
    }
    Some(eight(word(end - 16), 16 - n)? * 100_000_000 + eight(word(end - 8), 0)?)
}
