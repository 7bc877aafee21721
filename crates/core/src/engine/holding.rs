//! Why the oldest open window is still open: its offsets, and those of every record read
//! after it, stay uncommitted while it is. Said in the service's log when it lasts.

use super::*;

impl<D: Decoder> Engine<D> {
    /// The oldest open window, and in words what keeps it open; `None` without one.
    pub fn oldest_hold(&self) -> Option<(i64, String)> {
        let (&w, b) = self.bounds.map.iter().next()?;
        let span = format!("window {w} (positions {}..{})", b.first, b.last);
        if b.final_at.is_none() {
            return Some((
                w,
                format!(
                    "{span}: the primary has not been read past it (its watermark is {})",
                    self.watermark(PRIMARY)
                ),
            ));
        }
        let mut why = Vec::new();
        for r in 1..self.streams.len() as StreamId {
            let s = &self.streams[r as usize];
            if s.done_upto.is_none_or(|d| d < w) {
                why.push(format!(
                    "{} has not been read past it (its watermark is {})",
                    s.name,
                    self.watermark(r)
                ));
            }
            for p in s.provisional.iter().filter(|p| p.window <= w) {
                why.push(format!(
                    "a mismatch of {} in `{}` awaits confirmation (found {} ms ago)",
                    s.name,
                    self.tables[p.key.0 as usize].name,
                    self.now_ms.saturating_sub(p.since)
                ));
            }
            for (t, held) in &s.absent {
                for a in held.iter().filter(|a| a.window.is_some_and(|aw| aw <= w)) {
                    why.push(format!(
                        "a mismatch of {} in `{}` is held until it sends `{}` past {} (it is at {}; \
                         the primary at {}{})",
                        s.name,
                        self.tables[*t as usize].name,
                        self.tables[*t as usize].name,
                        a.needed,
                        self.replica_table_pos(r, *t),
                        self.replica_table_pos(PRIMARY, *t),
                        if self.table_silent(r, *t) {
                            "; the table is silent"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
        why.dedup();
        if why.is_empty() {
            why.push("compared, to be closed at the next step".into());
        }
        Some((w, format!("{span}: {}", why.join("; "))))
    }
}
