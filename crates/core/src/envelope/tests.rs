//! The flat walk's parts, each against the byte-wise reader or the standard library.

use crate::avro::resolve::fast_varint;

use super::fields::{ascii, field_of, lean_len, lean_varint, len_end, load8};
use super::general::parse_position;
use super::raw::{self, ascii_long};
use super::tail::{chunks, digits_value, position_number, tail_matches, varint_value};

#[test]
fn ascii_checks_agree_with_the_standard_library() {
    let mut buf = vec![b'a'; 64];
    for n in 0..40usize {
        for bad in [None, Some(0), Some(n / 2), Some(n.saturating_sub(1))] {
            let mut b = buf.clone();
            if let Some(at) = bad.filter(|at| *at < n) {
                b[10 + at] = 0xc3;
            }
            // A non-ASCII byte right after the range must not count.
            b[10 + n] = 0xff;
            assert_eq!(
                ascii(&b, 10, 10 + n),
                b[10..10 + n].is_ascii(),
                "n={n} bad={bad:?}"
            );
        }
    }
    buf.truncate(12);
    // Where no word fits (the input's last bytes), the answer is "not known to be ASCII":
    // the caller takes the slower check.
    assert!(!ascii(&buf, 8, 12));
}

/// The lean walk's check of long strings, at every length and with a byte not in ASCII at
/// every place (and none: then bytes around the string are not in ASCII).
#[test]
fn long_string_checks_agree_with_the_standard_library() {
    for n in 17..=100usize {
        for bad in (0..n).map(Some).chain([None]) {
            let mut b = vec![0xffu8; n + 2];
            b[1..=n].fill(b'a');
            if let Some(at) = bad {
                b[1 + at] = 0x80;
            }
            assert_eq!(ascii_long(&b[1..=n]), bad.is_none(), "n={n} bad={bad:?}");
        }
    }
}

#[test]
fn lengths_agree_with_the_byte_wise_reader() {
    let mut buf = Vec::new();
    for len in [
        0usize, 1, 63, 64, 127, 128, 8191, 8192, 16383, 16384, 70_000,
    ] {
        buf.clear();
        crate::avro::reader::write_long(&mut buf, len as i64);
        let header = buf.len();
        buf.resize(header + len + 8, b'x');
        assert_eq!(
            len_end(&buf, 0),
            Some((header, header + len, false)),
            "len {len}"
        );
        // The same at the input's end, where the 8-byte load does not fit.
        buf.truncate(header + len);
        assert_eq!(
            len_end(&buf, 0),
            Some((header, header + len, false)),
            "len {len} at the end"
        );
    }
    // Negative, non-minimal, beyond the input.
    assert_eq!(len_end(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0], 0), None);
    assert_eq!(
        len_end(&[0x84, 0x00, b'a', b'b', 0, 0, 0, 0, 0], 0),
        Some((2, 4, true))
    );
    assert_eq!(len_end(&[0x10, b'a', 0, 0, 0, 0, 0, 0], 0), None);
}

/// A tail's template matches exactly the tails whose masked bits are the learned ones, by
/// words and by AVX2 alike: every length from 32 to 200, each byte changed in turn.
#[test]
fn tail_templates_match_exactly_the_bits_they_learned() {
    let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
    let (mut matched, mut differed) = (0, 0);
    for len in 32..=200usize {
        let learned: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Structural bytes: all bits, the high bit only, or none.
        let mask: Vec<u8> = (0..len)
            .map(|_| [0xff, 0x80, 0x00][(next() % 3) as usize])
            .collect();
        let template = chunks(&mask, &learned);
        for at in 0..len {
            let mut tail = learned.clone();
            tail[at] ^= 1 << (next() % 8);
            let want = tail
                .iter()
                .zip(&learned)
                .zip(&mask)
                .all(|((t, l), m)| t & m == l & m);
            assert_eq!(tail_matches(&tail, &template), want, "len {len} at {at}");
            #[cfg(target_arch = "x86_64")]
            if let Some(avx2) = raw::tail_matches_avx2(&tail, &template) {
                assert_eq!(avx2, want, "len {len} at {at}");
            }
            if want { matched += 1 } else { differed += 1 }
        }
        assert!(tail_matches(&learned, &template));
        // Another length is never this template's (the caller checks the length first; a
        // shorter tail than 32 bytes is not read).
        assert!(!tail_matches(&learned[..31], &template));
    }
    assert!(
        matched > 1000 && differed > 1000,
        "{matched} matched, {differed} differed"
    );
}

