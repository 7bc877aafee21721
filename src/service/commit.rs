//! Committing: per partition, the offsets below which every record is settled, with the
//! episodes in progress riding on the first partition's metadata; and the drain at shutdown.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use cdc_verifier_kafka::consume::Commit;
use cdc_verifier_kafka::outbox::Output;

use super::state::{Frontier, Saved, Service, wall_ms};
use super::telemetry::peak_rss_mib;

const COMMIT_BACKOFF_INITIAL: Duration = Duration::from_millis(500);
const COMMIT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Notes the offsets settled `now` and returns the newest frontier that may be committed: one
/// whose outputs, every one numbered below its `seq`, are acknowledged (`acked`: all below it
/// are). Older frontiers are dropped.
fn settled(frontiers: &mut VecDeque<Frontier>, now: Frontier, acked: u64) -> Option<&Frontier> {
    // Nothing published between two ticks: the later one needs no more than the earlier.
    match frontiers.back_mut() {
        Some(last) if last.seq == now.seq => *last = now,
        _ => frontiers.push_back(now),
    }
    while frontiers.len() > 1 && frontiers[1].seq <= acked {
        frontiers.pop_front();
    }
    frontiers.front().filter(|f| f.seq <= acked)
}

impl Service {
    /// Commits, per partition, the offsets below which every record is settled: its windows
    /// compared by every replica, its alerts and dead letters acknowledged by Kafka. The
    /// offsets settled now are kept until every output published so far is acknowledged; a
    /// commit the broker refuses is tried again with growing pauses.
    pub(super) fn commit(&mut self) -> anyhow::Result<()> {
        self.producer.poll();
        let checkpoint = serde_json::to_string(&self.verifier.engine.checkpoint())?;
        let offsets: Vec<i64> = self
            .partitions
            .iter()
            .map(|p| {
                let mut upto = self
                    .verifier
                    .engine
                    .pending_offset(p.engine_topic, p.partition)
                    .unwrap_or(p.next)
                    .min(p.next);
                if let Some((r, _)) = p.held.front() {
                    upto = upto.min(r.offset);
                }
                upto.max(p.committed)
            })
            .collect();
        let now = Frontier {
            seq: self.producer.next_seq(),
            offsets,
            checkpoint,
        };
        let anchors = self.anchors();
        let Some(f) = settled(&mut self.frontiers, now, self.producer.acked_below()) else {
            return Ok(()); // outputs before every frontier kept are not all acknowledged yet
        };
        if self
            .commit_retry_at
            .is_some_and(|at| std::time::Instant::now() < at)
        {
            return Ok(());
        }
        let checkpoint_changed = f.checkpoint != self.last_checkpoint;
        let mut commits = Vec::new();
        let mut changed = Vec::new();
        // (Partitions found after the frontier was noted, and deleted ones, wait.)
        for (i, (p, settled)) in self.partitions.iter().zip(&f.offsets).enumerate() {
            if p.gone {
                continue;
            }
            let upto = settled.max(&p.committed);
            let anchor = anchors.contains(&i);
            if *upto > p.committed || (anchor && checkpoint_changed) {
                commits.push(Commit {
                    topic: &self.topic_names[p.topic_index as usize],
                    partition: p.partition,
                    offset: *upto,
                    // Kafka keeps up to 4 KiB of metadata per partition by default.
                    metadata: anchor.then(|| saved(&f.checkpoint)),
                });
                changed.push((i, *upto));
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        match self.consumer.commit(&commits) {
            Ok(()) => {
                let checkpoint = f.checkpoint.clone();
                for (i, upto) in changed {
                    self.partitions[i].committed = upto;
                }
                self.last_checkpoint = checkpoint;
                self.commits += 1;
                self.commit_retry_at = None;
                self.commit_backoff = COMMIT_BACKOFF_INITIAL;
                if let Some((_, since)) = self.commit_failing.take() {
                    tracing::info!(
                        seconds = since.elapsed().as_secs_f64(),
                        "committing offsets again"
                    );
                }
            }
            Err(e) => {
                self.commit_failures += 1;
                let error = e.to_string();
                if self.commit_failing.is_none() {
                    tracing::error!(
                        group = %self.cfg.kafka.group_id,
                        error,
                        "cannot commit offsets: trying again; until then a restart verifies again what was read since the last commit"
                    );
                    self.commit_failing = Some((error, std::time::Instant::now()));
                }
                self.commit_retry_at = Some(std::time::Instant::now() + self.commit_backoff);
                self.commit_backoff = (self.commit_backoff * 2).min(COMMIT_BACKOFF_MAX);
            }
        }
        Ok(())
    }

    /// A partition read again from `offset` (its topic created again): nothing above it is
    /// committed, by the frontiers noted before either.
    pub(super) fn rewind(&mut self, pi: usize, offset: i64) {
        self.partitions[pi].committed = offset;
        for f in &mut self.frontiers {
            if let Some(o) = f.offsets.get_mut(pi) {
                *o = (*o).min(offset);
            }
        }
    }

    /// Stops: verifies the batches already fetched, compares what can be compared (all
    /// windows when `bounded`), publishes, commits.
    pub(super) fn drain(&mut self, bounded: bool) -> anyhow::Result<()> {
        self.batches.stop();
        let deadline = Instant::now() + Duration::from_secs(self.cfg.service.shutdown_timeout_s);
        // Batches already fetched are verified; nothing more is read.
        while let Ok(Some(batch)) = self.batches.recv(Duration::from_millis(100)) {
            self.health.beat();
            self.process(&batch)?;
            if Instant::now() > deadline {
                break;
            }
        }
        let _ = self.batches.join();
        self.read_end_offsets_now();
        self.advance()?;
        // What was read here is said before the tables go elsewhere (the next holder of a
        // quiet table learns from it that the streams moved on).
        self.exchange_reach();
        if bounded {
            self.verifier
                .finish(&mut self.src)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        } else {
            self.verifier.release_starts();
        }
        self.publish_new()?;
        self.tell_lag()?;
        self.say_lag(true);
        if bounded {
            self.await_lag(deadline)?;
        }
        // Where the open episodes stand, then every record acknowledged, then the offsets
        // behind them committed.
        self.finish_drills(Duration::from_secs(10))?;
        self.flush_episodes()?;
        if let Some(w) = &mut self.webhook {
            w.stop(Duration::from_secs(5));
        }
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(5));
        let delivered = self.producer.wait(left);
        self.commit_retry_at = None;
        self.commit()?;
        self.publish_metrics();
        if !delivered {
            let f = self.producer.failing().cloned();
            let (topic, error) = f
                .map_or((String::new(), "not acknowledged in time".into()), |f| {
                    (f.topic, f.error)
                });
            anyhow::bail!(
                "{} alerts and dead letters were not acknowledged by Kafka before stopping \
                 ({topic}: {error}); offsets were committed only below their records, which the \
                 next start verifies again",
                self.producer.pending()
            );
        }
        if let Some((error, _)) = &self.commit_failing {
            anyhow::bail!("the last offsets could not be committed: {error}");
        }
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
        if self.exchange.is_some() {
            tracing::info!(
                records = self.reach_said.0,
                bytes = self.reach_said.1,
                taken = self.reach_taken,
                refused = self.reach_refused,
                "reach said: {} records, {} bytes",
                self.reach_said.0,
                self.reach_said.1
            );
        }
        let e = &self.verifier.engine;
        tracing::info!(
            events = self.verifier.records,
            alerts = self.producer.stats().acked[Output::Alert as usize],
            dead_lettered = self.producer.stats().acked[Output::DeadLetter as usize],
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

/// The checkpoint as committed, stamped with the time (empty when over Kafka's default 4 KiB
/// of metadata per partition).
fn saved(checkpoint: &str) -> String {
    let Ok(checkpoint) = serde_json::from_str(checkpoint) else {
        return String::new();
    };
    let s = serde_json::to_string(&Saved {
        saved_ms: wall_ms(),
        checkpoint,
    })
    .unwrap_or_default();
    if s.len() <= 4000 { s } else { String::new() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: u64, offset: i64) -> Frontier {
        Frontier {
            seq,
            offsets: vec![offset],
            checkpoint: String::new(),
        }
    }

    #[test]
    fn offsets_wait_for_every_output_published_before_them() {
        let mut fs = VecDeque::new();
        // Tick 1: nothing published yet; offset 10 settled.
        assert_eq!(settled(&mut fs, at(0, 10), 0).unwrap().offsets, [10]);
        // Tick 2: alerts 0 and 1 published, not acknowledged; offset 20 settled.
        assert_eq!(settled(&mut fs, at(2, 20), 0).unwrap().offsets, [10]);
        // Tick 3: alert 0 acknowledged, 1 not; alert 2 published; offset 30 settled.
        assert_eq!(settled(&mut fs, at(3, 30), 1).unwrap().offsets, [10]);
        // Tick 4: nothing new published (coalesced with tick 3), still 1 unacknowledged.
        assert_eq!(settled(&mut fs, at(3, 35), 1).unwrap().offsets, [10]);
        assert_eq!(fs.len(), 3);
        // Alerts 0 and 1 acknowledged: tick 2's offsets; 2 still out.
        assert_eq!(settled(&mut fs, at(3, 40), 2).unwrap().offsets, [20]);
        // Everything acknowledged: the newest.
        assert_eq!(settled(&mut fs, at(3, 50), 3).unwrap().offsets, [50]);
        assert_eq!(fs.len(), 1);
    }

    #[test]
    fn nothing_is_committable_while_the_first_outputs_are_out() {
        let mut fs = VecDeque::new();
        fs.push_back(at(1, 5));
        assert!(settled(&mut fs, at(2, 10), 0).is_none());
    }
}
