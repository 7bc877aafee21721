//! Canonical form of a datum: the Avro binary encoding a reader with the *reference* schema
//! would produce after schema resolution — type promotions, defaults for fields the writer
//! lacks, union branches matched by type, enums by symbol, logical types by value, minimal
//! varints and decimals, arrays and maps in one block.
//!
//! A [`Plan`] is compiled once per (writer, reader) pair. When both are structurally the same
//! the datum bytes already are the canonical form (once their varints are checked to be
//! minimal), so the plan only walks the bytes to find their end; otherwise it re-encodes.

use std::collections::HashMap;

use serde_json::Value as Json;

use super::reader::{DecodeError, DecodeErrorKind, MAX_DEPTH, Reader, write_long};
use super::schema::{Logical, Node, NodeId, Schema};

type OpId = u32;

#[derive(Debug, Clone)]
enum Op {
    Null,
    Bool,
    /// int or long (same varint encoding), re-encoded minimally.
    Long,
    /// A long whose value is scaled (time/timestamp unit conversion): `v * mul / div`.
    LongScaled {
        mul: i64,
        div: i64,
    },
    Float,
    Double,
    IntOrLongToFloat,
    IntOrLongToDouble,
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
        let identity = writer.describe(w) == reader.describe(r);
        let mut c = Compiler {
            writer,
            reader,
            ops: Vec::new(),
            memo: HashMap::new(),
        };
        let root = c.compile(w, r);
        let flat = SkipProgram::compile(writer, w);
        let one_varint = match flat.0[..] {
            [SkipStep::P(Prim::Long)] if identity => Some(10),
            [SkipStep::P(Prim::Int)] if identity => Some(4),
            _ => None,
        };
        Plan {
            ops: c.ops,
            root,
            identity,
            flat,
            one_varint,
        }
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
            Op::Long => write_long(out, r.read_long()?),
            Op::LongScaled { mul, div } => {
                let v = r.read_long()?;
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
            Op::IntOrLongToFloat => {
                out.extend_from_slice(&canonical_f32(r.read_long()? as f32).to_le_bytes())
            }
            Op::IntOrLongToDouble => {
                out.extend_from_slice(&canonical_f64(r.read_long()? as f64).to_le_bytes())
            }
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
                        let n = r.read_block_count()?;
                        if n == 0 {
                            break;
                        }
                        for _ in 0..n {
                            let before = r.pos();
                            self.run(writer, *item, r, &mut items, pool, depth + 1)?;
                            zero_width_guard(r, before, n)?;
                            count += 1;
                        }
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
                        let n = r.read_block_count()?;
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
            Op::Fail(why) => return Err(r.err(DecodeErrorKind::Unresolvable(why.clone()))),
        }
        Ok(())
    }
}

/// All NaNs hash as one, and so do +0 and -0: equal values, equal canonical bytes.
#[inline]
fn canonical_f32(f: f32) -> f32 {
    if f.is_nan() {
        f32::NAN
    } else if f == 0.0 {
        0.0
    } else {
        f
    }
}

#[inline]
fn canonical_f64(f: f64) -> f64 {
    if f.is_nan() {
        f64::NAN
    } else if f == 0.0 {
        0.0
    } else {
        f
    }
}

/// A float whose bytes are not its canonical form (another NaN, or -0).
#[inline]
pub(crate) fn non_canonical_f32(b: &[u8]) -> bool {
    let f = f32::from_le_bytes(b.try_into().expect("4 bytes"));
    (f.is_nan() || f == 0.0) && f.to_bits() != canonical_f32(f).to_bits()
}

#[inline]
pub(crate) fn non_canonical_f64(b: &[u8]) -> bool {
    let f = f64::from_le_bytes(b.try_into().expect("8 bytes"));
    (f.is_nan() || f == 0.0) && f.to_bits() != canonical_f64(f).to_bits()
}

fn decimal_value(raw: &[u8]) -> Option<i128> {
    if raw.is_empty() {
        return Some(0);
    }
    let significant = minimal_twos_complement(raw);
    if significant.len() > 16 {
        return None;
    }
    let fill = if raw[0] & 0x80 != 0 { 0xff } else { 0 };
    let mut be = [fill; 16];
    be[16 - significant.len()..].copy_from_slice(significant);
    Some(i128::from_be_bytes(be))
}

