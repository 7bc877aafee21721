//! Drives an [`Engine`] with one primary and replicas carrying the `orders` fixture table.
#![allow(dead_code)]

use cdc_verifier_core::digest::{key_hash, table_seed};
use cdc_verifier_core::source::MemorySource;
use cdc_verifier_core::verdict::{Divergence, Kind};
use cdc_verifier_core::{Drill, Engine, EngineConfig, Ingested, KeyRanges, Record, TopicId};

use super::{Change, Ids, encode_key, wire_pair, wire_pair_at};

pub struct Harness {
    pub engine: Engine,
    pub src: MemorySource,
    pub ids: Vec<Ids>,
    pub topics: Vec<TopicId>,
    pub offsets: Vec<Vec<i64>>,
    pub partitions: u32,
    pub out: Vec<Divergence>,
    pub poison: Vec<Divergence>,
}

impl Harness {
    pub fn new(replicas: &[&str], partitions: u32, drill: bool) -> Harness {
        let cfg = EngineConfig {
            drill: if drill { Drill::All } else { Drill::Off },
            ..EngineConfig::default()
        };
        Self::with_config(cfg, replicas, partitions)
    }

    pub fn with_config(cfg: EngineConfig, replicas: &[&str], partitions: u32) -> Harness {
        let mut engine = Engine::new(cfg, "primary", replicas);
        let mut src = MemorySource::new();
        let mut ids = Vec::new();
        let mut topics = Vec::new();
        for (i, s) in std::iter::once("primary")
            .chain(replicas.iter().copied())
            .enumerate()
        {
            ids.push(super::register(&mut src, s));
            topics.push(engine.add_topic(
                &format!("{s}.shop.orders"),
                i as u16,
                "orders",
                partitions,
            ));
        }
        let n = topics.len();
        Harness {
            engine,
            src,
            ids,
            topics,
            offsets: vec![vec![0; partitions as usize]; n],
            partitions,
            out: Vec::new(),
            poison: Vec::new(),
        }
    }

    pub fn partition_of(&self, key: i64) -> u32 {
        (key.rem_euclid(self.partitions as i64)) as u32
    }

    /// Sends a change on stream `s` (0 = primary) at record time `at_ms`.
    pub fn send_at(&mut self, s: usize, c: &Change, v2: bool, at_ms: i64) -> Ingested {
        let (k, v) = wire_pair(&self.ids[s], c, v2);
        let p = self.partition_of(c.key());
        self.send_raw(s, p, Some(&k), Some(&v), at_ms)
    }

    /// Sends a change on stream `s` with `source.gtid` = `gtid`.
    pub fn send_gtid(&mut self, s: usize, c: &Change, gtid: &str) -> Ingested {
        let (k, v) = wire_pair_at(&self.ids[s], c, false, gtid);
        let p = self.partition_of(c.key());
        self.send_raw(s, p, Some(&k), Some(&v), c.ts_ms)
    }

    pub fn send(&mut self, s: usize, c: &Change, v2: bool) -> Ingested {
        self.send_at(s, c, v2, c.ts_ms)
    }

    pub fn send_raw(
        &mut self,
        s: usize,
        p: u32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        at_ms: i64,
    ) -> Ingested {
        let offset = self.offsets[s][p as usize];
        self.offsets[s][p as usize] += 1;
        let rec = Record {
            topic: self.topics[s],
            partition: p,
            offset,
            timestamp_ms: at_ms,
            key,
            value,
        };
        let r = self
            .engine
            .ingest(&rec, &mut self.src)
            .expect("memory source is always available");
        if let Ingested::Poison(d) = &r {
            self.poison.push((**d).clone());
        }
        r
    }

    pub fn advance(&mut self, now: i64) {
        self.engine
            .advance(now, &mut self.src, &mut self.out)
            .unwrap();
    }

    pub fn finish(&mut self) -> &[Divergence] {
        self.engine.finish(&mut self.src, &mut self.out).unwrap();
        &self.out
    }

    pub fn of_kind(&self, k: Kind) -> Vec<&Divergence> {
        self.out.iter().filter(|d| d.kind() == k).collect()
    }
}

/// The range the engine puts `orders` key `id` in.
pub fn range_of(id: i64) -> u64 {
    KeyRanges::default().range(key_hash(table_seed("orders"), &encode_key(id)), None)
}
