//! What the verifier concludes: divergence events, keyed so that a redelivered verdict is
//! the same record.

mod record;

pub use record::{DivergenceRecord, IncompleteRecord};

use serde::{Deserialize, Serialize};

use crate::avro::FieldDiff;
use crate::digest::OpCounts;
use crate::envelope::Position;

/// Declares `Kind` with `ALL` and `as_str` from one list, so that neither can miss a kind.
macro_rules! kinds {
    ($($(#[$doc:meta])* $kind:ident),+ $(,)?) => {
        /// What a verdict is about, without its details: for counts, metrics and the report.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Kind {
            $($(#[$doc])* $kind),+
        }

        impl Kind {
            /// Every kind, in declaration order: the order of the Avro enum's symbols.
            pub const ALL: &'static [Kind] = &[$(Kind::$kind),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$kind => stringify!($kind)),+
                }
            }
        }
    };
}

kinds! {
    /// A range of a table whose changes differ from the primary's.
    DataMismatch,
    /// A replica writes a table with another row schema than the primary's.
    SchemaDrift,
    /// A replica's records are written too long after the primary's.
    ReplicaLag,
    /// A replica's table sends nothing while the primary's keeps writing.
    StreamSilent,
    /// A record the verifier could not read.
    PoisonEvent,
    /// An episode of another kind ended.
    Recovered,
    /// A span of a replica's positions the verifier gave up on (a memory bound was reached):
    /// not compared, neither consistent nor divergent.
    Unverified,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A window: the positions it holds and the origin commit times that cut it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// What makes the replica's row the primary's, when worked out (the engine does not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<Box<crate::repair::Statements>>,
}

/// A key range of a table: its index (hash bucket or ordered range) and how it reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeRef {
    pub index: u64,
    pub label: String,
}

/// Both sides' digests of a range in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sides {
    pub primary: Side,
    pub replica: Side,
}

/// A verdict: what was found about a replica, and when.
///
/// Serialized (JSON report) as the flat [`DivergenceRecord`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "DivergenceRecord", try_from = "DivergenceRecord")]
pub struct Divergence {
    /// The replica stream (for a poison event, the stream the record came from).
    pub replica: String,
    /// Event time (the verifier's clock, from record timestamps) when it was concluded.
    pub detected_at_ms: i64,
    pub finding: Finding,
}

/// What a verdict found, with exactly the details of its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// A range of a table whose changes differ from the primary's.
    DataMismatch(Mismatch),
    /// A replica writes a table with another row schema than the primary's.
    SchemaDrift(Drift),
    /// A replica's records of a window were written too long after the primary's.
    ReplicaLag { window: WindowRef, lag: LagInfo },
    /// A replica's table sends nothing while the primary's keeps writing.
    StreamSilent {
        table: String,
        /// The first window whose mismatch its silence explains, if any was held.
        window: Option<WindowRef>,
        lag: LagInfo,
    },
    /// A record the verifier could not read.
    PoisonEvent { table: String, poison: PoisonInfo },
    /// An episode of another kind ended.
    Recovered(Recovery),
    /// A span of a replica's positions the verifier gave up on.
    Unverified(Unverified),
}

/// A span of a replica's positions not compared, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Unverified {
    /// The table, when the span is of one table only.
    pub table: Option<String>,
    /// The positions (and, where known, the record times) not compared.
    pub span: WindowRef,
    /// The replica's records given up on, where they were held.
    pub offsets: Vec<OffsetRange>,
    /// Where the primary and the replica were.
    pub lag: LagInfo,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub table: String,
    pub range: RangeRef,
    /// None for a change that came late into a window no longer held.
    pub window: Option<WindowRef>,
    /// None for a late change of a compared window, with nothing to set it against.
    pub sides: Option<Sides>,
    pub offsets: Vec<OffsetRange>,
    pub keys: Vec<KeyDiff>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Drift {
    pub table: String,
    pub window: WindowRef,
    pub schema: SchemaInfo,
    pub offsets: Vec<OffsetRange>,
}

/// The episode a `Recovered` verdict ends, with what identifies it.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    DataMismatch {
        table: String,
        range: RangeRef,
        /// The window that brought the range back in line; none for a late record.
        window: Option<WindowRef>,
    },
    SchemaDrift {
        table: String,
        window: WindowRef,
    },
    /// `window` is the one the lag was found in.
    ReplicaLag {
        window: WindowRef,
    },
    StreamSilent {
        table: String,
    },
}

