//! Compiling a [`Plan`](super::Plan): each (writer, reader) node pair matched once, into
//! the ops the re-encoding runs; and defaults encoded for fields the writer lacks.

use std::collections::HashMap;

use serde_json::Value as Json;

use super::canonical::{canonical_f32, canonical_f64, decimal_value, minimal_twos_complement};
use super::{DecimalRepr, FieldOp, Op, OpId};
use crate::avro::reader::{MAX_DEPTH, write_long};
use crate::avro::schema::{Field, Logical, Node, NodeId, Schema};
use crate::rules::{TableRules, Treatment};

pub(super) struct Compiler<'s> {
    pub(super) writer: &'s Schema,
    pub(super) reader: &'s Schema,
    pub(super) ops: Vec<Op>,
    pub(super) memo: HashMap<(NodeId, NodeId), OpId>,
    /// Column rules for the root record's fields (see [`crate::rules`]).
    pub(super) rules: Option<&'s TableRules>,
    /// What the rules could not do, for the user.
    pub(super) notes: Vec<String>,
    /// The rules changed what the plan emits.
    pub(super) ruled: bool,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Match {
    Exact,
    Promotable,
    No,
}

impl Compiler<'_> {
    pub(super) fn push(&mut self, op: Op) -> OpId {
        self.ops.push(op);
        (self.ops.len() - 1) as OpId
    }

    pub(super) fn compile(&mut self, w: NodeId, r: NodeId) -> OpId {
        if let Some(id) = self.memo.get(&(w, r)) {
            return *id;
        }
        // Reserve the slot first so that recursive named types refer back to it.
        let id = self.push(Op::Null);
        self.memo.insert((w, r), id);
        let op = self.build(w, r);
        self.ops[id as usize] = op;
        id
    }

    fn kind_match(&self, w: NodeId, r: NodeId) -> Match {
        use Node::*;
        match (self.writer.node(w), self.reader.node(r)) {
            (Null, Null) | (Boolean, Boolean) | (Float, Float) | (Double, Double) => Match::Exact,
            (Int(_), Int(_)) | (Long(_), Long(_)) | (String(_), String(_)) => Match::Exact,
            (Bytes(a), Bytes(b)) => {
                if matches!(a, Logical::Decimal { .. }) == matches!(b, Logical::Decimal { .. }) {
                    Match::Exact
                } else {
                    Match::No
                }
            }
            (Record { .. }, Record { .. })
            | (Enum { .. }, Enum { .. })
            | (Array(_), Array(_))
            | (Map(_), Map(_)) => Match::Exact,
            (
                Fixed {
                    size: a,
                    logical: la,
                    ..
                },
                Fixed {
                    size: b,
                    logical: lb,
                    ..
                },
            ) if a == b && la == lb => Match::Exact,
            (
                Fixed {
                    logical: Logical::Decimal { .. },
                    ..
                },
                Bytes(Logical::Decimal { .. }),
            )
            | (
                Bytes(Logical::Decimal { .. }),
                Fixed {
                    logical: Logical::Decimal { .. },
                    ..
                },
            ) => Match::Promotable,
            (Int(_), Long(_) | Float | Double) | (Long(_), Float | Double) | (Float, Double) => {
                Match::Promotable
            }
            (String(_), Bytes(Logical::None)) | (Bytes(Logical::None), String(_)) => {
                Match::Promotable
            }
            _ => Match::No,
        }
    }

    fn best_branch(&self, w: NodeId, branches: &[NodeId]) -> Option<(u32, NodeId)> {
        let mut best: Option<(Match, u32, NodeId)> = None;
        for (i, b) in branches.iter().enumerate() {
            let m = self.kind_match(w, *b);
            if m != Match::No && best.as_ref().is_none_or(|(bm, _, _)| m < *bm) {
                best = Some((m, i as u32, *b));
            }
        }
        best.map(|(_, i, b)| (i, b))
    }

    fn build(&mut self, w: NodeId, r: NodeId) -> Op {
        use Node::*;
        let (wn, rn) = (self.writer.node(w).clone(), self.reader.node(r).clone());
        match (&wn, &rn) {
            (Union(wb), Union(rb)) => {
                let mut out = Vec::with_capacity(wb.len());
                for b in wb {
                    match self.best_branch(*b, rb) {
                        Some((i, rbn)) => {
                            let op = self.compile(*b, rbn);
                            out.push(Some((Some(i), op)));
                        }
                        None => out.push(None),
                    }
                }
                Op::FromUnion(out)
            }
            (Union(wb), _) => {
                let out = wb
                    .iter()
                    .map(|b| {
                        if self.kind_match(*b, r) != Match::No {
                            Some((None, self.compile(*b, r)))
                        } else {
                            None
                        }
                    })
                    .collect();
                Op::FromUnion(out)
            }
            (_, Union(rb)) => match self.best_branch(w, rb) {
                Some((index, rbn)) => Op::ToUnion {
                    index,
                    op: self.compile(w, rbn),
                },
                None => Op::Fail(format!(
                    "writer type {} matches no branch of reader union {}",
                    self.writer.describe(w),
                    self.reader.describe(r)
                )),
            },
            (Null, Null) => Op::Null,
            (Boolean, Boolean) => Op::Bool,
            (Int(a) | Long(a), Int(b) | Long(b)) => {
                if matches!(wn, Long(_)) && matches!(rn, Int(_)) {
                    return Op::Fail("long cannot be read as int".into());
                }
                let int = matches!(wn, Int(_));
                match time_scale(*a, *b) {
                    Some((1, 1)) | None => Op::Long { int },
                    Some((mul, div)) => Op::LongScaled { mul, div, int },
                }
            }
            (Int(_), Float) => Op::IntOrLongToFloat { int: true },
            (Long(_), Float) => Op::IntOrLongToFloat { int: false },
            (Int(_), Double) => Op::IntOrLongToDouble { int: true },
            (Long(_), Double) => Op::IntOrLongToDouble { int: false },
            (Float, Float) => Op::Float,
            (Double, Double) => Op::Double,
            (Float, Double) => Op::FloatToDouble,
            (
                Bytes(Logical::Decimal { scale: ws, .. }),
                Bytes(Logical::Decimal { scale: rs, .. }),
            ) => decimal_op(DecimalRepr::Bytes, *ws, DecimalRepr::Bytes, *rs),
            (
                Fixed {
                    size,
                    logical: Logical::Decimal { scale: ws, .. },
                    ..
                },
                Bytes(Logical::Decimal { scale: rs, .. }),
            ) => decimal_op(DecimalRepr::Fixed(*size), *ws, DecimalRepr::Bytes, *rs),
            (
                Bytes(Logical::Decimal { scale: ws, .. }),
                Fixed {
                    size,
                    logical: Logical::Decimal { scale: rs, .. },
                    ..
                },
            ) => decimal_op(DecimalRepr::Bytes, *ws, DecimalRepr::Fixed(*size), *rs),
            (
                Fixed {
                    size: a,
                    logical: Logical::Decimal { scale: ws, .. },
                    ..
                },
                Fixed {
                    size: b,
                    logical: Logical::Decimal { scale: rs, .. },
                    ..
                },
            ) => decimal_op(DecimalRepr::Fixed(*a), *ws, DecimalRepr::Fixed(*b), *rs),
            (Bytes(_) | String(_), Bytes(Logical::None)) => Op::Bytes { utf8: false },
            (Bytes(Logical::None) | String(_), String(_)) => Op::Bytes { utf8: true },
            (Fixed { size: a, .. }, Fixed { size: b, .. }) if a == b => Op::Fixed(*a),
            (
                Enum { symbols: ws, .. },
                Enum {
                    symbols: rs,
                    default,
                    ..
                },
            ) => Op::Enum {
                map: ws
                    .iter()
                    .map(|s| rs.iter().position(|t| t == s).map(|i| i as u32))
                    .collect(),
                default: default
                    .as_ref()
                    .and_then(|d| rs.iter().position(|t| t == d).map(|i| i as u32)),
            },
            (Array(wi), Array(ri)) => Op::Array(self.compile(*wi, *ri)),
            (Map(wv), Map(rv)) => Op::Map(self.compile(*wv, *rv)),
            (Record { fields: wf, .. }, Record { fields: rf, .. }) => self.record(wf, rf, None),
            _ => Op::Fail(format!(
                "writer type {} cannot be read as {}",
                self.writer.describe(w),
                self.reader.describe(r)
            )),
        }
    }

    /// The root: a record's fields under the column rules, if any.
    pub(super) fn compile_root(&mut self, w: NodeId, r: NodeId) -> OpId {
        let Some(rules) = self.rules else {
            return self.compile(w, r);
        };
        match (self.writer.node(w).clone(), self.reader.node(r).clone()) {
            (Node::Record { fields: wf, .. }, Node::Record { fields: rf, .. }) => {
                let op = self.record(&wf, &rf, Some(rules));
                self.push(op)
            }
            _ => self.compile(w, r),
        }
    }

    fn record(&mut self, wf: &[Field], rf: &[Field], rules: Option<&TableRules>) -> Op {
        let ignored = |name: &str| rules.is_some_and(|t| t.ignores(name));
        let treatments = |name: &str| {
            rules.map_or(Vec::new(), |t| {
                t.treatments(name)
                    .into_iter()
                    .filter(|(t, _)| *t != Treatment::Ignore)
                    .collect()
            })
        };
        {
            let mut fields = Vec::with_capacity(wf.len());
            let mut last = None;
            let mut in_order = true;
            for f in wf {
                if ignored(&f.name) {
                    self.ruled = true;
                    fields.push(FieldOp::Skip(f.node));
                    continue;
                }
                match rf.iter().position(|g| g.name == f.name) {
                    Some(j) => {
                        if last.is_some_and(|l| j <= l) {
                            in_order = false;
                        }
                        last = Some(j);
                        let mut op = self.compile(f.node, rf[j].node);
                        for (t, named) in treatments(&f.name) {
                            match self.treat(op, rf[j].node, t) {
                                Some(treated) => {
                                    self.ruled |= treated != op;
                                    op = treated;
                                }
                                None if named => self.notes.push(format!(
                                    "column `{}` ({}): {t} does not apply",
                                    f.name,
                                    self.reader.describe(rf[j].node)
                                )),
                                None => {}
                            }
                        }
                        fields.push(FieldOp::Read {
                            reader_index: j as u32,
                            op,
                        });
                    }
                    None => fields.push(FieldOp::Skip(f.node)),
                }
            }
            let mut defaults = Vec::new();
            for (j, g) in rf.iter().enumerate() {
                if wf.iter().any(|f| f.name == g.name) {
                    continue;
                }
                if ignored(&g.name) {
                    self.ruled = true;
                    continue;
                }
                let mut bytes = Vec::new();
                match g
                    .default
                    .as_ref()
                    .map(|d| encode_default(self.reader, g.node, d, &mut bytes, 0))
                {
                    Some(Ok(())) => {
                        for (t, _) in treatments(&g.name) {
                            self.treat_default(&mut bytes, g.node, t);
                        }
                        defaults.push((j as u32, bytes))
                    }
                    Some(Err(why)) => {
                        return Op::Fail(format!("default of field `{}`: {why}", g.name));
                    }
                    None => {
                        return Op::Fail(format!(
                            "field `{}` is missing from the writer and has no default",
                            g.name
                        ));
                    }
                }
            }
            Op::Record {
                fields,
                defaults,
                in_order,
                reader_fields: rf.len() as u32,
            }
        }
    }
}

