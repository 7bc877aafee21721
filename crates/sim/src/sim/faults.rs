//! Injected faults: the plan of the `faults` scenario, their state on a stream, and what each
//! does when it comes due.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::manifest::{Fault, FaultKind};
use crate::model::{CURRENCIES, Key, Row};
use crate::schema::Table;
use crate::world::{Change, Op, World};

use super::output::Out;
use super::stream::{Emit, Stream, Txn};
use super::{
    Ctx, DUPLICATE_RUN, EXTRA_ID_BASE, Failover, GtidStyle, LAG_DELAY_MS, LATE_PARTITION_DELAY_MS,
    NO_FAULT, SimConfig, Simulation, TxnMeta, UNKNOWN_SCHEMA_ID,
};

#[derive(Clone, Copy, Debug)]
pub(super) struct Planned {
    pub(super) at_event: u64,
    pub(super) kind: FaultKind,
    pub(super) stream: usize,
    pub(super) table: Option<Table>,
    pub(super) variant: u8,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Armed {
    pub(super) kind: FaultKind,
    pub(super) table: Table,
    pub(super) variant: u8,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Stretch {
    pub(super) table: Option<Table>,
    pub(super) partition: Option<u32>,
    pub(super) until_event: u64,
    pub(super) delay_ms: i64,
    pub(super) fault: usize,
    /// The commit time of the stretch's last transaction.
    pub(super) end_commit_ms: i64,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Held {
    pub(super) meta: TxnMeta,
    pub(super) change: Change,
    pub(super) total_order: u32,
    pub(super) dco: u32,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Reorder {
    pub(super) table: Table,
    pub(super) key: Key,
    pub(super) first_position: u64,
    pub(super) held: Option<Held>,
    pub(super) fault: usize,
}

#[derive(Debug)]
pub(super) struct DupCapture {
    pub(super) table: Table,
    pub(super) partition: Option<u32>,
    pub(super) records: Vec<KeyValue>,
    pub(super) fault: usize,
}

#[derive(Debug)]
pub(super) struct Deferred {
    pub(super) due_event: u64,
    pub(super) stream: usize,
    pub(super) table: Table,
    pub(super) partition: u32,
    pub(super) records: Vec<KeyValue>,
    pub(super) fault: usize,
}

/// A record's key and value bytes, and where in the value the envelope's `ts_ms` is encoded
/// (a redelivered copy carries the time it was sent again there, as Debezium's does).
pub(super) type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>, usize);

/// The `faults` scenario: every kind, a handful each, between 20% and 80% of the run.
pub(super) fn plan_faults(cfg: &SimConfig, rng: &mut ChaCha8Rng) -> Vec<Planned> {
    use FaultKind::*;
    use Table::*;
    let r1 = 1;
    let r2 = if cfg.replicas >= 2 { 2 } else { 1 };
    let mut spread: Vec<(FaultKind, usize, Option<Table>, u8)> = vec![
        (Dropped, r1, Some(Customers), 0),
        (Dropped, r2, Some(Inventory), 0),
        (Dropped, r1, Some(Orders), 0),
        (Corrupted, r1, Some(Products), 0),
        (Corrupted, r2, Some(Payments), 0),
        (Corrupted, r1, Some(Carts), 0),
        (Extra, r1, Some(Customers), 0),
        (Extra, r2, Some(Orders), 0),
        (Extra, r1, Some(Payments), 0),
        (Reordered, r1, Some(Orders), 0),
        (Reordered, r2, Some(Inventory), 0),
        (Poison, r1, Some(Orders), 0),
        (Poison, r2, Some(Customers), 1),
        (Poison, r1, Some(Payments), 2),
        (Duplicate, r1, Some(Products), 0),
        (Duplicate, r2, Some(CartItems), 0),
        (LatePartition, r2, Some(Inventory), 0),
    ];
    // A deterministic shuffle, so kinds interleave over the run.
    for i in (1..spread.len()).rev() {
        let j = rng.random_range(0..=i);
        spread.swap(i, j);
    }
    let n = cfg.events as f64;
    let mut plan: Vec<Planned> = spread
        .iter()
        .enumerate()
        .map(|(i, &(kind, stream, table, variant))| Planned {
            at_event: (n * (0.2 + 0.5 * (i as f64 + 0.5) / spread.len() as f64)) as u64,
            kind,
            stream,
            table,
            variant,
        })
        .collect();
    // Stretches and the silence sit where they cannot hide the other faults.
    plan.push(Planned {
        at_event: (n * 0.45) as u64,
        kind: Lag,
        stream: r1,
        table: None,
        variant: 0,
    });
    plan.push(Planned {
        at_event: (n * 0.78) as u64,
        kind: Silent,
        stream: r1,
        table: Some(CartItems),
        variant: 0,
    });
    plan.sort_by_key(|p| p.at_event);
    plan
}

impl Simulation {
    /// The primary fails over before the next transaction: its GTIDs come from the new
    /// origin from then on, on every stream (the replicas apply the new primary's log).
    pub(super) fn fail_over(&mut self, commit_ms: i64) {
        let seq = self.seq + 1;
        self.failover = Some(Failover::Done { seq });
        let prefix = &self.ctx.gtid_prefixes[1];
        let mut f = Fault::new(FaultKind::Failover, &self.streams[0].name, None);
        let (first, what) = match self.cfg.gtid_style {
            GtidStyle::MySql => ((1 << 40) | 1, format!("its GTIDs restart at {prefix}1")),
            GtidStyle::MariaDb => (seq, format!("its GTIDs go on as {prefix}{seq}")),
        };
        f.position = Some(first);
        f.timestamp_ms = Some(commit_ms);
        f.detail = Some(format!(
            "the primary failed over to another server: {what}; the replicas follow it"
        ));
        self.out.faults.push(f);
    }

    /// A planned fault comes due: arm it on its stream.
    pub(super) fn fire(&mut self, p: Planned, commit_ms: i64) {
        let name = self.streams[p.stream].name.clone();
        let table_name = p.table.map(|t| t.name());
        let st = &mut self.streams[p.stream];
        match p.kind {
            FaultKind::Dropped | FaultKind::Corrupted | FaultKind::Extra | FaultKind::Poison => {
                st.armed.push(Armed {
                    kind: p.kind,
                    table: p.table.unwrap(),
                    variant: p.variant,
                });
            }
            FaultKind::Reordered => {
                let mut f = Fault::new(FaultKind::Reordered, &name, table_name);
                f.detail = Some("two updates of the key applied in the wrong order; the replica ends with the earlier row".into());
                self.out.faults.push(f);
                self.reorder_due = Some((p.stream, p.table.unwrap(), self.out.faults.len() - 1));
            }
            FaultKind::Lag | FaultKind::LatePartition => {
                let stretch_events = (self.ctx.events / 20).max(100);
                let (delay_ms, partition) = if p.kind == FaultKind::Lag {
                    (LAG_DELAY_MS, None)
                } else {
                    (
                        LATE_PARTITION_DELAY_MS,
                        Some(self.fault_rng.random_range(0..st.partitions)),
                    )
                };
                let mut f = Fault::new(p.kind, &name, table_name);
                f.delay_ms = Some(delay_ms);
                f.partition = partition;
                f.topic = p
                    .table
                    .map(|t| self.topics[st.topic_base as usize + t.index()].name.clone());
                f.timestamp_ms = Some(commit_ms);
                f.detail = Some(match p.kind {
                    FaultKind::Lag => format!(
                        "replica emits {delay_ms} ms late for about {stretch_events} primary events, then catches up"
                    ),
                    _ => format!(
                        "one partition's records delayed by {delay_ms} ms for about {stretch_events} primary events"
                    ),
                });
                self.out.faults.push(f);
                let stretch = Stretch {
                    table: p.table,
                    partition,
                    until_event: self.primary_events + stretch_events,
                    delay_ms,
                    fault: self.out.faults.len() - 1,
                    end_commit_ms: commit_ms,
                };
                if p.kind == FaultKind::Lag {
                    st.lag = Some(stretch);
                } else {
                    st.late = Some(stretch);
                }
            }
            FaultKind::Silent => {
                let mut f = Fault::new(FaultKind::Silent, &name, table_name);
                f.timestamp_ms = Some(commit_ms);
                f.detail = Some(match p.table {
                    Some(t) => format!("replica stops emitting {t} from this position on"),
                    None => "replica stops emitting all tables from this position on".into(),
                });
                self.out.faults.push(f);
                st.silent.push((p.table, self.out.faults.len() - 1));
            }
            // Not planned: see `fail_over`.
            FaultKind::Failover => self.fail_over(commit_ms),
            FaultKind::Duplicate => {
                let mut f = Fault::new(FaultKind::Duplicate, &name, table_name);
                f.count = Some(DUPLICATE_RUN as u64);
                f.detail = Some(format!(
                    "{DUPLICATE_RUN} records of one partition redelivered byte-identical (at-least-once)"
                ));
                self.out.faults.push(f);
                st.dup = Some(DupCapture {
                    table: p.table.unwrap(),
                    partition: None,
                    records: Vec::with_capacity(DUPLICATE_RUN),
                    fault: self.out.faults.len() - 1,
                });
            }
            FaultKind::SchemaDrift => {}
        }
    }
}

impl Stream {
    /// `extra` and `poison` fire on the next transaction the replica applies (at binlog
    /// position `pos`, processed at `base`).
    pub(super) fn fire_txn_faults(
        &mut self,
        out: &mut Out,
        ctx: &Ctx,
        world: &mut World,
        txn: &Txn,
        pos: i64,
        base: i64,
    ) {
        let &Txn { meta, changes, .. } = txn;
        let mut i = 0;
        while i < self.armed.len() {
            let a = self.armed[i];
            if self.silenced(a.table) || !matches!(a.kind, FaultKind::Extra | FaultKind::Poison) {
                i += 1;
                continue;
            }
            self.armed.remove(i);
            if a.kind == FaultKind::Extra {
                out.extra_ids += 1;
                let row = world.phantom_row(a.table, EXTRA_ID_BASE + out.extra_ids);
                let key = row.key();
                let dco = changes.iter().filter(|c| c.table == a.table).count() as u32 + 1;
                let mut f = Fault::new(FaultKind::Extra, &self.name, Some(a.table.name()));
                f.key = Some(key.to_json(a.table));
                f.position = Some(meta.position);
                f.detail = Some("replica inserted a row the primary never wrote".into());
                out.faults.push(f);
                self.set_row(a.table, key, Some(row), None);
                let ev = Emit {
                    meta,
                    table: a.table,
                    op: Op::Create,
                    key,
                    before: None,
                    after: Some(row),
                    total_order: changes.len() as u32 + 1,
                    dco,
                    snap: 0,
                    pos,
                    fault: (out.faults.len() - 1) as u32,
                    primary: None,
                };
                self.emit(out, ctx, ev, base);
            } else {
                let Some(key) = world.random_key(a.table) else {
                    continue;
                };
                let row = self.replica_row(a.table, key, world.get(a.table, key));
                let (key_bytes, partition) = self.key_bytes(a.table, key);
                let mut value = Vec::with_capacity(512);
                let ev = Emit {
                    meta,
                    table: a.table,
                    op: Op::Update,
                    key,
                    before: row,
                    after: row,
                    total_order: 1,
                    dco: 1,
                    snap: 0,
                    pos,
                    fault: NO_FAULT,
                    primary: None,
                };
                let _ = self.encode_value(&mut value, &mut out.scratch, ctx, &ev, base);
                out.poison_count += 1;
                let detail = match a.variant {
                    0 => {
                        value[0] = 1;
                        "bad magic byte (1 instead of 0)".to_string()
                    }
                    1 => {
                        let id = UNKNOWN_SCHEMA_ID + out.poison_count;
                        value[1..5].copy_from_slice(&id.to_be_bytes());
                        format!("unknown schema id {id}")
                    }
                    _ => {
                        value.truncate(value.len() / 2);
                        format!("truncated datum ({} of its bytes)", value.len())
                    }
                };
                let mut f = Fault::new(FaultKind::Poison, &self.name, Some(a.table.name()));
                f.key = Some(key.to_json(a.table));
                f.detail = Some(detail);
                out.faults.push(f);
                let emit_ms = self.emit_time(a.table, partition, base);
                let topic = self.topic_base + a.table.index() as u16;
                out.faults.last_mut().unwrap().timestamp_ms = Some(emit_ms);
                out.push(
                    emit_ms,
                    topic,
                    partition,
                    Some(key_bytes),
                    Some(value),
                    (out.faults.len() - 1) as u32,
                );
            }
        }
    }

    /// Schema drift: the first drifted `orders` event, and every later one whose primary row has
    /// a currency other than the default (the value the outdated schema loses).
    pub(super) fn note_drift(
        &mut self,
        out: &mut Out,
        ch: &Change,
        meta: &TxnMeta,
        fault: u32,
    ) -> u32 {
        let currency = |r: Option<Row>| match r {
            Some(Row::Order(o)) => o.currency,
            _ => 0,
        };
        let lost = currency(ch.before).max(currency(ch.after));
        if !self.drift_seen {
            self.drift_seen = true;
            let idx = out.faults.iter().position(|f| {
                f.kind == FaultKind::SchemaDrift && f.replica == self.name && f.position.is_none()
            });
            if let Some(idx) = idx {
                let f = &mut out.faults[idx];
                f.key = Some(ch.key.to_json(Table::Orders));
                f.position = Some(meta.position);
                return idx as u32;
            }
        } else if lost != 0 {
            let mut f = Fault::new(FaultKind::SchemaDrift, &self.name, Some("orders"));
            f.key = Some(ch.key.to_json(Table::Orders));
            f.position = Some(meta.position);
            f.detail = Some(format!(
                "value lost to outdated schema: primary currency {}, replica reads the default USD",
                CURRENCIES[lost as usize]
            ));
            out.faults.push(f);
            if fault == NO_FAULT {
                return (out.faults.len() - 1) as u32;
            }
        }
        fault
    }

    /// Keeps a copy of a record `ev` of a duplicate run, for its redelivery; records a fault
    /// made up or altered are not part of the run.
    pub(super) fn capture_dup(
        &mut self,
        out: &mut Out,
        ev: &Emit,
        partition: u32,
        key: &[u8],
        value: Option<(&[u8], usize)>,
    ) {
        let (table, position) = (ev.table, ev.meta.position);
        let Some(dup) = self.dup.as_mut() else { return };
        if dup.table != table
            || ev.primary.is_none()
            || dup.partition.is_some_and(|p| p != partition)
        {
            return;
        }
        dup.partition = Some(partition);
        let f = &mut out.faults[dup.fault];
        f.position.get_or_insert(position);
        f.until_position = Some(position);
        f.partition = Some(partition);
        dup.records.push((
            Some(key.to_vec()),
            value.map(|(v, _)| v.to_vec()),
            value.map_or(0, |(_, at)| at),
        ));
        if dup.records.len() >= DUPLICATE_RUN {
            let dup = self.dup.take().unwrap();
            // The connector restarts a little later and re-sends from its last committed offset.
            out.deferred.push(Deferred {
                due_event: out.primary_events + out.redelivery_gap,
                stream: (self.topic_base / 7) as usize,
                table,
                partition,
                records: dup.records,
                fault: dup.fault,
            });
        }
    }
}
