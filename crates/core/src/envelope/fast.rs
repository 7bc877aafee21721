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

use crate::avro::resolve::{
    Prim, SkipStep, decimal_not_minimal, fast_skip, fast_varint, only_sign, varint_end,
};
use crate::avro::schema::{Node, NodeId, Schema};
use crate::digest::{Op, RowHasher};

use super::{Event, parse_position};

/// One step. `chk`: the value lies in a row image, whose bytes are hashed as they are, so
/// they must be in canonical form. `present`: the branch byte (zigzag index) of the non-null
/// branch of a `["null", T]` union.
#[derive(Debug, Clone, Copy)]
enum Step {
    Var {
        chk: bool,
    },
    Int {
        chk: bool,
    },
    Str {
        chk: bool,
    },
    Bytes {
        chk: bool,
    },
    Decimal {
        chk: bool,
    },
    OptVar {
        present: u8,
        chk: bool,
    },
    OptStr {
        present: u8,
        chk: bool,
    },
    /// Any other primitive, by the general fast skip.
    Prim(SkipStep, bool),
    /// A row image (0 = before, 1 = after), walked by the row's own steps.
    Image {
        slot: u8,
        present: Option<u8>,
    },
    OpCode {
        present: Option<u8>,
    },
    PositionLong {
        present: Option<u8>,
    },
    PositionStr {
        present: Option<u8>,
    },
    TsMs {
        present: Option<u8>,
    },
    /// The transaction block; when absent, the walk goes on at `next`.
    Tx {
        present: u8,
        next: u16,
    },
    TotalOrder {
        present: Option<u8>,
    },
}

#[derive(Debug, Clone)]
pub(super) struct FastEnvelope {
    steps: Vec<Step>,
    /// The row's fields (both images have the same row schema), two at a time, as a chain
    /// of links (see [`Link`]) that ends in [`row_done`]; then the fields left, one at a
    /// time: all from the first that only the general fast skip reads.
    row_pairs: Vec<Link>,
    /// How many of the row's fields the chain walks.
    paired: usize,
    /// The row's fields, one step each: the pairs' fields when their walk declines, then
    /// those left.
    row: Vec<Step>,
    /// Where the tail begins: the steps after the row images, when they can be checked as
    /// one template (see [`Hint`]).
    tail_from: Option<usize>,
    /// Tells hints learned of this walk from those of another.
    id: u64,
    /// The two row images, (slot, present byte), when they are the first two steps and the
    /// tail follows them (as in every Debezium envelope): walked without the steps' loop.
    images_first: Option<[(u8, Option<u8>); 2]>,
    /// Whether the walk runs as compiled for AVX2, BMI1, BMI2 and LZCNT ([`has_v3`]): this CPU
    /// has them, and the walk is not the [`portable`](Self::portable) one.
    v3: bool,
}

/// What the flat walk learned of the last envelope it read of one stream of records (a
/// partition): the shape of its tail — `source`, `op`, `ts_ms`, `transaction`, everything
/// after the row images. A connector writes the same strings there event after event, so
/// the bytes that decide the tail's structure (union branches, length prefixes, the
/// continuation bits of varints) mostly repeat; when they all match, the tail is checked in
/// masked compares of 32 bytes at a time instead of a step per field, and only the values
/// the verifier needs are read from it. Anything else — a changed length, another branch —
/// walks the tail and learns it again.
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
    /// Per 32 bytes of the tail, in order, and then the 32 that end it (the tail is at
    /// least that long): the bits that must match, and their values, as four words each.
    /// Every structural byte of the learned tail lies in one.
    chunks: Vec<[[u64; 4]; 2]>,
    /// Where the values the verifier reads lie in the tail (their data, after any branch
    /// and length prefix), from the steps that read them.
    op: Option<(usize, usize)>,
    position: Option<PositionAt>,
    ts_ms: Option<(usize, usize)>,
    order: Option<(usize, usize)>,
}

/// Where the position lies in a tail.
#[derive(Debug, Clone, Copy)]
enum PositionAt {
    Long(usize, usize),
    /// A string, and where its number began in the learned tail (after the last `:` and
    /// `-`, as `parse_position` reads it).
    Str(usize, usize, usize),
}