/// The shortest two's-complement big-endian form of the same value.
fn minimal_twos_complement(b: &[u8]) -> &[u8] {
    let mut i = 0;
    while i + 1 < b.len()
        && ((b[i] == 0 && b[i + 1] & 0x80 == 0) || (b[i] == 0xff && b[i + 1] & 0x80 != 0))
    {
        i += 1;
    }
    &b[i..]
}

/// Whether a decimal's two's-complement bytes are not its shortest form (or empty).
#[inline(always)]
pub(crate) fn decimal_not_minimal(b: &[u8]) -> bool {
    match b {
        [] => true,
        [a, b, ..] => only_sign(*a, *b),
        [_] => false,
    }
}

/// Whether the first byte of a two's-complement number only repeats the sign of the second
/// (and could be dropped).
#[inline(always)]
pub(crate) fn only_sign(first: u8, second: u8) -> bool {
    first == ((second as i8) >> 7) as u8
}

/// A value of a primitive type, walked without the schema tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prim {
    Null,
    Bool,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    Str,
    Decimal,
    Fixed(u32),
    Enum(u32),
}

/// One step of a flat skip program: a primitive, a nullable primitive (`["null", T]` in
/// either order), or anything else through the schema tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipStep {
    P(Prim),
    Opt { null_index: u8, p: Prim },
    Node(NodeId),
}

fn prim_of(schema: &Schema, node: NodeId) -> Option<Prim> {
    Some(match schema.node(node) {
        Node::Null => Prim::Null,
        Node::Boolean => Prim::Bool,
        Node::Int(_) => Prim::Int,
        Node::Long(_) => Prim::Long,
        Node::Float => Prim::Float,
        Node::Double => Prim::Double,
        Node::Bytes(Logical::Decimal { .. }) => Prim::Decimal,
        Node::Bytes(_) => Prim::Bytes,
        Node::String(_) => Prim::Str,
        Node::Fixed { size, .. } => Prim::Fixed(*size as u32),
        Node::Enum { symbols, .. } => Prim::Enum(symbols.len() as u32),
        _ => return None,
    })
}

impl SkipStep {
    pub fn compile(schema: &Schema, node: NodeId) -> SkipStep {
        if let Some(p) = prim_of(schema, node) {
            return SkipStep::P(p);
        }
        if let Node::Union(b) = schema.node(node)
            && b.len() == 2
        {
            for (null_index, other) in [(0u8, b[1]), (1u8, b[0])] {
                if matches!(schema.node(b[null_index as usize]), Node::Null)
                    && let Some(p) = prim_of(schema, other)
                {
                    return SkipStep::Opt { null_index, p };
                }
            }
        }
        SkipStep::Node(node)
    }

    #[inline(always)]
    pub fn run(&self, schema: &Schema, r: &mut Reader<'_>, check: bool) -> Result<(), DecodeError> {
        match *self {
            SkipStep::P(p) => skip_prim(p, r, check),
            SkipStep::Opt { null_index, p } => {
                let at = r.pos();
                match r.read_long()? {
                    i if i == null_index as i64 => Ok(()),
                    i if i == 1 - null_index as i64 => skip_prim(p, r, check),
                    i => Err(DecodeError {
                        kind: DecodeErrorKind::UnionIndex {
                            index: i,
                            branches: 2,
                        },
                        offset: at,
                    }),
                }
            }
            SkipStep::Node(n) => skip(schema, n, r, 1, check),
        }
    }
}

