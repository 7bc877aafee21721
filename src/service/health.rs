//! `/healthz` and `/readyz`.
//!
//! Health is progress: the main loop stamps a heartbeat every iteration (and the start-up
//! waits stamp it as they wait); a heartbeat older than `service.stall-timeout-s` is a loop
//! stuck in a call that does not return, and `/healthz` answers 503 saying for how long.
//! Readiness is every configured stream being read: the loop says, about once a second, what
//! is not — a stream with no topic yet, a deleted topic, partitions not assigned, paused
//! while the schema registry is unavailable, or with records to read and none read for
//! `service.stall-timeout-s` — and `/readyz` answers 503 naming them. Both answer JSON.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::state::Service;

/// One thing that keeps the service from being ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotReady {
    /// `starting`, `stopping`, `stalled`, `no_topic`, `topic_deleted`, `unassigned`,
    /// `registry_unavailable`, `stuck`.
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<u32>,
    pub detail: String,
}

impl NotReady {
    fn new(reason: &'static str, detail: String) -> NotReady {
        NotReady {
            reason,
            stream: None,
            topic: None,
            partitions: Vec::new(),
            detail,
        }
    }
}

/// The heartbeat and the last word on readiness, shared with the HTTP endpoints.
pub struct Health {
    origin: Instant,
    /// ms since `origin` of the last heartbeat.
    beat_ms: AtomicU64,
    stall: Duration,
    not_ready: Mutex<Vec<NotReady>>,
}

impl Health {
    /// Starting: not ready until the loop says otherwise.
    pub fn new(stall: Duration) -> Health {
        Health {
            origin: Instant::now(),
            beat_ms: AtomicU64::new(0),
            stall,
            not_ready: Mutex::new(vec![NotReady::new("starting", "starting".into())]),
        }
    }

    /// The loop (or a start-up wait) made progress now.
    pub fn beat(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.beat_ms.store(ms, Ordering::Relaxed);
    }

