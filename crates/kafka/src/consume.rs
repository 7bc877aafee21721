//! Consumer set-up shared by the live service and the replay: client settings, topic
//! discovery, offsets by time and watermarks.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
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
            .field("properties", &self.properties.len())
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("topic {0} has no partitions or does not exist")]
    NoTopic(String),
}

impl KafkaSettings {
    pub fn client_config(&self) -> ClientConfig {
        self.config_with(&[])
    }

    /// The client's settings over `defaults`: the configured properties win.
    fn config_with(&self, defaults: &[(&str, &str)]) -> ClientConfig {
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
    /// large fetches for throughput.
    pub fn consumer(&self, group_id: &str) -> Result<BaseConsumer, ConsumeError> {
        let c = self.config_with(&[
            ("group.id", group_id),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("isolation.level", "read_committed"),
            ("enable.partition.eof", "false"),
            ("fetch.min.bytes", "1"),
            ("fetch.wait.max.ms", "20"),
            // Large fetches and a deep local queue: the fetcher never waits for the verifier to
            // drain a small queue before asking again (with 2 MB it read 40 % slower). The
            // queue stays bounded (64 MB); a replica read far ahead of its primary is parked,
            // and past a bound paused.
            ("max.partition.fetch.bytes", "10485760"),
            ("fetch.max.bytes", "104857600"),
            ("queued.min.messages", "200000"),
            ("queued.max.messages.kbytes", "65536"),
        ]);
        Ok(c.create()?)
    }
}

/// Every non-internal topic and its partition count.
pub fn discover(
    consumer: &BaseConsumer,
    timeout: Duration,
) -> Result<Vec<(String, u32)>, ConsumeError> {
    let md = consumer.fetch_metadata(None, timeout)?;
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
    consumer: &BaseConsumer,
    topic: &str,
    partitions: u32,
    ts_ms: i64,
    timeout: Duration,
) -> Result<Vec<i64>, ConsumeError> {
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions as i32 {
        tpl.add_partition_offset(topic, p, Offset::Offset(ts_ms))?;
    }
    let found = consumer.offsets_for_times(tpl, timeout)?;
    let mut out = Vec::with_capacity(partitions as usize);
    for p in 0..partitions as i32 {
        let o = match found.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => watermarks(consumer, topic, p as u32, timeout)?.1,
        };
        out.push(o);
    }
    Ok(out)
}

/// (low, high) watermarks of a partition.
pub fn watermarks(
    consumer: &BaseConsumer,
    topic: &str,
    partition: u32,
    timeout: Duration,
) -> Result<(i64, i64), ConsumeError> {
    Ok(consumer.fetch_watermarks(topic, partition as i32, timeout)?)
}

/// The high watermark librdkafka last learnt from fetch responses, without a broker round
/// trip; `None` until it has fetched from the partition.
pub fn cached_high_watermark(
    consumer: &BaseConsumer,
    topic: &std::ffi::CStr,
    partition: u32,
) -> Option<i64> {
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for the consumer's lifetime; the topic is a valid C
    // string; librdkafka only writes the two out-parameters.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition as i32,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}
