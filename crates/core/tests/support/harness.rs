//! Drives an [`Engine`] with one primary and replicas carrying the `orders` fixture table.
#![allow(dead_code)]

use cdc_verifier_core::digest::{key_hash, table_seed};
use cdc_verifier_core::source::MemorySource;
use cdc_verifier_core::verdict::{Divergence, Kind};
use cdc_verifier_core::{
    Drill, Engine, EngineConfig, Ingested, KeyRanges, Progress, Record, TopicId,
};

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

/// A live consumer: records are read in order of their arrival, each stamped with its
/// creation time; every 100 ms of arrival time the end offsets are asked and every partition
/// is found read to its end (everything arrived so far has been read).
pub fn deliver_live(
    h: &mut Harness,
    changes: &[Change],
    replica: &[(i64, Change)],
    quiet_reading: Option<(usize, u32)>,
) -> u64 {
    let primary: Vec<(i64, Change)> = changes.iter().map(|c| (c.ts_ms, c.clone())).collect();
    deliver(h, &primary, replica, quiet_reading)
}

/// [`deliver_live`] with the primary's arrival times given too.
pub fn deliver(
    h: &mut Harness,
    primary: &[(i64, Change)],
    replica: &[(i64, Change)],
    quiet_reading: Option<(usize, u32)>,
) -> u64 {
    let mut events: Vec<(i64, usize, Change)> =
        primary.iter().map(|(t, c)| (*t, 0, c.clone())).collect();
    events.extend(replica.iter().map(|(t, c)| (*t, 1, c.clone())));
    events.sort_by_key(|(t, s, _)| (*t, *s));
    let mut next_probe = events[0].0;
    for (arrival, s, c) in &events {
        while *arrival >= next_probe {
            for (si, topic) in h.topics.clone().into_iter().enumerate() {
                for p in 0..h.partitions {
                    let progress = if quiet_reading == Some((si, p)) {
                        Progress::Reading
                    } else {
                        Progress::CaughtUpAt(next_probe)
                    };
                    h.engine.set_progress(topic, p, progress);
                }
            }
            h.advance(next_probe);
            next_probe += 100;
        }
        h.send_at(*s, c, false, c.ts_ms);
    }
    h.advance(next_probe);
    h.engine.stats().windows_compared
}

/// The replica's records, each arriving `delay(i)` ms after it was stamped (a producer that
/// holds some partitions' batches back), in order within each partition.
pub fn delayed(
    h: &Harness,
    changes: &[Change],
    delay: impl Fn(usize, u32) -> i64,
) -> Vec<(i64, Change)> {
    let mut last = vec![i64::MIN; h.partitions as usize];
    changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let p = h.partition_of(c.key());
            let t = (c.ts_ms + 5 + delay(i, p)).max(last[p as usize]);
            last[p as usize] = t;
            (t, c.clone())
        })
        .collect()
}

/// [`deliver`] with each record's stamp given apart from its change's time: (arrival, stamp,
/// change), as a connector that started late writes its backlog, stamped when it writes it.
pub fn deliver_stamped(
    h: &mut Harness,
    primary: &[(i64, i64, Change)],
    replica: &[(i64, i64, Change)],
) -> u64 {
    let mut events: Vec<(i64, usize, i64, Change)> = primary
        .iter()
        .map(|(t, st, c)| (*t, 0, *st, c.clone()))
        .collect();
    events.extend(replica.iter().map(|(t, st, c)| (*t, 1, *st, c.clone())));
    events.sort_by_key(|(t, s, ..)| (*t, *s));
    // Every partition found read to its end at `at`, and the clock there.
    let probe = |h: &mut Harness, at: i64| {
        for topic in h.topics.clone() {
            for p in 0..h.partitions {
                h.engine.set_progress(topic, p, Progress::CaughtUpAt(at));
            }
        }
        h.advance(at);
    };
    let mut next_probe = events[0].0;
    for (arrival, s, stamp, c) in &events {
        while *arrival >= next_probe {
            probe(h, next_probe);
            next_probe += 100;
        }
        h.send_at(*s, c, false, *stamp);
    }
    // 20 s more of the clock: whatever waits for it is told.
    for _ in 0..200 {
        probe(h, next_probe);
        next_probe += 100;
    }
    h.engine.stats().windows_compared
}

/// Reads of the `orders` fixture's rows 1..=`n`, a snapshot taken at `ts_ms`.
pub fn snapshot(n: i64, ts_ms: i64) -> impl Iterator<Item = Change> {
    (1..=n).map(move |id| Change {
        op: "r",
        before: None,
        after: Some(super::Row::new(id, "placed", id * 13)),
        tx: 1,
        order: id,
        ts_ms,
    })
}

/// The verdicts besides a replica's lag and silence, and their ends.
pub fn besides_lag_and_silence(out: Vec<Divergence>) -> Vec<Divergence> {
    use cdc_verifier_core::verdict::{Finding, Recovery};
    out.into_iter()
        .filter(|d| !matches!(d.kind(), Kind::ReplicaLag | Kind::StreamSilent))
        .filter(|d| {
            !matches!(
                &d.finding,
                Finding::Recovered(Recovery::StreamSilent { .. } | Recovery::ReplicaLag { .. })
            )
        })
        .collect()
}
