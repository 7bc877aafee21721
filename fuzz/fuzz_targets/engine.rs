//! The whole verification core on arbitrary traffic: records of a primary and a replica —
//! valid envelopes built from the input, under two schema versions, and arbitrary bytes,
//! tombstones, unknown schema ids, partitions beyond those known, redeliveries, times and
//! positions anywhere in their range — with the clock advanced and partitions' progress set
//! at any point, then the input's end. The engine must take every record (as counted,
//! duplicate, late, parked, poison …), never panic or overflow, and every verdict must
//! serialise.
//!
//! In the mirror mode the replica is sent the primary's records, byte for byte, each later
//! than the primary (by as much as the input says), as a replica that applied every change
//! writes them; positions and commit times go forward together, one commit time per
//! transaction, snapshot reads come before the first change, and the schema moves from
//! version 1 to 2 once. Then no verdict may say the replica's data or schema differ, unless a
//! record came after its window was compared. In its faulty variant the replica loses one
//! record the primary counted, and a verdict must say so (a data mismatch, the table
//! falling silent, or its span given up on at a memory bound) — or, when it lost its only snapshot read, the engine must say that its
//! starting state is not verified; an update that changed nothing may be lost unseen (the
//! states agree).
#![no_main]

use cdc_verifier_core::{Drill, Engine, EngineConfig, Ingested, Kind, KeyRanges, MemorySource, Progress, Record};
use libfuzzer_sys::fuzz_target;

/// Prints what the engine was given and made of it when `FUZZ_TRACE` is set (to read a
/// crashing input: `FUZZ_TRACE=1 <engine binary> <input>`).
macro_rules! trace {
    ($($t:tt)*) => {
        if *TRACE.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some()) {
            eprintln!($($t)*);
        }
    };
}
static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

const ROW_V1: &str = r#"{"name":"id","type":"long"},{"name":"status","type":"string"},
  {"name":"total","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
  {"name":"note","type":["null","string"],"default":null},
  {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}}"#;

fn envelope(row: &str) -> String {
    format!(
        r#"{{"type":"record","name":"Envelope","namespace":"s.shop.orders","fields":[
          {{"name":"before","type":["null",{{"type":"record","name":"Value","fields":[{row}]}}],"default":null}},
          {{"name":"after","type":["null","Value"],"default":null}},
          {{"name":"source","type":{{"type":"record","name":"Source","fields":[{{"name":"ts_ms","type":"long"}},{{"name":"gtid","type":["null","string"]}}]}}}},
          {{"name":"op","type":"string"}},
          {{"name":"transaction","type":["null",{{"type":"record","name":"block","fields":[{{"name":"id","type":"string"}},{{"name":"total_order","type":"long"}}]}}]}}]}}"#
    )
}

const KEY: &str = r#"{"type":"record","name":"Key","namespace":"s.shop.orders","fields":[{"name":"id","type":"long"}]}"#;

/// The input, read front to back; zeros once it is used up.
struct Input<'a> {
    data: &'a [u8],
    /// The operation of the last envelope built (`u8::MAX`: none since it was reset).
    last_op: u8,
    /// Whether the last envelope built was an update that changed nothing (before = after).
    last_noop: bool,
    /// Whether snapshot reads are over (the mirror's: a connector writes its snapshot before
    /// its first change).
    reads_over: bool,
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { data, last_op: u8::MAX, last_noop: false, reads_over: false }
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// A number: mostly small, sometimes anywhere in the range.
    fn num(&mut self) -> u64 {
        match self.byte() {
            b @ 0..=239 => b as u64,
            240..=247 => u16::from_le_bytes([self.byte(), self.byte()]) as u64,
            _ => u64::from_le_bytes(std::array::from_fn(|_| self.byte())),
        }
    }

    fn bytes(&mut self) -> Vec<u8> {
        let n = (self.byte() as usize).min(self.data.len());
        let (b, rest) = self.data.split_at(n);
        self.data = rest;
        b.to_vec()
    }

    fn done(&self) -> bool {
        self.data.is_empty()
    }
}

fn long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push(z as u8 | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    long(out, s.len() as i64);
    out.extend_from_slice(s);
}

