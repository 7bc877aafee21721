//! The simulation: the primary's transactions, each stream's view of them, faults, timing, and
//! the ordered record stream.
//!
//! Every transaction is applied by all streams at once, in order; what differs per stream is
//! what it emits (faults) and when (replication delay, lag). Records wait in a heap ordered by
//! emission time and leave it once no later transaction can emit anything earlier, so the output
//! is ordered by record timestamp and, within a partition, by emission order.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::avro::{Enc, push_u64};
use crate::manifest::{ConnectorDelay, Fault, FaultKind, Manifest, Migration};
use crate::model::{CURRENCIES, Key, Row};
use crate::partitioner::partition_for_key;
use crate::schema::{SchemaEntry, SchemaRegistrar, Table, envelope_schema, key_schema};
use crate::time::utc_ms;
use crate::world::{Change, Op, World};

/// The default synthetic rate of primary change events per second when `rate` is not set.
pub const DEFAULT_RATE: f64 = 20_000.0;
/// Added delay of a `lag` fault.
pub const LAG_DELAY_MS: i64 = 5_000;
/// Added delay of a `late_partition` fault.
pub const LATE_PARTITION_DELAY_MS: i64 = 300;
/// Records redelivered by a `duplicate` fault.
pub const DUPLICATE_RUN: usize = 20;
/// Rows per snapshot transaction (chunk) of the initial snapshot.
const SNAPSHOT_CHUNK: usize = 256;
/// Keys of rows a replica invents (`extra`) start here, far above any id the primary uses.
pub const EXTRA_ID_BASE: i64 = 900_000_000;
/// Schema ids that no registry has assigned, for `poison` records.
pub const UNKNOWN_SCHEMA_ID: u32 = 0x7ff0_0000;
/// How much faster than the primary's average pace a connector that starts late reads its
/// backlog (see [`SimConfig::connector_delay_ms`]).
pub const CATCH_UP_SPEEDUP: f64 = 5.0;
const DEBEZIUM_VERSION: &str = "3.6.1.Final";
const NO_FAULT: u32 = u32::MAX;

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
    /// Index into [`Simulation::topics`].
    pub topic: u16,
    pub partition: u32,
    /// The offset Kafka assigns when the records of a fresh topic are produced in this order.
    pub offset: i64,
    /// The record's CreateTime: the emitting server's time.
    pub timestamp_ms: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
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

/// The position, timing and identity of one primary transaction.
#[derive(Clone, Copy, Debug)]
struct TxnMeta {
    seq: u64,
    position: u64,
    lsn: u64,
    commit_ms: i64,
    /// `source.ts_ms`: the commit time (in whole seconds by default); for snapshot reads, the
    /// snapshot's start.
    source_ts_ms: i64,
    snapshot: bool,
    thread: i64,
}

#[derive(Clone, Copy, Debug)]
struct Planned {
    at_event: u64,
    kind: FaultKind,
    stream: usize,
    table: Option<Table>,
    variant: u8,
}

#[derive(Clone, Copy, Debug)]
struct Armed {
    kind: FaultKind,
    table: Table,
    variant: u8,
}

#[derive(Clone, Copy, Debug)]
struct Stretch {
    table: Option<Table>,
    partition: Option<u32>,
    until_event: u64,
    delay_ms: i64,
    fault: usize,
    /// The commit time of the stretch's last transaction.
    end_commit_ms: i64,
}

#[derive(Clone, Copy, Debug)]
struct Held {
    meta: TxnMeta,
    change: Change,
    total_order: u32,
    dco: u32,
}

#[derive(Clone, Copy, Debug)]
struct Reorder {
    table: Table,
    key: Key,
    first_position: u64,
    held: Option<Held>,
    fault: usize,
}

#[derive(Debug)]
struct DupCapture {
    table: Table,
    partition: Option<u32>,
    records: Vec<KeyValue>,
    fault: usize,
}

#[derive(Debug)]
struct Deferred {
    due_event: u64,
    stream: usize,
    table: Table,
    partition: u32,
    records: Vec<KeyValue>,
    fault: usize,
}

/// A record's key and value bytes, and where in the value the envelope's `ts_ms` is encoded
/// (a redelivered copy carries the time it was sent again there, as Debezium's does).
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>, usize);

/// A record waiting for its emission time.
struct Pending {
    topic: u16,
    partition: u32,
    fault: u32,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// Records ordered by (emission time, generation order). The heap holds only 16-byte keys; the
/// records wait in a ring indexed by generation order, which is nearly the order they leave in.
#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<(i64, u64)>>,
    slots: VecDeque<Option<Pending>>,
    /// The generation number of `slots[0]`.
    base: u64,
}

impl Queue {
    fn push(&mut self, emit_ms: i64, p: Pending) {
        let seq = self.base + self.slots.len() as u64;
        self.slots.push_back(Some(p));
        self.heap.push(Reverse((emit_ms, seq)));
    }

    /// The earliest record, if it is due by `safe_ms`.
    fn pop_due(&mut self, safe_ms: i64) -> Option<(i64, Pending)> {
        let &Reverse((emit_ms, seq)) = self.heap.peek()?;
        if emit_ms > safe_ms {
            return None;
        }
        self.heap.pop();
        let p = self.slots[(seq - self.base) as usize]
            .take()
            .expect("a queued record leaves once");
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some((emit_ms, p))
    }
}

/// Output shared by all streams.
struct Out {
    queue: Queue,
    faults: Vec<Fault>,
    scratch: Vec<u8>,
    deferred: Vec<Deferred>,
    extra_ids: i64,
    poison_count: u32,
    /// Primary events before the transaction being emitted.
    primary_events: u64,
    /// Primary events between a duplicate run and its redelivery.
    redelivery_gap: u64,
    /// Connectors that start late, for the manifest.
    delays: Vec<ConnectorDelay>,
}

/// Settings every stream reads.
struct Ctx {
    topic_names: Vec<String>,
    position: PositionKind,
    /// What precedes the sequence in `source.gtid`: `0-1-` or `<server uuid>:`.
    gtid_prefix: String,
    transaction_metadata: bool,
    events: u64,
    /// A catching-up connector's processing time per primary event, in ms.
    catch_up_ms_per_event: f64,
}

/// One server's CDC stream: the primary (index 0) or a replica.
struct Stream {
    name: String,
    source_name: String,
    topic_base: u16,
    /// Partitions of each of this stream's topics.
    partitions: u32,
    key_ids: [u32; 7],
    value_ids: [[u32; 2]; 7],
    orders_version: u8,
    drift: bool,
    drift_seen: bool,
    /// Whether the primary has migrated `orders` (a drifted replica has not).
    migrated: bool,
    delay_ms: i64,
    jitter_ms: i64,
    binlog_file: String,
    binlog_pos: i64,
    rng: ChaCha8Rng,
    /// Rows where this replica differs from the primary (None: the replica lacks the row).
    overlay: HashMap<(Table, Key), Option<Row>>,
    /// Last emission time per (table, partition): a partition's records never go back in time.
    last_emit: Vec<i64>,
    /// The connector reads its log in order, so its processing time never goes back either.
    last_base: i64,
    /// While a connector that started late works through its backlog: its processing time,
    /// and its entry in [`Out::delays`].
    catch_up: Option<(f64, usize)>,
    armed: Vec<Armed>,
    lag: Option<Stretch>,
    late: Option<Stretch>,
    /// Silenced tables (None: all) and the fault; the position is set by the first silent
    /// transaction.
    silent: Vec<(Option<Table>, usize)>,
    reorder: Option<Reorder>,
    dup: Option<DupCapture>,
}

