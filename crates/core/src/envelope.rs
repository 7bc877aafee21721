//! Debezium envelopes: `before`, `after`, `op`, `ts_ms`, `source{…}`, `transaction{…}`.
//!
//! An [`EnvelopeLayout`] is compiled once per writer schema id. Decoding walks the datum once:
//! row images are hashed in place through a [`Plan`] (no copy when the writer's row schema is
//! the reference), the origin position and commit time are read from `source`, and the
//! datum must end exactly where the schema says.

use crate::avro::reader::{DecodeError, DecodeErrorKind, Reader};
use crate::avro::resolve::{Plan, Scratch, SkipStep, run_steps, skip};
use crate::avro::schema::{Node, NodeId, Schema};
use crate::digest::{Op, RowHasher};

mod fast;
use fast::FastEnvelope;
pub use fast::Hint;

/// The origin position of an event: its transaction's position at the primary, then the
/// event's order within that transaction.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Position {
    pub tx: u64,
    pub order: u32,
}

impl Position {
    pub const ZERO: Position = Position { tx: 0, order: 0 };
    pub const MAX: Position = Position {
        tx: u64::MAX,
        order: u32::MAX,
    };
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.tx, self.order)
    }
}

/// Which `source` field carries the origin position.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PositionField {
    /// `source.gtid` = `<server-uuid>:<sequence>` (MySQL/MariaDB GTID replication).
    Gtid,
    /// `source.lsn` (PostgreSQL).
    Lsn,
    /// Any other integer (or `…:<n>` string) field of `source`.
    Field(String),
}

impl std::str::FromStr for PositionField {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "gtid" => PositionField::Gtid,
            "lsn" => PositionField::Lsn,
            other => PositionField::Field(other.to_string()),
        })
    }
}

impl PositionField {
    fn name(&self) -> &str {
        match self {
            PositionField::Gtid => "gtid",
            PositionField::Lsn => "lsn",
            PositionField::Field(f) => f,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error("the value schema is not a record")]
    NotARecord,
    #[error("the envelope has no `{0}` field")]
    MissingField(&'static str),
    #[error("`source` has no position field `{0}`")]
    NoPositionField(String),
    #[error("`before` and `after` are not the same row record")]
    RowMismatch,
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

/// How to walk one writer's envelope.
#[derive(Debug, Clone)]
pub struct EnvelopeLayout {
    steps: Vec<Step>,
    /// The writer's row record (the non-null branch of `after`).
    pub row: NodeId,
    /// The flat walk for well-formed input in canonical form, when the schema has one.
    fast: Option<FastEnvelope>,
}

/// What the verifier needs of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub op: Op,
    pub position: Position,
    /// Commit time at the origin (`source.ts_ms`).
    pub ts_ms: i64,
    pub before: Option<u128>,
    pub after: Option<u128>,
    /// Byte range of the `after` image (or `before` when there is no `after`) in the datum.
    pub image: Option<(u32, u32)>,
}

impl Event {
    /// No event yet: what decoding into an event starts from.
    pub const EMPTY: Event = Event {
        op: Op::Create,
        position: Position::ZERO,
        ts_ms: 0,
        before: None,
        after: None,
        image: None,
    };
}

impl EnvelopeLayout {
    pub fn compile(
        schema: &Schema,
        position: &PositionField,
    ) -> Result<EnvelopeLayout, LayoutError> {
        let Node::Record { fields, .. } = schema.node(schema.root()) else {
            return Err(LayoutError::NotARecord);
        };
        let mut steps = Vec::with_capacity(fields.len());
        let (mut row_before, mut row_after, mut have_source, mut have_op, mut have_pos) =
            (None, None, false, false, false);
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
            return Err(LayoutError::NoPositionField(position.name().to_string()));
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
        let fast = FastEnvelope::compile(schema, position.name());
        Ok(EnvelopeLayout { steps, row, fast })
    }

    /// Decodes one envelope datum, hashing its row images with `plan` (writer row → the
    /// reference row schema) by `rows` (the table's).
    #[inline]
    pub fn decode(
        &self,
        schema: &Schema,
        plan: &Plan,
        rows: &RowHasher,
        datum: &[u8],
        scratch: &mut Scratch,
    ) -> Result<Event, DecodeError> {
        let mut ev = Event::EMPTY;
        self.decode_into(schema, plan, rows, datum, scratch, None, &mut ev)?;
        Ok(ev)
    }

    /// [`decode`](Self::decode), with what was learned of the previous envelopes of the same
    /// partition (see [`Hint`]): faster when they are alike, the same result always.
    #[inline]
    pub fn decode_hinted(
        &self,
        schema: &Schema,
        plan: &Plan,
        rows: &RowHasher,
        datum: &[u8],
        scratch: &mut Scratch,
        hint: &mut Hint,
    ) -> Result<Event, DecodeError> {
        let mut ev = Event::EMPTY;
        self.decode_into(schema, plan, rows, datum, scratch, Some(hint), &mut ev)?;
        Ok(ev)
    }

    /// [`decode_hinted`](Self::decode_hinted) into `ev`, which the caller keeps: the event is
    /// not copied out through the result (it is over a hundred bytes). On an error, `ev`
    /// is no event.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn decode_hinted_into(
        &self,
        schema: &Schema,
        plan: &Plan,
        rows: &RowHasher,
        datum: &[u8],
        scratch: &mut Scratch,
        hint: &mut Hint,
        ev: &mut Event,
    ) -> Result<(), DecodeError> {
        self.decode_into(schema, plan, rows, datum, scratch, Some(hint), ev)
    }

    /// The flat walk when the writer's row schema is the reference and it decides, else the
    /// general walk.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn decode_into(
        &self,
        schema: &Schema,
        plan: &Plan,
        rows: &RowHasher,
        datum: &[u8],
        scratch: &mut Scratch,
        hint: Option<&mut Hint>,
        ev: &mut Event,
    ) -> Result<(), DecodeError> {
        if let Some(fast) = self.fast.as_ref().filter(|_| plan.is_identity())
            && fast.decode_into(rows, datum, hint, ev).is_some()
        {
            return Ok(());
        }
        *ev = self.decode_general(schema, plan, rows, datum, scratch)?;
        Ok(())
    }

