//! Episodes: verdicts grouped by (replica, table, kind), published on the alert topic and told
//! in the log — one record and line when an episode opens, at most one per
//! `alerts.update-interval-s` while it grows, one when it closes; not one per key range and
//! window (those go to the detail topic when set, and to the log at debug level).

use cdc_verifier_core::episodes::{EpisodeEvent, Phase};
use cdc_verifier_core::verdict::Divergence;
use cdc_verifier_kafka::outbox::{Outgoing, Output};

use super::state::{Service, wall_ms};

impl Service {
    /// Groups a published verdict into its episode, and publishes what changed.
    pub(super) fn episode_of(&mut self, d: &Divergence) -> anyhow::Result<()> {
        tracing::debug!(key = %d.key(), "{}", d.summary());
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
            w.push(events, &self.cfg.instance(), &generator);
        }
        for e in events {
            say(e);
            let (k, v) = self.episode_codec.encode(e, wall_ms())?;
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
