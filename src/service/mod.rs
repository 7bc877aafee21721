//! `cdc-verifier run`: the live service.
//!
//! Two threads do the work: the consumer thread polls Kafka in batches; the verification loop
//! (this thread) feeds them to the engine, publishes verdicts, dead-letters undecodable
//! records, and commits offsets once every window fed by them was compared and its alerts were
//! acknowledged. A third serves metrics. SIGTERM drains and commits; a second signal exits.

mod alerts;
mod consumer;
mod metrics;

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cdc_verifier_core::verdict::{Divergence, Kind};
use cdc_verifier_core::{Ingested, Progress};
use cdc_verifier_kafka::consume::{cached_high_watermark, discover};
use cdc_verifier_kafka::registry::RegistryClient;
use cdc_verifier_kafka::source::RegistrySource;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::kafka_replay::settings;
use crate::verify::Verifier;
use consumer::{Batch, ConsumerThread};
use metrics::{Metrics, Snapshot, TableCounters};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (TOML); embedded defaults otherwise. Environment variables
    /// CDC_VERIFIER__<SECTION>__<KEY> override it, and flags override both.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Kafka bootstrap servers (kafka.bootstrap-servers).
    #[arg(long)]
    pub bootstrap_servers: Option<String>,
    /// Schema registry URL (registry.url).
    #[arg(long)]
    pub registry_url: Option<String>,
    /// Consumer group, under which offsets are committed (kafka.group-id).
    #[arg(long)]
    pub group_id: Option<String>,
    /// Prefix of the simulator's topics (`<prefix><stream>.shop.<table>`).
    #[arg(long)]
    pub topic_prefix: Option<String>,
    /// Any setting, as `section.key=value` (repeatable), e.g. `--set verify.cut-interval-ms=100`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Verify what the topics hold now, then stop: once every partition is read to its end
    /// and stays so for a moment, compare every window as for a bounded input, publish,
    /// commit and exit (for batch runs, catch-up checks and benchmarks).
    #[arg(long)]
    pub until_caught_up: bool,
}

/// Applies the configured registry credentials and timeout to a client.
pub fn configure_registry(client: RegistryClient, cfg: &Config) -> RegistryClient {
    let timeout = Duration::from_millis(cfg.registry.timeout_ms);
    let client = client.with_timeout(timeout);
    match (
        &cfg.registry.username,
        &cfg.registry.password,
        &cfg.registry.bearer_token,
    ) {
        (_, _, Some(token)) => client.with_bearer(token.expose()),
        (Some(user), password, None) => {
            client.with_basic(user, password.as_ref().map(|p| p.expose()))
        }
        _ => client,
    }
}

fn load(args: &Args) -> anyhow::Result<Config> {
    let mut overrides = Vec::new();
    for (flag, key) in [
        (&args.bootstrap_servers, "kafka.bootstrap-servers"),
        (&args.registry_url, "registry.url"),
        (&args.group_id, "kafka.group-id"),
    ] {
        if let Some(v) = flag {
            overrides.push((key.to_string(), v.clone()));
        }
    }
    for s in &args.set {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--set `{s}` is not KEY=VALUE"))?;
        overrides.push((k.to_string(), v.to_string()));
    }
    let cfg = Config::from_env(args.config.as_deref(), &overrides)?;
    Ok(match &args.topic_prefix {
        Some(p) => cfg.with_simulator_topics(p),
        None => cfg,
    })
}

fn init_logging(format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("CDC_VERIFIER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if format == "json" {
        b.json().try_init()
    } else {
        b.try_init()
    };
}

