//! Windows: the digests of each, the primary's windows' spans, which window an event falls in,
//! the watermarks that close them, and dropping them once compared.

use super::*;

#[derive(Default)]
pub(super) struct DriftObs {
    pub(super) first: Position,
    pub(super) first_ts: i64,
    pub(super) actual_id: u32,
    pub(super) expected_id: u32,
    pub(super) events: u64,
}

/// The digests of one window by (table, range), in the order their ranges were first met,
/// found through small slots: a window's events touch few cache lines of it (a map of whole
/// digests spread them over a table four times the size). The slots of ranges below
/// [`DENSE_RANGES`] (hash buckets, as most are) lie in one array per table, indexed by the
/// range; the others (integer ranges) are found through a map.
#[derive(Default)]
pub(super) struct WindowDigests {
    /// How many ranges a window is expected to meet (the last one's count).
    pub(super) expected: usize,
    pub(super) dense: Vec<Vec<u32>>,
    pub(super) slots: FastMap<(TableId, u64), u32>,
    pub(super) entries: Vec<((TableId, u64), RangeDigest)>,
}

/// Ranges below this have their slot in a table's array (16 KiB at most per table and window).
pub(super) const DENSE_RANGES: u64 = 4096;
/// No slot yet.
pub(super) const NO_SLOT: u32 = u32::MAX;

impl WindowDigests {
    /// Room for `n` ranges and half as many again: windows of steady traffic meet about as
    /// many ranges as the last one, some more, and growing the digests copies them all.
    pub(super) fn with_capacity(n: usize) -> WindowDigests {
        WindowDigests {
            expected: n,
            entries: Vec::with_capacity(n + n / 2),
            ..WindowDigests::default()
        }
    }

