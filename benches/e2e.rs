//! End to end against the local broker and registry (`scripts/services up`):
//!
//! 1. preloads topics with the simulator (primary + 2 replicas, 8 partitions each);
//! 2. measures, on those same topics, raw rdkafka consume-and-discard throughput, then the
//!    verifier's (`cdc-verifier run --until-caught-up`, from its first record until it has
//!    read everything): three rounds, alternating, and the medians;
//! 3. with the verifier already running on freshly created topics, produces the `incident`
//!    scenario at a steady 50,000 records/s over all its topics (`E2E_RATE`; records, as the
//!    throughput figures count them — or `E2E_PRIMARY_RATE` primary events/s), and measures
//!    the time from each faulty record's send to its divergence event on the alert topic
//!    (hdrhistogram); `E2E_SIM_ARGS` passes more flags to that simulator;
//! 4. reports the verifier's peak RSS.
//!
//! The last line is the summary.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cdc_verifier_core::KeyRanges;
use cdc_verifier_core::digest::{key_hash, table_seed};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_cdc-verifier");

fn env_or(k: &str, d: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| d.to_string())
}

fn bootstrap() -> String {
    env_or("CDC_VERIFIER_TEST_BOOTSTRAP", "127.0.0.1:9092")
}

fn registry() -> String {
    env_or(
        "CDC_VERIFIER_TEST_REGISTRY",
        "http://127.0.0.1:8081/apis/ccompat/v7",
    )
}

fn unique(prefix: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("{prefix}-{t}-")
}

fn simulate(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .arg("simulate")
        .args(args)
        .args([
            "--bootstrap-servers",
            &bootstrap(),
            "--registry-url",
            &registry(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn consumer(group: &str) -> BaseConsumer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "20");
    // Fetching as the verifier's own consumer does, so that the two compare like for like.
    for (k, v) in cdc_verifier_kafka::consume::FETCH {
        c.set(*k, *v);
    }
    c.create().unwrap()
}

/// Every partition of the topics with `prefix`, with its high watermark.
fn partitions(c: &BaseConsumer, prefix: &str) -> Vec<(String, i32, i64)> {
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let mut v = Vec::new();
    for t in md.topics().iter().filter(|t| t.name().starts_with(prefix)) {
        for p in t.partitions() {
            let (_, high) = c
                .fetch_watermarks(t.name(), p.id(), Duration::from_secs(10))
                .unwrap();
            v.push((t.name().to_string(), p.id(), high));
        }
    }
    v
}

/// Reads every record of the prefix's topics and discards it: records/s from the first
/// record to the last.
fn raw_consume(prefix: &str) -> (u64, f64) {
    let c = consumer(&format!("{prefix}raw"));
    let parts = partitions(&c, prefix);
    let mut tpl = TopicPartitionList::new();
    let mut remaining: HashMap<(String, i32), i64> = HashMap::new();
    for (t, p, high) in &parts {
        if *high > 0 {
            tpl.add_partition_offset(t, *p, Offset::Beginning).unwrap();
            remaining.insert((t.clone(), *p), *high);
        }
    }
    c.assign(&tpl).unwrap();
    let mut n = 0u64;
    let mut bytes = 0usize;
    let mut start = None;
    while !remaining.is_empty() {
        match c.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                start.get_or_insert_with(Instant::now);
                n += 1;
                bytes += m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len);
                let k = (m.topic().to_string(), m.partition());
                if m.offset() + 1 >= remaining.get(&k).copied().unwrap_or(i64::MAX) {
                    remaining.remove(&k);
                }
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => panic!(
                "raw consume stalled with {} partitions left",
                remaining.len()
            ),
        }
    }
    std::hint::black_box(bytes);
    (n, n as f64 / start.unwrap().elapsed().as_secs_f64())
}

fn verifier_args(prefix: &str, alerts: &str, group: &str) -> Vec<String> {
    [
        "run",
        "--topic-prefix",
        prefix,
        "--group-id",
        group,
        "--bootstrap-servers",
        &bootstrap(),
        "--registry-url",
        &registry(),
        "--set",
        &format!("alerts.detail-topic={alerts}"),
        "--set",
        &format!("alerts.topic={alerts}.episodes"),
        "--set",
        &format!("alerts.dead-letter-topic={prefix}dead-letter"),
        "--set",
        "service.listen=127.0.0.1:0",
        "--set",
        "service.summary-interval-s=0",
    ]
    .iter()
    .map(|s| s.to_string())
    // `E2E_CONFIG=FILE`: a config file the verifier reads too (e.g. consumer properties to try).
    .chain(
        std::env::var("E2E_CONFIG")
            .map(|f| vec!["--config".to_string(), f])
            .unwrap_or_default(),
    )
    .collect()
}

fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().rev().find_map(|l| {
        l.split(&format!("{name}="))
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
    })
}

fn range_of(key: &Json) -> u64 {
    let mut bytes = Vec::new();
    for (_, v) in key.as_object().unwrap() {
        cdc_verifier_core::avro::reader::write_long(&mut bytes, v.as_i64().unwrap());
    }
    KeyRanges::default().range(key_hash(table_seed("orders"), &bytes), None)
}

fn main() {
    let events: u64 = env_or("E2E_EVENTS", "1000000").parse().unwrap();
    let rate: u64 = env_or("E2E_RATE", "50000").parse().unwrap();
    let primary_rate: Option<u64> = std::env::var("E2E_PRIMARY_RATE")
        .ok()
        .map(|v| v.parse().unwrap());
    let live_events: u64 = env_or("E2E_LIVE_EVENTS", "600000").parse().unwrap();

    // 1. Preload.
    let prefix = unique("e2e");
    let t = Instant::now();
    simulate(&[
        "--scenario",
        "clean",
        "--events",
        &events.to_string(),
        "--partitions",
        "8",
        "--topic-prefix",
        &prefix,
    ]);
    let preload = t.elapsed().as_secs_f64();
    let c = consumer(&format!("{prefix}probe"));
    let records: i64 = partitions(&c, &prefix).iter().map(|(_, _, h)| h).sum();
    drop(c);
    println!(
        "preloaded {records} records ({events} primary events) in {preload:.1} s: {:.0} records/s",
        records as f64 / preload
    );
    // The simulator paces primary events; each becomes this many records over all topics.
    let per_event = records as f64 / events as f64;
    let rate = primary_rate.unwrap_or_else(|| (rate as f64 / per_event).round() as u64);
    println!(
        "live phase: {rate} primary events/s, ~{:.0} records/s",
        rate as f64 * per_event
    );

    // 2. Raw consume, then the verifier, on the same topics; three times, alternating, since
    //    either can be slowed by whatever else this machine is doing at the time.
    let (mut raws, mut verifieds, mut rss_bulk) = (Vec::new(), Vec::new(), 0f64);
    for round in 0..3 {
        let (n, raw) = raw_consume(&prefix);
        println!("raw consume-and-discard: {n} records, {raw:.0} records/s");
        let group = format!("{prefix}verifier-{round}");
        let out = Command::new(BIN)
            .args(verifier_args(&prefix, &format!("{prefix}alerts"), &group))
            .arg("--until-caught-up")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "verifier failed: {err}");
        let verified: f64 = field(&err, "rate")
            .and_then(|r| r.parse().ok())
            .expect("the verifier reports its catch-up rate");
        let rss: f64 = field(&err, "peak_rss_mib")
            .and_then(|r| r.parse().ok())
            .unwrap_or(0.0);
        println!(
            "verifier: {verified:.0} records/s (peak RSS {rss:.0} MiB), {:.2} of the raw consume before it",
            verified / raw
        );
        raws.push(raw);
        verifieds.push(verified);
        rss_bulk = rss_bulk.max(rss);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    let (raw, verified) = (median(&mut raws), median(&mut verifieds));
    println!("medians: raw consume {raw:.0} records/s, verifier {verified:.0} records/s");

    // 3. Detection latency at a steady rate, live. The verifier is running before traffic
    //    starts, as a service in production is: the topics are created (as the preload's),
    //    the verifier started, and then the simulator produces into them.
    let live = unique("e2e-live");
    let alerts = format!("{live}alerts");
    let dir = std::env::temp_dir().join(format!("{}manifest.json", live));
    let names: Vec<String> = {
        let c = consumer(&format!("{prefix}count"));
        let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
        md.topics()
            .iter()
            .filter(|t| t.name().starts_with(&prefix) && t.name().contains(".shop."))
            .map(|t| t.name().replacen(&prefix, &live, 1))
            .collect()
    };
    let specs: Vec<cdc_verifier_kafka::admin::TopicSpec> = names
        .iter()
        .map(|n| cdc_verifier_kafka::admin::TopicSpec {
            name: n.clone(),
            partitions: 8,
            configs: Vec::new(),
            replication: Some(1),
        })
        .collect();
    let kafka = cdc_verifier_kafka::consume::KafkaSettings {
        bootstrap_servers: bootstrap(),
        properties: Vec::new(),
    };
    cdc_verifier_kafka::admin::ensure_topics(
        &kafka,
        &specs,
        cdc_verifier_kafka::admin::Existing::Empty,
        Duration::from_secs(60),
    )
    .unwrap();
    // Its log goes to a file: a pipe nobody reads while it runs would fill and block it.
    let log_path = std::env::temp_dir().join(format!("{live}verifier.log"));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = Command::new(BIN)
        .args(verifier_args(&live, &alerts, &format!("{live}verifier")))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let waited = Instant::now();
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("verifying primary against")
    {
        assert!(
            child.try_wait().unwrap().is_none(),
            "live verifier: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the live verifier did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // `E2E_SIM_ARGS`: more flags for the live phase's simulator (e.g. `--ms-source-ts`, to
    // see what MariaDB's whole-second commit times cost the detection).
    let sim_args = std::env::var("E2E_SIM_ARGS").unwrap_or_default();
    let sim = {
        let (live, dir) = (live.clone(), dir.clone());
        std::thread::spawn(move || {
            let mut args = vec![
                "--scenario".to_string(),
                "incident".into(),
                "--events".into(),
                live_events.to_string(),
                "--rate".into(),
                rate.to_string(),
                "--start-time".into(),
                "now".into(),
                "--partitions".into(),
                "8".into(),
                "--topic-prefix".into(),
                live,
                "--manifest".into(),
                dir.to_str().unwrap().to_string(),
            ];
            args.extend(sim_args.split_whitespace().map(str::to_string));
            simulate(&args.iter().map(String::as_str).collect::<Vec<_>>())
        })
    };
    let sim_out = sim.join().unwrap();
    eprintln!("live: production done; stopping the verifier");
    // Time for the last windows: records readable seconds late here make the verifier allow
    // that much skew before comparing them.
    std::thread::sleep(Duration::from_secs(15));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    eprintln!("live: verifier stopped; reading alerts");
    let err = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "live verifier: {err}");
    let rss_live: f64 = field(&err, "peak_rss_mib")
        .and_then(|r| r.parse().ok())
        .unwrap_or(0.0);
    let achieved = sim_out
        .lines()
        .find(|l| l.contains("events/s"))
        .unwrap_or("")
        .trim()
        .to_string();
    println!("live production: {achieved}");

    // Alerts by (kind, range) with their produce timestamps.
    let c = consumer(&format!("{live}alert-reader"));
    let md = c
        .fetch_metadata(Some(&alerts), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(&alerts, p.id(), Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let schema =
        apache_avro::Schema::parse_str(include_str!("../schemas/divergence.avsc")).unwrap();
    // (kind, range, window) -> the first alert's timestamp.
    type AlertKey = (String, Option<u64>, (i64, i64, i64));
    let mut first_alert: HashMap<AlertKey, i64> = HashMap::new();
    let quiet = Instant::now();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(3) && quiet.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            last = Instant::now();
            let v = apache_avro::from_avro_datum(&schema, &mut &m.payload().unwrap()[5..], None)
                .unwrap();
            let apache_avro::types::Value::Record(f) = v else {
                continue;
            };
            let get = |n: &str| {
                f.iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| v.clone())
                    .unwrap()
            };
            let kind = match get("kind") {
                apache_avro::types::Value::Enum(_, s) => s,
                _ => continue,
            };
            let range = match get("range") {
                apache_avro::types::Value::Union(_, b) => match *b {
                    apache_avro::types::Value::Long(r) => Some(r as u64),
                    _ => None,
                },
                _ => None,
            };
            // The window's id and its first and last origin positions.
            let window = match get("window") {
                apache_avro::types::Value::Union(_, b) => match *b {
                    apache_avro::types::Value::Record(w) => {
                        let long = |i: usize| match w[i].1 {
                            apache_avro::types::Value::Long(v) => v,
                            _ => 0,
                        };
                        (long(0), long(1), long(2))
                    }
                    _ => (0, 0, 0),
                },
                _ => (0, 0, 0),
            };
            let ts = m.timestamp().to_millis().unwrap();
            first_alert
                .entry((kind, range, window))
                .and_modify(|t| *t = (*t).min(ts))
                .or_insert(ts);
        }
    }
    let manifest: Json = serde_json::from_slice(&std::fs::read(&dir).unwrap()).unwrap();
    // The simulator's clock started before it had set up topics and schemas: each record went
    // out this long after its timestamp. Latencies are measured from the send.
    let offset: i64 = sim_out
        .lines()
        .find_map(|l| l.split("records are sent ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000, 3).unwrap();
    let mut stamped = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000, 3).unwrap();
    // Faults while traffic went on: a window holding the last records before traffic stops
    // closes only once the skew allowed for has passed with nothing more arriving.
    let mut steady = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000, 3).unwrap();
    let traffic_end = manifest["end_timestamp_ms"].as_i64().unwrap_or(i64::MAX);
    let mut missed = 0;
    // Detection by when the fault happened, in 5-second steps of the run.
    let mut by_time: std::collections::BTreeMap<i64, Vec<i64>> = std::collections::BTreeMap::new();
    let first_ts = manifest["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["timestamp_ms"].as_i64())
        .min()
        .unwrap_or(0);
    for f in manifest["faults"].as_array().unwrap() {
        let Some(ts) = f["timestamp_ms"].as_i64() else {
            continue;
        };
        let alert = if f["detail"].as_str().unwrap_or("").contains("value lost") {
            // The mismatch of the window holding the faulty event's origin position.
            let (range, pos) = (range_of(&f["key"]), f["position"].as_i64().unwrap_or(-1));
            first_alert
                .iter()
                .find(|((k, r, (_, lo, hi)), _)| {
                    k == "DataMismatch" && *r == Some(range) && *lo <= pos && pos <= *hi
                })
                .map(|(_, t)| t)
        } else {
            first_alert
                .iter()
                .filter(|((k, _, _), _)| k == "SchemaDrift")
                .map(|(_, t)| t)
                .min()
        };
        match alert {
            Some(at) => {
                stamped.record((at - ts).max(1) as u64).unwrap();
                hist.record((at - ts - offset).max(1) as u64).unwrap();
                by_time
                    .entry((ts - first_ts) / 5000)
                    .or_default()
                    .push(at - ts - offset);
                if ts < traffic_end - 2000 {
                    steady.record((at - ts - offset).max(1) as u64).unwrap();
                }
            }
            None => {
                if missed < 5 {
                    println!("unmatched fault: {f}");
                    let range = range_of(&f["key"]);
                    for ((k, _, w), t) in first_alert
                        .iter()
                        .filter(|((_, r, _), _)| *r == Some(range))
                    {
                        println!("  alert on its range: {k} window {w:?} at {}", t - ts);
                    }
                }
                missed += 1
            }
        }
    }
    for (step, mut v) in by_time {
        v.sort_unstable();
        println!(
            "  faults {:>3}-{:<3} s into the run: {:>5}, detected p50 {} ms, max {} ms",
            step * 5,
            step * 5 + 5,
            v.len(),
            v[v.len() / 2],
            v[v.len() - 1]
        );
    }
    // Verdicts with no fault behind them (the incident touches only replica-2's orders).
    let fault_ranges: std::collections::HashSet<u64> = manifest["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["key"].is_null())
        .map(|f| range_of(&f["key"]))
        .collect();
    let unexplained = first_alert
        .keys()
        .filter(|(k, r, _)| k == "DataMismatch" && r.is_some_and(|r| !fault_ranges.contains(&r)))
        .count();
    let late: u64 = err
        .lines()
        .filter_map(|l| {
            l.split("records=")
                .nth(1)
                .filter(|_| l.contains("after their window was compared"))
        })
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    println!(
        "live verdicts: {} distinct, {unexplained} DataMismatch on ranges without a fault, {late} records late",
        first_alert.len()
    );
    // How long after their produce timestamp the verifier could read records at all: the part
    // of the detection time spent before the verifier sees anything.
    let age = |q: &str| {
        field(&err, &format!("record_age_{q}_ms"))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    println!("records were sent {offset} ms after their timestamps (the simulator's set-up)");
    println!(
        "records readable after they were sent: p50 {} ms, p99 {} ms",
        age("p50") - offset,
        age("p99") - offset
    );
    println!(
        "from the faulty record's timestamp: p50 {} ms, p99 {} ms",
        stamped.value_at_quantile(0.5),
        stamped.value_at_quantile(0.99)
    );
    println!(
        "detection latency from the faulty record's send, over {} faulty records ({missed} unmatched): p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        hist.len(),
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.9),
        hist.value_at_quantile(0.99),
        hist.max()
    );
    println!(
        "  of which {} faults at least 2 s before traffic stopped: p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        steady.len(),
        steady.value_at_quantile(0.5),
        steady.value_at_quantile(0.9),
        steady.value_at_quantile(0.99),
        steady.max()
    );
    println!(
        "e2e: verifier {verified:.0} events/s, raw consume {raw:.0} events/s, ratio {:.2}, detect p50 {} ms p99 {} ms, rss {:.0} MiB",
        verified / raw,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        rss_bulk.max(rss_live)
    );
}
