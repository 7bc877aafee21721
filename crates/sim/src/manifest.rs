//! The ground-truth manifest: which faults a simulation injected, where.
//!
//! Format documented in `docs/manifest-format.md`.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The kinds of injected faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The replica keeps writing `orders` with schema v1 after the migration to v2.
    SchemaDrift,
    /// The replica skipped an update of a key.
    Dropped,
    /// A value in the replica's after image differs from the primary's.
    Corrupted,
    /// The replica inserted a row the primary never wrote.
    Extra,
    /// The replica applied two updates of one key in the wrong order.
    Reordered,
    /// The replica's records were emitted late for a stretch.
    Lag,
    /// The replica stopped emitting (for a table or for all tables).
    Silent,
    /// An undecodable record in a topic.
    Poison,
    /// Records redelivered byte-identical (at-least-once); benign.
    Duplicate,
    /// One partition's records were delayed; benign.
    LatePartition,
    /// The primary failed over: its GTIDs come from a new origin (MySQL: a new server uuid
    /// counting from 1; MariaDB: a new server id, the domain's sequence continuing), and the
    /// replicas carry the new GTIDs. Benign: not a divergence. Not one of [`FaultKind::ALL`]
    /// (the `faults` scenario's kinds): asked for with [`SimConfig::failover_at`].
    ///
    /// [`SimConfig::failover_at`]: crate::SimConfig::failover_at
    Failover,
}

impl FaultKind {
    pub const ALL: [FaultKind; 10] = [
        FaultKind::SchemaDrift,
        FaultKind::Dropped,
        FaultKind::Corrupted,
        FaultKind::Extra,
        FaultKind::Reordered,
        FaultKind::Lag,
        FaultKind::Silent,
        FaultKind::Poison,
        FaultKind::Duplicate,
        FaultKind::LatePartition,
    ];

    /// Benign faults must not raise a divergence.
    pub fn is_benign(self) -> bool {
        matches!(
            self,
            FaultKind::Duplicate | FaultKind::LatePartition | FaultKind::Failover
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::SchemaDrift => "schema_drift",
            FaultKind::Dropped => "dropped",
            FaultKind::Corrupted => "corrupted",
            FaultKind::Extra => "extra",
            FaultKind::Reordered => "reordered",
            FaultKind::Lag => "lag",
            FaultKind::Silent => "silent",
            FaultKind::Poison => "poison",
            FaultKind::Duplicate => "duplicate",
            FaultKind::LatePartition => "late_partition",
            FaultKind::Failover => "failover",
        }
    }
}

/// One injected fault.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    pub kind: FaultKind,
    /// The stream the fault is in (`replica-1`, …).
    pub replica: String,
    /// The table, or null when the fault spans all tables (`lag`, `silent` of a whole replica).
    pub table: Option<String>,
    /// The row key as JSON (`{"id": 42}`), or null.
    pub key: Option<serde_json::Value>,
    /// The origin position (transaction sequence or LSN) of the faulty event, or where a
    /// stretch starts; null for `poison`.
    pub position: Option<u64>,
    pub benign: bool,
    /// What happened, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The replica topic holding the faulty record, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// The Kafka offset of the faulty record (for `duplicate`, of the first redelivered copy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    /// The last position a stretch fault (`lag`, `late_partition`, `duplicate`) covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_position: Option<u64>,
    /// For `reordered`: the position of the later update that the replica applied first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_position: Option<u64>,
    /// The added delay of `lag` and `late_partition`, in milliseconds of synthetic time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<i64>,
    /// For `duplicate`: how many records were redelivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// The emission time (record timestamp) of the faulty record or of the stretch's start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp_ms: Option<i64>,
}

impl Fault {
    pub fn new(kind: FaultKind, replica: &str, table: Option<&str>) -> Self {
        Fault {
            kind,
            replica: replica.to_owned(),
            table: table.map(str::to_owned),
            key: None,
            position: None,
            benign: kind.is_benign(),
            detail: None,
            topic: None,
            partition: None,
            offset: None,
            until_position: None,
            other_position: None,
            delay_ms: None,
            count: None,
            timestamp_ms: None,
        }
    }
}