fn decimal_op(from: DecimalRepr, ws: u32, to: DecimalRepr, rs: u32) -> Op {
    if rs < ws {
        return Op::Fail(format!(
            "decimal scale {ws} cannot be read at the smaller scale {rs}"
        ));
    }
    Op::Decimal {
        from,
        to,
        rescale: rs - ws,
    }
}

/// Unit conversion between time logical types, as (multiply, divide).
fn time_scale(w: Logical, r: Logical) -> Option<(i64, i64)> {
    use Logical::*;
    let unit = |l: Logical| match l {
        TimeMillis | TimestampMillis | LocalTimestampMillis => Some(1_000_000i64),
        TimeMicros | TimestampMicros | LocalTimestampMicros => Some(1_000),
        TimestampNanos => Some(1),
        _ => Option::None,
    };
    let (a, b) = (unit(w)?, unit(r)?);
    if a >= b {
        Some((a / b, 1))
    } else {
        Some((1, b / a))
    }
}

/// Encodes a JSON default value as the Avro binary of `node` (unions take their first branch).
pub fn encode_default(
    schema: &Schema,
    node: NodeId,
    d: &Json,
    out: &mut Vec<u8>,
    depth: usize,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err("default nested too deep".into());
    }
    let bad = || format!("default {d} does not fit {}", schema.describe(node));
    match schema.node(node) {
        Node::Null => d.is_null().then_some(()).ok_or_else(bad)?,
        Node::Boolean => out.push(d.as_bool().ok_or_else(bad)? as u8),
        Node::Int(_) | Node::Long(_) => write_long(out, d.as_i64().ok_or_else(bad)?),
        Node::Float => {
            out.extend_from_slice(&canonical_f32(d.as_f64().ok_or_else(bad)? as f32).to_le_bytes())
        }
        Node::Double => {
            out.extend_from_slice(&canonical_f64(d.as_f64().ok_or_else(bad)?).to_le_bytes())
        }
        Node::Bytes(Logical::Decimal { .. }) => {
            // JSON defaults of bytes are strings whose code points are the bytes.
            let raw: Vec<u8> = d
                .as_str()
                .ok_or_else(bad)?
                .chars()
                .map(|c| c as u32 as u8)
                .collect();
            let v = decimal_value(&raw).ok_or_else(bad)?;
            let be = v.to_be_bytes();
            let m = minimal_twos_complement(&be);
            write_long(out, m.len() as i64);
            out.extend_from_slice(m);
        }
        Node::Bytes(_) => {
            let raw: Vec<u8> = d
                .as_str()
                .ok_or_else(bad)?
                .chars()
                .map(|c| c as u32 as u8)
                .collect();
            write_long(out, raw.len() as i64);
            out.extend_from_slice(&raw);
        }
        Node::String(_) => {
            let s = d.as_str().ok_or_else(bad)?;
            write_long(out, s.len() as i64);
            out.extend_from_slice(s.as_bytes());
        }
        Node::Fixed { size, .. } => {
            let raw: Vec<u8> = d
                .as_str()
                .ok_or_else(bad)?
                .chars()
                .map(|c| c as u32 as u8)
                .collect();
            if raw.len() != *size {
                return Err(bad());
            }
            out.extend_from_slice(&raw);
        }
        Node::Enum { symbols, .. } => {
            let s = d.as_str().ok_or_else(bad)?;
            write_long(
                out,
                symbols.iter().position(|t| t == s).ok_or_else(bad)? as i64,
            );
        }
        Node::Array(item) => {
            let items = d.as_array().ok_or_else(bad)?;
            if !items.is_empty() {
                write_long(out, items.len() as i64);
                for i in items {
                    encode_default(schema, *item, i, out, depth + 1)?;
                }
            }
            out.push(0);
        }
        Node::Map(value) => {
            let entries = d.as_object().ok_or_else(bad)?;
            if !entries.is_empty() {
                write_long(out, entries.len() as i64);
                for (k, v) in entries {
                    write_long(out, k.len() as i64);
                    out.extend_from_slice(k.as_bytes());
                    encode_default(schema, *value, v, out, depth + 1)?;
                }
            }
            out.push(0);
        }
        Node::Record { fields, .. } => {
            let obj = d.as_object().ok_or_else(bad)?;
            for f in fields {
                let v = obj.get(&f.name).or(f.default.as_ref()).ok_or_else(bad)?;
                encode_default(schema, f.node, v, out, depth + 1)?;
            }
        }
        Node::Union(branches) => {
            let first = *branches.first().ok_or_else(bad)?;
            out.push(0);
            encode_default(schema, first, d, out, depth + 1)?;
        }
    }
    Ok(())
}
