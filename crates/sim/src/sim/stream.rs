//! One server's CDC stream: what it holds, how late it runs, and the records it emits for
//! each primary transaction.

use std::collections::HashMap;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::avro::Enc;
use crate::manifest::{Fault, FaultKind};
use crate::model::{Key, Row};
use crate::partitioner::partition_for_key;
use crate::schema::Table;
use crate::world::{Change, Op, World};

use super::faults::{Armed, DupCapture, Held, Reorder, Stretch};
use super::output::Out;
use super::{Ctx, NO_FAULT, TxnMeta};

/// One server's CDC stream: the primary (index 0) or a replica.
pub(super) struct Stream {
    pub(super) name: String,
    pub(super) source_name: String,
    pub(super) topic_base: u16,
    /// Partitions of each of this stream's topics.
    pub(super) partitions: u32,
    pub(super) key_ids: [u32; 7],
    pub(super) value_ids: [[u32; 2]; 7],
    pub(super) orders_version: u8,
    pub(super) drift: bool,
    pub(super) drift_seen: bool,
    /// Whether the primary has migrated `orders` (a drifted replica has not).
    pub(super) migrated: bool,
    pub(super) delay_ms: i64,
    pub(super) jitter_ms: i64,
    pub(super) binlog_file: String,
    pub(super) binlog_pos: i64,
    pub(super) rng: ChaCha8Rng,
    /// Rows where this replica differs from the primary (None: the replica lacks the row).
    pub(super) overlay: HashMap<(Table, Key), Option<Row>>,
    /// Last emission time per (table, partition): a partition's records never go back in time.
    pub(super) last_emit: Vec<i64>,
    /// The connector reads its log in order, so its processing time never goes back either.
    pub(super) last_base: i64,
    /// While a connector that started late works through its backlog: its processing time,
    /// and its entry in [`Out::delays`].
    pub(super) catch_up: Option<(f64, usize)>,
    pub(super) armed: Vec<Armed>,
    pub(super) lag: Option<Stretch>,
    pub(super) late: Option<Stretch>,
    /// Silenced tables (None: all) and the fault; the position is set by the first silent
    /// transaction.
    pub(super) silent: Vec<(Option<Table>, usize)>,
    pub(super) reorder: Option<Reorder>,
    pub(super) dup: Option<DupCapture>,
}

/// What a stream emits for one change.
pub(super) struct Emit<'a> {
    pub(super) meta: &'a TxnMeta,
    pub(super) table: Table,
    pub(super) op: Op,
    pub(super) key: Key,
    pub(super) before: Option<Row>,
    pub(super) after: Option<Row>,
    pub(super) total_order: u32,
    pub(super) dco: u32,
    /// `source.snapshot` as an index into `encode::SNAPSHOT_FLAGS` (0: "false", not a snapshot
    /// read).
    pub(super) snap: u8,
    /// `source.pos`: the stream's binlog position of the transaction.
    pub(super) pos: i64,
    /// The manifest entry of the fault this record shows ([`NO_FAULT`]: none).
    pub(super) fault: u32,
    /// The primary's change this event reproduces as it is; None for an event a fault made up
    /// or altered.
    pub(super) primary: Option<&'a Change>,
}

/// One primary transaction, as every stream receives it.
pub(super) struct Txn<'a> {
    pub(super) meta: &'a TxnMeta,
    pub(super) changes: &'a [Change],
    /// Transaction metadata orders of each change: in the transaction and within its table.
    pub(super) orders: &'a [(u32, u32)],
    /// `source.snapshot` of each change of a snapshot chunk (empty when streaming).
    pub(super) snap: &'a [u8],
    /// Primary events before this transaction.
    pub(super) primary_events: u64,
}

impl Stream {
    pub(super) fn is_primary(&self) -> bool {
        self.topic_base == 0
    }

    pub(super) fn silenced(&self, table: Table) -> bool {
        self.silent
            .iter()
            .any(|&(t, _)| t.is_none_or(|t| t == table))
    }

    pub(super) fn replica_row(
        &self,
        table: Table,
        key: Key,
        primary_before: Option<Row>,
    ) -> Option<Row> {
        if self.overlay.is_empty() {
            return primary_before;
        }
        match self.overlay.get(&(table, key)) {
            Some(row) => *row,
            None => primary_before,
        }
    }

    /// Records that the replica now holds `row` for the key, where the primary holds `primary`.
    pub(super) fn set_row(
        &mut self,
        table: Table,
        key: Key,
        row: Option<Row>,
        primary: Option<Row>,
    ) {
        if row == primary {
            if !self.overlay.is_empty() {
                self.overlay.remove(&(table, key));
            }
        } else {
            self.overlay.insert((table, key), row);
        }
    }

