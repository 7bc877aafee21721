//! Column rules in a [`Plan`](super::Plan) (see [`crate::rules`]): a row field ignored is
//! skipped and left out; a treated one is re-encoded by its op, then rewritten in place by
//! a [`Treat`] — the same rewrite for both sides, so values equal under the rule hash alike.

use super::canonical::{canonical_f32, canonical_f64};
use super::compile::Compiler;
use super::{Op, OpId};
use crate::avro::reader::{DecodeError, Reader, write_long};
use crate::avro::schema::{Logical, Node, NodeId};
use crate::rules::{TimeUnit, Treatment};

/// A rewrite of one value's canonical bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Treat {
    /// A float (4 bytes) or double (8) rounded to `decimals` after the point.
    Round { decimals: u32, double: bool },
    /// A long (a time in some unit) truncated to a multiple of `factor`.
    Truncate { factor: i64 },
    /// An ISO-8601 time as text, its fraction of a second cut to `digits` (trailing zeros
    /// dropped, so that `.5` and `.500` agree).
    TruncateIso { digits: usize },
    /// Text in lower case.
    Lower,
}

impl Treat {
    /// Rewrites the value encoded at `out[start..]`.
    pub(super) fn apply(self, out: &mut Vec<u8>, start: usize) -> Result<(), DecodeError> {
        match self {
            Treat::Round { decimals, double } => {
                let p = 10f64.powi(decimals as i32);
                let round = |v: f64| {
                    let r = (v * p).round() / p;
                    if r.is_finite() { r } else { v }
                };
                if double {
                    let b: [u8; 8] = out[start..start + 8].try_into().expect("a double");
                    let v = canonical_f64(round(f64::from_le_bytes(b)));
                    out[start..start + 8].copy_from_slice(&v.to_le_bytes());
                } else {
                    let b: [u8; 4] = out[start..start + 4].try_into().expect("a float");
                    let v = canonical_f32(round(f32::from_le_bytes(b) as f64) as f32);
                    out[start..start + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            Treat::Truncate { factor } => {
                let v = Reader::new(&out[start..]).read_long()?;
                out.truncate(start);
                write_long(out, v - v.rem_euclid(factor));
            }
            Treat::TruncateIso { digits } => {
                let text = Reader::new(&out[start..]).read_str()?;
                let cut = truncate_iso(text, digits);
                if cut.len() != text.len() {
                    let cut = cut.into_owned();
                    out.truncate(start);
                    write_long(out, cut.len() as i64);
                    out.extend_from_slice(cut.as_bytes());
                }
            }
            Treat::Lower => {
                let text = Reader::new(&out[start..]).read_str()?;
                if text.chars().any(char::is_uppercase) {
                    let lower = text.to_lowercase();
                    out.truncate(start);
                    write_long(out, lower.len() as i64);
                    out.extend_from_slice(lower.as_bytes());
                }
            }
        }
        Ok(())
    }
}

/// `2024-08-14T10:00:00.123456Z` at 3 digits: `2024-08-14T10:00:00.123Z`; at 0:
/// `2024-08-14T10:00:00Z`. Text without a fraction after a time is returned as it is.
fn truncate_iso(text: &str, digits: usize) -> std::borrow::Cow<'_, str> {
    let time = text.find('T').map_or(0, |t| t + 1);
    let Some(dot) = text[time..].find('.').map(|d| d + time) else {
        return text.into();
    };
    let frac = &text[dot + 1..];
    let run = frac.bytes().take_while(u8::is_ascii_digit).count();
    let kept = frac[..run.min(digits)].trim_end_matches('0');
    let rest = &frac[run..];
    if kept.is_empty() {
        format!("{}{rest}", &text[..dot]).into()
    } else {
        format!("{}.{kept}{rest}", &text[..dot]).into()
    }
}

/// The unit of a time or timestamp the reader reads as a number, from its Avro logical type
/// or its Kafka Connect name.
fn time_unit(c: &Compiler<'_>, r: NodeId) -> Option<TimeUnit> {
    let logical = match c.reader.node(r) {
        Node::Int(l) | Node::Long(l) => *l,
        _ => return None,
    };
    match logical {
        Logical::TimeMillis | Logical::TimestampMillis | Logical::LocalTimestampMillis => {
            return Some(TimeUnit::Millis);
        }
        Logical::TimeMicros | Logical::TimestampMicros | Logical::LocalTimestampMicros => {
            return Some(TimeUnit::Micros);
        }
        Logical::TimestampNanos => return Some(TimeUnit::Nanos),
        _ => {}
    }
    match c.reader.connect_name(r)? {
        "io.debezium.time.Timestamp"
        | "io.debezium.time.Time"
        | "org.apache.kafka.connect.data.Timestamp"
        | "org.apache.kafka.connect.data.Time" => Some(TimeUnit::Millis),
        "io.debezium.time.MicroTimestamp" | "io.debezium.time.MicroTime" => Some(TimeUnit::Micros),
        "io.debezium.time.NanoTimestamp" | "io.debezium.time.NanoTime" => Some(TimeUnit::Nanos),
        _ => None,
    }
}

/// What the rule does to the reader's leaf `r`: `Some(None)` fits but changes nothing (a
/// time already at least as coarse), `None` does not fit.
fn leaf(c: &Compiler<'_>, r: NodeId, t: Treatment) -> Option<Option<Treat>> {
    let node = c.reader.node(r);
    match (t, node) {
        (Treatment::FloatDecimals(decimals), Node::Float | Node::Double) => {
            Some(Some(Treat::Round {
                decimals,
                double: matches!(node, Node::Double),
            }))
        }
        (Treatment::TimePrecision(to), Node::Int(_) | Node::Long(_)) => {
            let unit = time_unit(c, r)?;
            let factor = to.nanos() / unit.nanos();
            Some((factor > 1).then_some(Treat::Truncate { factor }))
        }
        (Treatment::TimePrecision(to), Node::String(_)) => match c.reader.connect_name(r)? {
            "io.debezium.time.ZonedTimestamp" | "io.debezium.time.ZonedTime" => {
                Some(Some(Treat::TruncateIso {
                    digits: to.digits(),
                }))
            }
            _ => None,
        },
        (Treatment::CaseInsensitive, Node::String(Logical::None)) => Some(Some(Treat::Lower)),
        _ => None,
    }
}

impl Compiler<'_> {
    /// `op` (reading into the reader's `r`) with the treatment `t` after it, through unions:
    /// `None` when it fits no branch.
    pub(super) fn treat(&mut self, op: OpId, r: NodeId, t: Treatment) -> Option<OpId> {
        let branch = |c: &Compiler<'_>, i: Option<u32>| match (i, c.reader.node(r)) {
            (Some(i), Node::Union(rb)) => rb[i as usize],
            _ => r,
        };
        match self.ops[op as usize].clone() {
            Op::FromUnion(branches) => {
                let mut fits = false;
                let mut out = Vec::with_capacity(branches.len());
                for b in branches {
                    out.push(b.map(|(i, bop)| {
                        let rb = branch(self, i);
                        match self.treat(bop, rb, t) {
                            Some(treated) => {
                                fits = true;
                                (i, treated)
                            }
                            None => (i, bop),
                        }
                    }));
                }
                fits.then(|| self.push(Op::FromUnion(out)))
            }
            Op::ToUnion { index, op: inner } => {
                let rb = branch(self, Some(index));
                let treated = self.treat(inner, rb, t)?;
                Some(self.push(Op::ToUnion { index, op: treated }))
            }
            Op::Null | Op::Fail(_) => None,
            _ => match leaf(self, r, t)? {
                Some(how) => Some(self.push(Op::Treat { op, how })),
                None => Some(op),
            },
        }
    }

