//! Every call into librdkafka's C API that rdkafka's safe wrapper does not offer, with the
//! proof of each beside it. The rest of the crate uses only the safe types below.
//!
//! Two calls are missing from the wrapper: reading a consumer's queue in batches (one call
//! hands over up to a batch of messages, instead of one poll with its clock readings and event
//! wrapping per message), and the watermarks librdkafka learnt from fetch responses, which
//! need no broker round trip.

use std::borrow::Cow;
use std::ffi::{CStr, c_void};
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer as _};

/// The queue of a consumer, read in batches. It holds the consumer, so the client the queue
/// belongs to outlives it.
pub(crate) struct MessageQueue {
    queue: *mut rd::rd_kafka_queue_t,
    /// Room for the message pointers of one call.
    msgs: Vec<*mut rd::rd_kafka_message_t>,
    _consumer: Arc<BaseConsumer>,
}

// SAFETY: librdkafka queue handles may be used from any thread, and the message pointers in
// `msgs` never outlive one call of `consume_batch`.
unsafe impl Send for MessageQueue {}

impl MessageQueue {
    /// The queue `consumer`'s messages arrive on; `None` when librdkafka has none for it.
    pub(crate) fn of(consumer: Arc<BaseConsumer>) -> Option<MessageQueue> {
        // SAFETY: the client pointer is valid while `consumer` lives, and the queue keeps
        // `consumer` alive until after the handle is destroyed (field order does not matter:
        // `Drop` below runs before any field is dropped).
        let queue = unsafe { rd::rd_kafka_queue_get_consumer(consumer.client().native_ptr()) };
        (!queue.is_null()).then(|| MessageQueue {
            queue,
            msgs: vec![std::ptr::null_mut(); 1024],
            _consumer: consumer,
        })
    }

    /// Waits up to `wait_ms` for messages and hands up to `max` of them (at most 1024) to
    /// `each`, in order; returns how many were handed over.
    pub(crate) fn consume_batch(
        &mut self,
        wait_ms: i32,
        max: usize,
        mut each: impl FnMut(&Message<'_>),
    ) -> usize {
        let want = max.min(self.msgs.len());
        // SAFETY: `msgs` has room for `want` pointers; librdkafka fills the first n.
        let n = unsafe {
            rd::rd_kafka_consume_batch_queue(self.queue, wait_ms, self.msgs.as_mut_ptr(), want)
        };
        if n <= 0 {
            return 0;
        }
        for &m in &self.msgs[..n as usize] {
            // SAFETY: a message librdkafka returned, valid until it is destroyed below; the
            // view borrows it only for the call of `each`.
            let msg = Message {
                ptr: m,
                raw: unsafe { &*m },
            };
            each(&msg);
            // SAFETY: returned by rd_kafka_consume_batch_queue and destroyed exactly once.
            unsafe { rd::rd_kafka_message_destroy(m) };
        }
        n as usize
    }
}

impl Drop for MessageQueue {
    fn drop(&mut self) {
        // SAFETY: the handle came from rd_kafka_queue_get_consumer and is released once, while
        // the consumer it belongs to is still alive (held by `self`).
        unsafe { rd::rd_kafka_queue_destroy(self.queue) }
    }
}

/// One message of a batch, borrowed from librdkafka for the duration of one callback.
pub(crate) struct Message<'a> {
    ptr: *mut rd::rd_kafka_message_t,
    raw: &'a rd::rd_kafka_message_t,
}

