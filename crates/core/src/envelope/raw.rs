//! Every `unsafe` of the envelope walk, with the proof of each beside it. The rest of the
//! walk is safe code calling what this module exposes:
//!
//! - [`V3`] and [`FastEnvelope::decode_into_v3`]: the flat walk compiled for AVX2, BMI1, BMI2
//!   and LZCNT, run only where the CPU was seen to have them.
//! - [`Chain`]: a row's fields walked two at a time by a chain of links that read the input
//!   word by word without bounds checks. Its proofs rest on two invariants that only this
//!   module can break: a chain is built here and always ends in [`row_done`]'s link (and
//!   nowhere else), and a link is only entered at an offset from which 8 bytes can be read
//!   and goes on only while that still holds.
//! - [`ascii_long`]: long strings checked for ASCII 16 bytes at a time in SSE2 registers.

use crate::avro::resolve::only_sign;
use crate::digest::RowHasher;

use super::Event;
use super::fast::{FastEnvelope, Step, arg, kind};
use super::fields::{ascii_from_8, lean_len, lean_varint};
use super::tail::Hint;

/// Proof that this CPU has AVX2, BMI1, BMI2 and LZCNT: what
/// [`FastEnvelope::decode_into_v3`] is compiled for. Made only by [`V3::detect`].
#[derive(Debug, Clone, Copy)]
pub(super) struct V3(());

impl V3 {
    /// `Some` where the CPU has those features (x86-64 CPUs since about 2013).
    pub(super) fn detect() -> Option<V3> {
        has_v3().then_some(V3(()))
    }
}

impl FastEnvelope {
    /// The walk compiled for CPUs with AVX2, BMI1, BMI2 and LZCNT: shifts by a varint's or a
    /// digit string's length take their count from any register, the hashes' 64-bit products
    /// leave the flags alone, and the tail's template is compared in AVX2 registers inline.
    #[inline(always)]
    pub(super) fn decode_into_v3(
        &self,
        _: V3,
        rows: &RowHasher,
        buf: &[u8],
        hint: Option<&mut Hint>,
        ev: &mut Event,
    ) -> Option<()> {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a `V3` exists only where `has_v3` saw the CPU has the features `walk_v3` is
        // compiled for.
        return unsafe { self.walk_v3(rows, buf, hint, ev) };
        #[cfg(not(target_arch = "x86_64"))]
        self.walk_into(rows, buf, hint, ev)
    }

    /// # Safety
    /// The CPU has AVX2, BMI1, BMI2 and LZCNT.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,bmi1,bmi2,lzcnt")]
    unsafe fn walk_v3(
        &self,
        rows: &RowHasher,
        buf: &[u8],
        hint: Option<&mut Hint>,
        ev: &mut Event,
    ) -> Option<()> {
        self.walk_into(rows, buf, hint, ev)
    }
}

/// Whether this CPU has what [`FastEnvelope::decode_into_v3`] is compiled for.
fn has_v3() -> bool {
    #[cfg(target_arch = "x86_64")]
    return has_avx2() && has_bmi();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether this CPU has AVX2.
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// Whether this CPU has what [`PAIRS_BMI`] is compiled for.
#[cfg(target_arch = "x86_64")]
fn has_bmi() -> bool {
    std::arch::is_x86_feature_detected!("bmi1")
        && std::arch::is_x86_feature_detected!("bmi2")
        && std::arch::is_x86_feature_detected!("lzcnt")
}

/// Whether `data`, of more than 16 bytes, is ASCII: its first and last 16 bytes ORed, and
/// then those between, 16 at a time (a loop that is entered for strings of more than 32
/// bytes only, and left at the first byte not in ASCII: one register, and no unrolled
/// copies whose registers every pair with a string would save and restore).
#[inline(always)]
pub(super) fn ascii_long(data: &[u8]) -> bool {
    let (Some(first), Some(last)) = (data.first_chunk::<16>(), data.last_chunk::<16>()) else {
        return data.is_ascii();
    };
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128};
        // SAFETY: SSE2 is part of x86-64; each load reads the 16 bytes of a chunk, unaligned.
        unsafe {
            let load = |c: &[u8; 16]| _mm_loadu_si128(c.as_ptr().cast::<__m128i>());
            let mut acc = _mm_or_si128(load(first), load(last));
            // The 16 bytes at `at`, while they start before the last 16 (they may overlap them).
            let mut at = 16;
            while at < data.len() - 16
                && let Some(c) = data[at..].first_chunk::<16>()
            {
                if _mm_movemask_epi8(acc) != 0 {
                    return false;
                }
                acc = _mm_or_si128(acc, load(c));
                at += 16;
            }
            _mm_movemask_epi8(acc) == 0
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut acc = u128::from_le_bytes(*first) | u128::from_le_bytes(*last);
        for c in data[16..].as_chunks::<16>().0 {
            acc |= u128::from_le_bytes(*c);
        }
        acc & u128::from_le_bytes([0x80; 16]) == 0
    }
}

