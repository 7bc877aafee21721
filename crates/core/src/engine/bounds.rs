//! Memory bounds. A replica far behind the primary keeps the primary's windows open; one far
//! ahead of it (or with a record at an absurd position) parks its records until the primary
//! passes them. Either would grow without end. Past a bound the engine gives up on a span of
//! that replica's positions, says so with an `Unverified` verdict, and goes on verifying the
//! rest: the span's windows are not compared for it, and its records there are counted in
//! [`TopicStats::unverified`], not summed.

use super::*;

/// What the engine may hold. Defaults suit a few replicas on a machine with a few GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of records parked ahead of the primary, per replica.
    pub parked_bytes: usize,
    /// How long (the engine's clock) a record may stay parked; 0: as long as it takes.
    pub parked_ms: i64,
    /// Bytes of open windows, all streams together.
    pub window_bytes: usize,
    /// Keys followed by drill-down, all ranges together.
    pub drill_keys: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            parked_bytes: 256 << 20,
            // Off: the engine's clock jumps (a backlog read, then the present), and ages
            // measured on it gave up on records the primary was about to pass.
            parked_ms: 0,
            window_bytes: 1 << 30,
            drill_keys: 1_000_000,
        }
    }
}

/// What the engine holds, in bytes (about).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Held {
    /// Open windows, all streams together.
    pub windows: usize,
    /// Records parked ahead of the primary, all replicas together.
    pub parked: usize,
}

/// Spans kept per replica at most (the closest are merged beyond it).
const MAX_SPANS: usize = 64;

/// A record's share of the parking, in bytes.
pub(super) fn parked_size(p: &Parked) -> usize {
    std::mem::size_of::<Parked>() + p.value.len() + p.key.as_ref().map_or(0, Vec::len)
}

impl<D: Decoder> Engine<D> {
    /// Whether replica `r` gave up on `position`.
    #[inline(always)]
    pub(super) fn unverified_at(&self, r: StreamId, position: Position) -> bool {
        let spans = &self.streams[r as usize].unverified;
        !spans.is_empty() && spans.iter().any(|(a, b)| *a <= position && position <= *b)
    }

    /// Whether replica `r` gave up on any position of `[first, last]`.
    pub(super) fn unverified_within(&self, r: StreamId, first: Position, last: Position) -> bool {
        self.streams[r as usize]
            .unverified
            .iter()
            .any(|(a, b)| *a <= last && first <= *b)
    }

    fn give_up(&mut self, r: StreamId, first: Position, last: Position) {
        let spans = &mut self.streams[r as usize].unverified;
        spans.push((first, last));
        spans.sort_unstable();
        let mut merged: Vec<(Position, Position)> = Vec::with_capacity(spans.len());
        for (a, b) in spans.drain(..) {
            match merged.last_mut() {
                Some((_, pb)) if a <= *pb => *pb = (*pb).max(b),
                _ => merged.push((a, b)),
            }
        }
        while merged.len() > MAX_SPANS {
            // Merge the two neighbours closest together (what lies between is given up too).
            let i = (0..merged.len() - 1)
                .min_by_key(|i| merged[i + 1].0.tx.saturating_sub(merged[*i].1.tx))
                .expect("more than one span");
            merged[i].1 = merged[i + 1].1;
            merged.remove(i + 1);
        }
        *spans = merged;
        // A replica given up on before its starting state was compared cannot compare it.
        if !self.started_id(r) {
            let name = self.streams[r as usize].name.clone();
            self.streams[r as usize].start = Start::Started;
            self.stats.changes_only.insert(
                name,
                "a memory bound was reached before the starting state was compared: only later changes are verified".into(),
            );
        }
    }

    /// Enforces [`Limits`]: parked records first (the oldest past `parked_ms`, then the
    /// farthest ahead past `parked_bytes`), then open windows (the replica holding the oldest
    /// ones is given up on up to the newest closed window).
    pub(super) fn enforce_limits(&mut self, out: &mut Vec<Divergence>) {
        for r in 1..self.streams.len() as StreamId {
            self.evict_parked(r, out);
        }
        if self.window_bytes() > self.cfg.limits.window_bytes {
            self.give_up_windows(out);
        }
    }

