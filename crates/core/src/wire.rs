//! The Confluent wire format: byte 0 is the magic 0, bytes 1..5 the big-endian schema id,
//! the rest the Avro binary datum.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("record of {0} bytes is too short for the wire-format header")]
    TooShort(usize),
    #[error("magic byte is {0:#04x}, expected 0x00")]
    BadMagic(u8),
}

/// Splits a wire-format payload into its schema id and datum.
#[inline]
pub fn split(payload: &[u8]) -> Result<(u32, &[u8]), WireError> {
    if payload.len() < 5 {
        return Err(WireError::TooShort(payload.len()));
    }
    if payload[0] != 0 {
        return Err(WireError::BadMagic(payload[0]));
    }
    let id = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    Ok((id, &payload[5..]))
}

/// Prepends the wire-format header for `schema_id` to `datum`.
pub fn frame(schema_id: u32, datum: &[u8], out: &mut Vec<u8>) {
    out.reserve(5 + datum.len());
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(datum);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_frame() {
        let mut b = Vec::new();
        frame(258, b"xy", &mut b);
        assert_eq!(b, [0, 0, 0, 1, 2, b'x', b'y']);
        assert_eq!(split(&b).unwrap(), (258, &b"xy"[..]));
        assert_eq!(split(&[1, 0, 0, 0, 1]).unwrap_err(), WireError::BadMagic(1));
        assert_eq!(split(&[0, 0]).unwrap_err(), WireError::TooShort(2));
    }
}
