//! The verification engine: records in, verdicts out. Synchronous and free of I/O; the Kafka
//! service, the replay command and the demo all drive this same code.
//!
//! Per record: split the wire format, decode the envelope with a plan compiled once per
//! (writer schema, reference schema), hash both images, bucket the key, drop duplicates by
//! the partition's position high-water mark, and add the event's delta to the digest of its
//! (stream, table, range, window). Per batch ([`Engine::advance`]): move the watermarks, close
//! windows, compare each replica's windows with the primary's and emit verdicts.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::Arc;

use crate::avro::reader::{DecodeError, Reader};
use crate::avro::resolve::{Plan, Scratch};
use crate::avro::schema::{Node, Schema};
use crate::avro::{FieldDiff, json};
use crate::digest::{
    KeyRanges, Lanes, Op, RangeDigest, RowHasher, event_hash, key_hash, table_seed,
};
use crate::envelope::{EnvelopeLayout, Event, Hint, Position, PositionField};
use crate::hashmap::FastMap;
use crate::source::{FetchError, RegisteredSchema, SchemaSource};
use crate::verdict::{
    Divergence, KeyDiff, Kind, LagInfo, OffsetRange, PoisonInfo, RowImage, SchemaInfo, Side,
    WindowRef,
};
use crate::wire;

mod baseline;
mod confirm;

pub type StreamId = u16;
pub type TopicId = u32;
pub type TableId = u16;

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

/// One Kafka record, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub topic: TopicId,
    pub partition: u32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Ingested {
    Counted,
    Duplicate,
    /// Outside the origin span being verified.
    Outside,
    Tombstone,
    /// A replica record ahead of the primary's watermark: held until the primary passes it.
    Parked,
    /// A first delivery into a window already compared (it came later than
    /// `publish_skew_ms` allows): not verified.
    Late,
    /// Undecodable: send to the dead-letter topic; the verdict says why.
    Poison(Box<Divergence>),
}

/// The schema source could not answer now: pause this partition and retry the record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schema id {id} cannot be fetched now: {reason}")]
pub struct SchemaUnavailable {
    pub id: u32,
    pub reason: String,
}

/// Counters per topic, read by the metrics endpoint and the reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TopicStats {
    pub events: u64,
    /// Snapshot reads (`op = r`) taken as the stream's starting state.
    pub snapshot: u64,
    /// Snapshot reads that came after the starting state was compared (a second snapshot):
    /// not verified.
    pub snapshot_late: u64,
    pub bytes: u64,
    pub duplicates: u64,
    pub late: u64,
    pub tombstones: u64,
    pub poison: u64,
    pub parked: u64,
    pub outside: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineStats {
    pub windows_compared: u64,
    /// The most a record arrived stamped before the time its partition was known to be read
    /// through (how much of `publish_skew_ms` was needed; more is harmless while the
    /// record's position is beyond what was passed, which `TopicStats::late` counts).
    pub arrival_behind_max_ms: i64,
    pub verdicts: BTreeMap<String, u64>,
    pub schema_fetches: u64,
    /// Replicas whose starting state could not be compared with the primary's (no snapshot
    /// on one side), and why: only their changes are verified.
    pub changes_only: BTreeMap<String, String>,
    /// Mismatches withdrawn before publication: records that came late made them whole.
    pub withdrawn: u64,
}

struct Compiled {
    reg: RegisteredSchema,
    schema: Schema,
    layout: Result<EnvelopeLayout, String>,
    row_fp: u64,
}

impl Compiled {
    fn version_for(&self, subject: &str) -> Option<u32> {
        self.reg
            .subjects
            .iter()
            .find(|s| s.subject == subject)
            .map(|s| s.version)
    }
}

struct Table {
    name: String,
    seed: u64,
    /// What hashes its rows (from `seed`).
    rows: RowHasher,
    /// The primary's value schema ids with the first position each was seen at.
    refs: Vec<(u32, Position)>,
    /// The primary's key schema id.
    ref_key: Option<u32>,
    value_subject_of_primary: Option<String>,
}

impl Table {
    fn reference_at(&self, p: Position) -> Option<u32> {
        self.refs
            .iter()
            .filter(|(_, from)| *from <= p)
            .max_by_key(|(_, from)| *from)
            .or_else(|| self.refs.iter().min_by_key(|(_, f)| *f))
            .map(|(id, _)| *id)
    }
}

/// What is known of a partition beyond the records read from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Progress {
    /// It may hold records not read yet: it holds its stream back at its last position.
    #[default]
    Reading,
    /// It was found read to its end when the clock read this time (origin record time).
    CaughtUpAt(i64),
    /// Its records arrive in time order with the others' (a capture): it is read as far as
    /// the clock.
    Following,
    /// Nothing more will ever come (the end of a bounded input).
    Ended,
}

#[derive(Default)]
struct Part {
    last_pos: Option<Position>,
    hwm: Position,
    /// The events counted in still-open windows, as (position, event hash), ascending: tells
    /// a redelivery from an out-of-order first delivery, and from the other events of the
    /// same transaction, which share its position when Debezium sends no transaction block.
    recent: Vec<(Position, u64)>,
    progress: Progress,
    /// (window, first offset, last offset) for open windows.
    offsets: VecDeque<(i64, i64, i64)>,
    /// The partition has sent a change (not a snapshot read).
    changed: bool,
    /// The plans of the schemas last seen on this partition (boxed: taken out and put back
    /// at every record).
    cache: Option<Box<PartCache>>,
    /// Records parked ahead of the primary, in offset order (released from the front).
    parked: VecDeque<Parked>,
    /// (bounds generation, window, lowest tx exclusive, highest tx inclusive) of the window
    /// the last record fell in.
    window_cache: Option<(u64, i64, u64, u64)>,
}

struct PartCache {
    vid: u32,
    /// The reference the plan reads rows with.
    rid: u32,
    /// The writer's row schema differs structurally from the reference's.
    drift: bool,
    plan: Arc<Plan>,
    writer: Arc<Compiled>,
    key: KeyCache,
    /// What decoding learned of this partition's last envelopes.
    hint: Hint,
    /// The lowest position this partition has noted for `vid` in its table's `refs`
    /// (`Position::MAX` before the first): an event at or above it has nothing to note.
    noted: std::cell::Cell<Position>,
}

/// Decodes a value datum with a partition's cached plans, into `ev`.
#[inline]
fn decode(
    c: &mut PartCache,
    rows: &RowHasher,
    datum: &[u8],
    scratch: &mut Scratch,
    ev: &mut Event,
) -> Result<(), DecodeError> {
    let layout = c.writer.layout.as_ref().expect("checked when cached");
    layout.decode_hinted_into(
        &c.writer.schema,
        &c.plan,
        rows,
        datum,
        scratch,
        &mut c.hint,
        ev,
    )
}

struct KeyCache {
    kid: u32,
    rid: u32,
    plan: Arc<Plan>,
    writer: Arc<Compiled>,
    reference: Arc<Compiled>,
}

struct Topic {
    name: String,
    stream: StreamId,
    table: TableId,
    value_subject: String,
    key_subject: String,
    parts: Vec<Part>,
    checked: Vec<u32>,
    stats: TopicStats,
    last_ms: i64,
    /// When (the primary's record time) this replica topic was found behind the primary's
    /// table in position, and the primary's position then (`i64::MIN`: not behind): silence
    /// is counted from there, not from the replica's last record — both may have been quiet
    /// together for a long time before, and either may write a transaction first.
    behind_since: i64,
    behind_mark: Position,
    silent: bool,
    /// The highest position seen on this topic.
    max_pos: Position,
}

#[derive(Default)]
struct DriftObs {
    first: Position,
    first_ts: i64,
    actual_id: u32,
    expected_id: u32,
    events: u64,
}

/// The digests of one window by (table, range), in the order their ranges were first met,
/// found through small slots: a window's events touch few cache lines of it (a map of whole
/// digests spread them over a table four times the size). The slots of ranges below
/// [`DENSE_RANGES`] (hash buckets, as most are) lie in one array per table, indexed by the
/// range; the others (integer ranges) are found through a map.
#[derive(Default)]
struct WindowDigests {
    /// How many ranges a window is expected to meet (the last one's count).
    expected: usize,
    dense: Vec<Vec<u32>>,
    slots: FastMap<(TableId, u64), u32>,
    entries: Vec<((TableId, u64), RangeDigest)>,
}

/// Ranges below this have their slot in a table's array (16 KiB at most per table and window).
const DENSE_RANGES: u64 = 4096;
/// No slot yet.
const NO_SLOT: u32 = u32::MAX;

impl WindowDigests {
    /// Room for `n` ranges and half as many again: windows of steady traffic meet about as
    /// many ranges as the last one, some more, and growing the digests copies them all.
    fn with_capacity(n: usize) -> WindowDigests {
        WindowDigests {
            expected: n,
            entries: Vec::with_capacity(n + n / 2),
            ..WindowDigests::default()
        }
    }

    /// The slot of `key`, if it has one.
    #[inline]
    fn slot(&self, key: &(TableId, u64)) -> Option<u32> {
        if key.1 < DENSE_RANGES {
            self.dense
                .get(key.0 as usize)?
                .get(key.1 as usize)
                .copied()
                .filter(|s| *s != NO_SLOT)
        } else {
            self.slots.get(key).copied()
        }
    }

    /// The digest of `key`, a zero one if the window has none yet.
    #[inline]
    fn entry(&mut self, key: (TableId, u64)) -> &mut RangeDigest {
        let slot = match self.slot(&key) {
            Some(slot) => slot,
            None => self.insert(key),
        };
        &mut self.entries[slot as usize].1
    }

    #[inline]
    fn insert(&mut self, key: (TableId, u64)) -> u32 {
        let slot = self.entries.len() as u32;
        self.entries.push((key, RangeDigest::default()));
        if key.1 < DENSE_RANGES {
            let (t, r) = (key.0 as usize, key.1 as usize);
            if self.dense.len() <= t {
                self.dense.resize_with(t + 1, Vec::new);
            }
            let table = &mut self.dense[t];
            if table.len() <= r {
                // Hash buckets are met in no order: room for as many as the last window met,
                // or the next power of two, at once.
                table.resize(
                    (r + 1)
                        .max(self.expected)
                        .next_power_of_two()
                        .min(DENSE_RANGES as usize),
                    NO_SLOT,
                );
            }
            table[r] = slot;
        } else {
            self.slots.insert(key, slot);
        }
        slot
    }

    fn get(&self, key: &(TableId, u64)) -> Option<&RangeDigest> {
        self.slot(key).map(|slot| &self.entries[slot as usize].1)
    }

    fn contains_key(&self, key: &(TableId, u64)) -> bool {
        self.slot(key).is_some()
    }

    fn iter(&self) -> impl Iterator<Item = &((TableId, u64), RangeDigest)> {
        self.entries.iter()
    }

    fn len(&self) -> usize {
        self.entries.len()
    }
}

#[derive(Default)]
struct WindowAcc {
    digests: WindowDigests,
    drift: FastMap<TableId, DriftObs>,
    tables: FastMap<TableId, ()>,
    last_table: Option<TableId>,
    /// The primary's last position per table in the window.
    table_last: Vec<(TableId, Position)>,
    /// The newest record time among the window's events (when they were written to Kafka);
    /// `i64::MIN` before the first.
    max_record_ms: i64,
}

