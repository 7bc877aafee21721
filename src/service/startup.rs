//! Start-up: the checks that the cluster and the registry answer, the alert topics and
//! schemas. The streams' topics are found by `discovery`, at once and while running.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cdc_verifier_kafka::admin::{Existing, TopicSpec, ensure_topics};
use cdc_verifier_kafka::batches::Batches;
use cdc_verifier_kafka::consume::KafkaSettings;
use cdc_verifier_kafka::end_offsets::EndOffsets;
use cdc_verifier_kafka::outbox::Outbox;
use cdc_verifier_kafka::produce::ProducerSettings;
use cdc_verifier_kafka::registry::RegistryClient;
use cdc_verifier_kafka::source::RegistrySource;

use super::alerts;
use super::health::Health;
use super::metrics::Metrics;
use super::state::Service;
use crate::clients;
use crate::config::Config;
use crate::verify::Verifier;

impl Service {
    /// Connects: the cluster and the registry answer, the alert topics and schemas exist.
    /// No topic is read yet: the first look at the cluster's topics (`discovery`) finds them.
    pub(super) fn start(
        cfg: &Config,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> anyhow::Result<Service> {
        let kafka = clients::kafka_settings(cfg);
        let consumer = kafka
            .strict_consumer(&cfg.kafka.group_id)
            .with_context(|| format!("kafka.bootstrap-servers {}", cfg.kafka.bootstrap_servers))?;

        // Start-up checks: the cluster answers, the registry answers.
        consumer
            .list_topics(Duration::from_secs(15))
            .with_context(|| {
                format!(
                    "cannot reach Kafka at {} (kafka.bootstrap-servers)",
                    cfg.kafka.bootstrap_servers
                )
            })?;
        let registry = clients::registry_client(cfg)?;
        health.starting("waiting for the schema registry");
        wait_for_registry(&registry, cfg, &health)?;
        health.starting("creating the alert topics and registering their schemas");
        ensure_alert_topics(&kafka, cfg)?;
        let instance = cfg.instance();
        let register = |topic: &str, key: &str, value: &str, what: &str| {
            let key_id = registry
                .register(&format!("{topic}-key"), key)
                .with_context(|| format!("cannot register the {what} key schema ({topic}-key)"))?;
            let value_id = registry
                .register(&format!("{topic}-value"), value)
                .with_context(|| format!("cannot register the {what} schema ({topic}-value)"))?;
            anyhow::Ok((key_id, value_id))
        };
        let (key_id, value_id) = register(
            &cfg.alerts.topic,
            alerts::episode::KEY_SCHEMA,
            alerts::episode::VALUE_SCHEMA,
            "episode",
        )?;
        let episode_codec = alerts::EpisodeCodec::new(
            value_id,
            key_id,
            instance.clone(),
            cfg.kafka.group_id.clone(),
        );
        let codec = if cfg.alerts.detail_topic.is_empty() {
            None
        } else {
            let (key_id, value_id) = register(
                &cfg.alerts.detail_topic,
                alerts::KEY_SCHEMA,
                alerts::VALUE_SCHEMA,
                "divergence",
            )?;
            Some(alerts::AlertCodec::new(value_id, key_id, instance))
        };
        let producer = Outbox::new(&ProducerSettings::alerts(&kafka))
            .context("cannot create the alert producer")?;
        let verifier = Verifier::new(cfg, cfg.engine(), &[]);
        let batches = Batches::start(&consumer, &[], cfg.kafka.batch_size)?;
        let end_offsets = EndOffsets::start(&consumer, Duration::from_secs(10))?;
        health.starting("looking for the streams' topics");
        Ok(Service {
            cfg: cfg.clone(),
            verifier,
            src: RegistrySource::new(registry),
            codec,
            episode_codec,
            drills: super::drill::Drills::start(cfg),
            webhook: (!cfg.alerts.alertmanager_url.is_empty())
                .then(|| {
                    super::webhook::Webhook::start(
                        &cfg.alerts.alertmanager_url,
                        Duration::from_secs(10),
                    )
                })
                .transpose()
                .context("alerts.alertmanager-url")?,
            producer,
            consumer,
            topic_names: Vec::new(),
            topic_cnames: Vec::new(),
            topic_routes: Vec::new(),
            topic_gone: Vec::new(),
            partitions: Vec::new(),
            part_index: Vec::new(),
            pending_tables: Default::default(),
            next_discovery: Instant::now(),
            discoveries: 0,
            resets_pending: Vec::new(),
            skipped: Default::default(),
            metrics,
            health,
            batches,
            retry_at: None,
            backoff: Duration::from_millis(cfg.registry.retry_initial_ms),
            dead_lettered_at_feed: Default::default(),
            verdict_counts: Default::default(),
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
            episodes: {
                let e = cdc_verifier_core::episodes::Episodes::new(
                    cdc_verifier_core::episodes::EpisodeConfig {
                        update_interval_ms: cfg.alerts.update_interval_s.saturating_mul(1000)
                            as i64,
                        ..Default::default()
                    },
                );
                // Sharing the tables, each instance judges a replica's lag on its own.
                match cfg.scale.shards {
                    0 => e,
                    _ => e.owned_by(&cfg.instance()),
                }
            },
            oldest_open: None,
            rule_notes_said: 0,
            origins_logged: (0, 0),
            changes_only_logged: Default::default(),
            skew_logged: 0,
            future_logged: 0,
            record_age: hdrhistogram::Histogram::new_with_bounds(1, 86_400_000, 2)
                .expect("valid bounds"),
            record_age_recent: hdrhistogram::Histogram::new_with_bounds(1, 86_400_000, 2)
                .expect("valid bounds"),
            shards: None,
            shard_handoffs: 0,
            exchange: None,
            exchange_key: String::new(),
            reach_taken: 0,
            reach_refused: 0,
            reach_primed: false,
            reach_said: (0, 0),
            end_offsets_ok: Instant::now(),
            end_offsets_failed: false,
            lag: super::lag::LagShare::new(),
            orphans: super::orphans::Orphans::new(Vec::new()),
        })
    }
}

/// Waits up to `registry.timeout-ms × 6` for the registry to answer, retrying with backoff.
fn wait_for_registry(
    registry: &RegistryClient,
    cfg: &Config,
    health: &Health,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(cfg.registry.timeout_ms * 6);
    let mut delay = Duration::from_millis(cfg.registry.retry_initial_ms);
    loop {
        health.beat();
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

/// Creates the alert, detail and dead-letter topics when they do not exist: the alert topic
/// compacted (each episode's records share a key; its latest is its state), the others not.
fn ensure_alert_topics(kafka: &KafkaSettings, cfg: &Config) -> anyhow::Result<()> {
    let a = &cfg.alerts;
    let compacted = vec![("cleanup.policy".to_string(), "compact,delete".to_string())];
    let specs: Vec<TopicSpec> = [
        (&a.topic, compacted),
        (&a.detail_topic, Vec::new()),
        (&a.dead_letter_topic, Vec::new()),
    ]
    .into_iter()
    .filter(|(t, _)| !t.is_empty())
    .map(|(t, configs)| TopicSpec {
        name: t.clone(),
        partitions: a.partitions,
        configs,
        replication: None,
    })
    .collect();
    ensure_topics(kafka, &specs, Existing::Any, Duration::from_secs(10))
        .context("cannot create the alert topics")
}