    /// The slot of `key`, if it has one.
    #[inline]
    pub(super) fn slot(&self, key: &(TableId, u64)) -> Option<u32> {
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
    pub(super) fn entry(&mut self, key: (TableId, u64)) -> &mut RangeDigest {
        let slot = match self.slot(&key) {
            Some(slot) => slot,
            None => self.insert(key),
        };
        &mut self.entries[slot as usize].1
    }

    #[inline]
    pub(super) fn insert(&mut self, key: (TableId, u64)) -> u32 {
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

    pub(super) fn get(&self, key: &(TableId, u64)) -> Option<&RangeDigest> {
        self.slot(key).map(|slot| &self.entries[slot as usize].1)
    }

    pub(super) fn contains_key(&self, key: &(TableId, u64)) -> bool {
        self.slot(key).is_some()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &((TableId, u64), RangeDigest)> {
        self.entries.iter()
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// About how many bytes it holds.
    pub(super) fn bytes(&self) -> usize {
        let entry = std::mem::size_of::<((TableId, u64), RangeDigest)>();
        let slot = std::mem::size_of::<((TableId, u64), u32)>() + 8;
        self.entries.capacity() * entry
            + self.slots.capacity() * slot
            + self.dense.iter().map(|d| d.capacity() * 4).sum::<usize>()
    }
}

#[derive(Default)]
pub(super) struct WindowAcc {
    pub(super) digests: WindowDigests,
    pub(super) drift: FastMap<TableId, DriftObs>,
    pub(super) tables: FastMap<TableId, ()>,
    pub(super) last_table: Option<TableId>,
    /// The primary's last position per table in the window.
    pub(super) table_last: Vec<(TableId, Position)>,
    /// When the window's last event was written, in the time lag is measured by
    /// (`EngineConfig::lag_by`: to Kafka, or committed); `i64::MIN` before the first.
    pub(super) max_written_ms: i64,
}

/// The window key of a stream's snapshot reads (below every window of commit time).
pub(crate) const BASELINE_W: i64 = i64::MIN;

#[derive(Clone, Copy)]
pub(super) struct Bound {
    pub(super) first: Position,
    pub(super) last: Position,
    pub(super) min_ts: i64,
    pub(super) max_ts: i64,
    pub(super) final_at: Option<i64>,
}

/// The last position before `p`'s transaction.
pub(super) fn before_tx(p: Position) -> Position {
    if p.tx == 0 {
        Position::ZERO
    } else {
        Position {
            tx: p.tx - 1,
            order: u32::MAX,
        }
    }
}

/// The primary's windows: the span of positions and commit times of each, by window.
pub(super) struct Bounds {
    pub(super) map: BTreeMap<i64, Bound>,
    /// Windows below this are closed: an event whose time falls in one goes to a later one.
    pub(super) open_floor: i64,
    /// The last window a commit time fell in.
    pub(super) last_window: LastBucket,
    /// Changes whenever a window is added before the last or dropped.
    pub(super) generation: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            map: BTreeMap::new(),
            open_floor: i64::MIN,
            last_window: LastBucket::default(),
            generation: 0,
        }
    }
}

impl Bounds {
    /// The window of an older transaction `tx`, whose time's window is `w`: the one whose
    /// transactions span it; else, between the last window before it and the first after it,
    /// the window of its time, or the nearer of the two when its time lies outside them — so
    /// that windows keep disjoint, ascending spans of transactions in the order of their times.
    /// Once the window before it is final (its span fixed), the first after it: where a
    /// replica's copy, read before it, was put.
    #[cold]
    pub(super) fn window_between(&self, tx: u64, w: i64) -> i64 {
        let mut prev = None;
        for (k, b) in self.map.range(self.open_floor.min(self.first_bound())..) {
            if b.last.tx < tx {
                prev = Some(*k);
                continue;
            }
            if b.first.tx <= tx {
                return *k;
            }
            // `k` is the first window after it. Once the window before it is final, a
            // replica's copy of it is looked up in `k` (`window_of`): it goes there too.
            let closed = |p: &i64| self.map.get(p).is_some_and(|b| b.final_at.is_some());
            return match prev {
                Some(p) if closed(&p) => *k,
                Some(p) if w <= p => p,
                _ if w >= *k => *k,
                _ => w,
            };
        }
        prev.map_or(w, |p| w.max(p))
    }

    /// The primary's window holding position `p` (the primary's watermark has passed `p`).
    pub(super) fn window_of(&self, p: Position) -> i64 {
        self.window_reaching(p.tx).unwrap_or_else(|| {
            self.map
                .keys()
                .next_back()
                .copied()
                .unwrap_or(self.open_floor.max(0))
        })
    }

    /// The first of the primary's windows that reaches transaction `tx`: by transaction, as
    /// all events of one transaction share its commit time, so its window.
    fn window_reaching(&self, tx: u64) -> Option<i64> {
        self.map
            .range(self.open_floor.min(self.first_bound())..)
            .find(|(_, b)| b.last.tx >= tx)
            .map(|(w, _)| *w)
    }

    fn first_bound(&self) -> i64 {
        self.map.keys().next().copied().unwrap_or(i64::MAX)
    }
}

impl<D: Decoder> Engine<D> {
    /// The primary's windows after the last one replica `r` was compared in.
    pub(super) fn after_done(&self, r: StreamId) -> (std::ops::Bound<i64>, std::ops::Bound<i64>) {
        (
            self.streams[r as usize]
                .done_upto
                .map_or(Unbounded, Excluded),
            Unbounded,
        )
    }

    /// Where window `w` ends (its times are below this), as far as times go.
    pub(super) fn window_end_ms(&self, w: i64) -> i64 {
        w.saturating_add(1)
            .saturating_mul(self.cfg.timing.cut_interval_ms)
    }

    /// The window of a primary event: that of its commit time, unless that window closed
    /// because its time was over. Then the event came later than the skew allows, and it goes
    /// where a replica's copy of it is looked up ([`Bounds::window_of`]): the first
    /// window that reaches its transaction — so a transaction is never split between two
    /// windows — or, past them all, the open floor.
    #[inline]
    pub(super) fn primary_window(&mut self, ev: &Event) -> i64 {
        let tx = ev.position.tx;
        let w = self.window_at(ev.ts_ms).max(self.bounds.open_floor);
        match self.bounds.map.last_key_value() {
            None => w,
            // Past every window's transactions (nearly always): the window of its time, or
            // the last one when its time lies before that (a statement's time is when it
            // began, not when its transaction committed).
            Some((&last, b)) if tx > b.last.tx => w.max(last),
            // A transaction already in the last window: not split.
            Some((&last, b)) if tx >= b.first.tx => last,
            // Before the last window (a partition read behind the others): the window that
            // holds its transaction, else one between the windows around it.
            _ => self.bounds.window_between(tx, w),
        }
    }

    /// The primary's window of a commit time.
    #[inline]
    pub(super) fn window_at(&mut self, ts_ms: i64) -> i64 {
        self.bounds
            .last_window
            .of(ts_ms, self.cfg.timing.cut_interval_ms)
    }

    /// How far a stream has been read: the minimum over its partitions of what each is known
    /// to have passed — its last position, or, for a partition read to its end when the clock
    /// read T, every position its stream wrote before T − `publish_skew_ms` (anything it still
    /// receives is stamped later, so comes later in the stream's order). Ended partitions do
    /// not count; with all of them ended the stream has reached only what it has sent.
    pub(super) fn watermark(&self, s: StreamId) -> Position {
        self.watermark_strict(s, false)
    }

    /// [`watermark`](Self::watermark); `strict`: a transaction counts as passed only once a
    /// later one was written (the clock's answer is the last transaction seen, of which more
    /// may come when its connector failed while writing it).
    pub(super) fn watermark_strict(&self, s: StreamId, strict: bool) -> Position {
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
    pub(super) fn read_through(&self, s: StreamId) -> i64 {
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

    pub(super) fn finalize_primary_windows(&mut self) {
        let wm = self.primary_wm;
        let read_through = self.read_through(PRIMARY);
        let keys: Vec<i64> = self
            .bounds
            .map
            .iter()
            .filter(|(_, b)| b.final_at.is_none())
            .map(|(w, _)| *w)
            .collect();
        for w in &keys {
            // Final once the primary has passed the start of a later window; or, at low
            // traffic, once the primary is idle and the window's time is over.
            let later_passed = self
                .bounds
                .map
                .range((Excluded(*w), Unbounded))
                .any(|(_, b)| b.first <= wm);
            let time_over = read_through
                >= self
                    .window_end_ms(*w)
                    .saturating_add(self.cfg.timing.idle_grace_ms)
                && self.bounds.map[w].last <= wm;
            if later_passed || time_over {
                self.bounds.map.get_mut(w).expect("listed").final_at = Some(self.now_ms);
                if time_over && !later_passed {
                    self.bounds.open_floor = self.bounds.open_floor.max(w.saturating_add(1));
                }
            } else {
                break;
            }
        }
    }

    pub(super) fn window_ref(&self, w: i64) -> WindowRef {
        let b = self.bounds.map[&w];
        WindowRef {
            id: w,
            first: b.first,
            last: b.last,
            start_ms: w.saturating_mul(self.cfg.timing.cut_interval_ms),
            end_ms: self.window_end_ms(w),
        }
    }

    /// Drops the primary's windows every replica has compared, and the per-partition state
    /// that only served them.
    pub(super) fn drop_compared(&mut self) {
        let min_done = (1..self.streams.len())
            .map(|r| self.streams[r].done_upto.unwrap_or(i64::MIN))
            .min()
            .unwrap_or_else(|| {
                // No replica: the primary's windows close as soon as they are final.
                self.bounds
                    .map
                    .iter()
                    .filter(|(_, b)| b.final_at.is_some())
                    .map(|(w, _)| *w)
                    .max()
                    .unwrap_or(i64::MIN)
            });
        // Windows with a mismatch not yet confirmed, or held until the replica is heard from,
        // keep their offsets uncommitted.
        let min_done = self
            .first_provisional()
            .map_or(min_done, |w| min_done.min(w.saturating_sub(1)));
        if min_done == i64::MIN {
            return;
        }
        let dropped: Vec<i64> = self
            .bounds
            .map
            .range(..=min_done)
            .map(|(w, _)| *w)
            .collect();
        if dropped.is_empty() {
            return;
        }
        let last_pos = self.bounds.map[dropped.last().expect("non-empty")].last;
        for w in &dropped {
            self.bounds.map.remove(w);
            self.bounds.generation += 1;
            self.streams[PRIMARY as usize].windows.remove(w);
        }
        self.streams[PRIMARY as usize].done_upto = Some(min_done);
        self.streams[PRIMARY as usize].closed_pos = Some(last_pos);
        for t in &mut self.topics {
            let closed = self.streams[t.stream as usize].closed_pos;
            let done = self.streams[t.stream as usize].done_upto;
            for p in &mut t.parts {
                if let Some(c) = closed {
                    // (The events of the partition's last transaction stay: more of it may
                    // still come, late, and must not be taken for redeliveries.)
                    let hwm = p.hwm.tx;
                    let n = p.recent.partition_point(|(x, _)| *x <= c && x.tx < hwm);
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
        self.drill.settle(min_done);
    }
}
