//! A replica's lag while instances share the tables: one episode for the group. Each instance
//! judges the lag on its own tables (its `ReplicaLag` verdicts go to the detail topic as
//! ever), and says on the reach topic which replicas it finds lagging. The holder of shard 0
//! tells the episode: opened when any instance finds the replica lagging, closed once none
//! does. Its key is the one a single instance gives it, so that the next holder of shard 0
//! continues it after a hand-over, and an instance that never comes back leaves nothing open.

use std::collections::{BTreeMap, BTreeSet};

use cdc_verifier_core::verdict::{Divergence, Finding, Kind, Recovery, WindowRef};

use super::state::{Service, wall_ms};

/// The reach topic's keys lag is said under: `lag/<instance's key>`.
pub(super) const KEY: &str = "lag/";

/// How long what an instance said of a replica's lag counts when it is not said again. Each
/// instance says it at every commit (`kafka.commit-interval-ms`, 1 s by default): an instance
/// gone quiet this long is gone from the group, and the group handed its tables over.
const FRESH_MS: i64 = 15_000;

/// What one instance says of lag on the reach topic.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Said {
    /// When it was said (the instance's wall clock, ms).
    at_ms: i64,
    /// The verdict that found each replica lagging here, of those lagging now.
    lagging: Vec<Divergence>,
    /// Its last word in this assignment: it stops, or hands its tables over.
    #[serde(default)]
    done: bool,
}

/// What this instance knows of the group's lag.
#[derive(Debug, Default)]
pub(super) struct LagShare {
    /// The replicas found lagging here, by the verdict that found it.
    mine: BTreeMap<String, Divergence>,
    /// What the other instances said last, by their key.
    heard: BTreeMap<String, Said>,
    /// The verdicts counted in the group's episodes: (instance's key, replica, window).
    told: BTreeSet<(String, String, i64)>,
    /// When this assignment began (wall clock, ms): an episode continued from the alert topic
    /// is not closed before every instance had time to say what it finds.
    began_ms: i64,
}

impl LagShare {
    pub fn new() -> Self {
        LagShare {
            began_ms: wall_ms(),
            ..Default::default()
        }
    }

    /// Takes in a lag verdict of this instance, or its recovery. False for any other verdict.
    fn note(&mut self, d: &Divergence) -> bool {
        match &d.finding {
            Finding::ReplicaLag { .. } => {
                self.mine.insert(d.replica.clone(), d.clone());
            }
            Finding::Recovered(Recovery::ReplicaLag { .. }) => {
                self.mine.remove(&d.replica);
            }
            _ => return false,
        }
        true
    }

    /// Takes in what another instance said under `key`: false when it is not a lag record.
    fn hear(&mut self, key: &str, value: &[u8]) -> bool {
        if !key.starts_with(KEY) {
            return false;
        }
        if let Ok(said) = serde_json::from_slice::<Said>(value) {
            self.heard.insert(key.to_string(), said);
        }
        true
    }

    /// The verdicts that find each replica lagging now: this instance's (under `me`) and
    /// those the others said within [`FRESH_MS`] of `now_ms`.
    fn lagging(&self, me: &str, now_ms: i64) -> BTreeMap<String, Vec<(String, Divergence)>> {
        let mut out: BTreeMap<String, Vec<(String, Divergence)>> = BTreeMap::new();
        for d in self.mine.values() {
            let found = (me.to_string(), d.clone());
            out.entry(d.replica.clone()).or_default().push(found);
        }
        for (key, said) in &self.heard {
            if key == me || now_ms.saturating_sub(said.at_ms) > FRESH_MS {
                continue;
            }
            for d in &said.lagging {
                let found = (key.clone(), d.clone());
                out.entry(d.replica.clone()).or_default().push(found);
            }
        }
        out
    }
}

impl LagShare {
    /// Whether an instance that spoke during this assignment has not said its last word yet
    /// (and is not gone quiet): the holder of shard 0, reading to the end, waits for it.
    fn awaiting(&self, me: &str, now_ms: i64) -> bool {
        self.heard.iter().any(|(key, said)| {
            key != me
                && !said.done
                && said.at_ms >= self.began_ms
                && now_ms.saturating_sub(said.at_ms) <= FRESH_MS
        })
    }
}

impl Service {
    /// Reading to the end (`--until-caught-up`), the holder of shard 0 waits, until
    /// `deadline`, for every instance that verifies with it to say its last word on lag, so
    /// that a lag one of them finds last is told too.
    pub(super) fn await_lag(&mut self, deadline: std::time::Instant) -> anyhow::Result<()> {
        if !self.tells_lag() {
            return Ok(());
        }
        let me = self.lag_key();
        while self.lag.awaiting(&me, wall_ms()) && std::time::Instant::now() < deadline {
            self.health.beat();
            std::thread::sleep(std::time::Duration::from_millis(100));
            self.exchange_reach();
            self.tell_lag()?;
        }
        self.tell_lag()
    }

    /// Whether this instance tells the group's lag episodes: it holds shard 0.
    pub(super) fn tells_lag(&self) -> bool {
        self.shards.as_ref().is_some_and(|s| s.owned.contains(&0))
    }

