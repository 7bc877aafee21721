//! The service's output: alerts and dead letters kept until Kafka acknowledged them.
//!
//! Every record gets a sequence number and stays here, bytes and all, until its delivery
//! report says it was written. A failed delivery (a timeout, a topic that refuses it, a broker
//! away) or a failed enqueue is tried again with growing pauses, for as long as it takes; the
//! caller commits its input offsets only up to what [`Outbox::acked_below`] allows. A dead
//! letter too large for Kafka is sent truncated, and if even that is refused, by its
//! coordinates only.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use crate::produce::{ProduceError, ProducerSettings};

/// What a record is for: counted apart, and a dead letter may be shrunk to fit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Output {
    /// Episodes, on the alert topic.
    Alert,
    DeadLetter,
    /// Verdicts, on the detail topic.
    Detail,
}

impl Output {
    pub const ALL: [Output; 3] = [Output::Alert, Output::DeadLetter, Output::Detail];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Output::Alert => "alerts",
            Output::DeadLetter => "dead_letters",
            Output::Detail => "details",
        }
    }
}

/// One record to keep until acknowledged.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub output: Output,
    pub topic: String,
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

/// Counters of the outbox, for metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct OutboxStats {
    /// Records acknowledged, per [`Output::ALL`].
    pub acked: [u64; Output::ALL.len()],
    /// Failed deliveries and enqueues (each try counts), per [`Output::ALL`].
    pub failed: [u64; Output::ALL.len()],
    /// Records waiting for an acknowledgement, per [`Output::ALL`].
    pub pending: [u64; Output::ALL.len()],
    /// Dead letters sent truncated, or by coordinates only.
    pub truncated: u64,
}

/// A failure episode: from the first failed delivery until every record went through.
#[derive(Clone, Debug)]
pub struct Failing {
    pub topic: String,
    pub error: String,
    pub since: Instant,
}

#[derive(Debug)]
enum State {
    /// Handed to librdkafka under this producer generation.
    InFlight(u64),
    /// To be sent (again) at this time.
    Due(Instant),
}

struct Entry {
    rec: Outgoing,
    state: State,
    /// 0: as given; 1: truncated to fit; 2: coordinates only.
    shrink: u8,
    /// Failed tries so far: the pause before the next grows with them.
    attempts: u32,
}

/// Delivery reports, tagged with the sequence number passed as the opaque.
struct Reports {
    reports: Mutex<Vec<(u64, Result<(), KafkaError>)>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        let r = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(e.clone()),
        };
        self.reports.lock().unwrap().push((seq as u64, r));
    }
}

/// The producer of alerts and dead letters that keeps each record until it is acknowledged.
pub struct Outbox {
    settings: ProducerSettings,
    producer: ThreadedProducer<Reports>,
    generation: u64,
    entries: BTreeMap<u64, Entry>,
    next_seq: u64,
    stats: OutboxStats,
    failing: Option<Failing>,
    /// Pause before a record's second try; doubles with each failure up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Largest record librdkafka accepts (`message.max.bytes`).
    max_bytes: usize,
}

impl Outbox {
    pub fn new(settings: &ProducerSettings) -> Result<Self, ProduceError> {
        let mut settings = settings.clone();
        // Every record's outcome is needed, successes included.
        settings
            .extra
            .push(("delivery.report.only.error".into(), "false".into()));
        let max_bytes = settings
            .extra
            .iter()
            .rev()
            .find(|(k, _)| k == "message.max.bytes")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(1_000_000);
        let producer = create(&settings)?;
        Ok(Outbox {
            settings,
            producer,
            generation: 0,
            entries: BTreeMap::new(),
            next_seq: 0,
            stats: OutboxStats::default(),
            failing: None,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_bytes,
        })
    }

    /// Keeps a record and sends it; returns its sequence number.
    pub fn push(&mut self, rec: Outgoing) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stats.pending[rec.output as usize] += 1;
        self.entries.insert(
            seq,
            Entry {
                rec,
                state: State::Due(Instant::now()),
                shrink: 0,
                attempts: 0,
            },
        );
        self.send(seq);
        seq
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Every record numbered below this was acknowledged.
    pub fn acked_below(&self) -> u64 {
        self.entries.keys().next().copied().unwrap_or(self.next_seq)
    }

