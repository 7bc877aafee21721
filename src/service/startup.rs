//! Start-up: the checks that the cluster, the streams' topics and the registry answer, the
//! alert topics and schemas, and every partition assigned at its committed offset with the
//! episodes of the last commit restored.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cdc_verifier_kafka::admin::{Existing, TopicSpec, ensure_topics};
use cdc_verifier_kafka::batches::Batches;
use cdc_verifier_kafka::consume::{KafkaSettings, until_settled};
use cdc_verifier_kafka::end_offsets::EndOffsets;
use cdc_verifier_kafka::outbox::Outbox;
use cdc_verifier_kafka::produce::ProducerSettings;
use cdc_verifier_kafka::registry::RegistryClient;
use cdc_verifier_kafka::source::RegistrySource;

use super::alerts;
use super::metrics::Metrics;
use super::state::{PartState, Service};
use crate::clients;
use crate::config::Config;
use crate::verify::Verifier;

impl Service {
    pub(super) fn start(cfg: &Config, metrics: Arc<Metrics>) -> anyhow::Result<Service> {
        let kafka = clients::kafka_settings(cfg);
        let consumer = kafka
            .consumer(&cfg.kafka.group_id)
            .with_context(|| format!("kafka.bootstrap-servers {}", cfg.kafka.bootstrap_servers))?;

        // Start-up checks: the cluster answers, the streams' topics exist, the registry answers.
        let all = consumer
            .discover(Duration::from_secs(15))
            .with_context(|| {
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
        let registry = clients::registry_client(cfg)?;
        wait_for_registry(&registry, cfg)?;
        ensure_alert_topics(&kafka, cfg)?;
        let key_id = registry
            .register(&format!("{}-key", cfg.alerts.topic), alerts::KEY_SCHEMA)
            .context("cannot register the divergence key schema")?;
        let value_id = registry
            .register(&format!("{}-value", cfg.alerts.topic), alerts::VALUE_SCHEMA)
            .context("cannot register the divergence schema")?;
        let codec = alerts::AlertCodec::new(value_id, key_id, cfg.instance());
        let producer = Outbox::new(&ProducerSettings::alerts(&kafka))
            .context("cannot create the alert producer")?;

        // Assign every partition at its committed offset (the beginning when none).
        let all_partitions: Vec<(&str, u32)> = topics
            .iter()
            .flat_map(|(t, n)| (0..*n).map(move |p| (t.as_str(), p)))
            .collect();
        let committed = until_settled("reading committed offsets", || {
            consumer.committed(&all_partitions, Duration::from_secs(15))
        })
        .context("cannot read committed offsets")?;
        let mut assign = Vec::with_capacity(all_partitions.len());
        let verifier = Verifier::new(cfg, cfg.engine(), &topics);
        // (restored from the checkpoint below, once the committed offsets are known)
        let mut partitions = Vec::new();
        let mut topic_base = Vec::with_capacity(topics.len());
        for (ti, (t, n)) in topics.iter().enumerate() {
            topic_base.push(partitions.len());
            for p in 0..*n {
                let start = match committed[partitions.len()].offset {
                    Some(o) => o,
                    None => {
                        until_settled("reading the first offsets", || {
                            consumer.watermarks(t, p, Duration::from_secs(10))
                        })
                        .with_context(|| format!("cannot read the first offset of {t} [{p}]"))?
                        .0
                    }
                };
                assign.push((t.as_str(), p, start));
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
        if let Some(first) = committed.first() {
            let meta = &first.metadata;
            if !meta.is_empty() {
                match serde_json::from_str::<cdc_verifier_core::Checkpoint>(meta) {
                    Ok(c) => {
                        tracing::info!(?c, "continuing the episodes of the last commit");
                        verifier.engine.restore(&c);
                    }
                    Err(e) => tracing::warn!(error = %e, "ignoring unreadable checkpoint metadata"),
                }
            }
        }
        consumer
            .assign(assign)
            .context("cannot assign partitions")?;
        let topic_names: Vec<String> = topics.into_iter().map(|(t, _)| t).collect();
        let batches = Batches::start(&consumer, &topic_names, cfg.kafka.batch_size)?;
        let end_offsets = EndOffsets::start(&consumer, Duration::from_secs(10))?;
        Ok(Service {
            cfg: cfg.clone(),
            verifier,
            src: RegistrySource::new(registry),
            codec,
            producer,
            consumer,
            topic_cnames: topic_names
                .iter()
                .map(|t| CString::new(t.as_str()).expect("topic names have no NUL"))
                .collect(),
            topic_names,
            partitions,
            topic_base,
            metrics,
            batches,
            retry_at: None,
            backoff: Duration::from_millis(cfg.registry.retry_initial_ms),
            dead_lettered_at_feed: Default::default(),
            frontiers: Default::default(),
            commit_failing: None,
            commit_retry_at: None,
            commit_backoff: Duration::from_millis(500),
            commit_failures: 0,
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
            origins_logged: (0, 0),
            changes_only_logged: Default::default(),
            skew_logged: 0,
            future_logged: 0,
            record_age: hdrhistogram::Histogram::new_with_bounds(1, 86_400_000, 2)
                .expect("valid bounds"),
            record_age_recent: hdrhistogram::Histogram::new_with_bounds(1, 86_400_000, 2)
                .expect("valid bounds"),
        })
    }
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
fn ensure_alert_topics(kafka: &KafkaSettings, cfg: &Config) -> anyhow::Result<()> {
    let specs: Vec<TopicSpec> = [&cfg.alerts.topic, &cfg.alerts.dead_letter_topic]
        .into_iter()
        .map(|t| TopicSpec {
            name: t.clone(),
            partitions: cfg.alerts.partitions,
            configs: Vec::new(),
            replication: None,
        })
        .collect();
    ensure_topics(kafka, &specs, Existing::Any, Duration::from_secs(10))
        .context("cannot create the alert topics")
}