enum Phase {
    Snapshot { rows: Vec<Row>, next: usize },
    Streaming,
    Done,
}

/// A running simulation: iterate it for the records, then read [`Simulation::manifest`].
pub struct Simulation {
    cfg: SimConfig,
    topics: Vec<TopicInfo>,
    schemas: Vec<SchemaEntry>,
    world: World,
    streams: Vec<Stream>,
    out: Out,
    ctx: Ctx,
    offsets: Vec<Vec<i64>>,
    manifest: Manifest,
    phase: Phase,
    plan: Vec<Planned>,
    fault_rng: ChaCha8Rng,
    reorder_due: Option<(usize, Table, usize)>,
    forced_next: Option<(Table, Key)>,
    migration_at: Option<MigrationAt>,
    primary_events: u64,
    seq: u64,
    lsn: u64,
    start_ns: i64,
    ns_per_event: f64,
    burst: (f64, f64, f64),
    safe_ms: i64,
    last_commit_ms: i64,
    change_orders: Vec<(u32, u32)>,
    /// The `source.snapshot` value of each change of a snapshot chunk (see [`snapshot_flag`]).
    snap_flags: Vec<u8>,
    /// `source.ts_ms` of every snapshot read: the snapshot's start, in whole seconds.
    snapshot_ts_ms: i64,
}

#[derive(Clone, Copy, Debug)]
enum MigrationAt {
    Time(i64),
    Event(u64),
}

