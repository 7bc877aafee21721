//! What the verification loop keeps: the verifier, the Kafka clients, the topics found so far,
//! and per partition how far it was read, fed and committed.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdc_verifier_kafka::batches::{Batches, Rec};
use cdc_verifier_kafka::consume::Consumer;
use cdc_verifier_kafka::end_offsets::EndOffsets;
use cdc_verifier_kafka::outbox::Outbox;
use cdc_verifier_kafka::source::RegistrySource;

use super::alerts::{AlertCodec, EpisodeCodec};
use super::health::Health;
use super::metrics::Metrics;
use crate::config::Config;
use crate::verify::Verifier;

/// Per-partition bookkeeping of the loop.
pub(super) struct PartState {
    pub topic_index: u32,
    pub partition: u32,
    pub engine_topic: cdc_verifier_core::TopicId,
    /// The next offset to feed (one past the last fed).
    pub next: i64,
    /// Records held while the registry is unavailable, in order, each with its own bytes.
    pub held: VecDeque<(Rec, Vec<u8>)>,
    pub paused: bool,
    pub committed: i64,
    /// Its topic was deleted (or the partition is gone with it): not read, not committed,
    /// not holding anything back.
    pub gone: bool,
    /// The end offset at the broker's last answer (0 before one).
    pub end: i64,
    /// `next` when last looked at, and since when it has stayed there.
    pub seen: (i64, Instant),
}

impl PartState {
    pub fn new(
        topic_index: u32,
        partition: u32,
        engine_topic: cdc_verifier_core::TopicId,
        start: i64,
    ) -> PartState {
        PartState {
            topic_index,
            partition,
            engine_topic,
            next: start,
            held: VecDeque::new(),
            paused: false,
            committed: start,
            gone: false,
            end: 0,
            seen: (start, Instant::now()),
        }
    }
}

pub(super) struct Service {
    pub cfg: Config,
    pub verifier: Verifier,
    pub src: RegistrySource,
    /// The detail topic's codec (verdicts), when `alerts.detail-topic` is set.
    pub codec: Option<AlertCodec>,
    /// The alert topic's codec (episodes).
    pub episode_codec: EpisodeCodec,
    /// Re-reads of mismatched windows naming their keys.
    pub drills: super::drill::Drills,
    /// The Alertmanager the episodes go to, when `alerts.alertmanager-url` is set.
    pub webhook: Option<super::webhook::Webhook>,
    /// Alerts and dead letters, each kept until Kafka acknowledged it.
    pub producer: Outbox,
    pub consumer: Consumer,
    /// The topics read (found at start or since), by index; a deleted one keeps its index.
    pub topic_names: Vec<String>,
    pub topic_cnames: Vec<CString>,
    /// Per topic: its stream (index in `Config::streams`) and table.
    pub topic_routes: Vec<(usize, String)>,
    /// Per topic: deleted (not in the cluster's last listing).
    pub topic_gone: Vec<bool>,
    pub partitions: Vec<PartState>,
    /// Per topic, the index in `partitions` of each of its partitions.
    pub part_index: Vec<Vec<usize>>,
    /// Tables whose topics exist on some streams only, since when: added once every stream
    /// has one, or after a while without.
    pub pending_tables: BTreeMap<String, Instant>,
    /// When the cluster's topics are looked at next, and how many looks were done.
    pub next_discovery: Instant,
    pub discoveries: u64,
    /// Offset-out-of-range reports not handled yet (the broker did not answer).
    pub resets_pending: Vec<cdc_verifier_kafka::batches::OffsetReset>,
    /// Records deleted before they were read, per (topic, partition).
    pub skipped: BTreeMap<(String, u32), u64>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    /// The consumer thread's batches.
    pub batches: Batches,
    pub retry_at: Option<Instant>,
    pub backoff: Duration,
    /// Poison records dead-lettered as they were fed, by (topic, partition, offset), until
    /// their verdict is published; a poison verdict not among them is of a parked record
    /// released later.
    pub dead_lettered_at_feed: HashSet<(String, u32, i64)>,
    /// Verdicts published, by (kind, replica) (the verdicts themselves are not kept).
    pub verdict_counts: std::collections::BTreeMap<(String, String), u64>,
    /// What could be committed at each commit tick, oldest first: committed once every
    /// alert and dead letter published before it was acknowledged.
    pub frontiers: VecDeque<Frontier>,
    /// The commit failure in progress (the first error, since when) and the next try.
    pub commit_failing: Option<(String, Instant)>,
    pub commit_retry_at: Option<Instant>,
    pub commit_backoff: Duration,
    pub commit_failures: u64,
    pub commits: u64,
    pub max_record_ts: i64,
    /// When the newest record time last moved.
    pub max_record_seen: Instant,
    pub until_caught_up: bool,
    /// When the first record was fed, and when everything was first read (for `--until-caught-up`).
    pub first_record_at: Option<Instant>,
    pub caught_up_at: Option<(Instant, u64)>,
    pub last_checkpoint: String,
    pub throttled: bool,
    /// End offsets asked of the broker in the background.
    pub end_offsets: EndOffsets,
    /// Every partition was read to its end at the last answer.
    pub all_read: bool,
    pub skew_warned: u64,
    /// Verdicts grouped into episodes, for the log.
    pub episodes: cdc_verifier_core::episodes::Episodes,
    /// The oldest open window, since when it is, and whether that was said.
    pub oldest_open: Option<(i64, Instant, bool)>,
    /// How many of the engine's column-rule notes were logged.
    pub rule_notes_said: usize,
    /// GTID origins, and their returns, said so far.
    pub origins_logged: (u64, u64),
    /// Replicas whose unverified starting state was logged.
    pub changes_only_logged: BTreeSet<String>,
    pub skew_logged: i64,
    /// Records stamped in the future logged so far (the engine's first one per partition).
    pub future_logged: usize,
    /// How long after their timestamp records were read (ms): since start, and since the
    /// last metrics snapshot.
    pub record_age: hdrhistogram::Histogram<u64>,
    pub record_age_recent: hdrhistogram::Histogram<u64>,
    /// The shards of tables verified here (`[scale]`); `None`: every table.
    pub shards: Option<super::shards::Shards>,
    /// Times the shards were handed back to the group since the process started.
    pub shard_handoffs: u64,
    /// Sharing shards: the topic the instances tell each other how far streams have written
    /// on, this instance's key there, and what was heard (taken, or refused: origins ordered
    /// otherwise, or an unknown stream).
    pub exchange: Option<Arc<cdc_verifier_kafka::exchange::Exchange>>,
    pub exchange_key: String,
    pub reach_taken: u64,
    pub reach_refused: u64,
    /// Whether everything the others said before this engine began was taken in.
    pub reach_primed: bool,
    /// Records and bytes said on the reach topic.
    pub reach_said: (u64, u64),
    /// When the partitions' end offsets last answered, and whether an ask failed since.
    pub end_offsets_ok: Instant,
    pub end_offsets_failed: bool,
    /// Sharing shards: a replica's lag as the instances find it (see `lag`).
    pub lag: super::lag::LagShare,
    /// Sharing shards: other instances' episodes, closed once those instances are gone.
    pub orphans: super::orphans::Orphans,
}

