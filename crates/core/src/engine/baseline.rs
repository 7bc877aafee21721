//! Snapshots as starting state.
//!
//! Debezium opens each stream with a snapshot: one read (`op = r`, no position) per row,
//! taken at a point of the origin's history the records do not name. Each stream's reads are
//! summed per (table, range) into its baseline: Σ H(row), the state of the range at its
//! snapshot. The snapshots of the primary and of a replica are taken at different points, so
//! until both streams have sent changes, a change one stream sent may already lie in the
//! other's snapshot. A replica's windows are therefore summed, not compared, until the first
//! window both streams have sent changes in; there the states compare — baseline + the
//! changes summed — and every range whose states differ is a mismatch: a replica that
//! already differed before capture began is caught. From then on windows compare as usual,
//! each range's difference carried on (see `Stream::divergent`).
//!
//! Without snapshots (not taken, or past the topics' retention) states cannot compare, and
//! [`EngineStats::changes_only`] says so: with none on either side, changes are compared from
//! the first window on; with one on one side only, the first window both streams sent changes
//! in (which may hold changes the snapshot covers) is skipped.

use super::*;

impl<D: Decoder> Engine<D> {
    /// Sums a snapshot read into its stream's baseline.
    pub(super) fn count_snapshot(
        &mut self,
        rec: &Record<'_>,
        stream: StreamId,
        table: TableId,
        range: u64,
        ev: &Event,
        drift: Option<(u32, u32)>,
    ) -> (Ingested, i64) {
        let ti = rec.topic as usize;
        // A second snapshot: the connector's offsets were lost (it failed before it first
        // stored them, or they were reset), or an incremental one. A connector writes its
        // snapshot before any change, so a read written after a change of its stream, or
        // after one of its partition in the partition's order, is from a later snapshot.
        // Its reads are the state at a point no window names: not summed (and counted).
        let later = self.topics[ti].parts[rec.partition as usize]
            .first_change
            .is_some_and(|o| rec.offset > o)
            || rec.timestamp_ms > self.streams[stream as usize].first_change_ms;
        if later {
            self.topics[ti].stats.snapshot_late += 1;
            return (Ingested::Outside, i64::MIN);
        }
        // A read of the snapshot that comes after a starting state was compared without it
        // (its partition held back longer than the skew allowed for): it counts into that
        // state, as a late change counts into its window.
        let folds: Vec<StreamId> = if stream == PRIMARY {
            (1..self.streams.len() as StreamId)
                .filter(|r| self.streams[*r as usize].late_reads_count)
                .collect()
        } else if self.streams[stream as usize].late_reads_count {
            vec![stream]
        } else {
            Vec::new()
        };
        if !folds.is_empty() {
            let mut out = std::mem::take(&mut self.deferred);
            self.fold_late_read(stream, &folds, (table, range), ev, &mut out);
            self.deferred = out;
        }
        if self.started_id(stream) {
            // (The primary's: once every replica has started.)
            let stats = &mut self.topics[ti].stats;
            if folds.is_empty() {
                stats.snapshot_late += 1;
                return (Ingested::Outside, i64::MIN);
            }
            stats.snapshot += 1;
            stats.late += 1;
            return (Ingested::Late, i64::MIN);
        }
        let topic = &mut self.topics[ti];
        topic.stats.snapshot += 1;
        if !folds.is_empty() {
            topic.stats.late += 1;
        }
        let part = &mut topic.parts[rec.partition as usize];
        // Held back from commits until the states compared (the front: below every window).
        match part.offsets.front_mut() {
            Some((w, first, last)) if *w == BASELINE_W => {
                *first = (*first).min(rec.offset);
                *last = (*last).max(rec.offset);
            }
            _ => part
                .offsets
                .push_front((BASELINE_W, rec.offset, rec.offset)),
        }
        let acc = &mut self.streams[stream as usize].baseline;
        acc.digests
            .entry((table, range))
            .add_event(Op::Read, 0, ev.before, ev.after);
        acc.max_written_ms = acc.max_written_ms.max(rec.timestamp_ms);
        acc.tables.entry(table).or_default();
        if let Some((actual_id, expected_id)) = drift {
            let d = acc.drift.entry(table).or_insert_with(|| DriftObs {
                first: ev.position,
                first_ts: ev.ts_ms,
                actual_id,
                expected_id,
                events: 0,
            });
            d.events += 1;
        }
        (Ingested::Counted, BASELINE_W)
    }