    /// Whether envelopes of this schema have the flat walk (see `fast.rs`).
    pub fn has_fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// This layout with the flat walk's code for any x86-64 CPU, not the code chosen for the
    /// one it runs on (which may use instructions that not every x86-64 has): both decode
    /// alike, and tests check both.
    pub fn portable(mut self) -> EnvelopeLayout {
        self.fast = self.fast.map(FastEnvelope::portable);
        self
    }

    /// The flat walk alone, for a writer whose row schema is the reference: `None` when it
    /// cannot decide (no flat walk for this schema, bad input, bytes not in canonical form)
    /// and [`decode_general`](Self::decode_general) must.
    pub fn decode_fast(&self, rows: &RowHasher, datum: &[u8]) -> Option<Event> {
        self.fast.as_ref()?.decode(rows, datum, None)
    }

    /// [`decode_fast`](Self::decode_fast) with a hint.
    pub fn decode_fast_hinted(
        &self,
        rows: &RowHasher,
        datum: &[u8],
        hint: &mut Hint,
    ) -> Option<Event> {
        self.fast.as_ref()?.decode(rows, datum, Some(hint))
    }

    /// The general walk: any schema, any input; names what is wrong with bad input.
    pub fn decode_general(
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
                                if let Some(tx) = read_position(schema, *node, &mut r)? {
                                    ev.position.tx = tx;
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

/// An integer position, or the number after the last `:` of a string such as a GTID.
#[inline]
fn read_position(
    schema: &Schema,
    node: NodeId,
    r: &mut Reader<'_>,
) -> Result<Option<u64>, DecodeError> {
    match read_union_branch(schema, node, r)? {
        None => Ok(None),
        Some(b) => match schema.node(b) {
            Node::Int(_) | Node::Long(_) => Ok(Some(r.read_long()? as u64)),
            Node::String(_) => {
                let at = r.pos();
                let s = r.read_bytes()?;
                parse_position(s).map(Some).ok_or_else(|| DecodeError {
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

/// The number after the last `:` of a position string such as a GTID.
#[inline]
fn parse_position(s: &[u8]) -> Option<u64> {
    let digits = match s.iter().rposition(|c| *c == b':') {
        Some(i) => &s[i + 1..],
        None => s,
    };
    // GTID sets may carry ranges (`uuid:1-42`): the position is the upper end.
    let digits = match digits.iter().rposition(|c| *c == b'-') {
        Some(i) => &digits[i + 1..],
        None => digits,
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
