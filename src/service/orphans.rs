//! Episodes of instances gone from the group. While instances share the tables, what one
//! could not verify of a whole replica (an `Unverified` episode keyed `…@<instance>`) is its
//! own: it closes it after quiet minutes. An instance that never comes back under its name, or
//! stands by without shards, closes nothing, and its episode would stay open on the alert
//! topic for good. The holder of shard 0 closes such an episode once its instance has not been
//! heard on the reach topic for [`GONE_MS`] (every instance verifying says its reach there
//! every second).

use std::collections::BTreeMap;

use cdc_verifier_core::episodes::{EpisodeEvent, Episodes};

use super::lag::KEY as LAG_KEY;
use super::state::{Service, wall_ms};

/// How long an instance unheard on the reach topic counts as gone.
pub(super) const GONE_MS: i64 = 60_000;

/// An open episode of another instance, read back from the alert topic.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Orphan {
    pub episode: String,
    pub instance: String,
    pub saved: String,
}

/// What this instance knows of the others' episodes and whether they are still heard.
#[derive(Debug, Default)]
pub(super) struct Orphans {
    waiting: Vec<Orphan>,
    /// When each instance was last heard (wall clock, ms), by its name.
    heard: BTreeMap<String, i64>,
    /// When this assignment began (wall clock, ms).
    began_ms: i64,
}

/// The instance a reach-topic key was said by: keys are `<instance>#<process>.<n>/<stream>`
/// and `lag/<instance>#<process>.<n>`.
pub(super) fn speaker(key: &str) -> Option<&str> {
    let key = key.strip_prefix(LAG_KEY).unwrap_or(key);
    let head = key.split('/').next()?;
    head.rsplit_once('#').map(|(instance, _)| instance)
}

impl Orphans {
    pub fn new(waiting: Vec<Orphan>) -> Self {
        Orphans {
            waiting,
            heard: BTreeMap::new(),
            began_ms: wall_ms(),
        }
    }

    /// An instance said something just now (`now_ms`).
    pub fn heard(&mut self, instance: &str, now_ms: i64) {
        self.heard.insert(instance.to_string(), now_ms);
    }

    /// The episodes whose instances are gone as of `now_ms`, taken out; those of instances
    /// heard lately are dropped (their instance closes them). Nothing before this assignment
    /// has lasted [`GONE_MS`]: until then, a quiet instance may just not have been heard yet.
    pub fn due(&mut self, now_ms: i64) -> Vec<Orphan> {
        if self.waiting.is_empty() || now_ms.saturating_sub(self.began_ms) < GONE_MS {
            return Vec::new();
        }
        let heard = &self.heard;
        let alive = |o: &Orphan| {
            heard
                .get(&o.instance)
                .is_some_and(|at| now_ms.saturating_sub(*at) < GONE_MS)
        };
        let (gone, _alive): (Vec<Orphan>, Vec<Orphan>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|o| !alive(o));
        gone
    }
}

impl Service {
    /// The holder of shard 0 closes the episodes of instances gone from the group.
    pub(super) fn close_orphans(&mut self) -> anyhow::Result<()> {
        if !self.tells_lag() {
            return Ok(());
        }
        let gone = self.orphans.due(wall_ms());
        let events: Vec<EpisodeEvent> = gone
            .iter()
            .filter_map(|o| match Episodes::close_saved(&o.saved, wall_ms()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(episode = %o.episode, error = %e, "cannot close an episode left open");
                    None
                }
            })
            .collect();
        if events.is_empty() {
            return Ok(());
        }
        let named: Vec<String> = gone
            .iter()
            .map(|o| format!("{} (of {})", o.episode, o.instance))
            .collect();
        tracing::info!(
            "closing {} episodes of instances not heard for {} s: {}",
            events.len(),
            GONE_MS / 1000,
            named.join(" ")
        );
        self.publish_episodes(&events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orphan(instance: &str) -> Orphan {
        Orphan {
            episode: format!("replica-1/*/Unverified/w5@{instance}"),
            instance: instance.into(),
            saved: "{}".into(),
        }
    }

    #[test]
    fn a_key_names_the_instance_that_said_it() {
        assert_eq!(speaker("i-1#42-1700.0/replica-1"), Some("i-1"));
        assert_eq!(speaker("lag/i-1#42-1700.3"), Some("i-1"));
        assert_eq!(speaker("host#a#42-1700.0/primary"), Some("host#a"));
        assert_eq!(speaker("placement/7"), None);
    }

    #[test]
    fn an_episode_is_due_once_its_instance_is_unheard_for_a_minute() {
        let mut o = Orphans {
            waiting: vec![orphan("gone"), orphan("alive"), orphan("late")],
            heard: BTreeMap::new(),
            began_ms: 0,
        };
        o.heard("alive", 50_000);
        o.heard("late", 1_000);
        // Not before the assignment has lasted a minute.
        assert!(o.due(59_000).is_empty());
        let due: Vec<String> = o.due(61_000).into_iter().map(|x| x.instance).collect();
        assert_eq!(due, ["gone", "late"]);
        // The alive one's instance closes it: nothing is left to wait for.
        assert!(o.due(200_000).is_empty());
    }
}