static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A two-branch union with one null branch: the branch byte that means present, and the
/// other branch.
fn nullable(schema: &Schema, node: NodeId) -> Option<(u8, NodeId)> {
    match schema.node(node) {
        Node::Union(b) if b.len() == 2 => {
            let ni = b
                .iter()
                .position(|n| matches!(schema.node(*n), Node::Null))?;
            let other = b[1 - ni];
            (!matches!(schema.node(other), Node::Null | Node::Union(_)))
                .then_some((2 * (1 - ni) as u8, other))
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
        SkipStep::Opt {
            null_index,
            p: Prim::Long,
        } => Step::OptVar {
            present: 2 * (1 - null_index),
            chk,
        },
        SkipStep::Opt {
            null_index,
            p: Prim::Str,
        } => Step::OptStr {
            present: 2 * (1 - null_index),
            chk,
        },
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
        let Node::Record { fields, .. } = schema.node(schema.root()) else {
            return None;
        };
        let mut steps = Vec::new();
        let mut row = None;
        for f in fields {
            match f.name.as_str() {
                "before" | "after" => {
                    let (present, node) = maybe_null(schema, f.node)?;
                    let Node::Record { fields: rf, .. } = schema.node(node) else {
                        return None;
                    };
                    let fields = rf
                        .iter()
                        .map(|g| skip_step(schema, g.node, true))
                        .collect::<Option<Vec<_>>>()?;
                    if row.as_ref().is_some_and(|r: &(NodeId, Vec<Step>)| {
                        schema.describe(r.0) != schema.describe(node)
                    }) {
                        return None;
                    }
                    row = Some((node, fields));
                    steps.push(Step::Image {
                        slot: (f.name == "after") as u8,
                        present,
                    });
                }
                "op" => {
                    let (present, n) = maybe_null(schema, f.node)?;
                    if !matches!(schema.node(n), Node::String(_)) {
                        return None;
                    }
                    steps.push(Step::OpCode { present });
                }
                "source" => {
                    let Node::Record { fields: sf, .. } = schema.node(f.node) else {
                        return None;
                    };
                    for g in sf {
                        if g.name == position {
                            let (present, n) = maybe_null(schema, g.node)?;
                            steps.push(match schema.node(n) {
                                Node::Int(_) | Node::Long(_) => Step::PositionLong { present },
                                Node::String(_) => Step::PositionStr { present },
                                _ => return None,
                            });
                        } else if g.name == "ts_ms" {
                            steps.push(Step::TsMs {
                                present: nullable_long(schema, g.node)?,
                            });
                        } else {
                            steps.push(skip_step(schema, g.node, false)?);
                        }
                    }
                }
                "transaction" => {
                    let (present, tx) = nullable(schema, f.node)?;
                    let Node::Record { fields: tf, .. } = schema.node(tx) else {
                        return None;
                    };
                    let at = steps.len();
                    steps.push(Step::Tx { present, next: 0 });
                    for g in tf {
                        if g.name == "total_order" {
                            steps.push(Step::TotalOrder {
                                present: nullable_long(schema, g.node)?,
                            });
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
        let tail_from = steps
            .iter()
            .rposition(|s| matches!(s, Step::Image { .. }))
            .map_or(0, |i| i + 1);
        let tail_ok = tail_from < steps.len()
            && !steps[tail_from..]
                .iter()
                .any(|s| matches!(s, Step::Prim(..)));
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let row = row.map(|r| r.1).unwrap_or_default();
        // Pairs up to the first field that has no kind; an odd last field is paired with
        // none (kind 7).
        let paired = row
            .iter()
            .position(|s| kind(*s).is_none())
            .unwrap_or(row.len());
        let row_pairs = chain(&row[..paired], pairs_for_this_cpu());
        let images_first = match steps[..] {
            [
                Step::Image {
                    slot: s0,
                    present: p0,
                },
                Step::Image {
                    slot: s1,
                    present: p1,
                },
                ..,
            ] if tail_ok && tail_from == 2 => Some([(s0, p0), (s1, p1)]),
            _ => None,
        };
        Some(FastEnvelope {
            steps,
            row_pairs,
            paired,
            row,
            tail_from: tail_ok.then_some(tail_from),
            id,
            images_first,
            v3: has_v3(),
        })
    }

    /// The same walk with the row's links for any x86-64 CPU, whatever this one has (see
    /// [`pairs_for_this_cpu`]): so that tests check both.
    pub(super) fn portable(mut self) -> FastEnvelope {
        self.row_pairs = chain(&self.row[..self.paired], &PAIRS);
        self.v3 = false;
        self
    }

    /// The event, or `None` when the general path must decide (see the module docs). With a
    /// hint, the tail is checked against what was learned of the last envelopes, and learned
    /// again when it differs.
    #[inline]
    pub(super) fn decode(
        &self,
        rows: &RowHasher,
        buf: &[u8],
        hint: Option<&mut Hint>,
    ) -> Option<Event> {
        let mut ev = Event::EMPTY;
        self.decode_into(rows, buf, hint, &mut ev).map(|()| ev)
    }

    /// [`decode`](Self::decode) into `ev`, which the caller keeps (an event is over a hundred
    /// bytes: not copied out through the layers of results). On `None`, `ev` holds only what
    /// was read before the walk declined, and is no event.
    #[inline]
    pub(super) fn decode_into(
        &self,
        rows: &RowHasher,
        buf: &[u8],
        hint: Option<&mut Hint>,
        ev: &mut Event,
    ) -> Option<()> {
        #[cfg(target_arch = "x86_64")]
        if self.v3 {
            // SAFETY: `v3` is set only where the CPU has what `decode_into_v3` is compiled for.
            return unsafe { self.decode_into_v3(rows, buf, hint, ev) };
        }
        self.decode_into_any(rows, buf, hint, ev)
    }

    /// The walk compiled for any x86-64 (or other) CPU.
    #[inline(never)]
    fn decode_into_any(
        &self,
        rows: &RowHasher,
        buf: &[u8],
        hint: Option<&mut Hint>,
        ev: &mut Event,
    ) -> Option<()> {
        self.walk_into(rows, buf, hint, ev)
    }

    /// The walk compiled for CPUs with AVX2, BMI1, BMI2 and LZCNT: shifts by a varint's or a
    /// digit string's length take their count from any register, the hashes' 64-bit products
    /// leave the flags alone, and the tail's template is compared in AVX2 registers inline.
    ///
    /// # Safety
    /// The CPU has those features (see [`has_v3`]).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,bmi1,bmi2,lzcnt")]
    unsafe fn decode_into_v3(
        &self,
        rows: &RowHasher,
        buf: &[u8],
        hint: Option<&mut Hint>,
        ev: &mut Event,
    ) -> Option<()> {
        self.walk_into(rows, buf, hint, ev)
    }

    /// The walk of [`decode_into`](Self::decode_into), inlined into each compiled form.
    #[inline(always)]
    fn walk_into(
        &self,
        rows: &RowHasher,
        buf: &[u8],
        mut hint: Option<&mut Hint>,
        ev: &mut Event,
    ) -> Option<()> {
        *ev = Event::EMPTY;
        let mut images: [Option<(usize, usize)>; 2] = [None, None];
        let (mut have_pos, mut have_op, mut nm) = (false, false, false);
        let mut pos = 0usize;
        let mut i = 0usize;
        if let Some([(s0, p0), (s1, p1)]) = self.images_first {
            images[s0 as usize] = self.image(buf, &mut pos, p0, &mut nm)?;
            images[s1 as usize] = self.image(buf, &mut pos, p1, &mut nm)?;
            i = 2;
        }
        let steps = &self.steps[..];
        // Where the tail began when it was walked, to learn it from.
        let mut learn_at = None;
        let mut stop = self.tail_from.unwrap_or(usize::MAX);
        // The tail, by the template when it matches: before the loop when it follows the
        // images (as in every Debezium envelope), else where the loop reaches it.
        if i == stop {
            stop = usize::MAX;
            if self.tail_by_template(
                hint.as_deref_mut(),
                buf,
                pos,
                ev,
                &mut have_op,
                &mut have_pos,
            )? {
                pos = buf.len();
                i = steps.len();
            } else {
                learn_at = Some(pos);
            }
        }
        while let Some(step) = steps.get(i) {
            if i == stop {
                stop = usize::MAX;
                if self.tail_by_template(
                    hint.as_deref_mut(),
                    buf,
                    pos,
                    ev,
                    &mut have_op,
                    &mut have_pos,
                )? {
                    pos = buf.len();
                    break;
                }
                learn_at = Some(pos);
            }
            i += 1;
            match *step {
                Step::Var { .. }
                | Step::Int { .. }
                | Step::Str { .. }
                | Step::Bytes { .. }
                | Step::Decimal { .. }
                | Step::OptVar { .. }
                | Step::OptStr { .. }
                | Step::Prim(..) => {
                    pos = field_end(*step, buf, pos, &mut nm)?;
                }
                Step::Image { slot, present } => {
                    images[slot as usize] = self.image(buf, &mut pos, present, &mut nm)?
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
        if pos != buf.len()
            || nm
            || !have_op
            || (!have_pos && !matches!(ev.op, Op::Truncate | Op::Read))
        {
            return None;
        }
        if let (Some(h), Some(at)) = (hint, learn_at) {
            let misses = if h.owner == self.id {
                h.misses.saturating_add(1)
            } else {
                1
            };
            // The first few misses in a row learn at once; after that, one in 64.
            if misses <= 8 || misses % 64 == 0 {
                *h = Hint {
                    owner: self.id,
                    tail: self.learn_tail(buf, at),
                    misses,
                };
            } else {
                h.misses = misses;
            }
        }
        if let Some((a, b)) = images[0] {
            ev.before = Some(rows.hash(&buf[a..b]));
            ev.image = Some((a as u32, b as u32));
        }
        if let Some((a, b)) = images[1] {
            ev.after = Some(rows.hash(&buf[a..b]));
            ev.image = Some((a as u32, b as u32));
        }
        Some(())
    }
}

impl FastEnvelope {
    /// Reads the tail at `pos` by the hint's template, if it has one of this walk and the tail
    /// matches it: whether it did (`None`: it matched, but a value in it is not one the
    /// verifier reads, and the general walk decides).
    #[inline(always)]
    fn tail_by_template(
        &self,
        hint: Option<&mut Hint>,
        buf: &[u8],
        pos: usize,
        ev: &mut Event,
        have_op: &mut bool,
        have_pos: &mut bool,
    ) -> Option<bool> {
        if let Some(h) = hint
            && h.owner == self.id
            && let Some(t) = &h.tail
            && t.matches(buf, pos)
        {
            t.read(buf, pos, ev, have_op, have_pos)?;
            if h.misses != 0 {
                h.misses = 0;
            }
            return Some(true);
        }
        Some(false)
    }

    /// A row image at `pos` (after its branch, if nullable): where it lies, if present.
    #[inline(always)]
    fn image(
        &self,
        buf: &[u8],
        pos: &mut usize,
        present: Option<u8>,
        nm: &mut bool,
    ) -> Option<Option<(usize, usize)>> {
        Some(if opt_present(buf, pos, present)? {
            let start = *pos;
            *pos = self.row_end(buf, start, nm)?;
            Some((start, *pos))
        } else {
            None
        })
    }

    /// The end of a row image starting at `pos`.
    #[inline(always)]
    fn row_end(&self, buf: &[u8], start: usize, nm: &mut bool) -> Option<usize> {
        let links = &self.row_pairs[..];
        let end = match buf.len().checked_sub(8) {
            // SAFETY: `chain` ends every chain with `row_done`'s link and puts none after it;
            // the pointer is the slice's own, so it reaches every link in it. The input has
            // `limit + 8` bytes, and the row starts at most at `limit`.
            Some(limit) if start <= limit => unsafe {
                (links[0].f)(links.as_ptr(), buf.as_ptr(), start, limit)
            },
            _ => DECLINED,
        };
        // The paired fields, walked again one at a time when a pair declined.
        let paired = self.paired;
        let pos = if end != DECLINED {
            end
        } else {
            self.row_fields(0..paired, buf, start, nm)?
        };
        if self.row.len() > paired {
            self.row_fields(paired..self.row.len(), buf, pos, nm)
        } else {
            Some(pos)
        }
    }

    /// The end of the row's fields `at`, walked one at a time.
    #[inline(never)]
    fn row_fields(
        &self,
        at: std::ops::Range<usize>,
        buf: &[u8],
        mut pos: usize,
        nm: &mut bool,
    ) -> Option<usize> {
        for &step in self.row.get(at)? {
            pos = field_end(step, buf, pos, nm)?;
        }
        Some(pos)
    }

    /// The tail of a datum the flat walk accepted, as a template; `None` if it has a part
    /// the template cannot check (a long varint, whose last byte has a range).
    #[cold]
    fn learn_tail(&self, buf: &[u8], at: usize) -> Option<Tail> {
        let len = buf.len() - at;
        // (Shorter than any Debezium tail: its `source` alone is longer.)
        if len < 32 {
            return None;
        }
        // Per byte of the tail: the bits that decide its structure.
        let mut mask = vec![0u8; len];
        let (mut op, mut position, mut ts_ms, mut order) = (None, None, None, None);
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
                Step::Str { .. } | Step::Bytes { .. } | Step::Decimal { .. } => {
                    pos = string(&mut mask, pos)?.1
                }
                Step::OptStr { present, .. } => {
                    if branch_of(Some(present), &mut pos)? {
                        pos = string(&mut mask, pos)?.1;
                    }
                }
                Step::OpCode { present } | Step::PositionStr { present } => {
                    if branch_of(present, &mut pos)? {
                        let (data, end) = string(&mut mask, pos)?;
                        let (d, e) = (data - at, end - at);
                        if matches!(step, Step::OpCode { .. }) {
                            op = Some((d, e));
                        } else {
                            let value = &buf[data..end];
                            let digits = value
                                .iter()
                                .rposition(|c| *c == b':' || *c == b'-')
                                .map_or(0, |i| i + 1);
                            position = Some(PositionAt::Str(d, e, d + digits));
                        }
                        pos = end;
                    } else if matches!(step, Step::OpCode { .. }) {
                        // A null op is read as the walk reads it: empty.
                        op = Some((pos - at, pos - at));
                    }
                }
                Step::PositionLong { present }
                | Step::TsMs { present }
                | Step::TotalOrder { present } => {
                    if branch_of(present, &mut pos)? {
                        let end = varint(&mut mask, pos)?;
                        let range = (pos - at, end - at);
                        match step {
                            Step::PositionLong { .. } => {
                                position = Some(PositionAt::Long(range.0, range.1))
                            }
                            Step::TsMs { .. } => ts_ms = Some(range),
                            _ => order = Some(range),
                        }
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
        Some(Tail {
            len,
            chunks: chunks(&mask, &buf[at..]),
            op,
            position,
            ts_ms,
            order,
        })
    }
}

impl Tail {
    /// Whether the tail at `pos` has the learned structure (in the walk compiled for AVX2, a
    /// chunk is compared in one register).
    #[inline(always)]
    fn matches(&self, buf: &[u8], pos: usize) -> bool {
        buf.len() - pos == self.len && tail_matches(&buf[pos..], &self.chunks)
    }

    /// Reads the values the verifier needs from a matching tail.
    #[inline(always)]
    fn read(
        &self,
        buf: &[u8],
        pos: usize,
        ev: &mut Event,
        have_op: &mut bool,
        have_pos: &mut bool,
    ) -> Option<()> {
        let tail = &buf[pos..];
        if let Some((start, end)) = self.op {
            ev.op = Op::from_code(&tail[start..end])?;
            *have_op = true;
        }
        match self.position {
            Some(PositionAt::Long(start, end)) => {
                ev.position.tx = unzigzag(varint_value(tail, start, end)?) as u64;
                *have_pos = true;
            }
            Some(PositionAt::Str(start, end, digits)) => {
                ev.position.tx = position_number(tail, start, end, digits)?;
                *have_pos = true;
            }
            None => {}
        }
        if let Some((start, end)) = self.ts_ms {
            ev.ts_ms = unzigzag(varint_value(tail, start, end)?);
        }
        if let Some((start, end)) = self.order {
            ev.position.order =
                unzigzag(varint_value(tail, start, end)?).clamp(0, u32::MAX as i64) as u32;
        }
        Some(())
    }
}

/// A [`Tail`]'s `chunks`: the bits of `tail` (of 32 bytes or more) that `mask` sets, per 32
/// bytes and then the 32 that end it.
fn chunks(mask: &[u8], tail: &[u8]) -> Vec<[[u64; 4]; 2]> {
    let word = |bytes: &[u8], off: usize| {
        u64::from_le_bytes(bytes[off..off + 8].try_into().expect("8 bytes"))
    };
    let chunk = |off: usize| {
        let m: [u64; 4] = std::array::from_fn(|k| word(mask, off + 8 * k));
        [m, std::array::from_fn(|k| word(tail, off + 8 * k) & m[k])]
    };
    (0..tail.len() / 32)
        .map(|k| chunk(32 * k))
        .chain([chunk(tail.len() - 32)])
        .collect()
}

/// Whether `tail` has the learned bits of a [`Tail`]'s `chunks`: 32 bytes at a time, then
/// the 32 that end it.
#[inline(always)]
fn tail_matches(tail: &[u8], chunks: &[[[u64; 4]; 2]]) -> bool {
    let word =
        |c: &[u8], k: usize| u64::from_le_bytes(c[8 * k..8 * k + 8].try_into().expect("8 bytes"));
    let Some((last, full)) = chunks.split_last() else {
        return false;
    };
    let Some(end) = tail.len().checked_sub(32) else {
        return false;
    };
    let mut diff = [0u64; 4];
    for (c, [m, v]) in tail.chunks_exact(32).zip(full) {
        for k in 0..4 {
            diff[k] |= (word(c, k) & m[k]) ^ v[k];
        }
    }
    let [m, v] = last;
    for k in 0..4 {
        diff[k] |= (word(&tail[end..], k) & m[k]) ^ v[k];
    }
    diff == [0; 4]
}

/// [`tail_matches`] compiled for AVX2, as the walk for AVX2 inlines it: for tests.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(all(test, target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
unsafe fn tail_matches_avx2(tail: &[u8], chunks: &[[[u64; 4]; 2]]) -> bool {
    tail_matches(tail, chunks)
}

/// Whether this CPU has what [`FastEnvelope::decode_into_v3`] is compiled for.
fn has_v3() -> bool {
    #[cfg(target_arch = "x86_64")]
    return has_avx2() && has_bmi();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether this CPU has AVX2.
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// The value of the varint `buf[start..end]`, whose continuation bits a template checked
/// (every byte but the last has its high bit set): up to 8 bytes from one word.
#[inline(always)]
fn varint_value(buf: &[u8], start: usize, end: usize) -> Option<u64> {
    let n = end - start;
    // (A small number, as a transaction's order mostly is: its byte.)
    if n == 1 {
        return buf.get(start).map(|b| *b as u64);
    }
    if n > 8 || end < 8 {
        return fast_varint(buf.get(start..end)?, 0).map(|v| v.0);
    }
    // The word that ends at the varint's end, its bytes moved to the bottom.
    let w = u64::from_le_bytes(buf[end - 8..end].try_into().expect("8 bytes")) >> (8 * (8 - n));
    // The 7-bit groups, packed: pairs, then fours, then all eight.
    let x = w & 0x7f7f_7f7f_7f7f_7f7f;
    let x = (x & 0x007f_007f_007f_007f) | ((x & 0x7f00_7f00_7f00_7f00) >> 1);
    let x = (x & 0x0000_3fff_0000_3fff) | ((x & 0x3fff_0000_3fff_0000) >> 2);
    Some((x & 0x0000_0000_0fff_ffff) | ((x & 0x0fff_ffff_0000_0000) >> 4))
}

/// The number of the position string `buf[start..end]`, as `parse_position` reads it. The
/// template learned where its digits began (`digits`); while that is still so — they follow
/// a `:` or `-`, or begin the string, and only digits follow — only they are parsed.
#[inline(always)]
fn position_number(buf: &[u8], start: usize, end: usize, digits: usize) -> Option<u64> {
    let s = &buf[start..end];
    let d = digits - start;
    if (d == 0 || matches!(s[d - 1], b':' | b'-'))
        && let Some(v) = digits_value(buf, digits, end)
    {
        return Some(v);
    }
    parse_position(s)
}

/// The value of `buf[start..end]` if it is 1 to 16 ASCII digits (fewer than 20 digits never
/// overflow), read eight at a time; `None` otherwise, or where a word does not fit.
#[inline(always)]
fn digits_value(buf: &[u8], start: usize, end: usize) -> Option<u64> {
    let n = end - start;
    if n == 0 || n > 16 || end < 16 {
        return None;
    }
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    let word = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
    // Eight digits, most significant first in memory: bytes below `k` are taken as '0'.
    #[inline(always)]
    fn eight(w: u64, k: usize) -> Option<u64> {
        let keep = if k == 0 { 0 } else { u64::MAX >> (64 - 8 * k) };
        let w = (w & !keep) | (ZEROS & keep);
        if w & 0xf0f0_f0f0_f0f0_f0f0 != ZEROS
            || w.wrapping_add(0x0606_0606_0606_0606) & 0xf0f0_f0f0_f0f0_f0f0 != ZEROS
        {
            return None;
        }
        let v = w - ZEROS;
        let v = v.wrapping_mul(10).wrapping_add(v >> 8);
        const MASK: u64 = 0x0000_00ff_0000_00ff;
        let v = ((v & MASK).wrapping_mul(100 + (1_000_000 << 32)))
            .wrapping_add(((v >> 16) & MASK).wrapping_mul(1 + (10_000 << 32)))
            >> 32;
        Some(v & 0xffff_ffff)
    }
    if n <= 8 {
        return eight(word(end - 8), 8 - n);
    }
    Some(eight(word(end - 16), 16 - n)? * 100_000_000 + eight(word(end - 8), 0)?)
}

/// One link of a row's chain: the walk of two fields of known kinds, and what it needs of
/// each (its [`arg`]). A link walks its two fields, then goes on to the next link — the one
/// after it in the chain's slice — by a call in tail position, which the compiler makes a
/// jump: a row is one chain of jumps, with no loop around calls.
///
/// A link is called with a pointer to itself, taken from the chain's slice, so that the next
/// is found without a length to count down: every chain ends in [`row_done`], which goes on
/// to none, and nothing else is a link's last (see [`FastEnvelope::row_end`]).
///
/// The links walk the input by offsets from its first byte: `at`, where the next field
/// starts, and `limit`, the input's length less 8 — the last offset a word of 8 bytes can be
/// read from. A link is called with `at <= limit`, and each field's walk goes on only while
/// that holds after it: one comparison per field both bounds what it read and lets the next
/// read its first word. A chain returns the offset where the row ends, or [`DECLINED`].
#[derive(Debug, Clone, Copy)]
struct Link {
    f: LinkFn,
    a: u8,
    b: u8,
}

/// A link's walk (see [`Link`]): itself, the input's first byte, `at`, `limit`.
type LinkFn = unsafe fn(*const Link, *const u8, usize, usize) -> usize;

/// The chain's last link: the row ends here.
unsafe fn row_done(_: *const Link, _: *const u8, at: usize, _: usize) -> usize {
    at
}

/// A pair's walk declines anything but the common case — a value not in canonical form, a
/// string not in ASCII, a long varint or length, the last 8 bytes of the input, bad input —
/// and the pair is walked again one field at a time, by [`field_end`], which decides. (No
/// input is that long.)
const DECLINED: usize = usize::MAX;

/// The kinds of field a row walks in pairs, numbered for [`PAIRS`]; `None` for those the
/// general fast skip reads.
fn kind(step: Step) -> Option<usize> {
    Some(match step {
        Step::Var { .. } => 0,
        Step::Int { .. } => 1,
        Step::Str { .. } => 2,
        Step::Bytes { .. } => 3,
        Step::Decimal { .. } => 4,
        Step::OptVar { .. } => 5,
        Step::OptStr { .. } => 6,
        _ => return None,
    })
}

/// What the walk of a field of known kind needs of its step: a nullable's present byte.
fn arg(step: Step) -> u8 {
    match step {
        Step::OptVar { present, .. } | Step::OptStr { present, .. } => present,
        _ => 0,
    }
}

/// Two fields of known kinds, with no dispatch inside: the common case only (see
/// [`DECLINED`]); then the next link.
///
/// # Safety
/// `this` points into a slice of links whose last is [`row_done`]'s, and is not that one;
/// `input` points to `limit + 8` bytes that can be read, and `at <= limit`.
unsafe fn pair<const A: usize, const B: usize>(
    this: *const Link,
    input: *const u8,
    at: usize,
    limit: usize,
) -> usize {
    // SAFETY: the caller's promise.
    unsafe { walk_pair::<A, B>(this, input, at, limit) }
}

/// [`pair`] compiled for BMI1, BMI2 and LZCNT.
///
/// # Safety
/// As [`pair`]'s, and the CPU has BMI1, BMI2 and LZCNT (see [`pairs_for_this_cpu`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "bmi1,bmi2,lzcnt")]
unsafe fn pair_bmi<const A: usize, const B: usize>(
    this: *const Link,
    input: *const u8,
    at: usize,
    limit: usize,
) -> usize {
    // SAFETY: the caller's promise.
    unsafe { walk_pair::<A, B>(this, input, at, limit) }
}

/// The walk of a pair, inlined into the functions compiled for each kind of CPU.
///
/// # Safety
/// As [`pair`]'s.
#[inline(always)]
unsafe fn walk_pair<const A: usize, const B: usize>(
    this: *const Link,
    input: *const u8,
    at: usize,
    limit: usize,
) -> usize {
    // SAFETY: `this` points to a link of the chain (the caller's promise).
    let Link { a, b, .. } = unsafe { *this };
    // SAFETY: the caller's promise on `input`, `at` and `limit`; a field's walk returns an
    // offset that keeps it.
    let Some(at) = (unsafe { lean::<A>(a, input, at, limit) }) else {
        return DECLINED;
    };
    let Some(at) = (unsafe { lean::<B>(b, input, at, limit) }) else {
        return DECLINED;
    };
    // SAFETY: `this` is not the chain's last link, so the next one is in the same slice; it is
    // either another pair, not the last either, or `row_done`'s, which reads no link. `at` is
    // still at most `limit`.
    unsafe {
        let next = this.add(1);
        ((*next).f)(next, input, at, limit)
    }
}

/// Where a row field of kind `K` in canonical form that starts at `at` ends, if that is at
/// most `limit`; `None` to decline. Kind 7 is no field: the second of a pair made of an odd
/// row's last field.
///
/// # Safety
/// `input` points to `limit + 8` bytes that can be read, and `at <= limit`.
#[inline(always)]
unsafe fn lean<const K: usize>(
    arg: u8,
    input: *const u8,
    at: usize,
    limit: usize,
) -> Option<usize> {
    if K == 7 {
        return Some(at);
    }
    // SAFETY: the caller's promise, for `word(at)`; for the word after a nullable's branch,
    // `at + 1 <= limit` is checked before it is read. A string's data is read only once its
    // end is known to be within `limit`.
    let word =
        |at: usize| u64::from_le_bytes(unsafe { input.add(at).cast::<[u8; 8]>().read_unaligned() });
    let within = |end: usize| (end <= limit).then_some(end);
    let w = word(at);
    match K {
        0 | 1 => within(at + lean_varint(w, if K == 1 { 4 } else { 8 })?),
        // SAFETY: the caller's promise.
        2 => unsafe { lean_str(w, input, at, limit) },
        3 => within(at + lean_len(w)?.1),
        4 => {
            // A one-byte prefix, and a first byte that is not only the sign of the second (as
            // `decimal_not_minimal` reads it), or one byte: all in the word loaded.
            let n = ((w & 0x7f) >> 1) as usize;
            if w & 0x81 == 0 && (n == 1 || (n >= 2 && !only_sign((w >> 8) as u8, (w >> 16) as u8)))
            {
                within(at + 1 + n)
            } else {
                None
            }
        }
        5 | 6 => {
            let b = w as u8;
            if b == 2 - arg {
                within(at + 1)
            } else if b != arg {
                None
            } else if K == 5 {
                within(at + 1 + lean_varint(w >> 8, 7)?)
            } else {
                let at = within(at + 1)?;
                // SAFETY: as the caller's promise, with `at` checked above.
                unsafe { lean_str(word(at), input, at, limit) }
            }
        }
        _ => None,
    }
}

/// The length of a minimal varint of at most `max` bytes whose bytes start `w`.
#[inline(always)]
fn lean_varint(w: u64, max: u32) -> Option<usize> {
    const HI: u64 = 0x8080_8080_8080_8080;
    const LO: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    if w & 0x80 == 0 {
        return Some(1);
    }
    // The high bit of the byte that ends it, alone (none if no byte in `w` does).
    let stops = !w & HI;
    let last = stops & stops.wrapping_neg();
    // Per byte, the high bit set where its value bits are not all zero: at the last byte,
    // whether the varint is minimal (a last byte of zero is not). No shift by its length.
    let valued = ((w & LO) + LO) & last;
    let within = if max >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * max)) - 1
    };
    (valued & within != 0).then(|| (last.trailing_zeros() / 8 + 1) as usize)
}

/// A minimal length prefix of one or two bytes (lengths below 8 KiB) whose bytes start `w`:
/// where its data starts and ends, from where it starts. (Not by [`len_word`]: its general
/// decoding of up to three bytes kept registers live in every pair; these two cases need
/// none, and longer prefixes go to the per-field walk.)
#[inline(always)]
fn lean_len(w: u64) -> Option<(usize, usize)> {
    let (start, len) = if w & 0x81 == 0 {
        (1, ((w & 0x7f) >> 1) as usize)
    } else if w & 0x8081 == 0x80 && w & 0xff00 != 0 {
        // Continued, not negative, and a second byte that ends it and is not zero.
        (2, (((w & 0x7f) | ((w >> 1) & 0x3f80)) >> 1) as usize)
    } else {
        return None;
    };
    Some((start, start + len))
}

/// Where an ASCII string in canonical form that starts at `at`, its bytes starting `w`, ends,
/// if that is at most `limit`. A string of up to 7 bytes lies in `w` (after its one-byte
/// prefix); a longer one is read by [`ascii_from_8`].
///
/// # Safety
/// As [`lean`]'s.
#[inline(always)]
unsafe fn lean_str(w: u64, input: *const u8, at: usize, limit: usize) -> Option<usize> {
    const HI: u64 = 0x8080_8080_8080_8080;
    let (start, end) = lean_len(w)?;
    let (start, end) = (at + start, at + end);
    if end > limit {
        return None;
    }
    // SAFETY: `input` has `limit + 8` bytes, and `start <= end <= limit`.
    let data = unsafe { std::slice::from_raw_parts(input.add(start), end - start) };
    let ascii = if data.len() < 8 {
        // (A two-byte prefix is for 64 bytes or more: this one is one byte.)
        (w >> 8) & ((1u64 << (8 * data.len())) - 1) & HI == 0
    } else {
        ascii_from_8(data)
    };
    ascii.then_some(end)
}

/// Whether `data`, of 8 bytes or more, is ASCII: up to 16 bytes, by its first and last words
/// ORed; more, by [`ascii_long`].
#[inline(always)]
fn ascii_from_8(data: &[u8]) -> bool {
    const HI: u64 = 0x8080_8080_8080_8080;
    let word = |c: &[u8; 8]| u64::from_le_bytes(*c);
    match (data.len(), data.first_chunk::<8>(), data.last_chunk::<8>()) {
        (..=16, Some(first), Some(last)) => (word(first) | word(last)) & HI == 0,
        (..=16, ..) => data.is_ascii(),
        _ => ascii_long(data),
    }
}

/// Whether `data`, of more than 16 bytes, is ASCII: its first and last 16 bytes ORed, and
/// then those between, 16 at a time (a loop that is entered for strings of more than 32
/// bytes only, and left at the first byte not in ASCII: one register, and no unrolled
/// copies whose registers every pair with a string would save and restore).
#[inline(always)]
fn ascii_long(data: &[u8]) -> bool {
    let (Some(first), Some(last)) = (data.first_chunk::<16>(), data.last_chunk::<16>()) else {
        return data.is_ascii();
    };
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128};
        // SAFETY: SSE2 is part of x86-64; each load reads the 16 bytes of a chunk, unaligned.
        unsafe {
            let load = |c: &[u8; 16]| _mm_loadu_si128(c.as_ptr().cast::<__m128i>());
            let mut acc = _mm_or_si128(load(first), load(last));
            // The 16 bytes at `at`, while they start before the last 16 (they may overlap them).
            let mut at = 16;
            while at < data.len() - 16
                && let Some(c) = data[at..].first_chunk::<16>()
            {
                if _mm_movemask_epi8(acc) != 0 {
                    return false;
                }
                acc = _mm_or_si128(acc, load(c));
                at += 16;
            }
            _mm_movemask_epi8(acc) == 0
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut acc = u128::from_le_bytes(*first) | u128::from_le_bytes(*last);
        for c in data[16..].as_chunks::<16>().0 {
            acc |= u128::from_le_bytes(*c);
        }
        acc & u128::from_le_bytes([0x80; 16]) == 0
    }
}

/// Whether `buf[start..end]` (within the input) is ASCII, without a call: up to 8 bytes, by the
/// word at `start`, and a word that does not fit (the input's last bytes) answers "not known":
/// false, and the caller takes a slower check; more, as the lean walk reads strings.
#[inline(always)]
fn ascii(buf: &[u8], start: usize, end: usize) -> bool {
    const HI: u64 = 0x8080_8080_8080_8080;
    let n = end - start;
    if n <= 8 {
        return match load8(buf, start) {
            Some(w) => n == 0 || w & HI & (u64::MAX >> (64 - 8 * n)) == 0,
            None => false,
        };
    }
    buf.get(start..end).is_some_and(ascii_from_8)
}

macro_rules! pairs_of {
    ($f:ident, $a:literal) => {
        [
            $f::<$a, 0>,
            $f::<$a, 1>,
            $f::<$a, 2>,
            $f::<$a, 3>,
            $f::<$a, 4>,
            $f::<$a, 5>,
            $f::<$a, 6>,
            $f::<$a, 7>,
        ]
    };
}

/// The walk of each pair of kinds.
static PAIRS: [[LinkFn; 8]; 7] = [
    pairs_of!(pair, 0),
    pairs_of!(pair, 1),
    pairs_of!(pair, 2),
    pairs_of!(pair, 3),
    pairs_of!(pair, 4),
    pairs_of!(pair, 5),
    pairs_of!(pair, 6),
];

/// The same walks compiled for BMI1, BMI2 and LZCNT.
#[cfg(target_arch = "x86_64")]
static PAIRS_BMI: [[LinkFn; 8]; 7] = [
    pairs_of!(pair_bmi, 0),
    pairs_of!(pair_bmi, 1),
    pairs_of!(pair_bmi, 2),
    pairs_of!(pair_bmi, 3),
    pairs_of!(pair_bmi, 4),
    pairs_of!(pair_bmi, 5),
    pairs_of!(pair_bmi, 6),
];

/// The walks of pairs for the CPU this runs on: those compiled for BMI1, BMI2 and LZCNT
/// where it has them (x86-64 CPUs since about 2013), whose shifts by a field's length take
/// their count from any register and leave the flags alone (−2 % of the core's instructions
/// per event); else those for any x86-64.
fn pairs_for_this_cpu() -> &'static [[LinkFn; 8]; 7] {
    #[cfg(target_arch = "x86_64")]
    if has_bmi() {
        return &PAIRS_BMI;
    }
    &PAIRS
}

/// Whether this CPU has what [`PAIRS_BMI`] is compiled for.
#[cfg(target_arch = "x86_64")]
fn has_bmi() -> bool {
    std::arch::is_x86_feature_detected!("bmi1")
        && std::arch::is_x86_feature_detected!("bmi2")
        && std::arch::is_x86_feature_detected!("lzcnt")
}

/// The chain of links that walks `row`'s fields (all of a kind) in pairs, from `pairs`, and
/// ends in [`row_done`]'s link. An odd last field is paired with none (kind 7).
fn chain(row: &[Step], pairs: &[[LinkFn; 8]; 7]) -> Vec<Link> {
    let kind_of = |s: &Step| kind(*s).expect("a field of a kind");
    let mut links: Vec<Link> = row
        .chunks(2)
        .map(|p| Link {
            f: pairs[kind_of(&p[0])][p.get(1).map_or(7, kind_of)],
            a: arg(p[0]),
            b: p.get(1).map_or(0, |s| arg(*s)),
        })
        .collect();
    links.push(Link {
        f: row_done,
        a: 0,
        b: 0,
    });
    links
}

/// The end of a field of kind `K` (see [`kind`]) and [`arg`] `arg`; `chk`: its bytes must be
/// in canonical form.
#[inline(always)]
fn field_of<const K: usize>(
    arg: u8,
    chk: bool,
    buf: &[u8],
    mut pos: usize,
    nm: &mut bool,
) -> Option<usize> {
    // The kind is known: no dispatch on the step.
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
            if branch(buf, &mut pos, arg)? {
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
        _ => None,
    }
}

/// The end of one field of a row, or of another primitive part of the envelope.
#[inline(always)]
fn field_end(step: Step, buf: &[u8], pos: usize, nm: &mut bool) -> Option<usize> {
    match step {
        Step::Var { chk } => field_of::<0>(0, chk, buf, pos, nm),
        Step::Int { chk } => field_of::<1>(0, chk, buf, pos, nm),
        Step::Str { chk } => field_of::<2>(0, chk, buf, pos, nm),
        Step::Bytes { chk } => field_of::<3>(0, chk, buf, pos, nm),
        Step::Decimal { chk } => field_of::<4>(0, chk, buf, pos, nm),
        Step::OptVar { present, chk } => field_of::<5>(present, chk, buf, pos, nm),
        Step::OptStr { present, chk } => field_of::<6>(present, chk, buf, pos, nm),
        Step::Prim(s, chk) => prim_end(s, buf, pos, chk, nm),
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
    Some(u64::from_le_bytes(
        buf.get(pos..pos + 8)?.try_into().expect("8 bytes"),
    ))
}

/// A length prefix of up to three bytes (lengths below 1 MiB) read from one 8-byte load
/// without a branch per byte; longer prefixes, negative lengths and the last bytes of the
/// input go the byte-wise way. Returns the data's start and end.
#[inline(always)]
fn len_end(buf: &[u8], pos: usize) -> Option<(usize, usize, bool)> {
    if let Some(w) = load8(buf, pos)
        && let Some(prefix) = len_word(w, pos)
    {
        let (start, len, nm) = prefix?;
        let end = start + len as usize;
        return (end <= buf.len()).then_some((start, end, nm));
    }
    len_end_slow(buf, pos)
}

/// A length prefix at `pos` whose bytes start `w`, if it is up to three bytes long:
/// `Some(None)` if negative, else its data's start, its length, and whether the prefix was
/// longer than needed. `None` for a longer prefix: the byte-wise reader decides.
#[inline(always)]
fn len_word(w: u64, pos: usize) -> Option<Option<(usize, u64, bool)>> {
    // Most strings are shorter than 64 bytes: a one-byte prefix, whose end is found without
    // the general computation (the branch is predicted per field).
    if w & 0x81 == 0 {
        return Some(Some((pos + 1, (w & 0x7f) >> 1, false)));
    }
    let n = (!w & 0x8080_8080_8080_8080).trailing_zeros() / 8 + 1;
    if n > 3 {
        return None;
    }
    let raw = ((w & 0x7f) | ((w >> 1) & 0x3f80) | ((w >> 2) & 0x1f_c000)) & ((1u64 << (7 * n)) - 1);
    // Odd: a negative length. A last byte of zero after others: not minimal.
    let nm = n > 1 && (w >> ((n - 1) * 8)) as u8 == 0;
    Some((raw & 1 == 0).then_some((pos + n as usize, raw >> 1, nm)))
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
    if chk && !ascii(buf, start, end) && std::str::from_utf8(&buf[start..end]).is_err() {
        return None;
    }
    Some(end)
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
                assert_eq!(
                    ascii(&b, 10, 10 + n),
                    b[10..10 + n].is_ascii(),
                    "n={n} bad={bad:?}"
                );
            }
        }
        buf.truncate(12);
        // Where no word fits (the input's last bytes), the answer is "not known to be ASCII":
        // the caller takes the slower check.
        assert!(!ascii(&buf, 8, 12));
    }

    /// The lean walk's check of long strings, at every length and with a byte not in ASCII at
    /// every place (and none: then bytes around the string are not in ASCII).
    #[test]
    fn long_string_checks_agree_with_the_standard_library() {
        for n in 17..=100usize {
            for bad in (0..n).map(Some).chain([None]) {
                let mut b = vec![0xffu8; n + 2];
                b[1..=n].fill(b'a');
                if let Some(at) = bad {
                    b[1 + at] = 0x80;
                }
                assert_eq!(ascii_long(&b[1..=n]), bad.is_none(), "n={n} bad={bad:?}");
            }
        }
    }

    #[test]
    fn lengths_agree_with_the_byte_wise_reader() {
        let mut buf = Vec::new();
        for len in [
            0usize, 1, 63, 64, 127, 128, 8191, 8192, 16383, 16384, 70_000,
        ] {
            buf.clear();
            crate::avro::reader::write_long(&mut buf, len as i64);
            let header = buf.len();
            buf.resize(header + len + 8, b'x');
            assert_eq!(
                len_end(&buf, 0),
                Some((header, header + len, false)),
                "len {len}"
            );
            // The same at the input's end, where the 8-byte load does not fit.
            buf.truncate(header + len);
            assert_eq!(
                len_end(&buf, 0),
                Some((header, header + len, false)),
                "len {len} at the end"
            );
        }
        // Negative, non-minimal, beyond the input.
        assert_eq!(len_end(&[0x01, 0, 0, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(
            len_end(&[0x84, 0x00, b'a', b'b', 0, 0, 0, 0, 0], 0),
            Some((2, 4, true))
        );
        assert_eq!(len_end(&[0x10, b'a', 0, 0, 0, 0, 0, 0], 0), None);
    }

    /// A row's chain takes its links from the table it is given (this CPU's, or the one for
    /// any x86-64), with each pair's arguments, and ends in `row_done`'s.
    #[test]
    fn a_chain_is_made_of_the_links_it_was_asked_for_and_ends_in_row_done() {
        let row = [
            Step::Var { chk: true },
            Step::Str { chk: true },
            Step::OptStr {
                present: 2,
                chk: true,
            },
        ];
        let ends =
            |links: &[Link]| std::ptr::fn_addr_eq(links.last().unwrap().f, row_done as LinkFn);
        let portable = chain(&row, &PAIRS);
        assert_eq!(portable.len(), 3);
        assert!(
            std::ptr::fn_addr_eq(portable[0].f, PAIRS[0][2])
                && std::ptr::fn_addr_eq(portable[1].f, PAIRS[6][7])
                && ends(&portable)
        );
        assert_eq!((portable[1].a, portable[1].b), (2, 0));
        #[cfg(target_arch = "x86_64")]
        {
            let bmi = has_bmi();
            let this = chain(&row, pairs_for_this_cpu());
            let table = if bmi { &PAIRS_BMI } else { &PAIRS };
            assert!(
                std::ptr::fn_addr_eq(this[0].f, table[0][2])
                    && std::ptr::fn_addr_eq(this[1].f, table[6][7])
                    && ends(&this)
            );
            assert_eq!(std::ptr::fn_addr_eq(this[0].f, PAIRS[0][2]), !bmi);
        }
    }

    /// A tail's template matches exactly the tails whose masked bits are the learned ones, by
    /// words and by AVX2 alike: every length from 32 to 200, each byte changed in turn.
    #[test]
    fn tail_templates_match_exactly_the_bits_they_learned() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        let (mut matched, mut differed) = (0, 0);
        for len in 32..=200usize {
            let learned: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Structural bytes: all bits, the high bit only, or none.
            let mask: Vec<u8> = (0..len)
                .map(|_| [0xff, 0x80, 0x00][(next() % 3) as usize])
                .collect();
            let template = chunks(&mask, &learned);
            for at in 0..len {
                let mut tail = learned.clone();
                tail[at] ^= 1 << (next() % 8);
                let want = tail
                    .iter()
                    .zip(&learned)
                    .zip(&mask)
                    .all(|((t, l), m)| t & m == l & m);
                assert_eq!(tail_matches(&tail, &template), want, "len {len} at {at}");
                #[cfg(target_arch = "x86_64")]
                if has_avx2() {
                    // SAFETY: this CPU has AVX2.
                    assert_eq!(
                        unsafe { tail_matches_avx2(&tail, &template) },
                        want,
                        "len {len} at {at}"
                    );
                }
                if want { matched += 1 } else { differed += 1 }
            }
            assert!(tail_matches(&learned, &template));
            // Another length is never this template's (the caller checks the length first; a
            // shorter tail than 32 bytes is not read).
            assert!(!tail_matches(&learned[..31], &template));
        }
        assert!(
            matched > 1000 && differed > 1000,
            "{matched} matched, {differed} differed"
        );
    }

    /// The lean walk's varints: of at most `max` bytes, and minimal (a last byte of zero after
    /// others is not), whatever bytes follow in the word.
    #[test]
    fn lean_varints_are_exactly_the_minimal_ones_within_their_limit() {
        for len in 1..=9usize {
            for cont in [0x80u8, 0x81, 0xff] {
                for last in [0x00u8, 0x01, 0x40, 0x7f] {
                    for junk in [0x00u8, 0x80, 0xff] {
                        let mut bytes = [junk; 8];
                        for (i, b) in bytes.iter_mut().enumerate().take(len.min(8)) {
                            *b = if i + 1 == len { last } else { cont };
                        }
                        let w = u64::from_le_bytes(bytes);
                        for max in [1u32, 4, 7, 8] {
                            let minimal = len == 1 || last != 0;
                            let want = (len <= max as usize && len <= 8 && minimal).then_some(len);
                            assert_eq!(lean_varint(w, max), want, "{bytes:02x?} max {max}");
                        }
                    }
                }
            }
        }
    }

    /// The pairs' lean walk of each kind, against the per-field walk that decides: on bytes
    /// drawn from those that matter (continuation bits, zero bytes, signs of decimals,
    /// non-ASCII), it gives the same end or declines; and it does decide a fair share.
    #[test]
    fn the_lean_walk_of_each_kind_agrees_with_the_field_walk_or_declines() {
        fn check<const K: usize>(arg: u8, buf: &[u8], pos: usize) -> (bool, bool) {
            let lean = buf
                .len()
                .checked_sub(8)
                .filter(|limit| pos <= *limit)
                .and_then(|limit| {
                    // SAFETY: the buffer has `limit + 8` bytes, and `pos <= limit`.
                    unsafe { lean::<K>(arg, buf.as_ptr(), pos, limit) }
                });
            let mut nm = false;
            let field = field_of::<K>(arg, true, buf, pos, &mut nm);
            if lean.is_some() {
                assert_eq!(
                    (lean, false),
                    (field, nm),
                    "kind {K} arg {arg} at {pos} in {buf:?}"
                );
            }
            (lean.is_some(), field.is_some() && !nm)
        }
        let alphabet = [
            0x00u8, 0x01, 0x02, 0x03, 0x04, 0x06, 0x0a, 0x10, 0x3e, 0x40, 0x7e, 0x7f, 0x80, 0x81,
            0x82, 0xc3, 0xfe, 0xff, b'a', b'z',
        ];
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
        let (mut decided, mut valid) = ([0usize; 7], [0usize; 7]);
        for _ in 0..200_000 {
            let len = (next() % 40) as usize;
            // Long runs of one byte now and then: long varints and long strings.
            let run = alphabet[(next() % alphabet.len() as u64) as usize];
            // Mostly 8 more bytes that no field starts in: the walk declines a field that
            // ends within the input's last 8 bytes, and decides the others.
            let more = if next().is_multiple_of(4) { 0 } else { 8 };
            let buf: Vec<u8> = (0..len + more)
                .map(|_| {
                    if next().is_multiple_of(4) {
                        run
                    } else {
                        alphabet[(next() % alphabet.len() as u64) as usize]
                    }
                })
                .collect();
            let pos = (next() % (len as u64 + 1)) as usize;
            let arg = [0u8, 2][(next() % 2) as usize];
            let results = [
                check::<0>(arg, &buf, pos),
                check::<1>(arg, &buf, pos),
                check::<2>(arg, &buf, pos),
                check::<3>(arg, &buf, pos),
                check::<4>(arg, &buf, pos),
                check::<5>(arg, &buf, pos),
                check::<6>(arg, &buf, pos),
            ];
            for (k, (d, v)) in results.into_iter().enumerate() {
                decided[k] += d as usize;
                valid[k] += v as usize;
            }
        }
        for k in 0..7 {
            assert!(
                decided[k] * 2 > valid[k],
                "kind {k}: decided {} of {} valid",
                decided[k],
                valid[k]
            );
        }
    }

    /// Length prefixes of one to five bytes, minimal or not, negative or not: the lean walk
    /// gives `len_end`'s answer for minimal prefixes of up to two bytes, and declines the rest.
    #[test]
    fn lean_lengths_agree_with_len_end() {
        for len in [
            0usize,
            1,
            2,
            63,
            64,
            65,
            127,
            128,
            8191,
            8192,
            70_000,
            (1 << 20) - 1,
            1 << 20,
            1 << 21,
        ] {
            for pad in 0..3usize {
                // Minimal, then the same value with `pad` extra bytes of continuation.
                let mut prefix = Vec::new();
                crate::avro::reader::write_long(&mut prefix, len as i64);
                if pad > 0 {
                    let last = prefix.len() - 1;
                    prefix[last] |= 0x80;
                    prefix.extend(std::iter::repeat_n(0x80, pad - 1));
                    prefix.push(0);
                }
                let mut buf = prefix.clone();
                buf.resize(prefix.len() + len + 8, b'x');
                let w = load8(&buf, 0).unwrap();
                let lean = lean_len(w);
                let general = len_end(&buf, 0);
                if pad == 0 && prefix.len() <= 2 {
                    assert_eq!(lean, Some((prefix.len(), prefix.len() + len)), "len {len}");
                    assert_eq!(general, Some((prefix.len(), prefix.len() + len, false)));
                } else {
                    assert_eq!(lean, None, "len {len} in {} bytes", prefix.len());
                }
                // Negative: the same bytes with the sign bit set.
                buf[0] |= 1;
                assert_eq!(lean_len(load8(&buf, 0).unwrap()), None, "-{len}");
            }
        }
    }

    /// Position strings read from a matching tail: as `parse_position` reads them, for
    /// every place the template may have learned their digits to begin.
    #[test]
    fn position_numbers_read_as_parse_position_reads_them() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        let alphabet = b"0123456789:-a/ 9";
        let mut fast = 0;
        for i in 0..300_000 {
            // A GTID-like string: a prefix, a separator, digits; now and then anything.
            let mut v: Vec<u8> = Vec::new();
            if i % 3 != 0 {
                v.extend_from_slice(b"f3a1c2d4-0b1e-4c7a-9d2e-123456789abc");
                v.push([b':', b'-'][(next() % 2) as usize]);
                let n = (next() % 22) as usize;
                v.extend((0..n).map(|_| b'0' + (next() % 10) as u8));
            } else {
                let n = (next() % 30) as usize;
                v.extend((0..n).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]));
            }
            // The string inside a buffer, with bytes before and after it.
            let pad = (next() % 24) as usize;
            let mut buf = vec![b'7'; pad];
            buf.extend_from_slice(&v);
            buf.extend_from_slice(b"\x02\x04xy");
            let (start, end) = (pad, pad + v.len());
            let learned = start
                + v.iter()
                    .rposition(|c| *c == b':' || *c == b'-')
                    .map_or(0, |i| i + 1);
            let digits = if next().is_multiple_of(4) {
                start + (next() % (v.len() as u64 + 1)) as usize
            } else {
                learned
            };
            let expected = parse_position(&v);
            assert_eq!(
                position_number(&buf, start, end, digits),
                expected,
                "{:?} digits at {}",
                String::from_utf8_lossy(&v),
                digits - start
            );
            fast += digits_value(&buf, digits, end).is_some() as usize;
        }
        assert!(fast > 100_000, "{fast}");
    }

    /// Varints of 1 to 10 bytes, read by the word as the template reads them.
    #[test]
    fn varint_values_read_as_the_byte_wise_reader_reads_them() {
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
        for i in 0..200_000u64 {
            let x = next();
            let v = (x >> (i % 64)) as i64 * if i % 2 == 0 { 1 } else { -1 };
            let mut buf = vec![0x80u8; (i % 13) as usize];
            let start = buf.len();
            crate::avro::reader::write_long(&mut buf, v);
            let end = buf.len();
            buf.extend_from_slice(&[0xff; 3]);
            let raw = fast_varint(&buf, start).unwrap();
            assert_eq!(raw.1, end);
            assert_eq!(
                varint_value(&buf, start, end),
                Some(raw.0),
                "{v} at {start}"
            );
        }
    }
}
