//! Prometheus metrics. The verification loop publishes a snapshot once per second (never per
//! event); the HTTP server (`endpoints`) renders the latest one.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

use cdc_verifier_kafka::outbox::{OutboxStats, Output};
pub use cdc_verifier_kafka::source::LATENCY_BUCKETS;
use cdc_verifier_kafka::source::Unavailability;

#[derive(Debug, Clone, Default)]
pub struct TableCounters {
    pub events: u64,
    pub bytes: u64,
    pub duplicates: u64,
    pub decode_errors: u64,
    /// Snapshot reads summed into the stream's starting state.
    pub snapshot_rows: u64,
    /// Reads of a second snapshot: not verified.
    pub snapshot_ignored: u64,
    /// Records stamped beyond the wall clock and `verify.future-tolerance-ms`.
    pub future: u64,
    /// A replica's records in a span given up on at a memory bound: not verified.
    pub unverified: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// (stream, table) → counters.
    pub tables: BTreeMap<(String, String), TableCounters>,
    pub windows_compared: u64,
    /// Windows not compared for a replica given up on there (a memory bound).
    pub windows_unverified: u64,
    /// Events of keys drill-down did not follow (past verify.max-drill-keys).
    pub drill_keys_skipped: u64,
    /// Bytes held in open windows and in records parked ahead of the primary.
    pub held: cdc_verifier_core::Held,
    /// (kind, replica) → verdicts.
    pub divergences: BTreeMap<(String, String), u64>,
    /// replica → (positions behind, seconds behind).
    pub replica_lag: BTreeMap<String, (u64, f64)>,
    /// stream → records in Kafka not yet read.
    pub consumer_lag: BTreeMap<String, i64>,
    pub registry_hits: u64,
    pub registry_misses: u64,
    pub registry_errors: u64,
    pub registry_latency_buckets: [u64; LATENCY_BUCKETS.len()],
    pub registry_latency_count: u64,
    pub registry_latency_sum: f64,
    /// Fetches that found the registry unavailable, per [`Unavailability::ALL`].
    pub registry_unavailable: [u64; Unavailability::ALL.len()],
    /// The last fetch found the registry unavailable.
    pub registry_unavailable_now: bool,
    pub open_windows: u64,
    pub parked_records: u64,
    pub paused_partitions: u64,
    pub arrival_behind_max_ms: i64,
    pub publish_skew_ms: i64,
    /// (quantile, ms) of how long after their timestamp records were read, since the last snapshot.
    pub record_age_ms: [(f64, u64); 4],
    pub late_records: u64,
    pub withdrawn: u64,
    /// Re-reads of mismatched windows for their keys: finished, failed or refused.
    pub key_drills: u64,
    pub key_drill_failures: u64,
    /// Posts to Alertmanager that succeeded, and that failed (each try).
    pub alertmanager_posts: u64,
    pub alertmanager_failures: u64,
    pub origins: u64,
    pub origin_returns: u64,
    /// replica → whether its starting state was compared (false: changes only, or not yet).
    pub state_verified: BTreeMap<String, bool>,
    /// Alerts and dead letters: acknowledged, failed tries, waiting.
    pub outputs: OutboxStats,
    /// Alerts or dead letters are failing to be delivered (and kept for another try).
    pub degraded_delivery: bool,
    /// Offsets are failing to be committed (and tried again).
    pub degraded_commit: bool,
    pub commit_failures: u64,
    pub commits: u64,
    /// Shards of tables verified here (`[scale]`; 0 when not sharing).
    pub shards_owned: u64,
    /// Times this instance handed its shards back to its group (a rebalance).
    pub shard_handoffs: u64,
    /// What the other instances said of how far streams have written: taken in, refused.
    pub reach_taken: u64,
    pub reach_refused: u64,
    /// stream → topics read (deleted ones not counted).
    pub topics_read: BTreeMap<String, u64>,
    /// (stream, topic) → whether the topic is deleted now (topics once read).
    pub topics_deleted: BTreeMap<(String, String), bool>,
    /// (topic, partition) → records deleted (by retention) before they were read.
    pub records_skipped: BTreeMap<(String, u32), u64>,
}

