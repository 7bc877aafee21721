//! The simulation: the primary's transactions, each stream's view of them, faults, timing, and
//! the ordered record stream.
//!
//! Every transaction is applied by all streams at once, in order; what differs per stream is
//! what it emits (faults) and when (replication delay, lag). Records wait in a heap ordered by
//! emission time and leave it once no later transaction can emit anything earlier, so the output
//! is ordered by record timestamp and, within a partition, by emission order.

mod config;
mod encode;
mod faults;
mod output;
mod setup;
mod stream;

pub use config::{
    CATCH_UP_SPEEDUP, DEFAULT_RATE, DUPLICATE_RUN, EXTRA_ID_BASE, GtidStyle, LAG_DELAY_MS,
    LATE_PARTITION_DELAY_MS, PositionKind, Record, Scenario, SimConfig, SimError, TopicInfo,
    UNKNOWN_SCHEMA_ID,
};

use rand_chacha::ChaCha8Rng;

use crate::manifest::{FaultKind, Manifest, Migration};
use crate::model::{Key, Row};
use crate::schema::{SchemaEntry, Table};
use crate::world::{Change, Op, World};

use self::encode::{snapshot_flag, with_envelope_ts};
use self::faults::{Deferred, Planned, Reorder};
use self::output::Out;
use self::stream::{Stream, Txn};

/// Rows per snapshot transaction (chunk) of the initial snapshot.
const SNAPSHOT_CHUNK: usize = 256;
const NO_FAULT: u32 = u32::MAX;

/// The position, timing and identity of one primary transaction.
#[derive(Clone, Copy, Debug)]
struct TxnMeta {
    seq: u64,
    /// The origin of the transaction's GTID: 0 the first primary, 1 the one it failed over to.
    origin: u8,
    /// The sequence in its GTID (the origin's own count).
    gtid_seq: u64,
    /// The position as the verifier orders it: after a MySQL failover, the new origin's
    /// sequence in epoch 1 (`1 << 40 | seq`, see the core's `origins`).
    position: u64,
    lsn: u64,
    commit_ms: i64,
    /// `source.ts_ms`: the commit time (in whole seconds by default); for snapshot reads, the
    /// snapshot's start.
    source_ts_ms: i64,
    snapshot: bool,
    thread: i64,
}

/// Settings every stream reads.
struct Ctx {
    topic_names: Vec<String>,
    position: PositionKind,
    /// What precedes the sequence in `source.gtid`, per origin: `0-1-` or `<server uuid>:`,
    /// then after a failover `0-2-` or `<new server uuid>:`.
    gtid_prefixes: [String; 2],
    transaction_metadata: bool,
    events: u64,
    /// A catching-up connector's processing time per primary event, in ms.
    catch_up_ms_per_event: f64,
}

enum Phase {
    Snapshot { rows: Vec<Row>, next: usize },
    Streaming,
    Done,
}

/// A running simulation: iterate it for the records, then read [`Simulation::manifest`].
pub struct Simulation {
    cfg: SimConfig,
    topics: Vec<TopicInfo>,
    schemas: Vec<SchemaEntry>,
    world: World,
    streams: Vec<Stream>,
    out: Out,
    ctx: Ctx,
    offsets: Vec<Vec<i64>>,
    manifest: Manifest,
    phase: Phase,
    plan: Vec<Planned>,
    fault_rng: ChaCha8Rng,
    reorder_due: Option<(usize, Table, usize)>,
    forced_next: Option<(Table, Key)>,
    migration_at: Option<MigrationAt>,
    primary_events: u64,
    seq: u64,
    failover: Option<Failover>,
    lsn: u64,
    start_ns: i64,
    ns_per_event: f64,
    burst: (f64, f64, f64),
    safe_ms: i64,
    last_commit_ms: i64,
    change_orders: Vec<(u32, u32)>,
    /// The `source.snapshot` value of each change of a snapshot chunk (see [`snapshot_flag`]).
    snap_flags: Vec<u8>,
    /// `source.ts_ms` of every snapshot read: the snapshot's start, in whole seconds.
    snapshot_ts_ms: i64,
}

