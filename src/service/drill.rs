//! Naming the keys of a data mismatch, live: for each mismatch whose episode wants more keys,
//! a worker thread re-reads the offsets that fed its window (the verdict names them) and
//! keeps per-key state for its key range only (`replay::drill_keys`). The keys go to the
//! episode, which is published again at once. One drill runs at a time, at most one queued
//! per episode; the main loop never waits on one.

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use cdc_verifier_core::verdict::{Divergence, KeyDiff};

use super::state::Service;
use crate::config::Config;

/// Drills waiting for the worker at most; beyond, a mismatch's keys are not looked for (the
/// episode's next mismatch asks again).
const QUEUE: usize = 16;

struct Job {
    episode: String,
    verdict: Divergence,
    asked: Instant,
}

struct Done {
    episode: String,
    verdict: Divergence,
    keys: anyhow::Result<Vec<KeyDiff>>,
    took: Duration,
}

/// The drill worker and the episodes it is working for.
pub struct Drills {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    in_flight: HashSet<String>,
    /// Drills finished, and those that failed or were refused at a bound.
    pub finished: u64,
    pub failed: u64,
}

impl Drills {
    pub fn start(cfg: &Config) -> Drills {
        let (jobs, rx) = sync_channel::<Job>(QUEUE);
        let (tx, done) = sync_channel::<Done>(QUEUE);
        let cfg = cfg.clone();
        std::thread::Builder::new()
            .name("drill".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    let keys = match job.verdict.mismatch() {
                        Some(m) => crate::replay::drill_keys(
                            &cfg,
                            &m.offsets,
                            &m.table,
                            m.range.index,
                            cfg.alerts.drill_max_records,
                        ),
                        None => Ok(Vec::new()),
                    };
                    let done = Done {
                        episode: job.episode,
                        verdict: job.verdict,
                        keys,
                        took: job.asked.elapsed(),
                    };
                    if tx.send(done).is_err() {
                        break;
                    }
                }
            })
            .expect("spawning the drill thread");
        Drills {
            jobs: Some(jobs),
            done,
            in_flight: HashSet::new(),
            finished: 0,
            failed: 0,
        }
    }
}

impl Service {
    /// Asks for the keys of a published data mismatch that names none, when its episode
    /// wants more and has no drill of its own under way.
    pub(super) fn drill(&mut self, d: &Divergence) {
        let max = self.cfg.alerts.keys_per_episode;
        let Some(m) = d.mismatch() else { return };
        if max == 0 || !m.keys.is_empty() || m.offsets.is_empty() {
            return;
        }
        if !self.episodes.wants_keys(d, max) {
            return;
        }
        let Some(episode) = self.episodes.episode_key(d).map(str::to_string) else {
            return;
        };
        if self.drills.in_flight.contains(&episode) {
            return;
        }
        let Some(jobs) = &self.drills.jobs else {
            return;
        };
        let job = Job {
            episode: episode.clone(),
            verdict: d.clone(),
            asked: Instant::now(),
        };
        match jobs.try_send(job) {
            Ok(()) => {
                self.drills.in_flight.insert(episode);
            }
            Err(TrySendError::Full(_)) => {
                tracing::debug!(episode = %episode, "drills queued at their bound: keys of this mismatch not looked for");
            }
            Err(TrySendError::Disconnected(_)) => {
                tracing::warn!("the drill thread stopped: keys are no longer named live");
                self.drills.jobs = None;
            }
        }
    }

    /// Waits up to `bound` for the drills under way, taking in their keys: a bounded run names
    /// the keys of its last mismatches too.
    pub(super) fn finish_drills(&mut self, bound: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + bound;
        while !self.drills.in_flight.is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
            self.health.beat();
            self.drills_done()?;
        }
        Ok(())
    }

    /// Takes the keys the finished drills found into their episodes.
    pub(super) fn drills_done(&mut self) -> anyhow::Result<()> {
        let max = self.cfg.alerts.keys_per_episode;
        loop {
            let done = match self.drills.done.try_recv() {
                Ok(done) => done,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return Ok(()),
            };
            self.drills.in_flight.remove(&done.episode);
            self.drills.finished += 1;
            let ms = done.took.as_millis() as u64;
            let (keys, more) = match done.keys {
                Ok(keys) => (keys, false),
                Err(e) => {
                    self.drills.failed += 1;
                    tracing::warn!(episode = %done.episode, error = %format!("{e:#}"), "cannot name the keys of a mismatched window");
                    (Vec::new(), true)
                }
            };
            tracing::info!(
                episode = %done.episode,
                keys = keys.len(),
                ms,
                "keys named: {} of episode {} in {ms} ms after the verdict",
                keys.len(),
                done.episode
            );
            for k in &keys {
                tracing::debug!(episode = %done.episode, key = %k.key, primary = ?k.primary, replica = ?k.replica, "key differs");
            }
            let mut events = Vec::new();
            let now = self.verifier.engine.now_ms();
            self.episodes
                .name_keys(&done.verdict, keys, more, max, now, &mut events);
            self.publish_episodes(&events)?;
        }
    }
}
