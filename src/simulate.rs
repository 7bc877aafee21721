//! `cdc-verifier simulate`: realistic primary and replica CDC traffic, with injected faults and a
//! ground-truth manifest, into Kafka and/or a capture file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cdc_verifier_kafka::admin::{Existing, TopicSpec, ensure_topics};
use cdc_verifier_kafka::consume::KafkaSettings;
use cdc_verifier_kafka::produce::{OutRecord, ProducerSettings, RecordProducer};
use cdc_verifier_kafka::registry::RegistryClient;
use cdc_verifier_sim::{
    CaptureWriter, FaultKind, GtidStyle, OfflineRegistry, PositionKind, Registered, Scenario,
    SchemaRegistrar, SimConfig, Simulation, time,
};

const SCENARIOS_HELP: &str = "\
WHAT IT WRITES
  One primary and N replicas of a shop database (customers, products, inventory, carts,
  cart_items, orders, payments), each as Debezium's MariaDB connector publishes it with its
  default settings: one topic per table, <prefix><stream>.shop.<table> with streams primary,
  replica-1, replica-2, ...; Avro envelopes (before, after, source, op, ts_ms, transaction) in the
  Confluent wire format, schemas registered under <topic>-key / <topic>-value.
  Every streamed event carries the position of its transaction on the primary: source.gtid
  \"0-1-<seq>\" (MariaDB; --gtid-style mysql: \"<uuid>:<seq>\"), or source.lsn with --position
  lsn; replicas repeat the primary's positions. As Debezium does by default:
  - no transaction metadata: `transaction` is null, and the events of one transaction, across
    tables and partitions, share only its gtid (--transaction-metadata adds the block);
  - snapshot reads (op r) carry no gtid, source.server_id 0 and source.snapshot first,
    first_in_data_collection, true, last_in_data_collection or last (with --position lsn they
    carry an lsn, as PostgreSQL's do);
  - source.ts_ms is the binlog event's time in whole seconds (--ms-source-ts: milliseconds);
    the envelope ts_ms and the record's timestamp are when the connector produced it;
  - each topic's key schema is named after the topic (<stream>.shop.<table>.Key), so keys carry
    their topic's own schema id, and the partitioner (the Java client's, over the framed bytes)
    puts one key in unrelated partitions on the primary's and a replica's topics.
  Traffic: an initial snapshot (op r), then shopping: carts, orders touching orders, payments,
  inventory and cart_items in one transaction, updates, deletes followed by tombstones, hot keys,
  and a burst of peak traffic. At 40% of the run (or 15:45 UTC in `incident`) a maintenance
  deploy migrates `orders` to schema v2 (new column currency, default USD).
  Connectors can start late and catch up (--connector-delay-ms, --replica-connector-delay-ms):
  their records are produced long after the commits, as after a restart, in a backfill or while
  a connector catches up; the manifest lists them under connector_delays (not faults).
  The same --seed gives byte-identical records, capture and manifest.

SCENARIOS
  clean     Replicas follow the primary faithfully (they apply the migration too). Nothing
            should alert.
  incident  The 2024-08-14 outage: peak traffic; the deploy migrates `orders` at 15:45:00 UTC
            (the clock starts shortly before); replica-2 was re-configured with the outdated
            schema and keeps writing `orders` with v1: every order it writes lacks `currency`, so
            non-USD orders silently read back as USD. Nothing else goes wrong.
  faults    Every fault below, a handful of each, spread over replicas and tables, between 20%
            and 80% of the run.