    /// Records not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.entries.len()
    }

    pub fn stats(&self) -> OutboxStats {
        self.stats
    }

    /// The failure episode in progress, if any.
    pub fn failing(&self) -> Option<&Failing> {
        self.failing.as_ref()
    }

    /// Takes in the delivery reports and sends again what is due.
    pub fn poll(&mut self) {
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            // An idempotent producer that lost its sequence state cannot go on: a new one
            // takes over every record not yet acknowledged.
            tracing::error!(error = %reason, ?code, "the alert producer failed fatally: starting a new one and sending its records again");
            self.note_failure("(all)", &format!("fatal producer error: {reason}"));
            match create(&self.settings) {
                Ok(p) => {
                    self.generation += 1;
                    self.producer = p;
                    let now = Instant::now();
                    for e in self.entries.values_mut() {
                        e.state = State::Due(now);
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot create a new alert producer"),
            }
        }
        let reports = std::mem::take(&mut *self.producer.context().reports.lock().unwrap());
        for (seq, r) in reports {
            let Some(e) = self.entries.get_mut(&seq) else {
                continue;
            };
            if !matches!(e.state, State::InFlight(g) if g == self.generation) {
                continue; // a report of a producer replaced since
            }
            match r {
                Ok(()) => {
                    let e = self.entries.remove(&seq).expect("present");
                    self.stats.acked[e.rec.output as usize] += 1;
                    self.stats.pending[e.rec.output as usize] -= 1;
                }
                Err(err) => self.failed(seq, &err),
            }
        }
        if self.entries.is_empty() {
            self.recovered();
        }
        let now = Instant::now();
        let due: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.state, State::Due(t) if t <= now))
            .map(|(s, _)| *s)
            .collect();
        for seq in due {
            self.send(seq);
        }
    }

    /// Polls until every record is acknowledged or `timeout` passed; true when all were.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            if self.entries.is_empty() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, seq: u64) {
        let generation = self.generation;
        let e = self.entries.get_mut(&seq).expect("present");
        let (topic, key, value, headers) = shaped(&e.rec, e.shrink, self.max_bytes);
        let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(&topic, seq as usize);
        if let Some(ts) = e.rec.timestamp_ms {
            record = record.timestamp(ts);
        }
        if let Some(k) = key.as_deref() {
            record = record.key(k);
        }
        if let Some(v) = value.as_deref() {
            record = record.payload(v);
        }
        if !headers.is_empty() {
            let mut h = OwnedHeaders::new_with_capacity(headers.len());
            for (k, v) in &headers {
                h = h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                });
            }
            record = record.headers(h);
        }
        match self.producer.send(record) {
            Ok(()) => e.state = State::InFlight(generation),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                // The producer's thread drains the queue; the next poll tries again.
                e.state = State::Due(Instant::now() + Duration::from_millis(5));
            }
            Err((err, _)) => self.failed(seq, &err),
        }
    }

    /// A failed enqueue or delivery: a dead letter too large is shrunk and sent at once;
    /// anything else is tried again after a pause.
    fn failed(&mut self, seq: u64, err: &KafkaError) {
        let e = self.entries.get_mut(&seq).expect("present");
        self.stats.failed[e.rec.output as usize] += 1;
        let too_large = err.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge);
        if too_large && e.rec.output == Output::DeadLetter && e.shrink < 2 {
            e.shrink += 1;
            if e.shrink == 1 {
                self.stats.truncated += 1;
            }
            tracing::warn!(
                topic = %e.rec.topic,
                size = record_size(&e.rec),
                error = %err,
                "a dead letter is too large for Kafka: sending it {}",
                if e.shrink == 1 { "truncated" } else { "by its coordinates only" }
            );
            e.state = State::Due(Instant::now());
            return;
        }
        let topic = e.rec.topic.clone();
        let pause = self
            .initial_backoff
            .saturating_mul(1 << e.attempts.min(16))
            .min(self.max_backoff);
        e.attempts += 1;
        let jitter = Duration::from_millis(seq % 97);
        e.state = State::Due(Instant::now() + pause + jitter);
        self.note_failure(&topic, &err.to_string());
    }

    fn note_failure(&mut self, topic: &str, error: &str) {
        if self.failing.is_none() {
            tracing::error!(
                topic,
                error,
                "cannot deliver to Kafka: keeping the records and trying again; offsets are not committed past them"
            );
            self.failing = Some(Failing {
                topic: topic.to_owned(),
                error: error.to_owned(),
                since: Instant::now(),
            });
        }
    }

    fn recovered(&mut self) {
        if let Some(f) = self.failing.take() {
            tracing::info!(
                topic = %f.topic,
                seconds = f.since.elapsed().as_secs_f64(),
                "delivering to Kafka again: every record kept was acknowledged"
            );
        }
    }
}

fn create(settings: &ProducerSettings) -> Result<ThreadedProducer<Reports>, ProduceError> {
    settings
        .client_config()
        .create_with_context(Reports {
            reports: Mutex::new(Vec::new()),
        })
        .map_err(|source| ProduceError::Client {
            bootstrap: settings.bootstrap_servers.clone(),
            source: crate::secrets::redact(source),
        })
}

fn record_size(r: &Outgoing) -> usize {
    r.key.as_ref().map_or(0, Vec::len) + r.value.as_ref().map_or(0, Vec::len)
}

/// Room kept for headers and the record's framing when truncating.
const OVERHEAD: usize = 1024;

/// The record as sent at a shrink level: as given; truncated to fit `max_bytes` with
/// `cdc-verifier.truncated` and `cdc-verifier.original-size` headers; or with neither key nor
/// value, its headers (the coordinates) only.
type Shaped = (
    String,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, String)>,
);

