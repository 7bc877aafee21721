//! Generation throughput and a summary of one run: `cargo run --release -p cdc-verifier-sim --example simstat -- [scenario] [events]`.
use std::time::Instant;

use cdc_verifier_sim::{OfflineRegistry, Scenario, SimConfig, Simulation};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scenario = args
        .get(1)
        .and_then(|s| Scenario::from_name(s))
        .unwrap_or(Scenario::Faults);
    let events = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let mut reg = OfflineRegistry::new();
    let t0 = Instant::now();
    let mut sim = Simulation::new(
        SimConfig {
            scenario,
            events,
            ..SimConfig::default()
        },
        &mut reg,
    )
    .unwrap();
    let (mut records, mut bytes, mut values) = (0u64, 0u64, 0u64);
    let mut per_topic = vec![0u64; sim.topics().len()];
    for r in sim.by_ref() {
        records += 1;
        per_topic[r.topic as usize] += 1;
        bytes += r.key.as_ref().map_or(0, |k| k.len()) as u64
            + r.value.as_ref().map_or(0, |v| v.len()) as u64;
        values += r.value.is_some() as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    let m = sim.manifest();
    println!(
        "{} primary events, {records} records ({values} with values), {:.0} B/record, {:.2}s: {:.0} primary events/s, {:.0} records/s, {:.0} MB/s",
        m.primary_events,
        bytes as f64 / records as f64,
        secs,
        m.primary_events as f64 / secs,
        records as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    for (t, n) in sim.topics().iter().zip(&per_topic) {
        println!("  {:32} {n}", t.name);
    }
    let mut kinds = std::collections::BTreeMap::new();
    for f in &m.faults {
        *kinds.entry(f.kind.name()).or_insert(0) += 1;
    }
    println!("faults: {kinds:?}; migration: {:?}", m.migration);
    println!(
        "synthetic time {} .. {}",
        cdc_verifier_sim::time::format_utc(m.start_timestamp_ms),
        cdc_verifier_sim::time::format_utc(m.end_timestamp_ms)
    );
}
