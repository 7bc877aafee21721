//! For the tests on real databases and real Debezium (tests/debezium*.rs): the project's
//! scripts, the CDC topics' progress, and the verdicts read back from an alert topic.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use serde_json::Value as Json;

/// Runs one of the project's scripts with `env` set; panics with its output when it fails.
pub fn script(name: &str, args: &[&str], env: &[(&str, &str)]) {
    let out = Command::new(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("scripts")
            .join(name),
    )
    .args(args)
    .envs(env.iter().copied())
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "scripts/{name} {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The sum of `topics`' end offsets.
pub fn end_offsets(topics: &[String]) -> i64 {
    let c = super::consumer(&super::unique_name("offsets"), "read_uncommitted");
    let mut sum = 0;
    for t in topics {
        let md = c.fetch_metadata(Some(t), Duration::from_secs(10)).unwrap();
        for topic in md.topics() {
            for p in topic.partitions() {
                sum += c
                    .fetch_watermarks(t, p.id(), Duration::from_secs(10))
                    .map_or(0, |(_, high)| high);
            }
        }
    }
    sum
}

/// Waits until `topics`' end offsets have not changed for 3 s: the connectors wrote what
/// the databases hold (once the replica caught up).
pub fn wait_stable(topics: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(90);
    let (mut last, mut since) = (end_offsets(topics), Instant::now());
    while since.elapsed() < Duration::from_secs(3) {
        assert!(Instant::now() < deadline, "the CDC topics kept growing");
        std::thread::sleep(Duration::from_millis(500));
        let now = end_offsets(topics);
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
}

/// Every verdict on the detail topic `topic`, as JSON (the Avro record converted).
pub fn verdicts(topic: &str) -> Vec<Json> {
    let schema =
        apache_avro::Schema::parse_str(include_str!("../../schemas/divergence.avsc")).unwrap();
    let c = super::consumer(&super::unique_name("alerts"), "read_committed");
    c.subscribe(&[topic]).unwrap();
    super::poll_for(&c, Duration::from_secs(4))
        .iter()
        .map(|m| {
            let (_, datum) = super::confluent_unframe(m.payload().unwrap());
            let v = apache_avro::from_avro_datum(&schema, &mut &datum[..], None).unwrap();
            Json::try_from(v).unwrap()
        })
        .collect()
}

/// A field of a verdict, `None` when absent or null.
pub fn opt<'a>(v: &'a Json, name: &str) -> Option<&'a Json> {
    v.get(name).filter(|x| !x.is_null())
}

/// `all` without (one each of) the verdicts in `seen`: the alert topic's partitions do not
/// keep the order of publication, so what is new is told by difference, not by count.
pub fn besides(all: Vec<Json>, seen: &[Json]) -> Vec<Json> {
    let mut left: Vec<&Json> = seen.iter().collect();
    all.into_iter()
        .filter(|a| match left.iter().position(|s| *s == a) {
            Some(i) => {
                left.swap_remove(i);
                false
            }
            None => true,
        })
        .collect()
}

/// An outage's verdicts: a stream behind or silent, and its recovery.
pub fn is_outage(a: &Json) -> bool {
    let outage = |k: &Json| k == "ReplicaLag" || k == "StreamSilent";
    outage(&a["kind"]) || (a["kind"] == "Recovered" && opt(a, "recovered").is_some_and(outage))
}

/// Outage verdicts (kind, table) not yet followed by their recovery (by counts, for the
/// same reason as [`besides`]).
pub fn unrecovered(a: &[Json]) -> Vec<(String, Option<String>)> {
    let mut open: BTreeMap<(String, Option<String>), i32> = BTreeMap::new();
    for x in a.iter().filter(|x| is_outage(x)) {
        let table = opt(x, "table").and_then(Json::as_str).map(str::to_string);
        let (kind, step) = if x["kind"] == "Recovered" {
            (
                opt(x, "recovered").and_then(Json::as_str).unwrap_or("-"),
                -1,
            )
        } else {
            (x["kind"].as_str().unwrap_or("-"), 1)
        };
        *open.entry((kind.to_string(), table)).or_default() += step;
    }
    open.into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, _)| k)
        .collect()
}