impl Message<'_> {
    /// The error librdkafka reports instead of a message, if any; the end of a partition is
    /// not an error here.
    pub(crate) fn error(&self) -> Option<Cow<'_, str>> {
        use rd::rd_kafka_resp_err_t as E;
        match self.raw.err {
            E::RD_KAFKA_RESP_ERR_NO_ERROR | E::RD_KAFKA_RESP_ERR__PARTITION_EOF => None,
            // SAFETY: rd_kafka_err2str returns a static, NUL-terminated string for any code.
            err => Some(unsafe { CStr::from_ptr(rd::rd_kafka_err2str(err)) }.to_string_lossy()),
        }
    }

    /// Whether this is librdkafka's report that the partition's fetch offset is out of range
    /// (`auto.offset.reset=error`): its fetching stopped at [`offset`](Self::offset).
    pub(crate) fn is_offset_reset(&self) -> bool {
        self.raw.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET
    }

    /// Whether this is a message (not an error or a partition's end).
    pub(crate) fn is_message(&self) -> bool {
        self.raw.err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    }

    /// Identifies the message's topic: the same for every message of one topic while the
    /// client lives.
    pub(crate) fn topic_handle(&self) -> usize {
        self.raw.rkt as usize
    }

    /// The message's topic; an error not about a partition has none (an empty name).
    pub(crate) fn topic_name(&self) -> Cow<'_, str> {
        if self.raw.rkt.is_null() {
            return Cow::Borrowed("");
        }
        // SAFETY: a message's topic handle, when not null, is valid while the message is, and
        // its name is a NUL-terminated string owned by the handle.
        unsafe { CStr::from_ptr(rd::rd_kafka_topic_name(self.raw.rkt)) }.to_string_lossy()
    }

    pub(crate) fn partition(&self) -> i32 {
        self.raw.partition
    }

    pub(crate) fn offset(&self) -> i64 {
        self.raw.offset
    }

    /// The record's timestamp in ms, 0 when it has none.
    pub(crate) fn timestamp_ms(&self) -> i64 {
        let mut ts_type = rd::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is valid for this borrow; librdkafka only writes `ts_type`.
        let ts = unsafe { rd::rd_kafka_message_timestamp(self.ptr, &mut ts_type) };
        ts.max(0)
    }

    pub(crate) fn key(&self) -> Option<&[u8]> {
        // SAFETY: a message's key is `key_len` bytes at `key` when not null.
        unsafe { bytes(self.raw.key, self.raw.key_len) }
    }

    pub(crate) fn payload(&self) -> Option<&[u8]> {
        // SAFETY: a message's payload is `len` bytes at `payload` when not null.
        unsafe { bytes(self.raw.payload, self.raw.len) }
    }
}

/// # Safety
/// When `p` is not null it points to `len` readable bytes that outlive `'a`.
unsafe fn bytes<'a>(p: *mut c_void, len: usize) -> Option<&'a [u8]> {
    // SAFETY: as the caller promises.
    (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts(p as *const u8, len) })
}

/// The high watermark librdkafka last learnt from fetch responses, without a broker round
/// trip; `None` until it has fetched from the partition.
pub(crate) fn cached_high_watermark(
    consumer: &BaseConsumer,
    topic: &CStr,
    partition: u32,
) -> Option<i64> {
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` is borrowed; the topic is a valid C
    // string; librdkafka only writes the two out-parameters.
    let err = unsafe {
        rd::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition as i32,
            &mut low,
            &mut high,
        )
    };
    (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high)
}

/// The consumer group's generation and this member's id, as the group coordinator last gave
/// them (at an assignment, those of that assignment); `None` outside a group.
pub(crate) fn group_generation<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
) -> Option<(i32, String)> {
    let rk = consumer.client().native_ptr();
    // SAFETY: the client pointer is valid while `consumer` is borrowed. The group metadata
    // returned is a copy owned here: read, then destroyed once. The member id is a string
    // librdkafka allocated for the caller, copied, then freed with `rd_kafka_mem_free`.
    unsafe {
        let md = rd::rd_kafka_consumer_group_metadata(rk);
        if md.is_null() {
            return None;
        }
        let generation = rd::rd_kafka_consumer_group_metadata_generation_id(md);
        rd::rd_kafka_consumer_group_metadata_destroy(md);
        let id = rd::rd_kafka_memberid(rk);
        if id.is_null() {
            return None;
        }
        let member = CStr::from_ptr(id).to_string_lossy().into_owned();
        rd::rd_kafka_mem_free(rk, id.cast());
        Some((generation, member))
    }
}