    /// Sharing the tables, a lag verdict of this instance (or its recovery) goes to the
    /// group's episode instead of one of its own: true when it did.
    pub(super) fn share_lag(&mut self, d: &Divergence) -> anyhow::Result<bool> {
        if self.shards.is_none() || !self.lag.note(d) {
            return Ok(false);
        }
        self.tell_lag()?;
        Ok(true)
    }

    /// This instance's lag key on the reach topic.
    fn lag_key(&self) -> String {
        format!("{KEY}{}", self.exchange_key)
    }

    /// Says on the reach topic which replicas are found lagging here; `done` when it is the
    /// last word of this assignment. (What an instance found stays said after it is gone,
    /// for [`FRESH_MS`]: the next holder of its tables judges them again meanwhile.)
    pub(super) fn say_lag(&mut self, done: bool) {
        let Some(ex) = &self.exchange else {
            return;
        };
        let said = Said {
            at_ms: wall_ms(),
            lagging: self.lag.mine.values().cloned().collect(),
            done,
        };
        if let Ok(v) = serde_json::to_vec(&said) {
            ex.say(&self.lag_key(), &v);
        }
    }

    /// Takes in a record heard on the reach topic if it says lag: false when it does not.
    pub(super) fn hear_lag(&mut self, key: &str, value: &[u8]) -> bool {
        self.lag.hear(key, value)
    }

    /// The holder of shard 0 opens, grows and closes the group's lag episodes from what every
    /// instance found. Others do nothing here.
    pub(super) fn tell_lag(&mut self) -> anyhow::Result<()> {
        if !self.tells_lag() {
            return Ok(());
        }
        let me = self.lag_key();
        let wall = wall_ms();
        let now = self.verifier.engine.now_ms();
        let mut verdicts = Vec::new();
        let lagging = self.lag.lagging(&me, wall);
        for (replica, found) in &lagging {
            for (key, d) in found {
                let window = d.window().map_or(i64::MIN, |w| w.id);
                let told = (key.clone(), replica.clone(), window);
                if !self.lag.told.contains(&told) {
                    verdicts.push((told, d.clone()));
                }
            }
        }
        let open: Vec<String> = self
            .episodes
            .open_episodes()
            .filter(|(_, s)| s.table.is_none() && s.kind == Kind::ReplicaLag)
            .map(|(_, s)| s.replica.clone())
            .collect();
        let settled = wall.saturating_sub(self.lag.began_ms) >= FRESH_MS;
        let recovered: Vec<String> = open
            .into_iter()
            .filter(|r| settled && !lagging.contains_key(r))
            .collect();
        let mut events = Vec::new();
        for (told, d) in verdicts {
            self.lag.told.insert(told);
            self.episodes.observe(&d, &mut events);
        }
        for replica in recovered {
            // (The window a recovery names is not read by the episodes: none is needed.)
            let window = WindowRef::default();
            self.lag.told.retain(|(_, r, _)| *r != replica);
            let d = Divergence::new(
                &replica,
                now,
                Finding::Recovered(Recovery::ReplicaLag { window }),
            );
            self.episodes.observe(&d, &mut events);
        }
        self.publish_episodes(&events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_verifier_core::verdict::LagInfo;

    fn lag(replica: &str, w: i64) -> Divergence {
        let window = WindowRef {
            id: w,
            ..Default::default()
        };
        let lag = LagInfo {
            primary_position: Default::default(),
            replica_position: Default::default(),
            positions_behind: 10,
            ms_behind: 5_000,
        };
        Divergence::new(replica, 1_000, Finding::ReplicaLag { window, lag })
    }

    fn said(at_ms: i64, lagging: Vec<Divergence>, done: bool) -> Vec<u8> {
        serde_json::to_vec(&Said {
            at_ms,
            lagging,
            done,
        })
        .unwrap()
    }

    #[test]
    fn a_replica_lags_while_any_instance_said_so_lately() {
        let mut l = LagShare {
            began_ms: 100_000,
            ..Default::default()
        };
        assert!(l.note(&lag("replica-1", 5)));
        assert!(
            !l.hear("a#1.0/replica-1", b"{}"),
            "a reach record is not lag"
        );
        assert!(l.hear(
            "lag/b#2.0",
            &said(100_000, vec![lag("replica-2", 6)], false)
        ));
        assert!(l.hear("lag/c#3.0", &said(80_000, vec![lag("replica-3", 7)], false)));
        let now: Vec<String> = l.lagging("lag/me", 110_000).into_keys().collect();
        // c said it 30 s ago: gone from the group.
        assert_eq!(now, ["replica-1", "replica-2"]);
        // b is still to say its last word; once it has, nobody is awaited.
        assert!(l.awaiting("lag/me", 110_000));
        l.hear("lag/b#2.0", &said(111_000, vec![lag("replica-2", 6)], true));
        assert!(!l.awaiting("lag/me", 111_000));
        // Its last word still counts until it is stale; this instance's recovery clears its own.
        let recovered = Divergence::new(
            "replica-1",
            2_000,
            Finding::Recovered(Recovery::ReplicaLag {
                window: lag("replica-1", 5).window().unwrap(),
            }),
        );
        assert!(l.note(&recovered));
        let now: Vec<String> = l.lagging("lag/me", 112_000).into_keys().collect();
        assert_eq!(now, ["replica-2"]);
        assert!(l.lagging("lag/me", 127_000).is_empty());
    }
}