    /// Whether a stream's snapshot has been compared: a replica's, once it started; the
    /// primary's, once every replica did.
    pub(super) fn started_id(&self, stream: StreamId) -> bool {
        let of = |r: usize| matches!(self.streams[r].start, Start::Started);
        if stream == PRIMARY {
            (1..self.streams.len()).all(of)
        } else {
            of(stream as usize)
        }
    }

    /// Whether replica `name`'s starting state has been compared (or found not comparable).
    pub fn started(&self, name: &str) -> bool {
        self.stream_id(name)
            .is_some_and(|r| r != PRIMARY && self.started_id(r))
    }

    fn snapshot_rows(&self, s: StreamId) -> u64 {
        self.streams[s as usize]
            .topics
            .iter()
            .map(|t| self.topics[*t as usize].stats.snapshot)
            .sum()
    }

    /// Compares window `w` for replica `r` (whose part of it is `racc`) before its start:
    /// summed, or, when both streams have sent changes up to its end, the start itself.
    /// Returns the window when its changes are still to be compared as usual.
    pub(super) fn compare_before_start(
        &mut self,
        w: i64,
        r: StreamId,
        racc: WindowAcc,
        out: &mut Vec<Divergence>,
    ) -> Option<WindowAcc> {
        let first = matches!(&self.streams[r as usize].start, Start::Pending(s) if s.is_empty());
        if first && self.snapshot_rows(PRIMARY) == 0 && self.snapshot_rows(r) == 0 {
            // Neither stream has a snapshot (each partition sends its snapshot before any
            // change, and no window is compared while one may still be sending it): their
            // changes are compared from the first window on.
            self.streams[r as usize].start = Start::Started;
            let name = self.streams[r as usize].name.clone();
            let why = "no snapshot on either stream: the state before the first change is not verified; every change is";
            self.stats.changes_only.insert(name, why.to_string());
            self.release_baselines();
            return Some(racc);
        }
        let primary: Vec<((TableId, u64), RangeDigest)> = self.streams[PRIMARY as usize]
            .windows
            .get(&w)
            .map(|a| a.digests.iter().copied().collect())
            .unwrap_or_default();
        if let Start::Pending(sums) = &mut self.streams[r as usize].start {
            for (k, d) in primary {
                sums.entry(k).or_default().0.merge(&d);
            }
            for (k, d) in racc.digests.iter() {
                sums.entry(*k).or_default().1.merge(d);
            }
        }
        let window = self.window_ref(w);
        let changed = |s: StreamId| {
            self.streams[s as usize]
                .first_change
                .is_some_and(|f| f <= window.last)
        };
        if changed(PRIMARY) && changed(r) {
            return self
                .start_verification(Some(window), r, &racc, out)
                .then_some(racc);
        }
        self.report_drift(r, window, &racc, out);
        None
    }

