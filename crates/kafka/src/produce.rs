//! Producing pre-partitioned, pre-timestamped records fast, and creating the topics for them.
//!
//! The caller decides partition and CreateTime of every record (the simulator reproduces what a
//! Debezium connector would write); this module only moves bytes: an idempotent rdkafka producer
//! with large batches, delivery failures counted by its context, and topic creation through the
//! admin API.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};

/// Producing failed.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create a Kafka client for {bootstrap}")]
    Client {
        bootstrap: String,
        source: KafkaError,
    },
    #[error("cannot read metadata from {bootstrap}")]
    Metadata {
        bootstrap: String,
        source: KafkaError,
    },
    #[error("cannot create topic {topic}")]
    CreateTopic { topic: String, source: KafkaError },
    #[error(
        "topic {topic} exists with {actual} partitions, not {expected}; use another topic prefix or delete it"
    )]
    PartitionMismatch {
        topic: String,
        expected: i32,
        actual: i32,
    },
    #[error("topic {topic} already holds {records} records; use another topic prefix or delete it")]
    NotEmpty { topic: String, records: i64 },
    #[error("topics did not become ready within {0:?}: {1}")]
    TopicsNotReady(Duration, String),
    #[error("cannot enqueue a record for {topic}/{partition}")]
    Enqueue {
        topic: String,
        partition: i32,
        source: KafkaError,
    },
    #[error("{failed} records were not delivered, first: {first}")]
    Delivery { failed: u64, first: String },
    #[error("records still in flight after {0:?}")]
    FlushTimeout(Duration),
}

/// Producer tuning; the defaults favour throughput into a local broker.
#[derive(Clone, Debug)]
pub struct ProducerSettings {
    pub bootstrap_servers: String,
    pub linger_ms: u32,
    pub batch_size: u32,
    /// `none`, `lz4`, `snappy` or `gzip` (this build has no zstd).
    pub compression: String,
    /// Further librdkafka properties, applied last.
    pub extra: Vec<(String, String)>,
    /// Producer instances (connections). librdkafka sends one request per partition and keeps at
    /// most 5 in flight per connection when idempotent; several connections can help a remote
    /// cluster, but into one local broker they cost it more CPU than they gain. A topic-partition
    /// always uses the same instance, which keeps its order.
    pub instances: usize,
}

impl ProducerSettings {
    pub fn new(bootstrap_servers: &str) -> Self {
        ProducerSettings {
            bootstrap_servers: bootstrap_servers.to_owned(),
            linger_ms: 10,
            batch_size: 1_000_000,
            compression: "lz4".into(),
            extra: Vec::new(),
            instances: 1,
        }
    }

    fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", self.linger_ms.to_string())
            .set("batch.size", self.batch_size.to_string())
            .set("batch.num.messages", "100000")
            .set("compression.type", &self.compression)
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576")
            .set("message.timeout.ms", "120000")
            // Only failures need a report; success reports cost a callback per record.
            .set("delivery.report.only.error", "true");
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

/// Counts failed deliveries; keeps the first failure for the report.
#[derive(Default)]
pub struct DeliveryCounter {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {}
            Err((e, m)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    *self.first_error.lock().unwrap() =
                        Some(format!("{}/{}: {e}", m.topic(), m.partition()));
                }
            }
        }
    }
}

/// A producer of records whose partition and timestamp are already decided.
pub struct RecordProducer {
    producers: Vec<ThreadedProducer<DeliveryCounter>>,
    sent: u64,
}

