//! The episodes in progress (drift, lag, silence, started replicas, the skew learned), saved
//! with committed offsets and restored on restart.

use super::*;
use crate::origins::Epoch;
use std::collections::BTreeMap;

/// The episodes in progress, kept with committed offsets so that a restart continues them
/// instead of opening new ones (the same verdicts as a run without the restart).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    /// (replica, table) drifting from the primary's schema.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drifting: Vec<(String, String)>,
    /// (replica, table, position of the first event found drifting) of `drifting`: after a
    /// restart, a window before it compared again (another replica had not compared it, so
    /// its records are read again) does not end the episode.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift_from: Vec<(String, String, Position)>,
    /// (replica, first window of the episode) lagging.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lagging: Vec<(String, WindowRef)>,
    /// (replica, table) silent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silent: Vec<(String, String)>,
    /// (replica, table, where the replica's table had got to) of `silent`: records read again
    /// after the restart, up to there, do not end the silence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub silent_from: Vec<(String, String, Position)>,
    /// The producers' skew learned so far (ms), so that a restart does not relearn it the
    /// hard way.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skew_seen_ms: i64,
    /// Replicas whose starting state was compared (their snapshots' offsets are committed:
    /// a restart verifies their changes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub started: Vec<String>,
    /// The origins of GTID positions in the order they appeared (see [`crate::origins`]): a
    /// restart past a failover orders the new origin after the old one still.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origins: Vec<Epoch>,
    /// Every window up to this position was compared by every replica, with every table not
    /// in `compared_ahead`: a record at or below it read after a restart (a redelivery past the
    /// committed offsets) is not summed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compared_through: Option<Position>,
    /// Tables compared through a later position than `compared_through`. Instances sharing the
    /// tables hand them over with their own points: a table taken over from an instance that
    /// never committed was compared through nothing here, whatever the others were.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub compared_ahead: BTreeMap<String, Position>,
}

impl Checkpoint {
    /// The position `table`'s windows were compared through.
    pub fn compared_through_of(&self, table: &str) -> Option<Position> {
        self.compared_ahead
            .get(table)
            .copied()
            .or(self.compared_through)
    }
}

pub(super) fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl<D: Decoder> Engine<D> {
    /// The episodes in progress.
    pub fn checkpoint(&self) -> Checkpoint {
        let mut c = Checkpoint::default();
        for s in &self.streams[1..] {
            let mut drifting: Vec<(String, String, Position)> = s
                .drifting
                .iter()
                .map(|(t, from)| (s.name.clone(), self.tables[*t as usize].name.clone(), *from))
                .collect();
            drifting.sort();
            c.drifting
                .extend(drifting.iter().map(|(r, t, _)| (r.clone(), t.clone())));
            c.drift_from.extend(drifting);
            if let Some(w) = s.lagging {
                c.lagging.push((s.name.clone(), w));
            }
        }
        for t in self.topics.iter().filter(|t| t.silent) {
            let (replica, table) = (
                self.streams[t.stream as usize].name.clone(),
                self.tables[t.table as usize].name.clone(),
            );
            if t.silent_mark > Position::ZERO {
                c.silent_from
                    .push((replica.clone(), table.clone(), t.silent_mark));
            }
            c.silent.push((replica, table));
        }
        c.skew_seen_ms = self.skew.seen;
        c.started = (1..self.streams.len() as StreamId)
            .filter(|r| self.started_id(*r))
            .map(|r| self.streams[r as usize].name.clone())
            .collect();
        c.origins = self.decoder.origins().epochs();
        // Every table took part in the windows compared here; before them, each was compared
        // through its own point.
        let closed = self.streams[PRIMARY as usize].closed_pos;
        let through: Vec<(&str, Option<Position>)> = self
            .tables
            .iter()
            .map(|t| (t.name.as_str(), closed.max(t.compared_through)))
            .collect();
        c.compared_through = through
            .iter()
            .map(|(_, p)| *p)
            .min()
            .unwrap_or(closed.max(self.compared_through));
        c.compared_ahead = through
            .into_iter()
            .filter_map(|(t, p)| Some((t.to_string(), p?)))
            .filter(|(_, p)| Some(*p) > c.compared_through)
            .collect();
        c
    }

    /// Continues the episodes of a checkpoint (after [`Engine::add_topic`] for every topic).
    pub fn restore(&mut self, c: &Checkpoint) {
        self.compared_through = c.compared_through;
        for t in &mut self.tables {
            t.compared_through = c.compared_through_of(&t.name);
        }
        self.skew.restore(c.skew_seen_ms);
        self.decoder.restore_origins(&c.origins);
        for (replica, table) in &c.drifting {
            if let (Some(r), Some(t)) = (
                self.stream_id(replica),
                self.tables.iter().position(|x| &x.name == table),
            ) {
                let from = c
                    .drift_from
                    .iter()
                    .find(|(fr, ft, _)| fr == replica && ft == table)
                    .map_or(Position::ZERO, |(.., p)| *p);
                self.streams[r as usize].drifting.insert(t as TableId, from);
            }
        }
        for replica in &c.started {
            if let Some(r) = self.stream_id(replica) {
                self.streams[r as usize].start = Start::Started;
            }
        }
        for (replica, w) in &c.lagging {
            if let Some(r) = self.stream_id(replica) {
                self.streams[r as usize].lagging = Some(*w);
            }
        }
        for (replica, table) in &c.silent {
            let r = self.stream_id(replica);
            for t in self.topics.iter_mut() {
                if Some(t.stream) == r && self.tables[t.table as usize].name == *table {
                    t.silent = true;
                    t.silent_mark = c
                        .silent_from
                        .iter()
                        .find(|(fr, ft, _)| fr == replica && ft == table)
                        .map_or(Position::ZERO, |(.., p)| *p);
                }
            }
        }
    }
}
