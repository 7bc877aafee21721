//! The consumer shared by the live service and the replay: client settings, topic discovery,
//! offsets by time and watermarks, assignment, pausing, committing, and polling one record at
//! a time (the service reads in batches on its own thread, see [`crate::batches`]).

use std::collections::HashMap;
use std::ffi::CStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// How to reach the cluster: bootstrap servers and librdkafka properties passed through
/// (security, SASL, TLS), secrets included.
#[derive(Clone, Default)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub properties: Vec<(String, String)>,
}

impl std::fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &crate::secrets::Shown(&self.properties))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {0} has no partitions or does not exist")]
    NoTopic(String),
    #[error("the Kafka consumer has no consumer queue (no group.id?)")]
    NoQueue,
    #[error("the consumer thread panicked")]
    Panicked,
    #[error("cannot start the {0} thread")]
    Spawn(&'static str, #[source] std::io::Error),
}

impl ConsumeError {
    /// The cluster answered that it is still settling: topics just created have no leader
    /// yet, a leader is moving, a request timed out.
    pub fn is_settling(&self) -> bool {
        use RDKafkaErrorCode as C;
        let ConsumeError::Kafka(e) = self else {
            return false;
        };
        match e {
            KafkaError::MetadataFetch(c) | KafkaError::OffsetFetch(c) => Some(*c),
            other => other.rdkafka_error_code(),
        }
        .is_some_and(|c| {
            matches!(
                c,
                C::NotLeaderForPartition
                    | C::LeaderNotAvailable
                    | C::UnknownTopicOrPartition
                    | C::RequestTimedOut
                    | C::OperationTimedOut
                    | C::BrokerTransportFailure
                    | C::CoordinatorLoadInProgress
                    | C::NotCoordinator
                    | C::CoordinatorNotAvailable
            )
        })
    }
}

impl KafkaSettings {
    pub(crate) fn client_config(&self) -> ClientConfig {
        self.config_with(&[])
    }

    /// The client's settings over `defaults`: the configured properties win.
    pub(crate) fn config_with(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in defaults {
            c.set(*k, *v);
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    /// A consumer that owns its offsets: no auto-commit, committed transactions only, and
    /// large fetches for throughput. A partition whose offset is out of range is read from
    /// its first offset.
    pub fn consumer(&self, group_id: &str) -> Result<Consumer, ConsumeError> {
        self.consumer_resetting(group_id, "earliest")
    }

    /// A [`consumer`](Self::consumer) that does not move a partition whose offset is out of
    /// range (records deleted by retention, a topic deleted and created again): its fetching
    /// stops and the batches report it ([`crate::batches::OffsetReset`]), so that what was
    /// skipped is told, and where to go on is decided by the caller.
    pub fn strict_consumer(&self, group_id: &str) -> Result<Consumer, ConsumeError> {
        self.consumer_resetting(group_id, "error")
    }

    fn consumer_resetting(&self, group_id: &str, reset: &str) -> Result<Consumer, ConsumeError> {
        let settings = [
            ("group.id", group_id),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", reset),
            ("isolation.level", "read_committed"),
            ("enable.partition.eof", "false"),
            ("fetch.min.bytes", "1"),
            ("fetch.wait.max.ms", "20"),
        ];
        // `[kafka.properties]` wins over both.
        let c = self.config_with(&[&settings[..], FETCH].concat());
        Ok(Consumer {
            inner: Arc::new(c.create().map_err(crate::secrets::redact)?),
        })
    }
}

/// How far a consumer reads ahead of the verifier: large fetches and a deep local queue, so
/// that the fetcher never waits for the verifier to drain a small queue before asking again.
/// Measured with `scripts/bench scale` (docs/scaling.md): with 2 MB fetches an instance read
/// 40 % slower; with at most 200,000 records a partition and 64 MB queued it read 0.62 M
/// records/s, with 1 M records and 128 MB 0.91 M, its peak memory within the spread of the
/// old one's there (end to end, reading 168 partitions, about 120 MB more). The queue stays
/// bounded by `queued.max.messages.kbytes`; a replica read far ahead of its primary is parked,
/// and past a bound paused. Each can be set in `[kafka.properties]`.
pub const FETCH: &[(&str, &str)] = &[
    ("max.partition.fetch.bytes", "10485760"),
    ("fetch.max.bytes", "104857600"),
    ("queued.min.messages", "1000000"),
    ("queued.max.messages.kbytes", "131072"),
];

/// One record read back by its coordinates.
#[derive(Clone, Debug)]
pub struct FoundRecord {
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

impl FoundRecord {
    fn of(m: &BorrowedMessage<'_>) -> FoundRecord {
        FoundRecord {
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
        }
    }
}

impl KafkaSettings {
    /// A consumer that reads committed records where it is assigned, and commits nothing
    /// (`group` only names it to the broker).
    fn reader(&self, group: &str) -> Result<BaseConsumer, ConsumeError> {
        self.config_with(&[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
        ])
        .create()
        .map_err(|e| crate::secrets::redact(e).into())
    }

    /// Reads the record at `offset` of a partition with a consumer of its own (no group, no
    /// commits); `None` when the partition no longer holds it.
    pub fn read_one(
        &self,
        topic: &str,
        partition: u32,
        offset: i64,
        timeout: Duration,
    ) -> Result<Option<FoundRecord>, ConsumeError> {
        let c = self.reader("cdc-verifier-read-one")?;
        {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, partition as i32, Offset::Offset(offset))?;
            c.assign(&tpl)?;
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match c.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) if m.offset() == offset => return Ok(Some(FoundRecord::of(&m))),
                Some(Ok(m)) if m.offset() > offset => return Ok(None),
                Some(Ok(_)) => {}
                Some(Err(KafkaError::PartitionEOF(_))) => return Ok(None),
                Some(Err(e)) => return Err(e.into()),
            }
        }
        Err(ConsumeError::Kafka(KafkaError::MessageConsumption(
            RDKafkaErrorCode::OperationTimedOut,
        )))
    }
}

