//! The envelope walked in one flat loop: a writer schema whose envelope fields, `source`,
//! `transaction` and row images are all primitives or nullable primitives (every Debezium
//! connector's are) compiles into one list of steps, with no recursion and one dispatch per
//! envelope field. The row's fields are walked two at a time, each pair by a function
//! made for its two kinds (one indirect call per pair, and no dispatch inside it).
//!
//! With a [`Hint`] (one per partition), the tail after the images — `source`, `op`, `ts_ms`,
//! `transaction` — is not walked field by field while its structure repeats: see there.
//!
//! It serves the common case only: the writer's row schema is the reference (so each image's
//! bytes are hashed as they are), the input is well formed, and every value is in canonical
//! form. Anything else — an error to name, non-minimal bytes to re-encode, a long varint —
//! returns `None` and [`EnvelopeLayout::decode`](super::EnvelopeLayout::decode) takes its
//! general path, which decides. The two paths agree on every input the fast one accepts
//! (the properties in `tests/properties.rs` change valid envelopes byte by byte, and the fuzz
//! target feeds arbitrary bytes).

use crate::avro::resolve::{decimal_not_minimal, fast_skip, fast_varint, varint_end, Prim, SkipStep};
use crate::avro::schema::{Node, NodeId, Schema};
use crate::digest::{row_hash, Op};

use super::{parse_position, Event, Position};

/// One step. `chk`: the value lies in a row image, whose bytes are hashed as they are, so
/// they must be in canonical form. `present`: the branch byte (zigzag index) of the non-null
/// branch of a `["null", T]` union.
#[derive(Debug, Clone, Copy)]
enum Step {
    Var { chk: bool },
    Int { chk: bool },
    Str { chk: bool },
    Bytes { chk: bool },
    Decimal { chk: bool },
    OptVar { present: u8, chk: bool },
    OptStr { present: u8, chk: bool },
    /// Any other primitive, by the general fast skip.
    Prim(SkipStep, bool),
    /// A row image (0 = before, 1 = after), walked by the row's own steps.
    Image { slot: u8, present: Option<u8> },
    OpCode { present: Option<u8> },
    PositionLong { present: Option<u8> },
    PositionStr { present: Option<u8> },
    TsMs { present: Option<u8> },
    /// The transaction block; when absent, the walk goes on at `next`.
    Tx { present: u8, next: u16 },
    TotalOrder { present: Option<u8> },
}

#[derive(Debug, Clone)]
pub(super) struct FastEnvelope {
    steps: Vec<Step>,
    /// The row's fields (both images have the same row schema), two at a time, each pair
    /// by the walk made for its two kinds; and the last, if their number is odd.
    row_pairs: Vec<(PairFn, Step, Step)>,
    row_last: Option<Step>,
    /// Where the tail begins: the steps after the row images, when they can be checked as
    /// one template (see [`Hint`]).
    tail_from: Option<usize>,
    /// Tells hints learned of this walk from those of another.
    id: u64,
}

/// What the flat walk learned of the last envelope it read of one stream of records (a
/// partition): the shape of its tail — `source`, `op`, `ts_ms`, `transaction`, everything
/// after the row images. A connector writes the same strings there event after event, so
/// the bytes that decide the tail's structure (union branches, length prefixes, the
/// continuation bits of varints) mostly repeat; when they all match, the tail is checked in
/// a few word compares instead of a step per field, and only the values the verifier needs
/// are read from it. Anything else — a changed length, another branch — walks the tail and
/// learns it again.
#[derive(Debug, Clone, Default)]
pub struct Hint {
    owner: u64,
    tail: Option<Tail>,
    /// Tails walked since the template last matched: a partition whose tails keep changing
    /// is learned from less and less often, not at every record.
    misses: u32,
}

impl Hint {
    /// Whether a template of the tail has been learned.
    pub fn has_template(&self) -> bool {
        self.tail.is_some()
    }
}

