//! A small topic the verifiers sharing the tables tell each other things on (how far each
//! stream has written, as each read it): every instance writes its own keys and reads
//! everyone's. Nothing here is needed for correctness of what one instance commits; what is
//! lost or late only makes a quiet shard wait longer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};

use crate::consume::{ConsumeError, KafkaSettings};

/// A record: its key and value.
type Said = (String, Vec<u8>);

/// The newest record under each key, with the order it came in (see [`Exchange::latest`]).
type Latest = BTreeMap<String, (u64, Vec<u8>)>;

/// How many kept records an exchange holds (the newest).
pub const KEPT: usize = 64;

/// How many keys [`Exchange::latest`] remembers, the most recently said (a key is an
/// instance's stream in one assignment: every assignment says under new keys).
pub const LATEST: usize = 4096;

/// The exchange: what this instance says, what the others said.
pub struct Exchange {
    topic: String,
    producer: BaseProducer,
    heard: Mutex<Receiver<Said>>,
    /// The newest record under each key passed on, with the order it came in, for
    /// [`Exchange::latest`].
    latest: Arc<Mutex<Latest>>,
    kept: Arc<Mutex<Vec<Said>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exchange {
    /// Reads `topic` (one partition, which must exist) from its start, and writes to it.
    /// Records whose key starts with `keep` are kept, in the order heard (the newest
    /// [`KEPT`]), for [`Exchange::kept`], instead of passed on to [`Exchange::heard`].
    pub fn open(
        settings: &KafkaSettings,
        topic: &str,
        keep: &str,
    ) -> Result<Exchange, ConsumeError> {
        let producer: BaseProducer = settings
            .config_with(&[("linger.ms", "20"), ("acks", "1")])
            .create()
            .map_err(crate::secrets::redact)?;
        let consumer: BaseConsumer = settings
            .config_with(&[
                ("group.id", "cdc-verifier-exchange"),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("fetch.wait.max.ms", "100"),
            ])
            .create()
            .map_err(crate::secrets::redact)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
        consumer.assign(&tpl)?;
        let (tx, rx): (Sender<Said>, _) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let kept = Arc::new(Mutex::new(Vec::new()));
        let latest: Arc<Mutex<Latest>> = Arc::default();
        let thread = {
            let stop = stop.clone();
            let kept = kept.clone();
            let latest = latest.clone();
            let keep = keep.to_string();
            std::thread::Builder::new()
                .name("exchange".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
                            continue;
                        };
                        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).to_string();
                        let value = m.payload().unwrap_or_default().to_vec();
                        if !keep.is_empty() && key.starts_with(&keep) {
                            let mut k = kept.lock().unwrap_or_else(|p| p.into_inner());
                            if k.len() == KEPT {
                                k.remove(0);
                            }
                            k.push((key, value));
                            continue;
                        }
                        remember(
                            &mut latest.lock().unwrap_or_else(|p| p.into_inner()),
                            &key,
                            m.offset() as u64,
                            &value,
                        );
                        if tx.send((key, value)).is_err() {
                            break;
                        }
                    }
                })
                .map_err(|e| ConsumeError::Spawn("exchange", e))?
        };
        Ok(Exchange {
            topic: topic.to_string(),
            producer,
            heard: Mutex::new(rx),
            latest,
            kept,
            stop,
            thread: Some(thread),
        })
    }

    /// Says `value` under `key` (a later record under one key replaces it). Best effort: a
    /// full queue or a broker away loses it, and the next one says it again.
    pub fn say(&self, key: &str, value: &[u8]) {
        let _ = self.producer.send(
            BaseRecord::to(&self.topic)
                .partition(0)
                .key(key)
                .payload(value),
        );
        self.producer.poll(Duration::ZERO);
    }

    /// Everything heard since the last call, in order, this instance's own records included.
    pub fn heard(&self) -> Vec<Said> {
        let rx = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        rx.try_iter().collect()
    }

    /// The newest record heard under each key since the exchange opened (of the [`LATEST`]
    /// keys said most recently), this instance's own included; what was heard until now is
    /// taken off [`Exchange::heard`]. For a reader that starts over (a new assignment): what
    /// was said before it began, and not said again since, still counts.
    pub fn latest(&self) -> Vec<Said> {
        let rx = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        let _ = rx.try_iter().count();
        let l = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        l.iter().map(|(k, (_, v))| (k.clone(), v.clone())).collect()
    }
}

impl Exchange {
    /// The records kept under `key`, in the order heard (see [`Exchange::open`]).
    pub fn kept(&self, key: &str) -> Vec<Vec<u8>> {
        let k = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        k.iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

/// Keeps `value` as the newest under `key` (said at `seq`, in the order heard); past
/// [`LATEST`] keys, the key said least recently makes room.
fn remember(latest: &mut Latest, key: &str, seq: u64, value: &[u8]) {
    if latest.len() >= LATEST && !latest.contains_key(key) {
        let oldest = latest.iter().min_by_key(|(_, (n, _))| *n);
        if let Some(k) = oldest.map(|(k, _)| k.clone()) {
            latest.remove(&k);
        }
    }
    latest.insert(key.to_string(), (seq, value.to_vec()));
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.producer.flush(Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_bound_the_key_said_least_recently_makes_room() {
        let mut l = BTreeMap::new();
        for i in 0..LATEST as u64 {
            remember(&mut l, &format!("k{i}"), i, b"v");
        }
        // k0 said again: now k1 is the least recent.
        remember(&mut l, "k0", LATEST as u64, b"again");
        remember(&mut l, "new", LATEST as u64 + 1, b"n");
        assert_eq!(l.len(), LATEST);
        assert!(!l.contains_key("k1"));
        assert_eq!(l["k0"].1, b"again");
        assert_eq!(l["new"].1, b"n");
    }
}
