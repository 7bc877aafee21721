//! Canonical form of a datum: the Avro binary encoding a reader with the *reference* schema
//! would produce after schema resolution — type promotions, defaults for fields the writer
//! lacks, union branches matched by type, enums by symbol, logical types by value, minimal
//! varints and decimals, arrays and maps in one block.
//!
//! A [`Plan`] is compiled once per (writer, reader) pair. When both are structurally the same
//! the datum bytes already are the canonical form (once their varints are checked to be
//! minimal), so the plan only walks the bytes to find their end; otherwise it re-encodes.

use std::collections::HashMap;

use super::reader::{DecodeError, DecodeErrorKind, MAX_DEPTH, Reader, write_long};
use super::schema::{NodeId, Schema};
use crate::rules::TableRules;

mod canonical;
mod compile;
mod rules;
mod skip;
#[cfg(test)]
mod tests;

use canonical::{canonical_f32, canonical_f64, decimal_value, minimal_twos_complement};
pub(crate) use canonical::{decimal_not_minimal, only_sign};
use compile::Compiler;
pub use compile::encode_default;
use rules::Treat;
pub use skip::{Prim, SkipStep, run_steps, skip};
use skip::{SkipProgram, one_minimal_varint, zero_width_guard};
pub(crate) use skip::{fast_skip, fast_varint, varint_end};
type OpId = u32;

#[derive(Debug, Clone)]
enum Op {
    Null,
    Bool,
    /// int or long (same varint encoding), re-encoded minimally; `int`: the writer's is an
    /// int, whose value must fit 32 bits (as every reader of it checks).
    Long {
        int: bool,
    },
    /// A long whose value is scaled (time/timestamp unit conversion): `v * mul / div`.
    LongScaled {
        mul: i64,
        div: i64,
        int: bool,
    },
    Float,
    Double,
    IntOrLongToFloat {
        int: bool,
    },
    IntOrLongToDouble {
        int: bool,
    },
    FloatToDouble,
    /// bytes or string; `utf8` checks the writer's bytes are text where the reader wants text.
    Bytes {
        utf8: bool,
    },
    Fixed(usize),
    /// A decimal re-encoded minimally and rescaled to the reader's scale.
    Decimal {
        from: DecimalRepr,
        to: DecimalRepr,
        rescale: u32,
    },
    Enum {
        map: Vec<Option<u32>>,
        default: Option<u32>,
    },
    Array(OpId),
    Map(OpId),
    Record {
        fields: Vec<FieldOp>,
        defaults: Vec<(u32, Vec<u8>)>,
        in_order: bool,
        reader_fields: u32,
    },
    /// The writer is a union: one entry per writer branch, `None` if it cannot be resolved.
    FromUnion(Vec<Option<(Option<u32>, OpId)>>),
    /// The writer is not a union, the reader is: emit the reader's branch index first.
    ToUnion {
        index: u32,
        op: OpId,
    },
    /// A column rule's rewrite of what `op` emitted.
    Treat {
        op: OpId,
        how: Treat,
    },
    Fail(String),
}

#[derive(Debug, Clone, Copy)]
enum DecimalRepr {
    Bytes,
    Fixed(usize),
}

#[derive(Debug, Clone)]
enum FieldOp {
    Read { reader_index: u32, op: OpId },
    Skip(NodeId),
}

/// A compiled decode-and-canonicalize plan for one (writer, reader) node pair.
#[derive(Debug)]
pub struct Plan {
    ops: Vec<Op>,
    root: OpId,
    /// Writer and reader are structurally identical at this node.
    identity: bool,
    flat: SkipProgram,
    /// Identity, and the value is one long or int (or a record of one): the longest varint
    /// [`Plan::canonical`] takes without the walk (4 bytes for an int: always in range).
    one_varint: Option<usize>,
}

/// Canonical bytes: borrowed from the input (already canonical) or from the scratch buffer.
pub enum Canon<'i, 's> {
    Input(&'i [u8]),
    Scratch(&'s [u8]),
}

impl Canon<'_, '_> {
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        match self {
            Canon::Input(b) | Canon::Scratch(b) => b,
        }
    }
}

/// Reusable buffers for the re-encoding path; owned by the caller so that the hot path does
/// not allocate once they have grown to the size of the largest row.
#[derive(Default)]
pub struct Scratch {
    pub out: Vec<u8>,
    pool: Vec<Vec<u8>>,
}

impl Plan {
    pub fn compile(writer: &Schema, w: NodeId, reader: &Schema, r: NodeId) -> Plan {
        Plan::compile_ruled(writer, w, reader, r, None).0
    }

