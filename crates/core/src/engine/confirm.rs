//! Mismatches confirmed before they are published.
//!
//! At low traffic a window is compared once every partition has been read to its end for a
//! while (see `watermark`): nothing stamped earlier can still come. That holds while the
//! connectors run. A connector killed mid-transaction has written some of the transaction's
//! records and not others; after its restart it writes the rest, stamped later, into windows
//! already compared. A mismatch is therefore published only once it is confirmed: both
//! streams have written records of later transactions (so whatever a restart had to write
//! again came before them), or `confirm_ms` of the verifier's clock has passed. Records that
//! arrive into a compared window meanwhile are not dropped: they count against the
//! mismatch of their range (its residual), and one whose residual comes to zero is withdrawn.
//! Late records of a window whose mismatch was published, or that had none, move the range's
//! carried difference, and a range brought back in line this way is Recovered.

use super::windows::before_tx;
use super::*;

/// A record late into what was compared.
#[derive(Clone, Copy)]
enum Late {
    /// A change, of window `w` (the primary's) or at `position` (a replica's).
    Change {
        w: Option<i64>,
        position: Position,
        events: Lanes,
    },
    /// A snapshot read, into a starting state.
    Read,
}

fn negated(l: Lanes) -> Lanes {
    let mut n = Lanes::ZERO;
    n.sub(l);
    n
}

/// A mismatch not yet published.
pub(super) struct Provisional {
    pub(super) d: Divergence,
    pub(super) key: (TableId, u64),
    /// The window's id and positions (for late records to find it).
    pub(super) window: i64,
    pub(super) first: Position,
    pub(super) last: Position,
    /// (replica − primary) over the window's events of the range, state and events.
    pub(super) residual: (Lanes, Lanes),
    /// A comparison of states (at a replica's start), where only the state counts.
    pub(super) states: bool,
    /// The primary's last position of the table in the window: published once the replica
    /// is heard of beyond it (see `Stream::absent`).
    pub(super) needed: Option<Position>,
    /// The clock when it was found.
    pub(super) since: i64,
}

impl<D: Decoder> Engine<D> {
    /// Whether both streams have written later transactions than `last`, stamped long enough
    /// ago for whatever came before them to have arrived.
    pub(super) fn confirmed(&self, r: StreamId, last: Position) -> bool {
        self.watermark_strict(PRIMARY, true) > last && self.watermark_strict(r, true) > last
    }

    /// Holds a mismatch of window `w` until it is confirmed.
    /// `residual.1` is `None` for a comparison of states.
    pub(super) fn hold(
        &mut self,
        r: StreamId,
        d: Divergence,
        key: (TableId, u64),
        w: i64,
        residual: (Lanes, Option<Lanes>),
        needed: Option<Position>,
    ) {
        let b = self.bounds.map[&w];
        let since = self.now_ms;
        let (state, events) = residual;
        self.streams[r as usize].provisional.push(Provisional {
            d,
            key,
            window: w,
            first: b.first,
            last: b.last,
            residual: (state, events.unwrap_or(Lanes::ZERO)),
            states: events.is_none(),
            needed,
            since,
        });
    }

    /// Publishes the confirmed mismatches and withdraws those late records made whole.
    pub(super) fn release_confirmed(&mut self, r: StreamId, out: &mut Vec<Divergence>) {
        if self.streams[r as usize].provisional.is_empty() {
            return;
        }
        let confirm = self.cfg.timing.confirm_ms;
        let all = std::mem::take(&mut self.streams[r as usize].provisional);
        // What each held mismatch is checked against, worked out once for all of them (a
        // backlog read unevenly can hold thousands): how far both streams are complete, and
        // per table, how far all its partitions are read past and whether its snapshots are in.
        let complete = self
            .watermark_strict(PRIMARY, true)
            .min(self.watermark_strict(r, true));
        let mut tables: FastMap<TableId, (Option<Position>, bool)> = FastMap::default();
        let mut keep = Vec::new();
        for p in all {
            let table = p.key.0;
            let (read_past, snapshots) = *tables
                .entry(table)
                .or_insert_with(|| (self.table_read_to(r, table), self.snapshots_read(r, table)));
            let due = self.ended
                || self.now_ms.saturating_sub(p.since) >= confirm
                || (complete > p.last
                    && (!p.states || snapshots)
                    && read_past.is_some_and(|t| t >= p.last));
            if !due {
                keep.push(p);
            } else if p.residual.0.is_zero() && p.residual.1.is_zero() {
                self.stats.withdrawn += 1;
            } else {
                match p.needed {
                    Some(n) if self.replica_table_pos(r, p.key.0) < n => {
                        self.hold_absent(r, p.key.0, n, p.d);
                    }
                    _ => self.emit(p.d, out),
                }
            }
        }
        self.streams[r as usize].provisional = keep;
    }

