//! `cdc-verifier replay` and `cdc-verifier demo`: exact keys against the ground-truth
//! manifest, exit statuses, Kafka by time against the capture of the same span, and the
//! demo's answer.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_cdc-verifier");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn simulate_offline(dir: &Path, scenario: &str, events: u64) -> (String, Json) {
    simulate_offline_with(dir, scenario, events, &[])
}

fn simulate_offline_with(
    dir: &Path,
    scenario: &str,
    events: u64,
    extra: &[&str],
) -> (String, Json) {
    let capture = dir.join(format!("{scenario}.cdccap"));
    let manifest = dir.join(format!("{scenario}.json"));
    let events = events.to_string();
    let mut args = vec![
        "simulate",
        "--offline",
        "--scenario",
        scenario,
        "--events",
        &events,
        "--capture",
        capture.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        capture.to_str().unwrap().to_string(),
        serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap(),
    )
}

fn replay_capture(dir: &Path, capture: &str, extra: &[&str]) -> (Output, Json) {
    let report = dir.join("report.json");
    let html = dir.join("report.html");
    let mut args = vec![
        "replay",
        "--quiet",
        "--capture",
        capture,
        "--report",
        report.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(html.exists(), "the HTML report is written");
    (
        out,
        serde_json::from_slice(&std::fs::read(report).unwrap()).unwrap(),
    )
}

/// (replica, table) → keys named in the report's tables of differing keys.
fn named_keys(report: &Json) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut m: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for rep in report["replicas"].as_array().unwrap() {
        for t in rep["tables"].as_array().unwrap() {
            for k in t["differing_keys"].as_array().unwrap() {
                m.entry((
                    rep["name"].as_str().unwrap().to_string(),
                    t["table"].as_str().unwrap().to_string(),
                ))
                .or_default()
                .insert(k["key"].to_string());
            }
        }
    }
    m
}

fn verdicts<'a>(report: &'a Json, kind: &str) -> Vec<&'a Json> {
    report["divergences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == kind)
        .collect()
}

#[test]
fn replaying_the_faults_capture_names_exactly_the_keys_of_the_faults() {
    let dir = tempfile::tempdir().unwrap();
    let (capture, manifest) = simulate_offline(dir.path(), "faults", 300_000);
    let (out, report) = replay_capture(dir.path(), &capture, &[]);
    assert_faults_reported(&out, &manifest, &report);
}

/// A MySQL primary fails over halfway through the faults: the new server's GTIDs restart at
/// `<new uuid>:1`, below every position the old one reached. The failover raises nothing, and
/// every fault before and after it is found.
#[test]
fn a_failover_amid_the_faults_hides_none_of_them_and_is_not_a_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let events = 300_000;
    let (capture, manifest) = simulate_offline_with(
        dir.path(),
        "faults",
        events,
        &[
            "--gtid-style",
            "mysql",
            "--failover-at",
            &(events * 11 / 20).to_string(),
        ],
    );
    let failovers: Vec<&Json> = manifest["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["kind"] == "failover")
        .collect();
    assert_eq!(failovers.len(), 1);
    assert_eq!(failovers[0]["benign"], true);
    let failover_at = failovers[0]["position"].as_u64().unwrap();
    let after = manifest["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            !f["benign"].as_bool().unwrap()
                && f["kind"] != "schema_drift"
                && f["position"].as_u64().is_some_and(|p| p > failover_at)
        })
        .count();
    assert!(after >= 4, "{after} faults after the failover");
    let (out, report) = replay_capture(dir.path(), &capture, &[]);
    assert_faults_reported(&out, &manifest, &report);
    for d in verdicts(&report, "PoisonEvent") {
        assert!(
            !d["poison"]["error"]
                .as_str()
                .unwrap_or("")
                .contains("position"),
            "{d}"
        );
    }
}

