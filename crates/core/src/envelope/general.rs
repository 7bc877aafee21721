//! The general walk of an envelope: any schema, any input, with the row images resolved by
//! their [`Plan`]; names what is wrong with bad input.

use crate::avro::reader::{DecodeError, DecodeErrorKind, Reader};
use crate::avro::resolve::{Plan, Scratch, SkipStep, run_steps, skip};
use crate::avro::schema::{Node, NodeId, Schema};
use crate::digest::{Op, RowHasher};

use super::{Event, LayoutError, PositionField};

/// The steps of one writer's envelope, one per field.
#[derive(Debug, Clone)]
pub(super) struct GeneralWalk {
    steps: Vec<Step>,
}

#[derive(Debug, Clone)]
enum Step {
    Before(NodeId),
    After(NodeId),
    Op(NodeId),
    Source(Vec<SourceStep>),
    Transaction { union: NodeId, fields: Vec<TxStep> },
    Skip(SkipStep),
}

#[derive(Debug, Clone)]
enum SourceStep {
    Position(NodeId),
    TsMs(NodeId),
    /// A run of fields the verifier does not need.
    Skip(Vec<SkipStep>),
}

#[derive(Debug, Clone)]
enum TxStep {
    TotalOrder(NodeId),
    Skip(SkipStep),
}

impl GeneralWalk {
    /// The walk of this envelope schema, and the writer's row record (the non-null branch of
    /// `after`, or of `before` when there is no `after`).
    pub(super) fn compile(
        schema: &Schema,
        position: &PositionField,
    ) -> Result<(GeneralWalk, NodeId), LayoutError> {
        let Node::Record { fields, .. } = schema.node(schema.root()) else {
            return Err(LayoutError::NotARecord);
        };
        let mut steps = Vec::with_capacity(fields.len());
        let (mut row_before, mut row_after, mut have_source, mut have_op, mut have_pos) =
            (None, None, false, false, false);
        let mut source_fields: Vec<String> = Vec::new();
        for f in fields {
            let step = match f.name.as_str() {
                "before" => {
                    row_before = Some(schema.non_null(f.node));
                    Step::Before(f.node)
                }
                "after" => {
                    row_after = Some(schema.non_null(f.node));
                    Step::After(f.node)
                }
                "op" => {
                    have_op = true;
                    Step::Op(f.node)
                }
                "source" => {
                    have_source = true;
                    let src = schema.non_null(f.node);
                    let Node::Record { fields: sf, .. } = schema.node(src) else {
                        return Err(LayoutError::MissingField("source"));
                    };
                    if !matches!(schema.node(f.node), Node::Record { .. }) {
                        // A nullable source would need a union step; Debezium never emits one.
                        return Err(LayoutError::MissingField("source"));
                    }
                    let mut ss: Vec<SourceStep> = Vec::with_capacity(sf.len());
                    source_fields = sf.iter().map(|g| g.name.clone()).collect();
                    for g in sf {
                        if g.name == position.name() {
                            have_pos = true;
                            ss.push(SourceStep::Position(g.node));
                        } else if g.name == "ts_ms" {
                            ss.push(SourceStep::TsMs(g.node));
                        } else {
                            let step = SkipStep::compile(schema, g.node);
                            match ss.last_mut() {
                                Some(SourceStep::Skip(run)) => run.push(step),
                                _ => ss.push(SourceStep::Skip(vec![step])),
                            }
                        }
                    }
                    Step::Source(ss)
                }
                "transaction" => {
                    let tx = schema.non_null(f.node);
                    match schema.node(tx) {
                        Node::Record { fields: tf, .. } => Step::Transaction {
                            union: f.node,
                            fields: tf
                                .iter()
                                .map(|g| {
                                    if g.name == "total_order" {
                                        TxStep::TotalOrder(g.node)
                                    } else {
                                        TxStep::Skip(SkipStep::compile(schema, g.node))
                                    }
                                })
                                .collect(),
                        },
                        _ => Step::Skip(SkipStep::compile(schema, f.node)),
                    }
                }
                _ => Step::Skip(SkipStep::compile(schema, f.node)),
            };
            steps.push(step);
        }
        if !have_op {
            return Err(LayoutError::MissingField("op"));
        }
        if !have_source {
            return Err(LayoutError::MissingField("source"));
        }
        if !have_pos {
            return Err(LayoutError::NoPositionField {
                wanted: position.name().to_string(),
                available: source_fields,
            });
        }
        let row = match (row_before, row_after) {
            (Some(b), Some(a)) => {
                if schema.describe(b) != schema.describe(a) {
                    return Err(LayoutError::RowMismatch);
                }
                a
            }
            (_, Some(a)) => a,
            (Some(b), None) => b,
            _ => return Err(LayoutError::MissingField("after")),
        };
        Ok((GeneralWalk { steps }, row))
    }

