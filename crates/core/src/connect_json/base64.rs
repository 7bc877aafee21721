//! Base64, the standard alphabet Jackson writes for Connect bytes, padded or not.

pub(super) fn b64_val(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// The decoded length of `s`, or `None` when it is not base64.
pub(super) fn b64_len(s: &[u8]) -> Option<usize> {
    let t = s
        .strip_suffix(b"==")
        .or_else(|| s.strip_suffix(b"="))
        .unwrap_or(s);
    if (s.len() != t.len() && !s.len().is_multiple_of(4)) || t.len() % 4 == 1 {
        return None;
    }
    Some(t.len() / 4 * 3 + (t.len() % 4).saturating_sub(1))
}

pub(super) fn b64_decode(s: &[u8], out: &mut Vec<u8>) -> Option<()> {
    b64_len(s)?;
    let t = s
        .strip_suffix(b"==")
        .or_else(|| s.strip_suffix(b"="))
        .unwrap_or(s);
    for chunk in t.chunks(4) {
        let mut acc = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            acc |= b64_val(*c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(())
}

pub(super) fn b64_encode(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(b.len().div_ceil(3) * 4);
    for chunk in b.chunks(3) {
        let mut acc = 0u32;
        for (i, x) in chunk.iter().enumerate() {
            acc |= (*x as u32) << (16 - 8 * i);
        }
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(A[(acc >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}
