//! Scale-out against the local broker and registry (`scripts/bench scale`):
//!
//! 1. preloads the simulator's `faults` scenario (primary + 2 replicas, 8 partitions a topic);
//! 2. verifies it with one instance pinned to one core (`taskset`), then with two instances
//!    sharing the tables (`[scale] shards`), each pinned to a core of its own — each
//!    `run --until-caught-up`, records/s from its first record until it has read everything;
//!    alternating, `SCALE_ROUNDS` rounds (default 3), medians;
//! 3. compares the verdicts of the two (their identities on the detail topic) and measures what
//!    sharing writes to Kafka (the reach topic) per source record and against the source bytes.
//!
//! The last line is the summary.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

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

fn consumer() -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", "cdc-verifier-bench-scale")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .unwrap()
}

/// Every record of `topic`: its key and its size (key and value).
fn read_topic(topic: &str) -> Vec<(Vec<u8>, usize)> {
    let c = consumer();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut left = 0i64;
    for t in md.topics() {
        for p in t.partitions() {
            let (low, high) = c
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            left += high - low;
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    while left > 0 {
        match c.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                left -= 1;
                let key = m.key().unwrap_or_default().to_vec();
                let size = key.len() + m.payload().map_or(0, <[u8]>::len);
                out.push((key, size));
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => panic!("reading {topic}: stalled with {left} records left"),
        }
    }
    out
}

/// The source topics' records and bytes (key and value).
fn source_size(prefix: &str) -> (u64, u64) {
    let c = consumer();
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let topics: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|t| t.starts_with(prefix) && t.contains(".shop."))
        .collect();
    let (mut n, mut b) = (0u64, 0u64);
    for t in topics {
        for (_, size) in read_topic(&t) {
            n += 1;
            b += size as u64;
        }
    }
    (n, b)
}

/// One instance's figures: records verified, seconds from its first record to caught up, and
/// what it said on the reach topic (of its first shards).
struct Ran {
    records: u64,
    seconds: f64,
    reach_bytes: u64,
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
}

/// Instances started together on `cores`, sharing `shards` shards under `group`.
fn verify(prefix: &str, group: &str, detail: &str, cores: &[usize], shards: u32) -> Vec<Ran> {
    let children: Vec<_> = cores
        .iter()
        .enumerate()
        .map(|(i, core)| {
            Command::new("taskset")
                .args(["-c", &core.to_string(), BIN])
                .args(["run", "--until-caught-up", "--topic-prefix", prefix])
                .args(["--group-id", group])
                .args(["--bootstrap-servers", &bootstrap()])
                .args(["--registry-url", &registry()])
                .args(["--set", &format!("alerts.detail-topic={detail}")])
                .args(["--set", &format!("alerts.topic={detail}.episodes")])
                .args(["--set", &format!("alerts.dead-letter-topic={detail}.dlq")])
                .args(["--set", &format!("alerts.instance={group}-{i}")])
                .args(["--set", "service.listen=127.0.0.1:0"])
                .args(["--set", "service.summary-interval-s=0"])
                .args(["--set", &format!("scale.shards={shards}")])
                .args(["--set", "scale.session-timeout-ms=6000"])
                // Both join before either starts: no hand-over mid-measurement.
                .args(["--set", "scale.settle-ms=10000"])
                .args(["--set", "scale.place-by=load"])
                .env("CDC_VERIFIER_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("taskset and the verifier run")
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            let log = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "the verifier failed:\n{log}");
            // (An instance that is done leaves the group, and the others take its shards
            // over: only the first pass, until each has read everything, is measured.)
            let caught = log
                .lines()
                .find(|l| l.contains("read everything:"))
                .unwrap_or_else(|| panic!("no `read everything` line:\n{log}"));
            let before: Vec<&str> = log
                .lines()
                .take_while(|l| !l.contains("read everything:"))
                .collect();
            assert!(
                !before.iter().any(|l| l.contains("the group rebalances")),
                "a shard changed hands mid-measurement:\n{log}"
            );
            let reach = log.lines().find(|l| l.contains("reach said:"));
            Ran {
                records: field(caught, "records").unwrap().parse().unwrap(),
                seconds: field(caught, "seconds").unwrap().parse().unwrap(),
                reach_bytes: reach
                    .and_then(|l| field(l, "bytes"))
                    .map_or(0, |b| b.parse().unwrap()),
            }
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let events = env_or("SCALE_EVENTS", "300000");
    let rounds: usize = env_or("SCALE_ROUNDS", "3").parse().unwrap();
    let shards: u32 = env_or("SCALE_SHARDS", "8").parse().unwrap();
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let prefix = format!("bench-scale-{t}-");
    let out = Command::new(BIN)
        .args(["simulate", "--scenario", "faults", "--events", &events])
        .args(["--topic-prefix", &prefix, "--partitions", "8"])
        .args(["--bootstrap-servers", &bootstrap()])
        .args(["--registry-url", &registry()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "simulate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (source_records, source_bytes) = source_size(&prefix);
    println!(
        "preloaded: {events} primary events of the faults scenario, {source_records} records, {source_bytes} bytes; {shards} shards"
    );

    let (mut one, mut two, mut reach) = (Vec::new(), Vec::new(), Vec::new());
    let mut equal = true;
    for round in 0..rounds {
        let d1 = format!("{prefix}r{round}-one");
        let a = verify(&prefix, &format!("{prefix}r{round}-g1"), &d1, &[0], shards);
        let d2 = format!("{prefix}r{round}-two");
        let b = verify(
            &prefix,
            &format!("{prefix}r{round}-g2"),
            &d2,
            &[0, 1],
            shards,
        );
        let rate_one = a[0].records as f64 / a[0].seconds;
        let rate_two = b.iter().map(|r| r.records).sum::<u64>() as f64
            / b.iter().map(|r| r.seconds).fold(0.0, f64::max);
        let said: u64 = b.iter().map(|r| r.reach_bytes).sum();
        let keys = |topic: &str| -> BTreeSet<Vec<u8>> {
            read_topic(topic).into_iter().map(|(k, _)| k).collect()
        };
        let same = keys(&d1) == keys(&d2);
        equal &= same;
        println!(
            "round {}: 1 instance {:.0} records/s; 2 instances {:.0} records/s ({} and {} records); reach {} bytes; verdicts equal: {}",
            round + 1,
            rate_one,
            rate_two,
            b[0].records,
            b.get(1).map_or(0, |r| r.records),
            said,
            if same { "yes" } else { "no" }
        );
        one.push(rate_one);
        two.push(rate_two);
        reach.push(said as f64);
    }
    let (a, b) = (median(one), median(two));
    let shuffle = median(reach);
    println!(
        "scale: 1 instance {a:.0} records/s, 2 instances {b:.0} records/s, efficiency {:.2}, shuffle {:.2} bytes/record ({:.3} % of the source bytes), verdicts equal: {}",
        b / (2.0 * a),
        shuffle / source_records as f64,
        100.0 * shuffle / source_bytes as f64,
        if equal { "yes" } else { "no" }
    );
}
