//! What a run looked like per (replica, table): the status of consecutive windows, and the
//! schemas each stream wrote.

use super::*;

/// How a window of one table compared, for timelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowStatus {
    Consistent,
    Lagging,
    Mismatched,
    Drifted,
}

/// Consecutive compared windows of one (replica, table) with the same status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Segment {
    pub status: WindowStatus,
    pub first_window: i64,
    pub last_window: i64,
    pub start_ms: i64,
    pub end_ms: i64,
    pub first_position: Position,
    pub last_position: Position,
    pub windows: u64,
}

/// A schema a stream wrote a table with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SchemaSeen {
    pub stream: String,
    pub table: String,
    pub schema_id: u32,
    pub subject: String,
    pub version: Option<u32>,
}

/// Segments kept per (replica, table): the newest.
const MAX_SEGMENTS: usize = 8192;

impl<D: Decoder> Engine<D> {
    pub(super) fn record_timeline(
        &mut self,
        r: StreamId,
        window: WindowRef,
        tables: &[TableId],
        racc: &WindowAcc,
        mismatched: &[TableId],
    ) {
        let lagging = self.streams[r as usize].lagging.is_some();
        for t in tables {
            let status = if racc.drift.contains_key(t) {
                WindowStatus::Drifted
            } else if mismatched.contains(t) {
                WindowStatus::Mismatched
            } else if lagging {
                WindowStatus::Lagging
            } else {
                WindowStatus::Consistent
            };
            let segs = self.timeline.entry((r, *t)).or_default();
            match segs.last_mut() {
                Some(last) if last.status == status => {
                    last.last_window = window.id;
                    last.end_ms = window.end_ms;
                    last.last_position = window.last;
                    last.windows += 1;
                }
                _ => {
                    segs.push(Segment {
                        status,
                        first_window: window.id,
                        last_window: window.id,
                        start_ms: window.start_ms,
                        end_ms: window.end_ms,
                        first_position: window.first,
                        last_position: window.last,
                        windows: 1,
                    });
                    // A status that keeps changing would grow it without end: the oldest go.
                    if segs.len() > MAX_SEGMENTS + MAX_SEGMENTS / 8 {
                        segs.drain(..segs.len() - MAX_SEGMENTS);
                    }
                }
            }
        }
    }

    /// Per (replica, table), the compared windows as runs of equal status.
    pub fn timeline(&self) -> Vec<(String, String, Vec<Segment>)> {
        self.timeline
            .iter()
            .map(|((r, t), segs)| {
                (
                    self.streams[*r as usize].name.clone(),
                    self.tables[*t as usize].name.clone(),
                    segs.clone(),
                )
            })
            .collect()
    }

    /// The value schemas each stream wrote each table with.
    pub fn schemas_seen(&self) -> Vec<SchemaSeen> {
        let mut out = Vec::new();
        for (i, t) in self.topics.iter().enumerate() {
            let subject = self.decoder.subject(i as TopicId);
            for schema_id in self.decoder.written_with(i as TopicId) {
                out.push(SchemaSeen {
                    stream: self.streams[t.stream as usize].name.clone(),
                    table: self.tables[t.table as usize].name.clone(),
                    schema_id,
                    subject: subject.to_string(),
                    version: self.decoder.version(schema_id, subject),
                });
            }
        }
        out
    }
}
