//! Per record: decode it, drop duplicates, park a replica's records ahead of the primary, and
//! sum each event into the digest of its window.

use super::drill::Observed;
use super::*;
use crate::decode::{At, Decoded, Read, Role};

pub(super) struct Parked {
    pub(super) rec_meta: (TopicId, u32, i64, i64),
    pub(super) position: Position,
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Vec<u8>,
    /// The engine's clock when it was parked.
    pub(super) parked_at: i64,
}

impl<D: Decoder> Engine<D> {
    /// A record rejected before the engine could read it (a JSON envelope that does not
    /// convert): counted and timed as one the engine found undecodable.
    pub fn reject(&mut self, rec: &Record<'_>, error: String) -> Ingested {
        let rec = &self.note_arrival(rec);
        self.poison(rec, error)
    }

    #[cold]
    pub(super) fn poison(&mut self, rec: &Record<'_>, error: String) -> Ingested {
        let topic = &mut self.topics[rec.topic as usize];
        topic.stats.poison += 1;
        let d = Divergence::new(
            &self.streams[topic.stream as usize].name,
            self.now_ms.max(rec.timestamp_ms),
            Finding::PoisonEvent {
                table: self.tables[topic.table as usize].name.clone(),
                poison: PoisonInfo {
                    topic: topic.name.clone(),
                    partition: rec.partition,
                    offset: rec.offset,
                    error,
                },
            },
        );
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
        src: &mut D::Source<'_>,
    ) -> Result<Ingested, SchemaUnavailable> {
        let rec = &self.note_arrival(rec);
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
    ///
    /// Returns the record as the engine takes it: a record stamped in the future (see
    /// [`Engine::in_future`]) with the stamp of the clock's reading instead.
    #[inline]
    pub(super) fn note_arrival<'a>(&mut self, rec: &Record<'a>) -> Record<'a> {
        let mut rec = *rec;
        if self.in_future(rec.timestamp_ms) {
            rec.timestamp_ms = self.stamped_in_future(&rec);
        }
        if rec.timestamp_ms > self.now_ms {
            self.now_ms = rec.timestamp_ms;
        }
        if self.start_ms == i64::MIN {
            self.start_ms = rec.timestamp_ms;
        }
        let topic = &mut self.topics[rec.topic as usize];
        topic.last_ms = topic.last_ms.max(rec.timestamp_ms);
        let Some(part) = topic.parts.get(rec.partition as usize) else {
            return rec;
        };
        let complete_through = match part.progress {
            Progress::Reading | Progress::Ended => i64::MIN,
            Progress::CaughtUpAt(t) => t,
            Progress::Following => self.now_ms,
        };
        if complete_through != i64::MIN {
            let behind = complete_through.saturating_sub(rec.timestamp_ms);
            self.stats.arrival_behind_max_ms = self.stats.arrival_behind_max_ms.max(behind);
            self.skew.note(behind, self.now_ms);
        }
        rec
    }

    /// Decodes a record (arrived now, or parked and released) and verifies its event.
    pub(super) fn ingest_record(
        &mut self,
        rec: &Record<'_>,
        src: &mut D::Source<'_>,
    ) -> Result<Ingested, SchemaUnavailable> {
        let ti = rec.topic as usize;
        let topic = &self.topics[ti];
        let (stream, table) = (topic.stream, topic.table);
        if rec.partition as usize >= topic.parts.len() {
            let n = topic.parts.len();
            return Ok(self.poison(
                rec,
                format!(
                    "partition {} is beyond the {n} partitions known",
                    rec.partition
                ),
            ));
        }
        let Some(value) = rec.value else {
            self.topics[ti].stats.tombstones += 1;
            return Ok(Ingested::Tombstone);
        };
        let t = &self.tables[table as usize];
        let at = At {
            topic: rec.topic,
            partition: rec.partition,
            table,
            rows: &t.rows,
            seed: t.seed,
            role: if stream == PRIMARY {
                Role::Primary
            } else {
                Role::Replica {
                    refs: &t.refs,
                    passed: self.primary_wm,
                }
            },
        };
        let mut d = Decoded::EMPTY;
        let read = self.decoder.decode(&at, rec.key, value, src, &mut d);
        let read = read?;
        if read.is_ok() && self.cfg.origin_span.1.is_some() {
            self.note_reach(rec, &d.event);
        }
        match read {
            Ok(Read::Event) => {}
            Ok(Read::Ahead) => {
                self.note_change(rec, stream, d.event.op);
                return Ok(self.park(rec, d.event.position));
            }
            Err(e) => return Ok(self.poison(rec, e.to_string())),
        }
        self.note_change(rec, stream, d.event.op);
        Ok(self.verify(rec, stream, table, &d))
    }

    /// A change (not a snapshot read) marks its partition and stream as past their snapshots.
    #[inline]
    fn note_change(&mut self, rec: &Record<'_>, stream: StreamId, op: Op) {
        if op != Op::Read {
            // Read, if not yet counted: a snapshot written after it is a second one.
            let s = &mut self.streams[stream as usize];
            s.first_change_ms = s.first_change_ms.min(rec.timestamp_ms);
            let part = &mut self.topics[rec.topic as usize].parts[rec.partition as usize];
            part.first_change = Some(part.first_change.map_or(rec.offset, |o| o.min(rec.offset)));
        }
    }

    /// Verifies a decoded event: notes the primary's schemas, counts it into its window, and
    /// keeps its key's state when drilling down.
    #[inline(always)]
    fn verify(
        &mut self,
        rec: &Record<'_>,
        stream: StreamId,
        table: TableId,
        d: &Decoded,
    ) -> Ingested {
        let ev = &d.event;
        let range = self.cfg.ranges.range(d.key_hash, d.leading);
        let drill = match &self.cfg.drill {
            Drill::Off => false,
            Drill::All => true,
            Drill::Ranges(_) => self.drill.ranges.contains(&(table, range)),
        };
        if stream == PRIMARY {
            let part = &mut self.topics[rec.topic as usize].parts[rec.partition as usize];
            if part
                .noted
                .is_none_or(|(id, at)| id != d.schema || ev.position < at)
            {
                part.noted = Some((d.schema, ev.position));
                let t = &mut self.tables[table as usize];
                match t.refs.iter_mut().find(|(id, _)| *id == d.schema) {
                    Some((_, from)) => {
                        if ev.position < *from {
                            *from = ev.position;
                        }
                    }
                    None => t.refs.push((d.schema, ev.position)),
                }
            }
        }
        let drift = d.drift.then_some((d.schema, d.reference));
        let kept = drill.then(|| {
            self.decoder.kept(
                rec.key.unwrap_or_default(),
                rec.value.unwrap_or_default(),
                ev,
            )
        });
        let (counted, w) = self.count(rec, stream, table, range, ev, drift);
        if let (Ingested::Counted, Some(kept)) = (&counted, kept) {
            self.drill_observe(Observed {
                stream,
                table,
                range,
                window: w,
                event: ev,
                key_schema: d.key_schema,
                schema: d.reference,
                kept,
            });
        }
        counted
    }

    #[inline(never)]
    pub(super) fn park(&mut self, rec: &Record<'_>, position: Position) -> Ingested {
        let topic = &mut self.topics[rec.topic as usize];
        topic.stats.parked += 1;
        // Heard of (for silence and held mismatches), though verified later.
        topic.max_pos = topic.max_pos.max(position);
        let stream = topic.stream;
        let p = Parked {
            rec_meta: (rec.topic, rec.partition, rec.offset, rec.timestamp_ms),
            position,
            key: rec.key.map(<[u8]>::to_vec),
            value: rec.value.unwrap_or_default().to_vec(),
            parked_at: self.now_ms,
        };
        let size = bounds::parked_size(&p);
        topic.parts[rec.partition as usize].parked.push_back(p);
        self.streams[stream as usize].parked += 1;
        self.streams[stream as usize].parked_bytes += size;
        Ingested::Parked
    }

    /// Sums a decoded event into its window's digest; returns how it was taken, and the window
    /// when it was counted (`i64::MIN` otherwise).
    #[inline(always)]
    pub(super) fn count(
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
        if self.tables[table as usize]
            .compared_through
            .is_some_and(|c| ev.position <= c)
        {
            // Compared by every replica before a restart: read again, not summed again.
            self.topics[ti].stats.duplicates += 1;
            return (Ingested::Duplicate, i64::MIN);
        }
        // Duplicates: the same event (position and images) as one already counted in an open
        // window, or at or below a window already compared — counted as such, not summed.
        // Many events may share a position (a transaction's, without a transaction block).
        let ehash = event_hash(ev.position.tx, ev.before, ev.after);
        let id = (ev.position, ehash as u64);
        let closed = self.streams[stream as usize].closed_pos;
        let part = &mut self.topics[ti].parts[rec.partition as usize];
        if part.last_pos.is_some() && ev.position <= part.hwm {
            let seen = part.recent.binary_search(&id);
            // (An event of the partition's last transaction not seen yet is a first delivery:
            // that transaction's events are kept, see `drop_compared`; it came late.)
            let older = ev.position.tx < part.hwm.tx;
            if (older && closed.is_some_and(|c| ev.position <= c)) || seen.is_ok() {
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
        if self.before_table(table, ev.position) {
            self.topics[ti].stats.before_table += 1;
            return (Ingested::Outside, i64::MIN);
        }
        if stream != PRIMARY && self.unverified_at(stream, ev.position) {
            self.topics[ti].stats.unverified += 1;
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
            let b = match self.bounds.map.last_entry() {
                Some(e) if *e.key() == w => e.into_mut(),
                _ => {
                    if self
                        .bounds
                        .map
                        .last_key_value()
                        .is_some_and(|(k, _)| *k > w)
                        || !self.bounds.map.contains_key(&w)
                    {
                        self.bounds.generation += 1;
                    }
                    self.bounds.map.entry(w).or_insert(Bound {
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
                    if generation == self.bounds.generation
                        && lo < ev.position.tx
                        && ev.position.tx <= hi =>
                {
                    w
                }
                _ => {
                    let w = self.bounds.window_of(ev.position);
                    let hi = self.bounds.map.get(&w).map_or(0, |b| b.last.tx);
                    let lo = self
                        .bounds
                        .map
                        .range(..w)
                        .next_back()
                        .map_or(0, |(_, b)| b.last.tx);
                    if ev.position.tx <= hi {
                        self.topics[ti].parts[rec.partition as usize].window_cache =
                            Some((self.bounds.generation, w, lo, hi));
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
                    max_written_ms: i64::MIN,
                    ..WindowAcc::default()
                })
            }
        };
        acc.digests
            .entry((table, range))
            .add_hashed(ev.op, ehash, ev.before, ev.after);
        let lag_stamp = match self.cfg.lag_by {
            LagBy::RecordTime => rec.timestamp_ms,
            LagBy::CommitTime => ev.ts_ms,
        };
        acc.max_written_ms = acc.max_written_ms.max(lag_stamp);
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

    /// Verifies the parked records the primary has now passed, partition by partition in
    /// offset order. A record the primary has not passed does not hold back those behind it
    /// that it has (one record at an absurd position would hold its partition for good).
    pub(super) fn drain_parked(
        &mut self,
        src: &mut D::Source<'_>,
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
                    let parked = &mut self.topics[t].parts[pi].parked;
                    if !parked.iter().any(|p| p.position <= wm) {
                        continue;
                    }
                    let (mut due, keep): (VecDeque<Parked>, VecDeque<Parked>) =
                        std::mem::take(parked)
                            .into_iter()
                            .partition(|p| p.position <= wm);
                    self.topics[t].parts[pi].parked = keep;
                    while let Some(p) = due.pop_front() {
                        let size = bounds::parked_size(&p);
                        self.topics[t].stats.parked -= 1;
                        self.streams[s].parked -= 1;
                        self.streams[s].parked_bytes -= size;
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
                                // Back in offset order, to be released again.
                                due.push_front(p);
                                let n = due.len();
                                self.topics[t].stats.parked += n as u64;
                                self.streams[s].parked += n;
                                self.streams[s].parked_bytes +=
                                    due.iter().map(bounds::parked_size).sum::<usize>();
                                let parked = &mut self.topics[t].parts[pi].parked;
                                let mut all: Vec<Parked> =
                                    due.into_iter().chain(parked.drain(..)).collect();
                                all.sort_by_key(|p| p.rec_meta.2);
                                parked.extend(all);
                                return Err(e);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