    /// Decodes one envelope datum, hashing its row images with `plan` by `rows`.
    pub(super) fn decode(
        &self,
        schema: &Schema,
        plan: &Plan,
        rows: &RowHasher,
        datum: &[u8],
        scratch: &mut Scratch,
    ) -> Result<Event, DecodeError> {
        let mut r = Reader::new(datum);
        let mut ev = Event::EMPTY;
        let mut have_pos = false;
        for step in &self.steps {
            match step {
                Step::Before(node) | Step::After(node) => {
                    let branch = read_union_branch(schema, *node, &mut r)?;
                    let hash = match branch {
                        Some(_) => {
                            let start = r.pos();
                            let h = rows.hash(plan.canonical(schema, &mut r, scratch)?.bytes());
                            let span = (start as u32, r.pos() as u32);
                            if matches!(step, Step::After(_)) || ev.image.is_none() {
                                ev.image = Some(span);
                            }
                            Some(h)
                        }
                        None => None,
                    };
                    if matches!(step, Step::Before(_)) {
                        ev.before = hash;
                    } else {
                        ev.after = hash;
                    }
                }
                Step::Op(node) => {
                    let at = r.pos();
                    let s = match schema.node(*node) {
                        Node::String(_) => r.read_bytes()?,
                        _ => match read_union_branch(schema, *node, &mut r)? {
                            Some(_) => r.read_bytes()?,
                            None => b"",
                        },
                    };
                    ev.op = Op::from_code(s).ok_or_else(|| DecodeError {
                        kind: DecodeErrorKind::Unresolvable(format!(
                            "op `{}` is not one of c, u, d, r, t",
                            String::from_utf8_lossy(s)
                        )),
                        offset: at,
                    })?;
                }
                Step::Source(fields) => {
                    for f in fields {
                        match f {
                            SourceStep::Position(node) => {
                                if let Some((tx, origin)) = read_position(schema, *node, &mut r)? {
                                    ev.position.tx = tx;
                                    ev.origin = origin;
                                    have_pos = true;
                                }
                            }
                            SourceStep::TsMs(node) => {
                                if let Some(v) = read_long_or_null(schema, *node, &mut r)? {
                                    ev.ts_ms = v;
                                }
                            }
                            SourceStep::Skip(steps) => run_steps(steps, schema, &mut r, false)?,
                        }
                    }
                }
                Step::Transaction { union, fields } => {
                    if read_union_branch(schema, *union, &mut r)?.is_some() {
                        for f in fields {
                            match f {
                                TxStep::TotalOrder(node) => {
                                    if let Some(v) = read_long_or_null(schema, *node, &mut r)? {
                                        ev.position.order = v.clamp(0, u32::MAX as i64) as u32;
                                    }
                                }
                                TxStep::Skip(step) => step.run(schema, &mut r, false)?,
                            }
                        }
                    }
                }
                Step::Skip(step) => step.run(schema, &mut r, false)?,
            }
        }
        r.finish()?;
        // A snapshot read (`op = r`) is state, not a change: Debezium gives it no position.
        if !have_pos && !matches!(ev.op, Op::Truncate | Op::Read) {
            return Err(r.err(DecodeErrorKind::Unresolvable(
                "the event carries no origin position".into(),
            )));
        }
        Ok(ev)
    }
}

/// For a union node, reads the branch index and returns `None` for the null branch; for a
/// plain node returns `Some(node)` without reading.
#[inline(always)]
fn read_union_branch(
    schema: &Schema,
    node: NodeId,
    r: &mut Reader<'_>,
) -> Result<Option<NodeId>, DecodeError> {
    match schema.node(node) {
        Node::Union(branches) => {
            let at = r.pos();
            let i = r.read_long()?;
            let b = usize::try_from(i)
                .ok()
                .and_then(|i| branches.get(i))
                .copied()
                .ok_or(DecodeError {
                    kind: DecodeErrorKind::UnionIndex {
                        index: i,
                        branches: branches.len(),
                    },
                    offset: at,
                })?;
            Ok(if matches!(schema.node(b), Node::Null) {
                None
            } else {
                Some(b)
            })
        }
        Node::Null => Ok(None),
        _ => Ok(Some(node)),
    }
}

#[inline(always)]
fn read_long_or_null(
    schema: &Schema,
    node: NodeId,
    r: &mut Reader<'_>,
) -> Result<Option<i64>, DecodeError> {
    match read_union_branch(schema, node, r)? {
        None => Ok(None),
        Some(b) => match schema.node(b) {
            Node::Int(_) | Node::Long(_) => Ok(Some(r.read_long()?)),
            _ => {
                skip(schema, b, r, 1, false)?;
                Ok(None)
            }
        },
    }
}

/// A byte range of the datum.
type Span = (u32, u32);

/// An integer position, or the number after the last `:` or `-` of a string such as a GTID,
/// and where the string's origin lies in the datum.
#[inline]
fn read_position(
    schema: &Schema,
    node: NodeId,
    r: &mut Reader<'_>,
) -> Result<Option<(u64, Option<Span>)>, DecodeError> {
    match read_union_branch(schema, node, r)? {
        None => Ok(None),
        Some(b) => match schema.node(b) {
            Node::Int(_) | Node::Long(_) => Ok(Some((r.read_long()? as u64, None))),
            Node::String(_) => {
                let at = r.pos();
                let s = r.read_bytes()?;
                let start = (r.pos() - s.len()) as u32;
                let origin = Some((start, start + s.len() as u32));
                parse_position(s)
                    .map(|seq| Some((seq, origin)))
                    .ok_or_else(|| DecodeError {
                        kind: DecodeErrorKind::Unresolvable(format!(
                            "position `{}` does not end in a number",
                            String::from_utf8_lossy(s)
                        )),
                        offset: at,
                    })
            }
            _ => {
                skip(schema, b, r, 1, false)?;
                Ok(None)
            }
        },
    }
}

/// The sequence number of a position string: the number after its last `:` or `-` — of a
/// MySQL GTID `uuid:seq`, the upper end of a range `uuid:a-b`, of a MariaDB GTID
/// `domain-server-seq`. (Its origin: [`crate::origins::origin_span`].)
#[inline]
pub(super) fn parse_position(s: &[u8]) -> Option<u64> {
    let digits = match s.iter().rposition(|c| *c == b':' || *c == b'-') {
        Some(i) => &s[i + 1..],
        None => s,
    };
    parse_u64(digits)
}

#[inline]
fn parse_u64(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 20 {
        return None;
    }
    let mut v: u64 = 0;
    for c in d {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}
