//! The verification core of cdc-verifier: pure, synchronous, free of I/O.
//!
//! - [`wire`]: the Confluent wire format.
//! - [`avro`]: schemas, the bounds-checked reader, canonical re-encoding under schema
//!   resolution, JSON rendering.
//! - [`envelope`]: Debezium envelopes and origin positions.
//! - [`decode`]: records' bytes to the events the engine verifies, one implementation per
//!   input format.
//! - [`digest`]: the checksum algebra (row hashes, additive range digests).
//! - [`engine`]: windows, watermarks, comparison and verdicts.
//! - [`verdict`]: divergence events.
//! - [`episodes`]: verdicts grouped into episodes, one story per fault.
//! - [`rules`]: column rules — what rows are compared without, or compared loosely on.
//! - [`source`]: where schemas come from.
//! - [`connect_json`]: Kafka Connect JsonConverter records, transcoded to the Avro wire format.

pub mod avro;
pub mod connect_json;
pub mod decode;
pub mod digest;
pub mod engine;
pub mod envelope;
pub mod episodes;
mod hashmap;
pub mod origins;
pub mod repair;
pub mod rules;
pub mod source;
pub mod time;
pub mod verdict;
pub mod wire;

pub use connect_json::{ConnectJson, ConnectJsonError, WithConnectJson};
pub use digest::{KeyRanges, Lanes, Op, RangeDigest};
pub use engine::{
    Checkpoint, Drill, Engine, EngineConfig, FutureRecord, Held, Ingested, LagBy, Limits, Progress,
    Reach, Record, SchemaSeen, SchemaUnavailable, Segment, StreamId, Timing, TimingError, TopicId,
    WindowStatus,
};
pub use envelope::{BadPositionField, Position, PositionField};
pub use episodes::{EpisodeConfig, EpisodeEvent, EpisodeState, Episodes, Phase};
pub use source::{FetchError, MemorySource, RegisteredSchema, SchemaSource, SubjectVersion};
pub use verdict::{Divergence, Finding, Kind};

#[cfg(test)]
mod test_rng {
    /// A xorshift generator: the same numbers from the same seed, for the tests' random inputs.
    pub fn xorshift(mut x: u64) -> impl FnMut() -> u64 {
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        }
    }
}
