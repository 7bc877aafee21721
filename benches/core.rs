//! The verification core's throughput on realistic Debezium envelopes, against two
//! baselines measured in the same run on the same bytes and one thread:
//!
//! - apache-avro: `from_avro_datum` into a `Value`, then hashing that value;
//! - raw: one `xxh3_128` over each event's datum bytes, the cost of reading every byte once.
//!
//! The events are `orders` updates from the simulator (about 15 columns, before and after).
//! Prints medians over several passes, each of which measures all four in turn (the
//! apache-avro ratio is the median of each pass's own; the raw hash's limit is its fastest
//! pass). The last line is the summary.

use std::time::Instant;

use apache_avro::types::Value;
use cdc_verifier_core::{Engine, EngineConfig, MemorySource, Record, SchemaSource};
use cdc_verifier_sim::{OfflineRegistry, Scenario, SimConfig, Simulation};
use xxhash_rust::xxh3::{xxh3_128, Xxh3};

/// One event: its partition and where its key and value lie in the shared buffer. The
/// bytes are contiguous, as in a fetched Kafka batch.
struct Event {
    partition: u32,
    key: (usize, usize),
    value: (usize, usize),
}

struct Events {
    data: Vec<u8>,
    list: Vec<Event>,
}

impl Events {
    fn key(&self, e: &Event) -> &[u8] {
        &self.data[e.key.0..e.key.1]
    }
    fn value(&self, e: &Event) -> &[u8] {
        &self.data[e.value.0..e.value.1]
    }
    fn len(&self) -> usize {
        self.list.len()
    }
}

