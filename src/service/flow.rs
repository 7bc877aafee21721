//! Reading the partitions: feeding batches to the verifier, holding a partition's records
//! while the registry is away, pausing replicas read far ahead of the primary, and learning
//! from the end offsets which partitions are read through which time.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use cdc_verifier_core::{Ingested, Progress};
use cdc_verifier_kafka::batches::{Batch, Rec};

use super::state::{Service, wall_ms};
use crate::verify::SourceRecord;

impl Service {
    /// Feeds a batch to the verifier, in order per partition; a partition whose record finds
    /// the registry away is held from there on.
    pub(super) fn process(&mut self, batch: &Batch) -> anyhow::Result<()> {
        if self.first_record_at.is_none() && !batch.recs.is_empty() {
            self.first_record_at = Some(Instant::now());
        }
        let wall = wall_ms();
        self.verifier.engine.set_wall_clock(wall);
        // Since start: counted from the first time everything was read, so that the backlog
        // found at start does not count as delay.
        let steady = self.caught_up_at.is_some();
        for rec in &batch.recs {
            if rec.timestamp_ms > 0 {
                let age = (wall - rec.timestamp_ms).clamp(1, 86_400_000) as u64;
                if steady {
                    self.record_age.saturating_record(age);
                }
                self.record_age_recent.saturating_record(age);
            }
        }
        for rec in &batch.recs {
            let Some(pi) = self.part_of(rec.topic, rec.partition) else {
                continue;
            };
            if rec.offset < self.partitions[pi].next || self.partitions[pi].gone {
                continue; // already fed (a re-fetch after resume), or its topic deleted
            }
            // (A record stamped in the future moves neither the engine's clock nor this.)
            if rec.timestamp_ms > self.max_record_ts
                && !self.verifier.engine.in_future(rec.timestamp_ms)
            {
                self.max_record_ts = rec.timestamp_ms;
                self.max_record_seen = Instant::now();
            }
            let partition = rec.partition;
            if !self.partitions[pi].held.is_empty() {
                self.hold(pi, rec, batch);
                continue;
            }
            let (key, value) = (batch.bytes(rec.key), batch.bytes(rec.value));
            match self
                .verifier
                .feed(&source_record(rec, key, value), &mut self.src)
            {
                Ok(r) => {
                    // A configuration that cannot work with these records: stop and say so,
                    // rather than dead-letter them all or compare what does not align
                    // (nothing is committed: after the fix, they are read again).
                    if let Some(why) = self.verifier.engine.misconfigured() {
                        anyhow::bail!("{why}");
                    }
                    self.partitions[pi].next = rec.offset + 1;
                    if let Some(Ingested::Poison(d)) = r {
                        self.dead_letter(rec, key, value, &d);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = %self.topic_names[rec.topic as usize], partition, "schema registry unavailable: pausing the partition until it answers");
                    self.hold(pi, rec, batch);
                }
            }
        }
        self.publish_new()
    }

    fn hold(&mut self, pi: usize, rec: &Rec, batch: &Batch) {
        let mut bytes = Vec::new();
        let mut r = *rec;
        r.key = batch.bytes(rec.key).map(|k| {
            bytes.extend_from_slice(k);
            (0, bytes.len() as u32)
        });
        r.value = batch.bytes(rec.value).map(|v| {
            let a = bytes.len() as u32;
            bytes.extend_from_slice(v);
            (a, bytes.len() as u32)
        });
        let p = &mut self.partitions[pi];
        p.held.push_back((r, bytes));
        p.next = rec.offset + 1;
        if !p.paused {
            p.paused = true;
            let topic = self.topic_names[p.topic_index as usize].as_str();
            if let Err(e) = self.consumer.pause([(topic, p.partition)]) {
                tracing::warn!(error = %e, "cannot pause partition");
            }
            if self.retry_at.is_none() {
                self.retry_at = Some(Instant::now() + self.backoff);
            }
        }
    }