/// The primary's failover: due at a primary event count, or done, the new origin's first
/// transaction being `seq`.
#[derive(Clone, Copy, Debug)]
enum Failover {
    Due(u64),
    Done { seq: u64 },
}

#[derive(Clone, Copy, Debug)]
enum MigrationAt {
    Time(i64),
    Event(u64),
}

impl Simulation {
    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The topics, indexed by [`Record::topic`].
    pub fn topics(&self) -> &[TopicInfo] {
        &self.topics
    }

    /// Every schema registered for the run, in registration order.
    pub fn schemas(&self) -> &[SchemaEntry] {
        &self.schemas
    }

    /// Primary change events generated so far.
    pub fn primary_events(&self) -> u64 {
        self.primary_events
    }

    /// The ground truth; complete once the iterator is exhausted.
    pub fn manifest(&self) -> Manifest {
        let mut m = self.manifest.clone();
        m.faults = self.out.faults.clone();
        m.connector_delays = self.out.delays.clone();
        // The drift placeholder stays only if the replica emitted a drifted event.
        m.faults
            .retain(|f| f.kind != FaultKind::SchemaDrift || f.position.is_some());
        m
    }

    fn commit_ns(&self) -> i64 {
        self.start_ns + elapsed_ns(self.primary_events, self.ns_per_event, self.burst)
    }

    fn next_meta(&mut self, changes: usize, snapshot: bool) -> TxnMeta {
        // The snapshot reads rows; it commits nothing, so it takes no GTID.
        let gtid_less = snapshot && self.cfg.position == PositionKind::Gtid;
        if !gtid_less {
            self.seq += 1;
        }
        self.lsn += 96 + 212 * changes as u64 + (self.seq % 7) * 8;
        let commit_ms = self.commit_ns().div_euclid(1_000_000);
        let source_ts_ms = if snapshot {
            self.snapshot_ts_ms
        } else if self.cfg.whole_second_source_ts {
            commit_ms.div_euclid(1000) * 1000
        } else {
            commit_ms
        };
        let (origin, gtid_seq, position) = match self.failover {
            Some(Failover::Done { seq }) if !gtid_less => match self.cfg.gtid_style {
                // The new server counts its own transactions from 1.
                GtidStyle::MySql => {
                    let s = self.seq - seq + 1;
                    (1, s, (1 << 40) | s)
                }
                // Strict GTID mode: the domain's sequence goes on.
                GtidStyle::MariaDb => (1, self.seq, self.seq),
            },
            _ => (0, self.seq, self.seq),
        };
        TxnMeta {
            source_ts_ms,
            seq: self.seq,
            origin,
            gtid_seq,
            position: match self.cfg.position {
                PositionKind::Gtid => position,
                PositionKind::Lsn => self.lsn,
            },
            lsn: self.lsn,
            commit_ms,
            snapshot,
            thread: 4000 + (self.seq.wrapping_mul(2_654_435_761) % 48) as i64,
        }
    }