/// A decimal's unscaled value, big-endian two's complement in as few bytes as it takes.
fn decimal(out: &mut Vec<u8>, v: i64) {
    let b = v.to_be_bytes();
    let mut i = 0;
    while i < 7 && ((b[i] == 0 && b[i + 1] < 0x80) || (b[i] == 0xff && b[i + 1] >= 0x80)) {
        i += 1;
    }
    string(out, &b[i..]);
}

/// A row image of either version, its values from the input.
fn row(out: &mut Vec<u8>, id: i64, input: &mut Input<'_>, v2: bool) {
    long(out, id);
    string(out, [&b"paid"[..], b"new", b"shipped", b""][input.byte() as usize % 4]);
    decimal(out, input.num() as i64);
    if input.byte() % 2 == 0 {
        out.push(0);
    } else {
        out.push(2);
        string(out, &input.bytes());
    }
    long(out, input.num() as i64);
    if v2 {
        string(out, b"EUR");
    }
}

/// A Debezium envelope in the wire format, under schema `id` (2: version 2); the event's order
/// in its transaction is `order`, or from the input.
fn value(input: &mut Input<'_>, id: u32, key: i64, tx: u64, ts_ms: i64, order: Option<i64>) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    let v2 = id == 2;
    let mut op = input.byte() % 5;
    if op == 3 && input.reads_over {
        op = 0;
    }
    input.last_op = op;
    // Before: updates and deletes; after: creates, reads and updates.
    let mut images = [Vec::new(), Vec::new()];
    for (image, present) in images.iter_mut().zip([matches!(op, 1 | 2), matches!(op, 0 | 1 | 3)]) {
        if present {
            image.push(2);
            row(image, key, input, v2);
        } else {
            image.push(0);
        }
    }
    input.last_noop = images[0] == images[1];
    out.extend_from_slice(&images[0]);
    out.extend_from_slice(&images[1]);
    long(&mut out, ts_ms);
    out.push(2);
    string(&mut out, format!("3e11fa47-71ca-11e1-9e33-c80aa9429562:{tx}").as_bytes());
    string(&mut out, [&b"c"[..], b"u", b"d", b"r", b"x"][op as usize]);
    if order.is_none() && input.byte() % 2 == 0 {
        out.push(0);
    } else {
        out.push(2);
        string(&mut out, format!("tx-{tx}").as_bytes());
        let order = order.unwrap_or_else(|| input.num() as i64);
        long(&mut out, order);
    }
    out
}

fn key(id: i64) -> Vec<u8> {
    let mut out = vec![0, 0, 0, 0, 3];
    long(&mut out, id);
    out
}

/// One record as given, to be offered again.
#[derive(Clone)]
struct Sent {
    topic: u32,
    partition: u32,
    offset: i64,
    timestamp_ms: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

impl Sent {
    /// The record, written at `timestamp_ms`.
    fn record(&self, timestamp_ms: i64) -> Record<'_> {
        Record { topic: self.topic, partition: self.partition, offset: self.offset, timestamp_ms, key: self.key.as_deref(), value: self.value.as_deref() }
    }
}

/// The mirror: the primary's records still owed to the replica, in the order the primary got
/// them, and which of all it counted.
#[derive(Default)]
struct Mirror {
    owed: std::collections::VecDeque<Sent>,
    counted: Vec<bool>,
    /// Which of all were snapshot reads, and which updates that changed nothing.
    snapshot: Vec<bool>,
    noop: Vec<bool>,
    sent: usize,
    /// The faulty variant: the record (by its place among all) the replica loses.
    lose: Option<usize>,
    lost_counted: bool,
    lost_snapshot: bool,
    lost_noop: bool,
}

