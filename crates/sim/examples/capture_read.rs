//! Reads a capture and reports records/s: `cargo run --release -p cdc-verifier-sim --example capture_read -- FILE`.
use std::time::Instant;

use cdc_verifier_sim::CaptureReader;

fn main() {
    let path = std::env::args().nth(1).expect("usage: capture_read FILE");
    let t0 = Instant::now();
    let mut r = CaptureReader::open(std::path::Path::new(&path)).expect("opening the capture");
    let (mut records, mut bytes, mut tombstones) = (0u64, 0u64, 0u64);
    while let Some(rec) = r.next_record().expect("reading") {
        records += 1;
        bytes += rec.key.map_or(0, |k| k.len()) as u64 + rec.value.map_or(0, |v| v.len()) as u64;
        tombstones += rec.value.is_none() as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{records} records ({tombstones} tombstones, {:.1} MB) in {secs:.3}s: {:.1} M records/s, {:.0} MB/s",
        bytes as f64 / 1e6,
        records as f64 / secs / 1e6,
        bytes as f64 / secs / 1e6
    );
}
