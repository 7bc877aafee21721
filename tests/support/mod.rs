//! Shared helpers for the integration tests that run against the real local
//! services (`scripts/services up`: Apache Kafka and Apicurio Registry).
//!
//! Use from a test file with `mod support;`. The services' addresses come from
//! `CDC_VERIFIER_TEST_BOOTSTRAP` and `CDC_VERIFIER_TEST_REGISTRY` (defaults:
//! `127.0.0.1:9092` and `http://127.0.0.1:8081/apis/ccompat/v7`). A test that
//! needs them calls [`require_services`] (or [`require_kafka`] /
//! [`require_registry`]) first: when a service is absent the test **fails** with
//! a message saying how to start it; it never skips.
//!
//! rdkafka pitfall seen here: a `TopicPartitionList` obtained from a consumer
//! (e.g. `committed()`) that is still alive when the consumer is dropped makes
//! the drop hang forever in `rd_kafka_destroy`. Copy what you need out of it
//! and drop it before the consumer.
#![allow(dead_code)]

pub mod cdc;
pub mod verdicts;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::producer::{DeliveryResult, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};
use serde_json::Value as Json;

pub const DEFAULT_BOOTSTRAP: &str = "127.0.0.1:9092";
pub const DEFAULT_REGISTRY: &str = "http://127.0.0.1:8081/apis/ccompat/v7";

/// How long a helper waits for the broker or registry before failing.
pub const SERVICE_TIMEOUT: Duration = Duration::from_secs(30);

/// Content type of the Confluent schema-registry API.
pub const REGISTRY_CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Services a test binary started for itself (see [`use_services`]), instead of the shared ones.
static OWN: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

/// Points every helper of this test binary at a broker and registry of its own (a suite that
/// kills them must not take the shared ones down).
pub fn use_services(bootstrap: &str, registry: &str) {
    OWN.set((bootstrap.to_owned(), registry.to_owned()))
        .expect("a test binary uses one pair of its own");
}

/// The Kafka bootstrap servers of the test broker.
pub fn bootstrap() -> String {
    match OWN.get() {
        Some((b, _)) => b.clone(),
        None => env_or("CDC_VERIFIER_TEST_BOOTSTRAP", DEFAULT_BOOTSTRAP),
    }
}

/// The project's client settings for the test broker (no further properties).
pub fn kafka_settings() -> cdc_verifier_kafka::consume::KafkaSettings {
    cdc_verifier_kafka::consume::KafkaSettings {
        bootstrap_servers: bootstrap(),
        properties: Vec::new(),
    }
}

/// The base URL of the Confluent-compatible schema-registry API (no trailing slash).
pub fn registry_url() -> String {
    match OWN.get() {
        Some((_, r)) => r.clone(),
        None => env_or("CDC_VERIFIER_TEST_REGISTRY", DEFAULT_REGISTRY),
    }
    .trim_end_matches('/')
    .to_owned()
}

fn env_or(key: &str, default: &str) -> String {
    match std::env::var(key) {
        Ok(v) if !v.trim().is_empty() => v.trim().to_owned(),
        _ => default.to_owned(),
    }
}

/// A name no other test (in this or a concurrent run) uses:
/// `{prefix}-{pid}-{millis}-{counter}-{random}`; valid as a topic, group,
/// transactional id or registry subject.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let r: u32 = rand::random();
    format!("{prefix}-{}-{millis}-{n}-{r:08x}", std::process::id())
}

/// A client configuration pointing at the test broker.
pub fn client_config() -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap())
        .set("socket.timeout.ms", "10000")
        .set("message.timeout.ms", "30000");
    c
}

/// A producer context that records every delivery report.
#[derive(Default)]
pub struct DeliveryLog {
    reports: Mutex<Vec<Result<(i32, i64), String>>>,
}

