//! Rendering of a datum as JSON, for reports and drill-down: decimals as exact strings,
//! dates as `YYYY-MM-DD`, timestamps as RFC 3339 text, bytes as hex. Not on the hot path.

use serde_json::{Map, Value as Json};

use super::reader::{DecodeError, DecodeErrorKind, MAX_DEPTH, Reader};
use super::schema::{Logical, Node, NodeId, Schema};
use crate::time::civil_from_days;

pub fn to_json(schema: &Schema, node: NodeId, r: &mut Reader<'_>) -> Result<Json, DecodeError> {
    value(schema, node, r, 0)
}

fn value(
    schema: &Schema,
    node: NodeId,
    r: &mut Reader<'_>,
    depth: usize,
) -> Result<Json, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(r.err(DecodeErrorKind::TooDeep));
    }
    Ok(match schema.node(node) {
        Node::Null => Json::Null,
        Node::Boolean => Json::Bool(r.read_bool()?),
        Node::Int(l) | Node::Long(l) => {
            let v = r.read_long()?;
            match l {
                Logical::Date => Json::String(format_date(v)),
                Logical::TimestampMillis => Json::String(format_ts(
                    v.div_euclid(1000),
                    v.rem_euclid(1000) * 1_000_000,
                )),
                Logical::TimestampMicros => Json::String(format_ts(
                    v.div_euclid(1_000_000),
                    v.rem_euclid(1_000_000) * 1000,
                )),
                _ => Json::from(v),
            }
        }
        Node::Float => Json::from(f32::from_le_bytes(r.read_fixed(4)?.try_into().unwrap()) as f64),
        Node::Double => Json::from(f64::from_le_bytes(r.read_fixed(8)?.try_into().unwrap())),
        Node::Bytes(Logical::Decimal { scale, .. }) => {
            Json::String(format_decimal(r.read_bytes()?, *scale))
        }
        Node::Fixed {
            size,
            logical: Logical::Decimal { scale, .. },
            ..
        } => Json::String(format_decimal(r.read_fixed(*size)?, *scale)),
        Node::Bytes(_) => Json::String(hex(r.read_bytes()?)),
        Node::Fixed { size, .. } => Json::String(hex(r.read_fixed(*size)?)),
        Node::String(_) => Json::String(r.read_str()?.to_string()),
        Node::Enum { symbols, .. } => {
            let at = r.pos();
            let i = r.read_long()?;
            let s = usize::try_from(i)
                .ok()
                .and_then(|i| symbols.get(i))
                .ok_or(DecodeError {
                    kind: DecodeErrorKind::EnumIndex {
                        index: i,
                        symbols: symbols.len(),
                    },
                    offset: at,
                })?;
            Json::String(s.clone())
        }
        Node::Array(item) => {
            let mut out = Vec::new();
            loop {
                let (n, sized) = r.read_block()?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    let before = r.pos();
                    out.push(value(schema, *item, r, depth + 1)?);
                    if r.pos() == before && out.len() > 1 << 16 {
                        return Err(r.err(DecodeErrorKind::LengthBeyondInput {
                            length: n as u64,
                            remaining: r.remaining(),
                        }));
                    }
                }
                r.block_done(sized)?;
            }
            Json::Array(out)
        }
        Node::Map(v) => {
            let mut out = Map::new();
            loop {
                let (n, sized) = r.read_block()?;
                if n == 0 {
                    break;
                }
                for _ in 0..n {
                    let k = r.read_str()?.to_string();
                    out.insert(k, value(schema, *v, r, depth + 1)?);
                }
                r.block_done(sized)?;
            }
            Json::Object(out)
        }
        Node::Record { fields, .. } => {
            let mut out = Map::new();
            for f in fields {
                out.insert(f.name.clone(), value(schema, f.node, r, depth + 1)?);
            }
            Json::Object(out)
        }
        Node::Union(branches) => {
            let at = r.pos();
            let i = r.read_long()?;
            let b = usize::try_from(i)
                .ok()
                .and_then(|i| branches.get(i))
                .ok_or(DecodeError {
                    kind: DecodeErrorKind::UnionIndex {
                        index: i,
                        branches: branches.len(),
                    },
                    offset: at,
                })?;
            value(schema, *b, r, depth + 1)?
        }
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn format_decimal(raw: &[u8], scale: u32) -> String {
    if raw.is_empty() {
        return "0".into();
    }
    if raw.len() > 16 {
        return format!("0x{}e-{scale}", hex(raw));
    }
    let fill = if raw[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut be = [fill; 16];
    be[16 - raw.len()..].copy_from_slice(raw);
    let v = i128::from_be_bytes(be);
    let digits = v.unsigned_abs().to_string();
    let sign = if v < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

pub fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

pub fn format_ts(secs: i64, nanos: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let frac = if nanos % 1_000_000 == 0 {
        format!(".{:03}", nanos / 1_000_000)
    } else {
        format!(".{:06}", nanos / 1000)
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{frac}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Milliseconds since the epoch as RFC 3339 text.
pub fn format_millis(ms: i64) -> String {
    crate::time::format_utc(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format_decimal(&[0x04, 0xD2], 2), "12.34");
        assert_eq!(format_decimal(&[0xff], 2), "-0.01");
        assert_eq!(format_decimal(&[0x05], 0), "5");
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(19949), "2024-08-14");
        assert_eq!(format_millis(1_723_650_300_000), "2024-08-14T15:45:00.000Z");
    }
}