#[inline(always)]
fn skip_prim(p: Prim, r: &mut Reader<'_>, check: bool) -> Result<(), DecodeError> {
    match p {
        Prim::Null => {}
        Prim::Bool => {
            r.read_bool()?;
        }
        Prim::Int => {
            r.read_int()?;
        }
        Prim::Long => {
            r.read_long()?;
        }
        Prim::Float => {
            let b = r.read_fixed(4)?;
            r.non_minimal |= check && non_canonical_f32(b);
        }
        Prim::Double => {
            let b = r.read_fixed(8)?;
            r.non_minimal |= check && non_canonical_f64(b);
        }
        Prim::Bytes => {
            r.read_bytes()?;
        }
        Prim::Str if check => {
            r.read_str()?;
        }
        // Outside the row images (envelope metadata) text is not hashed: its bytes suffice.
        Prim::Str => {
            r.read_bytes()?;
        }
        Prim::Decimal => {
            let b = r.read_bytes()?;
            if check && (b.is_empty() || minimal_twos_complement(b).len() != b.len()) {
                r.non_minimal = true;
            }
        }
        Prim::Fixed(n) => {
            r.read_fixed(n as usize)?;
        }
        Prim::Enum(n) => {
            let at = r.pos();
            let i = r.read_long()?;
            if i < 0 || i >= n as i64 {
                return Err(DecodeError {
                    kind: DecodeErrorKind::EnumIndex {
                        index: i,
                        symbols: n as usize,
                    },
                    offset: at,
                });
            }
        }
    }
    Ok(())
}

/// The writer's row as a flat list of steps (its fields, if it is a record).
#[derive(Debug, Clone)]
struct SkipProgram(Vec<SkipStep>);

impl SkipProgram {
    fn compile(schema: &Schema, node: NodeId) -> SkipProgram {
        match schema.node(node) {
            Node::Record { fields, .. } => SkipProgram(
                fields
                    .iter()
                    .map(|f| SkipStep::compile(schema, f.node))
                    .collect(),
            ),
            _ => SkipProgram(vec![SkipStep::compile(schema, node)]),
        }
    }

    #[inline]
    fn run(&self, schema: &Schema, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        run_steps(&self.0, schema, r, true)
    }
}

/// Walks `steps` over the reader: first by the fast path, and when that cannot finish
/// (a nested type, or bad input) again by the checked path, which names the error.
#[inline(always)]
pub fn run_steps(
    steps: &[SkipStep],
    schema: &Schema,
    r: &mut Reader<'_>,
    check: bool,
) -> Result<(), DecodeError> {
    if let Some((end, non_minimal)) = fast_skip(steps, r.input(), r.pos(), check) {
        r.advance_to(end);
        r.non_minimal |= non_minimal;
        return Ok(());
    }
    for step in steps {
        step.run(schema, r, check)?;
    }
    Ok(())
}

/// Whether `d` is exactly one varint of at most `max` bytes, in canonical form: every byte
/// but the last has its high bit set, and the last is not a zero after others (a ten-byte
/// varint's last byte holds one bit).
#[inline(always)]
fn one_minimal_varint(d: &[u8], max: usize) -> bool {
    let Some((&last, init)) = d.split_last() else {
        return false;
    };
    d.len() <= max
        && last & 0x80 == 0
        && (init.is_empty() || last != 0)
        && (d.len() < 10 || last == 1)
        && init.iter().all(|b| b & 0x80 != 0)
}

