//! The log's account of verdicts: one line when an episode opens, at most one per
//! `alerts.update-interval-s` while it grows, one when it closes — not one per key range and
//! window (those go to the alert topic, and to the log at debug level).

use cdc_verifier_core::episodes::{EpisodeEvent, Phase};
use cdc_verifier_core::verdict::Divergence;

use super::state::Service;

impl Service {
    /// Groups a published verdict into its episode and says what changed.
    pub(super) fn log_episode(&mut self, d: &Divergence) {
        tracing::debug!(key = %d.key(), "{}", d.summary());
        let mut events = Vec::new();
        self.episodes.observe(d, &mut events);
        say(&events);
    }

    /// Updates of the episodes that grew, and closes of those quiet for good, as of the
    /// verifier's clock.
    pub(super) fn tick_episodes(&mut self) {
        let mut events = Vec::new();
        self.episodes
            .tick(self.verifier.engine.now_ms(), &mut events);
        say(&events);
    }
}

impl Service {
    /// Where the open episodes stand, said once more when the verifier stops.
    pub(super) fn flush_episodes(&mut self) {
        let mut events = Vec::new();
        self.episodes
            .flush(self.verifier.engine.now_ms(), &mut events);
        say(&events);
    }
}

fn say(events: &[EpisodeEvent]) {
    for e in events {
        let summary = e.episode.summary();
        match e.phase {
            Phase::Open => tracing::warn!(episode = %e.key, "opened: {summary}"),
            Phase::Update => tracing::warn!(episode = %e.key, "ongoing: {summary}"),
            Phase::Close => tracing::info!(episode = %e.key, "closed: {summary}"),
        }
    }
}