    fn evict_parked(&mut self, r: StreamId, out: &mut Vec<Divergence>) {
        let limits = self.cfg.limits;
        let s = &self.streams[r as usize];
        if s.parked == 0 {
            return;
        }
        // By age only once the primary is read to its end (what it has passed is released
        // first): while it is still being read, its records may yet pass them (a backlog,
        // a clock that jumped to the present).
        let old = if limits.parked_ms > 0 && self.caught_up(PRIMARY) {
            self.now_ms.saturating_sub(limits.parked_ms)
        } else {
            i64::MIN
        };
        let too_old = s.topics.iter().any(|t| {
            self.topics[*t as usize]
                .parts
                .iter()
                .any(|p| p.parked.front().is_some_and(|x| x.parked_at < old))
        });
        if !too_old && s.parked_bytes <= limits.parked_bytes {
            return;
        }
        // Past the byte bound, keep the records nearest the primary: those it reaches first.
        let mut all: Vec<(Position, usize)> = Vec::new();
        for t in &s.topics {
            for p in &self.topics[*t as usize].parts {
                all.extend(p.parked.iter().map(|x| (x.position, parked_size(x))));
            }
        }
        all.sort_unstable_by_key(|(p, _)| *p);
        let mut kept = 0usize;
        let mut keep_below = Position::MAX;
        for (p, size) in &all {
            if kept + size > limits.parked_bytes / 4 * 3 && s.parked_bytes > limits.parked_bytes {
                keep_below = *p;
                break;
            }
            kept += size;
        }
        let evict = |x: &Parked| x.position >= keep_below || x.parked_at < old;
        let mut span: Option<(Position, Position)> = None;
        let (mut start_ms, mut end_ms) = (i64::MAX, i64::MIN);
        let mut offsets: Vec<OffsetRange> = Vec::new();
        let (mut records, mut bytes) = (0u64, 0usize);
        let mut tables: Vec<TableId> = Vec::new();
        for t in self.streams[r as usize].topics.clone() {
            let topic = &mut self.topics[t as usize];
            for (pi, part) in topic.parts.iter_mut().enumerate() {
                let mut range: Option<(i64, i64)> = None;
                let mut n = 0;
                part.parked.retain(|x| {
                    if !evict(x) {
                        return true;
                    }
                    span = Some(span.map_or((x.position, x.position), |(a, b)| {
                        (a.min(x.position), b.max(x.position))
                    }));
                    start_ms = start_ms.min(x.rec_meta.3);
                    end_ms = end_ms.max(x.rec_meta.3);
                    let o = x.rec_meta.2;
                    range = Some(range.map_or((o, o), |(a, b)| (a.min(o), b.max(o))));
                    bytes += parked_size(x);
                    n += 1;
                    false
                });
                if let Some((first, last)) = range {
                    offsets.push(OffsetRange {
                        stream: self.streams[r as usize].name.clone(),
                        topic: topic.name.clone(),
                        partition: pi as u32,
                        first,
                        last,
                    });
                    topic.stats.parked -= n;
                    topic.stats.unverified += n;
                    records += n;
                    if !tables.contains(&topic.table) {
                        tables.push(topic.table);
                    }
                }
            }
        }
        let Some((first, last)) = span else { return };
        let s = &mut self.streams[r as usize];
        s.parked -= records as usize;
        s.parked_bytes -= bytes;
        self.give_up(r, first, last);
        let reason = format!(
            "{records} records ({bytes} bytes) held ahead of the primary, which had not reached them, past verify.max-parked-mb ({} MiB) or verify.max-parked-s ({} s)",
            limits.parked_bytes >> 20,
            limits.parked_ms / 1000
        );
        self.unverified_verdict(
            r,
            &tables,
            (first, last),
            (start_ms, end_ms),
            offsets,
            reason,
            out,
        );
    }

    /// What the engine holds now, against [`Limits`].
    pub fn held(&self) -> Held {
        Held {
            windows: self.window_bytes(),
            parked: self.streams.iter().map(|s| s.parked_bytes).sum(),
        }
    }

    /// Bytes of the open windows of every stream.
    fn window_bytes(&self) -> usize {
        self.streams
            .iter()
            .flat_map(|s| s.windows.values())
            .map(|w| w.digests.bytes())
            .sum()
    }

    /// Gives up on the windows of the replica that holds the oldest ones open, up to the
    /// newest window the primary has closed.
    fn give_up_windows(&mut self, out: &mut Vec<Divergence>) {
        let Some(newest) = self
            .bounds
            .map
            .iter()
            .rev()
            .find(|(_, b)| b.final_at.is_some())
            .map(|(w, _)| *w)
        else {
            return;
        };
        let behind = (1..self.streams.len() as StreamId)
            .filter(|r| {
                self.streams[*r as usize]
                    .done_upto
                    .is_none_or(|d| d < newest)
            })
            .min_by_key(|r| self.streams[*r as usize].done_upto.unwrap_or(i64::MIN));
        let Some(r) = behind else { return };
        let from = self.after_done(r);
        let windows: Vec<(i64, Bound)> = self
            .bounds
            .map
            .range(from)
            .take_while(|(w, _)| **w <= newest)
            .map(|(w, b)| (*w, *b))
            .collect();
        let (Some((w0, b0)), Some((_, bn))) = (windows.first(), windows.last()) else {
            return;
        };
        let (first, last) = (b0.first, bn.last);
        let span_ms = (
            self.window_ref(*w0).start_ms,
            self.window_ref(newest).end_ms,
        );
        let mut tables: Vec<TableId> = Vec::new();
        for (w, _) in &windows {
            if let Some(acc) = self.streams[PRIMARY as usize].windows.get(w) {
                for t in acc.tables.keys() {
                    if !tables.contains(t) {
                        tables.push(*t);
                    }
                }
            }
        }
        let limit = self.cfg.limits.window_bytes;
        let held = self.window_bytes();
        self.give_up(r, first, last);
        let reason = format!(
            "{} windows the replica had not reached held {} MiB open, past verify.max-windows-mb ({} MiB)",
            windows.len(),
            held >> 20,
            limit >> 20
        );
        self.unverified_verdict(r, &tables, (first, last), span_ms, Vec::new(), reason, out);
        self.compare_ready(r, out);
    }

    #[allow(clippy::too_many_arguments)]
    fn unverified_verdict(
        &mut self,
        r: StreamId,
        tables: &[TableId],
        (first, last): (Position, Position),
        (start_ms, end_ms): (i64, i64),
        offsets: Vec<OffsetRange>,
        reason: String,
        out: &mut Vec<Divergence>,
    ) {
        let table = match tables {
            [t] => Some(self.tables[*t as usize].name.clone()),
            _ => None,
        };
        let span = WindowRef {
            id: self.now_ms,
            first,
            last,
            start_ms,
            end_ms,
        };
        let lag = self.lag_of(r, 0);
        let d = self.verdict(
            r,
            Finding::Unverified(Unverified {
                table,
                span,
                offsets,
                lag,
                reason,
            }),
        );
        self.emit(d, out);
    }
}
