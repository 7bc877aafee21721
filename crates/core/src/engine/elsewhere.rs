//! What other verifiers read of the same streams: several verifiers sharing the tables (each a
//! shard of them) tell each other how far each stream has written, so that a shard whose
//! tables are quiet still learns that a replica has moved past a window — in one verifier the
//! stream's other tables would have said so.
//!
//! A stream's records are written in its order (one connector, one log), so a record of any
//! table at position P stamped T says that every record of this shard's tables before P was
//! stamped before T: it goes into the stream's clock as if read here, and moves the verifier's
//! clock as it would have.

use super::*;
use crate::origins::{Epoch, SEQ_BITS};

/// How far a stream has written, as one verifier read it: a record of it at `position`,
/// stamped at or before `ts_ms`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reach {
    pub stream: String,
    pub ts_ms: i64,
    pub tx: u64,
    pub order: u32,
}

impl<D: Decoder> Engine<D> {
    /// The newest record of each stream read here, as [`Reach`]es (streams not read yet left
    /// out). Its stamp is the end of its 10 ms bucket: never earlier than the record's.
    pub fn reach(&self) -> Vec<Reach> {
        self.streams
            .iter()
            .filter(|s| s.clock.newest != ClockIndex::NO_BUCKET)
            .map(|s| Reach {
                stream: s.name.clone(),
                ts_ms: s
                    .clock
                    .newest
                    .saturating_mul(ClockIndex::BUCKET_MS)
                    .saturating_add(ClockIndex::BUCKET_MS - 1),
                tx: s.clock.newest_max.tx,
                order: s.clock.newest_max.order,
            })
            .collect()
    }

    /// The origins of positions, in the order this engine placed them.
    pub fn origin_epochs(&self) -> Vec<Epoch> {
        self.decoder.origins().epochs()
    }

    /// Takes in what another verifier read of a stream, whose positions it placed by
    /// `origins`. Returns whether it was taken: not for an unknown stream, nor for a position
    /// of an origin the two engines do not order alike.
    pub fn note_elsewhere(&mut self, r: &Reach, origins: &[Epoch]) -> bool {
        let Some(s) = self.stream_id(&r.stream) else {
            return false;
        };
        let ours = self.decoder.origins().epochs();
        let common = ours.iter().zip(origins).take_while(|(a, b)| a == b).count() as u64;
        let epoch = r.tx >> SEQ_BITS;
        // (No origin on either side: positions are not GTIDs. One side without: it has not
        // placed the origin yet, and may place another first.)
        let placed_alike = epoch < common || (ours.is_empty() && origins.is_empty());
        if !placed_alike {
            return false;
        }
        let p = Position {
            tx: r.tx,
            order: r.order,
        };
        self.streams[s as usize].clock.note(r.ts_ms, p);
        // One process would have read that record too, and its clock would have moved to its
        // stamp (the start of its bucket: never later than the record's). Without this, a
        // verifier holding only tables that went quiet keeps the clock of its own last record,
        // and never sees the stream complete past it.
        let stamped = r.ts_ms.saturating_sub(ClockIndex::BUCKET_MS - 1);
        if stamped > self.now_ms && !self.in_future(stamped) {
            self.now_ms = stamped;
        }
        true
    }
}