impl KafkaSettings {
    /// Every record of `topic`, each partition from its start to its end when asked, read
    /// with a consumer of its own (no group, no commits): for a small compacted topic a
    /// service rebuilds state from. Fails when the topic is not found, or when the records
    /// are not all read within `timeout`.
    pub fn read_topic(
        &self,
        topic: &str,
        timeout: Duration,
    ) -> Result<Vec<FoundRecord>, ConsumeError> {
        let c = self.reader("cdc-verifier-read-topic")?;
        let deadline = Instant::now() + timeout;
        let md = c.fetch_metadata(Some(topic), timeout)?;
        let partitions: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if partitions.is_empty() {
            return Err(ConsumeError::NoTopic(topic.to_string()));
        }
        // Where each partition ends now: what is written later is not waited for.
        let mut tpl = TopicPartitionList::new();
        let mut left = std::collections::BTreeMap::new();
        for p in partitions {
            let wait = deadline.saturating_duration_since(Instant::now());
            let (low, high) = c.fetch_watermarks(topic, p, wait)?;
            if high > low {
                tpl.add_partition_offset(topic, p, Offset::Offset(low))?;
                left.insert(p, high);
            }
        }
        let mut out = Vec::new();
        if left.is_empty() {
            return Ok(out);
        }
        c.assign(&tpl)?;
        while !left.is_empty() {
            if Instant::now() >= deadline {
                return Err(ConsumeError::Kafka(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::OperationTimedOut,
                )));
            }
            match c.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => {
                    let p = m.partition();
                    if left.get(&p).is_some_and(|end| m.offset() < *end) {
                        out.push(FoundRecord::of(&m));
                    }
                    // Offsets of a compacted topic have gaps, and transaction markers take
                    // some: the end is passed once the next offset to read reaches it.
                    if left.get(&p).is_some_and(|end| m.offset() + 1 >= *end) {
                        left.remove(&p);
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    left.remove(&p);
                }
                Some(Err(e)) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// The newest timestamp among the records just before these end offsets (one per
    /// partition), read with a consumer of its own (no group, no commits); `None` when none
    /// of them holds a record there. Partitions that do not answer within `timeout`, or a
    /// second after the others, are left out. A replay's clock is bounded by it: the end of the span it reads.
    pub fn newest_stamp_before<'a>(
        &self,
        ends: impl IntoIterator<Item = (&'a str, u32, i64)>,
        timeout: Duration,
    ) -> Result<Option<i64>, ConsumeError> {
        let at: Vec<(&str, u32, i64)> = ends
            .into_iter()
            .filter(|(_, _, end)| *end > 0)
            .map(|(t, p, end)| (t, p, end - 1))
            .collect();
        if at.is_empty() {
            return Ok(None);
        }
        let c = self.reader("cdc-verifier-read-one")?;
        c.assign(&partitions_at(at.iter().copied())?)?;
        let mut waiting: std::collections::HashSet<(&str, u32)> =
            at.iter().map(|(t, p, _)| (*t, *p)).collect();
        let mut newest = None;
        poll_until_quiet(&c, timeout, |m| {
            newest = newest.max(m.timestamp().to_millis());
            let (topic, partition) = (m.topic(), m.partition() as u32);
            waiting.retain(|(t, p)| !(*t == topic && *p == partition));
            waiting.is_empty()
        })?;
        Ok(newest)
    }
}

/// Records read and the bytes of their keys and values, per (topic, partition).
pub type Sizes = HashMap<(String, u32), (u64, u64)>;

impl KafkaSettings {
    /// The sizes of the newest records of each partition `(topic, partition, low, high)`: of
    /// the last `per_partition` records before `high` (none before `low`), read with a consumer
    /// of its own (no group, no commits), as (records read, bytes of their keys and values)
    /// per partition. Partitions that do not answer within `timeout`, or a second after the
    /// others, are left out; so are empty ones.
    pub fn sizes_before(
        &self,
        parts: &[(&str, u32, i64, i64)],
        per_partition: i64,
        timeout: Duration,
    ) -> Result<Sizes, ConsumeError> {
        let mut sizes = HashMap::new();
        // What is left to read of each partition: the offset of its last record.
        let mut waiting: HashMap<(String, u32), i64> = parts
            .iter()
            .filter(|(_, _, low, high)| high > low)
            .map(|(t, p, _, high)| ((t.to_string(), *p), high - 1))
            .collect();
        if waiting.is_empty() {
            return Ok(sizes);
        }
        let c = self.reader("cdc-verifier-sizes")?;
        c.assign(&partitions_at(
            parts
                .iter()
                .filter(|(_, _, low, high)| high > low)
                .map(|(t, p, low, high)| (*t, *p, (*high - per_partition).max(*low))),
        )?)?;
        poll_until_quiet(&c, timeout, |m| {
            let at = (m.topic().to_string(), m.partition() as u32);
            let bytes = m.key().map_or(0, <[u8]>::len) + m.payload().map_or(0, <[u8]>::len);
            let size = sizes.entry(at.clone()).or_insert((0u64, 0u64));
            size.0 += 1;
            size.1 += bytes as u64;
            if waiting.get(&at).is_some_and(|last| m.offset() >= *last) {
                waiting.remove(&at);
            }
            waiting.is_empty()
        })?;
        Ok(sizes)
    }
}

/// Polls `c`, giving `take` each record, until `take` says every partition it waits for is
/// read, `timeout` passes, or, once the partitions have started answering, a second passes
/// without a record: the ones left end in a transaction marker or lost their records to
/// retention. (An end of partition names no topic, so it does not say which one answered.)
fn poll_until_quiet(
    c: &BaseConsumer,
    timeout: Duration,
    mut take: impl FnMut(&BorrowedMessage<'_>) -> bool,
) -> Result<(), ConsumeError> {
    let deadline = Instant::now() + timeout;
    let mut answered: Option<Instant> = None;
    while Instant::now() < deadline && answered.is_none_or(|a| a.elapsed() < Duration::from_secs(1))
    {
        match c.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                answered = Some(Instant::now());
                if take(&m) {
                    break;
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => answered = Some(Instant::now()),
            Some(Err(e)) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A consumer that owns its offsets (see [`KafkaSettings::consumer`]). Clones share one
/// client: the batch reader, the end-offsets reader and the verification loop each hold one.
#[derive(Clone)]
pub struct Consumer {
    pub(crate) inner: Arc<BaseConsumer>,
}

/// A partition's committed position: its offset (`None` when nothing was committed) and the
/// metadata committed with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Committed {
    pub offset: Option<i64>,
    pub metadata: String,
}

/// An offset to commit, with the metadata to keep beside it (Kafka keeps up to 4 KiB per
/// partition by default).
#[derive(Clone, Debug)]
pub struct Commit<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub offset: i64,
    pub metadata: Option<String>,
}

/// A record polled one at a time; its bytes live as long as it does.
pub struct Polled<'a>(BorrowedMessage<'a>);

impl Polled<'_> {
    pub fn topic(&self) -> &str {
        self.0.topic()
    }
    pub fn partition(&self) -> u32 {
        self.0.partition() as u32
    }
    pub fn offset(&self) -> i64 {
        self.0.offset()
    }
    /// The record's timestamp (CreateTime or LogAppendTime), when it has one.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.0.timestamp().to_millis()
    }
    pub fn key(&self) -> Option<&[u8]> {
        self.0.key()
    }
    pub fn value(&self) -> Option<&[u8]> {
        self.0.payload()
    }
}

fn partitions_at<'a>(
    parts: impl IntoIterator<Item = (&'a str, u32, i64)>,
) -> Result<TopicPartitionList, ConsumeError> {
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in parts {
        tpl.add_partition_offset(t, p as i32, Offset::Offset(o))?;
    }
    Ok(tpl)
}

impl Consumer {
    /// Every non-internal topic and its partition count.
    pub fn discover(&self, timeout: Duration) -> Result<Vec<(String, u32)>, ConsumeError> {
        let md = self.inner.fetch_metadata(None, timeout)?;
        let mut topics: Vec<(String, u32)> = md
            .topics()
            .iter()
            .filter(|t| !t.name().starts_with("__") && t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len() as u32))
            .collect();
        topics.sort();
        Ok(topics)
    }

