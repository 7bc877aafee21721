//! Comparison: a replica's closed windows against the primary's, and the verdicts — mismatch,
//! drift, lag, silence, mismatches held until the replica is heard from.

use super::*;

pub(super) fn pacc_tables_and(racc: &WindowAcc, pacc: Option<&WindowAcc>) -> Vec<TableId> {
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

/// A mismatch held until the replica is heard from beyond `needed` (see `Stream::absent`).
pub(super) struct Absent {
    /// The primary's last position of the table in the mismatch's window.
    pub(super) needed: Position,
    /// The mismatch's window (kept, with its offsets, while it is held).
    pub(super) window: Option<i64>,
    /// The clock when it was held.
    pub(super) since: i64,
    pub(super) d: Divergence,
}

impl<D: Decoder> Engine<D> {
    pub(super) fn compare_ready(&mut self, r: StreamId, out: &mut Vec<Divergence>) {
        // At the end of a bounded input every replica has sent all it will, unless it fell
        // silent: then its missing tail is the silence already reported, not a mismatch.
        let rwm = if self.ended && !self.stream_silent(r) {
            Position::MAX
        } else {
            self.watermark(r)
        };
        let ready: Vec<(i64, Bound)> = self
            .bounds
            .map
            .range(self.after_done(r))
            .map(|(w, b)| (*w, *b))
            .collect();
        for (w, b) in ready {
            let Some(final_at) = b.final_at else { break };
            if self.unverified_within(r, b.first, b.last) {
                // Given up on (see `bounds`): neither compared nor waited for.
                self.streams[r as usize].windows.remove(&w);
                self.stats.windows_unverified += 1;
                self.streams[r as usize].done_upto = Some(w);
                self.streams[r as usize].closed_pos = Some(b.last);
                continue;
            }
            if rwm < b.last {
                // Not reached yet. Judged by the clock only when the replica has nothing more
                // to read: while records are still pending, their times say how late they are.
                // Not at all when lag is by commit time (history): there the clock is how far
                // reading has got, not time, and positions the replica never reached are
                // missing, which the end of the input reports.
                if self.cfg.lag_by == LagBy::CommitTime {
                    break;
                }
                let behind = self.now_ms.saturating_sub(final_at);
                // Records may still be on their way for the skew allowed for: that much of the
                // wait is not the replica's.
                let behind = behind.saturating_sub(self.publish_skew_ms());
                if behind >= self.cfg.timing.max_replica_lag_ms
                    && self.streams[r as usize].lagging.is_none()
                    && self.caught_up(r)
                {
                    let window = self.window_ref(w);
                    self.start_lag(r, window, rwm, behind, out);
                }
                break;
            }
            // How late the replica wrote this window: its last event's time against the
            // primary's (see `lag_by`). Taken from the records, so the same in any replay and
            // whatever order the topics are read in.
            let written = self.streams[r as usize]
                .windows
                .get(&w)
                .map_or(i64::MIN, |a| a.max_written_ms);
            let primary_written = self.streams[PRIMARY as usize]
                .windows
                .get(&w)
                .map_or(i64::MIN, |a| a.max_written_ms);
            self.compare(w, r, out);
            self.streams[r as usize].done_upto = Some(w);
            self.streams[r as usize].closed_pos = Some(b.last);
            if written == i64::MIN || primary_written == i64::MIN {
                continue;
            }
            let window = self.window_ref(w);
            // How much later the replica's records of the window were written to Kafka than
            // the primary's (not against the primary's commit times, which a connector catching
            // up, a restart or a backfill writes hours after the commit on both sides alike);
            // or, by commit time, how much later the replica committed them.
            let late = written.saturating_sub(primary_written);
            match self.streams[r as usize].lagging {
                None if late >= self.cfg.timing.max_replica_lag_ms => {
                    self.start_lag(r, window, b.last, late, out)
                }
                // Recovered once well clear of the bound (half of it), so that a replica hovering
                // around it is not reported lagging and recovered over and over.
                Some(since) if late < self.cfg.timing.max_replica_lag_ms / 2 => {
                    self.streams[r as usize].lagging = None;
                    let d = self.verdict(
                        r,
                        Finding::Recovered(Recovery::ReplicaLag { window: since }),
                    );
                    self.emit(d, out);
                }
                _ => {}
            }
        }
    }

    pub(super) fn start_lag(
        &mut self,
        r: StreamId,
        window: WindowRef,
        replica_position: Position,
        behind: i64,
        out: &mut Vec<Divergence>,
    ) {
        self.streams[r as usize].lagging = Some(window);
        let lag = LagInfo {
            primary_position: self.primary_wm,
            replica_position,
            positions_behind: self.primary_wm.tx.saturating_sub(replica_position.tx),
            ms_behind: behind,
        };
        let d = self.verdict(r, Finding::ReplicaLag { window, lag });
        self.emit(d, out);
    }

    /// Whether every partition of a stream has nothing more to read right now.
    pub(super) fn caught_up(&self, s: StreamId) -> bool {
        self.streams[s as usize].topics.iter().all(|t| {
            self.topics[*t as usize]
                .parts
                .iter()
                .all(|p| p.progress != Progress::Reading)
        })
    }

    pub(super) fn replica_table_pos(&self, r: StreamId, table: TableId) -> Position {
        self.streams[r as usize]
            .topics
            .iter()
            .filter(|t| self.topics[**t as usize].table == table)
            .map(|t| self.topics[*t as usize].max_pos)
            .max()
            .unwrap_or(Position::ZERO)
    }

    /// Holds mismatch `d` of `table` until replica `r` is heard from beyond `needed`.
    pub(super) fn hold_absent(
        &mut self,
        r: StreamId,
        table: TableId,
        needed: Position,
        d: Divergence,
    ) {
        let held = Absent {
            needed,
            window: d.window().map(|w| w.id),
            since: self.now_ms,
            d,
        };
        self.streams[r as usize]
            .absent
            .entry(table)
            .or_default()
            .push(held);
    }

    /// Publishes held mismatches of tables the replica has since been heard from beyond —
    /// or that stayed quiet: the primary wrote nothing of the table after the change the
    /// replica lacks, the replica has been read past it or to its end (in all its tables), and
    /// `silent_after_ms` has passed. Nothing more of the table will come to explain it.
    pub(super) fn release_heard(&mut self, r: StreamId, out: &mut Vec<Divergence>) {
        let tables: Vec<TableId> = self.streams[r as usize].absent.keys().copied().collect();
        if tables.is_empty() {
            return;
        }
        // Read past the change, or read to its end (nothing more is coming to explain it).
        let passed = if self.caught_up(r) {
            Position::MAX
        } else {
            self.watermark(r)
        };
        for t in tables {
            let pos = self.replica_table_pos(r, t);
            let primary_pos = self.replica_table_pos(PRIMARY, t);
            let held = self.streams[r as usize]
                .absent
                .remove(&t)
                .unwrap_or_default();
            let quiet_for = self.cfg.timing.silent_after_ms;
            if self.table_silent(r, t) {
                // Held since the table fell silent (confirmed after it did): the StreamSilent
                // verdict is what the replica lacks, as for those held before (`check_silence`).
                let (ready, _silence): (Vec<_>, Vec<_>) =
                    held.into_iter().partition(|a| pos >= a.needed);
                for a in ready {
                    self.emit(a.d, out);
                }
                continue;
            }
            let (ready, keep): (Vec<_>, Vec<_>) = held.into_iter().partition(|a| {
                pos >= a.needed
                    || (primary_pos <= a.needed
                        && passed >= a.needed
                        && self.now_ms.saturating_sub(a.since) >= quiet_for)
            });
            for a in ready {
                self.emit(a.d, out);
            }
            if !keep.is_empty() {
                self.streams[r as usize].absent.insert(t, keep);
            }
        }
    }

    pub(super) fn stream_silent(&self, r: StreamId) -> bool {
        let topics = &self.streams[r as usize].topics;
        !topics.is_empty() && topics.iter().all(|t| self.topics[*t as usize].silent)
    }

    pub(super) fn table_silent(&self, r: StreamId, table: TableId) -> bool {
        self.streams[r as usize]
            .topics
            .iter()
            .any(|t| self.topics[*t as usize].table == table && self.topics[*t as usize].silent)
    }

    pub(super) fn emit(&mut self, d: Divergence, out: &mut Vec<Divergence>) {
        *self.stats.verdicts.entry(d.kind().to_string()).or_default() += 1;
        out.push(d);
    }

    /// A verdict about stream `r`, concluded now.
    pub(super) fn verdict(&self, r: StreamId, finding: Finding) -> Divergence {
        Divergence::new(&self.streams[r as usize].name, self.now_ms, finding)
    }

    pub(super) fn range_ref(&self, range: u64) -> RangeRef {
        RangeRef {
            index: range,
            label: self.cfg.ranges.describe(range),
        }
    }

    /// How far stream `r` is behind the primary, silent or lagging for `ms_behind`.
    pub(super) fn lag_of(&self, r: StreamId, ms_behind: i64) -> LagInfo {
        let rwm = self.watermark(r);
        LagInfo {
            primary_position: self.primary_wm,
            replica_position: rwm,
            positions_behind: self.primary_wm.tx.saturating_sub(rwm.tx),
            ms_behind,
        }
    }

    pub(super) fn offsets_for(
        &self,
        w: i64,
        streams: &[StreamId],
        table: TableId,
    ) -> Vec<OffsetRange> {
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

    pub(super) fn compare(&mut self, w: i64, r: StreamId, out: &mut Vec<Divergence>) {
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
        let primary_last: Vec<(TableId, Position)> = pacc.table_last.clone();
        let mut mismatches = Vec::new();
        let mut recovered = Vec::new();
        for (k, pd) in keys {
            // A silent replica table sent nothing: that is the StreamSilent verdict — unless it
            // has since been heard from beyond the primary's last change of the table in this
            // window (it is catching up): then what it lacks here is lost.
            let silent_here = || {
                self.table_silent(r, k.0)
                    && primary_last
                        .iter()
                        .find(|(t, _)| *t == k.0)
                        .is_none_or(|(_, last)| self.replica_table_pos(r, k.0) < *last)
            };
            let Some(rd) = racc
                .digests
                .get(&k)
                .copied()
                .or_else(|| (!silent_here()).then(RangeDigest::default))
            else {
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

        // Schema drift first: it is the cause the data mismatches of the same window follow from.
        self.report_drift(r, window, &racc, out);

        let mismatch_tables: Vec<TableId> = mismatches.iter().map(|((t, _), _, _)| *t).collect();
        let confirmed = self.confirmed(r, window.last);
        for ((table, range), pd, rd) in mismatches {
            let mut m = self.mismatch((table, range), Some(window), &pd, &rd);
            m.offsets = self.offsets_for(w, &[PRIMARY, r], table);
            m.keys = self.key_diffs(w, r, table, range);
            let d = self.verdict(r, Finding::DataMismatch(m));
            if !confirmed || !self.table_read_past(r, table, window.last) {
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
                Some(p) if self.replica_table_pos(r, table) < p => self.hold_absent(r, table, p, d),
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
            let recovery = Recovery::DataMismatch {
                table: self.tables[table as usize].name.clone(),
                range: self.range_ref(range),
                window: Some(window),
            };
            let d = self.verdict(r, Finding::Recovered(recovery));
            self.emit(d, out);
        }
    }

    /// A DataMismatch in a range, with both sides' digests (offsets and keys left to fill).
    pub(super) fn mismatch(
        &self,
        (table, range): (TableId, u64),
        window: Option<WindowRef>,
        p: &RangeDigest,
        rd: &RangeDigest,
    ) -> Mismatch {
        Mismatch {
            table: self.tables[table as usize].name.clone(),
            range: self.range_ref(range),
            window,
            sides: Some(Sides {
                primary: Side {
                    digest: p.lanes.hex(),
                    ops: p.ops,
                },
                replica: Side {
                    digest: rd.lanes.hex(),
                    ops: rd.ops,
                },
            }),
            offsets: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Opens a SchemaDrift episode for each table of the window a replica wrote with another
    /// row schema than the primary's, and closes those the replica wrote alike again.
    pub(super) fn report_drift(
        &mut self,
        r: StreamId,
        window: WindowRef,
        racc: &WindowAcc,
        out: &mut Vec<Divergence>,
    ) {
        let mut drift: Vec<(&TableId, &DriftObs)> = racc.drift.iter().collect();
        drift.sort_by_key(|(t, _)| **t);
        for (table, obs) in drift {
            if self.streams[r as usize].drifting.contains_key(table) {
                continue;
            }
            self.streams[r as usize].drifting.insert(*table, obs.first);
            let d = self.verdict(r, Finding::SchemaDrift(self.drift(r, *table, obs, window)));
            self.emit(d, out);
        }
        let rtables: Vec<TableId> = racc.tables.keys().copied().collect();
        let ended: Vec<TableId> = self.streams[r as usize]
            .drifting
            .iter()
            .filter(|(t, since)| {
                rtables.contains(t) && !racc.drift.contains_key(t) && window.last >= **since
            })
            .map(|(t, _)| *t)
            .collect();
        for t in ended {
            self.streams[r as usize].drifting.remove(&t);
            let recovery = Recovery::SchemaDrift {
                table: self.tables[t as usize].name.clone(),
                window,
            };
            let d = self.verdict(r, Finding::Recovered(recovery));
            self.emit(d, out);
        }
    }

    pub(super) fn drift(
        &self,
        r: StreamId,
        table: TableId,
        obs: &DriftObs,
        window: WindowRef,
    ) -> Drift {
        let replica = self.streams[r as usize].name.as_str();
        let fields = self.decoder.field_diff(obs.expected_id, obs.actual_id);
        let replica_subject = self
            .topics
            .iter()
            .enumerate()
            .find(|(_, t)| self.streams[t.stream as usize].name == replica && t.table == table)
            .map(|(i, _)| self.decoder.subject(i as TopicId).to_string())
            .unwrap_or_default();
        let primary_subject = self.tables[table as usize]
            .primary_topic
            .map(|t| self.decoder.subject(t))
            .unwrap_or_default();
        let schema = SchemaInfo {
            expected_version: self.decoder.version(obs.expected_id, primary_subject),
            actual_version: self.decoder.version(obs.actual_id, &replica_subject),
            subject: replica_subject,
            expected_id: obs.expected_id,
            actual_id: obs.actual_id,
            fields,
            first_position: obs.first,
            first_ts_ms: obs.first_ts,
            events: obs.events,
        };
        Drift {
            table: self.tables[table as usize].name.clone(),
            window,
            schema,
            offsets: self.offsets_for(window.id, &[r], table),
        }
    }

    /// A replica table with no record for `silent_after_ms` while the primary's same table
    /// keeps writing is silent; once per episode.
    pub(super) fn check_silence(&mut self, r: StreamId, out: &mut Vec<Divergence>) {
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
            // And only while the primary wrote the table after the replica fell behind: a
            // replica that lacks the last changes of a table the primary then left alone has
            // lost them (the mismatches held for them say so), it has not fallen silent.
            // Seen by the clock (it wrote after the replica was first seen behind) or, for a
            // backlog read in one go, by position: the replica lacks a change of the table the
            // primary wrote more of after.
            let was = self.topics[t as usize].silent;
            let kept_writing = primary_last > self.topics[t as usize].behind_since
                || self.streams[r as usize]
                    .absent
                    .get(&table)
                    .is_some_and(|held| held.iter().any(|a| a.needed < ppos));
            let silent_now = (silent_for >= self.cfg.timing.silent_after_ms
                && (kept_writing || was)
                && (!pending || was))
                || (was && rpos <= self.topics[t as usize].silent_mark);
            if silent_now == was {
                continue;
            }
            self.topics[t as usize].silent = silent_now;
            if silent_now {
                self.topics[t as usize].silent_mark = rpos;
                self.streams[r as usize].absent.remove(&table);
            }
            let table = self.tables[table as usize].name.clone();
            let finding = if silent_now {
                Finding::StreamSilent {
                    table,
                    window: None,
                    lag: self.lag_of(r, silent_for),
                }
            } else {
                Finding::Recovered(Recovery::StreamSilent { table })
            };
            let d = self.verdict(r, finding);
            self.emit(d, out);
        }
    }

    /// At the end of a bounded input: a replica table that sent no record at all while the
    /// primary's same table had records verified. Its snapshot and changes are all missing;
    /// the engine has nothing of it to compare (no snapshot on one side is otherwise taken as
    /// a connector configured without one), so the silence is the verdict.
    pub(super) fn report_never_heard(&mut self, out: &mut Vec<Divergence>) {
        for r in 1..self.streams.len() as StreamId {
            let tables: Vec<TableId> = self.streams[r as usize]
                .topics
                .iter()
                .map(|t| self.topics[*t as usize].table)
                .collect();
            for table in tables {
                let of = |s: StreamId| {
                    self.streams[s as usize]
                        .topics
                        .iter()
                        .map(|t| &self.topics[*t as usize])
                        .filter(move |t| t.table == table)
                };
                let verified = |t: &Topic| t.stats.events + t.stats.snapshot;
                let primary: u64 = of(PRIMARY).map(verified).sum();
                let heard = of(r).any(|t| t.last_ms != i64::MIN || t.silent);
                if primary == 0 || heard {
                    continue;
                }
                let primary_last = of(PRIMARY).map(|t| t.last_ms).max().unwrap_or(i64::MIN);
                let quiet = primary_last.saturating_sub(self.start_ms).max(0);
                let topics: Vec<TopicId> = self.streams[r as usize]
                    .topics
                    .iter()
                    .copied()
                    .filter(|t| self.topics[*t as usize].table == table)
                    .collect();
                for t in topics {
                    self.topics[t as usize].silent = true;
                }
                let d = self.verdict(
                    r,
                    Finding::StreamSilent {
                        table: self.tables[table as usize].name.clone(),
                        window: None,
                        lag: self.lag_of(r, quiet),
                    },
                );
                self.emit(d, out);
            }
        }
    }
}
