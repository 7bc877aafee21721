//! What the streams write to: records waiting for their emission time, and the faults and
//! connector delays found so far.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::manifest::{ConnectorDelay, Fault};

use super::faults::Deferred;

/// A record waiting for its emission time.
pub(super) struct Pending {
    pub(super) topic: u16,
    pub(super) partition: u32,
    pub(super) fault: u32,
    pub(super) key: Option<Vec<u8>>,
    pub(super) value: Option<Vec<u8>>,
}

/// Records ordered by (emission time, generation order). The heap holds only 16-byte keys; the
/// records wait in a ring indexed by generation order, which is nearly the order they leave in.
#[derive(Default)]
pub(super) struct Queue {
    heap: BinaryHeap<Reverse<(i64, u64)>>,
    slots: VecDeque<Option<Pending>>,
    /// The generation number of `slots[0]`.
    base: u64,
}

impl Queue {
    pub(super) fn push(&mut self, emit_ms: i64, p: Pending) {
        let seq = self.base + self.slots.len() as u64;
        self.slots.push_back(Some(p));
        self.heap.push(Reverse((emit_ms, seq)));
    }

    /// The earliest record, if it is due by `safe_ms`.
    pub(super) fn pop_due(&mut self, safe_ms: i64) -> Option<(i64, Pending)> {
        let &Reverse((emit_ms, seq)) = self.heap.peek()?;
        if emit_ms > safe_ms {
            return None;
        }
        self.heap.pop();
        let p = self.slots[(seq - self.base) as usize]
            .take()
            .expect("a queued record leaves once");
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
        Some((emit_ms, p))
    }
}

/// Output shared by all streams.
pub(super) struct Out {
    pub(super) queue: Queue,
    pub(super) faults: Vec<Fault>,
    pub(super) scratch: Vec<u8>,
    pub(super) deferred: Vec<Deferred>,
    pub(super) extra_ids: i64,
    pub(super) poison_count: u32,
    /// Primary events before the transaction being emitted.
    pub(super) primary_events: u64,
    /// Primary events between a duplicate run and its redelivery.
    pub(super) redelivery_gap: u64,
    /// Connectors that start late, for the manifest.
    pub(super) delays: Vec<ConnectorDelay>,
}

impl Out {
    pub(super) fn push(
        &mut self,
        emit_ms: i64,
        topic: u16,
        partition: u32,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        fault: u32,
    ) {
        self.queue.push(
            emit_ms,
            Pending {
                topic,
                partition,
                fault,
                key,
                value,
            },
        );
    }
}
