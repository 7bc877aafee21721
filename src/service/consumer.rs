//! The consumer thread: polls Kafka in batches and hands them to the verification loop. A
//! batch owns one buffer of key and value bytes and a list of record headers; batches are
//! recycled, so a running service does not allocate per record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

/// One record of a batch: coordinates and where its bytes lie in the batch buffer.
#[derive(Debug, Clone, Copy)]
pub struct Rec {
    pub topic: u32,
    pub partition: u32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<(u32, u32)>,
    pub value: Option<(u32, u32)>,
}

#[derive(Default)]
pub struct Batch {
    pub data: Vec<u8>,
    pub recs: Vec<Rec>,
}

impl Batch {
    pub fn clear(&mut self) {
        self.data.clear();
        self.recs.clear();
    }

    #[inline]
    pub fn bytes(&self, r: Option<(u32, u32)>) -> Option<&[u8]> {
        r.map(|(a, b)| &self.data[a as usize..b as usize])
    }

    fn push_bytes(&mut self, b: Option<&[u8]>) -> Option<(u32, u32)> {
        b.map(|b| {
            let start = self.data.len() as u32;
            self.data.extend_from_slice(b);
            (start, self.data.len() as u32)
        })
    }
}

pub struct ConsumerThread {
    pub consumer: Arc<BaseConsumer>,
    /// Topic name → index in the verified topic list.
    pub topics: HashMap<String, u32>,
    pub batch_size: usize,
    pub full: SyncSender<Batch>,
    pub empty: Receiver<Batch>,
    pub stop: Arc<AtomicBool>,
}

impl ConsumerThread {
    pub fn run(self) -> anyhow::Result<()> {
        let mut spare: Option<Batch> = None;
        let mut last_topic: Option<(String, u32)> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let mut batch = match spare.take() {
                Some(b) => b,
                None => match self.empty.try_recv() {
                    Ok(b) => b,
                    Err(TryRecvError::Empty) => Batch::default(),
                    Err(TryRecvError::Disconnected) => return Ok(()),
                },
            };
            batch.clear();
            let mut wait = Duration::from_millis(50);
            while batch.recs.len() < self.batch_size {
                match self.consumer.poll(wait) {
                    None => break,
                    // Whether a partition is caught up is read from cached watermarks by the loop.
                    Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "kafka consumer error");
                        break;
                    }
                    Some(Ok(m)) => {
                        // Consecutive records mostly share a topic: compare before hashing.
                        let name = m.topic();
                        let topic = match last_topic {
                            Some((ref n, t)) if n == name => t,
                            _ => {
                                let Some(&t) = self.topics.get(name) else { continue };
                                last_topic = Some((name.to_string(), t));
                                t
                            }
                        };
                        let key = batch.push_bytes(m.key());
                        let value = batch.push_bytes(m.payload());
                        batch.recs.push(Rec {
                            topic,
                            partition: m.partition() as u32,
                            offset: m.offset(),
                            timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                            key,
                            value,
                        });
                    }
                }
                wait = Duration::ZERO;
            }
            if batch.recs.is_empty() {
                spare = Some(batch);
                continue;
            }
            loop {
                match self.full.send_timeout_compat(batch, Duration::from_millis(100)) {
                    Ok(()) => break,
                    Err((b, false)) => {
                        if self.stop.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        batch = b;
                    }
                    Err((_, true)) => return Ok(()),
                }
            }
        }
        Ok(())
    }
}

/// `SyncSender` has no timed send: try, then sleep briefly, so that a stop request is seen
/// while the verification loop is busy.
trait SendTimeout<T> {
    fn send_timeout_compat(&self, t: T, d: Duration) -> Result<(), (T, bool)>;
}

impl<T> SendTimeout<T> for SyncSender<T> {
    fn send_timeout_compat(&self, mut t: T, d: Duration) -> Result<(), (T, bool)> {
        let step = Duration::from_millis(2);
        let mut waited = Duration::ZERO;
        loop {
            match self.try_send(t) {
                Ok(()) => return Ok(()),
                Err(std::sync::mpsc::TrySendError::Disconnected(x)) => return Err((x, true)),
                Err(std::sync::mpsc::TrySendError::Full(x)) => {
                    if waited >= d {
                        return Err((x, false));
                    }
                    t = x;
                    std::thread::sleep(step);
                    waited += step;
                }
            }
        }
    }
}

/// Waits for the next batch.
pub fn recv(rx: &Receiver<Batch>, timeout: Duration) -> Result<Option<Batch>, ()> {
    match rx.recv_timeout(timeout) {
        Ok(b) => Ok(Some(b)),
        Err(RecvTimeoutError::Timeout) => Ok(None),
        Err(RecvTimeoutError::Disconnected) => Err(()),
    }
}