    /// Compares the states of the primary and replica `r`: their baselines and the windows
    /// summed up to `window` (`None`: the end of a bounded input). Then `r` is started.
    /// Returns whether the window's changes are still to be compared as usual (never: its
    /// state was).
    pub(super) fn start_verification(
        &mut self,
        window: Option<WindowRef>,
        r: StreamId,
        racc: &WindowAcc,
        out: &mut Vec<Divergence>,
    ) -> bool {
        let Start::Pending(sums) =
            std::mem::replace(&mut self.streams[r as usize].start, Start::Started)
        else {
            return false;
        };
        let rname = self.streams[r as usize].name.clone();
        let missing: Vec<&str> = [PRIMARY, r]
            .into_iter()
            .filter(|s| self.snapshot_rows(*s) == 0)
            .map(|s| self.streams[s as usize].name.as_str())
            .collect();
        if !missing.is_empty() {
            let why = format!(
                "no snapshot on {}: the state before both streams sent changes is not verified; changes are verified from {}",
                missing.join(" and "),
                window.map_or("the next window".to_string(), |w| format!(
                    "the window after {}",
                    w.last
                ))
            );
            self.stats.changes_only.insert(rname, why);
            if let Some(window) = window {
                self.report_drift(r, window, racc, out);
            }
            self.release_baselines();
            return false;
        }
        self.streams[r as usize].late_reads_count = true;
        // The states: each side's baseline and the windows summed, by range.
        let mut states: BTreeMap<(TableId, u64), (RangeDigest, RangeDigest)> = BTreeMap::new();
        for (k, d) in self.streams[PRIMARY as usize].baseline.digests.iter() {
            states.entry(*k).or_default().0.merge(d);
        }
        for (k, d) in self.streams[r as usize].baseline.digests.iter() {
            states.entry(*k).or_default().1.merge(d);
        }
        for (k, (p, rd)) in &sums {
            let e = states.entry(*k).or_default();
            e.0.merge(p);
            e.1.merge(rd);
        }
        // Schema drift first (the snapshot's and the window's): it is the cause.
        let mut drift = WindowAcc::default();
        for (t, obs) in self.streams[r as usize]
            .baseline
            .drift
            .iter()
            .chain(racc.drift.iter())
        {
            let d = drift.drift.entry(*t).or_insert_with(|| DriftObs {
                first: obs.first,
                first_ts: obs.first_ts,
                actual_id: obs.actual_id,
                expected_id: obs.expected_id,
                events: 0,
            });
            d.events += obs.events;
        }
        drift.tables = racc.tables.clone();
        let at = window.unwrap_or(WindowRef {
            id: BASELINE_W,
            first: Position::ZERO,
            last: Position::ZERO,
            start_ms: 0,
            end_ms: 0,
        });
        self.report_drift(r, at, &drift, out);
        let upto = window.map_or(i64::MAX, |w| w.id);
        let mut mismatched = Vec::new();
        for ((table, range), (p, rd)) in states {
            if p.lanes == rd.lanes {
                continue;
            }
            let mut diff = rd.lanes;
            diff.sub(p.lanes);
            self.streams[r as usize]
                .divergent
                .insert((table, range), diff);
            let mut m = self.mismatch((table, range), window, &p, &rd);
            m.offsets = self.offsets_for(BASELINE_W, &[PRIMARY, r], table);
            if let Some(w) = window {
                m.offsets
                    .extend(self.offsets_for(w.id, &[PRIMARY, r], table));
            }
            m.keys = self.key_state_diffs(upto, r, table, range);
            let d = self.verdict(r, Finding::DataMismatch(m));
            mismatched.push(table);
            match window {
                Some(w)
                    if !self.confirmed(r, w.last)
                        || !self.snapshots_read(r, table)
                        || !self.table_read_past(r, table, w.last) =>
                {
                    self.hold(r, d, (table, range), w.id, (diff, None), None)
                }
                _ => self.emit(d, out),
            }
        }
        if let Some(w) = window {
            let tables = pacc_tables_and(racc, self.streams[PRIMARY as usize].windows.get(&w.id));
            self.record_timeline(r, w, &tables, racc, &mismatched);
        }
        self.release_baselines();
        false
    }

    /// Frees the baselines no replica still needs, and lets their offsets be committed.
    fn release_baselines(&mut self) {
        for s in 0..self.streams.len() as StreamId {
            if self.started_id(s) {
                self.streams[s as usize].baseline = WindowAcc::default();
            }
        }
        let started: Vec<bool> = (0..self.streams.len() as StreamId)
            .map(|s| self.started_id(s))
            .collect();
        for t in &mut self.topics {
            if started[t.stream as usize] {
                for p in &mut t.parts {
                    if p.offsets.front().is_some_and(|(w, ..)| *w == BASELINE_W) {
                        p.offsets.pop_front();
                    }
                }
            }
        }
    }

    /// The keys of a range whose states differ between the primary and replica `r` as of the
    /// end of window `w` (drill-down's per-key state: snapshot and changes). A key whose last
    /// rows agree differs still when its events do not add up alike (one side lacks a change
    /// that a later one overwrote).
    fn key_state_diffs(&self, w: i64, r: StreamId, table: TableId, range: u64) -> Vec<KeyDiff> {
        let mut out: Vec<KeyDiff> = self
            .drill
            .in_range(table, range)
            .filter(|k| k.sides[PRIMARY as usize].state_at(w) != k.sides[r as usize].state_at(w))
            .map(|k| KeyDiff {
                key: self.render_key(k),
                primary: self.render_side(&k.sides[PRIMARY as usize], w),
                replica: self.render_side(&k.sides[r as usize], w),
                repair: None,
            })
            .collect();
        out.sort_by_key(|a| a.key.to_string());
        out
    }

    /// At the end of a bounded input: replicas whose streams never both sent changes compare
    /// their states now.
    pub(super) fn start_remaining(&mut self, out: &mut Vec<Divergence>) {
        for r in 1..self.streams.len() as StreamId {
            if !self.started_id(r) {
                self.start_verification(None, r, &WindowAcc::default(), out);
            }
        }
    }
}
