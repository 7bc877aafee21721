//! Committing: per partition, the offsets below which every record is settled, with the
//! episodes in progress riding on the first partition's metadata; and the drain at shutdown.

use std::time::{Duration, Instant};

use anyhow::Context;
use cdc_verifier_kafka::consume::Commit;

use super::state::Service;
use super::telemetry::peak_rss_mib;

impl Service {
    /// Commits, per partition, the offsets below which every record is settled: its windows
    /// compared by every replica, its alerts acknowledged by Kafka.
    pub(super) fn commit(&mut self) -> anyhow::Result<()> {
        let mut offsets = Vec::new();
        let mut changed = Vec::new();
        let checkpoint = serde_json::to_string(&self.verifier.engine.checkpoint())?;
        let checkpoint_changed = checkpoint != self.last_checkpoint;
        for (i, p) in self.partitions.iter().enumerate() {
            let mut upto = self
                .verifier
                .engine
                .pending_offset(p.engine_topic, p.partition)
                .unwrap_or(p.next)
                .min(p.next);
            if let Some((r, _)) = p.held.front() {
                upto = upto.min(r.offset);
            }
            let anchor = i == 0;
            if upto > p.committed || (anchor && checkpoint_changed) {
                let upto = upto.max(p.committed);
                offsets.push(Commit {
                    topic: &self.topic_names[p.topic_index as usize],
                    partition: p.partition,
                    offset: upto,
                    // Kafka keeps up to 4 KiB of metadata per partition by default.
                    metadata: anchor.then(|| {
                        if checkpoint.len() <= 4000 {
                            checkpoint.clone()
                        } else {
                            String::new()
                        }
                    }),
                });
                changed.push((i, upto));
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        // Every alert and dead letter produced so far must be acknowledged first.
        if let Err(e) = self.producer.wait_in_flight(Duration::from_secs(30)) {
            tracing::warn!(error = %e, "alerts not yet acknowledged; offsets not committed");
            return Ok(());
        }
        self.consumer
            .commit(&offsets)
            .context("cannot commit offsets")?;
        for (i, upto) in changed {
            self.partitions[i].committed = upto;
        }
        self.last_checkpoint = checkpoint;
        self.commits += 1;
        Ok(())
    }

    /// Stops: verifies the batches already fetched, compares what can be compared (all
    /// windows when `bounded`), publishes, commits.
    pub(super) fn drain(&mut self, bounded: bool) -> anyhow::Result<()> {
        self.batches.stop();
        let deadline = Instant::now() + Duration::from_secs(self.cfg.service.shutdown_timeout_s);
        // Batches already fetched are verified; nothing more is read.
        while let Ok(Some(batch)) = self.batches.recv(Duration::from_millis(100)) {
            self.process(&batch)?;
            if Instant::now() > deadline {
                break;
            }
        }
        let _ = self.batches.join();
        self.read_end_offsets_now();
        self.advance()?;
        if bounded {
            self.verifier
                .finish(&mut self.src)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            self.publish_new()?;
        }
        self.commit()?;
        self.producer.wait_in_flight(Duration::from_secs(10)).ok();
        self.publish_metrics();
        if let (Some(first), Some((at, records))) = (self.first_record_at, self.caught_up_at) {
            let secs = at.duration_since(first).as_secs_f64().max(1e-6);
            tracing::info!(
                records,
                seconds = secs,
                rate = records as f64 / secs,
                "caught up: {records} records in {secs:.3} s ({:.0} records/s)",
                records as f64 / secs
            );
        }
        let e = &self.verifier.engine;
        tracing::info!(
            events = self.verifier.records,
            alerts = self.published,
            dead_lettered = self.dead_lettered,
            late = e.late_records(),
            arrival_behind_max_ms = e.stats().arrival_behind_max_ms,
            record_age_p50_ms = self.record_age.value_at_quantile(0.5),
            record_age_p99_ms = self.record_age.value_at_quantile(0.99),
            peak_rss_mib = peak_rss_mib(),
            "stopped cleanly"
        );
        Ok(())
    }
}