    /// Offers held records again once the retry time has come; resumes their partitions when
    /// all went through.
    pub(super) fn retry_held(&mut self) -> anyhow::Result<()> {
        let Some(at) = self.retry_at else {
            return Ok(());
        };
        if Instant::now() < at {
            return Ok(());
        }
        let mut still_down = false;
        for pi in 0..self.partitions.len() {
            while let Some((rec, bytes)) = self.partitions[pi].held.front() {
                let (rec, bytes) = (*rec, bytes.clone());
                let key = rec.key.map(|(a, b)| &bytes[a as usize..b as usize]);
                let value = rec.value.map(|(a, b)| &bytes[a as usize..b as usize]);
                match self
                    .verifier
                    .feed(&source_record(&rec, key, value), &mut self.src)
                {
                    Ok(r) => {
                        self.partitions[pi].held.pop_front();
                        if let Some(Ingested::Poison(d)) = r {
                            self.dead_letter(&rec, key, value, &d);
                        }
                    }
                    Err(_) => {
                        still_down = true;
                        break;
                    }
                }
            }
            if still_down {
                break;
            }
            let p = &mut self.partitions[pi];
            if p.paused && p.held.is_empty() {
                p.paused = false;
                // Resume where it was paused: the fetcher may have buffered past it.
                let topic = self.topic_names[p.topic_index as usize].as_str();
                self.consumer
                    .resume_at([(topic, p.partition, p.next)])
                    .context("cannot resume partition")?;
                tracing::info!(topic = %self.topic_names[p.topic_index as usize], partition = p.partition, "schema registry answers again: partition resumed");
            }
        }
        if still_down {
            // Exponential backoff with jitter, capped.
            let max = Duration::from_millis(self.cfg.registry.retry_max_ms);
            self.backoff = (self.backoff * 2).min(max);
            let jitter = Duration::from_millis(
                (wall_ms() as u64 * 7919) % (self.backoff.as_millis() as u64 / 4 + 1),
            );
            self.retry_at = Some(Instant::now() + self.backoff + jitter);
        } else {
            self.retry_at = None;
            self.backoff = Duration::from_millis(self.cfg.registry.retry_initial_ms);
        }
        self.publish_new()
    }

    /// Flow control: replica records read far ahead of the primary wait in memory; past a
    /// bound the replicas' partitions pause until the primary catches up.
    pub(super) fn throttle(&mut self) -> anyhow::Result<()> {
        const HIGH: usize = 200_000;
        const LOW: usize = 50_000;
        let parked = self.verifier.engine.parked();
        let want = if self.throttled {
            parked > LOW
        } else {
            parked > HIGH
        };
        if want == self.throttled {
            return Ok(());
        }
        self.throttled = want;
        let primary = &self.cfg.primary.topic_prefix;
        let replicas = self
            .partitions
            .iter()
            .map(|p| (self.topic_names[p.topic_index as usize].as_str(), p))
            .filter(|(t, p)| !p.paused && !p.gone && !t.starts_with(primary.as_str()));
        if want {
            tracing::debug!(parked, "replicas far ahead of the primary: pausing them");
            self.consumer
                .pause(replicas.map(|(t, p)| (t, p.partition)))
                .context("cannot pause replica partitions")?;
        } else {
            self.consumer
                .resume_at(replicas.map(|(t, p)| (t, p.partition, p.next)))
                .context("cannot resume replica partitions")?;
        }
        Ok(())
    }

