//! The checksum algebra.
//!
//! `H(table, row)` is a 128-bit xxh3 of the row's canonical bytes, keyed by the table (by a
//! secret derived from its seed: see [`RowHasher`]). Each event adds `H(after) − H(before)`
//! (an absent image counts 0) to the digest of its (stream, table, key range, window),
//! lane-wise modulo 2^64. Addition makes a digest independent of event order and mergeable
//! across partitions, threads and machines; the sum over all windows of a range is the
//! change of its state, so equal states give equal digests.
//!
//! Beside that state digest, each range keeps an event digest: the sum of a hash of every
//! event's (transaction position, before image, after image). Two streams that applied the
//! same transactions to the same rows have equal event digests, so an event dropped,
//! altered or reordered shows even when a later change of the same row, within the same
//! window, brought the states back together.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed, xxh3_128_with_secret, xxh3_128_with_seed};

/// Debezium's operation codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Create,
    Update,
    Delete,
    Read,
    Truncate,
}

impl Op {
    #[inline]
    pub fn from_code(code: &[u8]) -> Option<Op> {
        Some(match code {
            b"c" => Op::Create,
            b"u" => Op::Update,
            b"d" => Op::Delete,
            b"r" => Op::Read,
            b"t" => Op::Truncate,
            _ => return None,
        })
    }

    #[inline]
    fn index(self) -> usize {
        self as usize
    }
}

/// The seed that makes the same row in two tables hash differently.
pub fn table_seed(table: &str) -> u64 {
    xxh3_64(table.as_bytes())
}

/// `H(table, row)`: a 128-bit xxh3 of a row's canonical bytes, with a secret derived from the
/// table's seed once, when the table is added. (Seeded, xxh3 adds the seed to its secret's
/// words at every step of every hash: −2 % of the core's instructions per event.)
#[derive(Clone)]
pub struct RowHasher {
    secret: [u8; 192],
}

impl RowHasher {
    /// The hasher of the rows of the table `seed` stands for: its secret is 24 words, each the
    /// 64-bit xxh3 of its index seeded by `seed` (xxh3's secrets are to look random, and be at
    /// least 136 bytes).
    pub fn new(seed: u64) -> RowHasher {
        let mut secret = [0u8; 192];
        for (i, word) in secret.chunks_exact_mut(8).enumerate() {
            word.copy_from_slice(&xxh3_64_with_seed(&(i as u64).to_le_bytes(), seed).to_le_bytes());
        }
        RowHasher { secret }
    }

    /// `H(table, row)` of a row's canonical bytes.
    #[inline]
    pub fn hash(&self, canonical: &[u8]) -> u128 {
        xxh3_128_with_secret(canonical, &self.secret)
    }
}

impl std::fmt::Debug for RowHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowHasher").finish_non_exhaustive()
    }
}

#[inline]
pub fn key_hash(seed: u64, canonical_key: &[u8]) -> u64 {
    xxh3_64_with_seed(canonical_key, seed ^ 0x6b65_7973)
}

/// Two 64-bit lanes, summed independently.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Lanes(pub [u64; 2]);

impl Lanes {
    pub const ZERO: Lanes = Lanes([0, 0]);

    #[inline]
    pub fn of(h: u128) -> Lanes {
        Lanes([h as u64, (h >> 64) as u64])
    }

    #[inline]
    pub fn add(&mut self, o: Lanes) {
        self.0[0] = self.0[0].wrapping_add(o.0[0]);
        self.0[1] = self.0[1].wrapping_add(o.0[1]);
    }

    #[inline]
    pub fn sub(&mut self, o: Lanes) {
        self.0[0] = self.0[0].wrapping_sub(o.0[0]);
        self.0[1] = self.0[1].wrapping_sub(o.0[1]);
    }

    #[inline]
    pub fn is_zero(&self) -> bool {
        self.0 == [0, 0]
    }

    /// The contribution of one event: `H(after) − H(before)`.
    #[inline]
    pub fn delta(before: Option<u128>, after: Option<u128>) -> Lanes {
        let mut d = Lanes::ZERO;
        if let Some(a) = after {
            d.add(Lanes::of(a));
        }
        if let Some(b) = before {
            d.sub(Lanes::of(b));
        }
        d
    }

    pub fn hex(&self) -> String {
        format!("{:016x}{:016x}", self.0[1], self.0[0])
    }
}

/// Events per operation, reported beside a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct OpCounts {
    pub create: u32,
    pub update: u32,
    pub delete: u32,
    pub read: u32,
    pub truncate: u32,
}

impl OpCounts {
    #[inline]
    pub fn count(&mut self, op: Op) {
        let slot = match op.index() {
            0 => &mut self.create,
            1 => &mut self.update,
            2 => &mut self.delete,
            3 => &mut self.read,
            _ => &mut self.truncate,
        };
        *slot = slot.saturating_add(1);
    }

    pub fn merge(&mut self, o: &OpCounts) {
        self.create += o.create;
        self.update += o.update;
        self.delete += o.delete;
        self.read += o.read;
        self.truncate += o.truncate;
    }

    pub fn total(&self) -> u64 {
        self.create as u64
            + self.update as u64
            + self.delete as u64
            + self.read as u64
            + self.truncate as u64
    }
}

/// The hash of one event as applied: its transaction and both images. The two image
/// hashes (an absent one as 0, which a present one is with odds of 2^-128) are hashed as
/// 32 bytes, seeded by the transaction: one round of xxh3's mixing, where 48 bytes of
/// input took two. The input is laid out in whole 8-byte words, so that the hash's 8-byte
/// reads are served straight from the stores that wrote them.
#[inline]
pub fn event_hash(tx: u64, before: Option<u128>, after: Option<u128>) -> u128 {
    let (b, a) = (before.unwrap_or(0), after.unwrap_or(0));
    let words: [u64; 4] = [b as u64, (b >> 64) as u64, a as u64, (a >> 64) as u64];
    let mut bytes = [0u8; 32];
    for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    xxh3_128_with_seed(&bytes, tx ^ 0x6576_656e_7473)
}

