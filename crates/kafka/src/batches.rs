//! The consumer thread: polls Kafka in batches and hands them to the verification loop. A
//! batch owns one buffer of key and value bytes and a list of record headers; batches are
//! recycled, so a running service does not allocate per record.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::BaseConsumer;
use rdkafka::consumer::Consumer as _;

use crate::consume::{ConsumeError, Consumer};

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
    fn clear(&mut self) {
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

/// The batches of the consumer thread, read by the verification loop; read batches are handed
/// back for reuse.
pub struct Batches {
    full: Receiver<Batch>,
    empty: SyncSender<Batch>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), ConsumeError>>>,
}

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
        let thread = ConsumerThread {
            consumer: consumer.inner.clone(),
            topics: topics
                .iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), i as u32))
                .collect(),
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
            thread: Some(thread),
        })
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
    topics: HashMap<String, u32>,
    batch_size: usize,
    full: SyncSender<Batch>,
    empty: Receiver<Batch>,
    stop: Arc<AtomicBool>,
}

/// The consumer's queue, read in batches: one call hands over up to a batch of messages,
/// instead of one poll (with its clock readings and event wrapping) per message.
struct MessageQueue(*mut rdkafka::bindings::rd_kafka_queue_t);

// SAFETY: librdkafka queue handles may be used from any thread; this one is used by the
// consumer thread only.
unsafe impl Send for MessageQueue {}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        // SAFETY: the handle came from rd_kafka_queue_get_consumer and is released once.
        unsafe { rdkafka::bindings::rd_kafka_queue_destroy(self.0) }
    }
}

impl ConsumerThread {
    fn run(self) -> Result<(), ConsumeError> {
        use rdkafka::bindings as rd;
        // SAFETY: the client pointer is valid for the consumer's lifetime, which the Arc held
        // here outlives the queue handle.
        let queue = MessageQueue(unsafe {
            rd::rd_kafka_queue_get_consumer(self.consumer.client().native_ptr())
        });
        if queue.0.is_null() {
            return Err(ConsumeError::NoQueue);
        }
        let mut msgs: Vec<*mut rd::rd_kafka_message_t> = vec![std::ptr::null_mut(); 1024];
        // Topic handles are stable for the client's lifetime: names are looked up once.
        let mut topic_of: HashMap<usize, Option<u32>> = HashMap::new();
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
                let want = (self.batch_size - batch.recs.len()).min(msgs.len());
                // SAFETY: `msgs` has room for `want` pointers; librdkafka fills the first n.
                let n = unsafe {
                    rd::rd_kafka_consume_batch_queue(queue.0, wait_ms, msgs.as_mut_ptr(), want)
                };
                if n <= 0 {
                    break;
                }
                for &m in &msgs[..n as usize] {
                    // SAFETY: a message returned by librdkafka, valid until destroyed below;
                    // its key and payload are `key_len` and `len` bytes when not null.
                    unsafe {
                        let msg = &*m;
                        if msg.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                            if msg.err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF
                            {
                                let what = std::ffi::CStr::from_ptr(rd::rd_kafka_err2str(msg.err))
                                    .to_string_lossy();
                                tracing::warn!(error = %what, partition = msg.partition, "kafka consumer error");
                            }
                            rd::rd_kafka_message_destroy(m);
                            continue;
                        }
                        let topic = *topic_of.entry(msg.rkt as usize).or_insert_with(|| {
                            let name = std::ffi::CStr::from_ptr(rd::rd_kafka_topic_name(msg.rkt))
                                .to_string_lossy();
                            self.topics.get(name.as_ref()).copied()
                        });
                        if let Some(topic) = topic {
                            let slice = |p: *mut std::ffi::c_void, len: usize| {
                                (!p.is_null())
                                    .then(|| std::slice::from_raw_parts(p as *const u8, len))
                            };
                            let key = batch.push_bytes(slice(msg.key, msg.key_len));
                            let value = batch.push_bytes(slice(msg.payload, msg.len));
                            let mut ts_type =
                                rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
                            let ts = rd::rd_kafka_message_timestamp(m, &mut ts_type);
                            batch.recs.push(Rec {
                                topic,
                                partition: msg.partition as u32,
                                offset: msg.offset,
                                timestamp_ms: ts.max(0),
                                key,
                                value,
                            });
                        }
                        rd::rd_kafka_message_destroy(m);
                    }
                }
                wait_ms = 0;
            }
            if batch.recs.is_empty() {
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
