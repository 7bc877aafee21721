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

use crate::avro::resolve::{Prim, SkipStep};
use crate::avro::schema::{Node, NodeId, Schema};
use crate::digest::{Op, RowHasher};

use super::Event;
use super::fields::{branch, field_end, len_end, opt_present, unzigzag};
use super::general::parse_position;
use super::raw::{Chain, V3};
use super::tail::Hint;
use crate::avro::resolve::fast_varint;

/// One step. `chk`: the value lies in a row image, whose bytes are hashed as they are, so
/// they must be in canonical form. `present`: the branch byte (zigzag index) of the non-null
/// branch of a `["null", T]` union.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
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
    pub(super) steps: Vec<Step>,
    /// The row's fields (both images have the same row schema), two at a time, as a chain
    /// of links (see [`Link`]) that ends in [`row_done`]; then the fields left, one at a
    /// time: all from the first that only the general fast skip reads.
    row_pairs: Chain,
    /// How many of the row's fields the chain walks.
    paired: usize,
    /// The row's fields, one step each: the pairs' fields when their walk declines, then
    /// those left.
    row: Vec<Step>,
    /// Where the tail begins: the steps after the row images, when they can be checked as
    /// one template (see [`Hint`]).
    pub(super) tail_from: Option<usize>,
    /// Tells hints learned of this walk from those of another.
    pub(super) id: u64,
    /// The two row images, (slot, present byte), when they are the first two steps and the
    /// tail follows them (as in every Debezium envelope): walked without the steps' loop.
    images_first: Option<[(u8, Option<u8>); 2]>,
    /// Whether the walk runs as compiled for AVX2, BMI1, BMI2 and LZCNT (see [`V3`]): this CPU
    /// has them, and the walk is not the [`portable`](Self::portable) one.
    v3: Option<V3>,
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
        let row_pairs = Chain::for_this_cpu(&row[..paired]);
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
            v3: V3::detect(),
        })
    }

    /// The same walk with the row's links for any x86-64 CPU, whatever this one has (see
    /// [`Chain::for_this_cpu`]): so that tests check both.
    pub(super) fn portable(mut self) -> FastEnvelope {
        self.row_pairs = Chain::portable(&self.row[..self.paired]);
        self.v3 = None;
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
        if let Some(v3) = self.v3 {
            return self.decode_into_v3(v3, rows, buf, hint, ev);
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

    /// The walk of [`decode_into`](Self::decode_into), inlined into each compiled form (see
    /// [`decode_into_v3`](Self::decode_into_v3) for the other).
    #[inline(always)]
    pub(super) fn walk_into(
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
                        let s = &buf[start..end];
                        ev.position.tx = parse_position(s)?;
                        ev.origin = Some((start as u32, end as u32));
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
        let end = self.row_pairs.walk(buf, start);
        // The paired fields, walked again one at a time when a pair declined. (Read after the
        // chain's call, so that nothing of the walk's is kept live across it.)
        let paired = self.paired;
        let pos = match end {
            Some(end) => end,
            None => self.row_fields(0..paired, buf, start, nm)?,
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
}

/// The kinds of field a row walks in pairs, numbered for the chain's table of pairs (see
/// [`Chain`]); `None` for those the general fast skip reads.
pub(super) fn kind(step: Step) -> Option<usize> {
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
pub(super) fn arg(step: Step) -> u8 {
    match step {
        Step::OptVar { present, .. } | Step::OptStr { present, .. } => present,
        _ => 0,
    }
}
