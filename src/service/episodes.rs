//! Episodes: verdicts grouped by (replica, table, kind), published on the alert topic and told
//! in the log — one record and line when an episode opens, at most one per
//! `alerts.update-interval-s` while it grows, one when it closes; not one per key range and
//! window (those go to the detail topic when set, and to the log at debug level).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cdc_verifier_core::episodes::{EpisodeEvent, Episodes, Phase};
use cdc_verifier_core::verdict::Divergence;
use cdc_verifier_kafka::outbox::{Outgoing, Output};

use super::alerts::episode::ReadBack;
use super::state::{Service, wall_ms};
use crate::clients;

/// How long reading the alert topic back may take before the episodes on it are given up.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(30);

impl Service {
    /// Continues the episodes this verifier left open on the alert topic: those of the tables
    /// verified here; a replica's lag where it is told (the one instance, or the holder of
    /// shard 0 while sharing: see `lag`); other replica-wide ones when one instance verifies
    /// everything (while sharing, such an episode is its instance's own, continued by an
    /// instance of the same name). After a restart or a hand-over each goes on under its key, and its
    /// recovery closes it, instead of a second episode opening beside one left open for good.
    pub(super) fn resume_episodes(&mut self) {
        let topic = self.cfg.alerts.topic.clone();
        let started = Instant::now();
        let records = match clients::kafka_settings(&self.cfg).read_topic(&topic, READ_BACK_TIMEOUT)
        {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(
                    topic,
                    error = %e,
                    "cannot read the alert topic back: the episodes left open on it are not \
                     continued here, and open again under new keys if their faults go on"
                );
                return;
            }
        };
        let mut latest: BTreeMap<String, ReadBack> = BTreeMap::new();
        for r in &records {
            let (Some(k), Some(v)) = (&r.key, &r.value) else {
                continue;
            };
            match self.episode_codec.read_back(k, v) {
                Some(b) if b.verifier == self.cfg.kafka.group_id => {
                    latest.insert(b.episode.clone(), b);
                }
                _ => {}
            }
        }
        let tables: BTreeSet<&str> = self.topic_routes.iter().map(|(_, t)| t.as_str()).collect();
        let instance = self.cfg.instance();
        let sharing = self.shards.is_some();
        // Who tells a replica's lag here: the one instance, or the holder of shard 0.
        let tells_lag = !sharing || self.tells_lag();
        let mut resumed = Vec::new();
        let mut superseded = Vec::new();
        for b in latest.values().filter(|b| b.phase != Phase::Close) {
            let lag = b.table.is_none() && b.kind == "ReplicaLag";
            let here = match &b.table {
                Some(t) => tables.contains(t.as_str()),
                None if lag => tells_lag,
                None => !sharing || b.instance == instance,
            };
            let Some(saved) = b.resume.as_deref().filter(|_| here) else {
                continue;
            };
            // A replica's lag keyed by the instance that told it (as earlier versions did
            // while sharing), or a second one of one replica: the group tells one now.
            let extra = lag && sharing && b.episode.contains('@');
            let resumed_as = match extra {
                true => Ok(None),
                false => self.episodes.resume(saved),
            };
            match resumed_as {
                Ok(Some(key)) => resumed.push(key.to_string()),
                Ok(None) if lag => match Episodes::close_saved(saved, wall_ms()) {
                    Ok(Some(e)) => superseded.push(e),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(episode = %b.episode, error = %e, "cannot close a lag episode left open on the alert topic")
                    }
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    episode = %b.episode,
                    error = %e,
                    "cannot continue an episode left open on the alert topic"
                ),
            }
        }
        if !superseded.is_empty() {
            let keys: Vec<&str> = superseded.iter().map(|e| e.key.as_str()).collect();
            tracing::info!(
                "closing {} lag episodes left open beside the one continued, or keyed by an instance: {}",
                keys.len(),
                keys.join(" ")
            );
            if let Err(e) = self.publish_episodes(&superseded) {
                tracing::warn!(error = %e, "cannot close the lag episodes left open");
            }
        }
        const NAMED: usize = 20;
        let more = match resumed.len().saturating_sub(NAMED) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        tracing::info!(
            topic,
            records = records.len(),
            ms = started.elapsed().as_millis() as u64,
            "continuing {} episodes left open: {}{more}",
            resumed.len(),
            resumed[..resumed.len().min(NAMED)].join(" ")
        );
    }

    /// Groups a published verdict into its episode, and publishes what changed.
    pub(super) fn episode_of(&mut self, d: &Divergence) -> anyhow::Result<()> {
        tracing::debug!(key = %d.key(), "{}", d.summary());
        if self.share_lag(d)? {
            return Ok(());
        }
        let mut events = Vec::new();
        self.episodes.observe(d, &mut events);
        self.publish_episodes(&events)?;
        self.drill(d);
        Ok(())
    }

    /// Updates of the episodes that grew, and closes of those quiet for good, as of the
    /// verifier's clock.
    pub(super) fn tick_episodes(&mut self) -> anyhow::Result<()> {
        self.drills_done()?;
        let mut events = Vec::new();
        self.episodes
            .tick(self.verifier.engine.now_ms(), &mut events);
        self.publish_episodes(&events)
    }

    /// Where the open episodes stand, published once more when the verifier stops.
    pub(super) fn flush_episodes(&mut self) -> anyhow::Result<()> {
        let mut events = Vec::new();
        self.episodes
            .flush(self.verifier.engine.now_ms(), &mut events);
        self.publish_episodes(&events)
    }

    pub(super) fn publish_episodes(&mut self, events: &[EpisodeEvent]) -> anyhow::Result<()> {
        if let Some(w) = &self.webhook {
            let generator = format!("http://{}/metrics", self.cfg.service.listen);
            w.push(
                events,
                &self.cfg.kafka.group_id,
                &self.cfg.instance(),
                &generator,
            );
        }
        for e in events {
            say(e);
            let saved = self.episodes.saved(&e.key);
            let (k, v) = self.episode_codec.encode(e, wall_ms(), saved.as_deref())?;
            self.producer.push(Outgoing {
                output: Output::Alert,
                topic: self.cfg.alerts.topic.clone(),
                timestamp_ms: None,
                key: Some(k),
                value: Some(v),
                headers: Vec::new(),
            });
        }
        Ok(())
    }
}

fn say(e: &EpisodeEvent) {
    let summary = e.episode.summary();
    match e.phase {
        Phase::Open => tracing::warn!(episode = %e.key, "opened: {summary}"),
        Phase::Update => tracing::warn!(episode = %e.key, "ongoing: {summary}"),
        Phase::Close => tracing::info!(episode = %e.key, "closed: {summary}"),
    }
}