/// The lean walk's varints: of at most `max` bytes, and minimal (a last byte of zero after
/// others is not), whatever bytes follow in the word.
#[test]
fn lean_varints_are_exactly_the_minimal_ones_within_their_limit() {
    for len in 1..=9usize {
        for cont in [0x80u8, 0x81, 0xff] {
            for last in [0x00u8, 0x01, 0x40, 0x7f] {
                for junk in [0x00u8, 0x80, 0xff] {
                    let mut bytes = [junk; 8];
                    for (i, b) in bytes.iter_mut().enumerate().take(len.min(8)) {
                        *b = if i + 1 == len { last } else { cont };
                    }
                    let w = u64::from_le_bytes(bytes);
                    for max in [1u32, 4, 7, 8] {
                        let minimal = len == 1 || last != 0;
                        let want = (len <= max as usize && len <= 8 && minimal).then_some(len);
                        assert_eq!(lean_varint(w, max), want, "{bytes:02x?} max {max}");
                    }
                }
            }
        }
    }
}

/// The pairs' lean walk of each kind, against the per-field walk that decides: on bytes
/// drawn from those that matter (continuation bits, zero bytes, signs of decimals,
/// non-ASCII), it gives the same end or declines; and it does decide a fair share.
#[test]
fn the_lean_walk_of_each_kind_agrees_with_the_field_walk_or_declines() {
    fn check<const K: usize>(arg: u8, buf: &[u8], pos: usize) -> (bool, bool) {
        let lean = raw::lean_in::<K>(arg, buf, pos);
        let mut nm = false;
        let field = field_of::<K>(arg, true, buf, pos, &mut nm);
        if lean.is_some() {
            assert_eq!(
                (lean, false),
                (field, nm),
                "kind {K} arg {arg} at {pos} in {buf:?}"
            );
        }
        (lean.is_some(), field.is_some() && !nm)
    }
    let alphabet = [
        0x00u8, 0x01, 0x02, 0x03, 0x04, 0x06, 0x0a, 0x10, 0x3e, 0x40, 0x7e, 0x7f, 0x80, 0x81, 0x82,
        0xc3, 0xfe, 0xff, b'a', b'z',
    ];
    let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
    let (mut decided, mut valid) = ([0usize; 7], [0usize; 7]);
    for _ in 0..200_000 {
        let len = (next() % 40) as usize;
        // Long runs of one byte now and then: long varints and long strings.
        let run = alphabet[(next() % alphabet.len() as u64) as usize];
        // Mostly 8 more bytes that no field starts in: the walk declines a field that
        // ends within the input's last 8 bytes, and decides the others.
        let more = if next().is_multiple_of(4) { 0 } else { 8 };
        let buf: Vec<u8> = (0..len + more)
            .map(|_| {
                if next().is_multiple_of(4) {
                    run
                } else {
                    alphabet[(next() % alphabet.len() as u64) as usize]
                }
            })
            .collect();
        let pos = (next() % (len as u64 + 1)) as usize;
        let arg = [0u8, 2][(next() % 2) as usize];
        let results = [
            check::<0>(arg, &buf, pos),
            check::<1>(arg, &buf, pos),
            check::<2>(arg, &buf, pos),
            check::<3>(arg, &buf, pos),
            check::<4>(arg, &buf, pos),
            check::<5>(arg, &buf, pos),
            check::<6>(arg, &buf, pos),
        ];
        for (k, (d, v)) in results.into_iter().enumerate() {
            decided[k] += d as usize;
            valid[k] += v as usize;
        }
    }
    for k in 0..7 {
        assert!(
            decided[k] * 2 > valid[k],
            "kind {k}: decided {} of {} valid",
            decided[k],
            valid[k]
        );
    }
}

