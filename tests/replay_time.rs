//! `cdc-verifier replay --from/--to` on topics whose record times are not commit times
//! (connectors that caught up, started late): the span is selected by commit time, a late
//! connector is not a lagging replica, and a span with nothing in it is an error, never
//! "consistent".

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_cdc-verifier");

/// The simulator's clean run starts at 2024-08-14T12:00:00Z and commits for about 1.5 s.
const FROM: &str = "2024-08-14T12:00:00.500Z";
const TO: &str = "2024-08-14T12:00:01.200Z";

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// Simulates clean traffic into Kafka under a fresh prefix, with the connectors' delays, and
/// a capture of the same records; returns the prefix and the capture's path.
fn simulate(dir: &Path, connector_delay_ms: i64, replica_delay_ms: i64) -> (String, String) {
    let prefix = format!("{}-", support::unique_name("replay-time"));
    let capture = dir.join("run.cdccap");
    let out = run(&[
        "simulate",
        "--scenario",
        "clean",
        "--events",
        "30000",
        "--partitions",
        "3",
        "--topic-prefix",
        &prefix,
        "--connector-delay-ms",
        &connector_delay_ms.to_string(),
        "--replica-connector-delay-ms",
        &replica_delay_ms.to_string(),
        "--bootstrap-servers",
        &support::bootstrap(),
        "--registry-url",
        &support::registry_url(),
        "--capture",
        capture.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (prefix, capture.to_str().unwrap().to_string())
}

/// Replays `source` (Kafka, or `--capture FILE`) over `[from, to)`; returns the exit status,
/// the output and the report.
fn replay(dir: &Path, prefix: &str, source: &[&str], from: &str, to: &str) -> (Output, Json) {
    let report = dir.join("report.json");
    let html = dir.join("report.html");
    let (bootstrap, registry) = (support::bootstrap(), support::registry_url());
    let mut args = vec![
        "replay",
        "--quiet",
        "--from",
        from,
        "--to",
        to,
        "--topic-prefix",
        prefix,
        "--bootstrap-servers",
        &bootstrap,
        "--registry-url",
        &registry,
        "--report",
        report.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ];
    args.extend_from_slice(source);
    let out = run(&args);
    let json = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    (out, json)
}

/// Events verified per stream, in the report's order.
fn events(report: &Json) -> Vec<u64> {
    report["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["events"].as_u64().unwrap())
        .collect()
}

fn kinds(report: &Json) -> Vec<String> {
    report["divergences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| format!("{} {}", d["kind"], d["replica"]))
        .collect()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_replay_by_time_selects_by_commit_time_on_topics_written_an_hour_later() {
    support::require_services();
    let dir = tempfile::tempdir().unwrap();
    // Every connector started an hour after the first commit and caught up: the records are
    // stamped an hour after the span, none of them within it.
    let (prefix, capture) = simulate(dir.path(), 3_600_000, 0);
    let (out, kafka) = replay(dir.path(), &prefix, &[], FROM, TO);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(kafka["verdict"], "consistent");
    let verified = events(&kafka);
    assert!(
        verified[0] > 1000,
        "the span's events are verified: {verified:?}"
    );
    assert!(verified.iter().all(|e| *e == verified[0]), "{verified:?}");
    // Exactly the span's: what the capture of the same records holds between those commit
    // times.
    let (out, file) = replay(dir.path(), &prefix, &["--capture", &capture], FROM, TO);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(events(&file), verified);
}

#[test]
fn a_replay_by_time_does_not_take_a_replicas_late_connector_for_lag() {
    support::require_services();
    let dir = tempfile::tempdir().unwrap();
    // The replicas applied every transaction; their connectors read the binlogs 8 s after
    // the primary's did, so their records are stamped 8 s later.
    let (prefix, _) = simulate(dir.path(), 0, 8_000);
    let (out, report) = replay(dir.path(), &prefix, &[], FROM, TO);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(kinds(&report).is_empty(), "{:?}", kinds(&report));
    assert!(
        events(&report).iter().all(|e| *e > 1000),
        "{:?}",
        events(&report)
    );
}

#[test]
fn a_replay_of_a_span_with_no_commits_is_an_error_not_consistent() {
    support::require_services();
    let dir = tempfile::tempdir().unwrap();
    let (prefix, capture) = simulate(dir.path(), 0, 0);
    let (from, to) = ("2030-01-01T00:00:00Z", "2030-01-01T01:00:00Z");
    for source in [vec![], vec!["--capture", capture.as_str()]] {
        let (out, report) = replay(dir.path(), &prefix, &source, from, to);
        assert_eq!(out.status.code(), Some(2), "{source:?}: {}", text(&out));
        let t = text(&out);
        assert!(!t.contains("CONSISTENT"), "{t}");
        assert!(
            t.contains("verified 0 events") && t.contains("nothing to compare"),
            "{t}"
        );
        assert!(t.contains("2030-01-01T00:00:00"), "the span is named: {t}");
        assert_eq!(report["verdict"], "nothing_verified");
    }
}

#[test]
fn the_end_of_a_replayed_span_is_the_newest_stamp_of_the_partitions_last_records() {
    use rdkafka::producer::BaseRecord;
    support::require_kafka();
    let topic = support::unique_name("span-end");
    support::create_topic(&topic, 3);
    let p = support::idempotent_producer();
    // Partition 0 ends at 3000, partition 1 holds an older stamp after a newer one (its last
    // record counts, not its newest), partition 2 is empty.
    for (partition, stamp) in [(0, 1000), (0, 3000), (1, 9000), (1, 2000)] {
        p.send(
            BaseRecord::<(), [u8]>::to(&topic)
                .partition(partition)
                .payload(&b"x"[..])
                .timestamp(stamp),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    }
    support::flush(&p);
    let settings = support::kafka_settings();
    let newest = |ends: &[(u32, i64)]| {
        settings
            .newest_stamp_before(
                ends.iter().map(|(p, e)| (topic.as_str(), *p, *e)),
                std::time::Duration::from_secs(10),
            )
            .unwrap()
    };
    assert_eq!(newest(&[(0, 2), (1, 2), (2, 0)]), Some(3000));
    assert_eq!(
        newest(&[(0, 1), (1, 1)]),
        Some(9000),
        "ends inside the partitions"
    );
    assert_eq!(newest(&[(2, 0)]), None);
    support::delete_topics(&[&topic]);
}