    /// Generates the next transaction and hands it to every stream.
    fn step(&mut self) {
        let ns = self.commit_ns();
        self.world
            .set_now(ns.div_euclid(1_000_000), ns.div_euclid(1000));
        self.snap_flags.clear();
        let snapshot = match &mut self.phase {
            Phase::Done => return,
            Phase::Snapshot { rows, next } => {
                let table = rows[*next].table();
                let end = (*next + SNAPSHOT_CHUNK).min(rows.len());
                let end = *next
                    + rows[*next..end]
                        .iter()
                        .take_while(|r| r.table() == table)
                        .count();
                self.snap_flags
                    .extend((*next..end).map(|i| snapshot_flag(rows, i)));
                self.world.changes.clear();
                self.world
                    .changes
                    .extend(rows[*next..end].iter().map(|r| Change {
                        table,
                        op: Op::Read,
                        key: r.key(),
                        before: None,
                        after: Some(*r),
                    }));
                *next = end;
                if end == rows.len() {
                    self.phase = Phase::Streaming;
                }
                true
            }
            Phase::Streaming => false,
        };
        if !snapshot {
            {
                self.streaming_preamble();
                if let Some((table, key)) = self.forced_next.take() {
                    self.world.single_update_of(table, key);
                } else if let Some((s, table, fault)) = self.reorder_due.take() {
                    match self.world.single_update(table) {
                        Some(key) => {
                            self.streams[s].reorder = Some(Reorder {
                                table,
                                key,
                                first_position: 0,
                                held: None,
                                fault,
                            });
                            self.forced_next = Some((table, key));
                        }
                        None => self.world.transaction(),
                    }
                } else {
                    self.world.transaction();
                }
            }
        }
        let changes = std::mem::take(&mut self.world.changes);
        let meta = self.next_meta(changes.len(), snapshot);
        if let Some(r) = self
            .streams
            .iter_mut()
            .filter_map(|s| s.reorder.as_mut())
            .find(|r| r.first_position == 0)
        {
            r.first_position = meta.position;
        }
        let positioned = !(snapshot && self.cfg.position == PositionKind::Gtid);
        if positioned {
            if self.manifest.first_position == 0 {
                self.manifest.first_position = meta.position;
            }
            self.manifest.last_position = meta.position;
        }
        if snapshot {
            self.manifest.snapshot_end_position = meta.position;
        }

        // Transaction metadata orders: total order and order within the table, from 1.
        self.change_orders.clear();
        let mut per_table = [0u32; 7];
        for (i, ch) in changes.iter().enumerate() {
            per_table[ch.table.index()] += 1;
            self.change_orders
                .push((i as u32 + 1, per_table[ch.table.index()]));
        }
        self.out.primary_events = self.primary_events;
        let txn = Txn {
            meta: &meta,
            changes: &changes,
            orders: &self.change_orders,
            snap: &self.snap_flags,
            primary_events: self.primary_events,
        };
        for st in &mut self.streams {
            st.emit_txn(&mut self.out, &self.ctx, &mut self.world, &txn);
        }
        self.primary_events += changes.len() as u64;
        self.world.changes = changes;
        self.last_commit_ms = meta.commit_ms;
        // No stream emits anything before its connector's processing time (which never goes
        // back) or before the next commit.
        self.safe_ms = self
            .streams
            .iter()
            .map(|st| st.last_base.max(meta.commit_ms))
            .min()
            .unwrap_or(meta.commit_ms);
        if self.primary_events >= self.cfg.events && matches!(self.phase, Phase::Streaming) {
            self.finish();
        }
    }

    /// Migration, faults coming due and redeliveries, at a transaction boundary.
    fn streaming_preamble(&mut self) {
        let commit_ms = self.commit_ns().div_euclid(1_000_000);
        if let Some(at) = self.migration_at {
            let due = match at {
                MigrationAt::Time(ms) => commit_ms >= ms,
                MigrationAt::Event(e) => self.primary_events >= e,
            };
            if due {
                self.migration_at = None;
                // The DDL is a transaction of its own: it takes a position but emits no rows.
                let meta = self.next_meta(1, false);
                self.world.currency_column = true;
                let mut skipped_by = Vec::new();
                for st in &mut self.streams {
                    st.migrated = true;
                    if st.drift {
                        skipped_by.push(st.name.clone());
                    } else {
                        st.orders_version = 2;
                    }
                }
                self.manifest.migration = Some(Migration {
                    table: "orders".into(),
                    position: meta.position,
                    timestamp_ms: meta.commit_ms,
                    from_version: 1,
                    to_version: 2,
                    skipped_by,
                });
            }
        }
        if let Some(Failover::Due(at)) = self.failover
            && self.primary_events >= at
        {
            self.fail_over(commit_ms);
        }
        while self
            .plan
            .first()
            .is_some_and(|p| p.at_event <= self.primary_events)
        {
            let p = self.plan.remove(0);
            self.fire(p, commit_ms);
        }
        let due: Vec<Deferred> = {
            let (due, keep) = std::mem::take(&mut self.out.deferred)
                .into_iter()
                .partition(|d| d.due_event <= self.primary_events);
            self.out.deferred = keep;
            due
        };
        for d in due {
            self.redeliver(d, commit_ms);
        }
    }

