//! What the engine is told: the settings of a verification.

use crate::digest::KeyRanges;
use crate::envelope::PositionField;

/// Which ranges keep per-key state, to name the exact keys that differ.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Drill {
    #[default]
    Off,
    All,
    Ranges(Vec<(String, u64)>),
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub position: PositionField,
    pub ranges: KeyRanges,
    /// A window closes at least this often (origin commit time), even at low traffic.
    pub cut_interval_ms: i64,
    /// At low traffic, a primary window closes once every partition of the primary is known
    /// to be read this long past the window's end (origin time).
    pub idle_grace_ms: i64,
    /// A replica that has not passed a window this long after the primary did is lagging.
    pub max_replica_lag_ms: i64,
    /// A replica with no record at all for this long while the primary writes is silent.
    pub silent_after_ms: i64,
    /// How much later than each other records stamped at one moment may become readable in
    /// different partitions (producer batching, retries, clock differences). A partition
    /// found read to its end when the clock read T holds nothing more stamped before
    /// T − publish_skew_ms: that, not silence, is what lets a quiet partition stop holding
    /// its stream back. This is the least allowed; the engine allows more when it sees
    /// records arrive later (see `max_publish_skew_ms`).
    pub publish_skew_ms: i64,
    /// The most the learned skew may grow to: 3 times the latest a record was seen to
    /// arrive behind its partition's read-through time, decaying by half per minute without
    /// a new high. Equal to `publish_skew_ms`, nothing is learned.
    pub max_publish_skew_ms: i64,
    /// Require each schema id to be registered under the subject its topic implies.
    pub check_subjects: bool,
    pub drill: Drill,
    /// A mismatch found where a stream may still be writing the window (its connector failed
    /// mid-transaction and will write the rest again) is published once both streams have
    /// written later transactions, or after this long (verifier clock) at the latest.
    pub confirm_ms: i64,
    /// Verify only the transactions the primary committed in `[from, to)` (origin time, ms);
    /// the replicas' events are kept by the positions of those transactions.
    pub origin_span: (Option<i64>, Option<i64>),
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            position: PositionField::Gtid,
            ranges: KeyRanges::default(),
            cut_interval_ms: 200,
            idle_grace_ms: 200,
            max_replica_lag_ms: 2000,
            silent_after_ms: 10_000,
            publish_skew_ms: 500,
            max_publish_skew_ms: 30_000,
            check_subjects: true,
            drill: Drill::Off,
            confirm_ms: 30_000,
            origin_span: (None, None),
        }
    }
}