    /// At a stop that a restart (or the next holder of the tables) continues: the starting
    /// states' mismatches still held are published. The restart continues from the start
    /// committed (it verifies changes only) and would not find them again, and no read of the
    /// snapshots can come any more to withdraw them. Mismatches of windows stay held: their
    /// windows' offsets are not committed, and the restart finds them again.
    pub fn release_starts(&mut self, out: &mut Vec<Divergence>) {
        for r in 1..self.streams.len() as StreamId {
            let (starts, keep): (Vec<Provisional>, Vec<Provisional>) =
                std::mem::take(&mut self.streams[r as usize].provisional)
                    .into_iter()
                    .partition(|p| p.states);
            self.streams[r as usize].provisional = keep;
            for p in starts {
                if p.residual.0.is_zero() {
                    self.stats.withdrawn += 1;
                } else {
                    self.emit(p.d, out);
                }
            }
        }
    }

    /// A record that came into a window already compared: it counts against that window's
    /// mismatch of its range, and moves the range's carried difference.
    pub(super) fn fold_late(
        &mut self,
        stream: StreamId,
        key: (TableId, u64),
        w: Option<i64>,
        ev: &Event,
        ehash: u128,
        out: &mut Vec<Divergence>,
    ) {
        let mut state = Lanes::delta(ev.before, ev.after);
        let mut events = Lanes::of(ehash);
        if stream == PRIMARY {
            state = negated(state);
            events = negated(events);
        }
        let replicas: Vec<StreamId> = if stream == PRIMARY {
            (1..self.streams.len() as StreamId)
                .filter(|r| {
                    w.is_some_and(|w| self.streams[*r as usize].done_upto.is_some_and(|d| w <= d))
                })
                .collect()
        } else {
            vec![stream]
        };
        for r in replicas {
            let late = Late::Change {
                w,
                position: ev.position,
                events,
            };
            self.fold_into(r, key, state, late, out);
        }
    }

    /// A snapshot read that came after the starting states of `replicas` were compared: it
    /// counts against their start's mismatch of its range (only the state counts there), and
    /// moves the range's carried difference.
    pub(super) fn fold_late_read(
        &mut self,
        stream: StreamId,
        replicas: &[StreamId],
        key: (TableId, u64),
        ev: &Event,
        out: &mut Vec<Divergence>,
    ) {
        let mut state = Lanes::delta(ev.before, ev.after);
        if stream == PRIMARY {
            state = negated(state);
        }
        for r in replicas {
            self.fold_into(*r, key, state, Late::Read, out);
        }
    }

    /// Folds a late record's `state` (replica − primary) into replica `r`'s range `key`.
    fn fold_into(
        &mut self,
        r: StreamId,
        key: (TableId, u64),
        state: Lanes,
        late: Late,
        out: &mut Vec<Divergence>,
    ) {
        let (table, range) = key;
        let s = &mut self.streams[r as usize];
        let was = s.divergent.get(&key).copied();
        let mut d = was.unwrap_or_default();
        d.add(state);
        if d.is_zero() {
            s.divergent.remove(&key);
        } else {
            s.divergent.insert(key, d);
        }
        let held = s.provisional.iter_mut().find(|p| {
            p.key == key
                && match late {
                    Late::Change { w, position, .. } => {
                        Some(p.window) == w || (p.first <= position && position <= p.last)
                    }
                    Late::Read => p.states,
                }
        });
        match held {
            Some(p) => {
                p.residual.0.add(state);
                if let Late::Change { events, .. } = late
                    && !p.states
                {
                    p.residual.1.add(events);
                }
            }
            None if was.is_some() => {
                // A range already found to differ (its mismatch published, or held until the
                // replica is heard from): while it still differs there is nothing new to say
                // (the record is one its mismatch lacked, or moves a difference already told).
                if !d.is_zero() {
                    return;
                }
                if self.withdraw_absent(r, key) {
                    // Not told yet: withdrawn.
                    self.stats.withdrawn += 1;
                    return;
                }
                // Brought back in line a range whose mismatch was published.
                let recovery = Recovery::DataMismatch {
                    table: self.tables[table as usize].name.clone(),
                    range: self.range_ref(range),
                    window: None,
                };
                let v = self.verdict(r, Finding::Recovered(recovery));
                self.emit(v, out);
            }
            None => {
                // A change of a compared window (or a read of a compared start) with nothing
                // to set it against (yet).
                let w = match late {
                    Late::Change { w, .. } => w,
                    Late::Read => None,
                };
                let v = self.verdict(
                    r,
                    Finding::DataMismatch(Mismatch {
                        table: self.tables[table as usize].name.clone(),
                        range: self.range_ref(range),
                        window: w
                            .filter(|w| self.bounds.map.contains_key(w))
                            .map(|w| self.window_ref(w)),
                        sides: None,
                        offsets: Vec::new(),
                        keys: Vec::new(),
                    }),
                );
                let since = self.now_ms;
                let (position, events, states) = match late {
                    Late::Change {
                        position, events, ..
                    } => (position, events, false),
                    Late::Read => (Position::ZERO, Lanes::ZERO, true),
                };
                self.streams[r as usize].provisional.push(Provisional {
                    d: v,
                    key,
                    window: w.unwrap_or(BASELINE_W),
                    first: position,
                    last: position,
                    residual: (state, events),
                    states,
                    needed: None,
                    since,
                });
            }
        }
    }