/// A row's fields (all of a kind, see [`kind`]) walked two at a time: a chain of [`Link`]s
/// that ends in [`row_done`]'s, and only there. Only [`Chain::new`] makes one.
#[derive(Debug, Clone)]
pub(super) struct Chain(Vec<Link>);

impl Chain {
    /// The chain for the CPU this runs on: its pairs compiled for BMI1, BMI2 and LZCNT where
    /// it has them (x86-64 CPUs since about 2013), whose shifts by a field's length take their
    /// count from any register and leave the flags alone (−2 % of the core's instructions per
    /// event); else those for any x86-64.
    pub(super) fn for_this_cpu(row: &[Step]) -> Chain {
        Chain::new(row, pairs_for_this_cpu())
    }

    /// The chain with the pairs for any x86-64 CPU, whatever this one has.
    pub(super) fn portable(row: &[Step]) -> Chain {
        Chain::new(row, &PAIRS)
    }

    /// Where the row that starts at `start` ends; `None` when a pair declined (see
    /// [`DECLINED`]) and the fields must be walked one at a time.
    #[inline(always)]
    pub(super) fn walk(&self, buf: &[u8], start: usize) -> Option<usize> {
        let links = &self.0[..];
        let end = match buf.len().checked_sub(8) {
            // SAFETY: `Chain::new` ends every chain with `row_done`'s link and puts none after
            // it; the pointer is the slice's own, so it reaches every link in it. The input has
            // `limit + 8` bytes, and the row starts at most at `limit`.
            Some(limit) if start <= limit => unsafe {
                (links[0].f)(links.as_ptr(), buf.as_ptr(), start, limit)
            },
            _ => DECLINED,
        };
        (end != DECLINED).then_some(end)
    }

    /// The chain of links that walks `row`'s fields (all of a kind) in pairs, from `pairs`, and
    /// ends in [`row_done`]'s link. An odd last field is paired with none (kind 7).
    fn new(row: &[Step], pairs: &[[LinkFn; 8]; 7]) -> Chain {
        let kind_of = |s: &Step| kind(*s).expect("a field of a kind");
        let mut links: Vec<Link> = row
            .chunks(2)
            .map(|p| Link {
                f: pairs[kind_of(&p[0])][p.get(1).map_or(7, kind_of)],
                a: arg(p[0]),
                b: p.get(1).map_or(0, |s| arg(*s)),
            })
            .collect();
        links.push(Link {
            f: ROW_DONE,
            a: 0,
            b: 0,
        });
        Chain(links)
    }
}

/// One link of a row's chain: the walk of two fields of known kinds, and what it needs of
/// each (its [`arg`]). A link walks its two fields, then goes on to the next link — the one
/// after it in the chain's slice — by a call in tail position, which the compiler makes a
/// jump: a row is one chain of jumps, with no loop around calls.
///
/// A link is called with a pointer to itself, taken from the chain's slice, so that the next
/// is found without a length to count down: every chain ends in [`row_done`], which goes on
/// to none, and nothing else is a link's last (see [`Chain::walk`]).
///
/// The links walk the input by offsets from its first byte: `at`, where the next field
/// starts, and `limit`, the input's length less 8 — the last offset a word of 8 bytes can be
/// read from. A link is called with `at <= limit`, and each field's walk goes on only while
/// that holds after it: one comparison per field both bounds what it read and lets the next
/// read its first word. A chain returns the offset where the row ends, or [`DECLINED`].
#[derive(Debug, Clone, Copy)]
struct Link {
    f: LinkFn,
    a: u8,
    b: u8,
}

/// A link's walk (see [`Link`]): itself, the input's first byte, `at`, `limit`.
type LinkFn = unsafe fn(*const Link, *const u8, usize, usize) -> usize;

/// The chain's last link: the row ends here.
unsafe fn row_done(_: *const Link, _: *const u8, at: usize, _: usize) -> usize {
    at
}

/// [`row_done`] as the one pointer every chain ends in: a function's address taken in two
/// places may differ (each codegen unit can hold its own copy), a static's value does not.
static ROW_DONE: LinkFn = row_done;

/// A pair's walk declines anything but the common case — a value not in canonical form, a
/// string not in ASCII, a long varint or length, the last 8 bytes of the input, bad input —
/// and the pair is walked again one field at a time, by the fields' own walk, which decides. (No
/// input is that long.)
const DECLINED: usize = usize::MAX;

