//! Debezium envelopes: `before`, `after`, `op`, `ts_ms`, `source{…}`, `transaction{…}`.
//!
//! An [`EnvelopeLayout`] is compiled once per writer schema id. Decoding walks the datum once:
//! row images are hashed in place through a [`Plan`] (no copy when the writer's row schema is
//! the reference), the origin position and commit time are read from `source`, and the
//! datum must end exactly where the schema says.

use crate::avro::reader::DecodeError;
use crate::avro::resolve::{Plan, Scratch};
use crate::avro::schema::{NodeId, Schema};
use crate::digest::{Op, RowHasher};

mod fast;
mod fields;
mod general;
mod raw;
mod tail;
#[cfg(test)]
mod tests;

use fast::FastEnvelope;
use general::GeneralWalk;
pub use tail::Hint;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PositionField {
    /// `source.gtid` = `<server-uuid>:<sequence>` (MySQL/MariaDB GTID replication).
    Gtid,
    /// `source.lsn` (PostgreSQL).
    Lsn,
    /// Any other integer (or `…:<n>` string) field of `source`.
    Field(String),
}

/// A position field that cannot name a `source` field (Avro names are
/// `[A-Za-z_][A-Za-z0-9_]*`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected \"gtid\", \"lsn\" or the name of a `source` field, got {0:?}")]
pub struct BadPositionField(pub String);

impl std::str::FromStr for PositionField {
    type Err = BadPositionField;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut chars = s.chars();
        let is_name = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        Ok(match s {
            "gtid" => PositionField::Gtid,
            "lsn" => PositionField::Lsn,
            _ if is_name => PositionField::Field(s.to_string()),
            _ => return Err(BadPositionField(s.to_string())),
        })
    }
}

impl std::fmt::Display for PositionField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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
    #[error("`source` has no position field `{wanted}` (its fields: {})", available.join(", "))]
    NoPositionField {
        wanted: String,
        available: Vec<String>,
    },
    #[error("`before` and `after` are not the same row record")]
    RowMismatch,
}

/// How to walk one writer's envelope.
#[derive(Debug, Clone)]
pub struct EnvelopeLayout {
    general: GeneralWalk,
    /// The writer's row record (the non-null branch of `after`).
    pub row: NodeId,
    /// The flat walk for well-formed input in canonical form, when the schema has one.
    fast: Option<FastEnvelope>,
}

/// What one writer's envelopes are decoded with: the writer's schema, the plan from its row
/// schema to the reference one, and the table's row hasher.
#[derive(Clone, Copy)]
pub struct DecodeWith<'a> {
    pub schema: &'a Schema,
    pub plan: &'a Plan,
    pub rows: &'a RowHasher,
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
    /// Byte range in the datum of a position given as a string (a GTID), whose origin (a
    /// server uuid or MariaDB domain, see [`crate::origins`]) the engine places it by;
    /// `position.tx` is the number it ends in.
    pub origin: Option<(u32, u32)>,
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
        origin: None,
    };
}

impl EnvelopeLayout {
    pub fn compile(
        schema: &Schema,
        position: &PositionField,
    ) -> Result<EnvelopeLayout, LayoutError> {
        let (general, row) = GeneralWalk::compile(schema, position)?;
        let fast = FastEnvelope::compile(schema, position.name());
        Ok(EnvelopeLayout { general, row, fast })
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
        let with = DecodeWith { schema, plan, rows };
        self.decode_into(with, datum, scratch, None, &mut ev)?;
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
        let with = DecodeWith { schema, plan, rows };
        self.decode_into(with, datum, scratch, Some(hint), &mut ev)?;
        Ok(ev)
    }

    /// [`decode_hinted`](Self::decode_hinted) into `ev`, which the caller keeps: the event is
    /// not copied out through the result (it is over a hundred bytes). On an error, `ev`
    /// is no event.
    #[inline]
    pub fn decode_with(
        &self,
        with: DecodeWith<'_>,
        datum: &[u8],
        scratch: &mut Scratch,
        hint: &mut Hint,
        ev: &mut Event,
    ) -> Result<(), DecodeError> {
        self.decode_into(with, datum, scratch, Some(hint), ev)
    }

    /// The flat walk when the writer's row schema is the reference and it decides, else the
    /// general walk.
    #[inline(always)]
    fn decode_into(
        &self,
        with: DecodeWith<'_>,
        datum: &[u8],
        scratch: &mut Scratch,
        hint: Option<&mut Hint>,
        ev: &mut Event,
    ) -> Result<(), DecodeError> {
        let DecodeWith { schema, plan, rows } = with;
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
        self.general.decode(schema, plan, rows, datum, scratch)
    }
}