impl DeliveryLog {
    /// (partition, offset) of every delivered record, in report order; panics
    /// if any delivery failed.
    pub fn delivered(&self) -> Vec<(i32, i64)> {
        let reports = self.reports.lock().unwrap();
        reports
            .iter()
            .map(|r| {
                r.clone()
                    .unwrap_or_else(|e| panic!("a record was not delivered: {e}"))
            })
            .collect()
    }

    /// Forgets the reports seen so far.
    pub fn clear(&self) {
        self.reports.lock().unwrap().clear();
    }
}

impl ClientContext for DeliveryLog {}

impl ProducerContext for DeliveryLog {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let report = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, m)) => Err(format!("{}/{}: {e}", m.topic(), m.partition())),
        };
        self.reports.lock().unwrap().push(report);
    }
}

/// A producer whose context records delivery reports.
pub type TestProducer = BaseProducer<DeliveryLog>;

/// An idempotent producer (acks=all) to the test broker.
pub fn idempotent_producer() -> TestProducer {
    client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create_with_context(DeliveryLog::default())
        .expect("creating an idempotent producer")
}

/// A transactional producer with `init_transactions` already done.
pub fn transactional_producer(transactional_id: &str) -> TestProducer {
    let p: TestProducer = client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("transactional.id", transactional_id)
        .set("transaction.timeout.ms", "60000")
        .create_with_context(DeliveryLog::default())
        .expect("creating a transactional producer");
    p.init_transactions(SERVICE_TIMEOUT)
        .expect("init_transactions on the test broker");
    p
}

/// A consumer that starts at the earliest offset, never auto-commits, and
/// belongs to `group`.
pub fn consumer(group: &str, isolation_level: &str) -> BaseConsumer {
    client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", isolation_level)
        .set("session.timeout.ms", "10000")
        .create()
        .expect("creating a consumer")
}

/// An admin client for the test broker.
pub fn admin() -> AdminClient<DefaultClientContext> {
    client_config().create().expect("creating an admin client")
}

/// Runs an admin-client future to completion (rdkafka's admin futures need no
/// particular runtime; a current-thread tokio runtime drives them).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
        .block_on(f)
}

/// Creates `name` with `partitions` partitions (replication factor 1) and
/// waits until every partition has a leader. Panics on failure.
pub fn create_topic(name: &str, partitions: i32) {
    create_topic_with(name, partitions, &[]);
}

/// Like [`create_topic`], with topic configs such as `("cleanup.policy", "compact")`.
pub fn create_topic_with(name: &str, partitions: i32, configs: &[(&str, &str)]) {
    require_kafka();
    let admin = admin();
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let opts = AdminOptions::new().operation_timeout(Some(SERVICE_TIMEOUT));
    let results = block_on(admin.create_topics([&topic], &opts))
        .unwrap_or_else(|e| panic!("creating topic {name}: {e}"));
    for r in results {
        if let Err((t, code)) = r {
            panic!("creating topic {t}: {code}");
        }
    }
    wait_for_topic(name, partitions);
}

/// Deletes topics (best effort, for tidy tests; the test broker is wiped on `up`).
pub fn delete_topics(names: &[&str]) {
    let admin = admin();
    let opts = AdminOptions::new().operation_timeout(Some(SERVICE_TIMEOUT));
    let _ = block_on(admin.delete_topics(names, &opts));
}