/// Two fields of known kinds, with no dispatch inside: the common case only (see
/// [`DECLINED`]); then the next link.
///
/// # Safety
/// `this` points into a slice of links whose last is [`row_done`]'s, and is not that one;
/// `input` points to `limit + 8` bytes that can be read, and `at <= limit`.
unsafe fn pair<const A: usize, const B: usize>(
    this: *const Link,
    input: *const u8,
    at: usize,
    limit: usize,
) -> usize {
    // SAFETY: the caller's promise.
    unsafe { walk_pair::<A, B>(this, input, at, limit) }
}

/// [`pair`] compiled for BMI1, BMI2 and LZCNT.
///
/// # Safety
/// As [`pair`]'s, and the CPU has BMI1, BMI2 and LZCNT (see [`pairs_for_this_cpu`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi1,bmi2,lzcnt")]
unsafe fn pair_bmi<const A: usize, const B: usize>(
    this: *const Link,
    input: *const u8,
    at: usize,
    limit: usize,
) -> usize {
    // SAFETY: the caller's promise.
    unsafe { walk_pair::<A, B>(this, input, at, limit) }
}

/// The walk of a pair, inlined into the functions compiled for each kind of CPU.
///
/// # Safety
/// As [`pair`]'s.
#[inline(always)]
unsafe fn walk_pair<const A: usize, const B: usize>(
    this: *const Link,
    input: *const u8,
    at: usize,
    limit: usize,
) -> usize {
    // SAFETY: `this` points to a link of the chain (the caller's promise).
    let Link { a, b, .. } = unsafe { *this };
    // SAFETY: the caller's promise on `input`, `at` and `limit`; a field's walk returns an
    // offset that keeps it.
    let Some(at) = (unsafe { lean::<A>(a, input, at, limit) }) else {
        return DECLINED;
    };
    let Some(at) = (unsafe { lean::<B>(b, input, at, limit) }) else {
        return DECLINED;
    };
    // SAFETY: `this` is not the chain's last link, so the next one is in the same slice; it is
    // either another pair, not the last either, or `row_done`'s, which reads no link. `at` is
    // still at most `limit`.
    unsafe {
        let next = this.add(1);
        ((*next).f)(next, input, at, limit)
    }
}

/// Where a row field of kind `K` in canonical form that starts at `at` ends, if that is at
/// most `limit`; `None` to decline. Kind 7 is no field: the second of a pair made of an odd
/// row's last field.
///
/// # Safety
/// `input` points to `limit + 8` bytes that can be read, and `at <= limit`.
#[inline(always)]
unsafe fn lean<const K: usize>(
    arg: u8,
    input: *const u8,
    at: usize,
    limit: usize,
) -> Option<usize> {
    if K == 7 {
        return Some(at);
    }
    // SAFETY: the caller's promise, for `word(at)`; for the word after a nullable's branch,
    // `at + 1 <= limit` is checked before it is read. A string's data is read only once its
    // end is known to be within `limit`.
    let word =
        |at: usize| u64::from_le_bytes(unsafe { input.add(at).cast::<[u8; 8]>().read_unaligned() });
    let within = |end: usize| (end <= limit).then_some(end);
    let w = word(at);
    match K {
        0 | 1 => within(at + lean_varint(w, if K == 1 { 4 } else { 8 })?),
        // SAFETY: the caller's promise.
        2 => unsafe { lean_str(w, input, at, limit) },
        3 => within(at + lean_len(w)?.1),
        4 => {
            // A one-byte prefix, and a first byte that is not only the sign of the second (as
            // `decimal_not_minimal` reads it), or one byte: all in the word loaded.
            let n = ((w & 0x7f) >> 1) as usize;
            if w & 0x81 == 0 && (n == 1 || (n >= 2 && !only_sign((w >> 8) as u8, (w >> 16) as u8)))
            {
                within(at + 1 + n)
            } else {
                None
            }
        }
        5 | 6 => {
            let b = w as u8;
            if b == 2 - arg {
                within(at + 1)
            } else if b != arg {
                None
            } else if K == 5 {
                within(at + 1 + lean_varint(w >> 8, 7)?)
            } else {
                let at = within(at + 1)?;
                // SAFETY: as the caller's promise, with `at` checked above.
                unsafe { lean_str(word(at), input, at, limit) }
            }
        }
        _ => None,
    }
}

/// Where an ASCII string in canonical form that starts at `at`, its bytes starting `w`, ends,
/// if that is at most `limit`. A string of up to 7 bytes lies in `w` (after its one-byte
/// prefix); a longer one is read by [`ascii_from_8`].
///
/// # Safety
/// As [`lean`]'s.
#[inline(always)]
unsafe fn lean_str(w: u64, input: *const u8, at: usize, limit: usize) -> Option<usize> {
    const HI: u64 = 0x8080_8080_8080_8080;
    let (start, end) = lean_len(w)?;
    let (start, end) = (at + start, at + end);
    if end > limit {
        return None;
    }
    // SAFETY: `input` has `limit + 8` bytes, and `start <= end <= limit`.
    let data = unsafe { std::slice::from_raw_parts(input.add(start), end - start) };
    let ascii = if data.len() < 8 {
        // (A two-byte prefix is for 64 bytes or more: this one is one byte.)
        (w >> 8) & ((1u64 << (8 * data.len())) - 1) & HI == 0
    } else {
        ascii_from_8(data)
    };
    ascii.then_some(end)
}