    /// The first offset at or after `ts_ms` in each partition (the end offset where none is).
    pub fn offsets_for_time(
        &self,
        topic: &str,
        partitions: u32,
        ts_ms: i64,
        timeout: Duration,
    ) -> Result<Vec<i64>, ConsumeError> {
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(topic, p, Offset::Offset(ts_ms))?;
        }
        let found = self.inner.offsets_for_times(tpl, timeout)?;
        let mut out = Vec::with_capacity(partitions as usize);
        for p in 0..partitions as i32 {
            let o = match found.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => self.watermarks(topic, p as u32, timeout)?.1,
            };
            out.push(o);
        }
        Ok(out)
    }

    /// (low, high) watermarks of a partition.
    pub fn watermarks(
        &self,
        topic: &str,
        partition: u32,
        timeout: Duration,
    ) -> Result<(i64, i64), ConsumeError> {
        Ok(self
            .inner
            .fetch_watermarks(topic, partition as i32, timeout)?)
    }

    /// The group's committed position of each partition, in the order given.
    pub fn committed(
        &self,
        partitions: &[(&str, u32)],
        timeout: Duration,
    ) -> Result<Vec<Committed>, ConsumeError> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, *p as i32);
        }
        let found = self.inner.committed_offsets(tpl, timeout)?;
        Ok(partitions
            .iter()
            .map(|(t, p)| match found.find_partition(t, *p as i32) {
                Some(e) => Committed {
                    offset: match e.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    },
                    metadata: e.metadata().to_string(),
                },
                None => Committed::default(),
            })
            .collect())
    }

    /// Reads these partitions from these offsets.
    pub fn assign<'a>(
        &self,
        partitions: impl IntoIterator<Item = (&'a str, u32, i64)>,
    ) -> Result<(), ConsumeError> {
        Ok(self.inner.assign(&partitions_at(partitions)?)?)
    }

    /// Stops fetching these partitions.
    pub fn pause<'a>(
        &self,
        partitions: impl IntoIterator<Item = (&'a str, u32)>,
    ) -> Result<(), ConsumeError> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, p as i32);
        }
        Ok(self.inner.pause(&tpl)?)
    }

    /// Fetches these paused partitions again from these offsets (the fetcher may have
    /// buffered past where they were paused).
    pub fn resume_at<'a>(
        &self,
        partitions: impl IntoIterator<Item = (&'a str, u32, i64)>,
    ) -> Result<(), ConsumeError> {
        let tpl = partitions_at(partitions)?;
        self.inner
            .seek_partitions(tpl.clone(), Duration::from_secs(5))
            .ok();
        Ok(self.inner.resume(&tpl)?)
    }

    /// Commits these offsets, waiting for the broker's answer.
    pub fn commit(&self, offsets: &[Commit<'_>]) -> Result<(), ConsumeError> {
        let mut tpl = TopicPartitionList::new();
        for c in offsets {
            let mut e = tpl.add_partition(c.topic, c.partition as i32);
            e.set_offset(Offset::Offset(c.offset))?;
            if let Some(m) = &c.metadata {
                e.set_metadata(m.clone());
            }
        }
        Ok(self.inner.commit(&tpl, CommitMode::Sync)?)
    }

    /// The next record of the assigned partitions, waiting up to `timeout`.
    pub fn poll(&self, timeout: Duration) -> Option<Result<Polled<'_>, ConsumeError>> {
        match self.inner.poll(timeout)? {
            Ok(m) => Some(Ok(Polled(m))),
            Err(KafkaError::PartitionEOF(_)) => None,
            Err(e) => Some(Err(e.into())),
        }
    }

    /// The end offset of every assigned partition (the last stable offset under
    /// read_committed), as (topic, partition, offset).
    pub fn end_offsets(&self, timeout: Duration) -> Result<Vec<(String, u32, i64)>, ConsumeError> {
        // The timestamp "end" (-1) asks for the latest offset.
        let mut tpl = TopicPartitionList::new();
        for e in self.inner.assignment()?.elements() {
            tpl.add_partition_offset(e.topic(), e.partition(), Offset::End)?;
        }
        if tpl.count() == 0 {
            return Ok(Vec::new());
        }
        let tpl = self.inner.offsets_for_times(tpl, timeout)?;
        Ok(tpl
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) if e.error().is_ok() => {
                    Some((e.topic().to_string(), e.partition() as u32, o))
                }
                _ => None,
            })
            .collect())
    }

    /// The high watermark librdkafka last learnt from fetch responses, without a broker round
    /// trip; `None` until it has fetched from the partition.
    pub fn cached_high_watermark(&self, topic: &CStr, partition: u32) -> Option<i64> {
        crate::ffi::cached_high_watermark(&self.inner, topic, partition)
    }
}

