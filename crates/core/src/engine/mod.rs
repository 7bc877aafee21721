//! The verification engine: records in, verdicts out. Synchronous and free of I/O; the Kafka
//! service, the replay command and the demo all drive this same code.
//!
//! Per record: decode it (see [`crate::decode`]: the row images' hashes, the key's), bucket
//! the key, drop duplicates by the partition's position high-water mark, and add the event's
//! delta to the digest of its (stream, table, range, window). Per batch ([`Engine::advance`]): move the watermarks, close
//! windows, compare each replica's windows with the primary's and emit verdicts.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound::{Excluded, Unbounded};

use crate::decode::{ConfluentAvro, Decoder};
use crate::digest::{KeyRanges, Lanes, Op, RangeDigest, RowHasher, event_hash, table_seed};
use crate::envelope::{Event, Position};
use crate::hashmap::FastMap;
use crate::verdict::{
    Divergence, Drift, Finding, KeyDiff, Kind, LagInfo, Mismatch, OffsetRange, PoisonInfo,
    RangeRef, Recovery, RowImage, SchemaInfo, Side, Sides, Unverified, WindowRef,
};

mod baseline;
mod bounds;
mod checkpoint;
mod clock;
mod compare;
mod config;
mod confirm;
mod drill;
mod elsewhere;
mod holding;
mod ingest;
mod span;
mod timeline;
mod topics;
mod windows;

#[cfg(test)]
mod tests;

pub use crate::decode::SchemaUnavailable;
pub use bounds::{Held, Limits};
pub use checkpoint::Checkpoint;
pub use clock::FutureRecord;
pub use config::{Drill, EngineConfig, LagBy, Timing, TimingError};
pub use elsewhere::Reach;
pub use timeline::{SchemaSeen, Segment, WindowStatus};

use clock::{ClockIndex, LastBucket, Skew};
use compare::pacc_tables_and;
use drill::KeyStates;
use ingest::Parked;
use windows::{BASELINE_W, Bound, Bounds, DriftObs, WindowAcc, WindowDigests};

pub type StreamId = u16;
pub type TopicId = u32;
pub type TableId = u16;

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
    /// Records stamped in the future (beyond the wall clock and `future_tolerance_ms`):
    /// verified, but taken as stamped at the clock's reading.
    pub future: u64,
    /// Records of a replica in a span the engine gave up on (a memory bound was reached):
    /// not verified (see [`Kind::Unverified`]).
    pub unverified: u64,
    /// Events at positions compared before their table was known (a table found while
    /// running): not verified, on any stream alike.
    pub before_table: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EngineStats {
    pub windows_compared: u64,
    /// Windows not compared for a replica that was given up on there (see `Limits`).
    pub windows_unverified: u64,
    /// Events of keys drill-down did not follow, past `Limits::drill_keys`: their ranges are
    /// verified, but a mismatch there may not name them.
    pub drill_keys_skipped: u64,
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
    /// Origins of GTID positions seen (a failover adds one).
    pub origins: u64,
    /// Origins that came back after a later one (failbacks; see [`crate::origins`]).
    pub origin_returns: u64,
}

struct Table {
    name: String,
    seed: u64,
    /// What hashes its rows (from `seed`).
    rows: RowHasher,
    /// The primary's value schema ids with the first position each was seen at.
    refs: Vec<(u32, Position)>,
    /// The primary's topic of the table (the last added).
    primary_topic: Option<TopicId>,
    /// Positions at or below this were compared before the table was known (it was added
    /// while running): its events there are not verified, on any stream alike.
    joined: Position,
    /// Its windows up to this position were compared before a restart (see
    /// [`Checkpoint::compared_through_of`]): a record at or below it read again is a duplicate.
    compared_through: Option<Position>,
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
    /// The offset of the partition's first change (not a snapshot read). An offset, not a
    /// flag: a parked change is noted when it arrives, before the snapshot reads written
    /// ahead of it in the partition are released.
    first_change: Option<i64>,
    /// The primary's: the value schema of its last event, and the lowest position noted for
    /// it in its table's `refs` since it became the last (an event at or above it has nothing
    /// to note).
    noted: Option<(u32, Position)>,
    /// Records parked ahead of the primary, in offset order (released from the front).
    parked: VecDeque<Parked>,
    /// (bounds generation, window, lowest tx exclusive, highest tx inclusive) of the window
    /// the last record fell in.
    window_cache: Option<(u64, i64, u64, u64)>,
    /// A record stamped in the future was found here (and said).
    future: bool,
    /// With a span end: the highest position and the latest commit time of the events read
    /// here (see `Engine::passed_span`).
    span_reach: Option<(Position, i64)>,
}