fn wall_ms() -> i64 {
    crate::report::now_ms()
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = load(&args)?;
    if args.print_config {
        print!("{}", toml::to_string_pretty(&cfg)?);
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(&cfg.service.log_format);

    // Signals: the first asks for a drain, the second exits at once.
    let signals = Arc::new(AtomicUsize::new(0));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let s = signals.clone();
        // SAFETY: the handler only touches an atomic and calls `_exit`, both async-signal-safe.
        unsafe {
            signal_hook::low_level::register(sig, move || {
                if s.fetch_add(1, Ordering::SeqCst) >= 1 {
                    signal_hook::low_level::exit(130);
                }
            })
        }
        .context("cannot install signal handlers")?;
    }

    let metrics = Arc::new(Metrics::default());
    metrics.alive.store(true, Ordering::Relaxed);
    let listen = cfg
        .service
        .listen
        .parse()
        .with_context(|| format!("service.listen `{}` is not host:port", cfg.service.listen))?;
    metrics::serve(listen, metrics.clone())?;
    tracing::info!(listen = %cfg.service.listen, "metrics on /metrics, health on /healthz and /readyz");

    let mut svc = Service::start(&cfg, metrics.clone())?;
    metrics.ready.store(true, Ordering::Relaxed);
    tracing::info!(
        topics = svc.topic_names.len(),
        partitions = svc.partitions.len(),
        replicas = cfg.replicas.len(),
        group = %cfg.kafka.group_id,
        "verifying {} against {}",
        cfg.primary.name,
        cfg.replicas.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    svc.until_caught_up = args.until_caught_up;
    svc.run_loop(&signals)?;
    metrics.alive.store(false, Ordering::Relaxed);
    Ok(ExitCode::SUCCESS)
}

/// Per-partition bookkeeping of the loop.
struct PartState {
    topic_index: u32,
    partition: u32,
    engine_topic: cdc_verifier_core::TopicId,
    /// The next offset to feed (one past the last fed).
    next: i64,
    /// Records held while the registry is unavailable, in order.
    held: VecDeque<(consumer::Rec, Vec<u8>)>,
    paused: bool,
    committed: i64,
}

struct Service {
    cfg: Config,
    verifier: Verifier,
    src: RegistrySource,
    codec: alerts::AlertCodec,
    producer: ThreadedProducer<DefaultProducerContext>,
    consumer: Arc<BaseConsumer>,
    topic_names: Vec<String>,
    topic_cnames: Vec<CString>,
    partitions: Vec<PartState>,
    /// Index of a topic's partition 0 in `partitions`; its partitions follow in order.
    topic_base: Vec<usize>,
    metrics: Arc<Metrics>,
    full_rx: std::sync::mpsc::Receiver<Batch>,
    empty_tx: std::sync::mpsc::SyncSender<Batch>,
    stop_consumer: Arc<AtomicBool>,
    consumer_thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
    retry_at: Option<Instant>,
    backoff: Duration,
    published: u64,
    dead_lettered: u64,
    commits: u64,
    max_record_ts: i64,
    /// When the newest record time last moved.
    max_record_seen: Instant,
    until_caught_up: bool,
    /// When the first record was fed, and when everything was first read (for `--until-caught-up`).
    first_record_at: Option<Instant>,
    caught_up_at: Option<(Instant, u64)>,
    last_checkpoint: String,
    throttled: bool,
    /// End offsets asked of the broker in the background (see [`EndOffsets`]).
    end_offsets: EndOffsets,
    /// Every partition was read to its end at the last answer.
    all_read: bool,
    skew_warned: u64,
    /// Replicas whose unverified starting state was logged.
    changes_only_logged: std::collections::BTreeSet<String>,
    skew_logged: i64,
    /// How long after their timestamp records were read (ms): since start, and since the
    /// last metrics snapshot.
    record_age: hdrhistogram::Histogram<u64>,
    record_age_recent: hdrhistogram::Histogram<u64>,
}

/// The clock reading a question was asked at, and the end offset of each partition (topic,
/// partition, offset).
type EndOffsetsAnswer = (i64, KafkaResult<Vec<(String, i32, i64)>>);

/// Asks the broker for the end offset of every assigned partition, on its own thread, one
/// question at a time. An answer says which partitions held nothing unread at that moment;
/// the clock reading sent with the question says how far that vouches for them. (The
/// client's cached high watermarks are not enough: they are only refreshed by fetches, which
/// stop while the local queue is full.)
struct EndOffsets {
    ask: std::sync::mpsc::SyncSender<i64>,
    answers: std::sync::mpsc::Receiver<EndOffsetsAnswer>,
    pending: bool,
    last_asked: Instant,
}

impl EndOffsets {
    fn start(consumer: Arc<BaseConsumer>, timeout: Duration) -> anyhow::Result<EndOffsets> {
        let (ask, questions) = std::sync::mpsc::sync_channel::<i64>(1);
        let (reply, answers) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("end-offsets".into())
            .spawn(move || {
                for as_of in questions {
                    let ends = end_offsets(&consumer, timeout);
                    if reply.send((as_of, ends)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(EndOffsets {
            ask,
            answers,
            pending: false,
            last_asked: Instant::now() - Duration::from_secs(60),
        })
    }
}

/// Runs a start-up call again while the cluster answers that it is still settling (topics
/// just created have no leader yet, a leader is moving, a request timed out), for up to a
/// minute with growing pauses; any other error, or one that lasts, is returned.
fn until_settled<T>(what: &str, mut call: impl FnMut() -> KafkaResult<T>) -> KafkaResult<T> {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pause = Duration::from_millis(100);
    loop {
        match call() {
            Err(e) if Instant::now() < deadline => {
                let settling = match &e {
                    KafkaError::MetadataFetch(c) | KafkaError::OffsetFetch(c) => Some(*c),
                    other => other.rdkafka_error_code(),
                }
                .is_some_and(|c| {
                    matches!(
                        c,
                        C::NotLeaderForPartition
                            | C::LeaderNotAvailable
                            | C::UnknownTopicOrPartition
                            | C::RequestTimedOut
                            | C::OperationTimedOut
                            | C::BrokerTransportFailure
                            | C::CoordinatorLoadInProgress
                            | C::NotCoordinator
                            | C::CoordinatorNotAvailable
                    )
                });
                if !settling {
                    return Err(e);
                }
                tracing::warn!(error = %e, "{what}: the cluster is settling; trying again in {} ms", pause.as_millis());
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            r => return r,
        }
    }
}

fn end_offsets(consumer: &BaseConsumer, timeout: Duration) -> KafkaResult<Vec<(String, i32, i64)>> {
    // The timestamp "end" (-1) asks for the latest offset (the last stable offset under
    // read_committed).
    let mut tpl = TopicPartitionList::new();
    for e in consumer.assignment()?.elements() {
        tpl.add_partition_offset(e.topic(), e.partition(), Offset::End)?;
    }
    let tpl = consumer.offsets_for_times(tpl, timeout)?;
    Ok(tpl
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) if e.error().is_ok() => {
                Some((e.topic().to_string(), e.partition(), o))
            }
            _ => None,
        })
        .collect())
}

impl Service {
    fn start(cfg: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Service> {
        let kafka = settings(cfg);
        let consumer = kafka
            .consumer(&cfg.kafka.group_id)
            .with_context(|| format!("kafka.bootstrap-servers {}", cfg.kafka.bootstrap_servers))?;

        // Start-up checks: the cluster answers, the streams' topics exist, the registry answers.
        let all = discover(&consumer, Duration::from_secs(15)).with_context(|| {
            format!(
                "cannot reach Kafka at {} (kafka.bootstrap-servers)",
                cfg.kafka.bootstrap_servers
            )
        })?;
        let topics: Vec<(String, u32)> = all
            .iter()
            .filter(|(t, _)| cfg.route(t).is_some())
            .cloned()
            .collect();
        for s in cfg.streams() {
            if !topics.iter().any(|(t, _)| t.starts_with(&s.topic_prefix)) {
                bail!(
                    "no topic of stream `{}` (prefix `{}`) exists at {}",
                    s.name,
                    s.topic_prefix,
                    cfg.kafka.bootstrap_servers
                );
            }
        }
        let mut by_table: HashMap<String, Vec<(String, u32)>> = HashMap::new();
        for (t, n) in &topics {
            let (stream, table) = cfg.route(t).expect("filtered");
            by_table
                .entry(table)
                .or_default()
                .push((cfg.streams().nth(stream).expect("routed").name.clone(), *n));
        }
        for (table, streams) in &by_table {
            let counts: Vec<u32> = streams.iter().map(|(_, n)| *n).collect();
            if counts.iter().any(|n| *n != counts[0]) {
                tracing::warn!(
                    table,
                    ?streams,
                    "topics of one table have different partition counts: verification stays exact, but instances cannot split work by partition"
                );
            }
            for s in cfg.streams() {
                if !streams.iter().any(|(n, _)| n == &s.name) {
                    tracing::warn!(table, stream = %s.name, "the table has no topic on this stream; its events there cannot be verified");
                }
            }
        }
        let registry = configure_registry(
            RegistryClient::new(&cfg.registry.url)
                .with_context(|| format!("registry.url {}", cfg.registry.url))?,
            cfg,
        );
        wait_for_registry(&registry, cfg)?;
        ensure_topics(&kafka, cfg)?;
        let key_id = registry
            .register(&format!("{}-key", cfg.alerts.topic), alerts::KEY_SCHEMA)
            .context("cannot register the divergence key schema")?;
        let value_id = registry
            .register(&format!("{}-value", cfg.alerts.topic), alerts::VALUE_SCHEMA)
            .context("cannot register the divergence schema")?;
        let codec = alerts::AlertCodec::new(value_id, key_id, cfg.instance());
        let mut pc = kafka.client_config();
        pc.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "60000");
        let producer: ThreadedProducer<DefaultProducerContext> =
            pc.create().context("cannot create the alert producer")?;

        // Assign every partition at its committed offset (the beginning when none).
        let mut tpl = TopicPartitionList::new();
        for (t, n) in &topics {
            for p in 0..*n {
                tpl.add_partition(t, p as i32);
            }
        }
        let committed = until_settled("reading committed offsets", || {
            consumer.committed_offsets(tpl.clone(), Duration::from_secs(15))
        })
        .context("cannot read committed offsets")?;
        let mut assign = TopicPartitionList::new();
        let verifier = Verifier::new(cfg, cfg.engine(), &topics);
        // (restored from the checkpoint below, once the committed offsets are known)
        let mut partitions = Vec::new();
        let mut topic_base = Vec::with_capacity(topics.len());
        for (ti, (t, n)) in topics.iter().enumerate() {
            topic_base.push(partitions.len());
            for p in 0..*n {
                let start = match committed.find_partition(t, p as i32).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => {
                        until_settled("reading the first offsets", || {
                            consumer.fetch_watermarks(t, p as i32, Duration::from_secs(10))
                        })
                        .with_context(|| format!("cannot read the first offset of {t} [{p}]"))?
                        .0
                    }
                };
                assign.add_partition_offset(t, p as i32, Offset::Offset(start))?;
                partitions.push(PartState {
                    topic_index: ti as u32,
                    partition: p,
                    engine_topic: verifier.route(ti).expect("routed"),
                    next: start,
                    held: VecDeque::new(),
                    paused: false,
                    committed: start,
                });
            }
        }
        // The episodes in progress at the last commit ride on the first partition's metadata.
        let mut verifier = verifier;
        if let Some((t, _)) = topics.first() {
            let meta = committed
                .find_partition(t, 0)
                .map(|e| e.metadata().to_string())
                .unwrap_or_default();
            if !meta.is_empty() {
                match serde_json::from_str::<cdc_verifier_core::Checkpoint>(&meta) {
                    Ok(c) => {
                        tracing::info!(?c, "continuing the episodes of the last commit");
                        verifier.engine.restore(&c);
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring unreadable checkpoint metadata"),
                }
            }
        }
        consumer
            .assign(&assign)
            .context("cannot assign partitions")?;
        let consumer = Arc::new(consumer);
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<Batch>(4);
        let (empty_tx, empty_rx) = std::sync::mpsc::sync_channel::<Batch>(8);
        let stop_consumer = Arc::new(AtomicBool::new(false));
        let thread = ConsumerThread {
            consumer: consumer.clone(),
            topics: topics
                .iter()
                .enumerate()
                .map(|(i, (t, _))| (t.clone(), i as u32))
                .collect(),
            batch_size: cfg.kafka.batch_size,
            full: full_tx,
            empty: empty_rx,
            stop: stop_consumer.clone(),
        };
        let consumer_thread = std::thread::Builder::new()
            .name("consumer".into())
            .spawn(move || thread.run())?;
        let end_offsets = EndOffsets::start(consumer.clone(), Duration::from_secs(10))?;
        Ok(Service {
            cfg: cfg.clone(),
            verifier,
            src: RegistrySource::new(registry),
            codec,
            producer,
            consumer,
            topic_cnames: topics
                .iter()
                .map(|(t, _)| CString::new(t.as_str()).expect("topic names have no NUL"))
                .collect(),
            topic_names: topics.into_iter().map(|(t, _)| t).collect(),
            partitions,
            topic_base,
            metrics,
            full_rx,
            empty_tx,
            stop_consumer,
            consumer_thread: Some(consumer_thread),
            retry_at: None,
            backoff: Duration::from_millis(cfg.registry.retry_initial_ms),
            published: 0,
            dead_lettered: 0,
            commits: 0,
            max_record_ts: i64::MIN,
            max_record_seen: Instant::now(),
            until_caught_up: false,
            first_record_at: None,
            caught_up_at: None,
            last_checkpoint: String::new(),
            throttled: false,
            end_offsets,
            all_read: false,
            skew_warned: 0,
            changes_only_logged: Default::default(),
            skew_logged: 0,
            record_age: hdrhistogram::Histogram::new_with_bounds(1, 86_400_000, 2)
                .expect("valid bounds"),
            record_age_recent: hdrhistogram::Histogram::new_with_bounds(1, 86_400_000, 2)
                .expect("valid bounds"),
        })
    }

    fn run_loop(&mut self, signals: &AtomicUsize) -> anyhow::Result<()> {
        let commit_every = Duration::from_secs(1);
        let mut last_commit = Instant::now();
        let mut last_summary = Instant::now();
        let summary_every = Duration::from_secs(self.cfg.service.summary_interval_s.max(1));
        let mut summary_events = 0u64;
        let mut caught_up_since: Option<Instant> = None;
        loop {
            if signals.load(Ordering::SeqCst) > 0 {
                tracing::info!("stopping: finishing in-flight windows, publishing and committing");
                return self.drain(false);
            }
            if self.until_caught_up {
                let settle = Duration::from_millis(
                    (self.cfg.verify.publish_skew_ms + self.cfg.verify.cut_interval_ms) as u64
                        + 500,
                );
                if self.all_read {
                    let since = *caught_up_since.get_or_insert_with(Instant::now);
                    if self.caught_up_at.is_none() && self.first_record_at.is_some() {
                        self.caught_up_at = Some((Instant::now(), self.verifier.records));
                    }
                    if since.elapsed() >= settle {
                        tracing::info!(
                            "every partition is read to its end: comparing the last windows and stopping"
                        );
                        return self.drain(true);
                    }
                } else {
                    caught_up_since = None;
                }
            }
            match consumer::recv(&self.full_rx, Duration::from_millis(50)) {
                Ok(Some(batch)) => {
                    self.process(&batch)?;
                    let _ = self.empty_tx.try_send(batch);
                }
                Ok(None) => {}
                Err(()) => {
                    // The consumer thread ended: report why.
                    let r = self.consumer_thread.take().map(|h| h.join());
                    match r {
                        Some(Ok(Err(e))) => return Err(e).context("the consumer thread failed"),
                        Some(Err(_)) => bail!("the consumer thread panicked"),
                        _ => bail!("the consumer thread stopped"),
                    }
                }
            }
            self.retry_held()?;
            self.throttle()?;
            self.ask_end_offsets();
            self.advance()?;
            if last_commit.elapsed() >= commit_every {
                last_commit = Instant::now();
                self.commit()?;
                self.publish_metrics();
                self.warn_skew();
            }
            if self.cfg.service.summary_interval_s > 0 && last_summary.elapsed() >= summary_every {
                let secs = last_summary.elapsed().as_secs_f64();
                last_summary = Instant::now();
                let events = self.verifier.records;
                eprintln!(
                    "{}",
                    self.summary_line((events - summary_events) as f64 / secs)
                );
                summary_events = events;
            }
        }
    }

    /// Records later than `verify.publish-skew-ms` allows may have missed their window's
    /// comparison: said once per second at most, with the figure to set instead.
    fn warn_skew(&mut self) {
        let e = &self.verifier.engine;
        let skew = e.publish_skew_ms();
        if skew > self.skew_logged + self.skew_logged / 4 && skew > self.cfg.verify.publish_skew_ms
        {
            tracing::info!(
                allowed_ms = skew,
                seen_ms = e.stats().arrival_behind_max_ms,
                "records arrive later than verify.publish-skew-ms: allowing {skew} ms for the producers' skew (comparisons wait that much longer)"
            );
            self.skew_logged = skew;
        } else if skew < self.skew_logged / 2 {
            self.skew_logged = skew;
        }
        for (replica, why) in &e.stats().changes_only {
            if self.changes_only_logged.insert(replica.clone()) {
                tracing::warn!(replica = %replica, "changes only: {why}");
            }
        }
        let late = e.late_records();
        if late > self.skew_warned {
            let seen = e.stats().arrival_behind_max_ms;
            tracing::warn!(
                records = late - self.skew_warned,
                seen_ms = seen,
                publish_skew_ms = self.cfg.verify.publish_skew_ms,
                "records came after their window was compared, up to {seen} ms after their partition was read through their time: they were not verified, and findings on their windows may be wrong; raise verify.publish-skew-ms above {seen}"
            );
            self.skew_warned = late;
        }
    }

    fn summary_line(&self, rate: f64) -> String {
        let e = &self.verifier.engine;
        let lag: Vec<String> = e
            .replica_positions()
            .iter()
            .map(|(r, _, behind)| format!("{r} -{behind}"))
            .collect();
        let mut kinds: std::collections::BTreeMap<&str, u64> = Default::default();
        for d in &self.verifier.verdicts {
            *kinds.entry(d.kind.as_str()).or_default() += 1;
        }
        let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!(
            "cdc-verifier: {} events ({:.0}/s), {} windows compared, {} open, findings: {}, replicas behind: {}{}",
            self.verifier.records,
            rate,
            e.stats().windows_compared,
            e.open_windows(),
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            },
            lag.join(", "),
            if self.partitions.iter().any(|p| p.paused) {
                ", registry unavailable: partitions paused"
            } else {
                ""
            }
        )
    }

    fn process(&mut self, batch: &Batch) -> anyhow::Result<()> {
        if self.first_record_at.is_none() && !batch.recs.is_empty() {
            self.first_record_at = Some(Instant::now());
        }
        let wall = wall_ms();
        // Since start: counted from the first time everything was read, so that the backlog
        // found at start does not count as delay.
        let steady = self.caught_up_at.is_some();
        for rec in &batch.recs {
            if rec.timestamp_ms > 0 {
                let age = (wall - rec.timestamp_ms).clamp(1, 86_400_000) as u64;
                if steady {
                    self.record_age.saturating_record(age);
                }
                self.record_age_recent.saturating_record(age);
            }
        }
        for rec in &batch.recs {
            let Some(pi) = self.part_of(rec.topic, rec.partition) else {
                continue;
            };
            if rec.offset < self.partitions[pi].next {
                continue; // already fed (a re-fetch after resume)
            }
            if rec.timestamp_ms > self.max_record_ts {
                self.max_record_ts = rec.timestamp_ms;
                self.max_record_seen = Instant::now();
            }
            let partition = rec.partition;
            if !self.partitions[pi].held.is_empty() {
                self.hold(pi, rec, batch);
                continue;
            }
            let (key, value) = (batch.bytes(rec.key), batch.bytes(rec.value));
            match self.verifier.feed(
                rec.topic as usize,
                rec.partition,
                rec.offset,
                rec.timestamp_ms,
                key,
                value,
                &mut self.src,
            ) {
                Ok(r) => {
                    self.partitions[pi].next = rec.offset + 1;
                    if let Some(Ingested::Poison(d)) = r {
                        self.dead_letter(rec, key, value, &d)?;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = %self.topic_names[rec.topic as usize], partition, "schema registry unavailable: pausing the partition until it answers");
                    self.hold(pi, rec, batch);
                }
            }
        }
        self.publish_new()
    }

    #[inline]
    fn part_of(&self, topic: u32, partition: u32) -> Option<usize> {
        let base = *self.topic_base.get(topic as usize)?;
        let next = self
            .topic_base
            .get(topic as usize + 1)
            .copied()
            .unwrap_or(self.partitions.len());
        let i = base + partition as usize;
        (i < next).then_some(i)
    }

    fn hold(&mut self, pi: usize, rec: &consumer::Rec, batch: &Batch) {
        let mut bytes = Vec::new();
        let mut r = *rec;
        r.key = batch.bytes(rec.key).map(|k| {
            bytes.extend_from_slice(k);
            (0, bytes.len() as u32)
        });
        r.value = batch.bytes(rec.value).map(|v| {
            let a = bytes.len() as u32;
            bytes.extend_from_slice(v);
            (a, bytes.len() as u32)
        });
        let p = &mut self.partitions[pi];
        p.held.push_back((r, bytes));
        p.next = rec.offset + 1;
        if !p.paused {
            p.paused = true;
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(
                &self.topic_names[p.topic_index as usize],
                p.partition as i32,
            );
            if let Err(e) = self.consumer.pause(&tpl) {
                tracing::warn!(error = %e, "cannot pause partition");
            }
            if self.retry_at.is_none() {
                self.retry_at = Some(Instant::now() + self.backoff);
            }
        }
    }

    /// Offers held records again once the retry time has come; resumes their partitions when
    /// all went through.
    fn retry_held(&mut self) -> anyhow::Result<()> {
        let Some(at) = self.retry_at else {
            return Ok(());
        };
        if Instant::now() < at {
            return Ok(());
        }
        let mut still_down = false;
        for pi in 0..self.partitions.len() {
            while let Some((rec, bytes)) = self.partitions[pi].held.front() {
                let (rec, bytes) = (*rec, bytes.clone());
                let key = rec.key.map(|(a, b)| &bytes[a as usize..b as usize]);
                let value = rec.value.map(|(a, b)| &bytes[a as usize..b as usize]);
                match self.verifier.feed(
                    rec.topic as usize,
                    rec.partition,
                    rec.offset,
                    rec.timestamp_ms,
                    key,
                    value,
                    &mut self.src,
                ) {
                    Ok(r) => {
                        self.partitions[pi].held.pop_front();
                        if let Some(Ingested::Poison(d)) = r {
                            self.dead_letter(&rec, key, value, &d)?;
                        }
                    }
                    Err(_) => {
                        still_down = true;
                        break;
                    }
                }
            }
            if still_down {
                break;
            }
            let p = &mut self.partitions[pi];
            if p.paused && p.held.is_empty() {
                p.paused = false;
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(
                    &self.topic_names[p.topic_index as usize],
                    p.partition as i32,
                    Offset::Offset(p.next),
                )?;
                // Resume where it was paused: the fetcher may have buffered past it.
                self.consumer
                    .seek_partitions(tpl.clone(), Duration::from_secs(5))
                    .ok();
                self.consumer
                    .resume(&tpl)
                    .context("cannot resume partition")?;
                tracing::info!(topic = %self.topic_names[p.topic_index as usize], partition = p.partition, "schema registry answers again: partition resumed");
            }
        }
        if still_down {
            // Exponential backoff with jitter, capped.
            let max = Duration::from_millis(self.cfg.registry.retry_max_ms);
            self.backoff = (self.backoff * 2).min(max);
            let jitter = Duration::from_millis(
                (wall_ms() as u64 * 7919) % (self.backoff.as_millis() as u64 / 4 + 1),
            );
            self.retry_at = Some(Instant::now() + self.backoff + jitter);
        } else {
            self.retry_at = None;
            self.backoff = Duration::from_millis(self.cfg.registry.retry_initial_ms);
        }
        self.publish_new()
    }

    /// Flow control: replica records read far ahead of the primary wait in memory; past a
    /// bound the replicas' partitions pause until the primary catches up.
    fn throttle(&mut self) -> anyhow::Result<()> {
        const HIGH: usize = 200_000;
        const LOW: usize = 50_000;
        let parked = self.verifier.engine.parked();
        let want = if self.throttled {
            parked > LOW
        } else {
            parked > HIGH
        };
        if want == self.throttled {
            return Ok(());
        }
        self.throttled = want;
        let primary = self.cfg.primary.topic_prefix.clone();
        let mut tpl = TopicPartitionList::new();
        for p in self.partitions.iter().filter(|p| {
            !p.paused && !self.topic_names[p.topic_index as usize].starts_with(&primary)
        }) {
            tpl.add_partition_offset(
                &self.topic_names[p.topic_index as usize],
                p.partition as i32,
                Offset::Offset(p.next),
            )?;
        }
        if want {
            tracing::debug!(parked, "replicas far ahead of the primary: pausing them");
            self.consumer
                .pause(&tpl)
                .context("cannot pause replica partitions")?;
        } else {
            self.consumer
                .seek_partitions(tpl.clone(), Duration::from_secs(5))
                .ok();
            self.consumer
                .resume(&tpl)
                .context("cannot resume replica partitions")?;
        }
        Ok(())
    }

    /// Asks for the end offsets every `kafka.end-offsets-interval-ms`, with the clock reading
    /// of now, and applies an answer when one has come.
    fn ask_end_offsets(&mut self) {
        let every = Duration::from_millis(self.cfg.kafka.end_offsets_interval_ms);
        if !self.end_offsets.pending && self.end_offsets.last_asked.elapsed() >= every {
            let as_of = self.verifier.engine.now_ms();
            if self.end_offsets.ask.try_send(as_of).is_ok() {
                self.end_offsets.pending = true;
                self.end_offsets.last_asked = Instant::now();
            }
        }
        match self.end_offsets.answers.try_recv() {
            Ok((as_of, Ok(ends))) => {
                self.end_offsets.pending = false;
                self.apply_end_offsets(as_of, &ends);
            }
            Ok((_, Err(e))) => {
                self.end_offsets.pending = false;
                tracing::warn!(error = %e, "cannot read the partitions' end offsets; quiet partitions hold their streams back until it answers");
            }
            Err(_) => {}
        }
    }

    /// A partition read to the end offset the broker gave is complete through the clock
    /// reading taken when it was asked; one with records still to read holds its stream back.
    fn apply_end_offsets(&mut self, as_of: i64, ends: &[(String, i32, i64)]) {
        let mut end: HashMap<(u32, u32), i64> = HashMap::with_capacity(ends.len());
        for (t, p, o) in ends {
            if let Some(i) = self.topic_names.iter().position(|n| n == t) {
                end.insert((i as u32, *p as u32), *o);
            }
        }
        let mut all = true;
        for p in &self.partitions {
            let read = p.held.is_empty()
                && end
                    .get(&(p.topic_index, p.partition))
                    .is_some_and(|e| p.next >= *e);
            all &= read;
            let progress = if read && as_of != i64::MIN {
                Progress::CaughtUpAt(as_of)
            } else {
                Progress::Reading
            };
            self.verifier
                .engine
                .set_progress(p.engine_topic, p.partition, progress);
        }
        self.all_read = all;
        if all && self.caught_up_at.is_none() && self.first_record_at.is_some() {
            self.caught_up_at = Some((Instant::now(), self.verifier.records));
        }
    }

    /// Asks for the end offsets and waits for the answer (at shutdown).
    fn read_end_offsets_now(&mut self) {
        if self.end_offsets.pending {
            // An answer to an older question is superseded by the one asked now.
            let _ = self
                .end_offsets
                .answers
                .recv_timeout(Duration::from_secs(10));
            self.end_offsets.pending = false;
        }
        let as_of = self.verifier.engine.now_ms();
        match end_offsets(&self.consumer, Duration::from_secs(10)) {
            Ok(ends) => self.apply_end_offsets(as_of, &ends),
            Err(e) => tracing::warn!(error = %e, "cannot read the partitions' end offsets"),
        }
    }

    fn advance(&mut self) -> anyhow::Result<()> {
        // The clock is the newest record time. When everything is read it goes on at wall
        // speed from there, so that windows close at low traffic — and verdicts depend on
        // the records, not on when they were read.
        if self.max_record_ts == i64::MIN {
            return Ok(());
        }
        let mut now = self.max_record_ts;
        if self.all_read {
            now += self.max_record_seen.elapsed().as_millis() as i64;
        }
        if let Err(e) = self.verifier.advance(now, &mut self.src) {
            tracing::warn!(error = %e, "schema registry unavailable while releasing parked records");
        }
        self.publish_new()
    }

    fn publish_new(&mut self) -> anyhow::Result<()> {
        let new: Vec<Divergence> = self.verifier.drain_new().to_vec();
        for d in &new {
            if d.kind == Kind::Recovered {
                tracing::info!(key = %d.key(), "{}", d.summary());
            } else {
                tracing::warn!(key = %d.key(), "{}", d.summary());
            }
            let (k, v) = self.codec.encode(d, wall_ms())?;
            self.send(
                BaseRecord::to(&self.cfg.alerts.topic)
                    .key(k.as_slice())
                    .payload(v.as_slice()),
            )?;
            self.published += 1;
        }
        Ok(())
    }

    fn send(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> anyhow::Result<()> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e).context("cannot enqueue an alert"),
            }
        }
    }

    fn dead_letter(
        &mut self,
        rec: &consumer::Rec,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        d: &Divergence,
    ) -> anyhow::Result<()> {
        let topic = &self.topic_names[rec.topic as usize];
        let error = d
            .poison
            .as_ref()
            .map(|p| p.error.as_str())
            .unwrap_or("undecodable");
        let mut headers = OwnedHeaders::new();
        for (k, v) in alerts::dead_letter_headers(topic, rec.partition, rec.offset, error) {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut r: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.cfg.alerts.dead_letter_topic)
            .headers(headers)
            .timestamp(rec.timestamp_ms);
        if let Some(k) = key {
            r = r.key(k);
        }
        if let Some(v) = value {
            r = r.payload(v);
        }
        self.send(r)?;
        self.dead_lettered += 1;
        Ok(())
    }

    /// Commits, per partition, the offsets below which every record is settled: its windows
    /// compared by every replica, its alerts acknowledged by Kafka.
    fn commit(&mut self) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        let mut changed = Vec::new();
        let checkpoint = serde_json::to_string(&self.verifier.engine.checkpoint())?;
        let checkpoint_changed = checkpoint != self.last_checkpoint;
        for (i, p) in self.partitions.iter().enumerate() {
            let mut upto = self
                .verifier
                .engine
                .pending_offset(p.engine_topic, p.partition)
                .unwrap_or(p.next)
                .min(p.next);
            if let Some((r, _)) = p.held.front() {
                upto = upto.min(r.offset);
            }
            let anchor = i == 0;
            if upto > p.committed || (anchor && checkpoint_changed) {
                let upto = upto.max(p.committed);
                let mut e = tpl.add_partition(
                    &self.topic_names[p.topic_index as usize],
                    p.partition as i32,
                );
                e.set_offset(Offset::Offset(upto))?;
                if anchor {
                    // Kafka keeps up to 4 KiB of metadata per partition by default.
                    e.set_metadata(if checkpoint.len() <= 4000 {
                        checkpoint.clone()
                    } else {
                        String::new()
                    });
                }
                changed.push((i, upto));
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        // Every alert and dead letter produced so far must be acknowledged first.
        if let Err(e) = self.producer.flush(Duration::from_secs(30)) {
            tracing::warn!(error = %e, "alerts not yet acknowledged; offsets not committed");
            return Ok(());
        }
        self.consumer
            .commit(&tpl, rdkafka::consumer::CommitMode::Sync)
            .context("cannot commit offsets")?;
        for (i, upto) in changed {
            self.partitions[i].committed = upto;
        }
        self.last_checkpoint = checkpoint;
        self.commits += 1;
        Ok(())
    }

    /// Stops: verifies the batches already fetched, compares what can be compared (all
    /// windows when `bounded`), publishes, commits.
    fn drain(&mut self, bounded: bool) -> anyhow::Result<()> {
        self.stop_consumer.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(self.cfg.service.shutdown_timeout_s);
        // Batches already fetched are verified; nothing more is read.
        while let Ok(Some(batch)) = consumer::recv(&self.full_rx, Duration::from_millis(100)) {
            self.process(&batch)?;
            if Instant::now() > deadline {
                break;
            }
        }
        if let Some(h) = self.consumer_thread.take() {
            let _ = h.join();
        }
        self.read_end_offsets_now();
        self.advance()?;
        if bounded {
            self.verifier
                .finish(&mut self.src)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            self.publish_new()?;
        }
        self.commit()?;
        self.producer.flush(Duration::from_secs(10)).ok();
        self.publish_metrics();
        if let (Some(first), Some((at, records))) = (self.first_record_at, self.caught_up_at) {
            let secs = at.duration_since(first).as_secs_f64().max(1e-6);
            tracing::info!(
                records,
                seconds = secs,
                rate = records as f64 / secs,
                "caught up: {records} records in {secs:.3} s ({:.0} records/s)",
                records as f64 / secs
            );
        }
        let e = &self.verifier.engine;
        tracing::info!(
            events = self.verifier.records,
            alerts = self.published,
            dead_lettered = self.dead_lettered,
            late = e.late_records(),
            arrival_behind_max_ms = e.stats().arrival_behind_max_ms,
            record_age_p50_ms = self.record_age.value_at_quantile(0.5),
            record_age_p99_ms = self.record_age.value_at_quantile(0.99),
            peak_rss_mib = peak_rss_mib(),
            "stopped cleanly"
        );
        Ok(())
    }

    fn publish_metrics(&mut self) {
        let e = &self.verifier.engine;
        let mut s = Snapshot::default();
        for (stream, table, _topic, st) in e.topic_stats() {
            let c = s
                .tables
                .entry((stream.to_string(), table.to_string()))
                .or_insert_with(TableCounters::default);
            c.events += st.events;
            c.bytes += st.bytes;
            c.duplicates += st.duplicates;
            c.decode_errors += st.poison;
            c.snapshot_rows += st.snapshot;
            c.snapshot_ignored += st.snapshot_late;
        }
        s.windows_compared = e.stats().windows_compared;
        s.withdrawn = e.stats().withdrawn;
        for r in e.stream_names().skip(1) {
            let verified = e.started(r) && !e.stats().changes_only.contains_key(r);
            s.state_verified.insert(r.to_string(), verified);
        }
        for d in &self.verifier.verdicts {
            *s.divergences
                .entry((d.kind.to_string(), d.replica.clone()))
                .or_default() += 1;
        }
        for (r, _, behind) in e.replica_positions() {
            let secs = e.replica_lag_ms(&r) as f64 / 1000.0;
            s.replica_lag.insert(r, (behind, secs));
        }
        let names: Vec<String> = e.stream_names().map(str::to_string).collect();
        for p in &self.partitions {
            let topic = &self.topic_names[p.topic_index as usize];
            let stream = self
                .cfg
                .route(topic)
                .map(|(i, _)| names[i].clone())
                .unwrap_or_default();
            let high = cached_high_watermark(
                &self.consumer,
                &self.topic_cnames[p.topic_index as usize],
                p.partition,
            )
            .unwrap_or(p.next);
            *s.consumer_lag.entry(stream).or_default() += (high - p.next).max(0);
        }
        let st = &self.src.stats;
        s.registry_hits = st.hits;
        s.registry_misses = st.misses;
        s.registry_errors = st.errors;
        s.registry_latency_buckets = st.buckets;
        s.registry_latency_count = st.fetches;
        s.registry_latency_sum = st.fetch_time.as_secs_f64();
        s.open_windows = e.open_windows() as u64;
        s.parked_records = e.parked() as u64;
        s.paused_partitions = self.partitions.iter().filter(|p| p.paused).count() as u64;
        s.arrival_behind_max_ms = e.stats().arrival_behind_max_ms;
        s.publish_skew_ms = e.publish_skew_ms();
        s.record_age_ms =
            [0.5, 0.9, 0.99, 1.0].map(|q| (q, self.record_age_recent.value_at_quantile(q)));
        s.late_records = e.late_records();
        s.dead_lettered = self.dead_lettered;
        s.alerts_published = self.published;
        s.commits = self.commits;
        self.metrics.publish(s);
        self.record_age_recent.reset();
    }
}