/// Runs a start-up call again while the cluster answers that it is still settling (see
/// [`ConsumeError::is_settling`]), for up to a minute with growing pauses; any other error,
/// or one that lasts, is returned.
pub fn until_settled<T>(
    what: &str,
    mut call: impl FnMut() -> Result<T, ConsumeError>,
) -> Result<T, ConsumeError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pause = Duration::from_millis(100);
    loop {
        match call() {
            Err(e) if Instant::now() < deadline => {
                if !e.is_settling() {
                    return Err(e);
                }
                tracing::warn!(error = %e, "{what}: the cluster is settling; trying again in {} ms", pause.as_millis());
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ConsumeError, until_settled};
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    #[test]
    fn start_up_calls_wait_for_a_settling_cluster_and_give_up_on_anything_else() {
        let mut calls = 0;
        let r = until_settled("test", || {
            calls += 1;
            if calls < 3 {
                Err(ConsumeError::Kafka(KafkaError::MetadataFetch(
                    RDKafkaErrorCode::NotLeaderForPartition,
                )))
            } else {
                Ok(calls)
            }
        });
        assert_eq!(r.unwrap(), 3);

        let mut calls = 0;
        let r: Result<(), _> = until_settled("test", || {
            calls += 1;
            Err(ConsumeError::Kafka(KafkaError::MetadataFetch(
                RDKafkaErrorCode::TopicAuthorizationFailed,
            )))
        });
        assert!(r.is_err());
        assert_eq!(
            calls, 1,
            "an error that is not transient is returned at once"
        );
    }
}