impl Recovery {
    /// The kind of the episode that ended.
    pub fn ended(&self) -> Kind {
        match self {
            Recovery::DataMismatch { .. } => Kind::DataMismatch,
            Recovery::SchemaDrift { .. } => Kind::SchemaDrift,
            Recovery::ReplicaLag { .. } => Kind::ReplicaLag,
            Recovery::StreamSilent { .. } => Kind::StreamSilent,
        }
    }
}

impl Finding {
    pub fn kind(&self) -> Kind {
        match self {
            Finding::DataMismatch(_) => Kind::DataMismatch,
            Finding::SchemaDrift(_) => Kind::SchemaDrift,
            Finding::ReplicaLag { .. } => Kind::ReplicaLag,
            Finding::Unverified(_) => Kind::Unverified,
            Finding::StreamSilent { .. } => Kind::StreamSilent,
            Finding::PoisonEvent { .. } => Kind::PoisonEvent,
            Finding::Recovered(_) => Kind::Recovered,
        }
    }
}

/// The deterministic identity of a verdict: a redelivered verdict has the same one. Both the
/// log key ([`Divergence::key`]) and the alert's Avro key are written from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity<'a> {
    pub kind: Kind,
    /// For `Recovered`: the kind of episode that ended.
    pub ended: Option<Kind>,
    pub replica: &'a str,
    pub table: Option<&'a str>,
    pub range: Option<u64>,
    pub window: Option<i64>,
    /// For a poison event: the record's coordinates, which identify it instead.
    pub record: Option<&'a PoisonInfo>,
}

impl Identity<'_> {
    /// The kind, qualified by the episode for `Recovered` (`Recovered:DataMismatch`).
    pub fn label(&self) -> String {
        match self.ended {
            Some(k) => format!("{}:{k}", self.kind),
            None => self.kind.to_string(),
        }
    }
}

impl std::fmt::Display for Identity<'_> {
    /// `kind/replica/table/range/window` (`*` for what a kind has not), or
    /// `kind/replica/topic/partition/offset` for a poison event.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(p) = self.record {
            return write!(
                f,
                "{}/{}/{}/{}/{}",
                self.kind, self.replica, p.topic, p.partition, p.offset
            );
        }
        let or_any = |v: Option<String>| v.unwrap_or_else(|| "*".to_string());
        write!(
            f,
            "{}/{}/{}/{}/{}",
            self.label(),
            self.replica,
            self.table.unwrap_or("*"),
            or_any(self.range.map(|r| r.to_string())),
            or_any(self.window.map(|w| w.to_string())),
        )
    }
}

impl Divergence {
    pub fn new(replica: &str, detected_at_ms: i64, finding: Finding) -> Self {
        Divergence {
            replica: replica.to_string(),
            detected_at_ms,
            finding,
        }
    }

    pub fn kind(&self) -> Kind {
        self.finding.kind()
    }

    /// The table it is about; none for a replica's lag (and its recovery).
    pub fn table(&self) -> Option<&str> {
        match &self.finding {
            Finding::DataMismatch(Mismatch { table, .. })
            | Finding::SchemaDrift(Drift { table, .. })
            | Finding::StreamSilent { table, .. }
            | Finding::PoisonEvent { table, .. }
            | Finding::Recovered(
                Recovery::DataMismatch { table, .. }
                | Recovery::SchemaDrift { table, .. }
                | Recovery::StreamSilent { table },
            ) => Some(table),
            Finding::Unverified(u) => u.table.as_deref(),
            Finding::ReplicaLag { .. } | Finding::Recovered(Recovery::ReplicaLag { .. }) => None,
        }
    }

    /// The key range, for a data mismatch and its recovery.
    pub fn range(&self) -> Option<&RangeRef> {
        match &self.finding {
            Finding::DataMismatch(Mismatch { range, .. })
            | Finding::Recovered(Recovery::DataMismatch { range, .. }) => Some(range),
            _ => None,
        }
    }

    /// The window it was concluded in (for a recovered lag, the one the lag was found in).
    pub fn window(&self) -> Option<WindowRef> {
        match &self.finding {
            Finding::DataMismatch(Mismatch { window, .. })
            | Finding::StreamSilent { window, .. }
            | Finding::Recovered(Recovery::DataMismatch { window, .. }) => *window,
            Finding::SchemaDrift(Drift { window, .. })
            | Finding::Unverified(Unverified { span: window, .. })
            | Finding::ReplicaLag { window, .. }
            | Finding::Recovered(
                Recovery::SchemaDrift { window, .. } | Recovery::ReplicaLag { window },
            ) => Some(*window),
            Finding::PoisonEvent { .. } | Finding::Recovered(Recovery::StreamSilent { .. }) => None,
        }
    }