    fn since_beat(&self) -> Duration {
        let last = Duration::from_millis(self.beat_ms.load(Ordering::Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    /// What keeps the service from being ready now (empty: ready).
    pub fn set(&self, not_ready: Vec<NotReady>) {
        *self.not_ready.lock().unwrap_or_else(|e| e.into_inner()) = not_ready;
    }

    /// Starting, doing `what`.
    pub fn starting(&self, what: &str) {
        self.beat();
        self.set(vec![NotReady::new("starting", what.to_string())]);
    }

    /// Stopping: draining, then exiting.
    pub fn stopping(&self) {
        self.set(vec![NotReady::new("stopping", "stopping".into())]);
    }

    fn stalled(&self) -> Option<String> {
        let quiet = self.since_beat();
        (quiet > self.stall).then(|| {
            format!(
                "the main loop has made no progress for {:.1} s (service.stall-timeout-s = {})",
                quiet.as_secs_f64(),
                self.stall.as_secs()
            )
        })
    }

    /// `/healthz`: status and JSON body.
    pub fn healthz(&self) -> (u16, String) {
        let quiet_ms = self.since_beat().as_millis() as u64;
        match self.stalled() {
            None => (
                200,
                serde_json::json!({"healthy": true, "last_progress_ms_ago": quiet_ms}).to_string(),
            ),
            Some(reason) => (
                503,
                serde_json::json!({"healthy": false, "reason": reason, "last_progress_ms_ago": quiet_ms})
                    .to_string(),
            ),
        }
    }

    /// `/readyz`: status and JSON body.
    pub fn readyz(&self) -> (u16, String) {
        let mut not_ready = self
            .not_ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(reason) = self.stalled() {
            not_ready.insert(0, NotReady::new("stalled", reason));
        }
        let ready = not_ready.is_empty();
        let body = serde_json::json!({"ready": ready, "not_ready": not_ready}).to_string();
        (if ready { 200 } else { 503 }, body)
    }
}

impl Service {
    /// Tells the endpoints what keeps the service from being ready now.
    pub(super) fn update_readiness(&mut self) {
        let stall = Duration::from_secs(self.cfg.service.stall_timeout_s);
        let mut out = Vec::new();
        let streams: Vec<(String, String)> = self
            .cfg
            .streams()
            .map(|s| (s.name.clone(), s.topic_prefix.clone()))
            .collect();
        for (i, (name, prefix)) in streams.iter().enumerate() {
            let read = (0..self.topic_names.len())
                .any(|t| self.topic_routes[t].0 == i && !self.topic_gone[t]);
            // (A shard may hold no table of a stream.)
            if !read && self.shards.is_none() {
                let mut n = NotReady::new(
                    "no_topic",
                    format!("no topic with prefix `{prefix}` is read (none exists yet)"),
                );
                n.stream = Some(name.clone());
                out.push(n);
            }
        }
        for (t, name) in self.topic_names.iter().enumerate() {
            if self.topic_gone[t] {
                let mut n = NotReady::new(
                    "topic_deleted",
                    "the topic was deleted: its partitions are not read".into(),
                );
                n.stream = Some(streams[self.topic_routes[t].0].0.clone());
                n.topic = Some(name.clone());
                out.push(n);
            }
        }
        let assigned: Option<HashSet<(String, u32)>> = match self.consumer.assigned() {
            Ok(a) => Some(a.into_iter().collect()),
            Err(e) => {
                out.push(NotReady::new(
                    "unassigned",
                    format!("cannot read the consumer's assignment: {e}"),
                ));
                None
            }
        };
        // (reason, topic) → partitions.
        let mut by_topic: BTreeMap<(&'static str, u32), Vec<u32>> = BTreeMap::new();
        for p in self.partitions.iter_mut().filter(|p| !p.gone) {
            let topic = &self.topic_names[p.topic_index as usize];
            if p.seen.0 != p.next {
                p.seen = (p.next, Instant::now());
            }
            let reason = if assigned
                .as_ref()
                .is_some_and(|a| !a.contains(&(topic.clone(), p.partition)))
            {
                "unassigned"
            } else if p.paused {
                "registry_unavailable"
            } else if p.end > p.next && !self.throttled && p.seen.1.elapsed() > stall {
                "stuck"
            } else {
                continue;
            };
            by_topic
                .entry((reason, p.topic_index))
                .or_default()
                .push(p.partition);
        }
        for ((reason, t), partitions) in by_topic {
            let detail = match reason {
                "unassigned" => "partitions not assigned to the consumer".to_string(),
                "registry_unavailable" => {
                    "partitions paused while the schema registry is unavailable".to_string()
                }
                _ => format!(
                    "partitions with records to read and none read for over {} s",
                    stall.as_secs()
                ),
            };
            let mut n = NotReady::new(reason, detail);
            n.stream = Some(streams[self.topic_routes[t as usize].0].0.clone());
            n.topic = Some(self.topic_names[t as usize].clone());
            n.partitions = partitions;
            out.push(n);
        }
        self.health.set(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_progress_within_the_bound() {
        let h = Health::new(Duration::from_millis(50));
        h.beat();
        let (status, body) = h.healthz();
        assert_eq!(status, 200, "{body}");
        std::thread::sleep(Duration::from_millis(80));
        let (status, body) = h.healthz();
        assert_eq!(status, 503);
        assert!(body.contains("no progress for"), "{body}");
        let (status, body) = h.readyz();
        assert_eq!(status, 503);
        assert!(body.contains("\"stalled\""), "{body}");
        h.beat();
        assert_eq!(h.healthz().0, 200);
    }

    #[test]
    fn readiness_names_what_is_not_ready() {
        let h = Health::new(Duration::from_secs(60));
        h.beat();
        let (status, body) = h.readyz();
        assert_eq!(status, 503);
        assert!(body.contains("\"starting\""), "{body}");
        let mut n = NotReady::new("no_topic", "none yet".into());
        n.stream = Some("replica-1".into());
        h.set(vec![n]);
        let (status, body) = h.readyz();
        assert_eq!(status, 503);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ready"], false);
        assert_eq!(v["not_ready"][0]["reason"], "no_topic");
        assert_eq!(v["not_ready"][0]["stream"], "replica-1");
        h.set(Vec::new());
        assert_eq!(
            h.readyz(),
            (200, r#"{"not_ready":[],"ready":true}"#.to_string())
        );
    }
}
