//! The partitions' end offsets, asked of the broker on a thread of their own.

use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use crate::consume::{ConsumeError, Consumer};

/// The end offsets of the assigned partitions: (topic, partition, offset).
pub type Ends = Vec<(String, u32, i64)>;

/// The clock reading a question was asked at, and the answer.
pub type Answer = (i64, Result<Ends, ConsumeError>);

/// Asks the broker for the end offset of every assigned partition, on its own thread, one
/// question at a time. An answer says which partitions held nothing unread at that moment;
/// the clock reading sent with the question says how far that vouches for them. (The
/// client's cached high watermarks are not enough: they are only refreshed by fetches, which
/// stop while the local queue is full.)
pub struct EndOffsets {
    consumer: Consumer,
    timeout: Duration,
    ask: SyncSender<i64>,
    answers: Receiver<Answer>,
    pending: bool,
    last_asked: Instant,
}

impl EndOffsets {
    pub fn start(consumer: &Consumer, timeout: Duration) -> Result<EndOffsets, ConsumeError> {
        let (ask, questions) = std::sync::mpsc::sync_channel::<i64>(1);
        let (reply, answers) = std::sync::mpsc::sync_channel(1);
        let c = consumer.clone();
        std::thread::Builder::new()
            .name("end-offsets".into())
            .spawn(move || {
                for as_of in questions {
                    let ends = c.end_offsets(timeout);
                    if reply.send((as_of, ends)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| ConsumeError::Spawn("end-offsets", e))?;
        Ok(EndOffsets {
            consumer: consumer.clone(),
            timeout,
            ask,
            answers,
            pending: false,
            last_asked: Instant::now() - Duration::from_secs(60),
        })
    }

    /// Asks, with the clock reading `as_of`, unless a question is pending or the last one was
    /// asked less than `every` ago.
    pub fn ask_every(&mut self, every: Duration, as_of: impl FnOnce() -> i64) {
        if !self.pending && self.last_asked.elapsed() >= every && self.ask.try_send(as_of()).is_ok()
        {
            self.pending = true;
            self.last_asked = Instant::now();
        }
    }

    /// The answer to the pending question, if it has come.
    pub fn answer(&mut self) -> Option<Answer> {
        let a = self.answers.try_recv().ok()?;
        self.pending = false;
        Some(a)
    }

    /// Asks now and waits for the answer (at shutdown); an answer to an older question is
    /// superseded by it.
    pub fn ask_now(&mut self) -> Result<Ends, ConsumeError> {
        if self.pending {
            let _ = self.answers.recv_timeout(self.timeout);
            self.pending = false;
        }
        self.consumer.end_offsets(self.timeout)
    }
}