    pub fn mismatch(&self) -> Option<&Mismatch> {
        match &self.finding {
            Finding::DataMismatch(m) => Some(m),
            _ => None,
        }
    }

    pub fn drift(&self) -> Option<&Drift> {
        match &self.finding {
            Finding::SchemaDrift(d) => Some(d),
            _ => None,
        }
    }

    /// How far behind the replica was, for a lag or a silence.
    pub fn lag(&self) -> Option<&LagInfo> {
        match &self.finding {
            Finding::ReplicaLag { lag, .. }
            | Finding::StreamSilent { lag, .. }
            | Finding::Unverified(Unverified { lag, .. }) => Some(lag),
            _ => None,
        }
    }

    pub fn poison(&self) -> Option<&PoisonInfo> {
        match &self.finding {
            Finding::PoisonEvent { poison, .. } => Some(poison),
            _ => None,
        }
    }

    /// For `Recovered`: the kind of episode that ended.
    pub fn ended(&self) -> Option<Kind> {
        match &self.finding {
            Finding::Recovered(r) => Some(r.ended()),
            _ => None,
        }
    }

    /// The deterministic identity of this verdict: (kind, replica, table, range, window), or
    /// the record's coordinates for a poison event.
    pub fn identity(&self) -> Identity<'_> {
        Identity {
            kind: self.kind(),
            ended: self.ended(),
            replica: &self.replica,
            table: self.table(),
            range: self.range().map(|r| r.index),
            window: self.window().map(|w| w.id),
            record: self.poison(),
        }
    }

    /// [`Self::identity`] as one string, for logs and sets.
    pub fn key(&self) -> String {
        self.identity().to_string()
    }

    /// A one-line account for terminals and logs.
    pub fn summary(&self) -> String {
        let table = self.table().unwrap_or("-");
        let window = self
            .window()
            .map(|w| format!(" window {} (positions {}..{})", w.id, w.first.tx, w.last.tx))
            .unwrap_or_default();
        let replica = &self.replica;
        match &self.finding {
            Finding::DataMismatch(m) => {
                fn side(s: Option<&Side>) -> (&str, u64) {
                    (
                        s.map_or("-", |s| s.digest.get(..8).unwrap_or(&s.digest)),
                        s.map_or(0, |s| s.ops.total()),
                    )
                }
                let (p, p_events) = side(m.sides.as_ref().map(|s| &s.primary));
                let (r, r_events) = side(m.sides.as_ref().map(|s| &s.replica));
                // Equal state digests: the range ends the window alike, but the replica got
                // there through other changes (a row it held wrong for a while).
                if m.sides
                    .as_ref()
                    .is_some_and(|s| s.primary.digest == s.replica.digest)
                {
                    return format!(
                        "DataMismatch {replica} {table} {}{window}: the same rows at the end (state {p}), reached by other changes: primary {p_events} events, replica {r_events} events",
                        m.range.label,
                    );
                }
                format!(
                    "DataMismatch {replica} {table} {}{window}: primary {p} ({p_events} events), replica {r} ({r_events} events)",
                    m.range.label,
                )
            }
            Finding::SchemaDrift(Drift { schema: s, .. }) => {
                let version = |v: Option<u32>| v.map_or("?".into(), |v| v.to_string());
                format!(
                    "SchemaDrift {replica} {table}{window}: writes {} version {} (id {}), primary is at version {} (id {}); {}",
                    s.subject,
                    version(s.actual_version),
                    s.actual_id,
                    version(s.expected_version),
                    s.expected_id,
                    s.fields
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
            Finding::ReplicaLag { lag, .. } => format!(
                "ReplicaLag {replica}: {} positions and {} ms behind the primary",
                lag.positions_behind, lag.ms_behind
            ),
            Finding::StreamSilent { lag, .. } => format!(
                "StreamSilent {replica}: no records for {} ms while the primary is writing",
                lag.ms_behind
            ),
            Finding::PoisonEvent { poison: p, .. } => format!(
                "PoisonEvent {replica} {}[{}]@{}: {}",
                p.topic, p.partition, p.offset, p.error
            ),
            Finding::Unverified(u) => format!(
                "Unverified {replica} {table}: positions {}..{} not compared: {}",
                u.span.first.tx, u.span.last.tx, u.reason
            ),
            Finding::Recovered(r) => format!(
                "Recovered {replica} {table} {}: {} ended{window}",
                self.range().map_or("", |r| r.label.as_str()),
                r.ended()
            ),
        }
    }
}

#[cfg(test)]
mod tests;
