//! Producing records fast: the simulator's pre-partitioned, pre-timestamped records; and the
//! producer settings the service's outbox (see [`crate::outbox`]) starts from.
//!
//! The caller decides partition and CreateTime of a record when it wants to (the simulator
//! reproduces what a Debezium connector would write); this module only moves bytes: an
//! idempotent rdkafka producer with large batches, delivery failures counted by its context.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};

use crate::consume::KafkaSettings;

/// Producing failed.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot create a Kafka client for {bootstrap}")]
    Client {
        bootstrap: String,
        source: KafkaError,
    },
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
#[derive(Clone)]
pub struct ProducerSettings {
    pub bootstrap_servers: String,
    pub linger_ms: u32,
    pub batch_size: u32,
    /// `none`, `lz4`, `snappy` or `gzip` (this build has no zstd).
    pub compression: String,
    /// Further librdkafka properties, applied last.
    pub extra: Vec<(String, String)>,
    /// Report the offset of each record sent with [`RecordProducer::send_located`]
    /// ([`RecordProducer::located`]). Costs a delivery callback per record.
    pub report_offsets: bool,
    /// Producer instances (connections). librdkafka sends one request per partition and keeps at
    /// most 5 in flight per connection when idempotent; several connections can help a remote
    /// cluster, but into one local broker they cost it more CPU than they gain. A topic-partition
    /// always uses the same instance, which keeps its order.
    pub instances: usize,
}

impl std::fmt::Debug for ProducerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerSettings")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("linger_ms", &self.linger_ms)
            .field("batch_size", &self.batch_size)
            .field("compression", &self.compression)
            .field("extra", &crate::secrets::Shown(&self.extra))
            .field("report_offsets", &self.report_offsets)
            .field("instances", &self.instances)
            .finish()
    }
}

impl ProducerSettings {
    pub fn new(bootstrap_servers: &str) -> Self {
        ProducerSettings {
            bootstrap_servers: bootstrap_servers.to_owned(),
            linger_ms: 10,
            batch_size: 1_000_000,
            compression: "lz4".into(),
            extra: Vec::new(),
            report_offsets: false,
            instances: 1,
        }
    }

    /// The service's alert producer: the cluster's client properties (security, SASL, TLS)
    /// passed through, then idempotent, acknowledged by all replicas, records out promptly.
    pub fn alerts(kafka: &KafkaSettings) -> Self {
        let mut extra = kafka.properties.clone();
        for (k, v) in [
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("linger.ms", "5"),
            ("message.timeout.ms", "60000"),
        ] {
            extra.push((k.into(), v.into()));
        }
        ProducerSettings {
            bootstrap_servers: kafka.bootstrap_servers.clone(),
            linger_ms: 5,
            compression: "none".into(),
            extra,
            ..ProducerSettings::new(&kafka.bootstrap_servers)
        }
    }

    pub(crate) fn client_config(&self) -> ClientConfig {
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
            // Only failures need a report, unless offsets are asked for: success reports cost a
            // callback per record.
            .set(
                "delivery.report.only.error",
                if self.report_offsets { "false" } else { "true" },
            );
        for (k, v) in &self.extra {
            c.set(k, v);
        }
        c
    }
}

/// Counts failed deliveries; keeps the first failure for the report, and where each record
/// sent with a tag landed.
#[derive(Default)]
pub struct DeliveryCounter {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
    located: Mutex<Vec<Located>>,
}

/// Where a record sent with [`RecordProducer::send_located`] was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Located {
    /// The tag it was sent with.
    pub tag: usize,
    pub partition: i32,
    pub offset: i64,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    /// 0, or a [`RecordProducer::send_located`] tag plus one.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        match result {
            Ok(m) => {
                if opaque != 0 {
                    self.located.lock().unwrap().push(Located {
                        tag: opaque - 1,
                        partition: m.partition(),
                        offset: m.offset(),
                    });
                }
            }
            Err((e, m)) => {
                if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    *self.first_error.lock().unwrap() =
                        Some(format!("{}/{}: {e}", m.topic(), m.partition()));
                }
            }
        }
    }
}

/// One record to produce. Without a partition the key decides it; without a timestamp the
/// producer's clock does.
#[derive(Clone, Copy, Debug)]
pub struct OutRecord<'a> {
    pub topic: &'a str,
    pub partition: Option<i32>,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, String)],
}

/// A producer of records, their partition and timestamp decided by the caller or by Kafka.
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
                        source: crate::secrets::redact(source),
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
    pub fn send_record(&mut self, r: &OutRecord<'_>) -> Result<(), ProduceError> {
        self.enqueue(r, 0)
    }

    /// [`RecordProducer::send_record`], and once Kafka acknowledges the record, says where it
    /// was written, with `tag`, in [`RecordProducer::located`] (with
    /// [`ProducerSettings::report_offsets`]).
    pub fn send_located(&mut self, r: &OutRecord<'_>, tag: usize) -> Result<(), ProduceError> {
        self.enqueue(r, tag + 1)
    }

    /// Where the records sent with [`RecordProducer::send_located`] and acknowledged so far were
    /// written.
    pub fn located(&self) -> Vec<Located> {
        let mut all: Vec<Located> = self
            .producers
            .iter()
            .flat_map(|p| p.context().located.lock().unwrap().clone())
            .collect();
        all.sort_by_key(|l| l.tag);
        all
    }

    fn enqueue(&mut self, r: &OutRecord<'_>, opaque: usize) -> Result<(), ProduceError> {
        let (topic, partition) = (r.topic, r.partition.unwrap_or(-1));
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, opaque);
        if let Some(p) = r.partition {
            record = record.partition(p);
        }
        if let Some(ts) = r.timestamp_ms {
            record = record.timestamp(ts);
        }
        if let Some(k) = r.key {
            record = record.key(k);
        }
        if let Some(v) = r.value {
            record = record.payload(v);
        }
        if !r.headers.is_empty() {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (k, v) in r.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            record = record.headers(headers);
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
        self.wait_in_flight(timeout)?;
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

    /// Waits until no record is in flight: each was acknowledged or failed for good (see
    /// [`RecordProducer::failed`]).
    pub fn wait_in_flight(&self, timeout: Duration) -> Result<(), ProduceError> {
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;

    #[test]
    fn a_located_record_is_told_at_the_offset_kafka_gave_it() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("t", 2, 1).unwrap();
        let mut s = ProducerSettings::new(&mock.bootstrap_servers());
        s.compression = "none".into();
        s.report_offsets = true;
        let mut p = RecordProducer::new(&s).unwrap();
        // Records before it, on its partition and on another, as a topic written before has.
        let record = |partition, value: &'static [u8]| OutRecord {
            topic: "t",
            partition: Some(partition),
            timestamp_ms: Some(1_000),
            key: Some(b"k"),
            value: Some(value),
            headers: &[],
        };
        for i in 0..5 {
            p.send_record(&record(i % 2, b"before")).unwrap();
        }
        p.send_located(&record(1, b"poison"), 7).unwrap();
        p.send_located(&record(0, b"poison"), 3).unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
        assert_eq!(
            p.located(),
            vec![
                Located {
                    tag: 3,
                    partition: 0,
                    offset: 3
                },
                Located {
                    tag: 7,
                    partition: 1,
                    offset: 2
                },
            ]
        );
    }
}
