//! Walking a value without decoding it: flat programs of primitive steps (the fast path that
//! declines what it cannot judge), and the checked walk through the schema tree that names
//! what is wrong.

use super::canonical::{
    decimal_not_minimal, minimal_twos_complement, non_canonical_f32, non_canonical_f64,
};
use crate::avro::reader::{DecodeError, DecodeErrorKind, MAX_DEPTH, Reader};
use crate::avro::schema::{Logical, Node, NodeId, Schema};

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

pub(super) fn prim_of(schema: &Schema, node: NodeId) -> Option<Prim> {
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
pub(super) struct SkipProgram(pub(super) Vec<SkipStep>);

impl SkipProgram {
    pub(super) fn compile(schema: &Schema, node: NodeId) -> SkipProgram {
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
    pub(super) fn run(&self, schema: &Schema, r: &mut Reader<'_>) -> Result<(), DecodeError> {
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
pub(super) fn one_minimal_varint(d: &[u8], max: usize) -> bool {
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
pub(super) fn zero_width_guard(r: &Reader<'_>, before: usize, n: usize) -> Result<(), DecodeError> {
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
                let (n, sized) = r.read_block()?;
                if n == 0 {
                    break;
                }
                blocks += 1;
                for _ in 0..n {
                    let before = r.pos();
                    skip(schema, *item, r, depth + 1, check)?;
                    zero_width_guard(r, before, n)?;
                }
                r.block_done(sized)?;
            }
            if blocks > 1 {
                r.non_minimal = true;
            }
        }
        Node::Map(value) => {
            let mut blocks = 0;
            loop {
                let (n, sized) = r.read_block()?;
                if n == 0 {
                    break;
                }
                blocks += 1;
                for _ in 0..n {
                    r.read_str()?;
                    skip(schema, *value, r, depth + 1, check)?;
                }
                r.block_done(sized)?;
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