mod carry;

#[derive(Default)]
pub struct Metrics {
    snapshot: Mutex<Snapshot>,
    /// What the pipelines before this one counted (see [`Metrics::carry_over`]).
    carried: Mutex<carry::Carried>,
    /// Shards of tables verified now (`[scale]`): set as they are given and handed back,
    /// between the loop's snapshots.
    pub shards_owned: std::sync::atomic::AtomicU64,
}

impl Metrics {
    pub fn publish(&self, s: Snapshot) {
        *self.snapshot.lock().expect("metrics lock") = s;
    }

    /// The metrics in Prometheus' text format, counters carried over from the pipelines
    /// before this one.
    pub fn render(&self) -> String {
        let now = self.render_now();
        self.carried.lock().expect("metrics lock").add_to(&now)
    }

    /// A pipeline ends and another starts in this process (an instance sharing the tables
    /// given other shards): its counts are carried into what the next renders, so that
    /// counters keep growing.
    pub fn carry_over(&self) {
        let now = self.render_now();
        self.carried.lock().expect("metrics lock").take(&now);
        *self.snapshot.lock().expect("metrics lock") = Snapshot::default();
    }

    fn render_now(&self) -> String {
        let mut s = self.snapshot.lock().expect("metrics lock").clone();
        s.shards_owned = self.shards_owned.load(std::sync::atomic::Ordering::Relaxed);
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_events_total Events verified, by stream and table.\n# TYPE cdc_verifier_events_total counter"
        );
        for ((stream, table), c) in &s.tables {
            let _ = writeln!(
                out,
                "cdc_verifier_events_total{{stream=\"{stream}\",table=\"{table}\"}} {}",
                c.events
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_bytes_total Bytes of keys and values verified, by stream and table.\n# TYPE cdc_verifier_bytes_total counter"
        );
        for ((stream, table), c) in &s.tables {
            let _ = writeln!(
                out,
                "cdc_verifier_bytes_total{{stream=\"{stream}\",table=\"{table}\"}} {}",
                c.bytes
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_duplicates_total Redelivered events counted and not summed.\n# TYPE cdc_verifier_duplicates_total counter"
        );
        for ((stream, table), c) in &s.tables {
            let _ = writeln!(
                out,
                "cdc_verifier_duplicates_total{{stream=\"{stream}\",table=\"{table}\"}} {}",
                c.duplicates
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_snapshot_rows_total Snapshot reads summed into the stream's starting state.\n# TYPE cdc_verifier_snapshot_rows_total counter"
        );
        for ((stream, table), c) in &s.tables {
            let _ = writeln!(
                out,
                "cdc_verifier_snapshot_rows_total{{stream=\"{stream}\",table=\"{table}\"}} {}",
                c.snapshot_rows
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_snapshot_ignored_total Reads of a second snapshot (a connector that lost its offsets): not verified.\n# TYPE cdc_verifier_snapshot_ignored_total counter"
        );
        for ((stream, table), c) in &s.tables {
            let _ = writeln!(
                out,
                "cdc_verifier_snapshot_ignored_total{{stream=\"{stream}\",table=\"{table}\"}} {}",
                c.snapshot_ignored
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_future_records_total Records stamped in the future (beyond the wall clock and verify.future-tolerance-ms): verified, but not allowed to move the verifier's clock.\n# TYPE cdc_verifier_future_records_total counter"
        );
        for ((stream, table), c) in &s.tables {
            let _ = writeln!(
                out,
                "cdc_verifier_future_records_total{{stream=\"{stream}\",table=\"{table}\"}} {}",
                c.future
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_unverified_records_total A replica's records in a span of positions given up on at a memory bound (see the Unverified verdict): not verified.\n# TYPE cdc_verifier_unverified_records_total counter"
        );
        for ((stream, table), c) in &s.tables {
            let _ = writeln!(
                out,
                "cdc_verifier_unverified_records_total{{stream=\"{stream}\",table=\"{table}\"}} {}",
                c.unverified
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_windows_unverified_total Windows not compared for a replica given up on there (a memory bound).\n# TYPE cdc_verifier_windows_unverified_total counter\ncdc_verifier_windows_unverified_total {}",
            s.windows_unverified
        );
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_drill_keys_skipped_total Events of keys drill-down did not follow (past verify.max-drill-keys): their ranges are verified, a mismatch there may not name them.\n# TYPE cdc_verifier_drill_keys_skipped_total counter\ncdc_verifier_drill_keys_skipped_total {}",
            s.drill_keys_skipped
        );
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_held_bytes Memory held, about: open windows (bounded by verify.max-windows-mb) and records parked ahead of the primary (verify.max-parked-mb per replica).\n# TYPE cdc_verifier_held_bytes gauge\ncdc_verifier_held_bytes{{what=\"windows\"}} {}\ncdc_verifier_held_bytes{{what=\"parked\"}} {}",
            s.held.windows, s.held.parked
        );
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_starting_state_verified 1 when the replica's starting state (snapshot + changes) was compared with the primary's; 0 while not yet, or when one side has no snapshot (changes only).\n# TYPE cdc_verifier_starting_state_verified gauge"
        );
        for (replica, v) in &s.state_verified {
            let _ = writeln!(
                out,
                "cdc_verifier_starting_state_verified{{replica=\"{replica}\"}} {}",
                u8::from(*v)
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_decode_errors_total Undecodable records, sent to the dead-letter topic.\n# TYPE cdc_verifier_decode_errors_total counter"
        );
        for ((stream, table), c) in &s.tables {
            let _ = writeln!(
                out,
                "cdc_verifier_decode_errors_total{{stream=\"{stream}\",table=\"{table}\"}} {}",
                c.decode_errors
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_windows_compared_total Windows compared, summed over replicas.\n# TYPE cdc_verifier_windows_compared_total counter"
        );
        let _ = writeln!(
            out,
            "cdc_verifier_windows_compared_total {}",
            s.windows_compared
        );
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_divergences_total Verdicts published, by kind and replica.\n# TYPE cdc_verifier_divergences_total counter"
        );
        for ((kind, replica), n) in &s.divergences {
            let _ = writeln!(
                out,
                "cdc_verifier_divergences_total{{kind=\"{kind}\",replica=\"{replica}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_replica_lag_positions How many origin positions a replica is behind the primary.\n# TYPE cdc_verifier_replica_lag_positions gauge"
        );
        for (r, (p, _)) in &s.replica_lag {
            let _ = writeln!(
                out,
                "cdc_verifier_replica_lag_positions{{replica=\"{r}\"}} {p}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_replica_lag_seconds How long the oldest window a replica has not reached has been closed on the primary.\n# TYPE cdc_verifier_replica_lag_seconds gauge"
        );
        for (r, (_, secs)) in &s.replica_lag {
            let _ = writeln!(
                out,
                "cdc_verifier_replica_lag_seconds{{replica=\"{r}\"}} {secs}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_consumer_lag_records Records in Kafka not yet read, by stream.\n# TYPE cdc_verifier_consumer_lag_records gauge"
        );
        for (stream, lag) in &s.consumer_lag {
            let _ = writeln!(
                out,
                "cdc_verifier_consumer_lag_records{{stream=\"{stream}\"}} {lag}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_registry_cache_requests_total Schema look-ups, by result.\n# TYPE cdc_verifier_registry_cache_requests_total counter"
        );
        let _ = writeln!(
            out,
            "cdc_verifier_registry_cache_requests_total{{result=\"hit\"}} {}",
            s.registry_hits
        );
        let _ = writeln!(
            out,
            "cdc_verifier_registry_cache_requests_total{{result=\"miss\"}} {}",
            s.registry_misses
        );
        let _ = writeln!(
            out,
            "cdc_verifier_registry_cache_requests_total{{result=\"error\"}} {}",
            s.registry_errors
        );
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_registry_fetch_seconds Latency of successful schema registry fetches.\n# TYPE cdc_verifier_registry_fetch_seconds histogram"
        );
        let mut cum = 0;
        for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
            cum += s.registry_latency_buckets[i];
            let _ = writeln!(
                out,
                "cdc_verifier_registry_fetch_seconds_bucket{{le=\"{le}\"}} {cum}"
            );
        }
        let _ = writeln!(
            out,
            "cdc_verifier_registry_fetch_seconds_bucket{{le=\"+Inf\"}} {}",
            s.registry_latency_count
        );
        let _ = writeln!(
            out,
            "cdc_verifier_registry_fetch_seconds_sum {}",
            s.registry_latency_sum
        );
        let _ = writeln!(
            out,
            "cdc_verifier_registry_fetch_seconds_count {}",
            s.registry_latency_count
        );
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_registry_unavailable 1 while the schema registry is unavailable (its last answer was an error, or not to be trusted): partitions needing a new schema wait.\n# TYPE cdc_verifier_registry_unavailable gauge\ncdc_verifier_registry_unavailable {}",
            u8::from(s.registry_unavailable_now)
        );
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_registry_unavailable_total Schema fetches that found the registry unavailable, by reason.\n# TYPE cdc_verifier_registry_unavailable_total counter"
        );
        for (why, n) in Unavailability::ALL.iter().zip(s.registry_unavailable) {
            let _ = writeln!(
                out,
                "cdc_verifier_registry_unavailable_total{{reason=\"{}\"}} {n}",
                why.label()
            );
        }
        for (name, help, v) in [
            (
                "cdc_verifier_open_windows",
                "Windows open on the primary, not yet compared by every replica.",
                s.open_windows,
            ),
            (
                "cdc_verifier_parked_records",
                "Replica records held until the primary passes their position.",
                s.parked_records,
            ),
            (
                "cdc_verifier_paused_partitions",
                "Partitions paused while the schema registry is unavailable.",
                s.paused_partitions,
            ),
            (
                "cdc_verifier_shards_owned",
                "Shards of tables this instance verifies ([scale]; 0 when it verifies every table alone, or stands by).",
                s.shards_owned,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_arrival_behind_max_seconds The most a record arrived stamped before the time its partition was known to be read through; verify.publish-skew-ms must exceed it.\n# TYPE cdc_verifier_arrival_behind_max_seconds gauge\ncdc_verifier_arrival_behind_max_seconds {}",
            s.arrival_behind_max_ms.max(0) as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_publish_skew_seconds The producers' skew allowed for now (verify.publish-skew-ms, or more when records were seen to arrive later).\n# TYPE cdc_verifier_publish_skew_seconds gauge\ncdc_verifier_publish_skew_seconds {}",
            s.publish_skew_ms as f64 / 1000.0
        );
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_record_age_seconds How long after their timestamp records were read, over the last second (the floor under detection time).\n# TYPE cdc_verifier_record_age_seconds summary"
        );
        for (q, ms) in s.record_age_ms {
            let _ = writeln!(
                out,
                "cdc_verifier_record_age_seconds{{quantile=\"{q}\"}} {}",
                ms as f64 / 1000.0
            );
        }
        for (name, help, v) in [
            (
                "cdc_verifier_dead_lettered_total",
                "Undecodable records on the dead-letter topic, acknowledged by Kafka (truncated ones included).",
                s.outputs.acked[Output::DeadLetter as usize],
            ),
            (
                "cdc_verifier_alerts_published_total",
                "Episode records (open, update, close) on the alert topic, acknowledged by Kafka.",
                s.outputs.acked[Output::Alert as usize],
            ),
            (
                "cdc_verifier_details_published_total",
                "Verdicts on the detail topic (alerts.detail-topic), acknowledged by Kafka.",
                s.outputs.acked[Output::Detail as usize],
            ),
            (
                "cdc_verifier_dead_letters_truncated_total",
                "Dead letters too large for Kafka, sent truncated (header cdc-verifier.truncated) or by their coordinates only.",
                s.outputs.truncated,
            ),
            (
                "cdc_verifier_commits_total",
                "Offset commits the group coordinator accepted.",
                s.commits,
            ),
            (
                "cdc_verifier_commit_failures_total",
                "Offset commits that failed (tried again with growing pauses).",
                s.commit_failures,
            ),
            (
                "cdc_verifier_shard_handoffs_total",
                "Times this instance handed its shards of tables back to its group ([scale]): another instance joined or left.",
                s.shard_handoffs,
            ),
            (
                "cdc_verifier_reach_taken_total",
                "How far a stream has written, as other instances sharing the tables read it, taken in ([scale]).",
                s.reach_taken,
            ),
            (
                "cdc_verifier_reach_refused_total",
                "The same, refused: positions of an origin the two instances order otherwise, or a stream not configured here.",
                s.reach_refused,
            ),
            (
                "cdc_verifier_late_records_total",
                "Records that came after their window was compared (later than verify.publish-skew-ms allows): not verified.",
                s.late_records,
            ),
            (
                "cdc_verifier_origins_total",
                "GTID origins (server uuids, MariaDB domains) positions came from: a failover adds one.",
                s.origins,
            ),
            (
                "cdc_verifier_origin_returns_total",
                "GTID origins that came back after a later one (failbacks): their new transactions are ordered after it.",
                s.origin_returns,
            ),
            (
                "cdc_verifier_alertmanager_posts_total",
                "Posts of episodes to Alertmanager (alerts.alertmanager-url) it accepted.",
                s.alertmanager_posts,
            ),
            (
                "cdc_verifier_alertmanager_failures_total",
                "Posts of episodes to Alertmanager that failed, each try counted: kept and tried again with growing pauses.",
                s.alertmanager_failures,
            ),
            (
                "cdc_verifier_key_drills_total",
                "Re-reads of a mismatched window that named its keys in its episode.",
                s.key_drills,
            ),
            (
                "cdc_verifier_key_drill_failures_total",
                "Re-reads of a mismatched window that failed or were refused at alerts.drill-max-records: the episode says keys_truncated.",
                s.key_drill_failures,
            ),
            (
                "cdc_verifier_mismatches_withdrawn_total",
                "Mismatches not published: records that came late (a connector writing again after a restart) made them whole.",
                s.withdrawn,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_output_delivery_failures_total Failed deliveries of alerts and dead letters, each try counted: the record is kept and tried again, and offsets are not committed past it.\n# TYPE cdc_verifier_output_delivery_failures_total counter"
        );
        for o in Output::ALL {
            let _ = writeln!(
                out,
                "cdc_verifier_output_delivery_failures_total{{output=\"{}\"}} {}",
                o.label(),
                s.outputs.failed[o as usize]
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_output_pending Alerts and dead letters waiting for Kafka's acknowledgement.\n# TYPE cdc_verifier_output_pending gauge"
        );
        for o in Output::ALL {
            let _ = writeln!(
                out,
                "cdc_verifier_output_pending{{output=\"{}\"}} {}",
                o.label(),
                s.outputs.pending[o as usize]
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdc_verifier_degraded 1 while the service is degraded for a reason: output_delivery (alerts or dead letters not delivered: kept, tried again, offsets held) or commit (offsets not committed: tried again).\n# TYPE cdc_verifier_degraded gauge"
        );
        for (reason, on) in [
            ("output_delivery", s.degraded_delivery),
            ("commit", s.degraded_commit),
        ] {
            let _ = writeln!(
                out,
                "cdc_verifier_degraded{{reason=\"{reason}\"}} {}",
                u8::from(on)
            );
        }
        render_topics(&mut out, &s);
        out
    }
}

/// The topics found, deleted, and records lost to retention.
fn render_topics(out: &mut String, s: &Snapshot) {
    let _ = writeln!(
        out,
        "# HELP cdc_verifier_topics_read Topics read, by stream (found at start or since; deleted ones not counted).\n# TYPE cdc_verifier_topics_read gauge"
    );
    for (stream, n) in &s.topics_read {
        let _ = writeln!(out, "cdc_verifier_topics_read{{stream=\"{stream}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP cdc_verifier_topic_deleted 1 while a topic once read is deleted (its stream is not ready).\n# TYPE cdc_verifier_topic_deleted gauge"
    );
    for ((stream, topic), gone) in &s.topics_deleted {
        let _ = writeln!(
            out,
            "cdc_verifier_topic_deleted{{stream=\"{stream}\",topic=\"{topic}\"}} {}",
            u8::from(*gone)
        );
    }
    let _ = writeln!(
        out,
        "# HELP cdc_verifier_records_skipped_total Records deleted (retention) before they were read: never verified.\n# TYPE cdc_verifier_records_skipped_total counter"
    );
    for ((topic, partition), n) in &s.records_skipped {
        let _ = writeln!(
            out,
            "cdc_verifier_records_skipped_total{{topic=\"{topic}\",partition=\"{partition}\"}} {n}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_keep_growing_when_the_pipeline_is_started_again() {
        let m = Metrics::default();
        let table = ("primary".to_string(), "orders".to_string());
        let first = |events: u64, open_windows: u64| Snapshot {
            tables: [(
                table.clone(),
                TableCounters {
                    events,
                    ..TableCounters::default()
                },
            )]
            .into(),
            open_windows,
            commits: events / 10,
            ..Snapshot::default()
        };
        m.publish(first(500, 7));
        m.carry_over();
        // Until the next pipeline says anything: what the last one counted, no gauge.
        let between = m.render();
        assert!(
            between.contains("cdc_verifier_events_total{stream=\"primary\",table=\"orders\"} 500"),
            "{between}"
        );
        m.publish(first(30, 2));
        let text = m.render();
        assert!(
            text.contains("cdc_verifier_events_total{stream=\"primary\",table=\"orders\"} 530"),
            "{text}"
        );
        assert!(text.contains("cdc_verifier_commits_total 53"), "{text}");
        assert!(text.contains("cdc_verifier_open_windows 2"), "{text}");
    }

    #[test]
    fn registry_unavailability_is_a_gauge_and_a_counter_by_reason() {
        let m = Metrics::default();
        let mut s = Snapshot {
            registry_unavailable_now: true,
            ..Snapshot::default()
        };
        s.registry_unavailable[Unavailability::NotTheRegistry as usize] = 3;
        m.publish(s);
        let text = m.render();
        assert!(
            text.contains("\ncdc_verifier_registry_unavailable 1\n"),
            "{text}"
        );
        assert!(
            text.contains("cdc_verifier_registry_unavailable_total{reason=\"not_the_registry\"} 3")
        );
        assert!(
            text.contains("cdc_verifier_registry_unavailable_total{reason=\"lost_schemas\"} 0")
        );
    }

    #[test]
    fn records_stamped_in_the_future_are_a_counter_by_stream_and_table() {
        let m = Metrics::default();
        let mut s = Snapshot::default();
        s.tables.insert(
            ("replica-1".into(), "orders".into()),
            TableCounters {
                future: 2,
                ..TableCounters::default()
            },
        );
        m.publish(s);
        let text = m.render();
        assert!(
            text.contains("# TYPE cdc_verifier_future_records_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "cdc_verifier_future_records_total{stream=\"replica-1\",table=\"orders\"} 2"
            ),
            "{text}"
        );
    }

    #[test]
    fn output_delivery_and_commits_are_counted_and_degradation_is_a_gauge_by_reason() {
        let m = Metrics::default();
        let mut s = Snapshot {
            degraded_delivery: true,
            commit_failures: 2,
            ..Snapshot::default()
        };
        s.outputs.acked = [5, 1, 7];
        s.outputs.failed = [3, 0, 0];
        s.outputs.pending = [4, 0, 0];
        m.publish(s);
        let text = m.render();
        for line in [
            "cdc_verifier_alerts_published_total 5",
            "cdc_verifier_dead_lettered_total 1",
            "cdc_verifier_details_published_total 7",
            "cdc_verifier_output_delivery_failures_total{output=\"alerts\"} 3",
            "cdc_verifier_output_pending{output=\"alerts\"} 4",
            "cdc_verifier_degraded{reason=\"output_delivery\"} 1",
            "cdc_verifier_degraded{reason=\"commit\"} 0",
            "cdc_verifier_commit_failures_total 2",
        ] {
            assert!(text.contains(&format!("\n{line}\n")), "{line} in {text}");
        }
    }
}