#[derive(Debug, Clone)]
struct Tail {
    /// The tail's length in bytes (it ends the datum).
    len: usize,
    /// Words at these offsets must match under their masks: every structural byte of the
    /// learned tail lies in one.
    words: Vec<(usize, u64, u64)>,
    /// The steps that read a value, with where it lies: (step, start, head, end), relative.
    reads: Vec<(Step, usize, usize, usize)>,
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A two-branch union with one null branch: the branch byte that means present, and the
/// other branch.
fn nullable(schema: &Schema, node: NodeId) -> Option<(u8, NodeId)> {
    match schema.node(node) {
        Node::Union(b) if b.len() == 2 => {
            let ni = b.iter().position(|n| matches!(schema.node(*n), Node::Null))?;
            let other = b[1 - ni];
            (!matches!(schema.node(other), Node::Null | Node::Union(_))).then_some((2 * (1 - ni) as u8, other))
        }
        _ => None,
    }
}

/// A field that is `T` or `["null", T]`: (present byte if a union, T).
fn maybe_null(schema: &Schema, node: NodeId) -> Option<(Option<u8>, NodeId)> {
    match schema.node(node) {
        Node::Union(_) => nullable(schema, node).map(|(p, n)| (Some(p), n)),
        Node::Null => None,
        _ => Some((None, node)),
    }
}

fn skip_step(schema: &Schema, node: NodeId, chk: bool) -> Option<Step> {
    Some(match SkipStep::compile(schema, node) {
        SkipStep::P(Prim::Long) => Step::Var { chk },
        SkipStep::P(Prim::Int) => Step::Int { chk },
        SkipStep::P(Prim::Str) => Step::Str { chk },
        SkipStep::P(Prim::Bytes) => Step::Bytes { chk },
        SkipStep::P(Prim::Decimal) => Step::Decimal { chk },
        SkipStep::Opt { null_index, p: Prim::Long } => Step::OptVar { present: 2 * (1 - null_index), chk },
        SkipStep::Opt { null_index, p: Prim::Str } => Step::OptStr { present: 2 * (1 - null_index), chk },
        SkipStep::Node(_) => return None,
        other => Step::Prim(other, chk),
    })
}

/// A field that is an int or long, or a nullable one: its present byte if nullable.
fn nullable_long(schema: &Schema, node: NodeId) -> Option<Option<u8>> {
    let (present, n) = maybe_null(schema, node)?;
    matches!(schema.node(n), Node::Int(_) | Node::Long(_)).then_some(present)
}

impl FastEnvelope {
    /// The flat walk of this envelope schema, if every part of it has one.
    pub(super) fn compile(schema: &Schema, position: &str) -> Option<FastEnvelope> {
        let Node::Record { fields, .. } = schema.node(schema.root()) else { return None };
        let mut steps = Vec::new();
        let mut row = None;
        for f in fields {
            match f.name.as_str() {
                "before" | "after" => {
                    let (present, node) = maybe_null(schema, f.node)?;
                    let Node::Record { fields: rf, .. } = schema.node(node) else { return None };
                    let fields = rf.iter().map(|g| skip_step(schema, g.node, true)).collect::<Option<Vec<_>>>()?;
                    if row.as_ref().is_some_and(|r: &(NodeId, Vec<Step>)| schema.describe(r.0) != schema.describe(node)) {
                        return None;
                    }
                    row = Some((node, fields));
                    steps.push(Step::Image { slot: (f.name == "after") as u8, present });
                }
                "op" => {
                    let (present, n) = maybe_null(schema, f.node)?;
                    if !matches!(schema.node(n), Node::String(_)) {
                        return None;
                    }
                    steps.push(Step::OpCode { present });
                }
                "source" => {
                    let Node::Record { fields: sf, .. } = schema.node(f.node) else { return None };
                    for g in sf {
                        if g.name == position {
                            let (present, n) = maybe_null(schema, g.node)?;
                            steps.push(match schema.node(n) {
                                Node::Int(_) | Node::Long(_) => Step::PositionLong { present },
                                Node::String(_) => Step::PositionStr { present },
                                _ => return None,
                            });
                        } else if g.name == "ts_ms" {
                            steps.push(Step::TsMs { present: nullable_long(schema, g.node)? });
                        } else {
                            steps.push(skip_step(schema, g.node, false)?);
                        }
                    }
                }
                "transaction" => {
                    let (present, tx) = nullable(schema, f.node)?;
                    let Node::Record { fields: tf, .. } = schema.node(tx) else { return None };
                    let at = steps.len();
                    steps.push(Step::Tx { present, next: 0 });
                    for g in tf {
                        if g.name == "total_order" {
                            steps.push(Step::TotalOrder { present: nullable_long(schema, g.node)? });
                        } else {
                            steps.push(skip_step(schema, g.node, false)?);
                        }
                    }
                    let next = u16::try_from(steps.len()).ok()?;
                    steps[at] = Step::Tx { present, next };
                }
                _ => steps.push(skip_step(schema, f.node, false)?),
            }
        }
        // The tail: everything after the last row image (whose fields alone are checked for
        // canonical form), without a general skip, whose structure is not one byte pattern.
        let tail_from = steps.iter().rposition(|s| matches!(s, Step::Image { .. })).map_or(0, |i| i + 1);
        let tail_ok = tail_from < steps.len() && !steps[tail_from..].iter().any(|s| matches!(s, Step::Prim(..)));
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let row = row.map(|r| r.1).unwrap_or_default();
        let mut pairs = row.chunks_exact(2);
        let row_pairs = pairs.by_ref().map(|p| Some((PAIRS[kind(p[0])?][kind(p[1])?], p[0], p[1]))).collect::<Option<Vec<_>>>()?;
        let row_last = pairs.remainder().first().copied();
        Some(FastEnvelope { steps, row_pairs, row_last, tail_from: tail_ok.then_some(tail_from), id })
    }