fn main() {
    let target: usize = std::env::var("BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(400_000);
    let passes: usize = std::env::var("BENCH_PASSES").ok().and_then(|v| v.parse().ok()).unwrap_or(9);

    let (events, src, partitions) = orders_updates(target);
    let bytes: usize = events.list.iter().map(|e| e.value.1 - e.value.0).sum();
    println!("{} orders update envelopes, {:.0} bytes each on average (value), {} partitions", events.len(), bytes as f64 / events.len() as f64, partitions);

    if std::env::var("BENCH_ONLY").as_deref() == Ok("decode") {
        // For profiling: the decoding part alone.
        let decode = median(passes, || decode_only(&events, &src));
        println!("decode: {decode:.0} events/s");
        return;
    }
    if std::env::var("BENCH_ONLY").as_deref() == Ok("core") {
        // For profiling: the core path alone.
        let core = median(passes, || core_engine(&events, &src, partitions));
        println!("core: {core:.0} events/s");
        return;
    }
    // Each pass measures all four, one after the other, so that the apache-avro ratio
    // compares figures taken moments apart: it is the median of each pass's own (on a shared
    // host, a ratio of medians taken seconds apart mixes in how the host's load moved
    // meanwhile). The raw hash reads 67 MB in a few milliseconds and is bound by memory
    // bandwidth, which neighbours on the host share: its fastest pass is the limit (a slow
    // pass measures the host, and would flatter the core).
    let n_baseline = events.len().min(40_000);
    let runs: Vec<[f64; 4]> = (0..passes.max(1))
        .map(|_| [raw_hash(&events), core_engine(&events, &src, partitions), decode_only(&events, &src), apache_avro_baseline(&events, n_baseline, &src)])
        .collect();
    let column = |f: &dyn Fn(&[f64; 4]) -> f64| median_of(runs.iter().map(f).collect());
    let (raw_median, core, decode, baseline) = (column(&|r| r[0]), column(&|r| r[1]), column(&|r| r[2]), column(&|r| r[3]));
    let raw = runs.iter().map(|r| r[0]).fold(0.0, f64::max);
    let ratios: Vec<f64> = runs.iter().map(|r| r[1] / r[3]).collect();
    let (lo, hi) = (ratios.iter().copied().fold(f64::INFINITY, f64::min), ratios.iter().copied().fold(0.0, f64::max));
    let ratio = median_of(ratios);
    println!("raw xxh3_128 over each datum: {:.2} M events/s (fastest pass; median {:.2} M)", raw / 1e6, raw_median / 1e6);
    println!("core (decode, canonical hash of both images, key, digest, duplicate check): {:.2} M events/s", core / 1e6);
    println!("of which decoding (envelope walk, hashes of both images and of the key): {:.2} M events/s alone", decode / 1e6);
    println!("apache-avro from_avro_datum + hash of the Value: {:.0} events/s", baseline);
    println!("{} passes, each measuring all four in turn; the ratio per pass from {lo:.1} to {hi:.1}; medians, and the raw hash's fastest pass:", runs.len());
    println!("core: {core:.0} events/s, apache-avro baseline: {baseline:.0} events/s, ratio: {ratio:.1}, raw hash: {raw:.0} events/s, of limit: {:.2}", core / raw);
}

fn orders_updates(target: usize) -> (Events, MemorySource, u32) {
    let mut registry = OfflineRegistry::new();
    let cfg = SimConfig { scenario: Scenario::Clean, seed: 7, events: (target as u64) * 5, replicas: 1, migration: false, ..SimConfig::default() };
    let partitions = cfg.partitions;
    let mut sim = Simulation::new(cfg, &mut registry).expect("simulation");
    let orders = sim.topics().iter().position(|t| t.name == "primary.shop.orders").expect("orders topic") as u16;
    let mut src = MemorySource::new();
    for s in sim.schemas() {
        src.add(s.id, &s.subject, s.version, &s.schema);
    }
    let mut events = Events { data: Vec::with_capacity(target * 440), list: Vec::with_capacity(target) };
    for r in sim.by_ref() {
        if r.topic != orders {
            continue;
        }
        let (Some(key), Some(value)) = (r.key, r.value) else { continue };
        // Updates: both images present (op "u" is the last field before ts_ms; cheap check
        // through the core below would be circular, so look at the op byte pattern).
        if !is_update(&value) {
            continue;
        }
        let k0 = events.data.len();
        events.data.extend_from_slice(&key);
        let v0 = events.data.len();
        events.data.extend_from_slice(&value);
        events.list.push(Event { partition: r.partition, key: (k0, v0), value: (v0, events.data.len()) });
        if events.len() == target {
            break;
        }
    }
    (events, src, partitions)
}

/// `before` is present (union branch 1) in updates; inserts start with branch 0.
fn is_update(value: &[u8]) -> bool {
    value.len() > 6 && value[5] == 2
}

fn median(passes: usize, mut f: impl FnMut() -> f64) -> f64 {
    median_of((0..passes.max(1)).map(|_| f()).collect())
}

fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn raw_hash(events: &Events) -> f64 {
    let start = Instant::now();
    let mut acc = 0u128;
    for e in &events.list {
        acc = acc.wrapping_add(xxh3_128(&events.value(e)[5..]));
    }
    std::hint::black_box(acc);
    events.len() as f64 / start.elapsed().as_secs_f64()
}

fn core_engine(events: &Events, src: &MemorySource, partitions: u32) -> f64 {
    let mut src = src.clone();
    let mut engine = Engine::new(EngineConfig::default(), "primary", &[]);
    let topic = engine.add_topic("primary.shop.orders", 0, "orders", partitions);
    let mut out = Vec::new();
    // Warm the schema cache outside the timed loop, as a running service would have.
    for e in events.list.iter().take(1) {
        let (id, _) = cdc_verifier_core::wire::split(events.value(e)).unwrap();
        src.fetch(id).unwrap();
    }
    let start = Instant::now();
    let mut counted = 0usize;
    for (i, e) in events.list.iter().enumerate() {
        let rec = Record { topic, partition: e.partition, offset: i as i64, timestamp_ms: 0, key: Some(events.key(e)), value: Some(events.value(e)) };
        if engine.ingest(&rec, &mut src).unwrap() == cdc_verifier_core::Ingested::Counted {
            counted += 1;
        }
        if i % 4096 == 4095 {
            engine.advance(0, &mut src, &mut out).unwrap();
        }
    }
    engine.finish(&mut src, &mut out).unwrap();
    let rate = events.len() as f64 / start.elapsed().as_secs_f64();
    assert_eq!(counted, events.len(), "every event is new");
    rate
}

/// The decoding part of the core path alone: envelope walk, both row hashes, the key's hash.
fn decode_only(events: &Events, src: &MemorySource) -> f64 {
    use cdc_verifier_core::avro::{Plan, Reader, Schema, Scratch};
    use cdc_verifier_core::envelope::EnvelopeLayout;
    let mut src = src.clone();
    let (vid, _) = cdc_verifier_core::wire::split(events.value(&events.list[0])).unwrap();
    let (kid, _) = cdc_verifier_core::wire::split(events.key(&events.list[0])).unwrap();
    let vs = Schema::parse_str(&src.fetch(vid).unwrap().schema).unwrap();
    let ks = Schema::parse_str(&src.fetch(kid).unwrap().schema).unwrap();
    let layout = EnvelopeLayout::compile(&vs, &"gtid".parse().unwrap()).unwrap();
    let plan = Plan::compile(&vs, layout.row, &vs, layout.row);
    let kplan = Plan::compile(&ks, ks.root(), &ks, ks.root());
    let (mut scratch, mut kscratch) = (Scratch::default(), Scratch::default());
    let rows = cdc_verifier_core::digest::RowHasher::new(7);
    // One hint per partition, as the engine keeps them.
    let mut hints: Vec<cdc_verifier_core::envelope::Hint> = Vec::new();
    hints.resize_with(events.list.iter().map(|e| e.partition as usize + 1).max().unwrap_or(0), Default::default);
    let start = Instant::now();
    let mut acc = 0u128;
    for e in &events.list {
        let ev = layout.decode_hinted(&vs, &plan, &rows, &events.value(e)[5..], &mut scratch, &mut hints[e.partition as usize]).unwrap();
        let mut r = Reader::new(&events.key(e)[5..]);
        let k = kplan.canonical(&ks, &mut r, &mut kscratch).unwrap();
        acc = acc.wrapping_add(ev.after.unwrap_or(0) ^ cdc_verifier_core::digest::key_hash(7, k.bytes()) as u128);
    }
    std::hint::black_box(acc);
    events.len() as f64 / start.elapsed().as_secs_f64()
}

fn apache_avro_baseline(events: &Events, n: usize, src: &MemorySource) -> f64 {
    let mut src = src.clone();
    let (vid, _) = cdc_verifier_core::wire::split(events.value(&events.list[0])).unwrap();
    let (kid, _) = cdc_verifier_core::wire::split(events.key(&events.list[0])).unwrap();
    let vschema = apache_avro::Schema::parse_str(&src.fetch(vid).unwrap().schema).unwrap();
    let kschema = apache_avro::Schema::parse_str(&src.fetch(kid).unwrap().schema).unwrap();
    let start = Instant::now();
    let mut acc = 0u128;
    for e in &events.list[..n] {
        let key = apache_avro::from_avro_datum(&kschema, &mut &events.key(e)[5..], None).unwrap();
        let value = apache_avro::from_avro_datum(&vschema, &mut &events.value(e)[5..], None).unwrap();
        let mut h = Xxh3::new();
        hash_value(&key, &mut h);
        if let Value::Record(fields) = &value {
            for (name, v) in fields {
                if name == "before" || name == "after" {
                    hash_value(v, &mut h);
                }
            }
        }
        acc = acc.wrapping_add(h.digest128());
    }
    std::hint::black_box(acc);
    n as f64 / start.elapsed().as_secs_f64()
}

fn hash_value(v: &Value, h: &mut Xxh3) {
    match v {
        Value::Null => h.update(&[0]),
        Value::Boolean(b) => h.update(&[*b as u8]),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => h.update(&i.to_le_bytes()),
        Value::Long(l) | Value::TimestampMillis(l) | Value::TimestampMicros(l) | Value::TimeMicros(l) | Value::LocalTimestampMillis(l) | Value::LocalTimestampMicros(l) => h.update(&l.to_le_bytes()),
        Value::Float(f) => h.update(&f.to_le_bytes()),
        Value::Double(d) => h.update(&d.to_le_bytes()),
        Value::Bytes(b) | Value::Fixed(_, b) => h.update(b),
        Value::String(s) | Value::Enum(_, s) => h.update(s.as_bytes()),
        Value::Decimal(d) => h.update(&<Vec<u8>>::try_from(d).unwrap_or_default()),
        Value::Union(i, inner) => {
            h.update(&i.to_le_bytes());
            hash_value(inner, h);
        }
        Value::Array(items) => items.iter().for_each(|i| hash_value(i, h)),
        Value::Map(m) => m.iter().for_each(|(k, v)| {
            h.update(k.as_bytes());
            hash_value(v, h)
        }),
        Value::Record(fields) => fields.iter().for_each(|(_, v)| hash_value(v, h)),
        other => h.update(format!("{other:?}").as_bytes()),
    }
}
