//! The verifier on the real Debezium capture (tests/fixtures/debezium): the JsonConverter run
//! alone, and a primary in Avro with its replica in JSON.

use std::path::PathBuf;

use cdc_verifier_core::{Drill, MemorySource, Progress, RegisteredSchema, SubjectVersion};

use super::*;

struct Rec {
    topic: String,
    partition: u32,
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/debezium")
}

fn hex(s: &serde_json::Value) -> Option<Vec<u8>> {
    let s = s.as_str()?;
    Some(
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect(),
    )
}

fn records(file: &str) -> Vec<Rec> {
    let text = std::fs::read_to_string(fixture().join(file)).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Rec {
                topic: v["topic"].as_str().unwrap().to_string(),
                partition: v["partition"].as_u64().unwrap() as u32,
                offset: v["offset"].as_i64().unwrap(),
                timestamp: v["timestamp"].as_i64().unwrap(),
                key: hex(&v["key"]),
                value: hex(&v["value"]),
            }
        })
        .collect()
}

/// The Avro run's registry.
fn avro_schemas() -> MemorySource {
    let mut src = MemorySource::new();
    for entry in std::fs::read_dir(fixture().join("schemas")).unwrap() {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        let subjects = v["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| SubjectVersion {
                subject: s["subject"].as_str().unwrap().into(),
                version: s["version"].as_u64().unwrap() as u32,
            })
            .collect();
        src.insert(RegisteredSchema {
            id: v["id"].as_u64().unwrap() as u32,
            schema: v["schema"]["schema"].as_str().unwrap().into(),
            subjects,
        });
    }
    src
}

/// The capture's layout: stream `primary` (prefix `primary.shop.`) and one replica `replica`.
fn config(format: Format) -> Config {
    let mut c = Config::defaults();
    c.primary.topic_prefix = "primary.shop.".into();
    c.replicas.truncate(1);
    c.replicas[0].name = "replica".into();
    c.replicas[0].topic_prefix = "replica.shop.".into();
    c.verify.format = format;
    c
}

struct Run {
    v: Verifier,
    poison: Vec<String>,
}

/// Feeds `recs` in time order, as a capture is replayed.
fn run(cfg: &Config, mut recs: Vec<Rec>, src: &mut dyn SchemaSource) -> Run {
    recs.sort_by_key(|r| (r.timestamp, r.topic.clone(), r.partition, r.offset));
    let mut topics: Vec<(String, u32)> = Vec::new();
    for r in &recs {
        if !topics.iter().any(|(t, _)| *t == r.topic) {
            topics.push((
                r.topic.clone(),
                if r.topic.starts_with("primary.") {
                    3
                } else {
                    2
                },
            ));
        }
    }
    let engine_cfg = EngineConfig {
        drill: Drill::All,
        ..cfg.engine()
    };
    let mut v = Verifier::new(cfg, engine_cfg, &topics);
    v.engine.set_all_progress(Progress::Following);
    let mut poison = Vec::new();
    for r in &recs {
        let ti = topics.iter().position(|(t, _)| *t == r.topic).unwrap();
        let got = v
            .feed(
                &SourceRecord {
                    topic: ti,
                    partition: r.partition,
                    offset: r.offset,
                    timestamp_ms: r.timestamp,
                    key: r.key.as_deref(),
                    value: r.value.as_deref(),
                },
                src,
            )
            .unwrap();
        if let Some(Ingested::Poison(d)) = got {
            poison.push(d.poison().unwrap().error.clone());
        }
        v.advance(r.timestamp, src).unwrap();
    }
    v.finish(src).unwrap();
    Run { v, poison }
}

fn kinds(v: &Verifier) -> Vec<String> {
    v.verdicts
        .iter()
        .map(|d| {
            format!(
                "{} {} {:?} {:?} {:?}",
                d.kind(),
                d.replica,
                d.table(),
                d.range().map(|r| r.index),
                d.poison()
            )
        })
        .collect()
}

fn counts(v: &Verifier) -> (u64, u64, u64) {
    let (mut snapshot, mut events, mut duplicates) = (0, 0, 0);
    for (_, _, _, s) in v.engine.topic_stats() {
        snapshot += s.snapshot;
        events += s.events;
        duplicates += s.duplicates;
    }
    (snapshot, events, duplicates)
}

/// No registry at all: every schema comes with its record.
struct NoRegistry;

impl SchemaSource for NoRegistry {
    fn fetch(&mut self, id: u32) -> Result<RegisteredSchema, cdc_verifier_core::FetchError> {
        Err(cdc_verifier_core::FetchError::NotFound(id))
    }
}

