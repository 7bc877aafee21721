//! The streams' topics: found at start and looked for again every
//! `service.discovery-interval-s`. A table's topics that appear (Debezium creates a table's
//! topic at its first change) are added to the verifier and read, once every stream has one
//! or after `verify.silent-after-ms` without; a partition added to a topic is read; a deleted
//! topic is reported and no longer read (nor holds its stream back), and is read from its
//! start when created again. A partition whose offset fell out of range is handled here too:
//! records deleted before they were read (retention) are counted and reading goes on from the
//! first offset left; a topic created again under the same name is read from its start.

use std::collections::{BTreeMap, HashSet};
use std::ffi::CString;
use std::time::{Duration, Instant};

use cdc_verifier_core::Progress;
use cdc_verifier_kafka::batches::OffsetReset;
use cdc_verifier_kafka::consume::{Committed, ConsumeError};

use super::state::{PartState, Saved, Service};

/// How long a broker call made from the loop may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

impl Service {
    /// Looks at the cluster's topics when `service.discovery-interval-s` has passed.
    pub(super) fn discover_every(&mut self) {
        if Instant::now() >= self.next_discovery {
            self.discover();
        }
    }

    /// Looks at the cluster's topics now: new, grown, deleted, back again.
    pub(super) fn discover(&mut self) {
        let every = Duration::from_secs(self.cfg.service.discovery_interval_s);
        self.next_discovery = Instant::now() + every;
        for r in std::mem::take(&mut self.resets_pending) {
            self.offset_reset(r);
        }
        let listing = match self.consumer.list_topics(CALL_TIMEOUT) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the cluster's topics: trying again in {every:?}");
                return;
            }
        };
        for ti in 0..self.topic_names.len() {
            let name = &self.topic_names[ti];
            match listing.topics.iter().find(|(t, _)| t == name) {
                None if !listing.names(name) && !self.topic_gone[ti] => self.topic_deleted(ti),
                Some((_, n)) if self.topic_gone[ti] || *n as usize > self.part_index[ti].len() => {
                    let (n, back) = (*n, self.topic_gone[ti]);
                    if let Err(e) = self.read_partitions(ti, n, back) {
                        tracing::warn!(error = %e, topic = %self.topic_names[ti], "cannot read the topic's partitions yet: trying again in {every:?}");
                    }
                }
                _ => {}
            }
        }
        let adding = self.tables_to_add(&listing.topics);
        if !adding.is_empty()
            && let Err(e) = self.add_topics(&adding)
        {
            tracing::warn!(error = %e, "cannot read new topics yet: trying again in {every:?}");
        }
        self.reassign_missing();
        self.discoveries += 1;
        for (i, s) in self.cfg.streams().enumerate() {
            if !(0..self.topic_names.len())
                .any(|t| self.topic_routes[t].0 == i && !self.topic_gone[t])
            {
                tracing::info!(stream = %s.name, prefix = %s.topic_prefix, "waiting for topics: stream `{}` has no topic with prefix `{}` yet", s.name, s.topic_prefix);
            }
        }
        self.update_readiness();
    }

    /// The new topics of configured streams to read now: a table's once every stream has a
    /// topic for it (so that all its streams join at the same position), or once it has
    /// waited `verify.silent-after-ms`; at the first look, all.
    fn tables_to_add(&mut self, topics: &[(String, u32)]) -> Vec<(String, u32)> {
        let known: HashSet<&str> = self.topic_names.iter().map(String::as_str).collect();
        let mut by_table: BTreeMap<String, Vec<(usize, String, u32)>> = BTreeMap::new();
        for (t, n) in topics.iter().filter(|(t, _)| !known.contains(t.as_str())) {
            if let Some((stream, table)) = self.cfg.route(t)
                && self.owns(&table)
            {
                by_table
                    .entry(table)
                    .or_default()
                    .push((stream, t.clone(), *n));
            }
        }
        let grace = Duration::from_millis(self.cfg.verify.timing.silent_after_ms.max(0) as u64);
        let mut out = Vec::new();
        for (table, new) in by_table {
            let has = |i: usize| {
                new.iter().any(|(s, _, _)| *s == i)
                    || self
                        .topic_routes
                        .iter()
                        .any(|(s, t)| *s == i && *t == table)
            };
            let every_stream = self
                .cfg
                .streams()
                .enumerate()
                .all(|(i, s)| has(i) || !(s.tables.is_empty() || s.tables.contains(&table)));
            let known_table = self.topic_routes.iter().any(|(_, t)| *t == table);
            let since = *self
                .pending_tables
                .entry(table.clone())
                .or_insert_with(Instant::now);
            if self.discoveries == 0 || known_table || every_stream || since.elapsed() >= grace {
                self.pending_tables.remove(&table);
                out.extend(new.into_iter().map(|(_, t, n)| (t, n)));
            } else {
                tracing::debug!(
                    table,
                    "a table's topics exist on some streams only: waiting for the others"
                );
            }
        }
        out
    }

    /// Reads new topics from their committed offsets (their first offsets when none). The
    /// first topics found bring the episodes of the last commit with them.
    fn add_topics(&mut self, topics: &[(String, u32)]) -> Result<(), ConsumeError> {
        let parts: Vec<(&str, u32)> = topics
            .iter()
            .flat_map(|(t, n)| (0..*n).map(move |p| (t.as_str(), p)))
            .collect();
        let committed = self.consumer.committed(&parts, CALL_TIMEOUT)?;
        let starts = self.start_offsets(&parts, &committed)?;
        let first = self.topic_names.is_empty();
        let mut assign = Vec::with_capacity(parts.len());
        let mut k = 0;
        for (t, n) in topics {
            let ti = self.verifier.add_topic(&self.cfg, t, *n);
            let engine_topic = self
                .verifier
                .route(ti)
                .expect("a configured stream's topic");
            self.topic_names.push(t.clone());
            self.topic_cnames
                .push(CString::new(t.as_str()).expect("topic names have no NUL"));
            self.topic_routes
                .push(self.cfg.route(t).expect("a configured stream's topic"));
            self.topic_gone.push(false);
            let mut idx = Vec::with_capacity(*n as usize);
            for p in 0..*n {
                idx.push(self.partitions.len());
                self.partitions
                    .push(PartState::new(ti as u32, p, engine_topic, starts[k]));
                assign.push((ti, p, starts[k]));
                k += 1;
            }
            self.part_index.push(idx);
            self.batches.add_topic(t, ti as u32);
        }
        if first {
            self.restore_checkpoint(&parts, &committed);
        }
        self.log_added(topics);
        let names = &self.topic_names;
        self.consumer.add(
            assign
                .iter()
                .map(|(ti, p, o)| (names[*ti].as_str(), *p, *o)),
        )
    }

    /// Per partition, its committed offset, or its first offset when none was committed.
    fn start_offsets(
        &self,
        parts: &[(&str, u32)],
        committed: &[Committed],
    ) -> Result<Vec<i64>, ConsumeError> {
        parts
            .iter()
            .zip(committed)
            .map(|((t, p), c)| match c.offset {
                Some(o) => Ok(o),
                None => Ok(self.consumer.watermarks(t, *p, CALL_TIMEOUT)?.0),
            })
            .collect()
    }

    /// The episodes in progress at the last commit: the newest checkpoint committed (sharing
    /// shards, each shard's own, merged: a shard may come from another instance).
    fn restore_checkpoint(&mut self, parts: &[(&str, u32)], committed: &[Committed]) {
        let saved: Vec<(&str, Saved)> = parts
            .iter()
            .zip(committed)
            .filter(|(_, c)| !c.metadata.is_empty())
            .filter_map(
                |((t, _), c)| match serde_json::from_str::<Saved>(&c.metadata) {
                    Ok(s) => Some((*t, s)),
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring unreadable checkpoint metadata");
                        None
                    }
                },
            )
            .collect();
        let checkpoint = match &self.shards {
            None => saved
                .into_iter()
                .max_by_key(|(_, s)| s.saved_ms)
                .map(|(_, s)| s.checkpoint),
            Some(shards) => {
                let tables: Vec<(&str, String)> = saved
                    .iter()
                    .filter_map(|(t, _)| Some((*t, self.cfg.route(t)?.1)))
                    .collect();
                let table_of = |t: &str| {
                    tables
                        .iter()
                        .find(|(n, _)| *n == t)
                        .map(|(_, table)| table.clone())
                };
                super::shards::merge(
                    shards,
                    saved
                        .into_iter()
                        .filter_map(|(t, s)| Some((table_of(t)?, s))),
                )
            }
        };
        if let Some(c) = checkpoint {
            tracing::info!(checkpoint = ?c, "continuing the episodes of the last commit");
            self.verifier.engine.restore(&c);
        }
    }

    fn log_added(&self, topics: &[(String, u32)]) {
        let mut by_table: BTreeMap<&str, Vec<(&str, u32)>> = BTreeMap::new();
        for (ti, (stream, table)) in self.topic_routes.iter().enumerate() {
            let name = self
                .cfg
                .streams()
                .nth(*stream)
                .expect("routed")
                .name
                .as_str();
            by_table
                .entry(table)
                .or_default()
                .push((name, self.part_index[ti].len() as u32));
        }
        let tables: HashSet<String> = topics
            .iter()
            .filter_map(|(t, _)| self.cfg.route(t).map(|(_, table)| table))
            .collect();
        for table in &tables {
            let streams = &by_table[table.as_str()];
            if streams.iter().any(|(_, n)| *n != streams[0].1) {
                tracing::warn!(
                    table,
                    ?streams,
                    "topics of one table have different partition counts: verification stays exact, but instances cannot split work by partition"
                );
            }
            for s in self.cfg.streams() {
                if !streams.iter().any(|(n, _)| *n == s.name)
                    && (s.tables.is_empty() || s.tables.contains(table))
                {
                    tracing::warn!(table, stream = %s.name, "the table has no topic on this stream; its events there cannot be verified");
                }
            }
        }
        if self.discoveries > 0 {
            let names: Vec<&str> = topics.iter().map(|(t, _)| t.as_str()).collect();
            tracing::info!(topics = ?names, "new topics found: reading them; a table found while running is verified from where comparisons had reached");
        }
    }

    /// Reads a topic's partitions `0..n` that are not read: added ones, or all of a topic
    /// created again (`back`).
    fn read_partitions(&mut self, ti: usize, n: u32, back: bool) -> Result<(), ConsumeError> {
        let topic = self.topic_names[ti].clone();
        let known = self.part_index[ti].len() as u32;
        let from = if back { 0 } else { known };
        let parts: Vec<(&str, u32)> = (from..n).map(|p| (topic.as_str(), p)).collect();
        let committed = self.consumer.committed(&parts, CALL_TIMEOUT)?;
        let starts = self.start_offsets(&parts, &committed)?;
        let engine_topic = self.verifier.route(ti).expect("routed");
        self.verifier.engine.add_partitions(engine_topic, n);
        for (p, start) in (from..n).zip(&starts) {
            match self.part_of(ti as u32, p) {
                Some(pi) => {
                    self.partitions[pi] = PartState::new(ti as u32, p, engine_topic, *start);
                    self.rewind(pi, *start);
                }
                None => {
                    self.part_index[ti].push(self.partitions.len());
                    self.partitions
                        .push(PartState::new(ti as u32, p, engine_topic, *start));
                }
            }
            self.verifier
                .engine
                .set_progress(engine_topic, p, Progress::Reading);
        }
        self.consumer
            .add((from..n).zip(starts).map(|(p, o)| (topic.as_str(), p, o)))?;
        self.topic_gone[ti] = false;
        if back {
            tracing::warn!(
                topic,
                partitions = n,
                "the deleted topic exists again: reading it from its start"
            );
        } else {
            tracing::info!(
                topic,
                partitions = n,
                added = n - known,
                "partitions added to the topic: reading them"
            );
        }
        Ok(())
    }

    /// A topic gone from the cluster: its partitions are no longer read, committed, or
    /// waited for (its stream's other topics go on); its stream is not ready.
    fn topic_deleted(&mut self, ti: usize) {
        self.topic_gone[ti] = true;
        for &pi in &self.part_index[ti] {
            let p = &mut self.partitions[pi];
            p.gone = true;
            p.paused = false;
            p.held.clear();
            self.verifier
                .engine
                .set_progress(p.engine_topic, p.partition, Progress::Ended);
        }
        let topic = &self.topic_names[ti];
        let parts = self.part_index[ti].len() as u32;
        if let Err(e) = self
            .consumer
            .remove((0..parts).map(|p| (topic.as_str(), p)))
        {
            tracing::warn!(error = %e, topic, "cannot stop reading the deleted topic");
        }
        let stream = &self
            .cfg
            .streams()
            .nth(self.topic_routes[ti].0)
            .expect("routed")
            .name;
        tracing::warn!(topic, stream = %stream, "topic deleted: no longer read; the stream's other topics go on being verified, and the topic is read again if it is created again");
    }

    /// Assigns again any partition read that the consumer lost (an assignment that failed).
    fn reassign_missing(&mut self) {
        let Ok(assigned) = self.consumer.assigned() else {
            return;
        };
        let assigned: HashSet<(String, u32)> = assigned.into_iter().collect();
        let names = &self.topic_names;
        let missing: Vec<(&str, u32, i64)> = self
            .partitions
            .iter()
            .filter(|p| !p.gone)
            .map(|p| (names[p.topic_index as usize].as_str(), p.partition, p.next))
            .filter(|(t, p, _)| !assigned.contains(&(t.to_string(), *p)))
            .collect();
        if !missing.is_empty()
            && let Err(e) = self.consumer.add(missing)
        {
            tracing::warn!(error = %e, "cannot assign partitions");
        }
    }

    /// A partition's fetch offset was out of range: records deleted before they were read
    /// are counted and reading goes on from the first offset left; past the end (the topic
    /// created again, or truncated), reading starts over from its first offset.
    pub(super) fn offset_reset(&mut self, r: OffsetReset) {
        let Some(pi) = self.part_of(r.topic, r.partition) else {
            return;
        };
        if self.partitions[pi].gone {
            return;
        }
        let topic = self.topic_names[r.topic as usize].clone();
        let (low, high) = match self.consumer.watermarks(&topic, r.partition, CALL_TIMEOUT) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, topic, partition = r.partition, "offset out of range, and the broker does not say which offsets remain: trying again");
                self.resets_pending.push(r);
                return;
            }
        };
        let at = if r.offset >= 0 {
            r.offset
        } else {
            self.partitions[pi].next
        };
        let from = if at < low {
            self.records_skipped(&topic, r.partition, at, low);
            low
        } else if at > high {
            tracing::warn!(
                topic,
                partition = r.partition,
                offset = at,
                end = high,
                "offset past the partition's end: the topic was deleted and created again, or truncated; reading it from its first offset {low}"
            );
            self.rewind(pi, low);
            low
        } else {
            at
        };
        let p = &mut self.partitions[pi];
        p.next = from;
        p.seen = (from, Instant::now());
        let paused = p.paused;
        let result = self
            .consumer
            .restart_at(&topic, r.partition, from)
            .and_then(|()| {
                if paused {
                    self.consumer.pause([(topic.as_str(), r.partition)])
                } else {
                    Ok(())
                }
            });
        if let Err(e) = result {
            tracing::warn!(error = %e, topic, partition = r.partition, "cannot read the partition again: trying again");
            self.resets_pending.push(r);
        }
    }

    /// Records deleted before they were read: never verified. Logged, and counted in
    /// `cdc_verifier_records_skipped_total`.
    fn records_skipped(&mut self, topic: &str, partition: u32, from: i64, to: i64) {
        let n = (to - from) as u64;
        *self
            .skipped
            .entry((topic.to_string(), partition))
            .or_default() += n;
        tracing::error!(
            topic,
            partition,
            from,
            to,
            records = n,
            "records deleted before they were read (retention): offsets {from}..{to} of {topic} [{partition}] were never verified"
        );
    }
}
