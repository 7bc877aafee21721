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

use super::*;

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
        let mut keep = Vec::new();
        for p in all {
            let due = self.ended
                || self.now_ms.saturating_sub(p.since) >= confirm
                || self.confirmed(r, p.last);
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

    /// A record that came into a window already compared: it counts against that window's
    /// mismatch of its range, and moves the range's carried difference.
    pub(super) fn fold_late(
        &mut self,
        stream: StreamId,
        (table, range): (TableId, u64),
        w: Option<i64>,
        ev: &Event,
        ehash: u128,
        out: &mut Vec<Divergence>,
    ) {
        let mut state = Lanes::delta(ev.before, ev.after);
        let mut events = Lanes::of(ehash);
        if stream == PRIMARY {
            let (mut s, mut e) = (Lanes::ZERO, Lanes::ZERO);
            s.sub(state);
            e.sub(events);
            (state, events) = (s, e);
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
        let key = (table, range);
        for r in replicas {
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
                    && (Some(p.window) == w || (p.first <= ev.position && ev.position <= p.last))
            });
            match held {
                Some(p) => {
                    p.residual.0.add(state);
                    if !p.states {
                        p.residual.1.add(events);
                    }
                }
                None if d.is_zero() && was.is_some() => {
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
                    // A change of a compared window with nothing to set it against (yet).
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
                    self.streams[r as usize].provisional.push(Provisional {
                        d: v,
                        key,
                        window: w.unwrap_or(BASELINE_W),
                        first: ev.position,
                        last: ev.position,
                        residual: (state, events),
                        states: false,
                        needed: None,
                        since,
                    });
                }
            }
        }
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