#[test]
fn the_json_capture_of_identical_streams_is_consistent() {
    let r = run(
        &config(Format::Auto),
        records("json/records.jsonl"),
        &mut NoRegistry,
    );
    assert!(r.poison.is_empty(), "{:#?}", r.poison);
    assert!(r.v.verdicts.is_empty(), "{:#?}", kinds(&r.v));
    assert_eq!(
        counts(&r.v),
        (2 * 19, 2 * 21, 8),
        "snapshot reads, changes, redelivered copies"
    );
    let json = r.v.json_schemas();
    assert_eq!(json.schemas().count(), 12);
    let orders: Vec<_> = json
        .schemas()
        .filter(|s| {
            s.subjects
                .iter()
                .any(|s| s.subject == "primary.shop.orders-value")
        })
        .collect();
    assert_eq!(orders.len(), 1);
    assert_eq!(
        orders[0].subjects,
        vec![SubjectVersion {
            subject: "primary.shop.orders-value".into(),
            version: 1
        }]
    );
    // Forced to JSON: the same.
    let r = run(
        &config(Format::Json),
        records("json/records.jsonl"),
        &mut NoRegistry,
    );
    assert!(
        r.poison.is_empty() && r.v.verdicts.is_empty(),
        "{:#?}",
        kinds(&r.v)
    );
}

/// A primary read through AvroConverter and its replica through JsonConverter (the two runs
/// of the capture: the same statements, the same GTIDs).
#[test]
fn a_primary_in_avro_and_its_replica_in_json_agree() {
    let avro = records("records.jsonl");
    let json = records("json/records.jsonl");
    // The JSON run came later: its replica's record times, moved by the difference of the
    // two primaries' first records, fall where the Avro run's did.
    let first = |recs: &[Rec]| {
        recs.iter()
            .filter(|r| r.topic.starts_with("primary."))
            .map(|r| r.timestamp)
            .min()
            .unwrap()
    };
    let shift = first(&avro) - first(&json);
    let mut recs: Vec<Rec> = avro
        .into_iter()
        .filter(|r| r.topic.starts_with("primary."))
        .collect();
    recs.extend(
        json.into_iter()
            .filter(|r| r.topic.starts_with("replica."))
            .map(|r| Rec {
                timestamp: r.timestamp + shift,
                ..r
            }),
    );
    let mut src = avro_schemas();
    let r = run(&config(Format::Auto), recs, &mut src);
    assert!(r.poison.is_empty(), "{:#?}", r.poison);
    assert!(r.v.verdicts.is_empty(), "{:#?}", kinds(&r.v));
    assert_eq!(counts(&r.v), (2 * 19, 2 * 21, 8));
}

/// The value with `after.total` (a decimal of scale 2) written as the number 12.345.
fn bad_total(value: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(value.to_vec()).unwrap();
    let after = text.find(r#""after":"#).unwrap();
    let at = after + text[after..].find(r#""total":""#).unwrap() + r#""total":"#.len();
    let end = at + 1 + text[at + 1..].find('"').unwrap() + 1;
    format!("{}12.345{}", &text[..at], &text[end..]).into_bytes()
}

#[test]
fn records_in_the_wrong_format_or_unreadable_are_poison() {
    let json = records("json/records.jsonl");
    let avro = records("records.jsonl");
    let one = |r: &Rec| Rec {
        topic: r.topic.clone(),
        key: r.key.clone(),
        value: r.value.clone(),
        ..*r
    };
    let first_value = |recs: &[Rec]| {
        recs.iter()
            .find(|r| r.value.is_some() && r.topic == "primary.shop.orders")
            .map(one)
            .unwrap()
    };
    let one_json = first_value(&json);
    let one_avro = first_value(&avro);
    let cases: Vec<(Format, Rec, &str)> = vec![
        (
            Format::Avro,
            one(&one_json),
            "value: a JSON document, but verify.format is \"avro\"",
        ),
        (
            Format::Json,
            one(&one_avro),
            "value: in the Avro wire format (magic byte 0x00), but verify.format is \"json\"",
        ),
        (
            Format::Auto,
            Rec {
                value: Some(b"{\"schema\":".to_vec()),
                ..one(&one_json)
            },
            "value: not valid JSON",
        ),
        (
            Format::Auto,
            Rec {
                value: Some(br#"{"before":null,"after":{"id":1},"op":"c"}"#.to_vec()),
                ..one(&one_json)
            },
            "value: a JSON document without `schema` and `payload` (a JsonConverter with schemas.enable=false?)",
        ),
        (
            Format::Auto,
            Rec {
                value: Some(bad_total(one_json.value.as_deref().unwrap())),
                ..one(&one_json)
            },
            "value: payload does not match its schema: at `after.total`: `12.345` has more than 2 decimal places",
        ),
        (
            Format::Auto,
            Rec {
                key: Some(b"{}".to_vec()),
                ..one(&one_json)
            },
            "key: a JSON document without `schema` and `payload`",
        ),
    ];
    for (format, rec, want) in cases {
        let r = run(&config(format), vec![rec], &mut NoRegistry);
        assert_eq!(r.poison.len(), 1, "{want}: {:#?}", kinds(&r.v));
        assert!(
            r.poison[0].starts_with(want),
            "{:?} does not start with {want:?}",
            r.poison[0]
        );
        let d = &r.v.verdicts[0];
        assert_eq!(
            (d.kind(), d.replica.as_str(), d.table()),
            (Kind::PoisonEvent, "primary", Some("orders"))
        );
        assert_eq!(d.poison().unwrap().topic, "primary.shop.orders");
    }
}
