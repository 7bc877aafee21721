//! Decoding: a record's bytes in, what the engine verifies out. Each input format is one
//! implementation of [`Decoder`]; the engine receives [`Decoded`] events and never reads bytes
//! of a particular encoding.
//!
//! - [`confluent_avro`]: Debezium envelopes in Avro, framed in the Confluent wire format,
//!   their schemas fetched from a registry.

pub mod confluent_avro;

pub use confluent_avro::{ConfluentAvro, Poison};

use crate::avro::FieldDiff;
use crate::digest::RowHasher;
use crate::engine::{TableId, TopicId};
use crate::envelope::{Event, Position};
use crate::origins::{Epoch, Origins};

/// The schema source could not answer now: pause this partition and retry the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema id {id} cannot be fetched now: {reason}")]
pub struct SchemaUnavailable {
    pub id: u32,
    pub reason: String,
}

/// Where a record stands in the verification: what decoding it needs beyond its bytes.
pub struct At<'a> {
    pub topic: TopicId,
    pub partition: u32,
    pub table: TableId,
    /// What hashes the table's rows.
    pub rows: &'a RowHasher,
    /// What seeds the hashes of the table's keys.
    pub seed: u64,
    pub role: Role<'a>,
}

/// Which schema a stream's rows are read with: images compare across streams only when read
/// with the same one.
#[derive(Clone, Copy)]
pub enum Role<'a> {
    /// The primary's events are read with the schema they were written with.
    Primary,
    /// A replica's are read with the schema the primary wrote the table with at the event's
    /// position — known only up to the primary's watermark, `passed`.
    Replica {
        /// The schemas the primary wrote the table with, each from the first position it was
        /// seen at.
        refs: &'a [(u32, Position)],
        passed: Position,
    },
}

/// What became of a record given to [`Decoder::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// The event was decoded: all of [`Decoded`] is set.
    Event,
    /// A replica's event beyond the primary's watermark: the schema to read it with is not
    /// known yet. Only the event's position and operation are set; offer it again once the
    /// primary has passed that position.
    Ahead,
}

/// One change event, as the engine verifies it.
pub struct Decoded {
    /// Position, operation, commit time and the digests of the row images.
    pub event: Event,
    /// The key's hash (canonical under the primary's key schema), which picks its range.
    pub key_hash: u64,
    /// The key's first field when it is an integer, for integer ranges (asked for at
    /// construction; `None` otherwise).
    pub leading: Option<i64>,
    /// The value schema the event was written with.
    pub schema: u32,
    /// The value schema its rows were read with (the primary's, see [`Role`]).
    pub reference: u32,
    /// The key schema its key was read with.
    pub key_schema: u32,
    /// The writer's row schema differs structurally from the reference's.
    pub drift: bool,
}

impl Decoded {
    /// Nothing decoded yet: what [`Decoder::decode`] writes into.
    pub const EMPTY: Decoded = Decoded {
        event: Event::EMPTY,
        key_hash: 0,
        leading: None,
        schema: 0,
        reference: 0,
        key_schema: 0,
        drift: false,
    };
}

/// The last event's key and row as their reference schemas read them, for naming the keys
/// that differ.
pub struct Kept {
    pub key: Vec<u8>,
    /// `None` when the event has no row image (a delete) or it does not read.
    pub row: Option<Vec<u8>>,
}

/// Reads the records of one input format.
pub trait Decoder {
    /// Where the schemas records refer to come from.
    type Source<'s>: ?Sized;
    /// Why a record cannot be read: it goes to the dead-letter topic, this said of it.
    type Poison: std::error::Error;

    /// Makes topic `topic` (ids in the order topics are added) known, with the table it
    /// carries and its partitions.
    fn add_topic(&mut self, topic: TopicId, name: &str, table: &str, partitions: u32);

    /// Grows a known topic to `partitions` partitions.
    fn add_partitions(&mut self, topic: TopicId, partitions: u32);

    /// Decodes one record's key and value (a tombstone never comes here) into `out`, which
    /// starts as [`Decoded::EMPTY`]. `Err` only when a schema cannot be fetched now: the record
    /// is offered again later.
    ///
    /// (An out-parameter rather than a returned value: the event is large, and this is the
    /// hottest call of the engine.)
    fn decode(
        &mut self,
        at: &At<'_>,
        key: Option<&[u8]>,
        value: &[u8],
        src: &mut Self::Source<'_>,
        out: &mut Decoded,
    ) -> Result<Result<Read, Self::Poison>, SchemaUnavailable>;

    /// The key and row of the event [`decode`](Self::decode) returned last, from the same
    /// `key` and `value`.
    fn kept(&mut self, key: &[u8], value: &[u8], event: &Event) -> Kept;

    /// How many times a schema was fetched from the source.
    fn fetches(&self) -> u64;

    /// A key kept by [`kept`](Self::kept), as JSON (`null` when it does not render).
    fn render_key(&self, key_schema: u32, key: &[u8]) -> serde_json::Value;

    /// A row kept by [`kept`](Self::kept), as JSON (`null` when it does not render).
    fn render_row(&self, schema: u32, row: &[u8]) -> serde_json::Value;

    /// How the rows of value schema `actual` differ from those of `expected`.
    fn field_diff(&self, expected: u32, actual: u32) -> Vec<FieldDiff>;

    /// The text of a schema seen, as registered (for the column types of repair statements).
    fn schema_text(&self, schema: u32) -> Option<&str>;

    /// A configuration that cannot work with these records, said once found (the configured
    /// position field is not in the envelopes' `source`): the caller stops with it rather
    /// than dead-lettering every record.
    fn misconfigured(&self) -> Option<&str> {
        None
    }

    /// What column rules could not do (a treatment named for a column it does not fit), one
    /// line each, `<table>: …`, in the order found.
    fn rule_notes(&self) -> &[String] {
        &[]
    }

    /// The subject a topic's value schemas are registered under.
    fn subject(&self, topic: TopicId) -> &str;

    /// The version of `schema` under `subject`, if known.
    fn version(&self, schema: u32, subject: &str) -> Option<u32>;

    /// The value schemas topic `topic` was seen written with.
    fn written_with(&self, topic: TopicId) -> impl Iterator<Item = u32> + '_;

    /// The origins of the positions decoded so far, in their order (see
    /// [`crate::origins`]).
    fn origins(&self) -> &Origins;

    /// Continues the order of origins a checkpoint kept (before any record is decoded).
    fn restore_origins(&mut self, epochs: &[Epoch]);
}