struct Parked {
    rec_meta: (TopicId, u32, i64, i64),
    position: Position,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

struct Stream {
    name: String,
    topics: Vec<TopicId>,
    windows: BTreeMap<i64, WindowAcc>,
    /// Records parked over the stream's partitions.
    parked: usize,
    /// How many ranges a window of this stream held lately (the size new windows start at).
    digest_hint: usize,
    /// Replica: the last window compared. Primary: the last window dropped.
    done_upto: Option<i64>,
    /// Positions at or below this belong to windows already compared (late or duplicate).
    closed_pos: Option<Position>,
    lagging: Option<WindowRef>,
    /// The highest position of the stream's records per bucket of record time, for the
    /// question "which positions were written before time T".
    clock: ClockIndex,
    /// Rolling (replica − primary) per range that has diverged, until it is zero again.
    divergent: FastMap<(TableId, u64), Lanes>,
    /// Mismatches of a table this replica has not been heard from beyond the primary's last
    /// change of it in the window: held back until it is (then they are real losses and
    /// published) or the table falls silent (then StreamSilent says it all).
    absent: BTreeMap<TableId, Vec<(Position, Divergence)>>,
    drifting: FastMap<TableId, ()>,
    /// The stream's snapshot: Σ H(row) of its reads per (table, range), its schema drift.
    baseline: WindowAcc,
    /// The lowest position of a change (not a snapshot read) the stream has sent.
    first_change: Option<Position>,
    /// The earliest record time of a change the stream has sent (`i64::MAX` before one).
    first_change_ms: i64,
    /// How this replica's verification has started (the primary's: unused).
    start: Start,
    /// Mismatches awaiting confirmation (see `confirm`).
    provisional: Vec<confirm::Provisional>,
}

/// Until both streams have passed their snapshots, a replica's windows are summed, not
/// compared: a change a stream sent may lie in the other's snapshot. The first window both
/// streams have sent changes in compares the states (snapshot + changes) instead.
enum Start {
    /// Windows compared so far, summed per (table, range): (primary, replica).
    Pending(FastMap<(TableId, u64), (RangeDigest, RangeDigest)>),
    Started,
}

impl Default for Start {
    fn default() -> Self {
        Start::Pending(FastMap::default())
    }
}

/// The window key of a stream's snapshot reads (below every window of commit time).
pub(crate) const BASELINE_W: i64 = i64::MIN;

#[derive(Clone, Copy)]
struct Bound {
    first: Position,
    last: Position,
    min_ts: i64,
    max_ts: i64,
    final_at: Option<i64>,
}

/// Per-key state for drill-down.
/// A row image as the reference schema reads it: (position, op, reference schema id,
/// canonical row bytes or None when deleted).
type Image = (Position, Op, u32, Option<Vec<u8>>);

#[derive(Default)]
struct KeySide {
    /// Per open window: the key's state change, its event digest, and its last image there.
    windows: Vec<(i64, Lanes, Lanes, Option<Image>)>,
    /// The last image of windows already settled.
    settled: Option<Image>,
    /// The key's state change over the windows already settled (a snapshot read's included).
    settled_state: Lanes,
}

impl KeySide {
    /// The key's image as of the end of window `w`.
    fn image_at(&self, w: i64) -> Option<&Image> {
        self.windows
            .iter()
            .filter(|(dw, _, _, img)| *dw <= w && img.is_some())
            .max_by_key(|(dw, ..)| *dw)
            .and_then(|(.., i)| i.as_ref())
            .or(self.settled.as_ref())
    }

    /// The key's state as of the end of window `w`: Σ H(after) − H(before) of its events.
    fn state_at(&self, w: i64) -> Lanes {
        let mut state = self.settled_state;
        for (_, d, ..) in self.windows.iter().filter(|(dw, ..)| *dw <= w) {
            state.add(*d);
        }
        state
    }
}

struct KeyEntry {
    key: Vec<u8>,
    key_schema: u32,
    sides: Vec<KeySide>,
}

/// How a window of one table compared, for timelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowStatus {
    Consistent,
    Lagging,
    Mismatched,
    Drifted,
}

/// Consecutive compared windows of one (replica, table) with the same status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    pub status: WindowStatus,
    pub first_window: i64,
    pub last_window: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub first_position: Position,
    pub last_position: Position,
    pub windows: u64,
}

/// The episodes in progress, kept with committed offsets so that a restart continues them
/// instead of opening new ones (the same verdicts as a run without the restart).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// (replica, table) drifting from the primary's schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drifting: Vec<(String, String)>,
    /// (replica, first window of the episode) lagging.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lagging: Vec<(String, WindowRef)>,
    /// (replica, table) silent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silent: Vec<(String, String)>,
    /// The producers' skew learned so far (ms), so that a restart does not relearn it the
    /// hard way.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skew_seen_ms: i64,
    /// Replicas whose starting state was compared (their snapshots' offsets are committed:
    /// a restart verifies their changes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub started: Vec<String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// A schema a stream wrote a table with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchemaSeen {
    pub stream: String,
    pub table: String,
    pub schema_id: u32,
    pub subject: String,
    pub version: Option<u32>,
}

pub struct Engine {
    cfg: EngineConfig,
    timeline: BTreeMap<(StreamId, TableId), Vec<Segment>>,
    streams: Vec<Stream>,
    tables: Vec<Table>,
    topics: Vec<Topic>,
    schemas: FastMap<u32, Arc<Compiled>>,
    plans: FastMap<(u32, u32), Arc<Plan>>,
    scratch: Scratch,
    key_scratch: Scratch,
    bounds: BTreeMap<i64, Bound>,
    open_floor: i64,
    /// The last window a commit time fell in.
    last_window: LastBucket,
    /// Changes whenever a window is added before the last or dropped.
    bounds_gen: u64,
    /// The latest a record arrived behind its partition's read-through time (decaying), and
    /// when that was last raised or halved.
    skew_seen: i64,
    skew_seen_at: i64,
    primary_wm: Position,
    now_ms: i64,
    start_ms: i64,
    /// Set by [`Engine::finish`]: the input has ended.
    ended: bool,
    /// The primary's first position inside the origin span, and first one after it.
    span_lo: Option<Position>,
    span_out: Option<Position>,
    drill_keys: Vec<KeyEntry>,
    drill_index: HashMap<(TableId, Vec<u8>), usize>,
    drill_by_range: FastMap<(TableId, u64), Vec<usize>>,
    drill_ranges: Vec<(TableId, u64)>,
    stats: EngineStats,
    /// Verdicts reached while ingesting, handed out by the next advance.
    deferred: Vec<Divergence>,
}

const PRIMARY: StreamId = 0;

/// Highest position written per bucket of record time, over a trailing span. Answers "the
/// highest position among the records stamped before T" for T within the span; older
/// buckets fold into a floor. Prefix maxima are kept, recomputed lazily from the first bucket
/// a late record changed, so that both noting and asking are cheap. The newest bucket, which
/// nearly every record falls in, is kept apart from the others: noting into it is a compare.
struct ClockIndex {
    /// The buckets before the newest: (bucket, highest position in it, highest position in
    /// it and every earlier one).
    buckets: VecDeque<(i64, Position, Position)>,
    /// The newest bucket (`NO_BUCKET` before the first record) and its highest position.
    newest: i64,
    newest_max: Position,
    /// Prefix maxima from this index on are stale.
    dirty_from: usize,
    floor: Position,
    /// Buckets below this have been folded into `floor`.
    folded_below: i64,
    /// The last bucket a record time fell in.
    last_bucket: LastBucket,
}

impl Default for ClockIndex {
    fn default() -> Self {
        ClockIndex {
            buckets: VecDeque::new(),
            newest: Self::NO_BUCKET,
            newest_max: Position::ZERO,
            dirty_from: 0,
            floor: Position::ZERO,
            folded_below: 0,
            last_bucket: LastBucket::default(),
        }
    }
}

/// The bucket of a time (`t.div_euclid(width)`), remembered: consecutive times mostly fall in
/// the last one, found without a division.
#[derive(Default)]
struct LastBucket {
    /// (first time, bucket); (0, 0) is right for any width: times from 0 up fall in bucket 0.
    start: i64,
    bucket: i64,
}

impl LastBucket {
    /// The bucket of `t` for buckets `width` wide (the same width at every call).
    #[inline]
    fn of(&mut self, t: i64, width: i64) -> i64 {
        if (t.wrapping_sub(self.start) as u64) < width as u64 {
            return self.bucket;
        }
        let b = t.div_euclid(width);
        // Remembered only when the bucket lies wholly within the range of times, so that
        // the wrapping compare above cannot wrap.
        if let Some(start) = b.checked_mul(width)
            && start.checked_add(width).is_some()
        {
            (self.start, self.bucket) = (start, b);
        }
        b
    }
}

impl ClockIndex {
    const BUCKET_MS: i64 = 10;
    const SPAN: usize = 2000;

    /// No bucket: no time's bucket is this (times are `i64`, buckets a tenth of them).
    const NO_BUCKET: i64 = i64::MIN;

    #[inline(always)]
    fn note(&mut self, ts_ms: i64, p: Position) {
        let b = self.last_bucket.of(ts_ms, Self::BUCKET_MS);
        if b == self.newest {
            if p > self.newest_max {
                self.newest_max = p;
            }
            return;
        }
        self.note_elsewhere(b, p);
    }

    /// [`note`](Self::note) into a bucket other than the newest.
    #[cold]
    fn note_elsewhere(&mut self, b: i64, p: Position) {
        if b > self.newest {
            if self.newest != Self::NO_BUCKET {
                let n = self.buckets.len();
                self.buckets
                    .push_back((self.newest, self.newest_max, self.newest_max));
                self.dirty_from = self.dirty_from.min(n);
            }
            (self.newest, self.newest_max) = (b, p);
            if self.buckets.len() > Self::SPAN {
                self.refresh(Self::SPAN / 2);
                for _ in 0..Self::SPAN / 2 {
                    let (b, _, prefix) = self.buckets.pop_front().expect("non-empty");
                    self.floor = self.floor.max(prefix);
                    self.folded_below = b + 1;
                }
                self.dirty_from = 0;
                self.refresh(self.buckets.len());
            }
            return;
        }
        if b < self.folded_below {
            // Older than the span: below every time still asked about.
            self.floor = self.floor.max(p);
            return;
        }
        let at = self.buckets.partition_point(|(x, _, _)| *x < b);
        match self.buckets.get_mut(at) {
            Some((x, max, _)) if *x == b => {
                if p <= *max {
                    return;
                }
                *max = p;
            }
            _ => self.buckets.insert(at, (b, p, p)),
        }
        self.dirty_from = self.dirty_from.min(at);
    }

    /// Recomputes the stale prefix maxima.
    fn refresh_all(&mut self) {
        self.refresh(self.buckets.len());
    }

    /// Recomputes the stale prefix maxima below index `upto`.
    fn refresh(&mut self, upto: usize) {
        let mut prev = if self.dirty_from == 0 {
            self.floor
        } else {
            self.buckets[self.dirty_from - 1].2
        };
        for i in self.dirty_from..upto {
            let e = &mut self.buckets[i];
            prev = prev.max(e.1);
            e.2 = prev;
        }
        self.dirty_from = self.dirty_from.max(upto);
    }

    /// The highest position among records stamped before `t` (whole buckets only, so never
    /// more than the truth); `None` when `t` lies before the span kept.
    fn before(&self, t: i64) -> Option<Position> {
        let limit = t.div_euclid(Self::BUCKET_MS); // buckets strictly below are wholly before t
        if limit < self.folded_below {
            return None;
        }
        let settled = self.settled_before(limit);
        // (The newest bucket is above all the others: below the limit, they all are. Before
        // the first record, `NO_BUCKET` is below every limit and its maximum is the lowest.)
        Some(if self.newest < limit {
            settled.max(self.newest_max)
        } else {
            settled
        })
    }

    /// The highest position among the buckets before the newest that lie below `limit`.
    fn settled_before(&self, limit: i64) -> Position {
        let idx = self.buckets.partition_point(|(b, _, _)| *b < limit);
        if idx == 0 {
            return self.floor;
        }
        if self.dirty_from >= idx {
            return self.buckets[idx - 1].2.max(self.floor);
        }
        // Prefix maxima are fresh below `dirty_from` (refreshed at every advance); the rest
        // is scanned.
        let mut max = if self.dirty_from == 0 {
            self.floor
        } else {
            self.buckets[self.dirty_from - 1].2
        };
        for i in self.dirty_from..idx {
            max = max.max(self.buckets[i].1);
        }
        max.max(self.floor)
    }
}

