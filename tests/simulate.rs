//! `cdc-verifier simulate` against the real local broker and registry (`scripts/services up`):
//! what lands on Kafka is exactly what the capture and manifest describe.
//!
//! Fails (never skips) when the services are absent.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use cdc_verifier_kafka::registry::RegistryClient;
use cdc_verifier_sim::{CaptureReader, FaultKind, Manifest, UNKNOWN_SCHEMA_ID};
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::Timestamp;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use support::*;

/// A record as the capture describes it.
#[derive(Debug, PartialEq)]
struct Rec {
    timestamp_ms: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(name)
}

#[test]
fn a_faults_run_lands_on_kafka_as_its_capture_and_manifest_say() {
    require_services();
    let prefix = format!("{}-", unique_name("sim"));
    let capture_path = temp_path(&format!("{prefix}capture.cdccap"));
    let manifest_path = temp_path(&format!("{prefix}manifest.json"));

    let out = Command::new(env!("CARGO_BIN_EXE_cdc-verifier"))
        .args([
            "simulate",
            "--scenario",
            "faults",
            "--events",
            "20000",
            "--seed",
            "7",
        ])
        .args([
            "--topic-prefix",
            &prefix,
            "--bootstrap-servers",
            &bootstrap(),
            "--registry-url",
            &registry_url(),
        ])
        .arg("--capture")
        .arg(&capture_path)
        .arg("--manifest")
        .arg(&manifest_path)
        .output()
        .expect("running cdc-verifier simulate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "simulate failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("capture: ") && stdout.contains("manifest: "),
        "{stdout}"
    );

    // The capture: every record by (topic, partition, offset).
    let mut reader = CaptureReader::open(&capture_path).expect("opening the capture");
    let header = reader.header().clone();
    let mut expected: BTreeMap<(String, i32, i64), Rec> = BTreeMap::new();
    while let Some(r) = reader.next_record().expect("reading the capture") {
        let topic = header.topics[r.topic as usize].name.clone();
        let rec = Rec {
            timestamp_ms: r.timestamp_ms,
            key: r.key.map(<[u8]>::to_vec),
            value: r.value.map(<[u8]>::to_vec),
        };
        assert!(
            expected
                .insert((topic, r.partition as i32, r.offset), rec)
                .is_none(),
            "offsets are unique"
        );
    }
    assert_eq!(header.topics.len(), 21);
    assert!(
        header
            .topics
            .iter()
            .all(|t| t.name.starts_with(&prefix) && t.partitions == 8)
    );
    let manifest = Manifest::read(&manifest_path).expect("reading the manifest");
    assert_eq!(manifest.records as usize, expected.len());

    // Counts per partition: the broker holds exactly the capture's records, from offset 0.
    let mut per_partition: HashMap<(String, i32), i64> = HashMap::new();
    for (t, p, _) in expected.keys() {
        *per_partition.entry((t.clone(), *p)).or_default() += 1;
    }
    for t in &header.topics {
        for p in 0..t.partitions as i32 {
            let (low, high) = watermarks(&t.name, p);
            let want = per_partition
                .get(&(t.name.clone(), p))
                .copied()
                .unwrap_or(0);
            assert_eq!((low, high), (0, want), "{}/{p}", t.name);
        }
    }

    // Every record, byte for byte, with its timestamp.
    let consumer = consumer(&unique_name("sim-check"), "read_uncommitted");
    let mut tpl = TopicPartitionList::new();
    for t in &header.topics {
        for p in 0..t.partitions as i32 {
            tpl.add_partition_offset(&t.name, p, Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&tpl).expect("assigning partitions");
    let mut seen = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen < expected.len() {
        assert!(
            Instant::now() < deadline,
            "consumed {seen} of {} records",
            expected.len()
        );
        let Some(m) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = m.expect("consuming");
        let k = (m.topic().to_owned(), m.partition(), m.offset());
        let want = expected
            .get(&k)
            .unwrap_or_else(|| panic!("{k:?} is not in the capture"));
        let ts = match m.timestamp() {
            Timestamp::CreateTime(t) => t,
            other => panic!("{k:?}: timestamp {other:?}, want CreateTime"),
        };
        let got = Rec {
            timestamp_ms: ts,
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
        };
        assert_eq!(&got, want, "{k:?}");
        seen += 1;
    }

    // Schemas: every id resolves in the registry under the subject and version the capture says.
    let registry = RegistryClient::new(&registry_url()).unwrap();
    for s in &header.schemas {
        let text = registry
            .schema_by_id(s.id)
            .unwrap_or_else(|e| panic!("schema {}: {e}", s.id));
        let (a, b): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(&text).unwrap(),
            serde_json::from_str(&s.schema).unwrap(),
        );
        assert_eq!(a["name"], b["name"]);
        assert_eq!(a["namespace"], b["namespace"]);
        let versions = registry.versions_by_id(s.id).unwrap();
        assert!(
            versions
                .iter()
                .any(|v| v.subject == s.subject && v.version == s.version),
            "{} v{} not in {versions:?}",
            s.subject,
            s.version
        );
    }
    // Every record's ids are registered under the subjects its topic implies.
    let subject_of: HashMap<u32, Vec<&str>> =
        header.schemas.iter().fold(HashMap::new(), |mut m, s| {
            m.entry(s.id).or_default().push(s.subject.as_str());
            m
        });
    let poison: HashMap<(String, i32, i64), &str> = manifest
        .faults_of(FaultKind::Poison)
        .map(|f| {
            (
                (
                    f.topic.clone().unwrap(),
                    f.partition.unwrap() as i32,
                    f.offset.unwrap(),
                ),
                f.detail.as_deref().unwrap(),
            )
        })
        .collect();
    assert_eq!(poison.len(), 3);
    for ((topic, p, o), rec) in &expected {
        let key = rec.key.as_ref().unwrap();
        let key_id = u32::from_be_bytes(key[1..5].try_into().unwrap());
        assert!(subject_of[&key_id].contains(&format!("{topic}-key").as_str()));
        let Some(value) = &rec.value else { continue };
        if let Some(detail) = poison.get(&(topic.clone(), *p, *o)) {
            let value_id = u32::from_be_bytes(value[1..5].try_into().unwrap());
            if detail.starts_with("bad magic") {
                assert_eq!(value[0], 1);
            } else if detail.starts_with("unknown schema id") {
                assert!(value_id > UNKNOWN_SCHEMA_ID);
                assert!(registry.schema_by_id(value_id).unwrap_err().is_not_found());
            } else {
                assert!(detail.starts_with("truncated"));
            }
            continue;
        }
        assert_eq!(value[0], 0);
        let value_id = u32::from_be_bytes(value[1..5].try_into().unwrap());
        assert!(
            subject_of[&value_id].contains(&format!("{topic}-value").as_str()),
            "{topic}: value schema {value_id}"
        );
    }
    // The faults the manifest locates are where it says.
    for f in &manifest.faults {
        if let (Some(t), Some(p), Some(o)) = (&f.topic, f.partition, f.offset) {
            assert!(t.starts_with(&prefix));
            assert!(expected.contains_key(&(t.clone(), p as i32, o)), "{f:?}");
        }
    }

    let _ = std::fs::remove_file(&capture_path);
    let _ = std::fs::remove_file(&manifest_path);
    let names: Vec<&str> = header.topics.iter().map(|t| t.name.as_str()).collect();
    delete_topics(&names);
}

#[test]
fn simulate_refuses_topics_with_another_partition_count() {
    require_services();
    let prefix = format!("{}-", unique_name("sim-mismatch"));
    create_topic(&format!("{prefix}primary.shop.orders"), 3);
    let out = Command::new(env!("CARGO_BIN_EXE_cdc-verifier"))
        .args(["simulate", "--events", "1000", "--topic-prefix", &prefix])
        .args([
            "--bootstrap-servers",
            &bootstrap(),
            "--registry-url",
            &registry_url(),
        ])
        .output()
        .expect("running cdc-verifier simulate");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("exists with 3 partitions, not 8"),
        "{stderr}"
    );
}
