//! Telemetry: the metrics snapshot, the periodic summary line, and the warnings about late
//! records and unverified starting states.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::metrics::{Snapshot, TableCounters};
use super::state::Service;

/// How long the oldest window may stay open before the log says why.
const HELD_WARN: Duration = Duration::from_secs(60);

impl Service {
    /// Records later than `verify.publish-skew-ms` allows may have missed their window's
    /// comparison: said once per second at most, with the figure to set instead. Records
    /// stamped in the future: said once per partition.
    pub(super) fn warn_skew(&mut self) {
        let e = &self.verifier.engine;
        let skew = e.publish_skew_ms();
        if skew > self.skew_logged + self.skew_logged / 4
            && skew > self.cfg.verify.timing.publish_skew_ms
        {
            tracing::info!(
                allowed_ms = skew,
                seen_ms = e.stats().arrival_behind_max_ms,
                "records arrive later than verify.publish-skew-ms: allowing {skew} ms for the producers' skew (comparisons wait that much longer)"
            );
            self.skew_logged = skew;
        } else if skew < self.skew_logged / 2 {
            self.skew_logged = skew;
        }
        for (replica, why) in &e.stats().changes_only {
            if self.changes_only_logged.insert(replica.clone()) {
                tracing::warn!(replica = %replica, "changes only: {why}");
            }
        }
        for f in &e.future_records()[self.future_logged..] {
            tracing::warn!(
                topic = %f.topic,
                partition = f.partition,
                offset = f.offset,
                stamped = %cdc_verifier_core::time::format_utc(f.timestamp_ms),
                allowed_up_to = %cdc_verifier_core::time::format_utc(f.limit_ms),
                "a record is stamped in the future (beyond the wall clock and verify.future-tolerance-ms): its producer's clock is wrong; such records are verified but do not move the verifier's clock (counted in cdc_verifier_future_records_total; said once per partition)"
            );
        }
        self.future_logged = e.future_records().len();
        let origins = (e.stats().origins, e.stats().origin_returns);
        if origins.0 > self.origins_logged.0.max(1) {
            tracing::info!(
                origins = origins.0,
                "positions from a new GTID origin (a failover): its transactions are ordered after the earlier origins'"
            );
        }
        if origins.1 > self.origins_logged.1 {
            tracing::warn!(
                returns = origins.1,
                "a GTID origin came back after a later one (a failback): its new transactions are ordered after the later origin's (counted in cdc_verifier_origin_returns_total)"
            );
        }
        self.origins_logged = origins;
        let late = e.late_records();
        if late > self.skew_warned {
            let seen = e.stats().arrival_behind_max_ms;
            tracing::warn!(
                records = late - self.skew_warned,
                seen_ms = seen,
                publish_skew_ms = self.cfg.verify.timing.publish_skew_ms,
                "records came after their window was compared, up to {seen} ms after their partition was read through their time: they were not verified, and findings on their windows may be wrong; raise verify.publish-skew-ms above {seen}"
            );
            self.skew_warned = late;
        }
    }

    /// Says once what keeps the oldest open window open when it has been open for
    /// [`HELD_WARN`]: its offsets, and those of every record read after it, are not committed
    /// meanwhile (a restart reads them all again).
    pub(super) fn warn_held(&mut self) {
        let Some((w, why)) = self.verifier.engine.oldest_hold() else {
            self.oldest_open = None;
            return;
        };
        match &mut self.oldest_open {
            Some((ow, since, said)) if *ow == w => {
                if !*said && since.elapsed() >= HELD_WARN {
                    *said = true;
                    tracing::warn!(
                        open_s = since.elapsed().as_secs(),
                        "offsets held back: the oldest open {why}"
                    );
                }
            }
            _ => self.oldest_open = Some((w, Instant::now(), false)),
        }
    }

    /// Logs, once each, what column rules could not do (a treatment that fits no column it
    /// names: a typo, or a column of another type).
    pub(super) fn warn_rule_notes(&mut self) {
        let notes = self.verifier.engine.rule_notes();
        for n in &notes[self.rule_notes_said.min(notes.len())..] {
            tracing::warn!("column rule not applied: {n}");
        }
        self.rule_notes_said = notes.len();
    }

    pub(super) fn summary_line(&self, rate: f64) -> String {
        let e = &self.verifier.engine;
        let lag: Vec<String> = e
            .replica_positions()
            .iter()
            .map(|(r, _, behind)| format!("{r} -{behind}"))
            .collect();
        let kinds = findings(&self.verdict_counts);
        format!(
            "cdc-verifier: {} events ({:.0}/s), {} windows compared, {} open, findings: {}, replicas behind: {}{}",
            self.verifier.records,
            rate,
            e.stats().windows_compared,
            e.open_windows(),
            kinds,
            lag.join(", "),
            if self.partitions.iter().any(|p| p.paused) {
                ", registry unavailable: partitions paused"
            } else {
                ""
            }
        )
    }