    /// The event, or `None` when the general path must decide (see the module docs). With a
    /// hint, the tail is checked against what was learned of the last envelopes, and learned
    /// again when it differs.
    #[inline]
    pub(super) fn decode(&self, seed: u64, buf: &[u8], mut hint: Option<&mut Hint>) -> Option<Event> {
        let mut ev = Event { op: Op::Create, position: Position::ZERO, ts_ms: 0, before: None, after: None, image: None };
        let mut images: [Option<(usize, usize)>; 2] = [None, None];
        let (mut have_pos, mut have_op, mut nm) = (false, false, false);
        let mut pos = 0usize;
        let mut i = 0usize;
        let steps = &self.steps[..];
        // Where the tail began when it was walked, to learn it from.
        let mut learn_at = None;
        let mut stop = self.tail_from.unwrap_or(usize::MAX);
        while let Some(step) = steps.get(i) {
            if i == stop {
                stop = usize::MAX;
                if let Some(h) = hint.as_deref_mut()
                    && h.owner == self.id
                    && let Some(t) = &h.tail
                    && t.matches(buf, pos)
                {
                    t.read(buf, pos, &mut ev, &mut have_op, &mut have_pos)?;
                    if h.misses != 0 {
                        h.misses = 0;
                    }
                    pos = buf.len();
                    break;
                }
                learn_at = Some(pos);
            }
            i += 1;
            match *step {
                Step::Var { .. } | Step::Int { .. } | Step::Str { .. } | Step::Bytes { .. } | Step::Decimal { .. } | Step::OptVar { .. } | Step::OptStr { .. } | Step::Prim(..) => {
                    pos = field_end(*step, buf, pos, &mut nm)?;
                }
                Step::Image { slot, present } => {
                    images[slot as usize] = if opt_present(buf, &mut pos, present)? {
                        let start = pos;
                        pos = self.row_end(buf, pos, &mut nm)?;
                        Some((start, pos))
                    } else {
                        None
                    };
                }
                Step::OpCode { present } => {
                    let code: &[u8] = if opt_present(buf, &mut pos, present)? {
                        let (start, end, _) = len_end(buf, pos)?;
                        pos = end;
                        &buf[start..end]
                    } else {
                        b""
                    };
                    ev.op = Op::from_code(code)?;
                    have_op = true;
                }
                Step::PositionLong { present } => {
                    if opt_present(buf, &mut pos, present)? {
                        let (raw, end, _) = fast_varint(buf, pos)?;
                        pos = end;
                        ev.position.tx = unzigzag(raw) as u64;
                        have_pos = true;
                    }
                }
                Step::PositionStr { present } => {
                    if opt_present(buf, &mut pos, present)? {
                        let (start, end, _) = len_end(buf, pos)?;
                        pos = end;
                        ev.position.tx = parse_position(&buf[start..end])?;
                        have_pos = true;
                    }
                }
                Step::TsMs { present } => {
                    if opt_present(buf, &mut pos, present)? {
                        let (raw, end, _) = fast_varint(buf, pos)?;
                        pos = end;
                        ev.ts_ms = unzigzag(raw);
                    }
                }
                Step::Tx { present, next } => {
                    if !branch(buf, &mut pos, present)? {
                        i = next as usize;
                    }
                }
                Step::TotalOrder { present } => {
                    if opt_present(buf, &mut pos, present)? {
                        let (raw, end, _) = fast_varint(buf, pos)?;
                        pos = end;
                        ev.position.order = unzigzag(raw).clamp(0, u32::MAX as i64) as u32;
                    }
                }
            }
        }
        if pos != buf.len() || nm || !have_op || (!have_pos && ev.op != Op::Truncate) {
            return None;
        }
        if let (Some(h), Some(at)) = (hint, learn_at) {
            let misses = if h.owner == self.id { h.misses.saturating_add(1) } else { 1 };
            // The first few misses in a row learn at once; after that, one in 64.
            if misses <= 8 || misses % 64 == 0 {
                *h = Hint { owner: self.id, tail: self.learn_tail(buf, at), misses };
            } else {
                h.misses = misses;
            }
        }
        if let Some((a, b)) = images[0] {
            ev.before = Some(row_hash(seed, &buf[a..b]));
            ev.image = Some((a as u32, b as u32));
        }
        if let Some((a, b)) = images[1] {
            ev.after = Some(row_hash(seed, &buf[a..b]));
            ev.image = Some((a as u32, b as u32));
        }
        Some(ev)
    }
}

impl FastEnvelope {
    /// The end of a row image starting at `pos`.
    #[inline(always)]
    fn row_end(&self, buf: &[u8], mut pos: usize, nm: &mut bool) -> Option<usize> {
        for &(f, a, b) in &self.row_pairs {
            let (end, n) = f(a, b, buf, pos)?;
            pos = end;
            *nm |= n;
        }
        if let Some(last) = self.row_last {
            pos = field_end(last, buf, pos, nm)?;
        }
        Some(pos)
    }

