//! Numbers in canonical form: floats with one NaN and one zero, decimals in their shortest
//! two's complement.

/// All NaNs hash as one, and so do +0 and -0: equal values, equal canonical bytes.
#[inline]
pub(super) fn canonical_f32(f: f32) -> f32 {
    if f.is_nan() {
        f32::NAN
    } else if f == 0.0 {
        0.0
    } else {
        f
    }
}

#[inline]
pub(super) fn canonical_f64(f: f64) -> f64 {
    if f.is_nan() {
        f64::NAN
    } else if f == 0.0 {
        0.0
    } else {
        f
    }
}

/// A float whose bytes are not its canonical form (another NaN, or -0).
#[inline]
pub(crate) fn non_canonical_f32(b: &[u8]) -> bool {
    let f = f32::from_le_bytes(b.try_into().expect("4 bytes"));
    (f.is_nan() || f == 0.0) && f.to_bits() != canonical_f32(f).to_bits()
}

#[inline]
pub(crate) fn non_canonical_f64(b: &[u8]) -> bool {
    let f = f64::from_le_bytes(b.try_into().expect("8 bytes"));
    (f.is_nan() || f == 0.0) && f.to_bits() != canonical_f64(f).to_bits()
}

pub(super) fn decimal_value(raw: &[u8]) -> Option<i128> {
    if raw.is_empty() {
        return Some(0);
    }
    let significant = minimal_twos_complement(raw);
    if significant.len() > 16 {
        return None;
    }
    let fill = if raw[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut be = [fill; 16];
    be[16 - significant.len()..].copy_from_slice(significant);
    Some(i128::from_be_bytes(be))
}

/// The shortest two's-complement big-endian form of the same value.
pub(super) fn minimal_twos_complement(b: &[u8]) -> &[u8] {
    let mut i = 0;
    while i + 1 < b.len()
        && ((b[i] == 0 && b[i + 1] & 0x80 == 0) || (b[i] == 0xff && b[i + 1] & 0x80 != 0))
    {
        i += 1;
    }
    &b[i..]
}

/// Whether a decimal's two's-complement bytes are not its shortest form (or empty).
#[inline(always)]
pub(crate) fn decimal_not_minimal(b: &[u8]) -> bool {
    match b {
        [] => true,
        [a, b, ..] => only_sign(*a, *b),
        [_] => false,
    }
}

/// Whether the first byte of a two's-complement number only repeats the sign of the second
/// (and could be dropped).
#[inline(always)]
pub(crate) fn only_sign(first: u8, second: u8) -> bool {
    first == ((second as i8) >> 7) as u8
}
