//! Payloads encoded as the Avro binary datum of their compiled Connect schema, with the path to
//! any value that does not match it.

use super::base64::{b64_decode, b64_len};
use super::json::J;
use super::schema::{CSchema, CType};

/// Where a payload left its schema, innermost last when rendered.
#[derive(Debug)]
pub(super) struct PathErr {
    /// Innermost first.
    path: Vec<String>,
    msg: String,
}

impl PathErr {
    pub(super) fn new(msg: impl Into<String>) -> Self {
        PathErr {
            path: Vec::new(),
            msg: msg.into(),
        }
    }

    pub(super) fn at(mut self, seg: impl Into<String>) -> Self {
        self.path.push(seg.into());
        self
    }

    pub(super) fn render(&self) -> String {
        if self.path.is_empty() {
            return self.msg.clone();
        }
        let mut p = String::new();
        for s in self.path.iter().rev() {
            if !p.is_empty() && !s.starts_with('[') {
                p.push('.');
            }
            p.push_str(s);
        }
        format!("at `{p}`: {}", self.msg)
    }
}

pub(super) fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

pub(super) fn mismatch(expected: &str, v: &J<'_>) -> PathErr {
    PathErr::new(format!("expected {expected}, found {}", v.kind()))
}

pub(super) fn encode(s: &CSchema, v: Option<&J<'_>>, out: &mut Vec<u8>) -> Result<(), PathErr> {
    let v = v.filter(|v| **v != J::Null);
    match (s.null_index, v) {
        (Some(n), None) => {
            write_long(out, n as i64);
            Ok(())
        }
        (Some(n), Some(v)) => {
            write_long(out, 1 - n as i64);
            encode_base(&s.ty, v, out)
        }
        (None, Some(v)) => encode_base(&s.ty, v, out),
        (None, None) => match &s.default {
            Some(d) => {
                out.extend_from_slice(d);
                Ok(())
            }
            None => Err(PathErr::new("null for a required value")),
        },
    }
}

pub(super) fn float_text<'v>(v: &'v J<'_>) -> Result<&'v str, PathErr> {
    match v {
        J::Num(n) => Ok(n),
        J::Str(s) if matches!(&**s, "NaN" | "Infinity" | "-Infinity") => Ok(s),
        _ => Err(mismatch("a number", v)),
    }
}

pub(super) fn parse_float<T: std::str::FromStr>(t: &str) -> Result<T, PathErr> {
    let t = match t {
        "Infinity" => "inf",
        "-Infinity" => "-inf",
        t => t,
    };
    t.parse()
        .map_err(|_| PathErr::new(format!("`{t}` is not a number")))
}

