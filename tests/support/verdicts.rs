//! Verdicts read back from an alert topic, and how they answer a simulator's manifest of
//! injected faults.

use apache_avro::types::Value;
use cdc_verifier_core::KeyRanges;
use cdc_verifier_core::digest::{key_hash, table_seed};
use rdkafka::message::Message;
use serde_json::Value as Json;

/// One verdict as read back from the alert topic.
#[derive(Debug, Clone)]
pub struct Alert {
    pub kind: String,
    pub replica: String,
    pub table: Option<String>,
    pub range: Option<u64>,
    pub window: Option<(i64, u64, u64)>,
    pub expected_version: Option<i64>,
    pub actual_version: Option<i64>,
    pub fields: Vec<(String, String)>,
    pub poison: Option<(String, i32, i64)>,
    pub key: Vec<u8>,
    /// For Recovered: the kind of episode that ended.
    pub recovered: Option<String>,
    /// Wall-clock time of publication.
    pub emitted_at_ms: i64,
}

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    match v {
        Value::Record(f) => {
            &f.iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("no field {name}"))
                .1
        }
        other => panic!("not a record: {other:?}"),
    }
}

fn unwrap_union(v: &Value) -> Option<&Value> {
    match v {
        Value::Union(_, b) if **b == Value::Null => None,
        Value::Union(_, b) => Some(b),
        Value::Null => None,
        other => Some(other),
    }
}

fn as_str(v: &Value) -> String {
    match v {
        Value::String(s) | Value::Enum(_, s) => s.clone(),
        other => panic!("not a string: {other:?}"),
    }
}

fn as_long(v: &Value) -> i64 {
    match v {
        Value::Long(l) => *l,
        Value::Int(i) => *i as i64,
        other => panic!("not a long: {other:?}"),
    }
}

pub fn decode_alert(key: &[u8], value: &[u8]) -> Alert {
    let schema =
        apache_avro::Schema::parse_str(include_str!("../../schemas/divergence.avsc")).unwrap();
    let (_, datum) = super::confluent_unframe(value);
    let v = apache_avro::from_avro_datum(&schema, &mut &datum[..], None)
        .expect("alerts decode with the published schema");
    let schema_info = unwrap_union(field(&v, "schema"));
    Alert {
        kind: as_str(field(&v, "kind")),
        replica: as_str(field(&v, "replica")),
        table: unwrap_union(field(&v, "table")).map(as_str),
        range: unwrap_union(field(&v, "range")).map(|r| as_long(r) as u64),
        window: unwrap_union(field(&v, "window")).map(|w| {
            (
                as_long(field(w, "id")),
                as_long(field(w, "first_position")) as u64,
                as_long(field(w, "last_position")) as u64,
            )
        }),
        expected_version: schema_info
            .and_then(|s| unwrap_union(field(s, "expected_version")))
            .map(as_long),
        actual_version: schema_info
            .and_then(|s| unwrap_union(field(s, "actual_version")))
            .map(as_long),
        fields: schema_info
            .map(|s| match field(s, "fields") {
                Value::Array(items) => items
                    .iter()
                    .map(|f| (as_str(field(f, "change")), as_str(field(f, "field"))))
                    .collect(),
                _ => Vec::new(),
            })
            .unwrap_or_default(),
        poison: unwrap_union(field(&v, "poison")).map(|p| {
            (
                as_str(field(p, "topic")),
                as_long(field(p, "partition")) as i32,
                as_long(field(p, "offset")),
            )
        }),
        key: key.to_vec(),
        recovered: unwrap_union(field(&v, "recovered")).map(as_str),
        emitted_at_ms: as_long(field(&v, "emitted_at_ms")),
    }
}

/// Every record of `topic`, to its end as of now.
pub fn read_all(topic: &str) -> Vec<rdkafka::message::OwnedMessage> {
    super::read_to_end(topic)
}

pub fn alerts(topic: &str) -> Vec<Alert> {
    read_all(topic)
        .iter()
        .map(|m| decode_alert(m.key().unwrap(), m.payload().unwrap()))
        .collect()
}

pub fn range_of(table: &str, key: &Json) -> u64 {
    // The canonical key is the Avro encoding of the key record's fields, all longs here.
    let mut bytes = Vec::new();
    for (_, v) in key.as_object().expect("keys are records") {
        cdc_verifier_core::avro::reader::write_long(
            &mut bytes,
            v.as_i64().expect("integer key fields"),
        );
    }
    KeyRanges::default().range(key_hash(table_seed(table), &bytes), None)
}

