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
use super::orphans::{Orphan, Orphans};
use super::state::{Service, wall_ms};
use crate::clients;

/// How long reading the alert topic back may take before the episodes on it are given up.
const READ_BACK_TIMEOUT: Duration = Duration::from_secs(30);

impl Service {
    /// Continues the episodes this verifier left open on the alert topic: those of the tables
    /// verified here; a replica's lag where it is told (the one instance, or the holder of
    /// shard 0 while sharing: see `lag`); other replica-wide ones when one instance verifies
    /// everything (while sharing, such an episode is its instance's own, continued by an
    /// instance of the same name). After a restart or a hand-over each goes on under its key,
    /// and its recovery closes it, instead of a second episode opening beside one left open
    /// for good.
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
        let here = Here {
            tables: &tables,
            instance: &instance,
            sharing,
            // Who tells a replica's lag here: the one instance, or the holder of shard 0.
            tells_lag: !sharing || self.tells_lag(),
        };
        let fates: Vec<(Fate, &ReadBack, &str)> = latest
            .values()
            .filter(|b| b.phase != Phase::Close)
            .filter_map(|b| Some((here.fate(b), b, b.resume.as_deref()?)))
            .collect();
        let mut resumed = Vec::new();
        let mut superseded = Vec::new();
        let mut others = Vec::new();
        for (fate, b, saved) in fates {
            match fate {
                Fate::Leave => {}
                Fate::Close => superseded.extend(close_left_open(&b.episode, saved)),
                Fate::Watch => others.push(Orphan {
                    episode: b.episode.clone(),
                    instance: b.instance.clone(),
                    saved: saved.to_string(),
                }),
                Fate::Continue => match self.episodes.resume(saved) {
                    Ok(Some(key)) => resumed.push(key.to_string()),
                    // A second lag episode of one replica: one goes on.
                    Ok(None) if b.kind == "ReplicaLag" => {
                        superseded.extend(close_left_open(&b.episode, saved))
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(
                        episode = %b.episode,
                        error = %e,
                        "cannot continue an episode left open on the alert topic"
                    ),
                },
            }
        }
        self.orphans = Orphans::new(others);
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

/// What becomes of an episode left open on the alert topic, read back by an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Continued here.
    Continue,
    /// Closed here: a replica's lag keyed by the instance that told it (as earlier versions
    /// did while sharing); the group tells one now.
    Close,
    /// Another instance's own: closed here should that instance be gone (`orphans`).
    Watch,
    /// Another instance's business.
    Leave,
}

/// What an instance verifies, for [`Here::fate`].
struct Here<'a> {
    tables: &'a BTreeSet<&'a str>,
    instance: &'a str,
    sharing: bool,
    tells_lag: bool,
}

impl Here<'_> {
    fn fate(&self, b: &ReadBack) -> Fate {
        let Some(table) = &b.table else {
            return match (b.kind == "ReplicaLag", self.sharing) {
                (true, _) if !self.tells_lag => Fate::Leave,
                (true, true) if b.episode.contains('@') => Fate::Close,
                (true, _) => Fate::Continue,
                (false, false) => Fate::Continue,
                (false, true) if b.instance == self.instance => Fate::Continue,
                (false, true) => Fate::Watch,
            };
        };
        match self.tables.contains(table.as_str()) {
            true => Fate::Continue,
            false => Fate::Leave,
        }
    }
}

/// The event closing a lag episode no one continues (see [`Episodes::close_saved`]).
fn close_left_open(episode: &str, saved: &str) -> Option<EpisodeEvent> {
    Episodes::close_saved(saved, wall_ms()).unwrap_or_else(|e| {
        tracing::warn!(
            episode,
            error = %e,
            "cannot close a lag episode left open on the alert topic"
        );
        None
    })
}

fn say(e: &EpisodeEvent) {
    let summary = e.episode.summary();
    match e.phase {
        Phase::Open => tracing::warn!(episode = %e.key, "opened: {summary}"),
        Phase::Update => tracing::warn!(episode = %e.key, "ongoing: {summary}"),
        Phase::Close => tracing::info!(episode = %e.key, "closed: {summary}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn back(episode: &str, table: Option<&str>, kind: &str, instance: &str) -> ReadBack {
        ReadBack {
            verifier: "v".into(),
            episode: episode.into(),
            phase: Phase::Update,
            table: table.map(String::from),
            kind: kind.into(),
            instance: instance.into(),
            resume: Some("{}".into()),
        }
    }

    #[test]
    fn each_episode_left_open_is_continued_closed_watched_or_left_where_it_belongs() {
        let tables = BTreeSet::from(["orders"]);
        let at = |sharing, tells_lag| Here {
            tables: &tables,
            instance: "i1",
            sharing,
            tells_lag,
        };
        let orders = back(
            "r/orders/DataMismatch/w1",
            Some("orders"),
            "DataMismatch",
            "i2",
        );
        let items = back(
            "r/items/DataMismatch/w1",
            Some("items"),
            "DataMismatch",
            "i1",
        );
        let lag = back("r/*/ReplicaLag/w1", None, "ReplicaLag", "i2");
        let old_lag = back("r/*/ReplicaLag/w1@i2", None, "ReplicaLag", "i2");
        let mine = back("r/*/Unverified/w1@i1", None, "Unverified", "i1");
        let theirs = back("r/*/Unverified/w1@i2", None, "Unverified", "i2");
        let fates = |h: &Here| {
            [&orders, &items, &lag, &old_lag, &mine, &theirs]
                .map(|b| h.fate(b))
                .to_vec()
        };
        use Fate::*;
        // One instance verifying everything continues all it verifies.
        assert_eq!(
            fates(&at(false, true)),
            [Continue, Leave, Continue, Continue, Continue, Continue]
        );
        // Sharing, the holder of shard 0: the group's lag, and closes lag keyed by instance.
        assert_eq!(
            fates(&at(true, true)),
            [Continue, Leave, Continue, Close, Continue, Watch]
        );
        // Sharing, another holder: no lag at all.
        assert_eq!(
            fates(&at(true, false)),
            [Continue, Leave, Leave, Leave, Continue, Watch]
        );
    }
}