    /// The connector, restarted, sends a run of records again: the same key, before, after and
    /// source, with its new processing time as the envelope's `ts_ms` (as Debezium does after
    /// a crash lost its unflushed offsets).
    fn redeliver(&mut self, d: Deferred, commit_ms: i64) {
        let st = &mut self.streams[d.stream];
        let slot = d.table.index() * st.partitions as usize + d.partition as usize;
        // Not before anything the connector has already processed.
        let emit = st.last_emit[slot].max(st.last_base + 1).max(commit_ms + 1);
        st.last_emit[slot] = emit;
        let topic = st.topic_base + d.table.index() as u16;
        self.out.faults[d.fault].timestamp_ms = Some(emit);
        self.out.faults[d.fault].count = Some(d.records.len() as u64);
        for (i, (key, value, ts_at)) in d.records.into_iter().enumerate() {
            let value = value.map(|v| with_envelope_ts(&v, ts_at, emit));
            let tag = if i == 0 { d.fault as u32 } else { NO_FAULT };
            self.out.push(emit, topic, d.partition, key, value, tag);
        }
    }

    fn finish(&mut self) {
        self.phase = Phase::Done;
        let last = self.last_commit_ms;
        for d in std::mem::take(&mut self.out.deferred) {
            self.redeliver(d, last);
        }
        // A duplicate run still collecting is redelivered with what it has.
        for s in 0..self.streams.len() {
            if let Some(dup) = self.streams[s].dup.take()
                && let Some(partition) = dup.partition
            {
                let d = Deferred {
                    due_event: 0,
                    stream: s,
                    table: dup.table,
                    partition,
                    records: dup.records,
                    fault: dup.fault,
                };
                self.redeliver(d, last);
            }
        }
        self.manifest.primary_events = self.primary_events;
        self.safe_ms = i64::MAX;
    }
}

/// Synthetic time after `events` primary events: `ns_per_event` each, faster in the burst.
fn elapsed_ns(events: u64, ns_per_event: f64, (b0, b1, mult): (f64, f64, f64)) -> i64 {
    let e = events as f64;
    let in_burst = (e.min(b1) - b0).max(0.0);
    (e * ns_per_event - in_burst * ns_per_event * (1.0 - 1.0 / mult)) as i64
}

impl Iterator for Simulation {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            if let Some((emit_ms, p)) = self.out.queue.pop_due(self.safe_ms) {
                let offset = &mut self.offsets[p.topic as usize][p.partition as usize];
                let rec = Record {
                    topic: p.topic,
                    partition: p.partition,
                    offset: *offset,
                    timestamp_ms: emit_ms,
                    key: p.key,
                    value: p.value,
                    fault: (p.fault != NO_FAULT).then_some(p.fault as usize),
                };
                *offset += 1;
                self.manifest.records += 1;
                self.manifest.end_timestamp_ms = self.manifest.end_timestamp_ms.max(emit_ms);
                if p.fault != NO_FAULT {
                    let f = &mut self.out.faults[p.fault as usize];
                    f.topic = Some(self.topics[p.topic as usize].name.clone());
                    f.partition = Some(p.partition);
                    f.offset = Some(rec.offset);
                }
                return Some(rec);
            }
            if matches!(self.phase, Phase::Done) {
                return None;
            }
            self.step();
        }
    }
}