/// Waits until the broker's metadata shows `name` with `partitions` partitions,
/// each with a leader.
pub fn wait_for_topic(name: &str, partitions: i32) {
    let c = consumer(&unique_name("metadata"), "read_uncommitted");
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    loop {
        if let Ok(md) = c.fetch_metadata(Some(name), Duration::from_secs(5))
            && let Some(t) = md.topics().iter().find(|t| t.name() == name)
            && t.error().is_none()
            && t.partitions().len() == partitions as usize
            && t.partitions().iter().all(|p| p.leader() >= 0)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "topic {name} did not get {partitions} partitions with leaders within {SERVICE_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// (low, high) watermarks of one partition.
pub fn watermarks(topic: &str, partition: i32) -> (i64, i64) {
    let c = consumer(&unique_name("watermarks"), "read_uncommitted");
    c.fetch_watermarks(topic, partition, SERVICE_TIMEOUT)
        .unwrap_or_else(|e| panic!("watermarks of {topic}/{partition}: {e}"))
}

/// Fails the test unless both the broker and the registry answer.
pub fn require_services() {
    require_kafka();
    require_registry();
}

/// Fails the test unless the broker answers a metadata request.
pub fn require_kafka() {
    let bootstrap = bootstrap();
    let c: BaseConsumer = client_config()
        .create()
        .unwrap_or_else(|e| panic!("creating a Kafka client for {bootstrap}: {e}"));
    if let Err(e) = c.fetch_metadata(None, Duration::from_secs(15)) {
        panic!(
            "no Kafka broker answers at {bootstrap} ({e}). Integration tests need the local \
             services: run `scripts/services up` (or `scripts/test`), or point \
             CDC_VERIFIER_TEST_BOOTSTRAP at a broker"
        );
    }
}

/// Fails the test unless the registry answers `GET /subjects`.
pub fn require_registry() {
    let url = format!("{}/subjects", registry_url());
    let ok = http()
        .get(&url)
        .send()
        .map(|r| r.status().is_success())
        .unwrap_or(false);
    assert!(
        ok,
        "no schema registry answers at {url}. Integration tests need the local services: run \
         `scripts/services up` (or `scripts/test`), or point CDC_VERIFIER_TEST_REGISTRY at a \
         Confluent-compatible registry"
    );
}

/// A blocking HTTP client with test-friendly timeouts.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(SERVICE_TIMEOUT)
        .build()
        .expect("building an HTTP client")
}

/// A registry response: HTTP status and JSON body (`Json::Null` if the body is not JSON).
pub struct RegistryResponse {
    pub status: u16,
    pub body: Json,
}

impl RegistryResponse {
    /// The Confluent `error_code`, if the body carries one.
    pub fn error_code(&self) -> Option<i64> {
        self.body.get("error_code").and_then(Json::as_i64)
    }
}

/// `GET {registry}{path}`.
pub fn registry_get(path: &str) -> RegistryResponse {
    let url = format!("{}{path}", registry_url());
    let r = http()
        .get(&url)
        .header("Accept", REGISTRY_CONTENT_TYPE)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    to_response(r)
}

/// `POST {registry}{path}` with a JSON body.
pub fn registry_post(path: &str, body: &Json) -> RegistryResponse {
    let url = format!("{}{path}", registry_url());
    let r = http()
        .post(&url)
        .header("Content-Type", REGISTRY_CONTENT_TYPE)
        .header("Accept", REGISTRY_CONTENT_TYPE)
        .body(body.to_string())
        .send()
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    to_response(r)
}

fn to_response(r: reqwest::blocking::Response) -> RegistryResponse {
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Json::Null);
    RegistryResponse { status, body }
}

