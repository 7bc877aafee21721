//! Setting a run up: checking the configuration, registering every schema, and building the
//! streams, the fault plan and the manifest's fixed part.

use std::collections::HashMap;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::manifest::{ConnectorDelay, Fault, FaultKind, Manifest};
use crate::schema::{SchemaEntry, SchemaRegistrar, Table, envelope_schema, key_schema};
use crate::time::utc_ms;
use crate::world::World;

use super::faults::plan_faults;
use super::output::{Out, Queue};
use super::stream::Stream;
use super::{
    CATCH_UP_SPEEDUP, Ctx, DEFAULT_RATE, Failover, GtidStyle, MigrationAt, Phase, PositionKind,
    SNAPSHOT_CHUNK, Scenario, SimConfig, SimError, Simulation, TopicInfo, elapsed_ns,
};

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
        if cfg.failover_at.is_some() && cfg.position != PositionKind::Gtid {
            return Err(SimError::Config(
                "a failover needs GTID positions (--position gtid)".into(),
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
        // The server the primary fails over to.
        let new_uuid = {
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
        let failover_prefix = match cfg.gtid_style {
            GtidStyle::MariaDb => "0-2-".to_string(),
            GtidStyle::MySql => format!("{new_uuid}:"),
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
                gtid_prefixes: [gtid_prefix, failover_prefix],
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
            failover: cfg.failover_at.map(Failover::Due),
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
}
