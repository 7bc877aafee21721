//! The origins of GTID positions, and how positions of different origins are ordered.
//!
//! A GTID names its origin server (MySQL `<uuid>:<seq>`) or replication domain (MariaDB
//! `<domain>-<server>-<seq>`), and the sequence counts that origin's transactions only. After
//! a MySQL failover the new primary's GTIDs are `<new uuid>:1, :2, …`: compared by sequence
//! alone, every new event would sit below what the old primary reached. So each origin is
//! given an **epoch**, in the order origins first appear (to any stream of the engine: the
//! replicas carry the primary's GTIDs, so they see the origins in the same order), and the
//! engine orders by `(epoch << 40) | sequence`. The first origin is epoch 0, whose positions
//! are the bare sequence numbers. MariaDB's sequence continues across a failover within a
//! domain (strict GTID mode), so its origin is the domain alone, not the server id.
//!
//! An origin that appears again, on a partition that has already shown a later origin, with
//! a sequence beyond any seen of it, has come back (a failback): it is given a new epoch from
//! that sequence on, so that its new transactions sort after the origin it replaced, while
//! its earlier ones (re-read, or lagging on other partitions) keep their place. Each return
//! is counted.

/// Bits of a position's sequence number; the epoch of its origin is above them.
pub const SEQ_BITS: u32 = 40;
/// The largest sequence number a position with an origin can carry.
pub const MAX_SEQ: u64 = (1 << SEQ_BITS) - 1;
/// The most epochs one engine can give (the bits left above the sequence).
pub const MAX_EPOCHS: usize = 1 << (64 - SEQ_BITS);

/// Where the origin lies in a position string: MySQL's server uuid (with its tag, if any),
/// up to the `:` that the first interval follows; MariaDB's domain, up to the first `-` of
/// `domain-server-seq`. `None` for a plain number or a bare range.
#[inline]
pub fn origin_span(s: &[u8]) -> Option<(usize, usize)> {
    // MySQL's `uuid:seq` (a uuid is 36 characters, without `:`): read every event, so told
    // at once.
    if s.len() > 37 && s[36] == b':' && s[37].is_ascii_digit() && !s[..36].contains(&b':') {
        return Some((0, 36));
    }
    let end = match s.iter().position(|c| *c == b':') {
        // `uuid:seq`, `uuid:a-b`, `uuid:tag:seq`, `uuid:1-5:7-9`: the first `:` that a
        // number follows (a tag begins with a letter or `_`).
        Some(first) => {
            let mut i = first;
            loop {
                if s.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    break i;
                }
                i += 1 + s[i + 1..].iter().position(|c| *c == b':')?;
            }
        }
        // `domain-server-seq`: two dashes at least.
        None => {
            let first = s.iter().position(|c| *c == b'-')?;
            s[first + 1..].iter().position(|c| *c == b'-')?;
            first
        }
    };
    (end > 0).then_some((0, end))
}

/// Why a position with an origin has no place in the engine's order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("sequence {seq} of origin `{origin}` is beyond the {MAX_SEQ} a position can carry")]
    SeqTooLarge { origin: String, seq: u64 },
    #[error("origin `{origin}` would be the {MAX_EPOCHS}th+ origin of positions")]
    TooManyOrigins { origin: String },
}

/// One epoch: an origin from a sequence number on (until the origin's next epoch).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Epoch {
    pub origin: String,
    /// The first sequence of the origin in this epoch (0 unless it is a return).
    pub from: u64,
}

/// The epochs of one engine, in order, and per partition the latest it has shown.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    epochs: Vec<EpochState>,
    /// The epoch placed last (most events repeat it).
    last: u32,
    /// Per (topic, partition) the latest epoch shown, for telling a return from a straggler.
    latest: Vec<Vec<u32>>,
    returns: u64,
}

#[derive(Debug, Clone)]
struct EpochState {
    origin: Box<[u8]>,
    from: u64,
    /// The `from` of the origin's next epoch (`u64::MAX`: none).
    until: u64,
    /// The highest sequence placed in this epoch.
    max: u64,
}

impl Origins {
    /// Makes a topic's partitions known (topics in the order they are added).
    pub fn add_topic(&mut self, partitions: u32) {
        self.latest.push(vec![0; partitions as usize]);
    }