macro_rules! pairs_of {
    ($f:ident, $a:literal) => {
        [
            $f::<$a, 0>,
            $f::<$a, 1>,
            $f::<$a, 2>,
            $f::<$a, 3>,
            $f::<$a, 4>,
            $f::<$a, 5>,
            $f::<$a, 6>,
            $f::<$a, 7>,
        ]
    };
}

/// The walk of each pair of kinds.
static PAIRS: [[LinkFn; 8]; 7] = [
    pairs_of!(pair, 0),
    pairs_of!(pair, 1),
    pairs_of!(pair, 2),
    pairs_of!(pair, 3),
    pairs_of!(pair, 4),
    pairs_of!(pair, 5),
    pairs_of!(pair, 6),
];

/// The same walks compiled for BMI1, BMI2 and LZCNT.
#[cfg(target_arch = "x86_64")]
static PAIRS_BMI: [[LinkFn; 8]; 7] = [
    pairs_of!(pair_bmi, 0),
    pairs_of!(pair_bmi, 1),
    pairs_of!(pair_bmi, 2),
    pairs_of!(pair_bmi, 3),
    pairs_of!(pair_bmi, 4),
    pairs_of!(pair_bmi, 5),
    pairs_of!(pair_bmi, 6),
];

/// The walks of pairs for the CPU this runs on (see [`Chain::for_this_cpu`]).
fn pairs_for_this_cpu() -> &'static [[LinkFn; 8]; 7] {
    #[cfg(target_arch = "x86_64")]
    if has_bmi() {
        return &PAIRS_BMI;
    }
    &PAIRS
}

/// Where a row field of kind `K` that starts at `pos` ends, as a pair walks it: for tests.
#[cfg(test)]
pub(super) fn lean_in<const K: usize>(arg: u8, buf: &[u8], pos: usize) -> Option<usize> {
    buf.len()
        .checked_sub(8)
        .filter(|limit| pos <= *limit)
        .and_then(|limit| {
            // SAFETY: the buffer has `limit + 8` bytes, and `pos <= limit`.
            unsafe { lean::<K>(arg, buf.as_ptr(), pos, limit) }
        })
}

/// [`tail_matches`](super::tail::tail_matches) compiled for AVX2, as the walk for AVX2
/// inlines it: for tests. `None` where the CPU has no AVX2.
#[cfg(all(test, target_arch = "x86_64"))]
pub(super) fn tail_matches_avx2(tail: &[u8], chunks: &[[[u64; 4]; 2]]) -> Option<bool> {
    /// # Safety
    /// The CPU has AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn matches(tail: &[u8], chunks: &[[[u64; 4]; 2]]) -> bool {
        super::tail::tail_matches(tail, chunks)
    }
    // SAFETY: this CPU has AVX2.
    has_avx2().then(|| unsafe { matches(tail, chunks) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row's chain takes its links from the table it is given (this CPU's, or the one for
    /// any x86-64), with each pair's arguments, and ends in `row_done`'s.
    #[test]
    fn a_chain_is_made_of_the_links_it_was_asked_for_and_ends_in_row_done() {
        let row = [
            Step::Var { chk: true },
            Step::Str { chk: true },
            Step::OptStr {
                present: 2,
                chk: true,
            },
        ];
        let ends = |links: &[Link]| std::ptr::fn_addr_eq(links.last().unwrap().f, ROW_DONE);
        let portable = Chain::portable(&row).0;
        assert_eq!(portable.len(), 3);
        assert!(
            std::ptr::fn_addr_eq(portable[0].f, PAIRS[0][2])
                && std::ptr::fn_addr_eq(portable[1].f, PAIRS[6][7])
                && ends(&portable)
        );
        assert_eq!((portable[1].a, portable[1].b), (2, 0));
        #[cfg(target_arch = "x86_64")]
        {
            let bmi = has_bmi();
            let this = Chain::for_this_cpu(&row).0;
            let table = if bmi { &PAIRS_BMI } else { &PAIRS };
            assert!(
                std::ptr::fn_addr_eq(this[0].f, table[0][2])
                    && std::ptr::fn_addr_eq(this[1].f, table[6][7])
                    && ends(&this)
            );
            assert_eq!(std::ptr::fn_addr_eq(this[0].f, PAIRS[0][2]), !bmi);
        }
    }
}
