//! Divergence events as Avro records in the Confluent wire format (`schemas/divergence.avsc`,
//! keyed by `schemas/divergence-key.avsc`), and dead-letter records with their coordinates.

use apache_avro::Schema;
use apache_avro::types::Value;
use cdc_verifier_core::verdict::{Divergence, DivergenceRecord, Identity, Side};
use cdc_verifier_core::wire;

pub mod episode;

pub use episode::EpisodeCodec;

pub const VALUE_SCHEMA: &str = include_str!("../../schemas/divergence.avsc");
pub const KEY_SCHEMA: &str = include_str!("../../schemas/divergence-key.avsc");

/// The alert schemas with the ids the registry gave them.
pub struct AlertCodec {
    value: Schema,
    key: Schema,
    value_id: u32,
    key_id: u32,
    instance: String,
}

fn none() -> Value {
    Value::Union(0, Box::new(Value::Null))
}

fn some(v: Value) -> Value {
    Value::Union(1, Box::new(v))
}

fn opt<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map_or_else(none, |x| some(f(x)))
}

fn rec(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn s(x: &str) -> Value {
    Value::String(x.to_string())
}

impl AlertCodec {
    pub fn new(value_id: u32, key_id: u32, instance: String) -> AlertCodec {
        AlertCodec {
            value: Schema::parse_str(VALUE_SCHEMA).expect("divergence.avsc is valid"),
            key: Schema::parse_str(KEY_SCHEMA).expect("divergence-key.avsc is valid"),
            value_id,
            key_id,
            instance,
        }
    }

    /// (key, value) in the wire format: the key is the verdict's identity, the value its
    /// flat record.
    pub fn encode(&self, d: &Divergence, emitted_at_ms: i64) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let key = apache_avro::to_avro_datum(&self.key, key_value(&d.identity()))?;
        let value = apache_avro::to_avro_datum(
            &self.value,
            self.value_of(&DivergenceRecord::from(d), emitted_at_ms),
        )?;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        wire::frame(self.key_id, &key, &mut k);
        wire::frame(self.value_id, &value, &mut v);
        Ok((k, v))
    }

    fn value_of(&self, d: &DivergenceRecord, emitted_at_ms: i64) -> Value {
        let side = |x: &Side| {
            rec(vec![
                ("digest", s(&x.digest)),
                ("creates", Value::Long(x.ops.create as i64)),
                ("updates", Value::Long(x.ops.update as i64)),
                ("deletes", Value::Long(x.ops.delete as i64)),
                ("reads", Value::Long(x.ops.read as i64)),
                ("truncates", Value::Long(x.ops.truncate as i64)),
            ])
        };
        rec(vec![
            // `Kind::ALL` is the symbols' order (checked by a test).
            ("kind", Value::Enum(d.kind as u32, d.kind.to_string())),
            ("replica", s(&d.replica)),
            ("table", opt(d.table.as_deref(), s)),
            ("range", opt(d.range, |r| Value::Long(r as i64))),
            ("range_label", opt(d.range_label.as_deref(), s)),
            (
                "window",
                opt(d.window, |w| {
                    rec(vec![
                        ("id", Value::Long(w.id)),
                        ("first_position", Value::Long(w.first.tx as i64)),
                        ("last_position", Value::Long(w.last.tx as i64)),
                        ("start_ms", Value::Long(w.start_ms)),
                        ("end_ms", Value::Long(w.end_ms)),
                    ])
                }),
            ),
            ("primary", opt(d.primary.as_ref(), side)),
            ("replica_side", opt(d.replica_side.as_ref(), side)),
            (
                "schema",
                opt(d.schema.as_ref(), |sc| {
                    let fields = sc
                        .fields
                        .iter()
                        .map(|f| {
                            use cdc_verifier_core::avro::FieldDiff::*;
                            let (change, field, e, a) = match f {
                                Missing { field, expected } => {
                                    ("missing", field, Some(expected), None)
                                }
                                Added { field, actual } => ("added", field, None, Some(actual)),
                                Changed {
                                    field,
                                    expected,
                                    actual,
                                } => ("changed", field, Some(expected), Some(actual)),
                            };
                            rec(vec![
                                ("change", s(change)),
                                ("field", s(field)),
                                ("expected", opt(e.map(String::as_str), s)),
                                ("actual", opt(a.map(String::as_str), s)),
                            ])
                        })
                        .collect();
                    rec(vec![
                        ("subject", s(&sc.subject)),
                        ("expected_id", Value::Long(sc.expected_id as i64)),
                        (
                            "expected_version",
                            opt(sc.expected_version, |v| Value::Long(v as i64)),
                        ),
                        ("actual_id", Value::Long(sc.actual_id as i64)),
                        (
                            "actual_version",
                            opt(sc.actual_version, |v| Value::Long(v as i64)),
                        ),
                        ("fields", Value::Array(fields)),
                        ("first_position", Value::Long(sc.first_position.tx as i64)),
                        ("first_ts_ms", Value::Long(sc.first_ts_ms)),
                        ("events", Value::Long(sc.events as i64)),
                    ])
                }),
            ),
            (
                "offsets",
                Value::Array(
                    d.offsets
                        .iter()
                        .map(|o| {
                            rec(vec![
                                ("stream", s(&o.stream)),
                                ("topic", s(&o.topic)),
                                ("partition", Value::Int(o.partition as i32)),
                                ("first", Value::Long(o.first)),
                                ("last", Value::Long(o.last)),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                "lag",
                opt(d.lag.as_ref(), |l| {
                    rec(vec![
                        (
                            "primary_position",
                            Value::Long(l.primary_position.tx as i64),
                        ),
                        (
                            "replica_position",
                            Value::Long(l.replica_position.tx as i64),
                        ),
                        ("positions_behind", Value::Long(l.positions_behind as i64)),
                        ("ms_behind", Value::Long(l.ms_behind)),
                    ])
                }),
            ),
            (
                "poison",
                opt(d.poison.as_ref(), |p| {
                    rec(vec![
                        ("topic", s(&p.topic)),
                        ("partition", Value::Int(p.partition as i32)),
                        ("offset", Value::Long(p.offset)),
                        ("error", s(&p.error)),
                    ])
                }),
            ),
            ("recovered", opt(d.recovered, |k| s(k.as_str()))),
            (
                "keys",
                Value::Array(d.keys.iter().map(|k| episode::key_diff(k, false)).collect()),
            ),
            ("detected_at_ms", Value::Long(d.detected_at_ms)),
            ("emitted_at_ms", Value::Long(emitted_at_ms)),
            ("instance", s(&self.instance)),
            ("detail", opt(d.detail.as_deref(), s)),
        ])
    }
}

fn key_value(id: &Identity<'_>) -> Value {
    let record = id.record;
    rec(vec![
        ("kind", Value::String(id.label())),
        ("replica", s(id.replica)),
        ("table", opt(id.table, s)),
        ("range", opt(id.range, |r| Value::Long(r as i64))),
        ("window", opt(id.window, Value::Long)),
        ("topic", opt(record.map(|p| p.topic.as_str()), s)),
        (
            "partition",
            opt(record.map(|p| p.partition as i32), Value::Int),
        ),
        ("offset", opt(record.map(|p| p.offset), Value::Long)),
    ])
}

/// Headers of a dead-lettered record: where it came from and why it was refused.
pub fn dead_letter_headers(
    topic: &str,
    partition: u32,
    offset: i64,
    error: &str,
) -> [(&'static str, String); 4] {
    [
        ("cdc-verifier.topic", topic.to_string()),
        ("cdc-verifier.partition", partition.to_string()),
        ("cdc-verifier.offset", offset.to_string()),
        ("cdc-verifier.error", error.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_verifier_core::verdict::{Finding, Kind};
    use std::collections::BTreeSet;

    /// One verdict of every kind (and of every episode a `Recovered` ends), as in the report.
    const VERDICTS: &str = include_str!("testdata/verdicts.json");
    /// Per verdict of `VERDICTS`: its key string, and its alert key and value (hex, ids 12
    /// and 11, emitted at 99 by instance `test`): the published wire format, which consumers
    /// rely on.
    const GOLDEN: &str = include_str!("testdata/verdicts.golden");

    fn verdicts() -> Vec<Divergence> {
        serde_json::from_str(VERDICTS).unwrap()
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn the_avro_kind_symbols_are_the_kinds_in_order() {
        let schema: serde_json::Value = serde_json::from_str(VALUE_SCHEMA).unwrap();
        let kind = schema["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "kind")
            .unwrap();
        let symbols: Vec<&str> = kind["type"]["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(symbols, kinds);
        // The enum index written is the kind's discriminant.
        for (i, k) in Kind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }

    #[test]
    fn the_samples_cover_every_kind_and_episode() {
        let v = verdicts();
        let kinds: BTreeSet<Kind> = v.iter().map(Divergence::kind).collect();
        assert_eq!(kinds, Kind::ALL.iter().copied().collect());
        let ended: BTreeSet<Kind> = v.iter().filter_map(Divergence::ended).collect();
        assert_eq!(
            ended,
            BTreeSet::from([
                Kind::DataMismatch,
                Kind::SchemaDrift,
                Kind::ReplicaLag,
                Kind::StreamSilent
            ])
        );
    }

    /// Every kind keeps its report JSON, its key and its alert bytes.
    #[test]
    fn every_kind_keeps_its_json_key_and_bytes() {
        let codec = AlertCodec::new(11, 12, "test".into());
        let json: Vec<serde_json::Value> = serde_json::from_str(VERDICTS).unwrap();
        let golden: Vec<&str> = GOLDEN.lines().collect();
        assert_eq!(golden.len(), 3 * json.len());
        for (v, want) in json.iter().zip(golden.chunks(3)) {
            let d: Divergence = serde_json::from_value(v.clone()).unwrap();
            assert_eq!(&serde_json::to_value(&d).unwrap(), v);
            assert_eq!(d.key(), want[0]);
            let (k, val) = codec.encode(&d, 99).unwrap();
            assert_eq!(hex(&k), want[1], "key of {}", want[0]);
            assert_eq!(hex(&val), want[2], "value of {}", want[0]);
        }
    }

    #[test]
    fn encodes_to_the_published_schema_and_reads_back() {
        let codec = AlertCodec::new(11, 12, "test".into());
        let d = verdicts()
            .into_iter()
            .find(|d| d.kind() == Kind::SchemaDrift)
            .unwrap();
        let (k, v) = codec.encode(&d, 99).unwrap();
        let (vid, datum) = wire::split(&v).unwrap();
        assert_eq!(vid, 11);
        let back = apache_avro::from_avro_datum(&codec.value, &mut &datum[..], None).unwrap();
        let Value::Record(fields) = back else {
            panic!()
        };
        let get = |n: &str| fields.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get("kind"), Value::Enum(1, "SchemaDrift".into()));
        assert_eq!(get("replica"), Value::String("replica-2".into()));
        assert_eq!(get("instance"), Value::String("test".into()));
        let (kid, kd) = wire::split(&k).unwrap();
        assert_eq!(kid, 12);
        // The same verdict encodes to the same key: a redelivered alert is the same record.
        assert_eq!(codec.encode(&d, 100).unwrap().0, k);
        assert!(apache_avro::from_avro_datum(&codec.key, &mut &kd[..], None).is_ok());
    }

    #[test]
    fn every_kind_reads_back_as_its_symbol() {
        let codec = AlertCodec::new(1, 2, "t".into());
        for d in verdicts() {
            let (_, v) = codec.encode(&d, 0).unwrap();
            let (_, datum) = wire::split(&v).unwrap();
            let back = apache_avro::from_avro_datum(&codec.value, &mut &datum[..], None).unwrap();
            let Value::Record(fields) = back else {
                panic!()
            };
            assert_eq!(
                fields[0].1,
                Value::Enum(d.kind() as u32, d.kind().to_string())
            );
        }
    }

    #[test]
    fn poison_is_keyed_by_its_coordinates() {
        let codec = AlertCodec::new(1, 2, "t".into());
        let a = verdicts()
            .into_iter()
            .find(|d| d.kind() == Kind::PoisonEvent)
            .unwrap();
        let mut b = a.clone();
        let Finding::PoisonEvent { poison, .. } = &mut b.finding else {
            panic!()
        };
        poison.offset += 1;
        assert_ne!(
            codec.encode(&a, 0).unwrap().0,
            codec.encode(&b, 0).unwrap().0
        );
    }
}