/// The schema migration the run performed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Migration {
    pub table: String,
    /// The position of the DDL transaction; events after it use the new version.
    pub position: u64,
    pub timestamp_ms: i64,
    pub from_version: u32,
    pub to_version: u32,
    /// Streams that did not apply it (schema drift).
    pub skipped_by: Vec<String>,
}

/// A connector that started late and read its backlog: the pipeline's own delay, not a fault
/// of the replica (its database was up to date all along).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectorDelay {
    /// The stream whose connector started late (`primary`, `replica-1`, …).
    pub stream: String,
    /// How long after the first commit it started.
    pub delay_ms: i64,
    /// The first transaction it processed no later than usual (caught up), and when it wrote
    /// it; null if it was still catching up at the end of the run.
    pub caught_up_position: Option<u64>,
    pub caught_up_timestamp_ms: Option<i64>,
}

/// The ground truth of one simulation run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub scenario: String,
    pub seed: u64,
    /// `gtid` (position = the transaction sequence in `source.gtid`) or `lsn` (`source.lsn`).
    pub position_kind: String,
    /// What precedes the sequence in every `source.gtid`: `0-1-` (MariaDB, the default) or
    /// `<server_uuid>:` (MySQL).
    #[serde(default)]
    pub gtid_prefix: String,
    /// The primary's server UUID (the prefix of every `source.gtid` in MySQL's form).
    pub server_uuid: String,
    pub topic_prefix: String,
    /// Partitions of each primary topic.
    pub partitions: u32,
    /// Partitions of each replica topic.
    #[serde(default)]
    pub replica_partitions: u32,
    /// Whether events carry Debezium's `transaction` block (null otherwise).
    #[serde(default)]
    pub transaction_metadata: bool,
    /// Whether `source.ts_ms` has whole-second resolution.
    #[serde(default)]
    pub whole_second_source_ts: bool,
    pub primary: String,
    pub replicas: Vec<String>,
    pub tables: Vec<String>,
    /// Change events the primary emitted (snapshot reads included, tombstones not).
    pub primary_events: u64,
    /// Records over all topics (tombstones, duplicates and poison included).
    pub records: u64,
    /// The first and last origin positions of the run (of events that carry one: with gtid
    /// positions, snapshot reads carry none).
    pub first_position: u64,
    pub last_position: u64,
    /// Where the initial snapshot stands: with gtid positions, the last transaction before it
    /// (snapshot reads carry no gtid; streaming continues after it); with lsn positions, the
    /// last lsn of its reads.
    pub snapshot_end_position: u64,
    pub start_timestamp_ms: i64,
    pub end_timestamp_ms: i64,
    pub migration: Option<Migration>,
    /// Connectors that started late (`connector_delay_ms`, `replica_connector_delay_ms`).
    #[serde(default)]
    pub connector_delays: Vec<ConnectorDelay>,
    pub faults: Vec<Fault>,
}

/// Reading or writing a manifest failed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write manifest {path}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("manifest {path} is not valid")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
}

impl Manifest {
    pub fn read(path: &Path) -> Result<Manifest, ManifestError> {
        let display = path.display().to_string();
        let text = std::fs::read(path).map_err(|source| ManifestError::Read {
            path: display.clone(),
            source,
        })?;
        serde_json::from_slice(&text).map_err(|source| ManifestError::Parse {
            path: display,
            source,
        })
    }

    pub fn write(&self, path: &Path) -> Result<(), ManifestError> {
        let mut text = serde_json::to_vec_pretty(self).expect("a manifest always serializes");
        text.push(b'\n');
        std::fs::write(path, text).map_err(|source| ManifestError::Write {
            path: path.display().to_string(),
            source,
        })
    }

    /// Puts the offset a producer got for fault `fault`'s record (see
    /// [`Record::fault`](crate::Record::fault)) in place of the one counted for a fresh topic.
    /// A broker that failed over mid-write, or a topic written before, gives offsets of its own.
    pub fn locate(&mut self, fault: usize, partition: u32, offset: i64) {
        if let Some(f) = self.faults.get_mut(fault) {
            f.partition = Some(partition);
            f.offset = Some(offset);
        }
    }

    /// The faults of one kind.
    pub fn faults_of(&self, kind: FaultKind) -> impl Iterator<Item = &Fault> {
        self.faults.iter().filter(move |f| f.kind == kind)
    }
}