    /// Applies one primary transaction: emits what this stream writes for it, when it writes
    /// it, with the faults armed on it.
    pub(super) fn emit_txn(&mut self, out: &mut Out, ctx: &Ctx, world: &mut World, txn: &Txn) {
        let &Txn {
            meta,
            changes,
            orders,
            snap,
            primary_events,
        } = txn;
        let mut base = meta.commit_ms + self.delay_ms + self.rng.random_range(0..=self.jitter_ms);
        if let Some((clock, entry)) = self.catch_up {
            // A connector that started late processes its backlog at its own pace.
            let busy = clock + changes.len() as f64 * ctx.catch_up_ms_per_event;
            if busy > base as f64 {
                base = busy.ceil() as i64;
                self.catch_up = Some((busy, entry));
            } else {
                let d = &mut out.delays[entry];
                d.caught_up_position = Some(meta.position);
                d.caught_up_timestamp_ms = Some(base.max(self.last_base));
                self.catch_up = None;
            }
        }
        // A lagging replica's records come that much later than they would otherwise, a late
        // connector's too.
        if let Some(lag) = &mut self.lag {
            if primary_events < lag.until_event {
                base += lag.delay_ms;
                lag.end_commit_ms = meta.commit_ms;
                let f = &mut out.faults[lag.fault];
                f.position.get_or_insert(meta.position);
                f.until_position = Some(meta.position);
            } else {
                // Then it catches up, applying its backlog at five times the primary's pace.
                let remaining = lag.delay_ms - 4 * (meta.commit_ms - lag.end_commit_ms);
                if remaining > 0 {
                    base += remaining;
                } else {
                    self.lag = None;
                }
            }
        }
        base = base.max(self.last_base);
        self.last_base = base;
        if let Some(late) = self.late
            && primary_events >= late.until_event
        {
            self.late = None;
        }
        // Every read of the snapshot names the binlog position it was taken at.
        let pos = self.binlog_pos;
        if !meta.snapshot {
            self.binlog_pos += 120 + 230 * changes.len() as i64;
        }
        for &(_, fault) in &self.silent {
            out.faults[fault].position.get_or_insert(meta.position);
        }

        for (i, ch) in changes.iter().enumerate() {
            let (total_order, dco) = orders[i];
            let before = if self.is_primary() {
                ch.before
            } else {
                self.replica_row(ch.table, ch.key, ch.before)
            };
            let silent = !self.silent.is_empty() && self.silenced(ch.table);
            let ev = Emit {
                meta,
                table: ch.table,
                op: ch.op,
                key: ch.key,
                before,
                after: ch.after,
                total_order,
                dco,
                snap: snap.get(i).copied().unwrap_or(0),
                pos,
                fault: NO_FAULT,
                primary: Some(ch),
            };

            if let Some(r) = self.reorder
                && r.table == ch.table
                && r.key == ch.key
            {
                match r.held {
                    None if meta.position == r.first_position => {
                        // Hold the first update back; the replica still has the old row.
                        self.reorder.as_mut().unwrap().held = Some(Held {
                            meta: *meta,
                            change: *ch,
                            total_order,
                            dco,
                        });
                        self.set_row(ch.table, ch.key, before, ch.after);
                        continue;
                    }
                    Some(held) => {
                        // The later update first, then the held one over it.
                        self.set_row(ch.table, ch.key, ch.after, ch.after);
                        self.emit(out, ctx, ev, base);
                        let late = Emit {
                            meta: &held.meta,
                            table: ch.table,
                            op: held.change.op,
                            key: ch.key,
                            before: ch.after,
                            after: held.change.after,
                            total_order: held.total_order,
                            dco: held.dco,
                            snap: 0,
                            pos,
                            fault: r.fault as u32,
                            primary: None,
                        };
                        let f = &mut out.faults[r.fault];
                        f.key = Some(ch.key.to_json(ch.table));
                        f.position = Some(held.meta.position);
                        f.other_position = Some(meta.position);
                        self.set_row(ch.table, ch.key, held.change.after, ch.after);
                        self.emit(out, ctx, late, base);
                        self.reorder = None;
                        continue;
                    }
                    None => {}
                }
            }

            if !self.armed.is_empty() && !silent {
                let hit = self.armed.iter().position(|a| {
                    a.table == ch.table
                        && match a.kind {
                            FaultKind::Dropped => ch.op == Op::Update,
                            FaultKind::Corrupted => matches!(ch.op, Op::Update | Op::Create),
                            _ => false,
                        }
                });
                if let Some(a) = hit.map(|i| self.armed.remove(i)) {
                    let mut f = Fault::new(a.kind, &self.name, Some(ch.table.name()));
                    f.key = Some(ch.key.to_json(ch.table));
                    f.position = Some(meta.position);
                    if a.kind == FaultKind::Dropped {
                        let (_, partition) = self.key_bytes(ch.table, ch.key);
                        f.detail =
                            Some("replica skipped this update; it keeps the previous row".into());
                        f.topic = Some(
                            ctx.topic_names[(self.topic_base + ch.table.index() as u16) as usize]
                                .clone(),
                        );
                        f.partition = Some(partition);
                        out.faults.push(f);
                        self.set_row(ch.table, ch.key, before, ch.after);
                        continue;
                    }
                    let mut row = ch.after.unwrap();
                    let what = row.corrupt(meta.seq);
                    f.detail = Some(format!("replica's after image differs: {what}"));
                    out.faults.push(f);
                    self.set_row(ch.table, ch.key, Some(row), ch.after);
                    let ev = Emit {
                        after: Some(row),
                        fault: (out.faults.len() - 1) as u32,
                        primary: None,
                        ..ev
                    };
                    self.emit(out, ctx, ev, base);
                    continue;
                }
            }

            self.set_row(ch.table, ch.key, ch.after, ch.after);
            if !silent {
                self.emit(out, ctx, ev, base);
            }
        }

        if !self.armed.is_empty() {
            self.fire_txn_faults(out, ctx, world, txn, pos, base);
        }
    }

