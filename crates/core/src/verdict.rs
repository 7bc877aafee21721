//! What the verifier concludes: divergence events, keyed so that a redelivered verdict is
//! the same record.

use serde::{Deserialize, Serialize};

use crate::avro::FieldDiff;
use crate::digest::OpCounts;
use crate::envelope::Position;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    DataMismatch,
    SchemaDrift,
    ReplicaLag,
    StreamSilent,
    PoisonEvent,
    Recovered,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DataMismatch => "DataMismatch",
            Kind::SchemaDrift => "SchemaDrift",
            Kind::ReplicaLag => "ReplicaLag",
            Kind::StreamSilent => "StreamSilent",
            Kind::PoisonEvent => "PoisonEvent",
            Kind::Recovered => "Recovered",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A window: the positions it holds and the origin commit times that cut it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowRef {
    pub id: i64,
    pub first: Position,
    pub last: Position,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// One side's digest of a range in a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Side {
    pub digest: String,
    pub ops: OpCounts,
}

/// The first and last offsets of one partition that fed a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetRange {
    pub stream: String,
    pub topic: String,
    pub partition: u32,
    pub first: i64,
    pub last: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaInfo {
    pub subject: String,
    pub expected_id: u32,
    pub expected_version: Option<u32>,
    pub actual_id: u32,
    pub actual_version: Option<u32>,
    pub fields: Vec<FieldDiff>,
    /// The first drifted event.
    pub first_position: Position,
    pub first_ts_ms: i64,
    pub events: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LagInfo {
    pub primary_position: Position,
    pub replica_position: Position,
    pub positions_behind: u64,
    pub ms_behind: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoisonInfo {
    pub topic: String,
    pub partition: u32,
    pub offset: i64,
    pub error: String,
}

/// One side's image of a row, for drill-down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowImage {
    pub position: Position,
    pub op: crate::digest::Op,
    /// The row as of the end of the window (null when deleted or never written).
    pub row: serde_json::Value,
    pub schema_id: u32,
}

/// A key whose changes differ between the primary and a replica in a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyDiff {
    pub key: serde_json::Value,
    pub primary: Option<RowImage>,
    pub replica: Option<RowImage>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Divergence {
    pub kind: Kind,
    /// The replica stream (for a poison event, the stream the record came from).
    pub replica: String,
    pub table: Option<String>,
    pub range: Option<u64>,
    pub range_label: Option<String>,
    pub window: Option<WindowRef>,
    pub primary: Option<Side>,
    pub replica_side: Option<Side>,
    pub schema: Option<SchemaInfo>,
    pub offsets: Vec<OffsetRange>,
    pub lag: Option<LagInfo>,
    pub poison: Option<PoisonInfo>,
    /// For `Recovered`: which episode ended (`DataMismatch`, `SchemaDrift`, `ReplicaLag`, `StreamSilent`).
    pub recovered: Option<Kind>,
    pub keys: Vec<KeyDiff>,
    /// Event time (the verifier's clock, from record timestamps) when it was concluded.
    pub detected_at_ms: i64,
}

impl Divergence {
    /// A verdict of `kind` about `replica` with every detail left empty.
    pub fn new(kind: Kind, replica: &str, detected_at_ms: i64) -> Self {
        Divergence {
            kind,
            replica: replica.to_string(),
            table: None,
            range: None,
            range_label: None,
            window: None,
            primary: None,
            replica_side: None,
            schema: None,
            offsets: Vec::new(),
            lag: None,
            poison: None,
            recovered: None,
            keys: Vec::new(),
            detected_at_ms,
        }
    }

    /// The deterministic identity of this verdict: (kind, replica, table, range, window), or
    /// the record's coordinates for a poison event. A redelivered verdict has the same key.
    pub fn key(&self) -> String {
        if let Some(p) = &self.poison {
            return format!(
                "{}/{}/{}/{}/{}",
                self.kind, self.replica, p.topic, p.partition, p.offset
            );
        }
        let range = self.range.map_or("*".to_string(), |r| r.to_string());
        let window = self.window.map_or("*".to_string(), |w| w.id.to_string());
        let what = match self.recovered {
            Some(k) => format!("{}:{k}", self.kind),
            None => self.kind.to_string(),
        };
        format!(
            "{what}/{}/{}/{range}/{window}",
            self.replica,
            self.table.as_deref().unwrap_or("*")
        )
    }

    /// A one-line account for terminals and logs.
    pub fn summary(&self) -> String {
        let table = self.table.as_deref().unwrap_or("-");
        let window = self
            .window
            .map(|w| format!(" window {} (positions {}..{})", w.id, w.first.tx, w.last.tx))
            .unwrap_or_default();
        match self.kind {
            Kind::DataMismatch => format!(
                "DataMismatch {} {table} {}{window}: primary {} ({} events), replica {} ({} events)",
                self.replica,
                self.range_label.as_deref().unwrap_or("-"),
                self.primary
                    .as_ref()
                    .map_or("-", |s| s.digest.get(..8).unwrap_or(&s.digest)),
                self.primary.as_ref().map_or(0, |s| s.ops.total()),
                self.replica_side
                    .as_ref()
                    .map_or("-", |s| s.digest.get(..8).unwrap_or(&s.digest)),
                self.replica_side.as_ref().map_or(0, |s| s.ops.total()),
            ),
            Kind::SchemaDrift => {
                let s = self.schema.as_ref();
                format!(
                    "SchemaDrift {} {table}{window}: writes {} version {} (id {}), primary is at version {} (id {}); {}",
                    self.replica,
                    s.map_or("-", |s| &s.subject),
                    s.and_then(|s| s.actual_version)
                        .map_or("?".into(), |v| v.to_string()),
                    s.map_or(0, |s| s.actual_id),
                    s.and_then(|s| s.expected_version)
                        .map_or("?".into(), |v| v.to_string()),
                    s.map_or(0, |s| s.expected_id),
                    s.map(|s| s
                        .fields
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "))
                        .unwrap_or_default()
                )
            }
            Kind::ReplicaLag => {
                let l = self.lag.as_ref();
                format!(
                    "ReplicaLag {}: {} positions and {} ms behind the primary",
                    self.replica,
                    l.map_or(0, |l| l.positions_behind),
                    l.map_or(0, |l| l.ms_behind)
                )
            }
            Kind::StreamSilent => format!(
                "StreamSilent {}: no records for {} ms while the primary is writing",
                self.replica,
                self.lag.as_ref().map_or(0, |l| l.ms_behind)
            ),
            Kind::PoisonEvent => {
                let p = self.poison.as_ref();
                format!(
                    "PoisonEvent {} {}[{}]@{}: {}",
                    self.replica,
                    p.map_or("-", |p| &p.topic),
                    p.map_or(0, |p| p.partition),
                    p.map_or(0, |p| p.offset),
                    p.map_or("-", |p| &p.error)
                )
            }
            Kind::Recovered => format!(
                "Recovered {} {table} {}: {} ended{window}",
                self.replica,
                self.range_label.as_deref().unwrap_or(""),
                self.recovered.map_or("-", Kind::as_str)
            ),
        }
    }
}