    /// Drops the mismatches of range `key` held until replica `r` is heard from (see
    /// `hold_absent`); returns whether there were any.
    fn withdraw_absent(&mut self, r: StreamId, (table, range): (TableId, u64)) -> bool {
        let Some(held) = self.streams[r as usize].absent.get_mut(&table) else {
            return false;
        };
        let before = held.len();
        held.retain(|a| match &a.d.finding {
            Finding::DataMismatch(m) => m.range.index != range,
            _ => true,
        });
        let dropped = held.len() < before;
        if held.is_empty() {
            self.streams[r as usize].absent.remove(&table);
        }
        dropped
    }

    /// Whether every partition of `table`, on the primary and on replica `r`, has been read
    /// past `last` by records of its own (or has ended): nothing at or before `last` can still
    /// come in any of them. The watermark also vouches for a partition read to its end, by the
    /// clock and the skew allowed for; a partition whose records are held up longer than that
    /// (a slow broker, a producer backed up) would otherwise have its window compared without
    /// them, and the mismatch published before they come. Until then a mismatch of the table
    /// waits, `confirm_ms` at most (a partition that is only quiet sends nothing more).
    pub(super) fn table_read_past(&self, r: StreamId, table: TableId, last: Position) -> bool {
        self.table_read_to(r, table).is_some_and(|p| p >= last)
    }

    /// The position every partition of `table`, on the primary and on replica `r`, has been
    /// read past by records of its own (see [`Engine::table_read_past`]): `Position::MAX` when
    /// all have ended, `None` while one has sent nothing.
    fn table_read_to(&self, r: StreamId, table: TableId) -> Option<Position> {
        self.table_parts(r, table)
            .filter(|p| p.progress != Progress::Ended)
            // (`None`, a partition that sent nothing, is the least.)
            .map(|p| p.last_pos.map(before_tx))
            .min()
            .unwrap_or(Some(Position::MAX))
    }

    /// Whether every partition of `table` on the primary and on replica `r` has sent a change:
    /// a partition sends its snapshot reads before its first change, so all of them are in.
    /// Until then a partition's reads may still come, later than the skew allowed for (a
    /// connector writing its snapshot in one burst), and a starting state's mismatch waits.
    pub(super) fn snapshots_read(&self, r: StreamId, table: TableId) -> bool {
        self.table_parts(r, table)
            .all(|p| p.first_change.is_some() || p.progress == Progress::Ended)
    }

    /// The partitions of `table` on the primary and on replica `r`.
    fn table_parts(&self, r: StreamId, table: TableId) -> impl Iterator<Item = &Part> {
        [PRIMARY, r]
            .into_iter()
            .flat_map(|s| self.streams[s as usize].topics.iter())
            .map(|t| &self.topics[*t as usize])
            .filter(move |t| t.table == table)
            .flat_map(|t| t.parts.iter())
    }

    /// The first window some replica still holds a mismatch of (its offsets stay uncommitted).
    pub(super) fn first_provisional(&self) -> Option<i64> {
        let absent = self.streams[1..]
            .iter()
            .flat_map(|s| s.absent.values().flatten())
            .filter_map(|a| a.window);
        self.streams[1..]
            .iter()
            .flat_map(|s| s.provisional.iter())
            .map(|p| p.window)
            .chain(absent)
            .filter(|w| *w != BASELINE_W)
            .min()
    }
}
