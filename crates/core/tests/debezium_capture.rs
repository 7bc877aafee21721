//! The engine on a real Debezium capture (tests/fixtures/debezium: a MariaDB primary and its
//! GTID replica, captured by Debezium's MariaDB connector with its default settings, Avro in
//! the Confluent wire format): a snapshot without positions, transactions without a
//! transaction block across tables and partitions, one key in different partitions on the
//! two sides, deletes with tombstones, and a connector killed and restarted (redelivery).

use std::path::PathBuf;

use cdc_verifier_core::verdict::Kind;
use cdc_verifier_core::{
    Drill, Engine, EngineConfig, Ingested, MemorySource, Progress, Record, RegisteredSchema,
    SubjectVersion,
};

struct Rec {
    topic: String,
    partition: u32,
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn fixture() -> PathBuf {
    fixture_named("debezium")
}

fn fixture_named(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(name)
}

fn hex(s: &serde_json::Value) -> Option<Vec<u8>> {
    let s = s.as_str()?;
    Some(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect(),
    )
}

fn records() -> Vec<Rec> {
    records_of(&fixture())
}

fn records_of(dir: &std::path::Path) -> Vec<Rec> {
    let text = std::fs::read_to_string(dir.join("records.jsonl")).expect("fixture records");
    let mut out: Vec<Rec> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("json line");
            Rec {
                topic: v["topic"].as_str().expect("topic").to_string(),
                partition: v["partition"].as_u64().expect("partition") as u32,
                offset: v["offset"].as_i64().expect("offset"),
                timestamp: v["timestamp"].as_i64().expect("timestamp"),
                key: hex(&v["key"]),
                value: hex(&v["value"]),
            }
        })
        .collect();
    // As a consumer of every partition would see them: by the time they were produced.
    out.sort_by_key(|r| (r.timestamp, r.topic.clone(), r.partition, r.offset));
    out
}

fn schemas() -> MemorySource {
    schemas_of(&fixture())
}

fn schemas_of(dir: &std::path::Path) -> MemorySource {
    let mut src = MemorySource::new();
    for entry in std::fs::read_dir(dir.join("schemas")).expect("fixture schemas") {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(entry.expect("entry").path()).expect("read"),
        )
        .expect("json");
        let subjects = v["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .map(|s| SubjectVersion {
                subject: s["subject"].as_str().expect("subject").to_string(),
                version: s["version"].as_u64().expect("version") as u32,
            })
            .collect();
        src.insert(RegisteredSchema {
            id: v["id"].as_u64().expect("id") as u32,
            schema: v["schema"]["schema"].as_str().expect("schema").to_string(),
            subjects,
        });
    }
    src
}

struct Run {
    engine: Engine,
    verdicts: Vec<cdc_verifier_core::Divergence>,
    duplicates: usize,
    poison: Vec<String>,
}

/// Verifies `recs` as a bounded input, every partition read in production order.
fn verify(recs: &[Rec]) -> Run {
    verify_with(recs, schemas())
}