    /// The treatment `t` applied to a default's bytes (the reader's node `r`).
    pub(super) fn treat_default(&self, bytes: &mut Vec<u8>, r: NodeId, t: Treatment) {
        let r = match self.reader.node(r) {
            // A default takes a union's first branch; its index is one byte (0).
            Node::Union(rb) => {
                if let Some(Some(how)) = leaf(self, rb[0], t) {
                    let _ = how.apply(bytes, 1);
                }
                return;
            }
            _ => r,
        };
        if let Some(Some(how)) = leaf(self, r, t) {
            let _ = how.apply(bytes, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::truncate_iso;

    #[test]
    fn iso_times_are_cut_to_the_digits_asked_and_agree_without_trailing_zeros() {
        assert_eq!(
            truncate_iso("2024-08-14T10:00:00.123456Z", 3),
            "2024-08-14T10:00:00.123Z"
        );
        assert_eq!(
            truncate_iso("2024-08-14T10:00:00.123456Z", 0),
            "2024-08-14T10:00:00Z"
        );
        assert_eq!(
            truncate_iso("2024-08-14T10:00:00.500+02:00", 6),
            "2024-08-14T10:00:00.5+02:00"
        );
        assert_eq!(truncate_iso("10:00:00.0001Z", 3), "10:00:00Z");
        assert_eq!(
            truncate_iso("2024-08-14T10:00:00Z", 3),
            "2024-08-14T10:00:00Z"
        );
    }
}