/// The process's peak resident memory, from /proc.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Waits up to `registry.timeout-ms × 6` for the registry to answer, retrying with backoff.
fn wait_for_registry(registry: &RegistryClient, cfg: &Config) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(cfg.registry.timeout_ms * 6);
    let mut delay = Duration::from_millis(cfg.registry.retry_initial_ms);
    loop {
        match registry.subjects() {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "schema registry not answering yet, retrying in {delay:?}");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(cfg.registry.retry_max_ms));
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "the schema registry at {} does not answer (registry.url)",
                        cfg.registry.url
                    )
                });
            }
        }
    }
}

/// Creates the alert and dead-letter topics when they do not exist.
fn ensure_topics(
    kafka: &cdc_verifier_kafka::consume::KafkaSettings,
    cfg: &Config,
) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = kafka
        .client_config()
        .create()
        .context("cannot create a Kafka admin client")?;
    let md = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .context("cannot read cluster metadata")?;
    let brokers = md.brokers().len().max(1) as i32;
    let wanted = [&cfg.alerts.topic, &cfg.alerts.dead_letter_topic];
    let missing: Vec<NewTopic> = wanted
        .iter()
        .filter(|t| {
            !md.topics()
                .iter()
                .any(|m| m.name() == t.as_str() && !m.partitions().is_empty())
        })
        .map(|t| {
            NewTopic::new(
                t,
                cfg.alerts.partitions,
                TopicReplication::Fixed(brokers.min(3)),
            )
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let results = crate::service::block_on(admin.create_topics(
        &missing,
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .context("cannot create the alert topics")?;
    for r in results {
        match r {
            Ok(t) => tracing::info!(topic = %t, "created topic"),
            Err((t, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %t, "topic exists")
            }
            Err((t, e)) => bail!("cannot create topic {t}: {e}"),
        }
    }
    Ok(())
}

/// Runs an admin future to completion on a throwaway runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

#[cfg(test)]
mod tests {
    use super::until_settled;
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    #[test]
    fn start_up_calls_wait_for_a_settling_cluster_and_give_up_on_anything_else() {
        let mut calls = 0;
        let r = until_settled("test", || {
            calls += 1;
            if calls < 3 {
                Err(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::NotLeaderForPartition,
                ))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 3);

        let mut calls = 0;
        let r: Result<(), _> = until_settled("test", || {
            calls += 1;
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::TopicAuthorizationFailed,
            ))
        });
        assert!(r.is_err());
        assert_eq!(
            calls, 1,
            "an error that is not transient is returned at once"
        );
    }
}