    /// The engine position of sequence `seq` of GTID `gtid` (its origin, if it has one, per
    /// [`origin_span`]), read from partition (`topic`, `partition`).
    #[inline]
    pub fn place_gtid(
        &mut self,
        gtid: &[u8],
        seq: u64,
        topic: usize,
        partition: usize,
    ) -> Result<u64, PlaceError> {
        // Most events repeat the origin placed last: its bytes, then a separator and a digit.
        let single = self.epochs.len() == 1;
        if let Some(e) = self.epochs.get_mut(self.last as usize) {
            let n = e.origin.len();
            if gtid.len() > n + 1
                && matches!(gtid[n], b':' | b'-')
                && gtid[n + 1].is_ascii_digit()
                && gtid[..n] == *e.origin
            {
                // One origin so far (the common case): no partition can have shown a later one.
                if single && seq <= MAX_SEQ {
                    e.max = e.max.max(seq);
                    return Ok(seq);
                }
                return self.place(&gtid[..n], seq, topic, partition);
            }
        }
        self.place_gtid_slow(gtid, seq, topic, partition)
    }

    #[inline(never)]
    fn place_gtid_slow(
        &mut self,
        gtid: &[u8],
        seq: u64,
        topic: usize,
        partition: usize,
    ) -> Result<u64, PlaceError> {
        match origin_span(gtid) {
            Some((a, b)) => self.place(&gtid[a..b], seq, topic, partition),
            None => Ok(seq),
        }
    }

    /// The engine position of sequence `seq` of `origin`, read from partition
    /// (`topic`, `partition`).
    #[inline]
    pub fn place(
        &mut self,
        origin: &[u8],
        seq: u64,
        topic: usize,
        partition: usize,
    ) -> Result<u64, PlaceError> {
        if seq > MAX_SEQ {
            return Err(PlaceError::SeqTooLarge {
                origin: String::from_utf8_lossy(origin).into_owned(),
                seq,
            });
        }
        // One origin so far (the common case): no partition can have shown a later one.
        if self.epochs.len() == 1
            && let Some(e) = self.epochs.first_mut()
            && *e.origin == *origin
        {
            e.max = e.max.max(seq);
            return Ok(seq);
        }
        self.place_among(origin, seq, topic, partition)
    }

    fn place_among(
        &mut self,
        origin: &[u8],
        seq: u64,
        topic: usize,
        partition: usize,
    ) -> Result<u64, PlaceError> {
        let epoch = match self.epochs.get(self.last as usize) {
            Some(e) if *e.origin == *origin && seq >= e.from && seq < e.until => self.last,
            _ => self.epoch_of(origin, seq)?,
        };
        let latest = self
            .latest
            .get_mut(topic)
            .and_then(|t| t.get_mut(partition));
        let e = &mut self.epochs[epoch as usize];
        let epoch = match latest {
            Some(l) if epoch < *l && seq > e.max && e.until == u64::MAX => {
                // Back after a later origin, on a partition that showed that one first.
                self.returns += 1;
                let n = self.new_epoch(origin, seq)?;
                self.epochs[epoch as usize].until = seq;
                self.latest[topic][partition] = n;
                n
            }
            Some(l) => {
                *l = (*l).max(epoch);
                epoch
            }
            None => epoch,
        };
        let e = &mut self.epochs[epoch as usize];
        e.max = e.max.max(seq);
        self.last = epoch;
        Ok(((epoch as u64) << SEQ_BITS) | seq)
    }

    #[cold]
    fn epoch_of(&mut self, origin: &[u8], seq: u64) -> Result<u32, PlaceError> {
        match self
            .epochs
            .iter()
            .position(|e| *e.origin == *origin && seq >= e.from && seq < e.until)
        {
            Some(i) => Ok(i as u32),
            None => self.new_epoch(origin, seq),
        }
    }

    #[cold]
    fn new_epoch(&mut self, origin: &[u8], seq: u64) -> Result<u32, PlaceError> {
        if self.epochs.len() >= MAX_EPOCHS {
            return Err(PlaceError::TooManyOrigins {
                origin: String::from_utf8_lossy(origin).into_owned(),
            });
        }
        // A first appearance starts the origin's epoch at 0: its earlier transactions, read
        // later from other partitions, belong to it too.
        let from = if self.epochs.iter().any(|e| *e.origin == *origin) {
            seq
        } else {
            0
        };
        self.epochs.push(EpochState {
            origin: origin.into(),
            from,
            until: u64::MAX,
            max: 0,
        });
        Ok((self.epochs.len() - 1) as u32)
    }

