//! What a run is asked for and what it hands out: the scenario and its settings, the topics,
//! the records, and the fixed sizes of the injected faults.

use crate::schema::Table;

/// The default synthetic rate of primary change events per second when `rate` is not set.
pub const DEFAULT_RATE: f64 = 20_000.0;
/// Added delay of a `lag` fault.
pub const LAG_DELAY_MS: i64 = 5_000;
/// Added delay of a `late_partition` fault.
pub const LATE_PARTITION_DELAY_MS: i64 = 300;
/// Records redelivered by a `duplicate` fault.
pub const DUPLICATE_RUN: usize = 20;
/// Keys of rows a replica invents (`extra`) start here, far above any id the primary uses.
pub const EXTRA_ID_BASE: i64 = 900_000_000;
/// Schema ids that no registry has assigned, for `poison` records.
pub const UNKNOWN_SCHEMA_ID: u32 = 0x7ff0_0000;
/// How much faster than the primary's average pace a connector that starts late reads its
/// backlog (see [`SimConfig::connector_delay_ms`]).
pub const CATCH_UP_SPEEDUP: f64 = 5.0;

/// A named traffic and fault pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Replicas follow the primary faithfully.
    Clean,
    /// The 2024-08-14 incident: peak traffic, `orders` migrated to v2 at 15:45 UTC, `replica-2`
    /// keeps writing v1.
    Incident,
    /// Every fault kind, a handful of each, spread over replicas and tables.
    Faults,
}

impl Scenario {
    pub const ALL: [Scenario; 3] = [Scenario::Clean, Scenario::Incident, Scenario::Faults];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Clean => "clean",
            Scenario::Incident => "incident",
            Scenario::Faults => "faults",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// Which `source` field carries the origin position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PositionKind {
    /// `source.gtid`, a GTID in the form [`GtidStyle`] says; the position is its transaction
    /// sequence (the number after the last `-` or `:`).
    Gtid,
    /// `source.lsn`, a monotonic log sequence number; `gtid` is null.
    Lsn,
}

impl PositionKind {
    pub fn name(self) -> &'static str {
        match self {
            PositionKind::Gtid => "gtid",
            PositionKind::Lsn => "lsn",
        }
    }
}

/// How `source.gtid` is spelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GtidStyle {
    /// MariaDB's `<domain>-<server id>-<sequence>`, here `0-1-<seq>` (domain 0, the primary's
    /// server id 1), as the Debezium MariaDB connector writes it.
    MariaDb,
    /// MySQL's `<server uuid>:<sequence>`.
    MySql,
}

impl GtidStyle {
    pub fn name(self) -> &'static str {
        match self {
            GtidStyle::MariaDb => "mariadb",
            GtidStyle::MySql => "mysql",
        }
    }
}

/// What to simulate.
///
/// The defaults are what Debezium's MariaDB connector writes with its default settings: no
/// transaction metadata (`transaction` null; the events of a transaction share its gtid across
/// tables and partitions), snapshot reads without a position (`source.gtid` null, `server_id`
/// 0, `snapshot` `first` … `last`), MariaDB GTIDs `0-1-<seq>`, `source.ts_ms` in whole seconds,
/// and keys framed with each topic's own key schema id (so a key's partition differs between
/// the primary's and a replica's topic).
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub scenario: Scenario,
    pub seed: u64,
    /// Primary change events to produce (snapshot reads included, tombstones not); the run ends
    /// with the transaction that reaches it.
    pub events: u64,
    /// Primary change events per second of synthetic time; [`DEFAULT_RATE`] if None.
    pub rate: Option<f64>,
    pub replicas: u32,
    /// Partitions of each of the primary's topics (and of the replicas' unless
    /// `replica_partitions` says otherwise).
    pub partitions: u32,
    /// Partitions of each replica topic; None: as many as the primary's.
    pub replica_partitions: Option<u32>,
    pub position: PositionKind,
    /// How `source.gtid` is spelled (with [`PositionKind::Gtid`]).
    pub gtid_style: GtidStyle,
    /// Write Debezium's `transaction` block (`provide.transaction.metadata=true`); by default
    /// it is null, as Debezium writes it unless asked.
    pub transaction_metadata: bool,
    /// `source.ts_ms` in whole seconds (the binlog event's time, as MySQL and MariaDB give it);
    /// false: the commit time in milliseconds.
    pub whole_second_source_ts: bool,
    /// Every connector (the primary's and the replicas') starts this long after the first
    /// commit and reads its backlog at [`CATCH_UP_SPEEDUP`] times the primary's pace: record
    /// timestamps (when the connector produced them) lie up to this far after the commits,
    /// on all sides alike, until it has caught up. 0: connectors keep up from the start.
    pub connector_delay_ms: i64,
    /// The replicas' connectors start this much later still (on top of
    /// `connector_delay_ms`), then catch up likewise.
    pub replica_connector_delay_ms: i64,
    /// Prepended to every topic name (and to `source.name`).
    pub topic_prefix: String,
    /// Synthetic start time; by default 2024-08-14T12:00:00Z, and for `incident` shortly before
    /// the 15:45 UTC migration.
    pub start_ms: Option<i64>,
    /// Whether `orders` migrates to v2 during the run.
    pub migration: bool,
    /// The primary fails over once this many primary change events were written (with
    /// [`PositionKind::Gtid`]): a [`FaultKind::Failover`](crate::manifest::FaultKind::Failover).
    pub failover_at: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            scenario: Scenario::Clean,
            seed: 42,
            events: 200_000,
            rate: None,
            replicas: 2,
            partitions: 8,
            replica_partitions: None,
            position: PositionKind::Gtid,
            gtid_style: GtidStyle::MariaDb,
            transaction_metadata: false,
            whole_second_source_ts: true,
            connector_delay_ms: 0,
            replica_connector_delay_ms: 0,
            topic_prefix: String::new(),
            start_ms: None,
            migration: true,
            failover_at: None,
        }
    }
}

/// A topic the simulation writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    /// `primary`, `replica-1`, …
    pub stream: String,
    pub table: Table,
    pub partitions: u32,
}

/// One Kafka record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Index into [`Simulation::topics`](crate::Simulation::topics).
    pub topic: u16,
    pub partition: u32,
    /// The offset Kafka assigns when the records of a fresh topic are produced in this order.
    pub offset: i64,
    /// The record's CreateTime: the emitting server's time.
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    /// The manifest's fault (an index into [`Manifest::faults`](crate::Manifest)) this record
    /// is the first record of: a producer writing it somewhere other than a fresh topic should
    /// put the offset it really got there ([`Manifest::locate`](crate::Manifest::locate)).
    pub fault: Option<usize>,
}

/// Setting up a simulation failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot register schema for subject {subject}")]
    Register {
        subject: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}