impl Simulation {
    /// Registers every schema the run will use and prepares the first transaction.
    pub fn new(
        cfg: SimConfig,
        registrar: &mut dyn SchemaRegistrar,
    ) -> Result<Simulation, SimError> {
        if cfg.replicas == 0 || cfg.replicas > 64 {
            return Err(SimError::Config(format!(
                "replicas must be 1..=64, not {}",
                cfg.replicas
            )));
        }
        for p in std::iter::once(cfg.partitions).chain(cfg.replica_partitions) {
            if p == 0 || p > 10_000 {
                return Err(SimError::Config(format!(
                    "partitions must be 1..=10000, not {p}"
                )));
            }
        }
        if cfg.connector_delay_ms < 0 || cfg.replica_connector_delay_ms < 0 {
            return Err(SimError::Config(
                "connector delays must not be negative".into(),
            ));
        }
        if cfg.events == 0 {
            return Err(SimError::Config("events must be positive".into()));
        }
        let rate = cfg.rate.unwrap_or(DEFAULT_RATE);
        if !(rate.is_finite() && rate > 0.0) {
            return Err(SimError::Config(format!(
                "rate must be positive, not {rate}"
            )));
        }
        let seed_rng = |stream: u64| {
            let mut r = ChaCha8Rng::seed_from_u64(cfg.seed);
            r.set_stream(stream);
            r
        };
        let mut id_rng = seed_rng(1);
        let server_uuid = {
            let mut b = Vec::with_capacity(36);
            let v = ((id_rng.next_u64() as u128) << 64) | id_rng.next_u64() as u128;
            crate::avro::push_uuid(&mut b, v);
            String::from_utf8(b).unwrap()
        };

        let drifted = match cfg.scenario {
            Scenario::Clean => None,
            Scenario::Incident | Scenario::Faults => Some(cfg.replicas.min(2) as usize),
        }
        .filter(|_| cfg.migration);

        let stream_names: Vec<String> = std::iter::once("primary".to_string())
            .chain((1..=cfg.replicas).map(|i| format!("replica-{i}")))
            .collect();
        let mut topics = Vec::new();
        let mut schemas = Vec::new();
        let mut register = |subject: String, schema: String, schemas: &mut Vec<SchemaEntry>| {
            let r = registrar
                .register(&subject, &schema)
                .map_err(|source| SimError::Register {
                    subject: subject.clone(),
                    source,
                })?;
            schemas.push(SchemaEntry {
                id: r.id,
                subject,
                version: r.version,
                schema,
            });
            Ok::<u32, SimError>(r.id)
        };
        let mut streams = Vec::new();
        for (s, name) in stream_names.iter().enumerate() {
            let partitions = if s == 0 {
                cfg.partitions
            } else {
                cfg.replica_partitions.unwrap_or(cfg.partitions)
            };
            let mut key_ids = [0; 7];
            let mut value_ids = [[0; 2]; 7];
            for table in Table::ALL {
                let topic = format!("{}{name}.shop.{table}", cfg.topic_prefix);
                // Each topic's key schema is named after the topic (`<stream>.shop.<table>.Key`),
                // as Debezium names it, so every topic's keys carry their own schema id, and the
                // partitioner, hashing the framed bytes, places a key independently per topic.
                key_ids[table.index()] = register(
                    format!("{topic}-key"),
                    key_schema(name, table),
                    &mut schemas,
                )?;
                let v1 = register(
                    format!("{topic}-value"),
                    envelope_schema(name, table, 1),
                    &mut schemas,
                )?;
                value_ids[table.index()] = [v1, v1];
                topics.push(TopicInfo {
                    name: topic,
                    stream: name.clone(),
                    table,
                    partitions,
                });
            }
            streams.push(Stream {
                name: name.clone(),
                source_name: format!("{}{name}", cfg.topic_prefix),
                topic_base: (s * Table::ALL.len()) as u16,
                partitions,
                key_ids,
                value_ids,
                orders_version: 1,
                drift: drifted == Some(s),
                drift_seen: false,
                migrated: false,
                delay_ms: if s == 0 { 1 } else { 6 + 4 * s as i64 },
                jitter_ms: if s == 0 { 1 } else { 6 },
                binlog_file: format!("binlog.{:06}", 3 + s * 5),
                binlog_pos: 4 + 1000 * s as i64,
                rng: seed_rng(100 + s as u64),
                overlay: HashMap::new(),
                last_emit: vec![i64::MIN; Table::ALL.len() * partitions as usize],
                last_base: i64::MIN,
                catch_up: None,
                armed: Vec::new(),
                lag: None,
                late: None,
                silent: Vec::new(),
                reorder: None,
                dup: None,
            });
        }
        if cfg.migration {
            // The new version of `orders` for every stream that applies the migration.
            for st in streams.iter_mut().filter(|st| !st.drift) {
                let topic = format!("{}{}.shop.orders", cfg.topic_prefix, st.name);
                let v2 = register(
                    format!("{topic}-value"),
                    envelope_schema(&st.name, Table::Orders, 2),
                    &mut schemas,
                )?;
                st.value_ids[Table::Orders.index()][1] = v2;
            }
        }

        let ns_per_event = 1e9 / rate;
        let burst = match cfg.scenario {
            Scenario::Incident => (0.35, 0.60, 3.0),
            _ => (0.55, 0.65, 4.0),
        };
        let burst = (
            burst.0 * cfg.events as f64,
            burst.1 * cfg.events as f64,
            burst.2,
        );
        let migration_event = (cfg.events as f64 * 0.4) as u64;
        let elapsed = |e: u64| elapsed_ns(e, ns_per_event, burst);
        let incident_at = utc_ms(2024, 8, 14, 15, 45, 0);
        let (start_ms, migration_at) = match (cfg.scenario, cfg.start_ms) {
            (Scenario::Incident, None) => {
                let lead_ms = elapsed(migration_event) / 1_000_000;
                // Start on a whole second, shortly before 15:45.
                (
                    ((incident_at - lead_ms) as f64 / 1000.0).floor() as i64 * 1000,
                    MigrationAt::Time(incident_at),
                )
            }
            (_, start) => (
                start.unwrap_or(utc_ms(2024, 8, 14, 12, 0, 0)),
                MigrationAt::Event(migration_event),
            ),
        };

        let mut world = World::new(seed_rng(2));
        let snapshot_rows = world.populate((cfg.events / 10).max(100), start_ms);
        let mut fault_rng = seed_rng(3);
        let plan = match cfg.scenario {
            Scenario::Faults => plan_faults(&cfg, &mut fault_rng),
            _ => Vec::new(),
        };
        let gtid_prefix = match cfg.gtid_style {
            GtidStyle::MariaDb => "0-1-".to_string(),
            GtidStyle::MySql => format!("{server_uuid}:"),
        };
        let manifest = Manifest {
            scenario: cfg.scenario.name().into(),
            seed: cfg.seed,
            position_kind: cfg.position.name().into(),
            gtid_prefix: match cfg.position {
                PositionKind::Gtid => gtid_prefix.clone(),
                PositionKind::Lsn => String::new(),
            },
            server_uuid: server_uuid.clone(),
            topic_prefix: cfg.topic_prefix.clone(),
            partitions: cfg.partitions,
            replica_partitions: cfg.replica_partitions.unwrap_or(cfg.partitions),
            transaction_metadata: cfg.transaction_metadata,
            whole_second_source_ts: cfg.whole_second_source_ts,
            primary: stream_names[0].clone(),
            replicas: stream_names[1..].to_vec(),
            tables: Table::ALL.iter().map(|t| t.name().to_string()).collect(),
            primary_events: 0,
            records: 0,
            first_position: 0,
            last_position: 0,
            snapshot_end_position: 0,
            start_timestamp_ms: start_ms,
            end_timestamp_ms: start_ms,
            migration: None,
            connector_delays: Vec::new(),
            faults: Vec::new(),
        };
        // Connectors that start late: each reads its backlog from its start on.
        let mut delays = Vec::new();
        for (s, st) in streams.iter_mut().enumerate() {
            let delay = cfg.connector_delay_ms
                + if s == 0 {
                    0
                } else {
                    cfg.replica_connector_delay_ms
                };
            if delay > 0 {
                st.catch_up = Some(((start_ms + delay) as f64, delays.len()));
                delays.push(ConnectorDelay {
                    stream: st.name.clone(),
                    delay_ms: delay,
                    caught_up_position: None,
                    caught_up_timestamp_ms: None,
                });
            }
        }
        let topic_names = topics.iter().map(|t| t.name.clone()).collect();
        let mut sim = Simulation {
            offsets: topics
                .iter()
                .map(|t| vec![0; t.partitions as usize])
                .collect(),
            topics,
            schemas,
            world,
            streams,
            out: Out {
                queue: Queue::default(),
                faults: Vec::new(),
                scratch: Vec::with_capacity(256),
                deferred: Vec::new(),
                extra_ids: 0,
                poison_count: 0,
                primary_events: 0,
                redelivery_gap: (cfg.events / 50).max(50),
                delays,
            },
            ctx: Ctx {
                topic_names,
                position: cfg.position,
                gtid_prefix,
                transaction_metadata: cfg.transaction_metadata,
                events: cfg.events,
                catch_up_ms_per_event: ns_per_event / 1e6 / CATCH_UP_SPEEDUP,
            },
            manifest,
            phase: Phase::Snapshot {
                rows: snapshot_rows,
                next: 0,
            },
            plan,
            fault_rng,
            reorder_due: None,
            forced_next: None,
            migration_at: cfg.migration.then_some(migration_at),
            primary_events: 0,
            seq: 0,
            lsn: 0x0000_0001_6b37_4d48,
            start_ns: start_ms * 1_000_000,
            ns_per_event,
            burst,
            safe_ms: i64::MIN,
            last_commit_ms: start_ms,
            change_orders: Vec::with_capacity(32),
            snap_flags: Vec::with_capacity(SNAPSHOT_CHUNK),
            snapshot_ts_ms: start_ms.div_euclid(1000) * 1000,
            cfg,
        };
        if let Some(s) = drifted {
            let name = sim.streams[s].name.clone();
            let mut f = Fault::new(FaultKind::SchemaDrift, &name, Some("orders"));
            f.detail = Some(
                "replica does not apply the orders v2 migration and keeps writing schema v1".into(),
            );
            // Filled in when the replica emits its first drifted event.
            sim.out.faults.push(f);
        }
        Ok(sim)
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The topics, indexed by [`Record::topic`].
    pub fn topics(&self) -> &[TopicInfo] {
        &self.topics
    }

    /// Every schema registered for the run, in registration order.
    pub fn schemas(&self) -> &[SchemaEntry] {
        &self.schemas
    }

    /// Primary change events generated so far.
    pub fn primary_events(&self) -> u64 {
        self.primary_events
    }

    /// The ground truth; complete once the iterator is exhausted.
    pub fn manifest(&self) -> Manifest {
        let mut m = self.manifest.clone();
        m.faults = self.out.faults.clone();
        m.connector_delays = self.out.delays.clone();
        // The drift placeholder stays only if the replica emitted a drifted event.
        m.faults
            .retain(|f| f.kind != FaultKind::SchemaDrift || f.position.is_some());
        m
    }

    fn commit_ns(&self) -> i64 {
        self.start_ns + elapsed_ns(self.primary_events, self.ns_per_event, self.burst)
    }

    fn next_meta(&mut self, changes: usize, snapshot: bool) -> TxnMeta {
        // The snapshot reads rows; it commits nothing, so it takes no GTID.
        let gtid_less = snapshot && self.cfg.position == PositionKind::Gtid;
        if !gtid_less {
            self.seq += 1;
        }
        self.lsn += 96 + 212 * changes as u64 + (self.seq % 7) * 8;
        let commit_ms = self.commit_ns().div_euclid(1_000_000);
        let source_ts_ms = if snapshot {
            self.snapshot_ts_ms
        } else if self.cfg.whole_second_source_ts {
            commit_ms.div_euclid(1000) * 1000
        } else {
            commit_ms
        };
        TxnMeta {
            source_ts_ms,
            seq: self.seq,
            position: match self.cfg.position {
                PositionKind::Gtid => self.seq,
                PositionKind::Lsn => self.lsn,
            },
            lsn: self.lsn,
            commit_ms,
            snapshot,
            thread: 4000 + (self.seq.wrapping_mul(2_654_435_761) % 48) as i64,
        }
    }

    /// Generates the next transaction and hands it to every stream.
    fn step(&mut self) {
        let ns = self.commit_ns();
        self.world
            .set_now(ns.div_euclid(1_000_000), ns.div_euclid(1000));
        self.snap_flags.clear();
        let snapshot = match &mut self.phase {
            Phase::Done => return,
            Phase::Snapshot { rows, next } => {
                let table = rows[*next].table();
                let end = (*next + SNAPSHOT_CHUNK).min(rows.len());
                let end = *next
                    + rows[*next..end]
                        .iter()
                        .take_while(|r| r.table() == table)
                        .count();
                self.snap_flags
                    .extend((*next..end).map(|i| snapshot_flag(rows, i)));
                self.world.changes.clear();
                self.world
                    .changes
                    .extend(rows[*next..end].iter().map(|r| Change {
                        table,
                        op: Op::Read,
                        key: r.key(),
                        before: None,
                        after: Some(*r),
                    }));
                *next = end;
                if end == rows.len() {
                    self.phase = Phase::Streaming;
                }
                true
            }
            Phase::Streaming => false,
        };
        if !snapshot {
            {
                self.streaming_preamble();
                if let Some((table, key)) = self.forced_next.take() {
                    self.world.single_update_of(table, key);
                } else if let Some((s, table, fault)) = self.reorder_due.take() {
                    match self.world.single_update(table) {
                        Some(key) => {
                            self.streams[s].reorder = Some(Reorder {
                                table,
                                key,
                                first_position: 0,
                                held: None,
                                fault,
                            });
                            self.forced_next = Some((table, key));
                        }
                        None => self.world.transaction(),
                    }
                } else {
                    self.world.transaction();
                }
            }
        }
        let changes = std::mem::take(&mut self.world.changes);
        let meta = self.next_meta(changes.len(), snapshot);
        if let Some(r) = self
            .streams
            .iter_mut()
            .filter_map(|s| s.reorder.as_mut())
            .find(|r| r.first_position == 0)
        {
            r.first_position = meta.position;
        }
        let positioned = !(snapshot && self.cfg.position == PositionKind::Gtid);
        if positioned {
            if self.manifest.first_position == 0 {
                self.manifest.first_position = meta.position;
            }
            self.manifest.last_position = meta.position;
        }
        if snapshot {
            self.manifest.snapshot_end_position = meta.position;
        }

        // Transaction metadata orders: total order and order within the table, from 1.
        self.change_orders.clear();
        let mut per_table = [0u32; 7];
        for (i, ch) in changes.iter().enumerate() {
            per_table[ch.table.index()] += 1;
            self.change_orders
                .push((i as u32 + 1, per_table[ch.table.index()]));
        }
        self.out.primary_events = self.primary_events;
        for s in 0..self.streams.len() {
            let st = &mut self.streams[s];
            st.emit_txn(
                &mut self.out,
                &self.ctx,
                &mut self.world,
                &meta,
                &changes,
                &self.change_orders,
                &self.snap_flags,
                self.primary_events,
            );
        }
        self.primary_events += changes.len() as u64;
        self.world.changes = changes;
        self.last_commit_ms = meta.commit_ms;
        // No stream emits anything before its connector's processing time (which never goes
        // back) or before the next commit.
        self.safe_ms = self
            .streams
            .iter()
            .map(|st| st.last_base.max(meta.commit_ms))
            .min()
            .unwrap_or(meta.commit_ms);
        if self.primary_events >= self.cfg.events && matches!(self.phase, Phase::Streaming) {
            self.finish();
        }
    }

    /// Migration, faults coming due and redeliveries, at a transaction boundary.
    fn streaming_preamble(&mut self) {
        let commit_ms = self.commit_ns().div_euclid(1_000_000);
        if let Some(at) = self.migration_at {
            let due = match at {
                MigrationAt::Time(ms) => commit_ms >= ms,
                MigrationAt::Event(e) => self.primary_events >= e,
            };
            if due {
                self.migration_at = None;
                // The DDL is a transaction of its own: it takes a position but emits no rows.
                let meta = self.next_meta(1, false);
                self.world.currency_column = true;
                let mut skipped_by = Vec::new();
                for st in &mut self.streams {
                    st.migrated = true;
                    if st.drift {
                        skipped_by.push(st.name.clone());
                    } else {
                        st.orders_version = 2;
                    }
                }
                self.manifest.migration = Some(Migration {
                    table: "orders".into(),
                    position: meta.position,
                    timestamp_ms: meta.commit_ms,
                    from_version: 1,
                    to_version: 2,
                    skipped_by,
                });
            }
        }
        while self
            .plan
            .first()
            .is_some_and(|p| p.at_event <= self.primary_events)
        {
            let p = self.plan.remove(0);
            self.fire(p, commit_ms);
        }
        let due: Vec<Deferred> = {
            let (due, keep) = std::mem::take(&mut self.out.deferred)
                .into_iter()
                .partition(|d| d.due_event <= self.primary_events);
            self.out.deferred = keep;
            due
        };
        for d in due {
            self.redeliver(d, commit_ms);
        }
    }

    /// The connector, restarted, sends a run of records again: the same key, before, after and
    /// source, with its new processing time as the envelope's `ts_ms` (as Debezium does after
    /// a crash lost its unflushed offsets).
    fn redeliver(&mut self, d: Deferred, commit_ms: i64) {
        let st = &mut self.streams[d.stream];
        let slot = d.table.index() * st.partitions as usize + d.partition as usize;
        // Not before anything the connector has already processed.
        let emit = st.last_emit[slot].max(st.last_base + 1).max(commit_ms + 1);
        st.last_emit[slot] = emit;
        let topic = st.topic_base + d.table.index() as u16;
        self.out.faults[d.fault].timestamp_ms = Some(emit);
        self.out.faults[d.fault].count = Some(d.records.len() as u64);
        for (i, (key, value, ts_at)) in d.records.into_iter().enumerate() {
            let value = value.map(|v| with_envelope_ts(&v, ts_at, emit));
            let tag = if i == 0 { d.fault as u32 } else { NO_FAULT };
            self.out.push(emit, topic, d.partition, key, value, tag);
        }
    }

    /// A planned fault comes due: arm it on its stream.
    fn fire(&mut self, p: Planned, commit_ms: i64) {
        let name = self.streams[p.stream].name.clone();
        let table_name = p.table.map(|t| t.name());
        let st = &mut self.streams[p.stream];
        match p.kind {
            FaultKind::Dropped | FaultKind::Corrupted | FaultKind::Extra | FaultKind::Poison => {
                st.armed.push(Armed {
                    kind: p.kind,
                    table: p.table.unwrap(),
                    variant: p.variant,
                });
            }
            FaultKind::Reordered => {
                let mut f = Fault::new(FaultKind::Reordered, &name, table_name);
                f.detail = Some("two updates of the key applied in the wrong order; the replica ends with the earlier row".into());
                self.out.faults.push(f);
                self.reorder_due = Some((p.stream, p.table.unwrap(), self.out.faults.len() - 1));
            }
            FaultKind::Lag | FaultKind::LatePartition => {
                let stretch_events = (self.ctx.events / 20).max(100);
                let (delay_ms, partition) = if p.kind == FaultKind::Lag {
                    (LAG_DELAY_MS, None)
                } else {
                    (
                        LATE_PARTITION_DELAY_MS,
                        Some(self.fault_rng.random_range(0..st.partitions)),
                    )
                };
                let mut f = Fault::new(p.kind, &name, table_name);
                f.delay_ms = Some(delay_ms);
                f.partition = partition;
                f.topic = p
                    .table
                    .map(|t| self.topics[st.topic_base as usize + t.index()].name.clone());
                f.timestamp_ms = Some(commit_ms);
                f.detail = Some(match p.kind {
                    FaultKind::Lag => format!(
                        "replica emits {delay_ms} ms late for about {stretch_events} primary events, then catches up"
                    ),
                    _ => format!(
                        "one partition's records delayed by {delay_ms} ms for about {stretch_events} primary events"
                    ),
                });
                self.out.faults.push(f);
                let stretch = Stretch {
                    table: p.table,
                    partition,
                    until_event: self.primary_events + stretch_events,
                    delay_ms,
                    fault: self.out.faults.len() - 1,
                    end_commit_ms: commit_ms,
                };
                if p.kind == FaultKind::Lag {
                    st.lag = Some(stretch);
                } else {
                    st.late = Some(stretch);
                }
            }
            FaultKind::Silent => {
                let mut f = Fault::new(FaultKind::Silent, &name, table_name);
                f.timestamp_ms = Some(commit_ms);
                f.detail = Some(match p.table {
                    Some(t) => format!("replica stops emitting {t} from this position on"),
                    None => "replica stops emitting all tables from this position on".into(),
                });
                self.out.faults.push(f);
                st.silent.push((p.table, self.out.faults.len() - 1));
            }
            FaultKind::Duplicate => {
                let mut f = Fault::new(FaultKind::Duplicate, &name, table_name);
                f.count = Some(DUPLICATE_RUN as u64);
                f.detail = Some(format!(
                    "{DUPLICATE_RUN} records of one partition redelivered byte-identical (at-least-once)"
                ));
                self.out.faults.push(f);
                st.dup = Some(DupCapture {
                    table: p.table.unwrap(),
                    partition: None,
                    records: Vec::with_capacity(DUPLICATE_RUN),
                    fault: self.out.faults.len() - 1,
                });
            }
            FaultKind::SchemaDrift => {}
        }
    }

    fn finish(&mut self) {
        self.phase = Phase::Done;
        let last = self.last_commit_ms;
        for d in std::mem::take(&mut self.out.deferred) {
            self.redeliver(d, last);
        }
        // A duplicate run still collecting is redelivered with what it has.
        for s in 0..self.streams.len() {
            if let Some(dup) = self.streams[s].dup.take()
                && let Some(partition) = dup.partition
            {
                let d = Deferred {
                    due_event: 0,
                    stream: s,
                    table: dup.table,
                    partition,
                    records: dup.records,
                    fault: dup.fault,
                };
                self.redeliver(d, last);
            }
        }
        self.manifest.primary_events = self.primary_events;
        self.safe_ms = i64::MAX;
    }
}

/// `value` with the envelope `ts_ms` encoded at `at` replaced by `ts_ms`.
fn with_envelope_ts(value: &[u8], at: usize, ts_ms: i64) -> Vec<u8> {
    let mut end = at;
    while value[end] & 0x80 != 0 {
        end += 1;
    }
    let mut v = Vec::with_capacity(value.len() + 2);
    v.extend_from_slice(&value[..at]);
    Enc::new(&mut v).long(ts_ms);
    v.extend_from_slice(&value[end + 1..]);
    v
}

/// `source.snapshot` of a snapshot read, as Debezium writes it, by the read's index in the
/// snapshot (whose rows come table by table).
const SNAPSHOT_FLAGS: [&str; 6] = [
    "false",
    "first",
    "first_in_data_collection",
    "true",
    "last_in_data_collection",
    "last",
];

/// The index into [`SNAPSHOT_FLAGS`] of the `i`th read of the snapshot `rows`.
fn snapshot_flag(rows: &[Row], i: usize) -> u8 {
    let table = |j: usize| rows[j].table();
    if i == 0 {
        1
    } else if i + 1 == rows.len() {
        5
    } else if table(i - 1) != table(i) {
        2
    } else if table(i + 1) != table(i) {
        4
    } else {
        3
    }
}

/// Synthetic time after `events` primary events: `ns_per_event` each, faster in the burst.
fn elapsed_ns(events: u64, ns_per_event: f64, (b0, b1, mult): (f64, f64, f64)) -> i64 {
    let e = events as f64;
    let in_burst = (e.min(b1) - b0).max(0.0);
    (e * ns_per_event - in_burst * ns_per_event * (1.0 - 1.0 / mult)) as i64
}

/// The `faults` scenario: every kind, a handful each, between 20% and 80% of the run.
fn plan_faults(cfg: &SimConfig, rng: &mut ChaCha8Rng) -> Vec<Planned> {
    use FaultKind::*;
    use Table::*;
    let r1 = 1;
    let r2 = if cfg.replicas >= 2 { 2 } else { 1 };
    let mut spread: Vec<(FaultKind, usize, Option<Table>, u8)> = vec![
        (Dropped, r1, Some(Customers), 0),
        (Dropped, r2, Some(Inventory), 0),
        (Dropped, r1, Some(Orders), 0),
        (Corrupted, r1, Some(Products), 0),
        (Corrupted, r2, Some(Payments), 0),
        (Corrupted, r1, Some(Carts), 0),
        (Extra, r1, Some(Customers), 0),
        (Extra, r2, Some(Orders), 0),
        (Extra, r1, Some(Payments), 0),
        (Reordered, r1, Some(Orders), 0),
        (Reordered, r2, Some(Inventory), 0),
        (Poison, r1, Some(Orders), 0),
        (Poison, r2, Some(Customers), 1),
        (Poison, r1, Some(Payments), 2),
        (Duplicate, r1, Some(Products), 0),
        (Duplicate, r2, Some(CartItems), 0),
        (LatePartition, r2, Some(Inventory), 0),
    ];
    // A deterministic shuffle, so kinds interleave over the run.
    for i in (1..spread.len()).rev() {
        let j = rng.random_range(0..=i);
        spread.swap(i, j);
    }
    let n = cfg.events as f64;
    let mut plan: Vec<Planned> = spread
        .iter()
        .enumerate()
        .map(|(i, &(kind, stream, table, variant))| Planned {
            at_event: (n * (0.2 + 0.5 * (i as f64 + 0.5) / spread.len() as f64)) as u64,
            kind,
            stream,
            table,
            variant,
        })
        .collect();
    // Stretches and the silence sit where they cannot hide the other faults.
    plan.push(Planned {
        at_event: (n * 0.45) as u64,
        kind: Lag,
        stream: r1,
        table: None,
        variant: 0,
    });
    plan.push(Planned {
        at_event: (n * 0.78) as u64,
        kind: Silent,
        stream: r1,
        table: Some(CartItems),
        variant: 0,
    });
    plan.sort_by_key(|p| p.at_event);
    plan
}

impl Out {
    fn push(
        &mut self,
        emit_ms: i64,
        topic: u16,
        partition: u32,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        fault: u32,
    ) {
        self.queue.push(
            emit_ms,
            Pending {
                topic,
                partition,
                fault,
                key,
                value,
            },
        );
    }
}

/// What a stream emits for one change.
struct Emit<'a> {
    meta: &'a TxnMeta,
    table: Table,
    op: Op,
    key: Key,
    before: Option<Row>,
    after: Option<Row>,
    total_order: u32,
    dco: u32,
    /// The index into [`SNAPSHOT_FLAGS`] of `source.snapshot` (0: "false", not a snapshot read).
    snap: u8,
}

