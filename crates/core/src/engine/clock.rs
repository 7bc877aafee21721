//! Record time: which positions a stream wrote before a given time, and how late records
//! arrive (the producers' skew).

use super::*;

/// Highest position written per bucket of record time, over a trailing span. Answers "the
/// highest position among the records stamped before T" for T within the span; older
/// buckets fold into a floor. Prefix maxima are kept, recomputed lazily from the first bucket
/// a late record changed, so that both noting and asking are cheap. The newest bucket, which
/// nearly every record falls in, is kept apart from the others: noting into it is a compare.
pub(super) struct ClockIndex {
    /// The buckets before the newest: (bucket, highest position in it, highest position in
    /// it and every earlier one).
    pub(super) buckets: VecDeque<(i64, Position, Position)>,
    /// The newest bucket (`NO_BUCKET` before the first record) and its highest position.
    pub(super) newest: i64,
    pub(super) newest_max: Position,
    /// Prefix maxima from this index on are stale.
    pub(super) dirty_from: usize,
    pub(super) floor: Position,
    /// Buckets below this have been folded into `floor`.
    pub(super) folded_below: i64,
    /// The last bucket a record time fell in.
    pub(super) last_bucket: LastBucket,
}

impl Default for ClockIndex {
    fn default() -> Self {
        ClockIndex {
            buckets: VecDeque::new(),
            newest: Self::NO_BUCKET,
            newest_max: Position::ZERO,
            dirty_from: 0,
            floor: Position::ZERO,
            folded_below: 0,
            last_bucket: LastBucket::default(),
        }
    }
}

/// The bucket of a time (`t.div_euclid(width)`), remembered: consecutive times mostly fall in
/// the last one, found without a division.
#[derive(Default)]
pub(super) struct LastBucket {
    /// (first time, bucket); (0, 0) is right for any width: times from 0 up fall in bucket 0.
    pub(super) start: i64,
    pub(super) bucket: i64,
}

impl LastBucket {
    /// The bucket of `t` for buckets `width` wide (the same width at every call).
    #[inline]
    pub(super) fn of(&mut self, t: i64, width: i64) -> i64 {
        if (t.wrapping_sub(self.start) as u64) < width as u64 {
            return self.bucket;
        }
        let b = t.div_euclid(width);
        // Remembered only when the bucket lies wholly within the range of times, so that
        // the wrapping compare above cannot wrap.
        if let Some(start) = b.checked_mul(width)
            && start.checked_add(width).is_some()
        {
            (self.start, self.bucket) = (start, b);
        }
        b
    }
}

impl ClockIndex {
    pub(super) const BUCKET_MS: i64 = 10;
    pub(super) const SPAN: usize = 2000;

    /// No bucket: no time's bucket is this (times are `i64`, buckets a tenth of them).
    pub(super) const NO_BUCKET: i64 = i64::MIN;

    #[inline(always)]
    pub(super) fn note(&mut self, ts_ms: i64, p: Position) {
        let b = self.last_bucket.of(ts_ms, Self::BUCKET_MS);
        if b == self.newest {
            if p > self.newest_max {
                self.newest_max = p;
            }
            return;
        }
        self.note_elsewhere(b, p);
    }

    /// [`note`](Self::note) into a bucket other than the newest.
    #[cold]
    pub(super) fn note_elsewhere(&mut self, b: i64, p: Position) {
        if b > self.newest {
            if self.newest != Self::NO_BUCKET {
                let n = self.buckets.len();
                self.buckets
                    .push_back((self.newest, self.newest_max, self.newest_max));
                self.dirty_from = self.dirty_from.min(n);
            }
            (self.newest, self.newest_max) = (b, p);
            if self.buckets.len() > Self::SPAN {
                self.refresh(Self::SPAN / 2);
                for _ in 0..Self::SPAN / 2 {
                    let (b, _, prefix) = self.buckets.pop_front().expect("non-empty");
                    self.floor = self.floor.max(prefix);
                    self.folded_below = b + 1;
                }
                self.dirty_from = 0;
                self.refresh(self.buckets.len());
            }
            return;
        }
        if b < self.folded_below {
            // Older than the span: below every time still asked about.
            self.floor = self.floor.max(p);
            return;
        }
        let at = self.buckets.partition_point(|(x, _, _)| *x < b);
        match self.buckets.get_mut(at) {
            Some((x, max, _)) if *x == b => {
                if p <= *max {
                    return;
                }
                *max = p;
            }
            _ => self.buckets.insert(at, (b, p, p)),
        }
        self.dirty_from = self.dirty_from.min(at);
    }

    /// Recomputes the stale prefix maxima.
    pub(super) fn refresh_all(&mut self) {
        self.refresh(self.buckets.len());
    }

    /// Recomputes the stale prefix maxima below index `upto`.
    pub(super) fn refresh(&mut self, upto: usize) {
        let mut prev = if self.dirty_from == 0 {
            self.floor
        } else {
            self.buckets[self.dirty_from - 1].2
        };
        for i in self.dirty_from..upto {
            let e = &mut self.buckets[i];
            prev = prev.max(e.1);
            e.2 = prev;
        }
        self.dirty_from = self.dirty_from.max(upto);
    }