/// The report of a faults capture: the exact keys of the faults that change rows, a verdict
/// for every other fault, nothing else.
fn assert_faults_reported(out: &Output, manifest: &Json, report: &Json) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "divergences found: exit 1\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let faults: Vec<&Json> = manifest["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["benign"].as_bool().unwrap())
        .collect();
    // Faults that change rows name their keys: dropped, corrupted, extra, reordered, and the
    // orders whose currency an outdated schema lost.
    let mut expected: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for f in &faults {
        let kind = f["kind"].as_str().unwrap();
        let row_fault = matches!(kind, "dropped" | "corrupted" | "extra" | "reordered")
            || (kind == "schema_drift"
                && f["detail"].as_str().unwrap_or("").contains("value lost"));
        if row_fault {
            expected
                .entry((
                    f["replica"].as_str().unwrap().into(),
                    f["table"].as_str().unwrap().into(),
                ))
                .or_default()
                .insert(f["key"].to_string());
        }
    }
    assert!(expected.values().map(BTreeSet::len).sum::<usize>() > 10);
    assert_eq!(
        named_keys(report),
        expected,
        "the exact keys of the faults, and no other"
    );

    // The other faults by their verdicts.
    for f in &faults {
        let replica = f["replica"].as_str().unwrap();
        let found = |kind: &str| {
            verdicts(report, kind).iter().any(|d| {
                d["replica"] == replica && (f["table"].is_null() || d["table"] == f["table"])
            })
        };
        match f["kind"].as_str().unwrap() {
            "schema_drift" => assert!(found("SchemaDrift"), "{f}"),
            "lag" => assert!(found("ReplicaLag"), "{f}"),
            "silent" => assert!(found("StreamSilent"), "{f}"),
            "poison" => assert!(
                verdicts(report, "PoisonEvent")
                    .iter()
                    .any(|d| d["poison"]["topic"] == f["topic"]
                        && d["poison"]["offset"] == f["offset"]),
                "{f}"
            ),
            _ => {}
        }
    }
    let drift = verdicts(report, "SchemaDrift");
    assert_eq!(drift.len(), 1);
    assert_eq!(drift[0]["schema"]["fields"][0]["field"], "currency");
    // The first divergent window of the drifted table holds the first drifted event.
    let first_drift = faults
        .iter()
        .filter(|f| f["kind"] == "schema_drift")
        .map(|f| f["position"].as_u64().unwrap())
        .min()
        .unwrap();
    let rep2 = report["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "replica-2")
        .unwrap();
    let orders = rep2["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "orders")
        .unwrap();
    assert_eq!(
        orders["first_divergence"]["position"].as_u64(),
        Some(first_drift)
    );
}

#[test]
fn replaying_a_clean_capture_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let (capture, manifest) = simulate_offline(dir.path(), "clean", 100_000);
    assert!(manifest["faults"].as_array().unwrap().is_empty());
    let (out, report) = replay_capture(dir.path(), &capture, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report["verdict"], "consistent");
    assert!(report["divergences"].as_array().unwrap().is_empty());
    assert!(String::from_utf8_lossy(&out.stdout).contains("CONSISTENT"));
}

#[test]
fn a_missing_capture_is_a_clear_error_with_exit_two() {
    let out = run(&["replay", "--quiet", "--capture", "/nonexistent/x.cdccap"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.cdccap"));
}

fn divergence_keys(report: &Json) -> BTreeSet<String> {
    report["divergences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "DataMismatch" || d["kind"] == "SchemaDrift")
        .map(|d| {
            format!(
                "{}/{}/{}/{}/{}",
                d["kind"], d["replica"], d["table"], d["range"], d["window"]["id"]
            )
        })
        .collect()
}

#[test]
fn a_replay_from_kafka_by_time_reports_what_the_capture_of_that_span_reports() {
    support::require_services();
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("{}-", support::unique_name("replay-kafka"));
    let capture = dir.path().join("incident.cdccap");
    let out = run(&[
        "simulate",
        "--scenario",
        "incident",
        "--events",
        "60000",
        "--partitions",
        "4",
        "--topic-prefix",
        &prefix,
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
    // A span around the migration, not the whole run.
    let (from, to) = ("2024-08-14T15:44:59.500Z", "2024-08-14T15:45:01.500Z");
    let kafka_report = dir.path().join("kafka.json");
    let out = run(&[
        "replay",
        "--quiet",
        "--from",
        from,
        "--to",
        to,
        "--topic-prefix",
        &prefix,
        "--bootstrap-servers",
        &support::bootstrap(),
        "--registry-url",
        &support::registry_url(),
        "--report",
        kafka_report.to_str().unwrap(),
        "--html",
        dir.path().join("kafka.html").to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kafka: Json = serde_json::from_slice(&std::fs::read(&kafka_report).unwrap()).unwrap();
    let (out, file) = replay_capture(
        dir.path(),
        capture.to_str().unwrap(),
        &["--from", from, "--to", to, "--topic-prefix", &prefix],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys = divergence_keys(&kafka);
    assert!(keys.iter().any(|k| k.contains("SchemaDrift")), "{keys:?}");
    assert_eq!(keys, divergence_keys(&file));
    assert_eq!(named_keys(&kafka), named_keys(&file));
    assert!(!named_keys(&file).is_empty());
    // Only the span was verified: fewer events than the whole run.
    let events = |r: &Json| {
        r["streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["events"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert!(events(&kafka) < 150_000, "{}", events(&kafka));
}

#[test]
fn the_demo_answers_which_replica_table_since_when_and_which_version() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&[
        "demo",
        "--events",
        "150000",
        "--out-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "replica-1: consistent",
        "replica-2 diverged on table orders",
        "since position",
        "2024-08-14T15:45:00",
        "schema version 1; the primary writes version 2 (missing: currency)",
        "rows differ from the primary",
        "report: ",
    ] {
        assert!(
            text.contains(needle),
            "the demo's answer lacks `{needle}`:\n{text}"
        );
    }
    assert!(dir.path().join("cdc-verifier-demo.html").exists());
    let report: Json =
        serde_json::from_slice(&std::fs::read(dir.path().join("cdc-verifier-demo.json")).unwrap())
            .unwrap();
    assert_eq!(report["verdict"], "divergent");
}