fn shaped(r: &Outgoing, shrink: u8, max_bytes: usize) -> Shaped {
    let topic = r.topic.clone();
    if shrink == 0 {
        return (topic, r.key.clone(), r.value.clone(), r.headers.clone());
    }
    let mut headers = r.headers.clone();
    headers.push(("cdc-verifier.truncated".into(), "true".into()));
    headers.push((
        "cdc-verifier.original-size".into(),
        record_size(r).to_string(),
    ));
    if shrink >= 2 {
        return (topic, None, None, headers);
    }
    let header_bytes: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 8).sum();
    let budget = max_bytes.saturating_sub(OVERHEAD + header_bytes);
    let key = r
        .key
        .as_ref()
        .map(|k| k[..k.len().min(budget / 4)].to_vec());
    let room = budget - key.as_ref().map_or(0, Vec::len);
    let value = r.value.as_ref().map(|v| v[..v.len().min(room)].to_vec());
    (topic, key, value, headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter(key: usize, value: usize) -> Outgoing {
        Outgoing {
            output: Output::DeadLetter,
            topic: "dlq".into(),
            timestamp_ms: None,
            key: Some(vec![1; key]),
            value: Some(vec![2; value]),
            headers: vec![("cdc-verifier.offset".into(), "7".into())],
        }
    }

    #[test]
    fn a_dead_letter_is_truncated_to_fit_then_sent_by_coordinates() {
        let r = dead_letter(10, 5_000_000);
        let (_, k, v, h) = shaped(&r, 0, 1_000_000);
        assert_eq!(
            (k.unwrap().len(), v.unwrap().len(), h.len()),
            (10, 5_000_000, 1)
        );

        let (_, k, v, h) = shaped(&r, 1, 1_000_000);
        let size = k.as_ref().unwrap().len() + v.as_ref().unwrap().len();
        let hb: usize = h.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(size + hb < 1_000_000 && size > 990_000, "{size}");
        assert_eq!(k.unwrap().len(), 10, "a small key is kept whole");
        assert!(h.contains(&("cdc-verifier.truncated".into(), "true".into())));
        assert!(h.contains(&("cdc-verifier.original-size".into(), "5000010".into())));
        assert!(h.contains(&("cdc-verifier.offset".into(), "7".into())));

        let (_, k, v, h) = shaped(&r, 2, 1_000_000);
        assert!(k.is_none() && v.is_none());
        assert!(h.contains(&("cdc-verifier.offset".into(), "7".into())));
        assert!(h.contains(&("cdc-verifier.original-size".into(), "5000010".into())));
    }
}

#[cfg(test)]
mod mock_tests {
    use super::*;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    fn outbox(bootstrap: &str) -> Outbox {
        let mut s = ProducerSettings::new(bootstrap);
        s.compression = "none".into();
        s.extra.push(("message.timeout.ms".into(), "1500".into()));
        let mut o = Outbox::new(&s).unwrap();
        o.initial_backoff = Duration::from_millis(100);
        o.max_backoff = Duration::from_millis(400);
        o
    }

    fn alert(topic: &str) -> Outgoing {
        Outgoing {
            output: Output::Alert,
            topic: topic.into(),
            timestamp_ms: None,
            key: Some(b"k".to_vec()),
            value: Some(b"v".to_vec()),
            headers: Vec::new(),
        }
    }

    fn poll_for(o: &mut Outbox, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            o.poll();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_record_is_kept_through_a_broker_outage_and_delivered_after() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("alerts", 1, 1).unwrap();
        let mut o = outbox(&mock.bootstrap_servers());
        assert!(o.wait(Duration::from_secs(10)));
        mock.broker_down(1).unwrap();
        let seq = o.push(alert("alerts"));
        poll_for(&mut o, Duration::from_secs(4));
        assert!(o.failing().is_some(), "the outage is noticed");
        assert!(o.stats().failed[Output::Alert as usize] >= 1);
        assert_eq!(o.acked_below(), seq, "not acknowledged: offsets stay");
        assert_eq!(o.pending(), 1, "the record is kept");
        mock.broker_up(1).unwrap();
        assert!(
            o.wait(Duration::from_secs(20)),
            "delivered once the broker is back"
        );
        assert_eq!(o.acked_below(), seq + 1);
        assert_eq!(o.stats().acked[Output::Alert as usize], 1);
        assert!(o.failing().is_none(), "recovered by itself");
    }

    #[test]
    fn produce_errors_are_retried_until_acknowledged() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("alerts", 1, 1).unwrap();
        let mut o = outbox(&mock.bootstrap_servers());
        // Permanent errors: librdkafka reports them at once, the outbox tries again.
        mock.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 3],
        );
        let first = o.push(alert("alerts"));
        o.push(alert("alerts"));
        assert!(o.wait(Duration::from_secs(20)));
        assert_eq!(o.acked_below(), first + 2);
        assert_eq!(o.stats().acked[Output::Alert as usize], 2);
        assert!(o.stats().failed[Output::Alert as usize] >= 1);
    }
}