impl RecordProducer {
    pub fn new(settings: &ProducerSettings) -> Result<Self, ProduceError> {
        let producers = (0..settings.instances.max(1))
            .map(|_| {
                settings
                    .client_config()
                    .create_with_context(DeliveryCounter::default())
                    .map_err(|source| ProduceError::Client {
                        bootstrap: settings.bootstrap_servers.clone(),
                        source,
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(RecordProducer { producers, sent: 0 })
    }

    /// The instance serving a topic-partition.
    fn route(&self, topic: &str, partition: i32) -> &ThreadedProducer<DeliveryCounter> {
        if self.producers.len() == 1 {
            return &self.producers[0];
        }
        let mut h: u32 = 0x811c_9dc5;
        for b in topic.bytes() {
            h = (h ^ b as u32).wrapping_mul(0x0100_0193);
        }
        h = (h ^ partition as u32).wrapping_mul(0x0100_0193);
        &self.producers[h as usize % self.producers.len()]
    }

    /// Enqueues one record, waiting while the local queue is full.
    pub fn send(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) -> Result<(), ProduceError> {
        let mut record = BaseRecord::<[u8], [u8]>::to(topic)
            .partition(partition)
            .timestamp(timestamp_ms);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        let producer = self.route(topic, partition);
        loop {
            match producer.send(record) {
                Ok(()) => {
                    self.sent += 1;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    // The producer's own thread drains the queue; give it a moment.
                    thread::sleep(Duration::from_micros(500));
                }
                Err((source, _)) => {
                    return Err(ProduceError::Enqueue {
                        topic: topic.to_owned(),
                        partition,
                        source,
                    });
                }
            }
        }
    }

    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Records that failed delivery so far (successes are not reported one by one).
    pub fn failed(&self) -> u64 {
        self.producers
            .iter()
            .map(|p| p.context().failed.load(Ordering::Relaxed))
            .sum()
    }

    /// Records enqueued but not yet acknowledged.
    pub fn in_flight(&self) -> i32 {
        self.producers.iter().map(|p| p.in_flight_count()).sum()
    }

    /// Waits until every record is acknowledged; fails if any delivery failed.
    pub fn flush(&self, timeout: Duration) -> Result<(), ProduceError> {
        let deadline = Instant::now() + timeout;
        while self.in_flight() > 0 {
            if Instant::now() >= deadline {
                return Err(ProduceError::FlushTimeout(timeout));
            }
            for p in &self.producers {
                // Returns early on timeout; the loop checks the overall deadline.
                let _ = p.flush(Duration::from_millis(200));
            }
        }
        let failed: u64 = self
            .producers
            .iter()
            .map(|p| p.context().failed.load(Ordering::Relaxed))
            .sum();
        if failed > 0 {
            let first = self
                .producers
                .iter()
                .find_map(|p| p.context().first_error.lock().unwrap().clone())
                .unwrap_or_default();
            return Err(ProduceError::Delivery { failed, first });
        }
        Ok(())
    }
}

/// A topic to create.
#[derive(Clone, Debug)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Topic configs, e.g. `("retention.ms", "-1")`.
    pub configs: Vec<(String, String)>,
}

/// Creates the topics that do not exist; fails if one exists with another partition count or,
/// when `require_empty`, already holds records. Waits until every partition has a leader.
pub fn ensure_topics(
    bootstrap: &str,
    topics: &[TopicSpec],
    require_empty: bool,
    timeout: Duration,
) -> Result<(), ProduceError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    let admin: AdminClient<DefaultClientContext> =
        config.create().map_err(|source| ProduceError::Client {
            bootstrap: bootstrap.to_owned(),
            source,
        })?;
    let metadata_err = |source| ProduceError::Metadata {
        bootstrap: bootstrap.to_owned(),
        source,
    };

    let deadline = Instant::now() + timeout;
    let existing: Vec<(String, i32)> = metadata(&admin, deadline)
        .map_err(metadata_err)?
        .topics()
        .iter()
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect();
    let mut missing = Vec::new();
    for t in topics {
        match existing.iter().find(|(n, _)| n == &t.name) {
            Some(&(_, actual)) if actual != t.partitions => {
                return Err(ProduceError::PartitionMismatch {
                    topic: t.name.clone(),
                    expected: t.partitions,
                    actual,
                });
            }
            Some(_) => {}
            None => missing.push(t),
        }
    }
    if !missing.is_empty() {
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|t| {
                t.configs.iter().fold(
                    NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(1)),
                    |n, (k, v)| n.set(k, v),
                )
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(timeout));
        let results = block_on(admin.create_topics(&new, &opts)).map_err(|source| {
            ProduceError::CreateTopic {
                topic: missing[0].name.clone(),
                source,
            }
        })?;
        for r in results {
            match r {
                Ok(_) => {}
                // Someone else created it meanwhile; its partition count is checked below.
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => {
                    return Err(ProduceError::CreateTopic {
                        topic,
                        source: KafkaError::AdminOp(code),
                    });
                }
            }
        }
    }

    // Wait until the metadata shows every topic with all partitions led.
    loop {
        let md = metadata(&admin, deadline).map_err(metadata_err)?;
        let mut not_ready = None;
        for t in topics {
            match md.topics().iter().find(|m| m.name() == t.name) {
                Some(m) if m.error().is_none() && m.partitions().len() == t.partitions as usize => {
                    if m.partitions().iter().any(|p| p.leader() < 0) {
                        not_ready = Some(format!("{} has partitions without a leader", t.name));
                    } else if m.partitions().len() as i32 != t.partitions {
                        return Err(ProduceError::PartitionMismatch {
                            topic: t.name.clone(),
                            expected: t.partitions,
                            actual: m.partitions().len() as i32,
                        });
                    }
                }
                Some(m) if m.error().is_none() && !m.partitions().is_empty() => {
                    return Err(ProduceError::PartitionMismatch {
                        topic: t.name.clone(),
                        expected: t.partitions,
                        actual: m.partitions().len() as i32,
                    });
                }
                _ => not_ready = Some(format!("{} is not in the metadata yet", t.name)),
            }
        }
        match not_ready {
            None => break,
            Some(why) if Instant::now() >= deadline => {
                return Err(ProduceError::TopicsNotReady(timeout, why));
            }
            Some(_) => thread::sleep(Duration::from_millis(100)),
        }
    }

    if require_empty {
        for t in topics {
            let mut records = 0;
            for p in 0..t.partitions {
                let (lo, hi) = retrying(deadline, || {
                    admin
                        .inner()
                        .fetch_watermarks(&t.name, p, Duration::from_secs(5))
                })
                .map_err(metadata_err)?;
                records += hi - lo.max(0);
                if hi > 0 && records == 0 {
                    // Emptied by retention or deletion: offsets would not start at 0.
                    records = hi;
                }
            }
            if records > 0 {
                return Err(ProduceError::NotEmpty {
                    topic: t.name.clone(),
                    records,
                });
            }
        }
    }
    Ok(())
}

/// The cluster's metadata, retried until `deadline`: while topics are being created (by us or
/// anyone else) the broker may answer with leadership errors for a moment.
fn metadata(
    admin: &AdminClient<DefaultClientContext>,
    deadline: Instant,
) -> Result<Metadata, KafkaError> {
    retrying(deadline, || {
        admin.inner().fetch_metadata(None, Duration::from_secs(5))
    })
}

/// Retries a metadata-like request until it succeeds or `deadline` passes.
fn retrying<T>(
    deadline: Instant,
    mut f: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "broker not ready yet, retrying");
                thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Drives a future on this thread. rdkafka's admin futures are completed by its own background
/// thread, so no async runtime is needed.
pub fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => thread::park(),
        }
    }
}