    /// How many epochs there are.
    pub fn len(&self) -> usize {
        self.epochs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }

    /// How many times an origin came back after a later one.
    pub fn returns(&self) -> u64 {
        self.returns
    }

    /// The epochs, in order: what a checkpoint keeps.
    pub fn epochs(&self) -> Vec<Epoch> {
        self.epochs
            .iter()
            .map(|e| Epoch {
                origin: String::from_utf8_lossy(&e.origin).into_owned(),
                from: e.from,
            })
            .collect()
    }

    /// Continues with the epochs of a checkpoint (before any event is placed).
    pub fn restore(&mut self, epochs: &[Epoch]) {
        self.epochs.clear();
        for e in epochs {
            if let Some(prev) = self
                .epochs
                .iter_mut()
                .rev()
                .find(|p| *p.origin == *e.origin.as_bytes())
            {
                prev.until = e.from;
            }
            self.epochs.push(EpochState {
                origin: e.origin.as_bytes().into(),
                from: e.from,
                until: u64::MAX,
                // (Not kept: it changes with every event, and so would the checkpoint.)
                max: e.from,
            });
        }
        self.last = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_of_position_strings() {
        fn o(s: &str) -> Option<&str> {
            origin_span(s.as_bytes()).map(|(a, b)| &s[a..b])
        }
        let uuid = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
        assert_eq!(o(&format!("{uuid}:23")), Some(uuid));
        assert_eq!(o(&format!("{uuid}:1-23")), Some(uuid));
        assert_eq!(o(&format!("{uuid}:1-5:7-9")), Some(uuid));
        assert_eq!(
            o(&format!("{uuid}:tag_1:7")),
            Some(format!("{uuid}:tag_1").as_str())
        );
        assert_eq!(o("0-1-42"), Some("0"));
        assert_eq!(o("12-3-42"), Some("12"));
        assert_eq!(o("42"), None);
        assert_eq!(o("1-42"), None);
        assert_eq!(o(":42"), None);
        assert_eq!(o("-1-42"), None);
    }

    #[test]
    fn a_new_origin_sorts_after_the_old_and_stragglers_keep_their_place() {
        let mut o = Origins::default();
        o.add_topic(2);
        assert_eq!(o.place(b"a", 100, 0, 0), Ok(100));
        assert_eq!(o.place(b"b", 1, 0, 0), Ok((1 << 40) | 1));
        // The old origin's last transactions, read later from another partition.
        assert_eq!(o.place(b"a", 101, 0, 1), Ok(101));
        assert_eq!(o.place(b"b", 2, 0, 1), Ok((1 << 40) | 2));
        assert_eq!(o.returns(), 0);
        assert!(matches!(
            o.place(b"b", MAX_SEQ + 1, 0, 0),
            Err(PlaceError::SeqTooLarge { .. })
        ));
    }

    #[test]
    fn a_failback_is_a_new_epoch_from_where_it_came_back() {
        let mut o = Origins::default();
        o.add_topic(2);
        o.place(b"a", 100, 0, 0).unwrap();
        o.place(b"b", 5, 0, 0).unwrap();
        // Back to `a`, on the partition that saw `b`: after `b`.
        assert_eq!(o.place(b"a", 101, 0, 0), Ok((2 << 40) | 101));
        assert_eq!(o.returns(), 1);
        // `a`'s earlier transactions keep epoch 0, its later ones follow the return.
        assert_eq!(o.place(b"a", 99, 0, 1), Ok(99));
        assert_eq!(o.place(b"a", 102, 0, 1), Ok((2 << 40) | 102));
        // A checkpoint restores the same order.
        let mut r = Origins::default();
        r.add_topic(2);
        r.restore(&o.epochs());
        assert_eq!(r.place(b"a", 99, 0, 1), Ok(99));
        assert_eq!(r.place(b"b", 6, 0, 1), Ok((1 << 40) | 6));
        assert_eq!(r.place(b"a", 103, 0, 0), Ok((2 << 40) | 103));
    }
}