    /// The highest position among records stamped before `t` (whole buckets only, so never
    /// more than the truth); `None` when `t` lies before the span kept.
    pub(super) fn before(&self, t: i64) -> Option<Position> {
        let limit = t.div_euclid(Self::BUCKET_MS); // buckets strictly below are wholly before t
        if limit < self.folded_below {
            return None;
        }
        let settled = self.settled_before(limit);
        // (The newest bucket is above all the others: below the limit, they all are. Before
        // the first record, `NO_BUCKET` is below every limit and its maximum is the lowest.)
        Some(if self.newest < limit {
            settled.max(self.newest_max)
        } else {
            settled
        })
    }

    /// The highest position among the buckets before the newest that lie below `limit`.
    pub(super) fn settled_before(&self, limit: i64) -> Position {
        let idx = self.buckets.partition_point(|(b, _, _)| *b < limit);
        if idx == 0 {
            return self.floor;
        }
        if self.dirty_from >= idx {
            return self.buckets[idx - 1].2.max(self.floor);
        }
        // Prefix maxima are fresh below `dirty_from` (refreshed at every advance); the rest
        // is scanned.
        let mut max = if self.dirty_from == 0 {
            self.floor
        } else {
            self.buckets[self.dirty_from - 1].2
        };
        for i in self.dirty_from..idx {
            max = max.max(self.buckets[i].1);
        }
        max.max(self.floor)
    }
}

/// The producers' skew learned: the latest a record was seen to arrive behind its partition's
/// read-through time, fading by half per minute (of the verifier's clock) without a new high.
pub(super) struct Skew {
    pub(super) seen: i64,
    /// When `seen` was last raised or halved (`i64::MIN`: from the next clock reading on).
    at: i64,
}

impl Default for Skew {
    fn default() -> Self {
        Skew {
            seen: 0,
            at: i64::MIN,
        }
    }
}

impl Skew {
    /// A record arrived `behind` ms behind its partition's read-through time, at `now`.
    pub(super) fn note(&mut self, behind: i64, now: i64) {
        if behind > self.seen {
            self.seen = behind;
            self.at = now;
        }
    }

    /// Fades what was learned, the clock reading `now`.
    pub(super) fn fade(&mut self, now: i64) {
        if self.at == i64::MIN && now != i64::MIN {
            self.at = now;
        }
        if self.seen > 0 && now.saturating_sub(self.at) >= 60_000 {
            self.seen /= 2;
            self.at = now;
        }
    }

    /// The skew allowed: at least `least`, three times what was seen (an overloaded producer's
    /// skew can triple within a second) up to `most`.
    pub(super) fn allowed(&self, least: i64, most: i64) -> i64 {
        least.max(self.seen.saturating_mul(3).min(most))
    }

    /// Continues from a checkpoint's skew, fading from the first clock reading on as if just
    /// seen.
    pub(super) fn restore(&mut self, seen: i64) {
        if seen > self.seen {
            self.seen = seen;
            self.at = i64::MIN;
        }
    }
}

/// The first record of a partition found stamped in the future: said once per partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FutureRecord {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub timestamp_ms: i64,
    /// The latest stamp allowed then: the wall clock told plus `future_tolerance_ms`.
    pub limit_ms: i64,
}

impl<D: Decoder> Engine<D> {
    /// Tells the time no record can have been written after: the wall clock, for a verifier
    /// reading live topics (told as often as records are fed). A record stamped later than
    /// this plus `future_tolerance_ms` does not move the verifier's clock (see
    /// [`Engine::in_future`]). Never told, nothing is in the future. Only moves forward.
    pub fn set_wall_clock(&mut self, wall_ms: i64) {
        if self.wall_ms == i64::MAX || wall_ms > self.wall_ms {
            self.wall_ms = wall_ms;
        }
    }

    /// Records may arrive up to `ms` behind their partition's read-through time: the producers
    /// could not write for that long (the cluster was unreachable), and what they held comes
    /// now. Raises the skew allowed for, as a record seen that late would (fading as it does).
    pub fn allow_late(&mut self, ms: i64) {
        self.skew.note(ms, self.now_ms);
    }

    /// Whether a record stamped `timestamp_ms` is stamped in the future: beyond the wall clock
    /// told plus `future_tolerance_ms`. Such a record is verified like any, but its stamp is
    /// not believed: it is taken as stamped at the verifier's clock reading.
    #[inline]
    pub fn in_future(&self, timestamp_ms: i64) -> bool {
        timestamp_ms
            > self
                .wall_ms
                .saturating_add(self.cfg.timing.future_tolerance_ms)
    }

    /// The first record of each partition found stamped in the future, in the order found.
    pub fn future_records(&self) -> &[FutureRecord] {
        &self.future
    }

    /// A record stamped in the future: counted (and remembered once per partition); returns
    /// the stamp it is taken to have, the clock's reading (the wall clock before the first
    /// record), so that it neither moves the clock nor counts as written later than its
    /// neighbours.
    #[cold]
    pub(super) fn stamped_in_future(&mut self, rec: &Record<'_>) -> i64 {
        let limit_ms = self
            .wall_ms
            .saturating_add(self.cfg.timing.future_tolerance_ms);
        let topic = &mut self.topics[rec.topic as usize];
        topic.stats.future += 1;
        if let Some(part) = topic.parts.get_mut(rec.partition as usize)
            && !part.future
        {
            part.future = true;
            self.future.push(FutureRecord {
                topic: topic.name.clone(),
                partition: rec.partition,
                offset: rec.offset,
                timestamp_ms: rec.timestamp_ms,
                limit_ms,
            });
        }
        if self.now_ms == i64::MIN {
            self.wall_ms
        } else {
            self.now_ms
        }
    }
}