pub fn faults(m: &Json) -> Vec<&Json> {
    m["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| !f["benign"].as_bool().unwrap())
        .collect()
}

/// How the verdicts of a run answer its manifest.
#[derive(Debug, Default)]
pub struct Score {
    /// The manifest's faults (benign ones aside).
    pub faults: usize,
    /// Of those, reported.
    pub alerted: usize,
    /// Faults no verdict reports.
    pub missed: Vec<Json>,
    /// Verdicts (Recovered aside) no fault explains.
    pub unexplained: Vec<Alert>,
}

/// Every fault of the manifest `m` against the verdicts `a`: which were reported, and which
/// verdicts no fault explains.
pub fn score(m: &Json, a: &[Alert]) -> Score {
    let fs = faults(m);
    let mut score = Score {
        faults: fs.len(),
        ..Score::default()
    };
    for f in &fs {
        let (kind, replica) = (f["kind"].as_str().unwrap(), f["replica"].as_str().unwrap());
        let table = f["table"].as_str();
        let covered = match kind {
            "schema_drift" if f["detail"].as_str().unwrap_or("").contains("value lost") => {
                a.iter().any(|x| {
                    x.kind == "DataMismatch"
                        && x.replica == replica
                        && x.table.as_deref() == table
                        && x.range == Some(range_of(table.unwrap(), &f["key"]))
                })
            }
            "schema_drift" => a.iter().any(|x| {
                x.kind == "SchemaDrift" && x.replica == replica && x.table.as_deref() == table
            }),
            "dropped" | "corrupted" | "extra" | "reordered" => a.iter().any(|x| {
                x.kind == "DataMismatch"
                    && x.replica == replica
                    && x.table.as_deref() == table
                    && x.range == Some(range_of(table.unwrap(), &f["key"]))
            }),
            "lag" => a
                .iter()
                .any(|x| x.kind == "ReplicaLag" && x.replica == replica),
            "silent" => a.iter().any(|x| {
                x.kind == "StreamSilent"
                    && x.replica == replica
                    && (table.is_none() || x.table.as_deref() == table)
            }),
            "poison" => a.iter().any(|x| {
                x.kind == "PoisonEvent"
                    && x.poison.as_ref().is_some_and(|(t, p, o)| {
                        Some(t.as_str()) == f["topic"].as_str()
                            && Some(*p as i64) == f["partition"].as_i64()
                            && Some(*o) == f["offset"].as_i64()
                    })
            }),
            other => panic!("unknown fault kind {other}"),
        };
        if covered {
            score.alerted += 1;
        } else {
            score.missed.push((*f).clone());
        }
    }
    // No divergence without a fault behind it.
    for x in a.iter().filter(|x| x.kind != "Recovered") {
        let explained = fs.iter().any(|f| {
            let same = f["replica"].as_str() == Some(x.replica.as_str());
            let table = f["table"].as_str();
            match (x.kind.as_str(), f["kind"].as_str().unwrap()) {
                (
                    "DataMismatch",
                    "dropped" | "corrupted" | "extra" | "reordered" | "schema_drift",
                ) => {
                    same && x.table.as_deref() == table
                        && f["key"].is_object()
                        && x.range == Some(range_of(table.unwrap(), &f["key"]))
                }
                // A replica table that stops is first seen as missing rows, then as silent.
                ("DataMismatch", "silent") => {
                    same && x.table.as_deref() == table
                        && x.window.is_some_and(|(_, _, hi)| {
                            f["position"].as_u64().is_none_or(|p| hi >= p)
                        })
                }
                ("SchemaDrift", "schema_drift")
                | ("ReplicaLag", "lag" | "silent")
                | ("StreamSilent", "silent" | "lag") => same,
                ("PoisonEvent", "poison") => x
                    .poison
                    .as_ref()
                    .is_some_and(|(_, _, o)| Some(*o) == f["offset"].as_i64()),
                _ => false,
            }
        });
        if !explained {
            score.unexplained.push(x.clone());
        }
    }
    score
}

/// One record of the alert topic: an episode's open, update or close.
#[derive(Debug, Clone)]
pub struct EpisodeRecord {
    pub phase: String,
    pub episode: String,
    pub kind: String,
    pub replica: String,
    pub table: Option<String>,
    pub verdicts: i64,
    pub windows: i64,
    /// Data mismatches it explains, by table.
    pub consequences: Vec<(String, i64)>,
    /// The keys it names (as JSON), each with whether the primary and the replica have a row.
    pub named_keys: Vec<(String, bool, bool)>,
    pub keys_truncated: bool,
    /// Each named key's repair statement (MySQL dialect), in the order of `named_keys`.
    pub repairs: Vec<Option<String>>,
    pub summary: String,
    pub emitted_at_ms: i64,
}

pub fn decode_episode(value: &[u8]) -> EpisodeRecord {
    let schema =
        apache_avro::Schema::parse_str(include_str!("../../schemas/episode.avsc")).unwrap();
    let (_, datum) = super::confluent_unframe(value);
    let v = apache_avro::from_avro_datum(&schema, &mut &datum[..], None)
        .expect("episodes decode with the published schema");
    EpisodeRecord {
        phase: as_str(field(&v, "phase")),
        episode: as_str(field(&v, "episode")),
        kind: as_str(field(&v, "kind")),
        replica: as_str(field(&v, "replica")),
        table: unwrap_union(field(&v, "table")).map(as_str),
        verdicts: as_long(field(&v, "verdicts")),
        windows: as_long(field(&v, "windows")),
        consequences: match field(&v, "consequences") {
            Value::Map(m) => m.iter().map(|(t, n)| (t.clone(), as_long(n))).collect(),
            other => panic!("not a map: {other:?}"),
        },
        named_keys: match field(&v, "named_keys") {
            Value::Array(items) => items
                .iter()
                .map(|k| {
                    (
                        as_str(field(k, "key")),
                        unwrap_union(field(k, "primary_row")).is_some(),
                        unwrap_union(field(k, "replica_row")).is_some(),
                    )
                })
                .collect(),
            other => panic!("not an array: {other:?}"),
        },
        keys_truncated: matches!(field(&v, "keys_truncated"), Value::Boolean(true)),
        repairs: match field(&v, "named_keys") {
            Value::Array(items) => items
                .iter()
                .map(|k| unwrap_union(field(k, "repair_mysql")).map(as_str))
                .collect(),
            other => panic!("not an array: {other:?}"),
        },
        summary: as_str(field(&v, "summary")),
        emitted_at_ms: as_long(field(&v, "emitted_at_ms")),
    }
}

/// Every record of the alert topic `topic`, in the order of each partition.
pub fn episode_records(topic: &str) -> Vec<EpisodeRecord> {
    read_all(topic)
        .iter()
        .map(|m| decode_episode(m.payload().unwrap()))
        .collect()
}

/// Every record of the alert topic `topic` with its Kafka key, in the order of each
/// partition.
pub fn keyed_episode_records(topic: &str) -> Vec<(Vec<u8>, EpisodeRecord)> {
    read_all(topic)
        .iter()
        .map(|m| {
            (
                m.key().unwrap_or_default().to_vec(),
                decode_episode(m.payload().unwrap()),
            )
        })
        .collect()
}

/// Each episode's latest record, by episode.
pub fn latest_episodes(
    records: &[EpisodeRecord],
) -> std::collections::BTreeMap<String, EpisodeRecord> {
    let mut latest = std::collections::BTreeMap::new();
    for r in records {
        latest.insert(r.episode.clone(), r.clone());
    }
    latest
}

/// Every fault of the manifest `m` against the episodes `latest`: the faults no episode
/// reports (a table's data faults under its schema drift count as that episode's).
pub fn faults_without_episode(m: &Json, latest: &[&EpisodeRecord]) -> Vec<Json> {
    let mut missed = Vec::new();
    for f in faults(m) {
        let (kind, replica) = (f["kind"].as_str().unwrap(), f["replica"].as_str().unwrap());
        let table = f["table"].as_str();
        let on = |k: &str, e: &EpisodeRecord| {
            e.kind == k && e.replica == replica && (table.is_none() || e.table.as_deref() == table)
        };
        let found = match kind {
            "schema_drift" => latest.iter().any(|e| on("SchemaDrift", e)),
            "dropped" | "corrupted" | "extra" | "reordered" => latest.iter().any(|e| {
                on("DataMismatch", e)
                    || (on("SchemaDrift", e) || on("StreamSilent", e))
                        && e.consequences
                            .iter()
                            .any(|(t, _)| Some(t.as_str()) == table)
            }),
            "lag" => latest
                .iter()
                .any(|e| e.kind == "ReplicaLag" && e.replica == replica),
            "silent" => latest.iter().any(|e| on("StreamSilent", e)),
            "poison" => latest.iter().any(|e| e.kind == "PoisonEvent"),
            other => panic!("unknown fault kind {other}"),
        };
        if !found {
            missed.push(f.clone());
        }
    }
    missed
}