    /// The tail of a datum the flat walk accepted, as a template; `None` if it has a part
    /// the template cannot check (a long varint, whose last byte has a range).
    #[cold]
    fn learn_tail(&self, buf: &[u8], at: usize) -> Option<Tail> {
        let len = buf.len() - at;
        if len < 8 {
            return None;
        }
        // Per byte of the tail: the bits that decide its structure.
        let mut mask = vec![0u8; len];
        let mut reads = Vec::new();
        let mut pos = at;
        let mut i = self.tail_from?;
        while let Some(&step) = self.steps.get(i) {
            i += 1;
            let start = pos;
            let head = |m: &mut [u8], p: usize| m[start - at..p - at].fill(0xff);
            let varint = |m: &mut [u8], p: usize| -> Option<usize> {
                let (end, _) = varint_end(buf, p)?;
                // Up to 9 bytes: the continuation bits decide the length, and any last
                // byte is in range.
                if end - p > 9 {
                    return None;
                }
                m[p - at..end - at].fill(0x80);
                Some(end)
            };
            let string = |m: &mut [u8], p: usize| -> Option<(usize, usize)> {
                let (data, end, _) = len_end(buf, p)?;
                m[p - at..data - at].fill(0xff);
                Some((data, end))
            };
            let mut branch_of = |present: Option<u8>, pos: &mut usize| -> Option<bool> {
                let p = opt_present(buf, pos, present)?;
                head(&mut mask, *pos);
                Some(p)
            };
            match step {
                Step::Var { .. } | Step::OptVar { .. } | Step::Int { .. } => {
                    let present = match step {
                        Step::OptVar { present, .. } => Some(present),
                        _ => None,
                    };
                    if branch_of(present, &mut pos)? {
                        let end = varint(&mut mask, pos)?;
                        if matches!(step, Step::Int { .. }) && end - pos >= 5 {
                            return None;
                        }
                        pos = end;
                    }
                }
                Step::Str { .. } | Step::Bytes { .. } | Step::Decimal { .. } => pos = string(&mut mask, pos)?.1,
                Step::OptStr { present, .. } => {
                    if branch_of(Some(present), &mut pos)? {
                        pos = string(&mut mask, pos)?.1;
                    }
                }
                Step::OpCode { present } | Step::PositionStr { present } => {
                    if branch_of(present, &mut pos)? {
                        let (data, end) = string(&mut mask, pos)?;
                        reads.push((step, start - at, data - start, end - start));
                        pos = end;
                    } else if matches!(step, Step::OpCode { .. }) {
                        // A null op is read as the walk reads it.
                        reads.push((step, start - at, pos - start, pos - start));
                    }
                }
                Step::PositionLong { present } | Step::TsMs { present } | Step::TotalOrder { present } => {
                    if branch_of(present, &mut pos)? {
                        let end = varint(&mut mask, pos)?;
                        reads.push((step, start - at, pos - start, end - start));
                        pos = end;
                    }
                }
                Step::Tx { present, next } => {
                    if !branch_of(Some(present), &mut pos)? {
                        i = next as usize;
                    }
                }
                Step::Prim(..) | Step::Image { .. } => return None,
            }
        }
        if pos != buf.len() {
            return None;
        }
        let word = |bytes: &[u8], off: usize| u64::from_le_bytes(bytes[off..off + 8].try_into().expect("8 bytes"));
        let mut words = Vec::with_capacity(len / 8 + 1);
        let mut off = 0;
        loop {
            let off_w = off.min(len - 8);
            let m = word(&mask, off_w);
            if m != 0 {
                words.push((off_w, m, word(&buf[at..], off_w) & m));
            }
            if off_w == len - 8 {
                break;
            }
            off += 8;
        }
        Some(Tail { len, words, reads })
    }
}

impl Tail {
    /// Whether the tail at `pos` has the learned structure.
    #[inline(always)]
    fn matches(&self, buf: &[u8], pos: usize) -> bool {
        if buf.len() - pos != self.len {
            return false;
        }
        let tail = &buf[pos..];
        let mut diff = 0;
        for &(off, mask, value) in &self.words {
            let w = u64::from_le_bytes(tail[off..off + 8].try_into().expect("8 bytes"));
            diff |= (w & mask) ^ value;
        }
        diff == 0
    }