    /// [`compile`](Self::compile) with column rules for the root record's fields (see
    /// [`crate::rules`]); also says what the rules could not do.
    pub fn compile_ruled(
        writer: &Schema,
        w: NodeId,
        reader: &Schema,
        r: NodeId,
        rules: Option<&TableRules>,
    ) -> (Plan, Vec<String>) {
        let mut c = Compiler {
            writer,
            reader,
            ops: Vec::new(),
            memo: HashMap::new(),
            rules,
            notes: Vec::new(),
            ruled: false,
        };
        let root = c.compile_root(w, r);
        let identity = !c.ruled && writer.describe(w) == reader.describe(r);
        let flat = SkipProgram::compile(writer, w);
        let one_varint = match flat.0[..] {
            [SkipStep::P(Prim::Long)] if identity => Some(10),
            [SkipStep::P(Prim::Int)] if identity => Some(4),
            _ => None,
        };
        let plan = Plan {
            ops: c.ops,
            root,
            identity,
            flat,
            one_varint,
        };
        (plan, c.notes)
    }

    pub fn is_identity(&self) -> bool {
        self.identity
    }

    /// Reads one value from `r` and returns its canonical bytes: a slice of the input when
    /// the input already is canonical, else the re-encoding in `scratch.out`.
    #[inline(always)]
    pub fn canonical<'i, 's>(
        &self,
        writer: &Schema,
        r: &mut Reader<'i>,
        scratch: &'s mut Scratch,
    ) -> Result<Canon<'i, 's>, DecodeError> {
        // A key of one number, all of the input that is left: the common key, taken as it is
        // when its varint is minimal. (Anything else, trailing bytes too, takes the walk.)
        if let Some(max) = self.one_varint {
            let rest = &r.input()[r.pos()..];
            if one_minimal_varint(rest, max) {
                r.advance_to(r.input().len());
                return Ok(Canon::Input(rest));
            }
        }
        self.canonical_walk(writer, r, scratch)
    }

    /// [`canonical`](Self::canonical) by the walk.
    #[inline(never)]
    fn canonical_walk<'i, 's>(
        &self,
        writer: &Schema,
        r: &mut Reader<'i>,
        scratch: &'s mut Scratch,
    ) -> Result<Canon<'i, 's>, DecodeError> {
        if self.identity {
            let start = r.pos();
            let was_non_minimal = r.non_minimal;
            r.non_minimal = false;
            self.flat.run(writer, r)?;
            let non_minimal = r.non_minimal;
            r.non_minimal |= was_non_minimal;
            if !non_minimal {
                return Ok(Canon::Input(&r.input()[start..r.pos()]));
            }
            // Same schema, but bytes not in canonical form: re-encode from the start.
            let mut again = Reader::new(&r.input()[start..r.pos()]);
            scratch.out.clear();
            let mut out = std::mem::take(&mut scratch.out);
            let res = self.run(
                writer,
                self.root,
                &mut again,
                &mut out,
                &mut scratch.pool,
                0,
            );
            scratch.out = out;
            res.map_err(|mut e| {
                e.offset += start;
                e
            })?;
            return Ok(Canon::Scratch(&scratch.out));
        }
        scratch.out.clear();
        let mut out = std::mem::take(&mut scratch.out);
        let res = self.run(writer, self.root, r, &mut out, &mut scratch.pool, 0);
        scratch.out = out;
        res?;
        Ok(Canon::Scratch(&scratch.out))
    }