impl Mirror {
    /// Sends the replica up to `n` records it owes, written at `now`.
    fn send(&mut self, n: usize, engine: &mut Engine, src: &mut MemorySource, out: &mut Vec<cdc_verifier_core::Divergence>, now: i64) {
        for _ in 0..n {
            let Some(r) = self.owed.pop_front() else { return };
            self.sent += 1;
            if self.lose == Some(self.sent - 1) {
                self.lost_counted = self.counted[self.sent - 1];
                self.lost_snapshot = self.snapshot[self.sent - 1];
                self.lost_noop = self.noop[self.sent - 1];
                continue;
            }
            let taken = engine.ingest(&r.record(now.max(r.timestamp_ms)), src).expect("every schema is known");
            trace!("replica partition {} offset {} at {}: {:?}", r.partition, r.offset, now.max(r.timestamp_ms), taken);
            if let Ingested::Poison(d) = taken {
                out.push(*d);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input::new(data);
    let mut src = MemorySource::new();
    for topic in ["p.shop.orders", "r.shop.orders"] {
        src.add(1, &format!("{topic}-value"), 1, &envelope(ROW_V1));
        src.add(2, &format!("{topic}-value"), 2, &envelope(&format!(r#"{ROW_V1},{{"name":"currency","type":"string","default":"USD"}}"#)));
        src.add(3, &format!("{topic}-key"), 1, KEY);
    }
    let setup = input.byte();
    let mut cfg = EngineConfig {
        ranges: if setup & 1 == 0 { KeyRanges::Hash { buckets: 1 + setup as u32 % 16 } } else { KeyRanges::Integer { width: input.num().max(1) } },
        drill: if setup & 2 == 0 { Drill::Off } else { Drill::All },
        ..EngineConfig::default()
    };
    cfg.timing.cut_interval_ms = 1 + (input.num() % 10_000) as i64;
    if setup & 4 != 0 {
        cfg.origin_span = (Some(input.num() as i64), Some(input.num() as i64));
    }
    if setup & 8 != 0 {
        cfg.timing.publish_skew_ms = input.num() as i64 % 100_000;
    }
    let mirror = setup & 16 != 0;
    if mirror {
        cfg.origin_span = (None, None);
    }
    let mut mirror_of = Mirror { lose: (mirror && setup & 32 != 0).then(|| input.byte() as usize), ..Mirror::default() };
    let mut v2 = false;
    let mut engine = Engine::new(cfg, "p", &["r"]);
    let topics = [engine.add_topic("p.shop.orders", 0, "orders", 2), engine.add_topic("r.shop.orders", 1, "orders", 2)];
    let mut offsets = [[0i64; 3]; 2];
    let (mut tx, mut now) = (1u64, 1_700_000_000_000i64);
    // The commit time of the last transaction (the clock, `now`, is never behind it).
    let mut commit = now;
    // The mirror's order of events within the last transaction.
    let mut seq = 0i64;
    let mut sent: Vec<Sent> = Vec::new();
    let mut out = Vec::new();
    let mut steps = 0;
    while !input.done() && steps < 2_000 {
        steps += 1;
        let op = input.byte();
        let rec = match op % 10 {
            0..=5 => {
                let (s, partition) = if mirror { (0, (op / 10) as u32 % 3) } else { ((op / 10) as usize % 2, (op / 20) as u32 % 3) };
                if mirror {
                    // A next transaction, with its own commit time, or the same one.
                    let step = input.byte() as u64 % 4;
                    if step > 0 {
                        tx = tx.saturating_add(step);
                        commit = commit.saturating_add(input.byte() as i64);
                        seq = 0;
                    }
                    now = now.max(commit);
                } else {
                    // Mostly on, sometimes back (or anywhere) in time and in positions.
                    match input.byte() {
                        0..=199 => {
                            now = now.saturating_add(input.byte() as i64);
                            tx = tx.saturating_add(input.byte() as u64 % 4);
                        }
                        200..=249 => now = now.saturating_sub(input.num() as i64),
                        _ => {
                            now = input.num() as i64;
                            tx = input.num();
                        }
                    }
                }
                let id = input.num() as i64 % 64;
                if !mirror {
                    commit = now;
                }
                let ts = commit;
                // The mirror's positions go forward record by record (a record below its
                // partition's high-water mark would be a redelivery).
                let order = mirror.then(|| {
                    seq += 1;
                    seq
                });
                input.last_op = u8::MAX;
                let (key, value) = match input.byte() % 16 {
                    0 => (Some(key(id)), None),
                    1 => (Some(input.bytes()), Some(input.bytes())),
                    2 => (None, Some(value(&mut input, 1, id, tx, ts, order))),
                    3 => (Some(key(id)), Some(value(&mut input, 9, id, tx, ts, order))),
                    4..=6 if !mirror || v2 || input.byte() < 16 => {
                        v2 = true;
                        (Some(key(id)), Some(value(&mut input, 2, id, tx, ts, order)))
                    }
                    _ if mirror && v2 => (Some(key(id)), Some(value(&mut input, 2, id, tx, ts, order))),
                    _ => (Some(key(id)), Some(value(&mut input, 1, id, tx, ts, order))),
                };
                let offset = offsets[s][partition as usize];
                offsets[s][partition as usize] += 1;
                if mirror {
                    mirror_of.owed.push_back(Sent { topic: topics[1], partition, offset, timestamp_ms: now, key: key.clone(), value: value.clone() });
                }
                Sent { topic: topics[s], partition, offset, timestamp_ms: now, key, value }
            }
            6 if mirror => {
                // The replica writes what it owes, up to some records, later.
                now = now.saturating_add(input.byte() as i64);
                let n = 1 + input.byte() as usize % 16;
                mirror_of.send(n, &mut engine, &mut src, &mut out, now);
                continue;
            }
            6 if !sent.is_empty() => {
                // A redelivery.
                sent[input.num() as usize % sent.len()].clone()
            }
            7 => {
                let progress = match input.byte() % 4 {
                    0 => Progress::Reading,
                    1 => Progress::Following,
                    2 => Progress::Ended,
                    _ => Progress::CaughtUpAt(now.saturating_sub(input.num() as i64)),
                };
                let (topic, partition) = (topics[input.byte() as usize % 2], input.byte() as u32 % 2);
                trace!("progress of stream {topic} partition {partition}: {progress:?}");
                engine.set_progress(topic, partition, progress);
                continue;
            }
            _ => {
                // The mirror's clock only goes forward (a replica's records, like the
                // primary's, are stamped in the order they are written).
                let step = if mirror { (input.num() % 1_000_000) as i64 } else { input.num() as i64 % 1_000_000 };
                now = now.saturating_add(step);
                trace!("advance to {now}");
                engine.advance(now, &mut src, &mut out).expect("every schema is known");
                continue;
            }
        };
        let taken = engine
            .ingest(&rec.record(rec.timestamp_ms), &mut src)
            .expect("every schema is known");
        trace!("stream {} partition {} offset {} at {}: {:?}", rec.topic, rec.partition, rec.offset, rec.timestamp_ms, taken);
        if mirror && rec.topic == topics[0] {
            mirror_of.counted.push(taken == Ingested::Counted);
            mirror_of.snapshot.push(input.last_op == 3);
            mirror_of.noop.push(input.last_op == 1 && input.last_noop);
            if input.last_op != u8::MAX && input.last_op != 3 {
                input.reads_over = true;
            }
        }
        if let Ingested::Poison(d) = &taken {
            out.push((**d).clone());
        }
        sent.push(rec);
    }
    while !mirror_of.owed.is_empty() {
        now = now.saturating_add(1);
        mirror_of.send(1, &mut engine, &mut src, &mut out, now);
    }
    engine.finish(&mut src, &mut out).expect("every schema is known");
    trace!("{:#?}\nlate {}, lost {:?} (snapshot read: {})", engine.stats(), engine.late_records(), mirror_of.lose, mirror_of.lost_snapshot);
    for (stream, _, topic, stats) in engine.topic_stats() {
        trace!("{stream} {topic} {stats:?}");
    }
    for d in &out {
        serde_json::to_string(d).expect("a verdict serialises");
    }
    if mirror && engine.late_records() == 0 {
        if mirror_of.lose.is_none() {
            let wrong: Vec<_> = out.iter().filter(|d| matches!(d.kind(), Kind::DataMismatch | Kind::SchemaDrift)).collect();
            assert!(wrong.is_empty(), "a replica that wrote every record of the primary diverged: {wrong:#?}");
        } else if mirror_of.lost_counted && !mirror_of.lost_noop {
            // A replica that lost its only snapshot read has no snapshot: its starting state
            // cannot be compared (as for a connector configured without one), and the engine
            // must say so instead.
            let replica_snapshot: u64 = engine.topic_stats().filter(|(s, ..)| *s == "r").map(|(.., t)| t.snapshot).sum();
            let start_unverified = mirror_of.lost_snapshot && replica_snapshot == 0 && engine.stats().changes_only.contains_key("r");
            assert!(
                start_unverified || out.iter().any(|d| matches!(d.kind(), Kind::DataMismatch | Kind::StreamSilent | Kind::Unverified)),
                "a replica lost a record and no verdict says so: {out:#?}"
            );
        }
    }
    let _ = (engine.timeline(), engine.checkpoint(), engine.schemas_seen());
});