    /// Reads the values the verifier needs from a matching tail.
    #[inline(always)]
    fn read(&self, buf: &[u8], pos: usize, ev: &mut Event, have_op: &mut bool, have_pos: &mut bool) -> Option<()> {
        let tail = &buf[pos..];
        for &(step, start, head, end) in &self.reads {
            let value = &tail[start + head..start + end];
            match step {
                Step::OpCode { .. } => {
                    ev.op = Op::from_code(value)?;
                    *have_op = true;
                }
                Step::PositionStr { .. } => {
                    ev.position.tx = parse_position(value)?;
                    *have_pos = true;
                }
                Step::PositionLong { .. } => {
                    ev.position.tx = unzigzag(fast_varint(value, 0)?.0) as u64;
                    *have_pos = true;
                }
                Step::TsMs { .. } => ev.ts_ms = unzigzag(fast_varint(value, 0)?.0),
                Step::TotalOrder { .. } => ev.position.order = unzigzag(fast_varint(value, 0)?.0).clamp(0, u32::MAX as i64) as u32,
                _ => {}
            }
        }
        Some(())
    }
}

/// Walks two fields: their end, and whether a value was not in canonical form (returned, not
/// written through a reference, so that it does not make a chain through memory).
type PairFn = fn(Step, Step, &[u8], usize) -> Option<(usize, bool)>;

/// The kinds of field a row has, numbered for [`PAIRS`].
fn kind(step: Step) -> Option<usize> {
    Some(match step {
        Step::Var { .. } => 0,
        Step::Int { .. } => 1,
        Step::Str { .. } => 2,
        Step::Bytes { .. } => 3,
        Step::Decimal { .. } => 4,
        Step::OptVar { .. } => 5,
        Step::OptStr { .. } => 6,
        Step::Prim(..) => 7,
        _ => return None,
    })
}

/// Two fields of known kinds: one call per pair, with no dispatch inside.
fn pair<const A: usize, const B: usize>(a: Step, b: Step, buf: &[u8], pos: usize) -> Option<(usize, bool)> {
    let mut nm = false;
    // Row fields are hashed as they are: all in canonical form.
    let pos = field_of::<A>(a, true, buf, pos, &mut nm)?;
    let end = field_of::<B>(b, true, buf, pos, &mut nm)?;
    Some((end, nm))
}

macro_rules! pairs_of {
    ($a:literal) => {
        [pair::<$a, 0>, pair::<$a, 1>, pair::<$a, 2>, pair::<$a, 3>, pair::<$a, 4>, pair::<$a, 5>, pair::<$a, 6>, pair::<$a, 7>]
    };
}

/// The walk of each pair of kinds.
static PAIRS: [[PairFn; 8]; 8] = [pairs_of!(0), pairs_of!(1), pairs_of!(2), pairs_of!(3), pairs_of!(4), pairs_of!(5), pairs_of!(6), pairs_of!(7)];

/// The end of a field of kind `K` (see [`kind`]); `chk`: its bytes must be in canonical form.
#[inline(always)]
fn field_of<const K: usize>(step: Step, chk: bool, buf: &[u8], mut pos: usize, nm: &mut bool) -> Option<usize> {
    // The kind is known: no dispatch on the step, only its data is read.
    match K {
        0 => {
            let (end, n) = varint_end(buf, pos)?;
            *nm |= chk & n;
            Some(end)
        }
        1 => int_end(buf, pos, chk, nm),
        2 => str_end(buf, pos, chk, nm),
        3 => {
            let (_, end, n) = len_end(buf, pos)?;
            *nm |= chk & n;
            Some(end)
        }
        4 => decimal_end(buf, pos, chk, nm),
        5 | 6 => {
            let present = match step {
                Step::OptVar { present, .. } | Step::OptStr { present, .. } => present,
                _ => return None,
            };
            if branch(buf, &mut pos, present)? {
                pos = if K == 5 {
                    let (end, n) = varint_end(buf, pos)?;
                    *nm |= chk & n;
                    end
                } else {
                    str_end(buf, pos, chk, nm)?
                };
            }
            Some(pos)
        }
        _ => match step {
            Step::Prim(s, _) => prim_end(s, buf, pos, chk, nm),
            _ => None,
        },
    }
}

/// The end of one field of a row, or of another primitive part of the envelope.
#[inline(always)]
fn field_end(step: Step, buf: &[u8], pos: usize, nm: &mut bool) -> Option<usize> {
    match step {
        Step::Var { chk } => field_of::<0>(step, chk, buf, pos, nm),
        Step::Int { chk } => field_of::<1>(step, chk, buf, pos, nm),
        Step::Str { chk } => field_of::<2>(step, chk, buf, pos, nm),
        Step::Bytes { chk } => field_of::<3>(step, chk, buf, pos, nm),
        Step::Decimal { chk } => field_of::<4>(step, chk, buf, pos, nm),
        Step::OptVar { chk, .. } => field_of::<5>(step, chk, buf, pos, nm),
        Step::OptStr { chk, .. } => field_of::<6>(step, chk, buf, pos, nm),
        Step::Prim(_, chk) => field_of::<7>(step, chk, buf, pos, nm),
        _ => None,
    }
}

#[inline(always)]
fn unzigzag(raw: u64) -> i64 {
    ((raw >> 1) as i64) ^ -((raw & 1) as i64)
}

/// Reads a nullable's branch byte: whether the value is present; `None` for any other byte.
#[inline(always)]
fn branch(buf: &[u8], pos: &mut usize, present: u8) -> Option<bool> {
    let b = *buf.get(*pos)?;
    *pos += 1;
    if b == present {
        Some(true)
    } else if b == 2 - present {
        Some(false)
    } else {
        None
    }
}

#[inline(always)]
fn opt_present(buf: &[u8], pos: &mut usize, present: Option<u8>) -> Option<bool> {
    match present {
        None => Some(true),
        Some(p) => branch(buf, pos, p),
    }
}

#[inline(always)]
fn load8(buf: &[u8], pos: usize) -> Option<u64> {
    Some(u64::from_le_bytes(buf.get(pos..pos + 8)?.try_into().expect("8 bytes")))
}

/// A length prefix of up to three bytes (lengths below 1 MiB) read from one 8-byte load
/// without a branch per byte; longer prefixes, negative lengths and the last bytes of the
/// input go the byte-wise way. Returns the data's start and end.
#[inline(always)]
fn len_end(buf: &[u8], pos: usize) -> Option<(usize, usize, bool)> {
    if let Some(w) = load8(buf, pos) {
        // Most strings are shorter than 64 bytes: a one-byte prefix, whose end is found
        // without the general computation (the branch is predicted per field).
        if w & 0x81 == 0 {
            let end = pos + 1 + ((w & 0x7f) >> 1) as usize;
            return (end <= buf.len()).then_some((pos + 1, end, false));
        }
        let stops = !w & 0x8080_8080_8080_8080;
        let n = (stops.trailing_zeros() / 8 + 1) as usize;
        if n <= 3 {
            let raw = ((w & 0x7f) | ((w >> 1) & 0x3f80) | ((w >> 2) & 0x1f_c000)) & ((1u64 << (7 * n)) - 1);
            if raw & 1 != 0 {
                return None;
            }
            let last = (w >> ((n - 1) * 8)) as u8;
            let start = pos + n;
            let end = start + (raw >> 1) as usize;
            return (end <= buf.len()).then_some((start, end, n > 1 && last == 0));
        }
    }
    len_end_slow(buf, pos)
}

#[inline(never)]
fn len_end_slow(buf: &[u8], pos: usize) -> Option<(usize, usize, bool)> {
    let (raw, start, n) = fast_varint(buf, pos)?;
    if raw & 1 != 0 {
        return None;
    }
    let end = start.checked_add(usize::try_from(raw >> 1).ok()?)?;
    (end <= buf.len()).then_some((start, end, n))
}

#[inline(always)]
fn str_end(buf: &[u8], pos: usize, chk: bool, nm: &mut bool) -> Option<usize> {
    let (start, end, n) = len_end(buf, pos)?;
    *nm |= chk & n;
    if chk && !is_ascii(buf, start, end) && std::str::from_utf8(&buf[start..end]).is_err() {
        return None;
    }
    Some(end)
}

/// ASCII check of `buf[start..end]`: one masked load for up to 8 bytes, two for up to 16.
#[inline(always)]
fn is_ascii(buf: &[u8], start: usize, end: usize) -> bool {
    let n = end - start;
    const HI: u64 = 0x8080_8080_8080_8080;
    if n == 0 {
        return true;
    }
    if n <= 8 {
        if let Some(w) = load8(buf, start) {
            return w & HI & (u64::MAX >> (64 - 8 * n)) == 0;
        }
    } else if n <= 16 {
        // Both words lie inside the string.
        let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
        return (word(start) | word(end - 8)) & HI == 0;
    }
    buf[start..end].is_ascii()
}

#[inline(always)]
fn decimal_end(buf: &[u8], pos: usize, chk: bool, nm: &mut bool) -> Option<usize> {
    let (start, end, n) = len_end(buf, pos)?;
    if chk {
        *nm |= n;
        *nm |= decimal_not_minimal(&buf[start..end]);
    }
    Some(end)
}

#[inline(always)]
fn int_end(buf: &[u8], pos: usize, chk: bool, nm: &mut bool) -> Option<usize> {
    let (end, n) = varint_end(buf, pos)?;
    if end - pos >= 5 {
        let (raw, _, _) = fast_varint(buf, pos)?;
        i32::try_from(unzigzag(raw)).ok()?;
    }
    *nm |= chk & n;
    Some(end)
}

#[inline(never)]
fn prim_end(step: SkipStep, buf: &[u8], pos: usize, chk: bool, nm: &mut bool) -> Option<usize> {
    let (end, n) = fast_skip(&[step], buf, pos, chk)?;
    *nm |= chk & n;
    Some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

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
                assert_eq!(is_ascii(&b, 10, 10 + n), b[10..10 + n].is_ascii(), "n={n} bad={bad:?}");
            }
        }
        buf.truncate(12);
        assert!(is_ascii(&buf, 8, 12));
    }

    #[test]
    fn lengths_agree_with_the_byte_wise_reader() {
        let mut buf = Vec::new();
        for len in [0usize, 1, 63, 64, 127, 128, 8191, 8192, 16383, 16384, 70_000] {
            buf.clear();
            crate::avro::reader::write_long(&mut buf, len as i64);
            let header = buf.len();
            buf.resize(header + len + 8, b'x');
            assert_eq!(len_end(&buf, 0), Some((header, header + len, false)), "len {len}");
            // The same at the input's end, where the 8-byte load does not fit.
            buf.truncate(header + len);
            assert_eq!(len_end(&buf, 0), Some((header, header + len, false)), "len {len} at the end");
        }
        // Negative, non-minimal, beyond the input.
        assert_eq!(len_end(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(len_end(&[0x84, 0x00, b'a', b'b', 0, 0, 0, 0, 0], 0), Some((2, 4, true)));
        assert_eq!(len_end(&[0x10, b'a', 0, 0, 0, 0, 0, 0], 0), None);
    }
}