/// The digest of one (stream, table, range, window).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct RangeDigest {
    /// Σ H(after) − H(before): the change of the range's state.
    pub lanes: Lanes,
    /// Σ H(position, before, after): the events that made the change.
    pub events: Lanes,
    pub ops: OpCounts,
}

impl RangeDigest {
    #[inline]
    pub fn add_event(&mut self, op: Op, tx: u64, before: Option<u128>, after: Option<u128>) {
        self.add_hashed(op, event_hash(tx, before, after), before, after);
    }

    /// [`add_event`](Self::add_event) with the event's hash already computed.
    #[inline]
    pub fn add_hashed(&mut self, op: Op, event: u128, before: Option<u128>, after: Option<u128>) {
        self.lanes.add(Lanes::delta(before, after));
        self.events.add(Lanes::of(event));
        self.ops.count(op);
    }

    pub fn merge(&mut self, o: &RangeDigest) {
        self.lanes.add(o.lanes);
        self.events.add(o.events);
        self.ops.merge(&o.ops);
    }

    /// Same state change made by the same events.
    pub fn agrees(&self, o: &RangeDigest) -> bool {
        self.lanes == o.lanes && self.events == o.events
    }
}

/// How keys are grouped into ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum KeyRanges {
    /// Buckets of the canonical key's hash.
    Hash { buckets: u32 },
    /// Ordered ranges of the key's first integer field, `width` keys each.
    Integer { width: u64 },
}

impl Default for KeyRanges {
    fn default() -> Self {
        KeyRanges::Hash { buckets: 1024 }
    }
}

impl KeyRanges {
    /// The range of a key, from its hash or its leading integer.
    #[inline]
    pub fn range(&self, key_hash: u64, leading_int: Option<i64>) -> u64 {
        match *self {
            KeyRanges::Hash { buckets } => ((key_hash as u128 * buckets as u128) >> 64) as u64,
            KeyRanges::Integer { width } => match leading_int {
                Some(v) => (v.div_euclid(width.max(1) as i64) as u64) ^ (1 << 63),
                None => ((key_hash as u128 * 1024) >> 64) as u64 | (1 << 63),
            },
        }
    }

    /// A readable description of a range: `bucket 17/1024` or `id 2000..2999`.
    pub fn describe(&self, range: u64) -> String {
        match *self {
            KeyRanges::Hash { buckets } => format!("bucket {range}/{buckets}"),
            KeyRanges::Integer { width } => {
                let lo = ((range ^ (1 << 63)) as i64).saturating_mul(width as i64);
                format!("keys {lo}..={}", lo.saturating_add(width as i64 - 1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_of_a_create_then_delete_is_zero() {
        let mut d = RangeDigest::default();
        d.add_event(Op::Create, 1, None, Some(42));
        d.add_event(Op::Delete, 2, Some(42), None);
        assert!(d.lanes.is_zero());
        assert!(
            !d.events.is_zero(),
            "the events that cancelled out are still seen"
        );
        assert_eq!(d.ops.total(), 2);
    }

    /// An event's hash changes with its transaction, with either image, and with which image
    /// is which or is absent.
    #[test]
    fn event_hashes_differ_in_each_part_of_an_event() {
        let (b, a) = (
            0x1234_5678_9abc_def0_0fed_cba9_8765_4321u128,
            0x0011_2233_4455_6677_8899_aabb_ccdd_eeffu128,
        );
        let events = [
            (7, Some(b), Some(a)),
            (8, Some(b), Some(a)),
            (7 | 1 << 63, Some(b), Some(a)),
            (7, Some(a), Some(b)),
            (7, Some(b), Some(a ^ 1)),
            (7, Some(b ^ 1 << 127), Some(a)),
            (7, Some(b), Some(b)),
            (7, None, Some(a)),
            (7, Some(a), None),
            (7, None, None),
            (8, None, None),
        ];
        let hashes: std::collections::HashSet<u128> = events
            .iter()
            .map(|&(tx, before, after)| event_hash(tx, before, after))
            .collect();
        assert_eq!(hashes.len(), events.len());
    }

    /// The same row hashes alike by every hasher of its table, and apart by another table's.
    #[test]
    fn rows_hash_by_their_table() {
        let row = b"\x02\x0aORD-1\x08paid";
        let orders = RowHasher::new(table_seed("orders"));
        assert_eq!(
            orders.hash(row),
            RowHasher::new(table_seed("orders")).hash(row)
        );
        assert_ne!(
            orders.hash(row),
            RowHasher::new(table_seed("customers")).hash(row)
        );
        assert_ne!(orders.hash(row), orders.hash(&row[..row.len() - 1]));
    }

    #[test]
    fn hash_buckets_cover_the_range() {
        let r = KeyRanges::Hash { buckets: 1024 };
        assert_eq!(r.range(0, None), 0);
        assert_eq!(r.range(u64::MAX, None), 1023);
        let i = KeyRanges::Integer { width: 1000 };
        assert!(i.range(0, Some(999)) == i.range(0, Some(0)));
        assert!(i.range(0, Some(1000)) > i.range(0, Some(999)));
        assert!(i.range(0, Some(-1)) < i.range(0, Some(0)));
        assert_eq!(i.describe(i.range(0, Some(1234))), "keys 1000..=1999");
    }
}