/// Registers an Avro schema (JSON text) under `subject`; returns its id.
pub fn register_avro(subject: &str, schema: &str) -> u32 {
    let body = serde_json::json!({ "schemaType": "AVRO", "schema": schema });
    let r = registry_post(&format!("/subjects/{subject}/versions"), &body);
    assert_eq!(r.status, 200, "registering under {subject}: {}", r.body);
    let id = r.body["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("registering under {subject}: no id in {}", r.body));
    u32::try_from(id).expect("schema id fits in 32 bits")
}

/// The schema text the registry holds for `id` (`GET /schemas/ids/{id}`).
pub fn schema_by_id(id: u32) -> String {
    let r = registry_get(&format!("/schemas/ids/{id}"));
    assert_eq!(r.status, 200, "GET /schemas/ids/{id}: {}", r.body);
    r.body["schema"]
        .as_str()
        .unwrap_or_else(|| panic!("GET /schemas/ids/{id}: no schema in {}", r.body))
        .to_owned()
}

/// Confluent wire format: magic byte 0, 4-byte big-endian schema id, payload.
pub fn confluent_frame(schema_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(0);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits a Confluent-framed message into (schema id, payload); panics if the frame is bad.
pub fn confluent_unframe(bytes: &[u8]) -> (u32, &[u8]) {
    assert!(
        bytes.len() >= 5,
        "a Confluent frame has at least 5 bytes, got {}",
        bytes.len()
    );
    assert_eq!(bytes[0], 0, "Confluent magic byte");
    let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
    (id, &bytes[5..])
}

/// Flushes a producer, failing the test on error.
pub fn flush<C: ProducerContext>(p: &BaseProducer<C>) {
    p.flush(SERVICE_TIMEOUT).expect("flushing the producer");
}

/// Polls `c` until it has returned `n` messages or `timeout` passed; returns
/// what arrived (the caller asserts the count). Consumer errors fail the test.
pub fn poll_n(c: &BaseConsumer, n: usize, timeout: Duration) -> Vec<OwnedMessage> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(n);
    while out.len() < n && Instant::now() < deadline {
        match c.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(e)) => panic!("consumer error: {e}"),
        }
    }
    out
}

/// Polls `c` for `dur` and returns every message that arrived in that time.
pub fn poll_for(c: &BaseConsumer, dur: Duration) -> Vec<OwnedMessage> {
    let deadline = Instant::now() + dur;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => out.push(m.detach()),
            Some(Err(e)) => panic!("consumer error: {e}"),
        }
    }
    out
}

/// A record header's value, as text.
pub fn header(m: &OwnedMessage, key: &str) -> Option<String> {
    use rdkafka::message::Headers;
    m.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Every record of `topic` up to its end as of now, read partition by partition (not for a
/// while: a group that takes long to join reads nothing in time). Committed records only.
pub fn read_to_end(topic: &str) -> Vec<OwnedMessage> {
    let c = consumer(&unique_name("to-end"), "read_committed");
    let md = c
        .fetch_metadata(Some(topic), SERVICE_TIMEOUT)
        .unwrap_or_else(|e| panic!("metadata of {topic}: {e}"));
    let Some(t) = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
    else {
        return Vec::new();
    };
    let mut tpl = rdkafka::TopicPartitionList::new();
    let mut ends = std::collections::BTreeMap::new();
    for p in t.partitions() {
        let (lo, hi) = c
            .fetch_watermarks(topic, p.id(), SERVICE_TIMEOUT)
            .unwrap_or_else(|e| panic!("watermarks of {topic}/{}: {e}", p.id()));
        if hi > lo {
            tpl.add_partition_offset(topic, p.id(), rdkafka::Offset::Beginning)
                .unwrap();
            ends.insert(p.id(), hi);
        }
    }
    if ends.is_empty() {
        return Vec::new();
    }
    c.assign(&tpl).unwrap();
    drop(tpl);
    let deadline = Instant::now() + SERVICE_TIMEOUT;
    let mut out = Vec::new();
    let mut at: std::collections::BTreeMap<i32, i64> = std::collections::BTreeMap::new();
    // (Transaction markers take offsets too: done once each partition's position reaches its
    // end, whatever was read.)
    while ends
        .iter()
        .any(|(p, hi)| at.get(p).copied().unwrap_or(-1) + 1 < *hi)
    {
        assert!(
            Instant::now() < deadline,
            "{topic} not read to its end in time"
        );
        match c.poll(Duration::from_millis(100)) {
            None => {
                let pos = c.position().unwrap();
                for e in pos.elements() {
                    if let rdkafka::Offset::Offset(o) = e.offset() {
                        let seen = at.entry(e.partition()).or_insert(-1);
                        *seen = (*seen).max(o - 1);
                    }
                }
            }
            Some(Ok(m)) => {
                let seen = at.entry(m.partition()).or_insert(-1);
                *seen = (*seen).max(m.offset());
                out.push(m.detach());
            }
            Some(Err(e)) => panic!("consumer error on {topic}: {e}"),
        }
    }
    out
}