impl Service {
    /// Whether `table` is verified by this instance.
    pub fn owns(&self, table: &str) -> bool {
        self.shards.as_ref().is_none_or(|s| s.owns(table))
    }

    /// The index in `partitions` of a topic's partition.
    #[inline]
    pub fn part_of(&self, topic: u32, partition: u32) -> Option<usize> {
        self.part_index
            .get(topic as usize)?
            .get(partition as usize)
            .copied()
    }

    /// The partitions whose committed metadata carries the checkpoint: the first one read
    /// (sharing the tables, the first one read of each table).
    pub fn anchors(&self) -> Vec<usize> {
        if self.shards.is_none() {
            return self
                .partitions
                .iter()
                .position(|p| !p.gone)
                .into_iter()
                .collect();
        }
        // Sharing: each table's first partition, so that whichever instance verifies a table
        // next finds its episodes there, wherever the tables are placed then.
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (i, p) in self.partitions.iter().enumerate().filter(|(_, p)| !p.gone) {
            let table = &self.topic_routes[p.topic_index as usize].1;
            if seen.insert(table) {
                out.push(i);
            }
        }
        out
    }
}

/// The offsets settled at one commit tick, with the checkpoint beside them.
pub(super) struct Frontier {
    /// The outbox's next sequence number then: every output numbered below it must be
    /// acknowledged before these offsets are committed.
    pub seq: u64,
    /// Per partition (in `partitions` order, those known then), the offset below which every
    /// record is settled.
    pub offsets: Vec<i64>,
    pub checkpoint: String,
}

/// The checkpoint as committed: with the time it was saved, so that a restart takes the
/// newest when the partition carrying it changed (a topic deleted, or one found first).
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Saved {
    #[serde(default)]
    pub saved_ms: i64,
    #[serde(flatten)]
    pub checkpoint: cdc_verifier_core::Checkpoint,
}

/// The wall clock (ms since the epoch).
pub(super) fn wall_ms() -> i64 {
    crate::report::now_ms()
}