impl Engine {
    /// An engine for one primary and its replicas, by stream name.
    pub fn new(cfg: EngineConfig, primary: &str, replicas: &[&str]) -> Engine {
        let mk = |name: &str| Stream {
            name: name.to_string(),
            topics: Vec::new(),
            windows: BTreeMap::new(),
            parked: 0,
            digest_hint: 0,
            done_upto: None,
            closed_pos: None,
            lagging: None,
            clock: ClockIndex::default(),
            divergent: FastMap::default(),
            absent: BTreeMap::new(),
            drifting: FastMap::default(),
            baseline: WindowAcc::default(),
            first_change: None,
            first_change_ms: i64::MAX,
            start: Start::default(),
            provisional: Vec::new(),
        };
        let mut streams = vec![mk(primary)];
        streams.extend(replicas.iter().map(|r| mk(r)));
        Engine {
            cfg,
            timeline: BTreeMap::new(),
            streams,
            tables: Vec::new(),
            topics: Vec::new(),
            schemas: FastMap::default(),
            plans: FastMap::default(),
            scratch: Scratch::default(),
            key_scratch: Scratch::default(),
            bounds: BTreeMap::new(),
            open_floor: i64::MIN,
            last_window: LastBucket::default(),
            bounds_gen: 0,
            skew_seen: 0,
            skew_seen_at: i64::MIN,
            primary_wm: Position::ZERO,
            now_ms: i64::MIN,
            start_ms: i64::MIN,
            ended: false,
            span_lo: None,
            span_out: None,
            drill_keys: Vec::new(),
            drill_index: HashMap::new(),
            drill_by_range: FastMap::default(),
            drill_ranges: Vec::new(),
            stats: EngineStats::default(),
            deferred: Vec::new(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    pub fn stream_names(&self) -> impl Iterator<Item = &str> {
        self.streams.iter().map(|s| s.name.as_str())
    }

    pub fn stream_id(&self, name: &str) -> Option<StreamId> {
        self.streams
            .iter()
            .position(|s| s.name == name)
            .map(|i| i as StreamId)
    }

    fn table_id(&mut self, name: &str) -> TableId {
        if let Some(i) = self.tables.iter().position(|t| t.name == name) {
            return i as TableId;
        }
        let seed = table_seed(name);
        self.tables.push(Table {
            name: name.to_string(),
            seed,
            rows: RowHasher::new(seed),
            refs: Vec::new(),
            ref_key: None,
            value_subject_of_primary: None,
        });
        let id = (self.tables.len() - 1) as TableId;
        if let Drill::Ranges(sel) = &self.cfg.drill {
            for (t, r) in sel {
                if t == name {
                    self.drill_ranges.push((id, *r));
                }
            }
        }
        id
    }

    /// Registers a topic of a stream, carrying one table, with its partition count.
    pub fn add_topic(
        &mut self,
        name: &str,
        stream: StreamId,
        table: &str,
        partitions: u32,
    ) -> TopicId {
        let table = self.table_id(table);
        if stream == PRIMARY {
            self.tables[table as usize].value_subject_of_primary = Some(format!("{name}-value"));
        }
        self.topics.push(Topic {
            name: name.to_string(),
            stream,
            table,
            value_subject: format!("{name}-value"),
            key_subject: format!("{name}-key"),
            parts: (0..partitions).map(|_| Part::default()).collect(),
            checked: Vec::new(),
            stats: TopicStats::default(),
            last_ms: i64::MIN,
            behind_since: i64::MIN,
            behind_mark: Position::ZERO,
            silent: false,
            max_pos: Position::ZERO,
        });
        let id = (self.topics.len() - 1) as TopicId;
        self.streams[stream as usize].topics.push(id);
        id
    }

    pub fn topic_name(&self, t: TopicId) -> &str {
        &self.topics[t as usize].name
    }

    pub fn topic_stats(&self) -> impl Iterator<Item = (&str, &str, &str, &TopicStats)> {
        self.topics.iter().map(|t| {
            (
                self.streams[t.stream as usize].name.as_str(),
                self.tables[t.table as usize].name.as_str(),
                t.name.as_str(),
                &t.stats,
            )
        })
    }

    /// The skew allowed for now: the configured least, or more when records were seen to
    /// arrive that late lately (up to `max_publish_skew_ms`).
    pub fn publish_skew_ms(&self) -> i64 {
        // Three times what was seen: an overloaded producer's skew can triple within a second.
        let learned = self.skew_seen.saturating_mul(3);
        self.cfg
            .publish_skew_ms
            .max(learned.min(self.cfg.max_publish_skew_ms))
    }

    /// Records that came into windows already compared, over every topic.
    pub fn late_records(&self) -> u64 {
        self.topics.iter().map(|t| t.stats.late).sum()
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// The verifier's clock: the newest record timestamp seen, or later if told so.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    pub fn primary_watermark(&self) -> Position {
        self.primary_wm
    }

    /// Tells what is known of a partition beyond the records fed from it.
    pub fn set_progress(&mut self, topic: TopicId, partition: u32, progress: Progress) {
        if let Some(p) = self.topics[topic as usize]
            .parts
            .get_mut(partition as usize)
        {
            p.progress = progress;
        }
    }

    /// The same progress for every partition: `Following` for inputs read in time order.
    pub fn set_all_progress(&mut self, progress: Progress) {
        for t in &mut self.topics {
            for p in &mut t.parts {
                p.progress = progress;
            }
        }
    }

    fn compiled(
        &mut self,
        id: u32,
        src: &mut dyn SchemaSource,
    ) -> Result<Result<Arc<Compiled>, String>, SchemaUnavailable> {
        if let Some(c) = self.schemas.get(&id) {
            return Ok(Ok(c.clone()));
        }
        self.stats.schema_fetches += 1;
        let reg = match src.fetch(id) {
            Ok(reg) => reg,
            Err(FetchError::NotFound(_)) => {
                return Ok(Err(format!("schema id {id} is not registered")));
            }
            Err(FetchError::Unavailable(reason)) => return Err(SchemaUnavailable { id, reason }),
        };
        let schema = match Schema::parse_str(&reg.schema) {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("schema id {id} does not parse: {e}"))),
        };
        let layout =
            EnvelopeLayout::compile(&schema, &self.cfg.position).map_err(|e| e.to_string());
        let row_fp = layout
            .as_ref()
            .map(|l| schema.fingerprint(l.row))
            .unwrap_or(0);
        let c = Arc::new(Compiled {
            reg,
            schema,
            layout,
            row_fp,
        });
        self.schemas.insert(id, c.clone());
        Ok(Ok(c))
    }

    fn plan(
        &mut self,
        writer: &Arc<Compiled>,
        wid: u32,
        reference: &Arc<Compiled>,
        rid: u32,
        rows: bool,
    ) -> Arc<Plan> {
        let key = if rows {
            (wid, rid)
        } else {
            (wid | 0x8000_0000, rid)
        };
        if let Some(p) = self.plans.get(&key) {
            return p.clone();
        }
        let (w, r) = if rows {
            let wl = writer
                .layout
                .as_ref()
                .map(|l| l.row)
                .unwrap_or(writer.schema.root());
            let rl = reference
                .layout
                .as_ref()
                .map(|l| l.row)
                .unwrap_or(reference.schema.root());
            (wl, rl)
        } else {
            (writer.schema.root(), reference.schema.root())
        };
        let p = Arc::new(Plan::compile(&writer.schema, w, &reference.schema, r));
        self.plans.insert(key, p.clone());
        p
    }

    /// A record rejected before the engine could read it (a JSON envelope that does not
    /// convert): counted and timed as one the engine found undecodable.
    pub fn reject(&mut self, rec: &Record<'_>, error: String) -> Ingested {
        self.note_arrival(rec);
        self.poison(rec, error)
    }

    fn poison(&mut self, rec: &Record<'_>, error: String) -> Ingested {
        let topic = &mut self.topics[rec.topic as usize];
        topic.stats.poison += 1;
        let mut d = Divergence::new(
            Kind::PoisonEvent,
            &self.streams[topic.stream as usize].name,
            self.now_ms.max(rec.timestamp_ms),
        );
        d.table = Some(self.tables[topic.table as usize].name.clone());
        d.poison = Some(PoisonInfo {
            topic: topic.name.clone(),
            partition: rec.partition,
            offset: rec.offset,
            error,
        });
        *self
            .stats
            .verdicts
            .entry(Kind::PoisonEvent.to_string())
            .or_default() += 1;
        Ingested::Poison(Box::new(d))
    }

    /// Feeds one record. Returns `Err` only when a schema cannot be fetched now: the caller
    /// pauses the partition and offers the same record again later.
    pub fn ingest(
        &mut self,
        rec: &Record<'_>,
        src: &mut dyn SchemaSource,
    ) -> Result<Ingested, SchemaUnavailable> {
        self.note_arrival(rec);
        let r = self.ingest_record(rec, src);
        if let (Ok(_), Some(value)) = (&r, rec.value) {
            // Once per record: not again for a parked one released later, nor for one offered
            // while the registry was down and offered again.
            self.topics[rec.topic as usize].stats.bytes +=
                value.len() as u64 + rec.key.map_or(0, |k| k.len() as u64);
        }
        r
    }

    /// The clock, and how late a record read from its partition came: a record stamped
    /// before what the partition was known to be complete through came later than the
    /// producers' skew allows — measured, so that the setting can be checked and the skew
    /// learned. (Only on arrival: a parked record released later arrived in time.)
    fn note_arrival(&mut self, rec: &Record<'_>) {
        if rec.timestamp_ms > self.now_ms {
            self.now_ms = rec.timestamp_ms;
        }
        if self.start_ms == i64::MIN {
            self.start_ms = rec.timestamp_ms;
        }
        let topic = &mut self.topics[rec.topic as usize];
        topic.last_ms = topic.last_ms.max(rec.timestamp_ms);
        let Some(part) = topic.parts.get(rec.partition as usize) else {
            return;
        };
        let complete_through = match part.progress {
            Progress::Reading | Progress::Ended => i64::MIN,
            Progress::CaughtUpAt(t) => t,
            Progress::Following => self.now_ms,
        };
        if complete_through != i64::MIN {
            let behind = complete_through.saturating_sub(rec.timestamp_ms);
            self.stats.arrival_behind_max_ms = self.stats.arrival_behind_max_ms.max(behind);
            if behind > self.skew_seen {
                self.skew_seen = behind;
                self.skew_seen_at = self.now_ms;
            }
        }
    }

    fn ingest_record(
        &mut self,
        rec: &Record<'_>,
        src: &mut dyn SchemaSource,
    ) -> Result<Ingested, SchemaUnavailable> {
        let ti = rec.topic as usize;
        let topic = &mut self.topics[ti];
        let Some(part) = topic.parts.get_mut(rec.partition as usize) else {
            let n = topic.parts.len();
            return Ok(self.poison(
                rec,
                format!(
                    "partition {} is beyond the {n} partitions known at start",
                    rec.partition
                ),
            ));
        };
        // The partition's plans are taken out for the call, so that the hot path borrows them
        // without reference counting, and put back whatever the outcome.
        let mut cache = part.cache.take();
        let result = self.ingest_with(rec, src, &mut cache);
        self.topics[ti].parts[rec.partition as usize].cache = cache;
        result
    }

    fn ingest_with(
        &mut self,
        rec: &Record<'_>,
        src: &mut dyn SchemaSource,
        cache: &mut Option<Box<PartCache>>,
    ) -> Result<Ingested, SchemaUnavailable> {
        let ti = rec.topic as usize;
        let (stream, table) = (self.topics[ti].stream, self.topics[ti].table);
        let Some(value) = rec.value else {
            self.topics[ti].stats.tombstones += 1;
            return Ok(Ingested::Tombstone);
        };
        let (vid, datum) = match wire::split(value) {
            Ok(x) => x,
            Err(e) => return Ok(self.poison(rec, format!("value: {e}"))),
        };
        let Some(key) = rec.key else {
            return Ok(self.poison(rec, "record has a value but no key".into()));
        };
        let (kid, kdatum) = match wire::split(key) {
            Ok(x) => x,
            Err(e) => return Ok(self.poison(rec, format!("key: {e}"))),
        };

        // Writer schema and the reference it is read with: the primary's own; a replica's is
        // the primary's schema in effect at the event's position, known once the primary's
        // watermark has passed it.
        if !cache
            .as_ref()
            .is_some_and(|c| c.vid == vid && c.key.kid == kid)
        {
            let rid = if stream == PRIMARY {
                vid
            } else {
                self.tables[table as usize].refs.last().map_or(vid, |r| r.0)
            };
            match self.fill_cache(rec, vid, rid, kid, src)? {
                Ok(c) => *cache = Some(Box::new(c)),
                Err(e) => return Ok(self.poison(rec, e)),
            }
        }
        let seed = self.tables[table as usize].seed;
        let mut ev = Event::EMPTY;
        if let Err(e) = decode(
            cache.as_mut().expect("filled above"),
            &self.tables[table as usize].rows,
            datum,
            &mut self.scratch,
            &mut ev,
        ) {
            return Ok(self.poison(rec, format!("value: {e}")));
        }
        let mut c = cache.as_ref().expect("filled above");
        if ev.op != Op::Read {
            // Read, if not yet counted: a snapshot written after it is a second one.
            let s = &mut self.streams[stream as usize];
            s.first_change_ms = s.first_change_ms.min(rec.timestamp_ms);
            self.topics[ti].parts[rec.partition as usize].changed = true;
        }
        if stream != PRIMARY {
            if ev.position > self.primary_wm {
                return Ok(self.park(rec, ev.position));
            }
            let rid = self.tables[table as usize]
                .reference_at(ev.position)
                .unwrap_or(vid);
            if rid != c.rid {
                // A migration lies between the cached reference and this position.
                match self.fill_cache(rec, vid, rid, kid, src)? {
                    Ok(n) => *cache = Some(Box::new(n)),
                    Err(e) => return Ok(self.poison(rec, e)),
                }
                if let Err(e) = decode(
                    cache.as_mut().expect("filled above"),
                    &self.tables[table as usize].rows,
                    datum,
                    &mut self.scratch,
                    &mut ev,
                ) {
                    return Ok(self.poison(rec, format!("value: {e}")));
                }
                c = cache.as_ref().expect("filled above");
            }
        }

        // The key, canonical under the primary's key schema, picks the range.
        let k = &c.key;
        let mut r = Reader::new(kdatum);
        let canon = match k
            .plan
            .canonical(&k.writer.schema, &mut r, &mut self.key_scratch)
        {
            Ok(canon) => canon,
            Err(e) => return Ok(self.poison(rec, format!("key: {e}"))),
        };
        if let Err(e) = r.finish() {
            return Ok(self.poison(rec, format!("key: {e}")));
        }
        let key_bytes = canon.bytes();
        let leading = match self.cfg.ranges {
            KeyRanges::Integer { .. } => leading_int(&k.reference.schema, key_bytes),
            KeyRanges::Hash { .. } => None,
        };
        let range = self.cfg.ranges.range(key_hash(seed, key_bytes), leading);
        let drill = match &self.cfg.drill {
            Drill::Off => None,
            Drill::All => Some((key_bytes.to_vec(), k.rid)),
            Drill::Ranges(_) => self
                .drill_ranges
                .contains(&(table, range))
                .then(|| (key_bytes.to_vec(), k.rid)),
        };

        if stream == PRIMARY && ev.position < c.noted.get() {
            c.noted.set(ev.position);
            let t = &mut self.tables[table as usize];
            match t.refs.iter_mut().find(|(id, _)| *id == vid) {
                Some((_, from)) => {
                    if ev.position < *from {
                        *from = ev.position;
                    }
                }
                None => t.refs.push((vid, ev.position)),
            }
        }
        let drift = c.drift.then_some((vid, c.rid));
        // Drill-down keeps the row as the reference schema reads it, so that both sides
        // render with the same columns (a column an outdated writer lacks shows its default).
        let image = match (&drill, ev.image) {
            (Some(_), Some((a, b))) => {
                let mut r = Reader::new(&datum[a as usize..b as usize]);
                c.plan
                    .canonical(&c.writer.schema, &mut r, &mut self.scratch)
                    .ok()
                    .map(|b| b.bytes().to_vec())
            }
            _ => None,
        };
        let reference = c.rid;
        let (counted, w) = self.count(rec, stream, table, range, &ev, drift);
        if let (Ingested::Counted, Some((key, key_schema))) = (&counted, drill) {
            self.drill_observe(
                stream, table, range, key, key_schema, w, &ev, reference, image,
            );
        }
        Ok(counted)
    }

    /// Compiles (or finds) what decoding records of this value and key schema needs.
    fn fill_cache(
        &mut self,
        rec: &Record<'_>,
        vid: u32,
        rid: u32,
        kid: u32,
        src: &mut dyn SchemaSource,
    ) -> Result<Result<PartCache, String>, SchemaUnavailable> {
        let ti = rec.topic as usize;
        let (stream, table) = (self.topics[ti].stream, self.topics[ti].table);
        let writer = match self.compiled(vid, src)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = &writer.layout {
            return Ok(Err(format!(
                "value schema id {vid} is not a Debezium envelope: {e}"
            )));
        }
        if self.cfg.check_subjects && !self.topics[ti].checked.contains(&vid) {
            let subject = &self.topics[ti].value_subject;
            if !writer.reg.subjects.is_empty()
                && !writer.reg.subjects.iter().any(|s| &s.subject == subject)
            {
                return Ok(Err(format!(
                    "value schema id {vid} is not registered under subject {subject}"
                )));
            }
            self.topics[ti].checked.push(vid);
        }
        let key_writer = match self.compiled(kid, src)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("key: {e}"))),
        };
        if self.cfg.check_subjects && !self.topics[ti].checked.contains(&(kid | 0x8000_0000)) {
            let subject = &self.topics[ti].key_subject;
            if !key_writer.reg.subjects.is_empty()
                && !key_writer
                    .reg
                    .subjects
                    .iter()
                    .any(|s| &s.subject == subject)
            {
                return Ok(Err(format!(
                    "key schema id {kid} is not registered under subject {subject}"
                )));
            }
            self.topics[ti].checked.push(kid | 0x8000_0000);
        }
        if stream == PRIMARY && self.tables[table as usize].ref_key.is_none() {
            self.tables[table as usize].ref_key = Some(kid);
        }
        let key_rid = self.tables[table as usize].ref_key.unwrap_or(kid);
        let key_reference = self
            .schemas
            .get(&key_rid)
            .cloned()
            .unwrap_or_else(|| key_writer.clone());
        let key_rid = if Arc::ptr_eq(&key_reference, &key_writer) {
            kid
        } else {
            key_rid
        };
        let key_plan = self.plan(&key_writer, kid, &key_reference, key_rid, false);
        let reference = self
            .schemas
            .get(&rid)
            .cloned()
            .unwrap_or_else(|| writer.clone());
        let rid = if Arc::ptr_eq(&reference, &writer) {
            vid
        } else {
            rid
        };
        let plan = self.plan(&writer, vid, &reference, rid, true);
        Ok(Ok(PartCache {
            vid,
            rid,
            drift: reference.row_fp != writer.row_fp,
            plan,
            writer,
            key: KeyCache {
                kid,
                rid: key_rid,
                plan: key_plan,
                writer: key_writer,
                reference: key_reference,
            },
            hint: Hint::default(),
            noted: std::cell::Cell::new(Position::MAX),
        }))
    }

    fn park(&mut self, rec: &Record<'_>, position: Position) -> Ingested {
        let topic = &mut self.topics[rec.topic as usize];
        topic.stats.parked += 1;
        // Heard of (for silence and held mismatches), though verified later.
        topic.max_pos = topic.max_pos.max(position);
        let stream = topic.stream;
        topic.parts[rec.partition as usize]
            .parked
            .push_back(Parked {
                rec_meta: (rec.topic, rec.partition, rec.offset, rec.timestamp_ms),
                position,
                key: rec.key.map(<[u8]>::to_vec),
                value: rec.value.unwrap_or_default().to_vec(),
            });
        self.streams[stream as usize].parked += 1;
        Ingested::Parked
    }

    /// Sums a decoded event into its window's digest; returns how it was taken, and the window
    /// when it was counted (`i64::MIN` otherwise).
    #[inline(always)]
    fn count(
        &mut self,
        rec: &Record<'_>,
        stream: StreamId,
        table: TableId,
        range: u64,
        ev: &Event,
        drift: Option<(u32, u32)>,
    ) -> (Ingested, i64) {
        if ev.op == Op::Read {
            return self.count_snapshot(rec, stream, table, range, ev, drift);
        }
        let ti = rec.topic as usize;
        // Duplicates: the same event (position and images) as one already counted in an open
        // window, or at or below a window already compared — counted as such, not summed.
        // Many events may share a position (a transaction's, without a transaction block).
        let ehash = event_hash(ev.position.tx, ev.before, ev.after);
        let id = (ev.position, ehash as u64);
        let closed = self.streams[stream as usize].closed_pos;
        let part = &mut self.topics[ti].parts[rec.partition as usize];
        if part.last_pos.is_some() && ev.position <= part.hwm {
            let seen = part.recent.binary_search(&id);
            if closed.is_some_and(|c| ev.position <= c) || seen.is_ok() {
                // (Below the high-water mark and in a compared window: a redelivery, or a
                // first delivery that came too late — the two cannot be told apart.)
                self.topics[ti].stats.duplicates += 1;
                return (Ingested::Duplicate, i64::MIN);
            }
            part.recent.insert(seen.unwrap_err(), id);
        } else {
            // (A new high: the last position as well. Below it, the last stays.)
            part.hwm = ev.position;
            part.last_pos = Some(ev.position);
            part.recent.push(id);
        }
        let first = &mut self.streams[stream as usize].first_change;
        if first.is_none_or(|f| ev.position < f) {
            *first = Some(ev.position);
        }
        self.streams[stream as usize]
            .clock
            .note(rec.timestamp_ms, ev.position);

        if self.cfg.origin_span != (None, None) && self.outside_span(stream, ev) {
            self.topics[ti].stats.outside += 1;
            return (Ingested::Outside, i64::MIN);
        }

        // A first delivery into a window already compared came later than the watermarks
        // allowed for (see `publish_skew_ms`): that comparison went without it.
        // The primary's window: by commit time.
        let primary_w = self.primary_window(ev);
        let late = if stream == PRIMARY {
            (1..self.streams.len())
                .any(|r| self.streams[r].done_upto.is_some_and(|d| primary_w <= d))
        } else {
            closed.is_some_and(|c| ev.position <= c)
        };
        if late {
            self.topics[ti].stats.late += 1;
            let w = (stream == PRIMARY).then_some(primary_w);
            let mut out = std::mem::take(&mut self.deferred);
            self.fold_late(stream, (table, range), w, ev, ehash, &mut out);
            self.deferred = out;
            if let Some(acc) = w.and_then(|w| self.streams[PRIMARY as usize].windows.get_mut(&w)) {
                // For the replicas that have not compared the window yet.
                acc.digests
                    .entry((table, range))
                    .add_hashed(ev.op, ehash, ev.before, ev.after);
            }
            return (Ingested::Late, i64::MIN);
        }

        let w = if stream == PRIMARY {
            let w = primary_w;
            let b = match self.bounds.last_entry() {
                Some(e) if *e.key() == w => e.into_mut(),
                _ => {
                    if self.bounds.last_key_value().is_some_and(|(k, _)| *k > w)
                        || !self.bounds.contains_key(&w)
                    {
                        self.bounds_gen += 1;
                    }
                    self.bounds.entry(w).or_insert(Bound {
                        first: ev.position,
                        last: ev.position,
                        min_ts: ev.ts_ms,
                        max_ts: ev.ts_ms,
                        final_at: None,
                    })
                }
            };
            // (Mostly past the last: one comparison.)
            if ev.position > b.last {
                b.last = ev.position;
            } else if ev.position < b.first {
                b.first = ev.position;
            }
            b.min_ts = b.min_ts.min(ev.ts_ms);
            b.max_ts = b.max_ts.max(ev.ts_ms);
            w
        } else {
            // Consecutive records of a partition mostly fall in one window: the last answer,
            // valid while no window was added or dropped, is tried first.
            let cached = self.topics[ti].parts[rec.partition as usize].window_cache;
            match cached {
                Some((generation, w, lo, hi))
                    if generation == self.bounds_gen
                        && lo < ev.position.tx
                        && ev.position.tx <= hi =>
                {
                    w
                }
                _ => {
                    let w = self.window_of(ev.position);
                    let hi = self.bounds.get(&w).map_or(0, |b| b.last.tx);
                    let lo = self
                        .bounds
                        .range(..w)
                        .next_back()
                        .map_or(0, |(_, b)| b.last.tx);
                    if ev.position.tx <= hi {
                        self.topics[ti].parts[rec.partition as usize].window_cache =
                            Some((self.bounds_gen, w, lo, hi));
                    }
                    w
                }
            }
        };

        let topic = &mut self.topics[ti];
        let part = &mut topic.parts[rec.partition as usize];
        match part.offsets.back_mut() {
            Some((pw, first, last)) if *pw == w => {
                *first = (*first).min(rec.offset);
                *last = (*last).max(rec.offset);
            }
            _ => match part.offsets.iter_mut().find(|(pw, _, _)| *pw == w) {
                Some((_, first, last)) => {
                    *first = (*first).min(rec.offset);
                    *last = (*last).max(rec.offset);
                }
                None => {
                    let at = part.offsets.partition_point(|(pw, _, _)| *pw < w);
                    part.offsets.insert(at, (w, rec.offset, rec.offset));
                }
            },
        }
        topic.stats.events += 1;
        if ev.position > topic.max_pos {
            topic.max_pos = ev.position;
        }

        let st = &mut self.streams[stream as usize];
        let acc = match st.windows.last_entry() {
            Some(e) if *e.key() == w => e.into_mut(),
            _ => {
                // Sized like the stream's last window, so that a busy window does not rehash
                // its way up.
                let hint = st
                    .windows
                    .values()
                    .next_back()
                    .map_or(st.digest_hint, |a| a.digests.len());
                st.digest_hint = hint;
                st.windows.entry(w).or_insert_with(|| WindowAcc {
                    digests: WindowDigests::with_capacity(hint),
                    max_record_ms: i64::MIN,
                    ..WindowAcc::default()
                })
            }
        };
        acc.digests
            .entry((table, range))
            .add_hashed(ev.op, ehash, ev.before, ev.after);
        acc.max_record_ms = acc.max_record_ms.max(rec.timestamp_ms);
        if acc.last_table != Some(table) {
            acc.tables.entry(table).or_default();
            acc.last_table = Some(table);
        }
        if stream == PRIMARY {
            match acc.table_last.iter_mut().find(|(t, _)| *t == table) {
                Some((_, p)) => {
                    if ev.position > *p {
                        *p = ev.position;
                    }
                }
                None => acc.table_last.push((table, ev.position)),
            }
        }
        if let Some((actual_id, expected_id)) = drift {
            let d = acc.drift.entry(table).or_insert_with(|| DriftObs {
                first: ev.position,
                first_ts: ev.ts_ms,
                actual_id,
                expected_id,
                events: 0,
            });
            if ev.position < d.first {
                d.first = ev.position;
                d.first_ts = ev.ts_ms;
            }
            d.events += 1;
        }
        (Ingested::Counted, w)
    }

    /// The primary's windows after the last one replica `r` was compared in.
    fn after_done(&self, r: StreamId) -> (std::ops::Bound<i64>, std::ops::Bound<i64>) {
        (
            self.streams[r as usize]
                .done_upto
                .map_or(Unbounded, Excluded),
            Unbounded,
        )
    }

    /// Where window `w` ends (its times are below this), as far as times go.
    fn window_end_ms(&self, w: i64) -> i64 {
        w.saturating_add(1).saturating_mul(self.cfg.cut_interval_ms)
    }

    /// The window of a primary event: that of its commit time, unless that window closed
    /// because its time was over. Then the event came later than the skew allows, and it goes
    /// where a replica's copy of it is looked up ([`window_of`](Self::window_of)): the first
    /// window that reaches its transaction — so a transaction is never split between two
    /// windows — or, past them all, the open floor.
    #[inline]
    fn primary_window(&mut self, ev: &Event) -> i64 {
        let tx = ev.position.tx;
        let w = self.window_at(ev.ts_ms).max(self.open_floor);
        match self.bounds.last_key_value() {
            None => w,
            // Past every window's transactions (nearly always): the window of its time, or
            // the last one when its time lies before that (a statement's time is when it
            // began, not when its transaction committed).
            Some((&last, b)) if tx > b.last.tx => w.max(last),
            // A transaction already in the last window: not split.
            Some((&last, b)) if tx >= b.first.tx => last,
            // Before the last window (a partition read behind the others): the window that
            // holds its transaction, else one between the windows around it.
            _ => self.window_between(tx, w),
        }
    }

    /// The window of an older transaction `tx`, whose time's window is `w`: the one whose
    /// transactions span it; else, between the last window before it and the first after it,
    /// the window of its time, or the nearer of the two when its time lies outside them — so
    /// that windows keep disjoint, ascending spans of transactions in the order of their times.
    #[cold]
    fn window_between(&self, tx: u64, w: i64) -> i64 {
        let mut prev = None;
        for (k, b) in self.bounds.range(self.open_floor.min(self.first_bound())..) {
            if b.last.tx < tx {
                prev = Some(*k);
                continue;
            }
            if b.first.tx <= tx {
                return *k;
            }
            // `k` is the first window after it.
            return match prev {
                Some(p) if w <= p => p,
                _ if w >= *k => *k,
                _ => w,
            };
        }
        prev.map_or(w, |p| w.max(p))
    }

    /// The primary's window of a commit time.
    #[inline]
    fn window_at(&mut self, ts_ms: i64) -> i64 {
        self.last_window.of(ts_ms, self.cfg.cut_interval_ms)
    }

    /// Whether an event lies outside the origin span: by its commit time on the primary; by
    /// its position on a replica (the primary's watermark has passed it, so the primary's
    /// positions around it are known).
    fn outside_span(&mut self, stream: StreamId, ev: &Event) -> bool {
        let (from, to) = self.cfg.origin_span;
        if stream == PRIMARY {
            if to.is_some_and(|t| ev.ts_ms >= t) {
                self.span_out = Some(self.span_out.map_or(ev.position, |o| o.min(ev.position)));
                return true;
            }
            if from.is_some_and(|f| ev.ts_ms < f) {
                return true;
            }
            self.span_lo = Some(self.span_lo.map_or(ev.position, |l| l.min(ev.position)));
            return false;
        }
        let after_start = match from {
            None => true,
            Some(_) => self.span_lo.is_some_and(|lo| ev.position.tx >= lo.tx),
        };
        let before_end = self.span_out.is_none_or(|o| ev.position.tx < o.tx);
        !(after_start && before_end)
    }

    /// The primary's window holding position `p` (the primary's watermark has passed `p`).
    fn window_of(&self, p: Position) -> i64 {
        self.window_reaching(p.tx).unwrap_or_else(|| {
            self.bounds
                .keys()
                .next_back()
                .copied()
                .unwrap_or(self.open_floor.max(0))
        })
    }

    /// The first of the primary's windows that reaches transaction `tx`: by transaction, as
    /// all events of one transaction share its commit time, so its window.
    fn window_reaching(&self, tx: u64) -> Option<i64> {
        self.bounds
            .range(self.open_floor.min(self.first_bound())..)
            .find(|(_, b)| b.last.tx >= tx)
            .map(|(w, _)| *w)
    }

    fn first_bound(&self) -> i64 {
        self.bounds.keys().next().copied().unwrap_or(i64::MAX)
    }

    #[allow(clippy::too_many_arguments)]
    fn drill_observe(
        &mut self,
        stream: StreamId,
        table: TableId,
        range: u64,
        key: Vec<u8>,
        key_schema: u32,
        w: i64,
        ev: &Event,
        vid: u32,
        image: Option<Vec<u8>>,
    ) {
        let n = self.streams.len();
        let idx = match self.drill_index.get(&(table, key.clone())) {
            Some(i) => *i,
            None => {
                self.drill_keys.push(KeyEntry {
                    key: key.clone(),
                    key_schema,
                    sides: (0..n).map(|_| KeySide::default()).collect(),
                });
                let i = self.drill_keys.len() - 1;
                self.drill_index.insert((table, key), i);
                self.drill_by_range
                    .entry((table, range))
                    .or_default()
                    .push(i);
                i
            }
        };
        let side = &mut self.drill_keys[idx].sides[stream as usize];
        let d = Lanes::delta(ev.before, ev.after);
        let e = Lanes::of(crate::digest::event_hash(
            ev.position.tx,
            ev.before,
            ev.after,
        ));
        let row = if ev.after.is_some() { image } else { None };
        let img = Some((ev.position, ev.op, vid, row));
        match side.windows.iter_mut().find(|(dw, ..)| *dw == w) {
            Some((_, l, evs, last)) => {
                l.add(d);
                evs.add(e);
                if last.as_ref().is_none_or(|(p, ..)| ev.position >= *p) {
                    *last = img;
                }
            }
            None => side.windows.push((w, d, e, img)),
        }
    }

    /// Moves watermarks with the clock at `now_ms`, closes and compares windows, and appends
    /// the verdicts reached to `out`.
    pub fn advance(
        &mut self,
        now_ms: i64,
        src: &mut dyn SchemaSource,
        out: &mut Vec<Divergence>,
    ) -> Result<(), SchemaUnavailable> {
        if now_ms > self.now_ms {
            self.now_ms = now_ms;
        }
        for s in &mut self.streams {
            s.clock.refresh_all();
        }
        // What was learned of the producers' skew fades by half per minute without a new high.
        if self.skew_seen_at == i64::MIN && self.now_ms != i64::MIN {
            self.skew_seen_at = self.now_ms;
        }
        if self.skew_seen > 0 && self.now_ms.saturating_sub(self.skew_seen_at) >= 60_000 {
            self.skew_seen /= 2;
            self.skew_seen_at = self.now_ms;
        }
        let wm = self.watermark(PRIMARY);
        if wm > self.primary_wm {
            self.primary_wm = wm;
        }
        self.drain_parked(src, out)?;
        out.append(&mut self.deferred);
        self.finalize_primary_windows();
        for r in 1..self.streams.len() as StreamId {
            self.compare_ready(r, out);
            self.release_confirmed(r, out);
            self.release_heard(r, out);
            self.check_silence(r, out);
        }
        self.drop_compared();
        Ok(())
    }

    /// End of a bounded input (a replay, a capture): nothing more will come, so every window
    /// closes and every replica is compared with what it sent — a replica that never reached
    /// the primary's last positions is missing those events, not late. A live service never
    /// calls this; on shutdown it leaves open windows to the next run.
    pub fn finish(
        &mut self,
        src: &mut dyn SchemaSource,
        out: &mut Vec<Divergence>,
    ) -> Result<(), SchemaUnavailable> {
        self.set_all_progress(Progress::Ended);
        let far = self.now_ms.saturating_add(
            self.cfg
                .idle_grace_ms
                .saturating_add(self.cfg.cut_interval_ms.saturating_mul(2))
                .saturating_add(1),
        );
        // The primary has passed all it ever will: records parked ahead of it (positions it
        // never wrote) are verified now, in its last window, before that window is compared.
        self.primary_wm = Position::MAX;
        self.advance(far, src, out)?;
        self.ended = true;
        self.advance(far, src, out)?;
        self.start_remaining(out);
        // Tables a replica stopped sending before the input ended: silent when the primary
        // went on writing them for a while (a few windows), else just missing their last rows.
        let quiet_enough = self
            .cfg
            .cut_interval_ms
            .saturating_mul(2)
            .max(self.cfg.idle_grace_ms);
        for r in 1..self.streams.len() {
            let absent = std::mem::take(&mut self.streams[r].absent);
            for (table, held) in absent {
                let last_ms = |s: usize| {
                    self.streams[s]
                        .topics
                        .iter()
                        .filter(|t| self.topics[**t as usize].table == table)
                        .map(|t| self.topics[*t as usize].last_ms)
                        .max()
                        .unwrap_or(i64::MIN)
                };
                let quiet = last_ms(PRIMARY as usize).saturating_sub(last_ms(r));
                let topic = self.streams[r]
                    .topics
                    .iter()
                    .copied()
                    .find(|t| self.topics[*t as usize].table == table);
                if quiet < quiet_enough {
                    for (_, d) in held {
                        self.emit(d, out);
                    }
                    continue;
                }
                if let Some(t) = topic {
                    if self.topics[t as usize].silent {
                        continue;
                    }
                    self.topics[t as usize].silent = true;
                }
                let first = held
                    .iter()
                    .filter_map(|(_, d)| d.window)
                    .min_by_key(|w| w.id);
                let mut d = Divergence::new(Kind::StreamSilent, &self.streams[r].name, self.now_ms);
                d.table = Some(self.tables[table as usize].name.clone());
                d.window = first;
                let rwm = self.watermark(r as StreamId);
                d.lag = Some(LagInfo {
                    primary_position: self.primary_wm,
                    replica_position: rwm,
                    positions_behind: self.primary_wm.tx.saturating_sub(rwm.tx),
                    ms_behind: quiet,
                });
                self.emit(d, out);
            }
        }
        Ok(())
    }

    /// Verifies the parked records the primary has now passed, partition by partition in
    /// offset order.
    fn drain_parked(
        &mut self,
        src: &mut dyn SchemaSource,
        out: &mut Vec<Divergence>,
    ) -> Result<(), SchemaUnavailable> {
        let wm = self.primary_wm;
        for s in 1..self.streams.len() {
            if self.streams[s].parked == 0 {
                continue;
            }
            for ti in 0..self.streams[s].topics.len() {
                let t = self.streams[s].topics[ti] as usize;
                for pi in 0..self.topics[t].parts.len() {
                    while self.topics[t].parts[pi]
                        .parked
                        .front()
                        .is_some_and(|p| p.position <= wm)
                    {
                        let p = self.topics[t].parts[pi]
                            .parked
                            .pop_front()
                            .expect("checked");
                        self.topics[t].stats.parked -= 1;
                        self.streams[s].parked -= 1;
                        let (topic, partition, offset, timestamp_ms) = p.rec_meta;
                        let rec = Record {
                            topic,
                            partition,
                            offset,
                            timestamp_ms,
                            key: p.key.as_deref(),
                            value: Some(&p.value),
                        };
                        match self.ingest_record(&rec, src) {
                            Ok(Ingested::Poison(d)) => out.push(*d),
                            Ok(_) => {}
                            Err(e) => {
                                self.topics[t].stats.parked += 1;
                                self.streams[s].parked += 1;
                                self.topics[t].parts[pi].parked.push_front(p);
                                return Err(e);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// How far a stream has been read: the minimum over its partitions of what each is known
    /// to have passed — its last position, or, for a partition read to its end when the clock
    /// read T, every position its stream wrote before T − `publish_skew_ms` (anything it still
    /// receives is stamped later, so comes later in the stream's order). Ended partitions do
    /// not count; with all of them ended the stream has reached only what it has sent.
    fn watermark(&self, s: StreamId) -> Position {
        self.watermark_strict(s, false)
    }

    /// [`watermark`](Self::watermark); `strict`: a transaction counts as passed only once a
    /// later one was written (the clock's answer is the last transaction seen, of which more
    /// may come when its connector failed while writing it).
    fn watermark_strict(&self, s: StreamId, strict: bool) -> Position {
        let stream = &self.streams[s as usize];
        let skew = self.publish_skew_ms();
        let following = stream.clock.before(self.now_ms.saturating_sub(skew));
        // Partitions found read to their end by one answer share its time: asked once.
        let mut asked: Option<(i64, Option<Position>)> = None;
        let mut min: Option<Position> = None;
        let mut max = Position::ZERO;
        for t in &stream.topics {
            for p in &self.topics[*t as usize].parts {
                let last = p.last_pos.unwrap_or(Position::ZERO);
                max = max.max(last);
                let complete = match p.progress {
                    Progress::Ended => continue,
                    Progress::Reading => None,
                    Progress::CaughtUpAt(at) => match asked {
                        Some((a, c)) if a == at => c,
                        _ => {
                            let c = stream.clock.before(at.saturating_sub(skew));
                            asked = Some((at, c));
                            c
                        }
                    },
                    Progress::Following => following,
                };
                // Other events of its last transaction may follow (they share its position):
                // read, the partition has passed only the positions before it.
                let passed = before_tx(last);
                let complete = complete.map(|c| if strict { before_tx(c) } else { c });
                let reached = complete.map_or(passed, |c| c.max(passed));
                min = Some(min.map_or(reached, |m| m.min(reached)));
            }
        }
        min.unwrap_or(max)
    }

    /// The record time every partition of the stream is known to be read through (skew
    /// allowed for); `i64::MIN` while any partition may hold unread records.
    fn read_through(&self, s: StreamId) -> i64 {
        let skew = self.publish_skew_ms();
        let mut min = i64::MAX;
        for t in &self.streams[s as usize].topics {
            for p in &self.topics[*t as usize].parts {
                let at = match p.progress {
                    Progress::Reading => return i64::MIN,
                    Progress::CaughtUpAt(at) => at,
                    Progress::Following => self.now_ms,
                    Progress::Ended => continue,
                };
                min = min.min(at.saturating_sub(skew));
            }
        }
        min
    }

    fn finalize_primary_windows(&mut self) {
        let wm = self.primary_wm;
        let read_through = self.read_through(PRIMARY);
        let keys: Vec<i64> = self
            .bounds
            .iter()
            .filter(|(_, b)| b.final_at.is_none())
            .map(|(w, _)| *w)
            .collect();
        for w in &keys {
            // Final once the primary has passed the start of a later window; or, at low
            // traffic, once the primary is idle and the window's time is over.
            let later_passed = self
                .bounds
                .range((Excluded(*w), Unbounded))
                .any(|(_, b)| b.first <= wm);
            let time_over = read_through
                >= self
                    .window_end_ms(*w)
                    .saturating_add(self.cfg.idle_grace_ms)
                && self.bounds[w].last <= wm;
            if later_passed || time_over {
                self.bounds.get_mut(w).expect("listed").final_at = Some(self.now_ms);
                if time_over && !later_passed {
                    self.open_floor = self.open_floor.max(w.saturating_add(1));
                }
            } else {
                break;
            }
        }
    }

    fn window_ref(&self, w: i64) -> WindowRef {
        let b = self.bounds[&w];
        WindowRef {
            id: w,
            first: b.first,
            last: b.last,
            start_ms: w.saturating_mul(self.cfg.cut_interval_ms),
            end_ms: self.window_end_ms(w),
        }
    }

    fn compare_ready(&mut self, r: StreamId, out: &mut Vec<Divergence>) {
        // At the end of a bounded input every replica has sent all it will, unless it fell
        // silent: then its missing tail is the silence already reported, not a mismatch.
        let rwm = if self.ended && !self.stream_silent(r) {
            Position::MAX
        } else {
            self.watermark(r)
        };
        let ready: Vec<(i64, Bound)> = self
            .bounds
            .range(self.after_done(r))
            .map(|(w, b)| (*w, *b))
            .collect();
        for (w, b) in ready {
            let Some(final_at) = b.final_at else { break };
            if rwm < b.last {
                // Not reached yet. Judged by the clock only when the replica has nothing more
                // to read: while records are still pending, their times say how late they are.
                let behind = self.now_ms.saturating_sub(final_at);
                // Records may still be on their way for the skew allowed for: that much of the
                // wait is not the replica's.
                let behind = behind.saturating_sub(self.publish_skew_ms());
                if behind >= self.cfg.max_replica_lag_ms
                    && self.streams[r as usize].lagging.is_none()
                    && self.caught_up(r)
                {
                    let window = self.window_ref(w);
                    self.start_lag(r, window, rwm, behind, out);
                }
                break;
            }
            // How late the replica wrote this window: its last record's time against the end
            // of the window at the origin. Taken from the records, so the same in any replay.
            let written = self.streams[r as usize]
                .windows
                .get(&w)
                .map_or(i64::MIN, |a| a.max_record_ms);
            let primary_written = self.streams[PRIMARY as usize]
                .windows
                .get(&w)
                .map_or(i64::MIN, |a| a.max_record_ms);
            self.compare(w, r, out);
            self.streams[r as usize].done_upto = Some(w);
            self.streams[r as usize].closed_pos = Some(b.last);
            if written == i64::MIN || primary_written == i64::MIN {
                continue;
            }
            let window = self.window_ref(w);
            // How much later the replica's records of the window were written to Kafka than
            // the primary's: not against commit times, which a connector catching up, a
            // restart or a backfill writes hours after the commit on both sides alike.
            let late = written.saturating_sub(primary_written);
            match self.streams[r as usize].lagging {
                None if late >= self.cfg.max_replica_lag_ms => {
                    self.start_lag(r, window, b.last, late, out)
                }
                // Recovered once well clear of the bound (half of it), so that a replica hovering
                // around it is not reported lagging and recovered over and over.
                Some(since) if late < self.cfg.max_replica_lag_ms / 2 => {
                    self.streams[r as usize].lagging = None;
                    let mut d = Divergence::new(
                        Kind::Recovered,
                        &self.streams[r as usize].name,
                        self.now_ms,
                    );
                    d.recovered = Some(Kind::ReplicaLag);
                    d.window = Some(since);
                    self.emit(d, out);
                }
                _ => {}
            }
        }
    }

    fn start_lag(
        &mut self,
        r: StreamId,
        window: WindowRef,
        replica_position: Position,
        behind: i64,
        out: &mut Vec<Divergence>,
    ) {
        self.streams[r as usize].lagging = Some(window);
        let mut d = Divergence::new(
            Kind::ReplicaLag,
            &self.streams[r as usize].name,
            self.now_ms,
        );
        d.window = Some(window);
        d.lag = Some(LagInfo {
            primary_position: self.primary_wm,
            replica_position,
            positions_behind: self.primary_wm.tx.saturating_sub(replica_position.tx),
            ms_behind: behind,
        });
        self.emit(d, out);
    }

    /// Whether every partition of a stream has nothing more to read right now.
    fn caught_up(&self, s: StreamId) -> bool {
        self.streams[s as usize].topics.iter().all(|t| {
            self.topics[*t as usize]
                .parts
                .iter()
                .all(|p| p.progress != Progress::Reading)
        })
    }

    fn replica_table_pos(&self, r: StreamId, table: TableId) -> Position {
        self.streams[r as usize]
            .topics
            .iter()
            .filter(|t| self.topics[**t as usize].table == table)
            .map(|t| self.topics[*t as usize].max_pos)
            .max()
            .unwrap_or(Position::ZERO)
    }

    /// Publishes held mismatches of tables the replica has since been heard from beyond.
    fn release_heard(&mut self, r: StreamId, out: &mut Vec<Divergence>) {
        let tables: Vec<TableId> = self.streams[r as usize].absent.keys().copied().collect();
        for t in tables {
            let pos = self.replica_table_pos(r, t);
            let held = self.streams[r as usize]
                .absent
                .remove(&t)
                .unwrap_or_default();
            let (ready, keep): (Vec<_>, Vec<_>) = held.into_iter().partition(|(p, _)| pos >= *p);
            for (_, d) in ready {
                self.emit(d, out);
            }
            if !keep.is_empty() {
                self.streams[r as usize].absent.insert(t, keep);
            }
        }
    }

    fn stream_silent(&self, r: StreamId) -> bool {
        let topics = &self.streams[r as usize].topics;
        !topics.is_empty() && topics.iter().all(|t| self.topics[*t as usize].silent)
    }

    fn table_silent(&self, r: StreamId, table: TableId) -> bool {
        self.streams[r as usize]
            .topics
            .iter()
            .any(|t| self.topics[*t as usize].table == table && self.topics[*t as usize].silent)
    }

    fn emit(&mut self, d: Divergence, out: &mut Vec<Divergence>) {
        *self.stats.verdicts.entry(d.kind.to_string()).or_default() += 1;
        out.push(d);
    }

    fn offsets_for(&self, w: i64, streams: &[StreamId], table: TableId) -> Vec<OffsetRange> {
        let mut v = Vec::new();
        for s in streams {
            for t in &self.streams[*s as usize].topics {
                let topic = &self.topics[*t as usize];
                if topic.table != table {
                    continue;
                }
                for (i, p) in topic.parts.iter().enumerate() {
                    if let Some((_, first, last)) = p.offsets.iter().find(|(pw, _, _)| *pw == w) {
                        v.push(OffsetRange {
                            stream: self.streams[*s as usize].name.clone(),
                            topic: topic.name.clone(),
                            partition: i as u32,
                            first: *first,
                            last: *last,
                        });
                    }
                }
            }
        }
        v
    }

    fn compare(&mut self, w: i64, r: StreamId, out: &mut Vec<Divergence>) {
        self.stats.windows_compared += 1;
        let mut racc = self.streams[r as usize]
            .windows
            .remove(&w)
            .unwrap_or_default();
        if !matches!(self.streams[r as usize].start, Start::Started) {
            match self.compare_before_start(w, r, racc, out) {
                Some(acc) => racc = acc,
                None => return,
            }
        }
        let empty = WindowAcc::default();
        let pacc = self.streams[PRIMARY as usize]
            .windows
            .get(&w)
            .unwrap_or(&empty);
        let mut keys: Vec<((TableId, u64), RangeDigest)> = pacc
            .digests
            .iter()
            .copied()
            .chain(
                racc.digests
                    .iter()
                    .filter(|(k, _)| !pacc.digests.contains_key(k))
                    .map(|(k, _)| (*k, RangeDigest::default())),
            )
            .collect();
        keys.sort_unstable_by_key(|(k, _)| *k);
        let mut mismatches = Vec::new();
        let mut recovered = Vec::new();
        for (k, pd) in keys {
            let Some(rd) = racc
                .digests
                .get(&k)
                .copied()
                .or_else(|| (!self.table_silent(r, k.0)).then(RangeDigest::default))
            else {
                // A silent replica table sent nothing: that is the StreamSilent verdict.
                continue;
            };
            let div = &mut self.streams[r as usize].divergent;
            let was_divergent = div.contains_key(&k);
            let mut d = div.get(&k).copied().unwrap_or_default();
            d.add(rd.lanes);
            d.sub(pd.lanes);
            if d.is_zero() {
                div.remove(&k);
            } else {
                div.insert(k, d);
            }
            // A window whose state change differs is a mismatch; so is one made of other
            // events, unless those events are what brought a diverged range back in line.
            if pd.lanes != rd.lanes || !(pd.agrees(&rd) || (was_divergent && d.is_zero())) {
                mismatches.push((k, pd, rd));
            } else if was_divergent && d.is_zero() {
                recovered.push(k);
            }
        }
        let window = self.window_ref(w);
        let rname = self.streams[r as usize].name.clone();

        // Schema drift first: it is the cause the data mismatches of the same window follow from.
        self.report_drift(r, window, &racc, out);

        let mismatch_tables: Vec<TableId> = mismatches.iter().map(|((t, _), _, _)| *t).collect();
        let primary_last: Vec<(TableId, Position)> = self.streams[PRIMARY as usize]
            .windows
            .get(&w)
            .map(|p| p.table_last.clone())
            .unwrap_or_default();
        let confirmed = self.confirmed(r, window.last);
        for ((table, range), pd, rd) in mismatches {
            let mut d = self.mismatch(r, (table, range), Some(window), &pd, &rd);
            d.offsets = self.offsets_for(w, &[PRIMARY, r], table);
            d.keys = self.key_diffs(w, r, table, range);
            if !confirmed {
                let (mut state, mut events) = (rd.lanes, rd.events);
                state.sub(pd.lanes);
                events.sub(pd.events);
                let needed = primary_last
                    .iter()
                    .find(|(t, _)| *t == table)
                    .map(|(_, p)| *p);
                self.hold(r, d, (table, range), w, (state, Some(events)), needed);
                continue;
            }
            // Held while this replica has sent nothing of the table beyond the primary's last
            // change of it in the window: it may have stopped sending the table.
            let needed = primary_last
                .iter()
                .find(|(t, _)| *t == table)
                .map(|(_, p)| *p);
            match needed {
                Some(p) if self.replica_table_pos(r, table) < p => self.streams[r as usize]
                    .absent
                    .entry(table)
                    .or_default()
                    .push((p, d)),
                _ => self.emit(d, out),
            }
        }
        self.release_heard(r, out);
        self.record_timeline(
            r,
            window,
            &pacc_tables_and(&racc, self.streams[PRIMARY as usize].windows.get(&w)),
            &racc,
            &mismatch_tables,
        );
        for (table, range) in recovered {
            let mut d = Divergence::new(Kind::Recovered, &rname, self.now_ms);
            d.recovered = Some(Kind::DataMismatch);
            d.table = Some(self.tables[table as usize].name.clone());
            d.range = Some(range);
            d.range_label = Some(self.cfg.ranges.describe(range));
            d.window = Some(window);
            self.emit(d, out);
        }
    }

    /// A DataMismatch of replica `r` in a range, with both sides' digests.
    fn mismatch(
        &self,
        r: StreamId,
        (table, range): (TableId, u64),
        window: Option<WindowRef>,
        p: &RangeDigest,
        rd: &RangeDigest,
    ) -> Divergence {
        let mut d = Divergence::new(
            Kind::DataMismatch,
            &self.streams[r as usize].name,
            self.now_ms,
        );
        d.table = Some(self.tables[table as usize].name.clone());
        d.range = Some(range);
        d.range_label = Some(self.cfg.ranges.describe(range));
        d.window = window;
        d.primary = Some(Side {
            digest: p.lanes.hex(),
            ops: p.ops,
        });
        d.replica_side = Some(Side {
            digest: rd.lanes.hex(),
            ops: rd.ops,
        });
        d
    }

    /// Opens a SchemaDrift episode for each table of the window a replica wrote with another
    /// row schema than the primary's, and closes those the replica wrote alike again.
    fn report_drift(
        &mut self,
        r: StreamId,
        window: WindowRef,
        racc: &WindowAcc,
        out: &mut Vec<Divergence>,
    ) {
        let rname = self.streams[r as usize].name.clone();
        let mut drift: Vec<(&TableId, &DriftObs)> = racc.drift.iter().collect();
        drift.sort_by_key(|(t, _)| **t);
        for (table, obs) in drift {
            if self.streams[r as usize].drifting.contains_key(table) {
                continue;
            }
            self.streams[r as usize].drifting.insert(*table, ());
            let d = self.drift_verdict(&rname, *table, obs, window);
            self.emit(d, out);
        }
        let rtables: Vec<TableId> = racc.tables.keys().copied().collect();
        let ended: Vec<TableId> = self.streams[r as usize]
            .drifting
            .keys()
            .filter(|t| rtables.contains(t) && !racc.drift.contains_key(t))
            .copied()
            .collect();
        for t in ended {
            self.streams[r as usize].drifting.remove(&t);
            let mut d = Divergence::new(Kind::Recovered, &rname, self.now_ms);
            d.recovered = Some(Kind::SchemaDrift);
            d.table = Some(self.tables[t as usize].name.clone());
            d.window = Some(window);
            self.emit(d, out);
        }
    }

    fn record_timeline(
        &mut self,
        r: StreamId,
        window: WindowRef,
        tables: &[TableId],
        racc: &WindowAcc,
        mismatched: &[TableId],
    ) {
        let lagging = self.streams[r as usize].lagging.is_some();
        for t in tables {
            let status = if racc.drift.contains_key(t) {
                WindowStatus::Drifted
            } else if mismatched.contains(t) {
                WindowStatus::Mismatched
            } else if lagging {
                WindowStatus::Lagging
            } else {
                WindowStatus::Consistent
            };
            let segs = self.timeline.entry((r, *t)).or_default();
            match segs.last_mut() {
                Some(last) if last.status == status => {
                    last.last_window = window.id;
                    last.end_ms = window.end_ms;
                    last.last_position = window.last;
                    last.windows += 1;
                }
                _ => segs.push(Segment {
                    status,
                    first_window: window.id,
                    last_window: window.id,
                    start_ms: window.start_ms,
                    end_ms: window.end_ms,
                    first_position: window.first,
                    last_position: window.last,
                    windows: 1,
                }),
            }
        }
    }

    /// Per (replica, table), the compared windows as runs of equal status.
    pub fn timeline(&self) -> Vec<(String, String, Vec<Segment>)> {
        self.timeline
            .iter()
            .map(|((r, t), segs)| {
                (
                    self.streams[*r as usize].name.clone(),
                    self.tables[*t as usize].name.clone(),
                    segs.clone(),
                )
            })
            .collect()
    }

    /// The value schemas each stream wrote each table with.
    pub fn schemas_seen(&self) -> Vec<SchemaSeen> {
        let mut out = Vec::new();
        for t in &self.topics {
            for id in t.checked.iter().filter(|id| *id & 0x8000_0000 == 0) {
                let version = self
                    .schemas
                    .get(id)
                    .and_then(|c| c.version_for(&t.value_subject));
                out.push(SchemaSeen {
                    stream: self.streams[t.stream as usize].name.clone(),
                    table: self.tables[t.table as usize].name.clone(),
                    schema_id: *id,
                    subject: t.value_subject.clone(),
                    version,
                });
            }
        }
        out
    }

    fn drift_verdict(
        &self,
        replica: &str,
        table: TableId,
        obs: &DriftObs,
        window: WindowRef,
    ) -> Divergence {
        let mut d = Divergence::new(Kind::SchemaDrift, replica, self.now_ms);
        d.table = Some(self.tables[table as usize].name.clone());
        d.window = Some(window);
        let expected = self.schemas.get(&obs.expected_id);
        let actual = self.schemas.get(&obs.actual_id);
        let fields = match (expected, actual) {
            (Some(e), Some(a)) => match (&e.layout, &a.layout) {
                (Ok(el), Ok(al)) => Schema::field_diff(&e.schema, el.row, &a.schema, al.row),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let replica_subject = self
            .topics
            .iter()
            .find(|t| self.streams[t.stream as usize].name == replica && t.table == table)
            .map(|t| t.value_subject.clone())
            .unwrap_or_default();
        let primary_subject = self.tables[table as usize]
            .value_subject_of_primary
            .clone()
            .unwrap_or_default();
        d.schema = Some(SchemaInfo {
            subject: replica_subject.clone(),
            expected_id: obs.expected_id,
            expected_version: expected.and_then(|e| e.version_for(&primary_subject)),
            actual_id: obs.actual_id,
            actual_version: actual.and_then(|a| a.version_for(&replica_subject)),
            fields,
            first_position: obs.first,
            first_ts_ms: obs.first_ts,
            events: obs.events,
        });
        d.offsets = self.offsets_for(window.id, &[self.stream_id(replica).unwrap_or(0)], table);
        d
    }

    fn key_diffs(&self, w: i64, r: StreamId, table: TableId, range: u64) -> Vec<KeyDiff> {
        let Some(idxs) = self.drill_by_range.get(&(table, range)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for i in idxs {
            let k = &self.drill_keys[*i];
            let dp = k.sides[PRIMARY as usize]
                .windows
                .iter()
                .find(|(dw, ..)| *dw == w)
                .map(|x| (x.1, x.2))
                .unwrap_or_default();
            let dr = k.sides[r as usize]
                .windows
                .iter()
                .find(|(dw, ..)| *dw == w)
                .map(|x| (x.1, x.2))
                .unwrap_or_default();
            if dp == dr {
                continue;
            }
            out.push(KeyDiff {
                key: self.render_key(k),
                primary: self.render_side(&k.sides[PRIMARY as usize], w),
                replica: self.render_side(&k.sides[r as usize], w),
            });
        }
        out.sort_by_key(|a| a.key.to_string());
        out
    }

    fn render_key(&self, k: &KeyEntry) -> serde_json::Value {
        match self.schemas.get(&k.key_schema) {
            Some(c) => json::to_json(&c.schema, c.schema.root(), &mut Reader::new(&k.key))
                .unwrap_or(serde_json::Value::Null),
            None => serde_json::Value::Null,
        }
    }

    fn render_side(&self, side: &KeySide, w: i64) -> Option<RowImage> {
        let (position, op, schema_id, image) = side.image_at(w)?;
        let row = match (image, self.schemas.get(schema_id)) {
            (Some(bytes), Some(c)) => match &c.layout {
                Ok(l) => json::to_json(&c.schema, l.row, &mut Reader::new(bytes))
                    .unwrap_or(serde_json::Value::Null),
                Err(_) => serde_json::Value::Null,
            },
            _ => serde_json::Value::Null,
        };
        Some(RowImage {
            position: *position,
            op: *op,
            row,
            schema_id: *schema_id,
        })
    }

    /// A replica table with no record for `silent_after_ms` while the primary's same table
    /// keeps writing is silent; once per episode.
    fn check_silence(&mut self, r: StreamId, out: &mut Vec<Divergence>) {
        let topics = self.streams[r as usize].topics.clone();
        for t in topics {
            let table = self.topics[t as usize].table;
            let primary_last = self.streams[PRIMARY as usize]
                .topics
                .iter()
                .filter(|pt| self.topics[**pt as usize].table == table)
                .map(|pt| self.topics[*pt as usize].last_ms)
                .max()
                .unwrap_or(i64::MIN);
            if primary_last == i64::MIN {
                continue;
            }
            let (ppos, rpos) = (
                self.replica_table_pos(PRIMARY, table),
                self.replica_table_pos(r, table),
            );
            let topic = &mut self.topics[t as usize];
            if rpos >= ppos {
                topic.behind_since = i64::MIN;
            } else if topic.behind_since == i64::MIN || rpos >= topic.behind_mark {
                // Behind anew, or it caught up with where it was behind and is behind again.
                (topic.behind_since, topic.behind_mark) = (primary_last, ppos);
            }
            let silent_for = if topic.behind_since == i64::MIN {
                0
            } else {
                self.now_ms.saturating_sub(topic.behind_since)
            };
            // Only a table with nothing left to read is silent: while its records are still
            // pending (a backlog read in another order), their times speak for it.
            let pending = self.topics[t as usize]
                .parts
                .iter()
                .any(|p| p.progress == Progress::Reading);
            let silent_now = silent_for >= self.cfg.silent_after_ms
                && (!pending || self.topics[t as usize].silent);
            let was = self.topics[t as usize].silent;
            if silent_now == was {
                continue;
            }
            self.topics[t as usize].silent = silent_now;
            if silent_now {
                self.streams[r as usize].absent.remove(&table);
            }
            let name = self.streams[r as usize].name.clone();
            let mut d = Divergence::new(
                if silent_now {
                    Kind::StreamSilent
                } else {
                    Kind::Recovered
                },
                &name,
                self.now_ms,
            );
            d.table = Some(self.tables[table as usize].name.clone());
            if silent_now {
                let rwm = self.watermark(r);
                d.lag = Some(LagInfo {
                    primary_position: self.primary_wm,
                    replica_position: rwm,
                    positions_behind: self.primary_wm.tx.saturating_sub(rwm.tx),
                    ms_behind: silent_for,
                });
            } else {
                d.recovered = Some(Kind::StreamSilent);
            }
            self.emit(d, out);
        }
    }

    /// Drops the primary's windows every replica has compared, and the per-partition state
    /// that only served them.
    fn drop_compared(&mut self) {
        let min_done = (1..self.streams.len())
            .map(|r| self.streams[r].done_upto.unwrap_or(i64::MIN))
            .min()
            .unwrap_or_else(|| {
                // No replica: the primary's windows close as soon as they are final.
                self.bounds
                    .iter()
                    .filter(|(_, b)| b.final_at.is_some())
                    .map(|(w, _)| *w)
                    .max()
                    .unwrap_or(i64::MIN)
            });
        // Windows with a mismatch not yet confirmed keep their offsets uncommitted.
        let min_done = self
            .first_provisional()
            .map_or(min_done, |w| min_done.min(w.saturating_sub(1)));
        if min_done == i64::MIN {
            return;
        }
        let dropped: Vec<i64> = self.bounds.range(..=min_done).map(|(w, _)| *w).collect();
        if dropped.is_empty() {
            return;
        }
        let last_pos = self.bounds[dropped.last().expect("non-empty")].last;
        for w in &dropped {
            self.bounds.remove(w);
            self.bounds_gen += 1;
            self.streams[PRIMARY as usize].windows.remove(w);
        }
        self.streams[PRIMARY as usize].done_upto = Some(min_done);
        self.streams[PRIMARY as usize].closed_pos = Some(last_pos);
        for t in &mut self.topics {
            let closed = self.streams[t.stream as usize].closed_pos;
            let done = self.streams[t.stream as usize].done_upto;
            for p in &mut t.parts {
                if let Some(c) = closed {
                    let n = p.recent.partition_point(|(x, _)| *x <= c);
                    p.recent.drain(..n);
                }
                if let Some(d) = done {
                    // (Snapshot reads stay until their states compared: see `baseline`.)
                    let baseline = p
                        .offsets
                        .front()
                        .copied()
                        .filter(|(w, ..)| *w == BASELINE_W);
                    if baseline.is_some() {
                        p.offsets.pop_front();
                    }
                    while p
                        .offsets
                        .front()
                        .is_some_and(|(w, _, _)| *w <= d.min(min_done))
                    {
                        p.offsets.pop_front();
                    }
                    if let Some(b) = baseline {
                        p.offsets.push_front(b);
                    }
                }
            }
        }
        for k in &mut self.drill_keys {
            for s in &mut k.sides {
                let settled = s
                    .windows
                    .iter()
                    .filter(|(w, .., img)| *w <= min_done && img.is_some())
                    .max_by_key(|(w, ..)| *w)
                    .and_then(|(.., i)| i.clone());
                if settled.is_some() {
                    s.settled = settled;
                }
                for (_, d, ..) in s.windows.iter().filter(|(w, ..)| *w <= min_done) {
                    s.settled_state.add(*d);
                }
                s.windows.retain(|(w, ..)| *w > min_done);
            }
        }
    }

    /// The smallest offset of this partition that is not yet settled — fed into a window not
    /// yet compared by every replica, or parked ahead of the primary. Offsets below it may be
    /// committed; `None` when everything fed so far is settled.
    pub fn pending_offset(&self, topic: TopicId, partition: u32) -> Option<i64> {
        let part = self.topics[topic as usize].parts.get(partition as usize)?;
        let windows = part.offsets.iter().map(|(_, first, _)| *first).min();
        let parked = part.parked.front().map(|p| p.rec_meta.2);
        match (windows, parked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How long (ms of the verifier's clock) the oldest window a replica has not reached has
    /// been closed on the primary.
    pub fn replica_lag_ms(&self, replica: &str) -> i64 {
        let Some(r) = self.stream_id(replica) else {
            return 0;
        };
        self.bounds
            .range(self.after_done(r))
            .next()
            .and_then(|(_, b)| b.final_at)
            .map_or(0, |f| self.now_ms.saturating_sub(f).max(0))
    }

    /// The episodes in progress.
    pub fn checkpoint(&self) -> Checkpoint {
        let mut c = Checkpoint::default();
        for s in &self.streams[1..] {
            let mut drifting: Vec<(String, String)> = s
                .drifting
                .keys()
                .map(|t| (s.name.clone(), self.tables[*t as usize].name.clone()))
                .collect();
            drifting.sort();
            c.drifting.extend(drifting);
            if let Some(w) = s.lagging {
                c.lagging.push((s.name.clone(), w));
            }
        }
        for t in self.topics.iter().filter(|t| t.silent) {
            c.silent.push((
                self.streams[t.stream as usize].name.clone(),
                self.tables[t.table as usize].name.clone(),
            ));
        }
        c.skew_seen_ms = self.skew_seen;
        c.started = (1..self.streams.len() as StreamId)
            .filter(|r| self.started_id(*r))
            .map(|r| self.streams[r as usize].name.clone())
            .collect();
        c
    }

    /// Continues the episodes of a checkpoint (after [`Engine::add_topic`] for every topic).
    pub fn restore(&mut self, c: &Checkpoint) {
        if c.skew_seen_ms > self.skew_seen {
            // Fades from the first clock reading on, as if just seen.
            self.skew_seen = c.skew_seen_ms;
            self.skew_seen_at = i64::MIN;
        }
        for (replica, table) in &c.drifting {
            if let (Some(r), Some(t)) = (
                self.stream_id(replica),
                self.tables.iter().position(|x| &x.name == table),
            ) {
                self.streams[r as usize].drifting.insert(t as TableId, ());
            }
        }
        for replica in &c.started {
            if let Some(r) = self.stream_id(replica) {
                self.streams[r as usize].start = Start::Started;
            }
        }
        for (replica, w) in &c.lagging {
            if let Some(r) = self.stream_id(replica) {
                self.streams[r as usize].lagging = Some(*w);
            }
        }
        for (replica, table) in &c.silent {
            let r = self.stream_id(replica);
            for t in self.topics.iter_mut() {
                if Some(t.stream) == r && self.tables[t.table as usize].name == *table {
                    t.silent = true;
                }
            }
        }
    }

    /// Open windows per stream, for the terminal view and metrics.
    pub fn open_windows(&self) -> usize {
        self.bounds.len()
    }

    /// Records held because they are ahead of the primary.
    pub fn parked(&self) -> usize {
        self.streams.iter().map(|s| s.parked).sum()
    }

    /// The replica's watermark and how far (in positions) it is behind the primary.
    pub fn replica_positions(&self) -> Vec<(String, Position, u64)> {
        (1..self.streams.len() as StreamId)
            .map(|r| {
                let w = self.watermark(r);
                (
                    self.streams[r as usize].name.clone(),
                    w,
                    self.primary_wm.tx.saturating_sub(w.tx),
                )
            })
            .collect()
    }

    /// Whether a field-level diff exists between the primary's current schema and `id`'s, for reports.
    pub fn schema_fields(&self, expected: u32, actual: u32) -> Vec<FieldDiff> {
        match (self.schemas.get(&expected), self.schemas.get(&actual)) {
            (Some(e), Some(a)) => match (&e.layout, &a.layout) {
                (Ok(el), Ok(al)) => Schema::field_diff(&e.schema, el.row, &a.schema, al.row),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }
}

/// The last position before `p`'s transaction.
fn before_tx(p: Position) -> Position {
    if p.tx == 0 {
        Position::ZERO
    } else {
        Position {
            tx: p.tx - 1,
            order: u32::MAX,
        }
    }
}

fn pacc_tables_and(racc: &WindowAcc, pacc: Option<&WindowAcc>) -> Vec<TableId> {
    let mut v: Vec<TableId> = racc
        .tables
        .keys()
        .copied()
        .chain(pacc.into_iter().flat_map(|p| p.tables.keys().copied()))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The value of the first field of a canonical key if it is an int or long.
fn leading_int(schema: &Schema, canonical: &[u8]) -> Option<i64> {
    let root = schema.root();
    let first = match schema.node(root) {
        Node::Record { fields, .. } => fields.first()?.node,
        _ => root,
    };
    match schema.node(first) {
        Node::Int(_) | Node::Long(_) => Reader::new(canonical).read_long().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod clock_tests {
    use super::*;

    /// The index answers as a scan of every record noted would, whatever the order of notes,
    /// across folds of old buckets, between and without refreshes.
    #[test]
    fn clock_index_agrees_with_a_scan() {
        let mut next = crate::test_rng::xorshift(0x9E37_79B9_7F4A_7C15);
        let mut rnd = move |n: u64| next() % n;
        let mut idx = ClockIndex::default();
        let mut noted: Vec<(i64, Position)> = Vec::new();
        let mut now = 10_000i64;
        for i in 0..60_000u64 {
            now += rnd(3) as i64;
            // Mostly recent, sometimes well behind (a partition read late).
            let ts = now
                - if rnd(10) == 0 {
                    rnd(3000) as i64
                } else {
                    rnd(40) as i64
                };
            let p = Position {
                tx: (ts as u64) * 4 + rnd(4),
                order: 0,
            };
            idx.note(ts, p);
            noted.push((ts, p));
            if rnd(50) == 0 {
                idx.refresh_all();
            }
            if i % 97 == 0 {
                // Often about now, as the watermarks ask (the newest bucket's records count
                // once their bucket is wholly past); else anywhere in the span and before it.
                let t = if rnd(3) == 0 {
                    now + 10 - rnd(30) as i64
                } else {
                    now - rnd(4000) as i64
                };
                let limit = t.div_euclid(ClockIndex::BUCKET_MS);
                let want = noted
                    .iter()
                    .filter(|(ts, _)| ts.div_euclid(ClockIndex::BUCKET_MS) < limit)
                    .map(|(_, p)| *p)
                    .max()
                    .unwrap_or(Position::ZERO);
                if let Some(got) = idx.before(t) {
                    assert_eq!(got, want, "before({t}) after {i} notes");
                } else {
                    assert!(limit < idx.folded_below);
                }
            }
        }
        assert!(idx.folded_below > 0, "the span was folded at least once");
    }

    /// A window's digests, by slots in arrays and in the map, against a map of digests: the
    /// same digest for every key, in the order keys were first met.
    #[test]
    fn window_digests_are_found_by_their_keys() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        let mut digests = WindowDigests::with_capacity(4);
        let mut reference: HashMap<(TableId, u64), RangeDigest> = HashMap::new();
        let mut order = Vec::new();
        for i in 0..20_000u64 {
            let table = (next() % 5) as TableId;
            let range = match next() % 4 {
                0 => next() % 1024,
                1 => DENSE_RANGES - 1 - next() % 3,
                2 => DENSE_RANGES + next() % 3,
                _ => (next() % 50) ^ (1 << 63),
            };
            let key = (table, range);
            let after = Some(next() as u128);
            reference
                .entry(key)
                .or_insert_with(|| {
                    order.push(key);
                    RangeDigest::default()
                })
                .add_event(Op::Update, i, Some(i as u128), after);
            digests
                .entry(key)
                .add_event(Op::Update, i, Some(i as u128), after);
        }
        assert_eq!(digests.len(), reference.len());
        assert_eq!(digests.iter().map(|(k, _)| *k).collect::<Vec<_>>(), order);
        for (key, d) in digests.iter() {
            assert!(digests.contains_key(key));
            assert_eq!(Some(d), reference.get(key), "{key:?}");
            assert_eq!(digests.get(key), reference.get(key), "{key:?}");
        }
        for key in [
            (7, 3),
            (0, DENSE_RANGES + 100),
            (1, 1 << 63),
            (4, DENSE_RANGES - 1 - 3),
        ] {
            assert_eq!(
                digests.contains_key(&key),
                reference.contains_key(&key),
                "{key:?}"
            );
        }
    }

    /// The remembered bucket is the division's, for times in any order, near and far.
    #[test]
    fn the_last_bucket_is_the_divisions() {
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
        for width in [1i64, 10, 200, 7919] {
            let mut last = LastBucket::default();
            let mut t = 0i64;
            for _ in 0..100_000 {
                let x = next();
                t = match x % 8 {
                    0 => x as i64,
                    1 => i64::MIN + (x % 1000) as i64,
                    2 => t.saturating_neg(),
                    _ => t.saturating_add((x % 64) as i64 - 16),
                };
                assert_eq!(last.of(t, width), t.div_euclid(width), "{t} / {width}");
            }
        }
    }
}