struct Topic {
    name: String,
    stream: StreamId,
    table: TableId,
    parts: Vec<Part>,
    stats: TopicStats,
    last_ms: i64,
    /// When (the primary's record time) this replica topic was found behind the primary's
    /// table in position, and the primary's position then (`i64::MIN`: not behind): silence
    /// is counted from there, not from the replica's last record — both may have been quiet
    /// together for a long time before, and either may write a transaction first.
    behind_since: i64,
    behind_mark: Position,
    silent: bool,
    /// Where the replica's table had got to when it was found silent: the silence ends only
    /// once it is heard from beyond (records read again after a restart or a hand-over, from
    /// before the silence, do not end it).
    silent_mark: Position,
    /// The highest position seen on this topic.
    max_pos: Position,
}

struct Stream {
    name: String,
    topics: Vec<TopicId>,
    windows: BTreeMap<i64, WindowAcc>,
    /// Records parked over the stream's partitions, and their bytes.
    parked: usize,
    parked_bytes: usize,
    /// Spans of positions given up on (see `bounds`), ascending, disjoint.
    unverified: Vec<(Position, Position)>,
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
    /// published), the table falls silent (then StreamSilent says it all), or the table stays
    /// quiet on both sides while the replica is read past that change (see `release_heard`).
    /// Their windows, and so their offsets, are kept until then.
    absent: BTreeMap<TableId, Vec<compare::Absent>>,
    /// Tables whose SchemaDrift episode is open, with the position of the first event found
    /// drifting: a window before it (compared again after a restart) says nothing of its end.
    drifting: FastMap<TableId, Position>,
    /// The stream's snapshot: Σ H(row) of its reads per (table, range), its schema drift.
    baseline: WindowAcc,
    /// The lowest position of a change (not a snapshot read) the stream has sent.
    first_change: Option<Position>,
    /// The earliest record time of a change the stream has sent (`i64::MAX` before one).
    first_change_ms: i64,
    /// How this replica's verification has started (the primary's: unused).
    start: Start,
    /// Its starting state was compared in this run, from both streams' snapshots: reads of
    /// those snapshots that arrive after count into it (see `confirm`).
    late_reads_count: bool,
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

/// The engine, reading its records with `D`.
pub struct Engine<D: Decoder = ConfluentAvro> {
    cfg: EngineConfig,
    decoder: D,
    timeline: BTreeMap<(StreamId, TableId), Vec<Segment>>,
    streams: Vec<Stream>,
    tables: Vec<Table>,
    topics: Vec<Topic>,
    /// The primary's windows.
    bounds: Bounds,
    skew: Skew,
    primary_wm: Position,
    now_ms: i64,
    /// The wall clock as last told (`i64::MAX`: never told, nothing is in the future).
    wall_ms: i64,
    /// The first record stamped in the future of each partition.
    future: Vec<clock::FutureRecord>,
    start_ms: i64,
    /// Set by [`Engine::finish`]: the input has ended.
    ended: bool,
    /// The primary's first position inside the origin span, and first one after it.
    span_lo: Option<Position>,
    span_out: Option<Position>,
    drill: KeyStates,
    stats: EngineStats,
    /// Verdicts reached while ingesting, handed out by the next advance.
    deferred: Vec<Divergence>,
    /// Restored from a checkpoint: every window up to this position was compared by every
    /// replica before the restart, with the tables it did not name apart (each table keeps its
    /// own: `Table::compared_through`). A table found later starts from it.
    compared_through: Option<Position>,
}

const PRIMARY: StreamId = 0;

impl Engine {
    /// An engine for one primary and its replicas, by stream name, reading Debezium Avro
    /// records in the Confluent wire format.
    pub fn new(cfg: EngineConfig, primary: &str, replicas: &[&str]) -> Engine {
        let leading = matches!(cfg.ranges, KeyRanges::Integer { .. });
        let decoder = ConfluentAvro::new(cfg.position.clone(), cfg.check_subjects, leading)
            .with_rules(cfg.rules.clone());
        Engine::with_decoder(cfg, decoder, primary, replicas)
    }
}

impl<D: Decoder> Engine<D> {
    /// An engine for one primary and its replicas, by stream name, reading records with
    /// `decoder`.
    pub fn with_decoder(
        cfg: EngineConfig,
        decoder: D,
        primary: &str,
        replicas: &[&str],
    ) -> Engine<D> {
        let mk = |name: &str| Stream {
            name: name.to_string(),
            topics: Vec::new(),
            windows: BTreeMap::new(),
            parked: 0,
            parked_bytes: 0,
            unverified: Vec::new(),
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
            late_reads_count: false,
            start: Start::default(),
            provisional: Vec::new(),
        };
        let mut streams = vec![mk(primary)];
        streams.extend(replicas.iter().map(|r| mk(r)));
        Engine {
            cfg,
            decoder,
            timeline: BTreeMap::new(),
            streams,
            tables: Vec::new(),
            topics: Vec::new(),
            bounds: Bounds::default(),
            skew: Skew::default(),
            primary_wm: Position::ZERO,
            now_ms: i64::MIN,
            wall_ms: i64::MAX,
            future: Vec::new(),
            compared_through: None,
            start_ms: i64::MIN,
            ended: false,
            span_lo: None,
            span_out: None,
            drill: KeyStates::default(),
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
        self.skew.allowed(
            self.cfg.timing.publish_skew_ms,
            self.cfg.timing.max_publish_skew_ms,
        )
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

    /// Moves watermarks with the clock at `now_ms`, closes and compares windows, and appends
    /// the verdicts reached to `out`.
    pub fn advance(
        &mut self,
        now_ms: i64,
        src: &mut D::Source<'_>,
        out: &mut Vec<Divergence>,
    ) -> Result<(), SchemaUnavailable> {
        if now_ms > self.now_ms {
            self.now_ms = now_ms;
        }
        for s in &mut self.streams {
            s.clock.refresh_all();
        }
        // The decoder's counters, read here rather than at every record.
        self.stats.schema_fetches = self.decoder.fetches();
        let origins = self.decoder.origins();
        self.stats.origins = origins.len() as u64;
        self.stats.origin_returns = origins.returns();
        self.skew.fade(self.now_ms);
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
        self.enforce_limits(out);
        self.drop_compared();
        Ok(())
    }

    /// End of a bounded input (a replay, a capture): nothing more will come, so every window
    /// closes and every replica is compared with what it sent — a replica that never reached
    /// the primary's last positions is missing those events, not late. A live service never
    /// calls this; on shutdown it leaves open windows to the next run.
    pub fn finish(
        &mut self,
        src: &mut D::Source<'_>,
        out: &mut Vec<Divergence>,
    ) -> Result<(), SchemaUnavailable> {
        self.set_all_progress(Progress::Ended);
        let far = self.now_ms.saturating_add(
            self.cfg
                .timing
                .idle_grace_ms
                .saturating_add(self.cfg.timing.cut_interval_ms.saturating_mul(2))
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
            .timing
            .cut_interval_ms
            .saturating_mul(2)
            .max(self.cfg.timing.idle_grace_ms);
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
                    for a in held {
                        self.emit(a.d, out);
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
                    .filter_map(|a| a.d.window())
                    .min_by_key(|w| w.id);
                let d = self.verdict(
                    r as StreamId,
                    Finding::StreamSilent {
                        table: self.tables[table as usize].name.clone(),
                        window: first,
                        lag: self.lag_of(r as StreamId, quiet),
                    },
                );
                self.emit(d, out);
            }
        }
        self.report_never_heard(out);
        Ok(())
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
            .map
            .range(self.after_done(r))
            .next()
            .and_then(|(_, b)| b.final_at)
            .map_or(0, |f| self.now_ms.saturating_sub(f).max(0))
    }

    /// Open windows per stream, for the terminal view and metrics.
    pub fn open_windows(&self) -> usize {
        self.bounds.map.len()
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
}