/// Length prefixes of one to five bytes, minimal or not, negative or not: the lean walk
/// gives `len_end`'s answer for minimal prefixes of up to two bytes, and declines the rest.
#[test]
fn lean_lengths_agree_with_len_end() {
    for len in [
        0usize,
        1,
        2,
        63,
        64,
        65,
        127,
        128,
        8191,
        8192,
        70_000,
        (1 << 20) - 1,
        1 << 20,
        1 << 21,
    ] {
        for pad in 0..3usize {
            // Minimal, then the same value with `pad` extra bytes of continuation.
            let mut prefix = Vec::new();
            crate::avro::reader::write_long(&mut prefix, len as i64);
            if pad > 0 {
                let last = prefix.len() - 1;
                prefix[last] |= 0x80;
                prefix.extend(std::iter::repeat_n(0x80, pad - 1));
                prefix.push(0);
            }
            let mut buf = prefix.clone();
            buf.resize(prefix.len() + len + 8, b'x');
            let w = load8(&buf, 0).unwrap();
            let lean = lean_len(w);
            let general = len_end(&buf, 0);
            if pad == 0 && prefix.len() <= 2 {
                assert_eq!(lean, Some((prefix.len(), prefix.len() + len)), "len {len}");
                assert_eq!(general, Some((prefix.len(), prefix.len() + len, false)));
            } else {
                assert_eq!(lean, None, "len {len} in {} bytes", prefix.len());
            }
            // Negative: the same bytes with the sign bit set.
            buf[0] |= 1;
            assert_eq!(lean_len(load8(&buf, 0).unwrap()), None, "-{len}");
        }
    }
}

/// Position strings read from a matching tail: as `parse_position` reads them, for
/// every place the template may have learned their digits to begin.
#[test]
fn position_numbers_read_as_parse_position_reads_them() {
    let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
    let alphabet = b"0123456789:-a/ 9";
    let mut fast = 0;
    for i in 0..300_000 {
        // A GTID-like string: a prefix, a separator, digits; now and then anything.
        let mut v: Vec<u8> = Vec::new();
        if i % 3 != 0 {
            v.extend_from_slice(b"f3a1c2d4-0b1e-4c7a-9d2e-123456789abc");
            v.push([b':', b'-'][(next() % 2) as usize]);
            let n = (next() % 22) as usize;
            v.extend((0..n).map(|_| b'0' + (next() % 10) as u8));
        } else {
            let n = (next() % 30) as usize;
            v.extend((0..n).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]));
        }
        // The string inside a buffer, with bytes before and after it.
        let pad = (next() % 24) as usize;
        let mut buf = vec![b'7'; pad];
        buf.extend_from_slice(&v);
        buf.extend_from_slice(b"\x02\x04xy");
        let (start, end) = (pad, pad + v.len());
        let learned = start
            + v.iter()
                .rposition(|c| *c == b':' || *c == b'-')
                .map_or(0, |i| i + 1);
        let digits = if next().is_multiple_of(4) {
            start + (next() % (v.len() as u64 + 1)) as usize
        } else {
            learned
        };
        let expected = parse_position(&v);
        assert_eq!(
            position_number(&buf, start, end, digits),
            expected,
            "{:?} digits at {}",
            String::from_utf8_lossy(&v),
            digits - start
        );
        fast += digits_value(&buf, digits, end).is_some() as usize;
    }
    assert!(fast > 100_000, "{fast}");
}

/// Varints of 1 to 10 bytes, read by the word as the template reads them.
#[test]
fn varint_values_read_as_the_byte_wise_reader_reads_them() {
    let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
    for i in 0..200_000u64 {
        let x = next();
        let v = (x >> (i % 64)) as i64 * if i % 2 == 0 { 1 } else { -1 };
        let mut buf = vec![0x80u8; (i % 13) as usize];
        let start = buf.len();
        crate::avro::reader::write_long(&mut buf, v);
        let end = buf.len();
        buf.extend_from_slice(&[0xff; 3]);
        let raw = fast_varint(&buf, start).unwrap();
        assert_eq!(raw.1, end);
        assert_eq!(
            varint_value(&buf, start, end),
            Some(raw.0),
            "{v} at {start}"
        );
    }
}