impl Stream {
    fn is_primary(&self) -> bool {
        self.topic_base == 0
    }

    fn silenced(&self, table: Table) -> bool {
        self.silent
            .iter()
            .any(|&(t, _)| t.is_none_or(|t| t == table))
    }

    fn replica_row(&self, table: Table, key: Key, primary_before: Option<Row>) -> Option<Row> {
        if self.overlay.is_empty() {
            return primary_before;
        }
        match self.overlay.get(&(table, key)) {
            Some(row) => *row,
            None => primary_before,
        }
    }

    /// Records that the replica now holds `row` for the key, where the primary holds `primary`.
    fn set_row(&mut self, table: Table, key: Key, row: Option<Row>, primary: Option<Row>) {
        if row == primary {
            if !self.overlay.is_empty() {
                self.overlay.remove(&(table, key));
            }
        } else {
            self.overlay.insert((table, key), row);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_txn(
        &mut self,
        out: &mut Out,
        ctx: &Ctx,
        world: &mut World,
        meta: &TxnMeta,
        changes: &[Change],
        orders: &[(u32, u32)],
        snap: &[u8],
        primary_events: u64,
    ) {
        let mut base = meta.commit_ms + self.delay_ms + self.rng.random_range(0..=self.jitter_ms);
        if let Some((clock, entry)) = self.catch_up {
            // A connector that started late processes its backlog at its own pace.
            let busy = clock + changes.len() as f64 * ctx.catch_up_ms_per_event;
            if busy > base as f64 {
                base = busy.ceil() as i64;
                self.catch_up = Some((busy, entry));
            } else {
                let d = &mut out.delays[entry];
                d.caught_up_position = Some(meta.position);
                d.caught_up_timestamp_ms = Some(base.max(self.last_base));
                self.catch_up = None;
            }
        }
        // A lagging replica's records come that much later than they would otherwise, a late
        // connector's too.
        if let Some(lag) = &mut self.lag {
            if primary_events < lag.until_event {
                base += lag.delay_ms;
                lag.end_commit_ms = meta.commit_ms;
                let f = &mut out.faults[lag.fault];
                f.position.get_or_insert(meta.position);
                f.until_position = Some(meta.position);
            } else {
                // Then it catches up, applying its backlog at five times the primary's pace.
                let remaining = lag.delay_ms - 4 * (meta.commit_ms - lag.end_commit_ms);
                if remaining > 0 {
                    base += remaining;
                } else {
                    self.lag = None;
                }
            }
        }
        base = base.max(self.last_base);
        self.last_base = base;
        if let Some(late) = self.late
            && primary_events >= late.until_event
        {
            self.late = None;
        }
        // Every read of the snapshot names the binlog position it was taken at.
        let pos = self.binlog_pos;
        if !meta.snapshot {
            self.binlog_pos += 120 + 230 * changes.len() as i64;
        }
        for &(_, fault) in &self.silent {
            out.faults[fault].position.get_or_insert(meta.position);
        }

        for (i, ch) in changes.iter().enumerate() {
            let (total_order, dco) = orders[i];
            let before = if self.is_primary() {
                ch.before
            } else {
                self.replica_row(ch.table, ch.key, ch.before)
            };
            let silent = !self.silent.is_empty() && self.silenced(ch.table);
            let ev = Emit {
                meta,
                table: ch.table,
                op: ch.op,
                key: ch.key,
                before,
                after: ch.after,
                total_order,
                dco,
                snap: snap.get(i).copied().unwrap_or(0),
            };

            if let Some(r) = self.reorder
                && r.table == ch.table
                && r.key == ch.key
            {
                match r.held {
                    None if meta.position == r.first_position => {
                        // Hold the first update back; the replica still has the old row.
                        self.reorder.as_mut().unwrap().held = Some(Held {
                            meta: *meta,
                            change: *ch,
                            total_order,
                            dco,
                        });
                        self.set_row(ch.table, ch.key, before, ch.after);
                        continue;
                    }
                    Some(held) => {
                        // The later update first, then the held one over it.
                        self.set_row(ch.table, ch.key, ch.after, ch.after);
                        self.emit(out, ctx, ev, pos, base, NO_FAULT, Some(ch));
                        let late = Emit {
                            meta: &held.meta,
                            table: ch.table,
                            op: held.change.op,
                            key: ch.key,
                            before: ch.after,
                            after: held.change.after,
                            total_order: held.total_order,
                            dco: held.dco,
                            snap: 0,
                        };
                        let f = &mut out.faults[r.fault];
                        f.key = Some(ch.key.to_json(ch.table));
                        f.position = Some(held.meta.position);
                        f.other_position = Some(meta.position);
                        self.set_row(ch.table, ch.key, held.change.after, ch.after);
                        self.emit(out, ctx, late, pos, base, r.fault as u32, None);
                        self.reorder = None;
                        continue;
                    }
                    None => {}
                }
            }

            if !self.armed.is_empty() && !silent {
                let hit = self.armed.iter().position(|a| {
                    a.table == ch.table
                        && match a.kind {
                            FaultKind::Dropped => ch.op == Op::Update,
                            FaultKind::Corrupted => matches!(ch.op, Op::Update | Op::Create),
                            _ => false,
                        }
                });
                if let Some(a) = hit.map(|i| self.armed.remove(i)) {
                    let mut f = Fault::new(a.kind, &self.name, Some(ch.table.name()));
                    f.key = Some(ch.key.to_json(ch.table));
                    f.position = Some(meta.position);
                    if a.kind == FaultKind::Dropped {
                        let (_, partition) = self.key_bytes(ch.table, ch.key);
                        f.detail =
                            Some("replica skipped this update; it keeps the previous row".into());
                        f.topic = Some(
                            ctx.topic_names[(self.topic_base + ch.table.index() as u16) as usize]
                                .clone(),
                        );
                        f.partition = Some(partition);
                        out.faults.push(f);
                        self.set_row(ch.table, ch.key, before, ch.after);
                        continue;
                    }
                    let mut row = ch.after.unwrap();
                    let what = row.corrupt(meta.seq);
                    f.detail = Some(format!("replica's after image differs: {what}"));
                    out.faults.push(f);
                    self.set_row(ch.table, ch.key, Some(row), ch.after);
                    let ev = Emit {
                        after: Some(row),
                        ..ev
                    };
                    self.emit(out, ctx, ev, pos, base, (out.faults.len() - 1) as u32, None);
                    continue;
                }
            }

            self.set_row(ch.table, ch.key, ch.after, ch.after);
            if !silent {
                self.emit(out, ctx, ev, pos, base, NO_FAULT, Some(ch));
            }
        }

        if !self.armed.is_empty() {
            self.fire_txn_faults(out, ctx, world, meta, changes, pos, base);
        }
    }

    /// `extra` and `poison` fire on the next transaction the replica applies.
    #[allow(clippy::too_many_arguments)]
    fn fire_txn_faults(
        &mut self,
        out: &mut Out,
        ctx: &Ctx,
        world: &mut World,
        meta: &TxnMeta,
        changes: &[Change],
        pos: i64,
        base: i64,
    ) {
        let mut i = 0;
        while i < self.armed.len() {
            let a = self.armed[i];
            if self.silenced(a.table) || !matches!(a.kind, FaultKind::Extra | FaultKind::Poison) {
                i += 1;
                continue;
            }
            self.armed.remove(i);
            if a.kind == FaultKind::Extra {
                out.extra_ids += 1;
                let row = world.phantom_row(a.table, EXTRA_ID_BASE + out.extra_ids);
                let key = row.key();
                let dco = changes.iter().filter(|c| c.table == a.table).count() as u32 + 1;
                let mut f = Fault::new(FaultKind::Extra, &self.name, Some(a.table.name()));
                f.key = Some(key.to_json(a.table));
                f.position = Some(meta.position);
                f.detail = Some("replica inserted a row the primary never wrote".into());
                out.faults.push(f);
                self.set_row(a.table, key, Some(row), None);
                let ev = Emit {
                    meta,
                    table: a.table,
                    op: Op::Create,
                    key,
                    before: None,
                    after: Some(row),
                    total_order: changes.len() as u32 + 1,
                    dco,
                    snap: 0,
                };
                self.emit(out, ctx, ev, pos, base, (out.faults.len() - 1) as u32, None);
            } else {
                let Some(key) = world.random_key(a.table) else {
                    continue;
                };
                let row = self.replica_row(a.table, key, world.get(a.table, key));
                let (key_bytes, partition) = self.key_bytes(a.table, key);
                let version = self.version(a.table);
                let mut value = Vec::with_capacity(512);
                let ev = Emit {
                    meta,
                    table: a.table,
                    op: Op::Update,
                    key,
                    before: row,
                    after: row,
                    total_order: 1,
                    dco: 1,
                    snap: 0,
                };
                let _ =
                    self.encode_value(&mut value, &mut out.scratch, ctx, &ev, version, pos, base);
                out.poison_count += 1;
                let detail = match a.variant {
                    0 => {
                        value[0] = 1;
                        "bad magic byte (1 instead of 0)".to_string()
                    }
                    1 => {
                        let id = UNKNOWN_SCHEMA_ID + out.poison_count;
                        value[1..5].copy_from_slice(&id.to_be_bytes());
                        format!("unknown schema id {id}")
                    }
                    _ => {
                        value.truncate(value.len() / 2);
                        format!("truncated datum ({} of its bytes)", value.len())
                    }
                };
                let mut f = Fault::new(FaultKind::Poison, &self.name, Some(a.table.name()));
                f.key = Some(key.to_json(a.table));
                f.detail = Some(detail);
                out.faults.push(f);
                let emit_ms = self.emit_time(a.table, partition, base);
                let topic = self.topic_base + a.table.index() as u16;
                out.faults.last_mut().unwrap().timestamp_ms = Some(emit_ms);
                out.push(
                    emit_ms,
                    topic,
                    partition,
                    Some(key_bytes),
                    Some(value),
                    (out.faults.len() - 1) as u32,
                );
            }
        }
    }

    fn version(&self, table: Table) -> u8 {
        if table == Table::Orders {
            self.orders_version
        } else {
            1
        }
    }

    fn key_bytes(&self, table: Table, key: Key) -> (Vec<u8>, u32) {
        let mut kb = Vec::with_capacity(24);
        let mut e = Enc::new(&mut kb);
        e.wire_header(self.key_ids[table.index()]);
        key.encode(&mut e);
        let partition = partition_for_key(&kb, self.partitions);
        (kb, partition)
    }

    /// The emission time of a record: the transaction's, delayed for a late partition, and never
    /// before the partition's previous record.
    fn emit_time(&mut self, table: Table, partition: u32, base: i64) -> i64 {
        let mut t = base;
        if let Some(late) = self.late
            && late.table == Some(table)
            && late.partition == Some(partition)
        {
            t += late.delay_ms;
        }
        let per_table = self.last_emit.len() / Table::ALL.len();
        let slot = &mut self.last_emit[table.index() * per_table + partition as usize];
        t = t.max(*slot);
        *slot = t;
        t
    }

    /// Encodes and queues one change event (and its tombstone after a delete).
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        out: &mut Out,
        ctx: &Ctx,
        ev: Emit,
        pos: i64,
        base: i64,
        fault: u32,
        primary: Option<&Change>,
    ) {
        let (key_bytes, partition) = self.key_bytes(ev.table, ev.key);
        let emit_ms = self.emit_time(ev.table, partition, base);
        let version = self.version(ev.table);
        let mut value = Vec::with_capacity(if ev.table == Table::Orders { 560 } else { 360 });
        let ts_at = self.encode_value(
            &mut value,
            &mut out.scratch,
            ctx,
            &ev,
            version,
            pos,
            emit_ms,
        );
        let topic = self.topic_base + ev.table.index() as u16;

        let mut fault = fault;
        if self.drift
            && self.migrated
            && ev.table == Table::Orders
            && let Some(ch) = primary
        {
            fault = self.note_drift(out, ch, ev.meta, fault);
        }
        if let Some(late) = self.late
            && late.table == Some(ev.table)
            && late.partition == Some(partition)
        {
            let f = &mut out.faults[late.fault];
            f.position.get_or_insert(ev.meta.position);
            f.until_position = Some(ev.meta.position);
        }
        if fault != NO_FAULT {
            let f = &mut out.faults[fault as usize];
            f.topic = None; // filled in with the offset when the record leaves the heap
            f.timestamp_ms = Some(emit_ms);
        }
        let tombstone = (ev.op == Op::Delete).then(|| key_bytes.clone());
        self.capture_dup(
            out,
            ev.table,
            partition,
            ev.meta.position,
            &key_bytes,
            Some((&value, ts_at)),
            primary.is_some(),
        );
        out.push(
            emit_ms,
            topic,
            partition,
            Some(key_bytes),
            Some(value),
            fault,
        );
        if let Some(k) = tombstone {
            self.capture_dup(
                out,
                ev.table,
                partition,
                ev.meta.position,
                &k,
                None,
                primary.is_some(),
            );
            out.push(emit_ms, topic, partition, Some(k), None, NO_FAULT);
        }
    }

    /// Schema drift: the first drifted `orders` event, and every later one whose primary row has
    /// a currency other than the default (the value the outdated schema loses).
    fn note_drift(&mut self, out: &mut Out, ch: &Change, meta: &TxnMeta, fault: u32) -> u32 {
        let currency = |r: Option<Row>| match r {
            Some(Row::Order(o)) => o.currency,
            _ => 0,
        };
        let lost = currency(ch.before).max(currency(ch.after));
        if !self.drift_seen {
            self.drift_seen = true;
            let idx = out.faults.iter().position(|f| {
                f.kind == FaultKind::SchemaDrift && f.replica == self.name && f.position.is_none()
            });
            if let Some(idx) = idx {
                let f = &mut out.faults[idx];
                f.key = Some(ch.key.to_json(Table::Orders));
                f.position = Some(meta.position);
                return idx as u32;
            }
        } else if lost != 0 {
            let mut f = Fault::new(FaultKind::SchemaDrift, &self.name, Some("orders"));
            f.key = Some(ch.key.to_json(Table::Orders));
            f.position = Some(meta.position);
            f.detail = Some(format!(
                "value lost to outdated schema: primary currency {}, replica reads the default USD",
                CURRENCIES[lost as usize]
            ));
            out.faults.push(f);
            if fault == NO_FAULT {
                return (out.faults.len() - 1) as u32;
            }
        }
        fault
    }

    #[allow(clippy::too_many_arguments)]
    fn capture_dup(
        &mut self,
        out: &mut Out,
        table: Table,
        partition: u32,
        position: u64,
        key: &[u8],
        value: Option<(&[u8], usize)>,
        regular: bool,
    ) {
        let Some(dup) = self.dup.as_mut() else { return };
        if dup.table != table || !regular || dup.partition.is_some_and(|p| p != partition) {
            return;
        }
        dup.partition = Some(partition);
        let f = &mut out.faults[dup.fault];
        f.position.get_or_insert(position);
        f.until_position = Some(position);
        f.partition = Some(partition);
        dup.records.push((
            Some(key.to_vec()),
            value.map(|(v, _)| v.to_vec()),
            value.map_or(0, |(_, at)| at),
        ));
        if dup.records.len() >= DUPLICATE_RUN {
            let dup = self.dup.take().unwrap();
            // The connector restarts a little later and re-sends from its last committed offset.
            out.deferred.push(Deferred {
                due_event: out.primary_events + out.redelivery_gap,
                stream: (self.topic_base / 7) as usize,
                table,
                partition,
                records: dup.records,
                fault: dup.fault,
            });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn encode_value(
        &self,
        value: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        ctx: &Ctx,
        ev: &Emit,
        version: u8,
        pos: i64,
        emit_ms: i64,
    ) -> usize {
        let meta = ev.meta;
        let mut e = Enc::new(value);
        e.wire_header(self.value_ids[ev.table.index()][version as usize - 1]);
        match &ev.before {
            Some(r) => {
                e.union_index(1);
                r.encode(version, &mut e, scratch);
            }
            None => e.null(),
        }
        match &ev.after {
            Some(r) => {
                e.union_index(1);
                r.encode(version, &mut e, scratch);
            }
            None => e.null(),
        }
        // source
        e.string(DEBEZIUM_VERSION);
        e.string("mysql");
        e.string(&self.source_name);
        e.long(meta.source_ts_ms);
        e.union_index(1);
        e.string(SNAPSHOT_FLAGS[ev.snap as usize]);
        e.string("shop");
        e.union_index(1);
        e.string(ev.table.name());
        // server_id of the origin, the primary; 0 in snapshot reads, which have no origin event.
        e.long(if meta.snapshot { 0 } else { 1 });
        let gtid = |scratch: &mut Vec<u8>| {
            scratch.clear();
            scratch.extend_from_slice(ctx.gtid_prefix.as_bytes());
            push_u64(scratch, meta.seq);
        };
        match ctx.position {
            // Snapshot reads carry no gtid: they are state, not a logged transaction.
            PositionKind::Gtid if !meta.snapshot => {
                e.union_index(1);
                gtid(scratch);
                e.bytes(scratch);
            }
            _ => e.null(),
        }
        e.string(&self.binlog_file);
        e.long(pos);
        e.int(if meta.snapshot { 0 } else { ev.dco as i32 - 1 });
        if meta.snapshot {
            e.null();
        } else {
            e.union_index(1);
            e.long(meta.thread);
        }
        e.null(); // query
        match ctx.position {
            PositionKind::Lsn => {
                e.union_index(1);
                e.long(meta.lsn as i64);
            }
            PositionKind::Gtid => e.null(),
        }
        e.string(ev.op.code());
        e.union_index(1);
        let ts_at = e.buf.len();
        e.long(emit_ms);
        // transaction: only with `provide.transaction.metadata`, and never for snapshot reads
        // (no transaction wrote them)
        if !ctx.transaction_metadata || (meta.snapshot && ctx.position == PositionKind::Gtid) {
            e.null();
            return ts_at;
        }
        e.union_index(1);
        match ctx.position {
            PositionKind::Gtid => gtid(scratch),
            PositionKind::Lsn => {
                scratch.clear();
                push_u64(scratch, meta.seq);
                scratch.push(b':');
                push_u64(scratch, meta.lsn);
            }
        }
        e.bytes(scratch);
        e.long(ev.total_order as i64);
        e.long(ev.dco as i64);
        ts_at
    }
}

impl Iterator for Simulation {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            if let Some((emit_ms, p)) = self.out.queue.pop_due(self.safe_ms) {
                let offset = &mut self.offsets[p.topic as usize][p.partition as usize];
                let rec = Record {
                    topic: p.topic,
                    partition: p.partition,
                    offset: *offset,
                    timestamp_ms: emit_ms,
                    key: p.key,
                    value: p.value,
                };
                *offset += 1;
                self.manifest.records += 1;
                self.manifest.end_timestamp_ms = self.manifest.end_timestamp_ms.max(emit_ms);
                if p.fault != NO_FAULT {
                    let f = &mut self.out.faults[p.fault as usize];
                    f.topic = Some(self.topics[p.topic as usize].name.clone());
                    f.partition = Some(p.partition);
                    f.offset = Some(rec.offset);
                }
                return Some(rec);
            }
            if matches!(self.phase, Phase::Done) {
                return None;
            }
            self.step();
        }
    }
}