FAULTS (listed in the manifest with replica, table, key, position, and topic/partition/offset)
  schema_drift    after the migration the replica keeps writing `orders` with schema v1: one
                  entry for its first drifted event, one per later event whose primary row has a
                  non-default currency (\"value lost to outdated schema\").
  dropped         the replica skipped an update of a key; it keeps the old row until the key's
                  next change (whose before image shows the stale row).
  corrupted       one value in the replica's after image differs from the primary's.
  extra           the replica inserted a row the primary never wrote (ids from 900000000).
  reordered       two quick updates of one key applied in the wrong order: the replica emits the
                  later one first, so it ends with the earlier row.
  lag             all of a replica's records come 5 s late for a stretch, then it catches up.
  silent          the replica stops emitting a table from a position on.
  poison          an extra undecodable record in a replica topic: bad magic byte, unknown schema
                  id, or truncated datum. Never replaces a real event.
  duplicate       (benign) at-least-once redelivery after a connector crash: a run of 20 records
                  of one partition sent again a little later with the same key, before, after
                  and source (only the envelope ts_ms, the processing time, is new), as
                  Debezium does. Must not alert.
  late_partition  (benign) one partition's records are delayed 300 ms for a stretch. Must not
                  alert.

EXAMPLES
  cdc-verifier simulate --scenario incident --capture incident.cdccap --manifest incident.json
  cdc-verifier simulate --scenario faults --events 1000000 --rate 20000     # live, paced
  cdc-verifier simulate --offline --scenario faults --capture f.cdccap --manifest f.json
  cdc-verifier simulate --offline --replica-connector-delay-ms 3600000 --replica-partitions 3 \\
      --capture late.cdccap --manifest late.json   # the replicas' connectors an hour late";

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ScenarioArg {
    Clean,
    Incident,
    Faults,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum PositionArg {
    Gtid,
    Lsn,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum GtidStyleArg {
    Mariadb,
    Mysql,
}

#[derive(clap::Args, Debug)]
#[command(after_long_help = SCENARIOS_HELP, after_help = "Run with --help for the scenarios and faults.")]
pub struct Args {
    /// Traffic and fault pattern: clean, incident or faults (see --help)
    #[arg(long, value_enum, default_value = "clean")]
    scenario: ScenarioArg,

    /// Seed of the deterministic generator; the same seed gives the same bytes
    #[arg(long, default_value_t = 42)]
    seed: u64,

    /// Change events the PRIMARY emits, initial snapshot included (tombstones and replica events
    /// not counted; with 2 replicas Kafka receives about 3.3x this many records)
    #[arg(long, default_value_t = 200_000)]
    events: u64,

    /// Primary change events per second of synthetic time; in Kafka mode production is also
    /// paced to it (replica records follow at their own delays). Without it the topics are
    /// preloaded as fast as possible with timestamps at 20000 events/s
    #[arg(long)]
    rate: Option<f64>,

    /// Number of replicas
    #[arg(long, default_value_t = 2)]
    replicas: u32,

    /// Partitions per topic (of the primary's topics, and of the replicas' unless
    /// --replica-partitions says otherwise)
    #[arg(long, default_value_t = 8)]
    partitions: u32,

    /// Partitions per replica topic [default: as --partitions]. Real pipelines often differ
    /// (the replica's connector creates its own topics); keys land in unrelated partitions on
    /// the two sides either way
    #[arg(long, value_name = "N")]
    replica_partitions: Option<u32>,

    /// Which source field carries the origin position: gtid (source.gtid) or lsn (source.lsn)
    #[arg(long, value_enum, default_value = "gtid")]
    position: PositionArg,

    /// How source.gtid is spelled: mariadb ("0-1-<seq>", domain-server-sequence) or mysql
    /// ("<server uuid>:<seq>")
    #[arg(long, value_enum, default_value = "mariadb")]
    gtid_style: GtidStyleArg,

    /// The primary fails over after this many primary events: its GTIDs come from a new
    /// server from then on (mysql: "<new uuid>:1", ...; mariadb: "0-2-<seq>", the domain's
    /// sequence going on), the replicas following. Recorded as a benign fault
    #[arg(long, value_name = "EVENTS")]
    failover_at: Option<u64>,

    /// Write Debezium's transaction block (id, total_order, data_collection_order), as with
    /// provide.transaction.metadata=true; by default it is null, as Debezium's default
    #[arg(long)]
    transaction_metadata: bool,

    /// source.ts_ms in milliseconds (the commit time) instead of whole seconds, the binlog
    /// event's resolution that MariaDB and MySQL give
    #[arg(long)]
    ms_source_ts: bool,

    /// Every connector (primary's and replicas') starts this long after the first commit and
    /// reads its backlog at 5x the primary's pace: record timestamps lie up to this far after
    /// the commits on all sides alike (a backfill, a catch-up after an outage)
    #[arg(long, value_name = "MS", default_value_t = 0)]
    connector_delay_ms: i64,

    /// The replicas' connectors start this much later still (e.g. 3600000: an hour late), then
    /// catch up likewise
    #[arg(long, value_name = "MS", default_value_t = 0)]
    replica_connector_delay_ms: i64,

    /// Create each topic just before its first record, as Kafka Connect does for a table's
    /// first change, instead of every topic before the first record: with a late connector
    /// (--replica-connector-delay-ms) its topics appear while a verifier is already running
    #[arg(long)]
    topics_at_first_record: bool,

    /// Kafka bootstrap servers
    #[arg(
        long,
        env = "CDC_VERIFIER__KAFKA__BOOTSTRAP_SERVERS",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap_servers: String,

    /// Confluent-compatible schema registry
    #[arg(
        long,
        env = "CDC_VERIFIER__REGISTRY__URL",
        default_value = "http://127.0.0.1:8081/apis/ccompat/v7"
    )]
    registry_url: String,

    /// Also write every record, with the schemas, to this capture file (replayable offline)
    #[arg(long, value_name = "FILE")]
    capture: Option<PathBuf>,

    /// Write the ground-truth manifest (JSON) of injected faults here
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,

    /// Prefix for every topic and subject (e.g. a test run's unique name)
    #[arg(long, default_value = "")]
    topic_prefix: String,

    /// Synthetic clock start, e.g. 2024-08-14T15:44:00Z, or `now` (not reproducible)
    #[arg(long, value_name = "UTC TIME")]
    start_time: Option<String>,

    /// Do not migrate `orders` to v2 (and so no schema drift)
    #[arg(long)]
    no_migration: bool,

    /// Touch neither Kafka nor the registry: schema ids come from an in-memory registry; write
    /// only --capture and --manifest
    #[arg(long)]
    offline: bool,

    /// Producer compression: none, lz4, snappy or gzip
    #[arg(long, default_value = "lz4")]
    compression: String,

    /// Producer linger.ms [default: 10 when preloading, 5 when paced by --rate]
    #[arg(long)]
    linger_ms: Option<u32>,

    /// Producer instances (Kafka connections) to spread the topic-partitions over [default: 1
    /// when preloading (into one local broker more cost the broker more CPU than they gain);
    /// one per topic-partition, up to 8, when paced by --rate: librdkafka sends one partition
    /// per request, at most 5 in flight, so on one connection a slow broker holds partitions
    /// behind one another; a connector's producer sends every partition's batch to a broker in
    /// one request]
    #[arg(long)]
    producers: Option<usize>,

    /// Extra librdkafka producer property, KEY=VALUE (repeatable)
    #[arg(long = "producer-property", value_name = "KEY=VALUE")]
    producer_properties: Vec<String>,
}

/// Registers through the real registry, and asks it which version of the subject that is.
struct OnlineRegistrar(RegistryClient);

impl SchemaRegistrar for OnlineRegistrar {
    fn register(
        &mut self,
        subject: &str,
        schema: &str,
    ) -> Result<Registered, Box<dyn std::error::Error + Send + Sync>> {
        let id = self.0.register(subject, schema)?;
        let version = match self.0.lookup(subject, schema) {
            Ok(r) => r.version,
            Err(_) => self
                .0
                .versions_by_id(id)?
                .into_iter()
                .filter(|v| v.subject == subject)
                .map(|v| v.version)
                .max()
                .ok_or_else(|| format!("schema id {id} is not listed under subject {subject}"))?,
        };
        Ok(Registered { id, version })
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let start_ms = match args.start_time.as_deref() {
        None => None,
        Some("now") => Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as i64,
        ),
        Some(t) => Some(time::parse_utc(t).with_context(|| {
            format!("--start-time {t:?} is not a UTC time like 2024-08-14T15:44:00Z")
        })?),
    };
    if let Some(r) = args.rate
        && !(r.is_finite() && r > 0.0)
    {
        bail!("--rate must be a positive number of events per second");
    }
    let cfg = SimConfig {
        scenario: match args.scenario {
            ScenarioArg::Clean => Scenario::Clean,
            ScenarioArg::Incident => Scenario::Incident,
            ScenarioArg::Faults => Scenario::Faults,
        },
        seed: args.seed,
        events: args.events,
        rate: args.rate,
        replicas: args.replicas,
        partitions: args.partitions,
        replica_partitions: args.replica_partitions,
        position: match args.position {
            PositionArg::Gtid => PositionKind::Gtid,
            PositionArg::Lsn => PositionKind::Lsn,
        },
        gtid_style: match args.gtid_style {
            GtidStyleArg::Mariadb => GtidStyle::MariaDb,
            GtidStyleArg::Mysql => GtidStyle::MySql,
        },
        transaction_metadata: args.transaction_metadata,
        whole_second_source_ts: !args.ms_source_ts,
        connector_delay_ms: args.connector_delay_ms,
        replica_connector_delay_ms: args.replica_connector_delay_ms,
        topic_prefix: args.topic_prefix.clone(),
        start_ms,
        migration: !args.no_migration,
        failover_at: args.failover_at,
    };

    let mut sim = if args.offline {
        Simulation::new(cfg, &mut OfflineRegistry::new())?
    } else {
        let client = RegistryClient::new(&args.registry_url)?;
        Simulation::new(cfg, &mut OnlineRegistrar(client))
            .with_context(|| format!("registering schemas with {}", args.registry_url))?
    };
    let topic_names: Vec<String> = sim.topics().iter().map(|t| t.name.clone()).collect();

    let kafka = KafkaSettings {
        bootstrap_servers: args.bootstrap_servers.clone(),
        properties: Vec::new(),
    };
    let mut specs: Vec<Option<TopicSpec>> = Vec::new();
    let mut producer = if args.offline {
        None
    } else {
        specs = sim
            .topics()
            .iter()
            .map(|t| TopicSpec {
                name: t.name.clone(),
                partitions: t.partitions as i32,
                // The synthetic clock may be in the past: time-based retention must not delete it.
                configs: vec![("retention.ms".into(), "-1".into())],
                replication: Some(1),
            })
            .map(Some)
            .collect();
        if !args.topics_at_first_record {
            let all: Vec<TopicSpec> = specs.iter_mut().filter_map(Option::take).collect();
            ensure_topics(&kafka, &all, Existing::Empty, Duration::from_secs(30))
                .with_context(|| format!("preparing topics on {}", args.bootstrap_servers))?;
        }
        let mut settings = ProducerSettings::new(&args.bootstrap_servers);
        settings.compression = args.compression.clone();
        // Preloading wants big batches; a paced (live) run wants records out promptly.
        // A paced (live) run wants records out promptly; longer lingers did not speed up preloading.
        settings.linger_ms = args
            .linger_ms
            .unwrap_or(if args.rate.is_some() { 5 } else { 10 });
        let partitions: usize = sim.topics().iter().map(|t| t.partitions as usize).sum();
        settings.instances = args.producers.unwrap_or(if args.rate.is_some() {
            partitions.clamp(1, 8)
        } else {
            1
        });
        // The manifest names each faulty record by the offset Kafka gave it: a broker that
        // failed over mid-write (or a topic written before) moves offsets from the count.
        settings.report_offsets = args.manifest.is_some();
        for kv in &args.producer_properties {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("--producer-property {kv:?} is not KEY=VALUE"))?;
            settings
                .extra
                .push((k.trim().to_owned(), v.trim().to_owned()));
        }
        Some(RecordProducer::new(&settings)?)
    };

    let mut capture = match &args.capture {
        Some(path) => Some(
            CaptureWriter::create(path, &sim.capture_header())
                .with_context(|| format!("creating capture {}", path.display()))?,
        ),
        None => None,
    };

    let pace = args.rate.is_some() && producer.is_some();
    let started = Instant::now();
    let mut first_ts = None;
    let mut per_topic = vec![0u64; topic_names.len()];
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut next_report = Instant::now() + Duration::from_secs(5);
    // Generation runs on its own thread and hands over batches, so it overlaps with producing.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<cdc_verifier_sim::Record>>(8);
    let generator = std::thread::Builder::new()
        .name("simulate-gen".into())
        .spawn(move || {
            let mut batch = Vec::with_capacity(GEN_BATCH);
            for rec in sim.by_ref() {
                batch.push(rec);
                if batch.len() == GEN_BATCH
                    && tx
                        .send(std::mem::replace(&mut batch, Vec::with_capacity(GEN_BATCH)))
                        .is_err()
                {
                    break; // the producing side gave up
                }
            }
            let _ = tx.send(batch);
            sim.manifest()
        })
        .context("starting the generator thread")?;
    // How far behind its pace the run fell (a starved host): records go out stamped with their
    // schedule, so one sent late arrives that much behind its stamp.
    let mut behind_max = Duration::ZERO;
    for rec in rx.iter().flatten() {
        if pace {
            let t0 = *first_ts.get_or_insert_with(|| {
                // With `--start-time now`, the synthetic clock started before the topics and
                // schemas were set up: every record goes out this much after its timestamp.
                if args.start_time.as_deref() == Some("now") {
                    let wall = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as i64);
                    eprintln!(
                        "simulate: pacing: records are sent {} ms after their timestamps",
                        wall - rec.timestamp_ms
                    );
                }
                rec.timestamp_ms
            });
            let due = started + Duration::from_millis((rec.timestamp_ms - t0).max(0) as u64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            } else {
                behind_max = behind_max.max(now - due);
            }
        }
        if let Some(w) = capture.as_mut() {
            w.write(&rec.as_ref()).context("writing the capture")?;
        }
        if let Some(spec) = specs.get_mut(rec.topic as usize).and_then(Option::take) {
            ensure_topics(&kafka, &[spec], Existing::Empty, Duration::from_secs(30))
                .with_context(|| format!("creating topic {}", topic_names[rec.topic as usize]))?;
        }
        if let Some(p) = producer.as_mut() {
            let out = OutRecord {
                topic: &topic_names[rec.topic as usize],
                partition: Some(rec.partition as i32),
                timestamp_ms: Some(rec.timestamp_ms),
                key: rec.key.as_deref(),
                value: rec.value.as_deref(),
                headers: &[],
            };
            match rec.fault {
                Some(f) => p.send_located(&out, f)?,
                None => p.send_record(&out)?,
            }
        }
        per_topic[rec.topic as usize] += 1;
        records += 1;
        bytes +=
            (rec.key.as_ref().map_or(0, Vec::len) + rec.value.as_ref().map_or(0, Vec::len)) as u64;
        if records % 4096 == 0 && Instant::now() >= next_report {
            next_report += Duration::from_secs(5);
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "simulate: {records} records ({:.0}/s), {} primary events, synthetic time {}",
                records as f64 / secs,
                sim_events(&per_topic, &topic_names),
                time::format_utc(rec.timestamp_ms)
            );
        }
    }
    let generated = started.elapsed();
    if let Some(p) = &producer {
        p.flush(Duration::from_secs(120))
            .context("waiting for Kafka to acknowledge every record")?;
    }
    let elapsed = started.elapsed();
    if let Some(w) = capture.take() {
        w.finish().context("finishing the capture")?;
    }
    let mut manifest = generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator thread panicked"))?;
    if let Some(p) = &producer {
        for l in p.located() {
            manifest.locate(l.tag, l.partition as u32, l.offset);
        }
    }
    if let Some(path) = &args.manifest {
        manifest.write(path)?;
    }
    if behind_max >= Duration::from_millis(100) {
        eprintln!(
            "simulate: fell up to {} ms behind the pace of --rate: records sent late arrived that much behind their stamps",
            behind_max.as_millis()
        );
    }

    // The report.
    println!("{:<40} {:>12}", "topic", "records");
    for (name, n) in topic_names.iter().zip(&per_topic) {
        println!("{name:<40} {n:>12}");
    }
    let secs = elapsed.as_secs_f64();
    println!(
        "{records} records ({:.1} MB) for {} primary events in {:.2}s: {:.0} records/s, {:.0} primary events/s{}",
        bytes as f64 / 1e6,
        manifest.primary_events,
        secs,
        records as f64 / secs,
        manifest.primary_events as f64 / secs,
        if producer.is_some() {
            format!(
                " (generation and enqueueing {:.2}s)",
                generated.as_secs_f64()
            )
        } else {
            String::new()
        }
    );
    println!(
        "synthetic time {} .. {}, positions {} .. {}",
        time::format_utc(manifest.start_timestamp_ms),
        time::format_utc(manifest.end_timestamp_ms),
        manifest.first_position,
        manifest.last_position
    );
    if let Some(m) = &manifest.migration {
        println!(
            "orders migrated v{} -> v{} at position {} ({}){}",
            m.from_version,
            m.to_version,
            m.position,
            time::format_utc(m.timestamp_ms),
            if m.skipped_by.is_empty() {
                String::new()
            } else {
                format!("; not applied by {}", m.skipped_by.join(", "))
            }
        );
    }
    for d in &manifest.connector_delays {
        println!(
            "connector of {} started {} ms late; {}",
            d.stream,
            d.delay_ms,
            match (d.caught_up_position, d.caught_up_timestamp_ms) {
                (Some(p), Some(t)) =>
                    format!("caught up at position {p} ({})", time::format_utc(t)),
                _ => "still catching up at the end".to_string(),
            }
        );
    }
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &manifest.faults {
        *kinds.entry(f.kind.name()).or_default() += 1;
    }
    if kinds.is_empty() {
        println!("faults: none");
    } else {
        let list: Vec<String> = FaultKind::ALL
            .iter()
            .chain([&FaultKind::Failover])
            .filter_map(|k| kinds.get(k.name()).map(|n| format!("{} {n}", k.name())))
            .collect();
        println!("faults: {}", list.join(", "));
    }
    if producer.is_some() {
        println!(
            "kafka: {} (schemas in {})",
            args.bootstrap_servers, args.registry_url
        );
    }
    if let Some(p) = &args.capture {
        println!("capture: {}", p.display());
    }
    if let Some(p) = &args.manifest {
        println!("manifest: {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Records per hand-over from the generator thread.
const GEN_BATCH: usize = 4096;

fn sim_events(per_topic: &[u64], names: &[String]) -> u64 {
    // Primary records, tombstones included: close enough for a progress line.
    names
        .iter()
        .zip(per_topic)
        .filter(|(n, _)| n.contains("primary.shop."))
        .map(|(_, c)| c)
        .sum()
}