    /// Asks for the end offsets every `kafka.end-offsets-interval-ms`, with the clock reading
    /// of now, and applies an answer when one has come.
    pub(super) fn ask_end_offsets(&mut self) {
        let every = Duration::from_millis(self.cfg.kafka.end_offsets_interval_ms);
        let engine = &self.verifier.engine;
        self.end_offsets.ask_every(every, || engine.now_ms());
        match self.end_offsets.answer() {
            Some((as_of, Ok(ends))) => {
                if self.end_offsets_failed {
                    // The cluster could not be reached: producers held their records meanwhile,
                    // and deliver them now, as late as the outage was long.
                    self.end_offsets_failed = false;
                    let outage = self.end_offsets_ok.elapsed().as_millis() as i64;
                    self.verifier.engine.allow_late(outage);
                    tracing::info!(
                        outage_ms = outage,
                        "the partitions' end offsets answer again: records written during the outage may come up to {outage} ms late, and are waited for"
                    );
                }
                self.end_offsets_ok = std::time::Instant::now();
                self.apply_end_offsets(as_of, &ends)
            }
            Some((_, Err(e))) => {
                self.end_offsets_failed = true;
                let outage = self.end_offsets_ok.elapsed().as_millis() as i64;
                self.verifier.engine.allow_late(outage);
                tracing::warn!(error = %e, "cannot read the partitions' end offsets; quiet partitions hold their streams back until it answers");
            }
            None => {}
        }
    }

    /// A partition read to the end offset the broker gave is complete through the clock
    /// reading taken when it was asked; one with records still to read holds its stream back.
    pub(super) fn apply_end_offsets(&mut self, as_of: i64, ends: &[(String, u32, i64)]) {
        let mut end: HashMap<(u32, u32), i64> = HashMap::with_capacity(ends.len());
        for (t, p, o) in ends {
            if let Some(i) = self.topic_names.iter().position(|n| n == t) {
                end.insert((i as u32, *p), *o);
            }
        }
        let mut all = !self.partitions.is_empty();
        for p in self.partitions.iter_mut().filter(|p| !p.gone) {
            let e = end.get(&(p.topic_index, p.partition)).copied();
            if let Some(e) = e {
                p.end = e;
            }
            let read = p.held.is_empty() && e.is_some_and(|e| p.next >= e);
            all &= read;
            let progress = if read && as_of != i64::MIN {
                Progress::CaughtUpAt(as_of)
            } else {
                Progress::Reading
            };
            self.verifier
                .engine
                .set_progress(p.engine_topic, p.partition, progress);
        }
        self.all_read = all;
        if all
            && self.caught_up_at.is_none()
            && let Some(first) = self.first_record_at
        {
            let records = self.verifier.records;
            self.caught_up_at = Some((Instant::now(), records));
            let secs = first.elapsed().as_secs_f64().max(1e-6);
            let st = &self.src.stats;
            tracing::info!(
                records,
                seconds = secs,
                schemas_fetched = st.fetches,
                schema_fetch_ms = st.fetch_time.as_millis() as u64,
                "read everything: {records} records in {secs:.3} s"
            );
        }
    }

    /// Asks for the end offsets and waits for the answer (at shutdown).
    pub(super) fn read_end_offsets_now(&mut self) {
        let as_of = self.verifier.engine.now_ms();
        match self.end_offsets.ask_now() {
            Ok(ends) => self.apply_end_offsets(as_of, &ends),
            Err(e) => tracing::warn!(error = %e, "cannot read the partitions' end offsets"),
        }
    }

    pub(super) fn advance(&mut self) -> anyhow::Result<()> {
        // The clock is the newest record time. When everything is read it goes on at wall
        // speed from there, so that windows close at low traffic — and verdicts depend on
        // the records, not on when they were read.
        if self.max_record_ts == i64::MIN {
            return Ok(());
        }
        let mut now = self.max_record_ts;
        if self.all_read {
            now += self.max_record_seen.elapsed().as_millis() as i64;
        }
        if let Err(e) = self.verifier.advance(now, &mut self.src) {
            tracing::warn!(error = %e, "schema registry unavailable while releasing parked records");
        }
        self.publish_new()
    }
}

/// A batch record with its bytes, as the verifier takes it.
fn source_record<'a>(
    rec: &Rec,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
) -> SourceRecord<'a> {
    SourceRecord {
        topic: rec.topic as usize,
        partition: rec.partition,
        offset: rec.offset,
        timestamp_ms: rec.timestamp_ms,
        key,
        value,
    }
}