/// A varint's raw (zigzag) value, its end, and whether it was longer than needed.
#[inline(always)]
pub(crate) fn fast_varint(buf: &[u8], mut pos: usize) -> Option<(u64, usize, bool)> {
    let mut value = 0u64;
    let mut shift = 0u32;
    loop {
        let b = *buf.get(pos)?;
        pos += 1;
        value |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            if shift == 63 && b > 1 {
                return None;
            }
            return Some((value, pos, b == 0 && shift > 0));
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// The end of a varint whose value is not needed, and whether it was longer than needed:
/// one 8-byte load finds the terminating byte of any varint up to 8 bytes.
#[inline(always)]
pub(crate) fn varint_end(buf: &[u8], pos: usize) -> Option<(usize, bool)> {
    if let Some(bytes) = buf.get(pos..pos + 8) {
        let w = u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        // A one-byte varint: its end does not wait for the byte's value (the branch is
        // predicted per field).
        if w & 0x80 == 0 {
            return Some((pos + 1, false));
        }
        let stops = !w & 0x8080_8080_8080_8080;
        if stops != 0 {
            let len = (stops.trailing_zeros() / 8 + 1) as usize;
            let last = (w >> ((len - 1) * 8)) as u8;
            return Some((pos + len, len > 1 && last == 0));
        }
    }
    fast_varint(buf, pos).map(|(_, end, nm)| (end, nm))
}

/// A length prefix (non-negative), its end, and whether it was longer than needed.
#[inline(always)]
fn length(buf: &[u8], pos: usize) -> Option<(usize, usize, bool)> {
    let b = *buf.get(pos)?;
    if b & 0x80 == 0 {
        return if b & 1 == 0 {
            Some(((b >> 1) as usize, pos + 1, false))
        } else {
            None
        };
    }
    let (raw, end, nm) = fast_varint(buf, pos)?;
    if raw & 1 == 1 {
        return None;
    }
    Some(((raw >> 1) as usize, end, nm))
}

/// Skips primitive and nullable-primitive steps without building errors; `None` means "use
/// the checked path" (a nested type, or input that is not valid).
#[inline]
pub(crate) fn fast_skip(
    steps: &[SkipStep],
    buf: &[u8],
    mut pos: usize,
    check: bool,
) -> Option<(usize, bool)> {
    let mut non_minimal = false;
    for step in steps {
        let p = match *step {
            SkipStep::P(p) => p,
            SkipStep::Opt { null_index, p } => {
                // The branch index of a two-branch union is one byte: 0 or 2 (zigzag 0, 1).
                let b = *buf.get(pos)?;
                pos += 1;
                match (b, null_index) {
                    (0, 0) | (2, 1) => continue,
                    (0, 1) | (2, 0) => p,
                    _ => return None,
                }
            }
            SkipStep::Node(_) => return None,
        };
        match p {
            Prim::Null => {}
            Prim::Long => {
                let (end, nm) = varint_end(buf, pos)?;
                pos = end;
                non_minimal |= nm;
            }
            Prim::Int => {
                let (end, nm) = varint_end(buf, pos)?;
                if end - pos >= 5 {
                    // Could be out of the int range: let the checked path judge.
                    let (raw, _, _) = fast_varint(buf, pos)?;
                    let v = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
                    i32::try_from(v).ok()?;
                }
                pos = end;
                non_minimal |= nm;
            }
            Prim::Enum(n) => {
                let (raw, end, nm) = fast_varint(buf, pos)?;
                let v = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
                if v < 0 || v >= n as i64 {
                    return None;
                }
                pos = end;
                non_minimal |= nm;
            }
            Prim::Bool => {
                if *buf.get(pos)? > 1 {
                    return None;
                }
                pos += 1;
            }
            Prim::Float => {
                non_minimal |= check && non_canonical_f32(buf.get(pos..pos + 4)?);
                pos += 4;
            }
            Prim::Double => {
                non_minimal |= check && non_canonical_f64(buf.get(pos..pos + 8)?);
                pos += 8;
            }
            Prim::Bytes | Prim::Str | Prim::Decimal => {
                let (len, end, nm) = length(buf, pos)?;
                let data = buf.get(end..end.checked_add(len)?)?;
                non_minimal |= nm;
                if check {
                    match p {
                        Prim::Str if !data.is_ascii() && std::str::from_utf8(data).is_err() => {
                            return None;
                        }
                        Prim::Decimal => non_minimal |= decimal_not_minimal(data),
                        _ => {}
                    }
                }
                pos = end + len;
            }
            Prim::Fixed(n) => {
                buf.get(pos..pos + n as usize)?;
                pos += n as usize;
            }
        }
    }
    Some((pos, non_minimal))
}

/// Items that take no bytes (nulls, empty records) are the one way a tiny input could claim
/// an enormous amount of work; a block of more of them than this is refused.
const MAX_ZERO_WIDTH_ITEMS: usize = 1 << 16;

#[inline]
fn zero_width_guard(r: &Reader<'_>, before: usize, n: usize) -> Result<(), DecodeError> {
    if r.pos() == before && n > MAX_ZERO_WIDTH_ITEMS {
        return Err(DecodeError {
            kind: DecodeErrorKind::LengthBeyondInput {
                length: n as u64,
                remaining: r.remaining(),
            },
            offset: before,
        });
    }
    Ok(())
}

/// Walks one value without decoding it. With `check`, flags bytes that are not in canonical
/// form (non-minimal decimals; varints are flagged by the reader itself).
pub fn skip(
    schema: &Schema,
    node: NodeId,
    r: &mut Reader<'_>,
    depth: usize,
    check: bool,
) -> Result<(), DecodeError> {
    if depth > MAX_DEPTH {
        return Err(r.err(DecodeErrorKind::TooDeep));
    }
    if let Some(p) = prim_of(schema, node) {
        return skip_prim(p, r, check);
    }
    match schema.node(node) {
        Node::Array(item) => {
            let mut blocks = 0;
            loop {
                let n = r.read_block_count()?;
                if n == 0 {
                    break;
                }
                blocks += 1;
                for _ in 0..n {
                    let before = r.pos();
                    skip(schema, *item, r, depth + 1, check)?;
                    zero_width_guard(r, before, n)?;
                }
            }
            if blocks > 1 {
                r.non_minimal = true;
            }
        }
        Node::Map(value) => {
            let mut blocks = 0;
            loop {
                let n = r.read_block_count()?;
                if n == 0 {
                    break;
                }
                blocks += 1;
                for _ in 0..n {
                    r.read_str()?;
                    skip(schema, *value, r, depth + 1, check)?;
                }
            }
            if blocks > 1 {
                r.non_minimal = true;
            }
        }
        Node::Record { fields, .. } => {
            for f in fields {
                skip(schema, f.node, r, depth + 1, check)?;
            }
        }
        Node::Union(branches) => {
            let at = r.pos();
            let i = r.read_long()?;
            match usize::try_from(i).ok().and_then(|i| branches.get(i)) {
                Some(b) => skip(schema, *b, r, depth + 1, check)?,
                None => {
                    return Err(DecodeError {
                        kind: DecodeErrorKind::UnionIndex {
                            index: i,
                            branches: branches.len(),
                        },
                        offset: at,
                    });
                }
            }
        }
        // Primitives, enums and fixed were walked by `skip_prim` above.
        Node::Null
        | Node::Boolean
        | Node::Int(_)
        | Node::Long(_)
        | Node::Float
        | Node::Double
        | Node::Bytes(_)
        | Node::String(_)
        | Node::Fixed { .. }
        | Node::Enum { .. } => {}
    }
    Ok(())
}

struct Compiler<'s> {
    writer: &'s Schema,
    reader: &'s Schema,
    ops: Vec<Op>,
    memo: HashMap<(NodeId, NodeId), OpId>,
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Match {
    Exact,
    Promotable,
    No,
}

impl Compiler<'_> {
    fn push(&mut self, op: Op) -> OpId {
        self.ops.push(op);
        (self.ops.len() - 1) as OpId
    }

    fn compile(&mut self, w: NodeId, r: NodeId) -> OpId {
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
                match time_scale(*a, *b) {
                    Some((1, 1)) | None => Op::Long,
                    Some((mul, div)) => Op::LongScaled { mul, div },
                }
            }
            (Int(_) | Long(_), Float) => Op::IntOrLongToFloat,
            (Int(_) | Long(_), Double) => Op::IntOrLongToDouble,
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
            (Record { fields: wf, .. }, Record { fields: rf, .. }) => {
                let mut fields = Vec::with_capacity(wf.len());
                let mut last = None;
                let mut in_order = true;
                for f in wf {
                    match rf.iter().position(|g| g.name == f.name) {
                        Some(j) => {
                            if last.is_some_and(|l| j <= l) {
                                in_order = false;
                            }
                            last = Some(j);
                            let op = self.compile(f.node, rf[j].node);
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
                    let mut bytes = Vec::new();
                    match g
                        .default
                        .as_ref()
                        .map(|d| encode_default(self.reader, g.node, d, &mut bytes, 0))
                    {
                        Some(Ok(())) => defaults.push((j as u32, bytes)),
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
            _ => Op::Fail(format!(
                "writer type {} cannot be read as {}",
                self.writer.describe(w),
                self.reader.describe(r)
            )),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(writer: &str, reader: &str, datum: &[u8]) -> Result<Vec<u8>, DecodeError> {
        let w = Schema::parse_str(writer).unwrap();
        let r = Schema::parse_str(reader).unwrap();
        let plan = Plan::compile(&w, w.root(), &r, r.root());
        let mut scratch = Scratch::default();
        let mut rd = Reader::new(datum);
        let out = plan.canonical(&w, &mut rd, &mut scratch)?.bytes().to_vec();
        rd.finish()?;
        Ok(out)
    }

    fn enc_long(v: i64) -> Vec<u8> {
        let mut b = Vec::new();
        write_long(&mut b, v);
        b
    }

    #[test]
    fn identity_returns_the_input_slice() {
        let s = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"s","type":"string"}]}"#;
        let mut d = enc_long(300);
        d.extend(enc_long(2));
        d.extend(b"hi");
        assert_eq!(canon(s, s, &d).unwrap(), d);
    }

    #[test]
    fn non_minimal_varint_is_canonicalized() {
        let s = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"long"}]}"#;
        assert_eq!(canon(s, s, &[0x82, 0x00]).unwrap(), vec![0x02]);
    }

    #[test]
    fn promotions_give_the_readers_encoding() {
        let int = r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#;
        let long = int.replace("\"int\"", "\"long\"");
        let float = int.replace("\"int\"", "\"float\"");
        let double = int.replace("\"int\"", "\"double\"");
        assert_eq!(canon(int, &long, &enc_long(-7)).unwrap(), enc_long(-7));
        assert_eq!(
            canon(int, &float, &enc_long(3)).unwrap(),
            3.0f32.to_le_bytes()
        );
        assert_eq!(
            canon(int, &double, &enc_long(3)).unwrap(),
            3.0f64.to_le_bytes()
        );
        assert_eq!(
            canon(&float, &double, &1.5f32.to_le_bytes()).unwrap(),
            1.5f64.to_le_bytes()
        );
        let st = int.replace("\"int\"", "\"string\"");
        let by = int.replace("\"int\"", "\"bytes\"");
        assert_eq!(
            canon(&st, &by, &[0x04, b'h', b'i']).unwrap(),
            vec![0x04, b'h', b'i']
        );
        assert!(
            canon(&long, int, &enc_long(1)).is_err(),
            "long is not readable as int"
        );
    }

    #[test]
    fn missing_field_takes_the_default_and_extra_field_is_skipped() {
        let v1 = r#"{"type":"record","name":"V","fields":[{"name":"id","type":"long"},{"name":"gone","type":"string"}]}"#;
        let v2 = r#"{"type":"record","name":"V","fields":[{"name":"id","type":"long"},{"name":"currency","type":"string","default":"USD"}]}"#;
        let mut d = enc_long(5);
        d.extend([0x02, b'x']);
        let mut want = enc_long(5);
        want.extend([0x06, b'U', b'S', b'D']);
        assert_eq!(canon(v1, v2, &d).unwrap(), want);
    }

    #[test]
    fn reordered_fields_are_emitted_in_reader_order() {
        let w = r#"{"type":"record","name":"V","fields":[{"name":"b","type":"long"},{"name":"a","type":"long"}]}"#;
        let r = r#"{"type":"record","name":"V","fields":[{"name":"a","type":"long"},{"name":"b","type":"long"}]}"#;
        let mut d = enc_long(1);
        d.extend(enc_long(2));
        let mut want = enc_long(2);
        want.extend(enc_long(1));
        assert_eq!(canon(w, r, &d).unwrap(), want);
    }

    #[test]
    fn unions_match_by_type_not_index() {
        let w = r#"{"type":"record","name":"V","fields":[{"name":"x","type":["null","long","string"]}]}"#;
        let r = r#"{"type":"record","name":"V","fields":[{"name":"x","type":["string","null","long"]}]}"#;
        // writer branch 1 (long 7) -> reader branch 2
        let mut d = enc_long(1);
        d.extend(enc_long(7));
        let mut want = enc_long(2);
        want.extend(enc_long(7));
        assert_eq!(canon(w, r, &d).unwrap(), want);
        // writer plain long into reader ["null","long"]
        let w2 = r#"{"type":"record","name":"V","fields":[{"name":"x","type":"long"}]}"#;
        let r2 = r#"{"type":"record","name":"V","fields":[{"name":"x","type":["null","long"]}]}"#;
        let mut want2 = enc_long(1);
        want2.extend(enc_long(7));
        assert_eq!(canon(w2, r2, &enc_long(7)).unwrap(), want2);
    }

    #[test]
    fn enums_match_by_symbol() {
        let w = r#"{"type":"enum","name":"E","symbols":["A","B","C"]}"#;
        let r = r#"{"type":"enum","name":"E","symbols":["C","B","A","D"]}"#;
        assert_eq!(canon(w, r, &enc_long(0)).unwrap(), enc_long(2));
        let r_no_c = r#"{"type":"enum","name":"E","symbols":["A","B"],"default":"B"}"#;
        assert_eq!(canon(w, r_no_c, &enc_long(2)).unwrap(), enc_long(1));
        assert!(canon(w, w, &enc_long(3)).is_err());
    }

    #[test]
    fn decimals_compare_by_value() {
        let d2 = r#"{"type":"bytes","logicalType":"decimal","precision":10,"scale":2}"#;
        let d4 = r#"{"type":"bytes","logicalType":"decimal","precision":12,"scale":4}"#;
        let fx = r#"{"type":"fixed","name":"F","size":8,"logicalType":"decimal","precision":10,"scale":2}"#;
        // 12.34 at scale 2 = 1234 = 0x04D2; sign-extended form 0x00 0x04 0xD2 is the same value
        assert_eq!(
            canon(d2, d2, &[0x04, 0x04, 0xD2]).unwrap(),
            vec![0x04, 0x04, 0xD2]
        );
        assert_eq!(
            canon(d2, d2, &[0x06, 0x00, 0x04, 0xD2]).unwrap(),
            vec![0x04, 0x04, 0xD2]
        );
        // rescaled to scale 4: 123400 = 0x01E208
        assert_eq!(
            canon(d2, d4, &[0x04, 0x04, 0xD2]).unwrap(),
            vec![0x06, 0x01, 0xE2, 0x08]
        );
        // fixed writer, bytes reader; negative value -1 sign-extended
        assert_eq!(canon(fx, d2, &[0xff; 8]).unwrap(), vec![0x02, 0xff]);
        assert!(canon(d4, d2, &[0x02, 0x01]).is_err(), "scale cannot shrink");
    }

    #[test]
    fn timestamps_compare_by_value() {
        let ms = r#"{"type":"long","logicalType":"timestamp-millis"}"#;
        let us = r#"{"type":"long","logicalType":"timestamp-micros"}"#;
        assert_eq!(
            canon(ms, us, &enc_long(1_723_650_300_000)).unwrap(),
            enc_long(1_723_650_300_000_000)
        );
        assert_eq!(
            canon(us, ms, &enc_long(1_723_650_300_000_999)).unwrap(),
            enc_long(1_723_650_300_000)
        );
        let date = r#"{"type":"int","logicalType":"date"}"#;
        assert_eq!(
            canon(date, date, &enc_long(19949)).unwrap(),
            enc_long(19949)
        );
        let uuid = r#"{"type":"string","logicalType":"uuid"}"#;
        let u = b"\x48123e4567-e89b-12d3-a456-426614174000";
        assert_eq!(canon(uuid, uuid, u).unwrap(), u.to_vec());
        let tm = r#"{"type":"int","logicalType":"time-millis"}"#;
        let tu = r#"{"type":"long","logicalType":"time-micros"}"#;
        assert_eq!(canon(tm, tu, &enc_long(1000)).unwrap(), enc_long(1_000_000));
    }

    #[test]
    fn arrays_and_maps_collapse_blocks() {
        let a = r#"{"type":"array","items":"long"}"#;
        // two blocks [1],[2] vs one block [1,2]
        let two = [0x02, 0x02, 0x02, 0x04, 0x00];
        let one = [0x04, 0x02, 0x04, 0x00];
        assert_eq!(canon(a, a, &two).unwrap(), one.to_vec());
        assert_eq!(canon(a, a, &one).unwrap(), one.to_vec());
        // negative count with byte size
        let neg = [0x03, 0x04, 0x02, 0x04, 0x00];
        assert_eq!(canon(a, a, &neg).unwrap(), one.to_vec());
        let m = r#"{"type":"map","values":"int"}"#;
        let mm = [0x02, 0x02, b'k', 0x06, 0x00];
        assert_eq!(canon(m, m, &mm).unwrap(), mm.to_vec());
    }

    #[test]
    fn bad_input_is_a_typed_error() {
        let s = r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"},{"name":"u","type":["null","long"]}]}"#;
        assert!(matches!(
            canon(s, s, &[0x08, b'a']).unwrap_err().kind,
            DecodeErrorKind::LengthBeyondInput { .. }
        ));
        assert!(matches!(
            canon(s, s, &[0x02, 0xff, 0x00]).unwrap_err().kind,
            DecodeErrorKind::InvalidUtf8
        ));
        assert!(matches!(
            canon(s, s, &[0x00, 0x06]).unwrap_err().kind,
            DecodeErrorKind::UnionIndex {
                index: 3,
                branches: 2
            }
        ));
        assert!(matches!(
            canon(s, s, &[0x00, 0x00, 0x00]).unwrap_err().kind,
            DecodeErrorKind::TrailingBytes(1)
        ));
    }

    #[test]
    fn a_huge_block_of_nulls_is_refused_not_looped() {
        let a = r#"{"type":"array","items":"null"}"#;
        let mut d = enc_long(i64::MAX / 2);
        d.push(0);
        assert!(matches!(
            canon(a, a, &d).unwrap_err().kind,
            DecodeErrorKind::LengthBeyondInput { .. }
        ));
        let small = [0x06, 0x00];
        assert_eq!(canon(a, a, &small).unwrap(), small.to_vec());
    }

    #[test]
    fn wide_decimals_keep_their_bytes() {
        let d = r#"{"type":"bytes","logicalType":"decimal","precision":60,"scale":2}"#;
        let mut wide = vec![0x22u8];
        wide.extend([0x7fu8; 17]);
        assert_eq!(canon(d, d, &wide).unwrap(), wide);
        let mut padded = vec![0x24u8, 0x00];
        padded.extend([0x7fu8; 17]);
        assert_eq!(canon(d, d, &padded).unwrap(), wide);
    }

    #[test]
    fn deep_recursion_is_bounded() {
        let s = r#"{"type":"record","name":"N","fields":[{"name":"next","type":["null","N"]}]}"#;
        let mut d = vec![0x02u8; 1000];
        d.push(0);
        assert_eq!(canon(s, s, &d).unwrap_err().kind, DecodeErrorKind::TooDeep);
    }

    /// A key of one number is taken as it is exactly when the walk would take it so: the
    /// same bytes, the same position after, the same errors (of the walk, which it leaves
    /// them to), on every short input.
    #[test]
    fn a_key_of_one_number_reads_as_the_walk_reads_it() {
        let schemas = [
            r#"{"type":"record","name":"K","fields":[{"name":"id","type":"long"}]}"#,
            r#"{"type":"record","name":"K","fields":[{"name":"id","type":"int"}]}"#,
            r#""long""#,
        ];
        let bytes = [0x00u8, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xff, 0xfe];
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
        let mut taken = 0;
        for text in schemas {
            let schema = Schema::parse_str(text).unwrap();
            let plan = Plan::compile(&schema, schema.root(), &schema, schema.root());
            assert!(plan.one_varint.is_some());
            let walk = Plan {
                one_varint: None,
                ..Plan::compile(&schema, schema.root(), &schema, schema.root())
            };
            for _ in 0..100_000 {
                let x = next();
                let d: Vec<u8> = (0..(x % 13) as usize)
                    .map(|i| bytes[((x >> (4 + 3 * i)) % 8) as usize])
                    .collect();
                let (mut s1, mut s2) = (Scratch::default(), Scratch::default());
                let (mut r1, mut r2) = (Reader::new(&d), Reader::new(&d));
                let fast = plan
                    .canonical(&schema, &mut r1, &mut s1)
                    .map(|c| (c.bytes().to_vec(), matches!(c, Canon::Input(_))));
                let slow = walk
                    .canonical(&schema, &mut r2, &mut s2)
                    .map(|c| (c.bytes().to_vec(), matches!(c, Canon::Input(_))));
                assert_eq!(fast, slow, "{text} {d:?}");
                assert_eq!(
                    (r1.pos(), r1.non_minimal),
                    (r2.pos(), r2.non_minimal),
                    "{text} {d:?}"
                );
                taken += (fast.is_ok() && r1.pos() == d.len()) as usize;
            }
        }
        assert!(taken > 10_000, "{taken}");
    }
}