fn verify_with(recs: &[Rec], mut src: MemorySource) -> Run {
    let cfg = EngineConfig {
        drill: Drill::All,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(cfg, "primary", &["replica"]);
    let mut topics: Vec<(String, u32)> = Vec::new();
    for r in recs {
        match topics.iter_mut().find(|(t, _)| *t == r.topic) {
            Some((_, n)) => *n = (*n).max(r.partition + 1),
            None => topics.push((r.topic.clone(), r.partition + 1)),
        }
    }
    // The real topics' partition counts: 3 on the primary, 2 on the replica.
    let ids: Vec<(String, u32)> = topics
        .iter()
        .map(|(t, _)| {
            let (stream, table) = t.split_once(".shop.").expect("topic name");
            let partitions = if stream == "primary" { 3 } else { 2 };
            (
                t.clone(),
                engine.add_topic(
                    t,
                    if stream == "primary" { 0 } else { 1 },
                    table,
                    partitions,
                ),
            )
        })
        .collect();
    engine.set_all_progress(Progress::Following);
    let mut run = Run {
        engine,
        verdicts: Vec::new(),
        duplicates: 0,
        poison: Vec::new(),
    };
    for r in recs {
        let topic = ids.iter().find(|(t, _)| *t == r.topic).expect("added").1;
        let rec = Record {
            topic,
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
        };
        match run
            .engine
            .ingest(&rec, &mut src)
            .expect("schemas in memory")
        {
            Ingested::Duplicate => run.duplicates += 1,
            Ingested::Poison(d) => run.poison.push(format!(
                "{}/{}@{}: {}",
                r.topic,
                r.partition,
                r.offset,
                d.poison().map(|p| p.error.clone()).unwrap_or_default()
            )),
            _ => {}
        }
        run.engine
            .advance(r.timestamp, &mut src, &mut run.verdicts)
            .expect("advance");
    }
    run.engine
        .finish(&mut src, &mut run.verdicts)
        .expect("finish");
    run
}

fn kinds(run: &Run) -> Vec<String> {
    run.verdicts
        .iter()
        .map(|d| format!("{} {} {:?} {:?}", d.kind(), d.replica, d.table(), d.range()))
        .collect()
}

/// Identical streams: no verdict at all, the snapshot taken as state, the redelivered copies
/// after the connector's restart told apart from the other events of their transactions.
#[test]
fn a_real_capture_of_identical_streams_is_consistent() {
    let recs = records();
    let run = verify(&recs);
    assert!(run.poison.is_empty(), "poison: {:#?}", run.poison);
    assert!(run.verdicts.is_empty(), "verdicts: {:#?}", kinds(&run));
    let (mut snapshot, mut events, mut duplicates) = (0, 0, 0);
    for (stream, _, _, s) in run.engine.topic_stats() {
        assert!(stream == "primary" || stream == "replica");
        snapshot += s.snapshot;
        events += s.events;
        duplicates += s.duplicates;
    }
    // 4 records a side were delivered twice (README of the fixture); a replica's copy may be
    // held (parked) until the primary passes it, and is found a duplicate then.
    assert_eq!(duplicates, 8);
    assert!(run.duplicates <= 8);
    assert_eq!(snapshot, 2 * 19, "snapshot reads of both sides");
    assert_eq!(events, 2 * 21, "changes of both sides, each once");
    assert!(
        run.engine.stats().changes_only.is_empty(),
        "{:?}",
        run.engine.stats().changes_only
    );
}

/// The first record of `topic` whose value contains `needle` (bytes of a row).
fn position_of(recs: &[Rec], topic: &str, op: &str, needle: &[u8]) -> usize {
    recs.iter()
        .position(|r| {
            r.topic == topic
                && r.value.as_deref().is_some_and(|v| {
                    v.windows(needle.len()).any(|w| w == needle)
                        && v.windows(op.len() + 1)
                            .any(|w| w[0] == 2 && &w[1..] == op.as_bytes())
                })
        })
        .unwrap_or_else(|| {
            panic!(
                "no {op} record of {topic} holding {:?}",
                String::from_utf8_lossy(needle)
            )
        })
}

/// A replica that already differed before capture began (a snapshot row it lacks) is caught
/// by comparing states, and the key is named.
#[test]
fn a_row_missing_from_the_replicas_snapshot_is_named() {
    let mut recs = records();
    // Customer 4 (Dmitri), read by the replica's snapshot and never changed afterwards.
    let at = position_of(&recs, "replica.shop.customers", "r", b"dmitri@example.ru");
    recs.remove(at);
    let run = verify(&recs);
    assert!(run.poison.is_empty(), "poison: {:#?}", run.poison);
    let mismatches: Vec<_> = run
        .verdicts
        .iter()
        .filter(|d| d.kind() == Kind::DataMismatch)
        .collect();
    assert_eq!(mismatches.len(), 1, "verdicts: {:#?}", kinds(&run));
    assert_eq!(run.verdicts.len(), 1, "verdicts: {:#?}", kinds(&run));
    let d = mismatches[0];
    assert_eq!(
        (d.replica.as_str(), d.table()),
        ("replica", Some("customers"))
    );
    let keys: Vec<String> = d
        .mismatch()
        .unwrap()
        .keys
        .iter()
        .map(|k| k.key.to_string())
        .collect();
    assert_eq!(keys, vec![r#"{"id":4}"#.to_string()]);
    assert!(
        d.mismatch().unwrap().keys[0]
            .replica
            .as_ref()
            .is_none_or(|i| i.row.is_null()),
        "{:?}",
        d.mismatch().unwrap().keys[0]
    );
}

/// A change the replica's stream lacks (one update of a multi-statement transaction) is a
/// mismatch of that key alone.
#[test]
fn a_change_missing_from_the_replicas_stream_is_named() {
    let mut recs = records();
    // T2's update of order 1006 (status paid, total 49.99), on the replica.
    let at = position_of(&recs, "replica.shop.orders", "u", b"paid");
    recs.remove(at);
    let run = verify(&recs);
    assert!(run.poison.is_empty(), "poison: {:#?}", run.poison);
    let mismatches: Vec<_> = run
        .verdicts
        .iter()
        .filter(|d| d.kind() == Kind::DataMismatch)
        .collect();
    assert!(!mismatches.is_empty(), "verdicts: {:#?}", kinds(&run));
    for d in &mismatches {
        assert_eq!(
            (d.replica.as_str(), d.table()),
            ("replica", Some("orders")),
            "{:#?}",
            kinds(&run)
        );
    }
    let mut keys: Vec<String> = mismatches
        .iter()
        .flat_map(|d| d.mismatch().unwrap().keys.iter().map(|k| k.key.to_string()))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(
        keys,
        vec![r#"{"id":1006}"#.to_string()],
        "{:#?}",
        run.verdicts
    );
}

/// A connector killed mid-transaction writes the rest of it after its restart, stamped
/// later, into a window already compared: the mismatch waits for confirmation, the late
/// record makes it whole, and nothing is published.
#[test]
fn a_transaction_finished_after_a_connector_restart_raises_nothing() {
    let mut recs = records();
    // T2's update of order 1006 on the primary, written 18 s later (after T6 began).
    let at = position_of(&recs, "primary.shop.orders", "u", b"paid");
    let mut rec = recs.remove(at);
    let later = recs
        .iter()
        .map(|r| r.timestamp)
        .filter(|t| *t > rec.timestamp + 18_000)
        .min()
        .expect("later records");
    rec.timestamp = later + 50;
    rec.offset = 1_000;
    let at = recs
        .iter()
        .position(|r| r.timestamp > rec.timestamp)
        .unwrap_or(recs.len());
    recs.insert(at, rec);
    let run = verify(&recs);
    assert!(run.poison.is_empty(), "poison: {:#?}", run.poison);
    assert!(
        run.verdicts.is_empty(),
        "verdicts: {:#?} late {} withdrawn {}",
        run.verdicts,
        run.engine.late_records(),
        run.engine.stats().withdrawn
    );
    assert_eq!(
        run.engine.stats().withdrawn,
        1,
        "the mismatch was found, then withdrawn"
    );
    assert_eq!(run.engine.late_records(), 1);
}