pub(super) fn encode_base(ty: &CType, v: &J<'_>, out: &mut Vec<u8>) -> Result<(), PathErr> {
    match ty {
        CType::Int { min, max } => {
            let J::Num(n) = v else {
                return Err(mismatch("an integer", v));
            };
            let i: i64 = n
                .parse()
                .map_err(|_| PathErr::new(format!("`{n}` is not an integer")))?;
            if i < *min || i > *max {
                return Err(PathErr::new(format!("{i} is out of range [{min}, {max}]")));
            }
            write_long(out, i);
        }
        CType::Long => {
            let J::Num(n) = v else {
                return Err(mismatch("an integer", v));
            };
            let i: i64 = n
                .parse()
                .map_err(|_| PathErr::new(format!("`{n}` is not a 64-bit integer")))?;
            write_long(out, i);
        }
        CType::Float => out.extend_from_slice(&parse_float::<f32>(float_text(v)?)?.to_le_bytes()),
        CType::Double => out.extend_from_slice(&parse_float::<f64>(float_text(v)?)?.to_le_bytes()),
        CType::Boolean => {
            let J::Bool(b) = v else {
                return Err(mismatch("a boolean", v));
            };
            out.push(*b as u8);
        }
        CType::String => {
            let J::Str(s) = v else {
                return Err(mismatch("a string", v));
            };
            write_long(out, s.len() as i64);
            out.extend_from_slice(s.as_bytes());
        }
        CType::Bytes | CType::Fixed(_) | CType::Decimal { .. } => {
            if let (CType::Decimal { scale }, J::Num(n)) = (ty, v) {
                let b = decimal_bytes(n, *scale).map_err(PathErr::new)?;
                write_long(out, b.len() as i64);
                out.extend_from_slice(&b);
                return Ok(());
            }
            let J::Str(s) = v else {
                return Err(mismatch("a base64 string", v));
            };
            let len = b64_len(s.as_bytes()).ok_or_else(|| PathErr::new("not base64"))?;
            match ty {
                CType::Fixed(n) if *n != len => {
                    return Err(PathErr::new(format!("{len} bytes, expected {n}")));
                }
                CType::Fixed(_) => {}
                _ => write_long(out, len as i64),
            }
            b64_decode(s.as_bytes(), out).ok_or_else(|| PathErr::new("not base64"))?;
        }
        CType::Array(item) => {
            let J::Arr(a) = v else {
                return Err(mismatch("an array", v));
            };
            if !a.is_empty() {
                write_long(out, a.len() as i64);
                for (i, e) in a.iter().enumerate() {
                    encode(item, Some(e), out).map_err(|e| e.at(format!("[{i}]")))?;
                }
            }
            out.push(0);
        }
        CType::Map(value) => {
            let J::Obj(m) = v else {
                return Err(mismatch("an object", v));
            };
            if !m.is_empty() {
                write_long(out, m.len() as i64);
                for (k, e) in m {
                    write_long(out, k.len() as i64);
                    out.extend_from_slice(k.as_bytes());
                    encode(value, Some(e), out).map_err(|e| e.at(k.to_string()))?;
                }
            }
            out.push(0);
        }
        CType::Entries(key, value) => {
            match v {
                J::Arr(a) => {
                    if !a.is_empty() {
                        write_long(out, a.len() as i64);
                    }
                    for (i, e) in a.iter().enumerate() {
                        let J::Arr(pair) = e else {
                            return Err(mismatch("a [key, value] pair", e).at(format!("[{i}]")));
                        };
                        if pair.len() != 2 {
                            return Err(
                                PathErr::new("expected a [key, value] pair").at(format!("[{i}]"))
                            );
                        }
                        encode(key, Some(&pair[0]), out).map_err(|e| e.at(format!("[{i}].key")))?;
                        encode(value, Some(&pair[1]), out)
                            .map_err(|e| e.at(format!("[{i}].value")))?;
                    }
                }
                J::Obj(m) => {
                    if !m.is_empty() {
                        write_long(out, m.len() as i64);
                    }
                    for (k, e) in m {
                        encode(key, Some(&J::Str(k.clone())), out)
                            .map_err(|e| e.at(k.to_string()))?;
                        encode(value, Some(e), out).map_err(|e| e.at(k.to_string()))?;
                    }
                }
                _ => return Err(mismatch("an array of [key, value] pairs", v)),
            }
            out.push(0);
        }
        CType::Struct(fields) => {
            let J::Obj(m) = v else {
                return Err(mismatch("an object", v));
            };
            for (i, (name, fs)) in fields.iter().enumerate() {
                // JsonConverter writes the fields in schema order: try that first.
                let found = match m.get(i) {
                    Some((k, v)) if k == name => Some(v),
                    _ => m.iter().find(|(k, _)| k == name).map(|(_, v)| v),
                };
                encode(fs, found, out).map_err(|e| e.at(name.clone()))?;
            }
        }
    }
    Ok(())
}

/// A decimal number's unscaled value at `scale`, as big-endian two's complement in the
/// fewest bytes (Java's `BigInteger.toByteArray`).
pub(super) fn decimal_bytes(text: &str, scale: u32) -> Result<Vec<u8>, String> {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (
            &text[..i],
            text[i + 1..]
                .parse::<i64>()
                .map_err(|_| format!("`{text}` is not a decimal"))?,
        ),
        None => (text, 0),
    };
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).map(|d| d - b'0').collect();
    // value = digits × 10^(exp − frac.len()); wanted: × 10^(−scale).
    let shift = exp - frac.len() as i64 + scale as i64;
    if shift >= 0 {
        digits.extend(std::iter::repeat_n(0, shift as usize));
    } else {
        let cut = (-shift) as usize;
        let keep = digits.len().saturating_sub(cut);
        if digits[keep..].iter().any(|d| *d != 0) {
            return Err(format!("`{text}` has more than {scale} decimal places"));
        }
        digits.truncate(keep);
    }
    let mut v: i128 = 0;
    for d in digits {
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(d as i128))
            .ok_or_else(|| format!("`{text}` is too large"))?;
    }
    if neg {
        v = -v;
    }
    let be = v.to_be_bytes();
    let mut start = 0;
    while start < 15
        && ((be[start] == 0 && be[start + 1] & 0x80 == 0)
            || (be[start] == 0xff && be[start + 1] & 0x80 != 0))
    {
        start += 1;
    }
    Ok(be[start..].to_vec())
}