    fn run(
        &self,
        writer: &Schema,
        op: OpId,
        r: &mut Reader<'_>,
        out: &mut Vec<u8>,
        pool: &mut Vec<Vec<u8>>,
        depth: usize,
    ) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(r.err(DecodeErrorKind::TooDeep));
        }
        match &self.ops[op as usize] {
            Op::Null => {}
            Op::Bool => out.push(r.read_bool()? as u8),
            Op::Long { int } => write_long(out, read_int_or_long(r, *int)?),
            Op::LongScaled { mul, div, int } => {
                let v = read_int_or_long(r, *int)?;
                let scaled = if *mul != 1 {
                    v.saturating_mul(*mul)
                } else {
                    v.div_euclid(*div)
                };
                write_long(out, scaled)
            }
            Op::Float => out.extend_from_slice(
                &canonical_f32(f32::from_le_bytes(r.read_fixed(4)?.try_into().unwrap()))
                    .to_le_bytes(),
            ),
            Op::Double => out.extend_from_slice(
                &canonical_f64(f64::from_le_bytes(r.read_fixed(8)?.try_into().unwrap()))
                    .to_le_bytes(),
            ),
            Op::IntOrLongToFloat { int } => out
                .extend_from_slice(&canonical_f32(read_int_or_long(r, *int)? as f32).to_le_bytes()),
            Op::IntOrLongToDouble { int } => out
                .extend_from_slice(&canonical_f64(read_int_or_long(r, *int)? as f64).to_le_bytes()),
            Op::FloatToDouble => {
                let f = f32::from_le_bytes(r.read_fixed(4)?.try_into().unwrap());
                out.extend_from_slice(&canonical_f64(f as f64).to_le_bytes())
            }
            Op::Bytes { utf8 } => {
                let b = if *utf8 {
                    r.read_str()?.as_bytes()
                } else {
                    r.read_bytes()?
                };
                write_long(out, b.len() as i64);
                out.extend_from_slice(b);
            }
            Op::Fixed(n) => out.extend_from_slice(r.read_fixed(*n)?),
            Op::Decimal { from, to, rescale } => {
                let at = r.pos();
                let raw = match from {
                    DecimalRepr::Bytes => r.read_bytes()?,
                    DecimalRepr::Fixed(n) => r.read_fixed(*n)?,
                };
                if *rescale == 0 {
                    // Same scale: the minimal two's-complement bytes, of any length.
                    let minimal: &[u8] = if raw.is_empty() {
                        &[0]
                    } else {
                        minimal_twos_complement(raw)
                    };
                    match to {
                        DecimalRepr::Bytes => {
                            write_long(out, minimal.len() as i64);
                            out.extend_from_slice(minimal);
                        }
                        DecimalRepr::Fixed(n) => {
                            if minimal.len() > *n {
                                return Err(DecodeError {
                                    kind: DecodeErrorKind::Unresolvable(
                                        "decimal does not fit the reader's fixed size".into(),
                                    ),
                                    offset: at,
                                });
                            }
                            let fill = if minimal[0] & 0x80 != 0 { 0xff } else { 0 };
                            out.extend(std::iter::repeat_n(fill, n - minimal.len()));
                            out.extend_from_slice(minimal);
                        }
                    }
                    return Ok(());
                }
                let unscaled = decimal_value(raw).ok_or(DecodeError {
                    kind: DecodeErrorKind::Unresolvable(format!("decimal of {} bytes", raw.len())),
                    offset: at,
                })?;
                let value = unscaled
                    .checked_mul(10i128.pow(*rescale))
                    .ok_or(DecodeError {
                        kind: DecodeErrorKind::Unresolvable(
                            "decimal overflows when rescaled".into(),
                        ),
                        offset: at,
                    })?;
                let be = value.to_be_bytes();
                let minimal = minimal_twos_complement(&be);
                match to {
                    DecimalRepr::Bytes => {
                        write_long(out, minimal.len() as i64);
                        out.extend_from_slice(minimal);
                    }
                    DecimalRepr::Fixed(n) => {
                        if minimal.len() > *n {
                            return Err(DecodeError {
                                kind: DecodeErrorKind::Unresolvable(
                                    "decimal does not fit the reader's fixed size".into(),
                                ),
                                offset: at,
                            });
                        }
                        let fill = if value < 0 { 0xff } else { 0 };
                        out.extend(std::iter::repeat_n(fill, n - minimal.len()));
                        out.extend_from_slice(minimal);
                    }
                }
            }
            Op::Enum { map, default } => {
                let at = r.pos();
                let i = r.read_long()?;
                let mapped = usize::try_from(i).ok().and_then(|i| map.get(i).copied());
                match mapped {
                    Some(Some(j)) => write_long(out, j as i64),
                    Some(None) => match default {
                        Some(d) => write_long(out, *d as i64),
                        None => {
                            return Err(DecodeError {
                                kind: DecodeErrorKind::Unresolvable(
                                    "enum symbol unknown to the reader".into(),
                                ),
                                offset: at,
                            });
                        }
                    },
                    None => {
                        return Err(DecodeError {
                            kind: DecodeErrorKind::EnumIndex {
                                index: i,
                                symbols: map.len(),
                            },
                            offset: at,
                        });
                    }
                }
            }
            Op::Array(item) => {
                let mut items = pool.pop().unwrap_or_default();
                items.clear();
                let mut count = 0i64;
                let res = (|| {
                    loop {
                        let (n, sized) = r.read_block()?;
                        if n == 0 {
                            break;
                        }
                        for _ in 0..n {
                            let before = r.pos();
                            self.run(writer, *item, r, &mut items, pool, depth + 1)?;
                            zero_width_guard(r, before, n)?;
                            count += 1;
                        }
                        r.block_done(sized)?;
                    }
                    Ok(())
                })();
                if res.is_ok() {
                    if count > 0 {
                        write_long(out, count);
                        out.extend_from_slice(&items);
                    }
                    out.push(0);
                }
                pool.push(items);
                res?;
            }
            Op::Map(value) => {
                let mut items = pool.pop().unwrap_or_default();
                items.clear();
                let mut count = 0i64;
                let res = (|| {
                    loop {
                        let (n, sized) = r.read_block()?;
                        if n == 0 {
                            break;
                        }
                        for _ in 0..n {
                            let k = r.read_str()?;
                            write_long(&mut items, k.len() as i64);
                            items.extend_from_slice(k.as_bytes());
                            self.run(writer, *value, r, &mut items, pool, depth + 1)?;
                            count += 1;
                        }
                        r.block_done(sized)?;
                    }
                    Ok(())
                })();
                if res.is_ok() {
                    if count > 0 {
                        write_long(out, count);
                        out.extend_from_slice(&items);
                    }
                    out.push(0);
                }
                pool.push(items);
                res?;
            }
            Op::Record {
                fields,
                defaults,
                in_order,
                reader_fields,
            } => {
                if *in_order {
                    let mut next_default = 0;
                    for f in fields {
                        match f {
                            FieldOp::Skip(node) => skip(writer, *node, r, depth + 1, false)?,
                            FieldOp::Read { reader_index, op } => {
                                while next_default < defaults.len()
                                    && defaults[next_default].0 < *reader_index
                                {
                                    out.extend_from_slice(&defaults[next_default].1);
                                    next_default += 1;
                                }
                                self.run(writer, *op, r, out, pool, depth + 1)?;
                            }
                        }
                    }
                    for (_, d) in &defaults[next_default..] {
                        out.extend_from_slice(d);
                    }
                } else {
                    // Fields in another order: encode each, then emit in the reader's order.
                    let mut segs: Vec<Vec<u8>> = (0..*reader_fields)
                        .map(|_| pool.pop().unwrap_or_default())
                        .collect();
                    segs.iter_mut().for_each(Vec::clear);
                    let mut res = Ok(());
                    for f in fields {
                        res = match f {
                            FieldOp::Skip(node) => skip(writer, *node, r, depth + 1, false),
                            FieldOp::Read { reader_index, op } => {
                                let mut seg = std::mem::take(&mut segs[*reader_index as usize]);
                                let res = self.run(writer, *op, r, &mut seg, pool, depth + 1);
                                segs[*reader_index as usize] = seg;
                                res
                            }
                        };
                        if res.is_err() {
                            break;
                        }
                    }
                    if res.is_ok() {
                        for (i, d) in defaults {
                            segs[*i as usize].extend_from_slice(d);
                        }
                        for s in &segs {
                            out.extend_from_slice(s);
                        }
                    }
                    pool.extend(segs);
                    res?;
                }
            }
            Op::FromUnion(branches) => {
                let at = r.pos();
                let i = r.read_long()?;
                let branch = usize::try_from(i).ok().and_then(|i| branches.get(i));
                match branch {
                    None => {
                        return Err(DecodeError {
                            kind: DecodeErrorKind::UnionIndex {
                                index: i,
                                branches: branches.len(),
                            },
                            offset: at,
                        });
                    }
                    Some(None) => {
                        return Err(DecodeError {
                            kind: DecodeErrorKind::Unresolvable(format!(
                                "union branch {i} has no match in the reader"
                            )),
                            offset: at,
                        });
                    }
                    Some(Some((index, op))) => {
                        if let Some(index) = index {
                            write_long(out, *index as i64);
                        }
                        self.run(writer, *op, r, out, pool, depth + 1)?;
                    }
                }
            }
            Op::ToUnion { index, op } => {
                write_long(out, *index as i64);
                self.run(writer, *op, r, out, pool, depth + 1)?;
            }
            Op::Treat { op, how } => {
                let start = out.len();
                self.run(writer, *op, r, out, pool, depth + 1)?;
                how.apply(out, start).map_err(|mut e| {
                    e.offset = r.pos();
                    e
                })?;
            }
            Op::Fail(why) => return Err(r.err(DecodeErrorKind::Unresolvable(why.clone()))),
        }
        Ok(())
    }
}

/// An int (range-checked) or a long, as the writer wrote it.
#[inline(always)]
fn read_int_or_long(r: &mut Reader<'_>, int: bool) -> Result<i64, DecodeError> {
    if int {
        r.read_int().map(i64::from)
    } else {
        r.read_long()
    }
}