    pub(super) fn publish_metrics(&mut self) {
        let e = &self.verifier.engine;
        let mut s = Snapshot::default();
        for (stream, table, _topic, st) in e.topic_stats() {
            let c = s
                .tables
                .entry((stream.to_string(), table.to_string()))
                .or_insert_with(TableCounters::default);
            c.events += st.events;
            c.bytes += st.bytes;
            c.duplicates += st.duplicates;
            c.decode_errors += st.poison;
            c.snapshot_rows += st.snapshot;
            c.snapshot_ignored += st.snapshot_late;
            c.future += st.future;
            c.unverified += st.unverified;
        }
        s.windows_compared = e.stats().windows_compared;
        s.windows_unverified = e.stats().windows_unverified;
        s.drill_keys_skipped = e.stats().drill_keys_skipped;
        s.held = e.held();
        s.withdrawn = e.stats().withdrawn;
        s.key_drills = self.drills.finished;
        s.key_drill_failures = self.drills.failed;
        if let Some(w) = &self.webhook {
            let (failed, ok) = *w.stats.lock().unwrap();
            (s.alertmanager_posts, s.alertmanager_failures) = (ok, failed);
        }
        s.origins = e.stats().origins;
        s.origin_returns = e.stats().origin_returns;
        for r in e.stream_names().skip(1) {
            let verified = e.started(r) && !e.stats().changes_only.contains_key(r);
            s.state_verified.insert(r.to_string(), verified);
        }
        s.divergences = self.verdict_counts.clone();
        for (r, _, behind) in e.replica_positions() {
            let secs = e.replica_lag_ms(&r) as f64 / 1000.0;
            s.replica_lag.insert(r, (behind, secs));
        }
        let names: Vec<String> = e.stream_names().map(str::to_string).collect();
        for p in self.partitions.iter().filter(|p| !p.gone) {
            let topic = &self.topic_names[p.topic_index as usize];
            let stream = self
                .cfg
                .route(topic)
                .map(|(i, _)| names[i].clone())
                .unwrap_or_default();
            let high = self
                .consumer
                .cached_high_watermark(&self.topic_cnames[p.topic_index as usize], p.partition)
                .unwrap_or(p.next);
            *s.consumer_lag.entry(stream).or_default() += (high - p.next).max(0);
        }
        let st = &self.src.stats;
        s.registry_hits = st.hits;
        s.registry_misses = st.misses;
        s.registry_errors = st.errors;
        s.registry_latency_buckets = st.buckets;
        s.registry_latency_count = st.fetches;
        s.registry_latency_sum = st.fetch_time.as_secs_f64();
        s.registry_unavailable = st.unavailable;
        s.registry_unavailable_now = st.unavailable_now;
        s.open_windows = e.open_windows() as u64;
        s.parked_records = e.parked() as u64;
        s.paused_partitions = self.partitions.iter().filter(|p| p.paused).count() as u64;
        s.arrival_behind_max_ms = e.stats().arrival_behind_max_ms;
        s.publish_skew_ms = e.publish_skew_ms();
        s.record_age_ms =
            [0.5, 0.9, 0.99, 1.0].map(|q| (q, self.record_age_recent.value_at_quantile(q)));
        s.late_records = e.late_records();
        s.outputs = self.producer.stats();
        s.degraded_delivery = self.producer.failing().is_some();
        s.degraded_commit = self.commit_failing.is_some();
        s.commit_failures = self.commit_failures;
        s.commits = self.commits;
        s.shard_handoffs = self.shard_handoffs;
        s.reach_taken = self.reach_taken;
        s.reach_refused = self.reach_refused;
        for name in &names {
            s.topics_read.insert(name.clone(), 0);
        }
        for (t, (stream, _)) in self.topic_routes.iter().enumerate() {
            let stream = names[*stream].clone();
            if !self.topic_gone[t] {
                *s.topics_read.entry(stream.clone()).or_default() += 1;
            }
            s.topics_deleted
                .insert((stream, self.topic_names[t].clone()), self.topic_gone[t]);
        }
        s.records_skipped = self.skipped.clone();
        self.metrics.publish(s);
        self.record_age_recent.reset();
    }
}

/// The process's peak resident memory, from /proc.
pub(super) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Every verdict published since start, by kind, from the counts by (kind, replica): published
/// verdicts are not kept.
fn findings(counts: &BTreeMap<(String, String), u64>) -> String {
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for ((kind, _replica), n) in counts {
        *kinds.entry(kind.as_str()).or_default() += n;
    }
    if kinds.is_empty() {
        return "none".into();
    }
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    kinds.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_every_verdict_published_by_kind() {
        let mut counts = BTreeMap::new();
        assert_eq!(findings(&counts), "none");
        counts.insert(("DataMismatch".to_string(), "replica-1".to_string()), 3);
        counts.insert(("DataMismatch".to_string(), "replica-2".to_string()), 4);
        counts.insert(("SchemaDrift".to_string(), "replica-2".to_string()), 1);
        assert_eq!(findings(&counts), "DataMismatch 7, SchemaDrift 1");
    }
}
