//! What the engine is told: the settings of a verification.

use serde::{Deserialize, Serialize};

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

/// How windows are cut and how long the engine waits, in milliseconds: the keys of the same
/// names in the configuration's `[verify]` section.
///
/// Read flattened into `[verify]`, which refuses unknown keys for it (serde does not apply a
/// flattened struct's own `deny_unknown_fields`); read alone, it picks its keys out of that
/// section and names the one whose value is wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Timing {
    /// A window closes at least this often (origin commit time), even at low traffic.
    pub cut_interval_ms: i64,
    /// At low traffic, a primary window closes once every partition of the primary is known
    /// to be read this long past the window's end (origin time).
    pub idle_grace_ms: i64,
    /// A replica that has not passed a window this long after the primary did is lagging.
    pub max_replica_lag_ms: i64,
    /// A replica with no record at all for this long while the primary writes is silent.
    pub silent_after_ms: i64,
    /// A mismatch found where a stream may still be writing the window (its connector failed
    /// mid-transaction and will write the rest again) is published once both streams have
    /// written later transactions, or after this long (verifier clock) at the latest.
    pub confirm_ms: i64,
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
    /// How far past the wall clock (as the caller tells it, see `Engine::set_wall_clock`) a
    /// record may be stamped and still move the verifier's clock. A record stamped later was
    /// stamped by a clock that is wrong: it is verified, counted as stamped in the future, and
    /// taken as stamped at the clock's reading, so that one such record cannot make every
    /// window compare early and the records after it arrive late. Well above the differences
    /// of NTP-synchronised clocks; a clock up to this far ahead is absorbed by the learned skew.
    pub future_tolerance_ms: i64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            cut_interval_ms: 200,
            idle_grace_ms: 200,
            max_replica_lag_ms: 2000,
            silent_after_ms: 10_000,
            confirm_ms: 30_000,
            publish_skew_ms: 500,
            max_publish_skew_ms: 30_000,
            future_tolerance_ms: 5_000,
        }
    }
}

/// A timing the engine cannot work with; the message starts with the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimingError {
    #[error("cut-interval-ms: must be positive, got {0}")]
    CutInterval(i64),
    #[error("idle-grace-ms: must not be negative, got {0}")]
    IdleGrace(i64),
    #[error("publish-skew-ms: must not be negative, got {0}")]
    PublishSkew(i64),
    #[error("max-publish-skew-ms: must be at least publish-skew-ms ({skew}), got {max}")]
    MaxPublishSkew { max: i64, skew: i64 },
    #[error("future-tolerance-ms: must not be negative, got {0}")]
    FutureTolerance(i64),
}

impl Timing {
    pub fn check(&self) -> Result<(), TimingError> {
        if self.cut_interval_ms <= 0 {
            return Err(TimingError::CutInterval(self.cut_interval_ms));
        }
        if self.idle_grace_ms < 0 {
            return Err(TimingError::IdleGrace(self.idle_grace_ms));
        }
        if self.publish_skew_ms < 0 {
            return Err(TimingError::PublishSkew(self.publish_skew_ms));
        }
        if self.max_publish_skew_ms < self.publish_skew_ms {
            return Err(TimingError::MaxPublishSkew {
                max: self.max_publish_skew_ms,
                skew: self.publish_skew_ms,
            });
        }
        if self.future_tolerance_ms < 0 {
            return Err(TimingError::FutureTolerance(self.future_tolerance_ms));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub position: PositionField,
    pub ranges: KeyRanges,
    /// How windows are cut and when a replica is late, silent or confirmed divergent.
    pub timing: Timing,
    /// Require each schema id to be registered under the subject its topic implies.
    pub check_subjects: bool,
    pub drill: Drill,
    /// Verify only the transactions the primary committed in `[from, to)` (origin time, ms);
    /// the replicas' events are kept by the positions of those transactions.
    pub origin_span: (Option<i64>, Option<i64>),
    /// Which time says how late a replica wrote a window.
    pub lag_by: LagBy,
    /// How much memory the engine may hold before it gives up on a span of a replica.
    pub limits: super::Limits,
    /// What rows are compared without, or compared loosely on.
    pub rules: crate::rules::ColumnRules,
}

/// The time a replica's lag is measured in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LagBy {
    /// When the records were written to Kafka, against the primary's records of the same
    /// window: the replica's stream as delivered, its connector included. What a live
    /// verifier sees.
    #[default]
    RecordTime,
    /// When the replica committed the window's transactions (`source.ts_ms`), against the
    /// primary's commit times. For history selected by commit time: record times there say
    /// when each topic was read by its connector (a catch-up, a backfill writes them hours
    /// later), not how far the replica was behind; a replica that never reached positions of
    /// the span is missing them, which the end of the input reports. Replicas that repeat the
    /// origin's commit times (MariaDB and MySQL GTID replicas) show no lag this way.
    CommitTime,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            position: PositionField::Gtid,
            ranges: KeyRanges::default(),
            timing: Timing::default(),
            check_subjects: true,
            drill: Drill::Off,
            origin_span: (None, None),
            lag_by: LagBy::RecordTime,
            limits: super::Limits::default(),
            rules: Default::default(),
        }
    }
}