    pub(super) fn version(&self, table: Table) -> u8 {
        if table == Table::Orders {
            self.orders_version
        } else {
            1
        }
    }

    pub(super) fn key_bytes(&self, table: Table, key: Key) -> (Vec<u8>, u32) {
        let mut kb = Vec::with_capacity(24);
        let mut e = Enc::new(&mut kb);
        e.wire_header(self.key_ids[table.index()]);
        key.encode(&mut e);
        let partition = partition_for_key(&kb, self.partitions);
        (kb, partition)
    }

    /// The emission time of a record: the transaction's, delayed for a late partition, and never
    /// before the partition's previous record.
    pub(super) fn emit_time(&mut self, table: Table, partition: u32, base: i64) -> i64 {
        let mut t = base;
        if let Some(late) = self.late
            && late.table == Some(table)
            && late.partition == Some(partition)
        {
            t += late.delay_ms;
        }
        let per_table = self.last_emit.len() / Table::ALL.len();
        let slot = &mut self.last_emit[table.index() * per_table + partition as usize];
        t = t.max(*slot);
        *slot = t;
        t
    }

    /// Encodes and queues one change event (and its tombstone after a delete), processed by the
    /// connector at `base`.
    pub(super) fn emit(&mut self, out: &mut Out, ctx: &Ctx, ev: Emit, base: i64) {
        let (key_bytes, partition) = self.key_bytes(ev.table, ev.key);
        let emit_ms = self.emit_time(ev.table, partition, base);
        let mut value = Vec::with_capacity(if ev.table == Table::Orders { 560 } else { 360 });
        let ts_at = self.encode_value(&mut value, &mut out.scratch, ctx, &ev, emit_ms);
        let topic = self.topic_base + ev.table.index() as u16;

        let mut fault = ev.fault;
        if self.drift
            && self.migrated
            && ev.table == Table::Orders
            && let Some(ch) = ev.primary
        {
            fault = self.note_drift(out, ch, ev.meta, fault);
        }
        if let Some(late) = self.late
            && late.table == Some(ev.table)
            && late.partition == Some(partition)
        {
            let f = &mut out.faults[late.fault];
            f.position.get_or_insert(ev.meta.position);
            f.until_position = Some(ev.meta.position);
        }
        if fault != NO_FAULT {
            let f = &mut out.faults[fault as usize];
            f.topic = None; // filled in with the offset when the record leaves the heap
            f.timestamp_ms = Some(emit_ms);
        }
        let tombstone = (ev.op == Op::Delete).then(|| key_bytes.clone());
        self.capture_dup(out, &ev, partition, &key_bytes, Some((&value, ts_at)));
        out.push(
            emit_ms,
            topic,
            partition,
            Some(key_bytes),
            Some(value),
            fault,
        );
        if let Some(k) = tombstone {
            self.capture_dup(out, &ev, partition, &k, None);
            out.push(emit_ms, topic, partition, Some(k), None, NO_FAULT);
        }
    }
}
