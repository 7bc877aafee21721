//! The consumer thread: polls Kafka in batches and hands them to the verification loop. A
//! batch owns one buffer of key and value bytes and a list of record headers; batches are
//! recycled, so a running service does not allocate per record. Topics can be added while it
//! runs; a partition whose offset fell out of range is reported in the batch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;

use crate::consume::{ConsumeError, Consumer};
use crate::ffi::MessageQueue;

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

/// A partition whose fetch offset was out of range (records deleted by retention, or the
/// topic deleted and created again): its fetching stopped at `offset` until it is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetReset {
    pub topic: u32,
    pub partition: u32,
    pub offset: i64,
}

#[derive(Default)]
pub struct Batch {
    pub data: Vec<u8>,
    pub recs: Vec<Rec>,
    /// Partitions whose fetching stopped out of range (with `auto.offset.reset=error`).
    pub resets: Vec<OffsetReset>,
}

impl Batch {
    fn clear(&mut self) {
        self.data.clear();
        self.recs.clear();
        self.resets.clear();
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

/// The batches of the consumer thread, read by the verification loop; read batches are handed
/// back for reuse.
pub struct Batches {
    full: Receiver<Batch>,
    empty: SyncSender<Batch>,
    stop: Arc<AtomicBool>,
    topics: TopicIndex,
    thread: Option<JoinHandle<Result<(), ConsumeError>>>,
}

/// Topic name → index in the verified topic list, shared with the consumer thread.
type TopicIndex = Arc<RwLock<HashMap<String, u32>>>;

/// The consumer thread has ended.
#[derive(Debug)]
pub struct Ended;

impl Batches {
    /// Starts the consumer thread on the partitions assigned to `consumer`. A record's topic
    /// is its index in `topics`; records of other topics are skipped.
    pub fn start(
        consumer: &Consumer,
        topics: &[String],
        batch_size: usize,
    ) -> Result<Batches, ConsumeError> {
        let (full_tx, full) = std::sync::mpsc::sync_channel::<Batch>(4);
        let (empty, empty_rx) = std::sync::mpsc::sync_channel::<Batch>(8);
        let stop = Arc::new(AtomicBool::new(false));
        let index: TopicIndex = Arc::new(RwLock::new(
            topics
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i as u32))
                .collect(),
        ));
        let thread = ConsumerThread {
            consumer: consumer.inner.clone(),
            topics: index.clone(),
            batch_size,
            full: full_tx,
            empty: empty_rx,
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("consumer".into())
            .spawn(move || thread.run())
            .map_err(|e| ConsumeError::Spawn("consumer", e))?;
        Ok(Batches {
            full,
            empty,
            stop,
            topics: index,
            thread: Some(thread),
        })
    }

    /// Makes a topic's records known under `index`: called before its partitions are
    /// assigned, so that none of its records is skipped.
    pub fn add_topic(&self, name: &str, index: u32) {
        self.topics
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), index);
    }

    /// Waits for the next batch; `Err` once the consumer thread has ended.
    pub fn recv(&self, timeout: Duration) -> Result<Option<Batch>, Ended> {
        match self.full.recv_timeout(timeout) {
            Ok(b) => Ok(Some(b)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(Ended),
        }
    }

    /// Hands a batch back for reuse.
    pub fn recycle(&self, batch: Batch) {
        let _ = self.empty.try_send(batch);
    }

    /// Asks the consumer thread to stop; batches already read can still be received.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Waits for the consumer thread to end and says how it ended; `None` when it was
    /// joined before.
    pub fn join(&mut self) -> Option<Result<(), ConsumeError>> {
        let h = self.thread.take()?;
        Some(h.join().unwrap_or(Err(ConsumeError::Panicked)))
    }
}

struct ConsumerThread {
    consumer: Arc<BaseConsumer>,
    /// Topic name → index in the verified topic list.
    topics: TopicIndex,
    batch_size: usize,
    full: SyncSender<Batch>,
    empty: Receiver<Batch>,
    stop: Arc<AtomicBool>,
}

impl ConsumerThread {
    fn run(self) -> Result<(), ConsumeError> {
        let mut queue = MessageQueue::of(self.consumer.clone()).ok_or(ConsumeError::NoQueue)?;
        // Topic handles are stable for the client's lifetime: names are looked up once they
        // are known (a topic added later is looked up until it is).
        let mut topic_of: HashMap<usize, u32> = HashMap::new();
        let lookup = |name: &str| {
            self.topics
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(name)
                .copied()
        };
        let mut spare: Option<Batch> = None;
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
            let mut wait_ms = 50;
            while batch.recs.len() < self.batch_size {
                let want = self.batch_size - batch.recs.len();
                let n = queue.consume_batch(wait_ms, want, |msg| {
                    if msg.is_offset_reset() {
                        if let Some(topic) = lookup(msg.topic_name().as_ref()) {
                            batch.resets.push(OffsetReset {
                                topic,
                                partition: msg.partition() as u32,
                                offset: msg.offset(),
                            });
                        }
                        return;
                    }
                    if let Some(error) = msg.error() {
                        tracing::warn!(%error, topic = %msg.topic_name(), partition = msg.partition(), "kafka consumer error");
                        return;
                    }
                    if !msg.is_message() {
                        return;
                    }
                    let topic = match topic_of.get(&msg.topic_handle()) {
                        Some(t) => Some(*t),
                        None => lookup(msg.topic_name().as_ref()).inspect(|t| {
                            topic_of.insert(msg.topic_handle(), *t);
                        }),
                    };
                    if let Some(topic) = topic {
                        let key = batch.push_bytes(msg.key());
                        let value = batch.push_bytes(msg.payload());
                        batch.recs.push(Rec {
                            topic,
                            partition: msg.partition() as u32,
                            offset: msg.offset(),
                            timestamp_ms: msg.timestamp_ms(),
                            key,
                            value,
                        });
                    }
                });
                if n == 0 {
                    break;
                }
                wait_ms = 0;
            }
            if batch.recs.is_empty() && batch.resets.is_empty() {
                spare = Some(batch);
                continue;
            }
            loop {
                match self
                    .full
                    .send_timeout_compat(batch, Duration::from_millis(100))
                {
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
