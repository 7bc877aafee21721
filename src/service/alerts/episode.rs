//! Episodes as Avro records in the Confluent wire format (`schemas/episode.avsc`, keyed by
//! `schemas/episode-key.avsc`): what the alert topic holds.

use apache_avro::Schema;
use apache_avro::types::Value;
use cdc_verifier_core::episodes::{EpisodeEvent, Phase};
use cdc_verifier_core::verdict::KeyDiff;
use cdc_verifier_core::wire;

use super::{opt, rec, s};

pub const VALUE_SCHEMA: &str = include_str!("../../../schemas/episode.avsc");
pub const KEY_SCHEMA: &str = include_str!("../../../schemas/episode-key.avsc");

/// The episode schemas with the ids the registry gave them.
pub struct EpisodeCodec {
    value: Schema,
    key: Schema,
    value_id: u32,
    key_id: u32,
    instance: String,
}

impl EpisodeCodec {
    pub fn new(value_id: u32, key_id: u32, instance: String) -> EpisodeCodec {
        EpisodeCodec {
            value: Schema::parse_str(VALUE_SCHEMA).expect("episode.avsc is valid"),
            key: Schema::parse_str(KEY_SCHEMA).expect("episode-key.avsc is valid"),
            value_id,
            key_id,
            instance,
        }
    }

    /// (key, value) in the wire format: the key is (instance, episode), the same for every
    /// record of one episode.
    pub fn encode(
        &self,
        e: &EpisodeEvent,
        emitted_at_ms: i64,
    ) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let key = apache_avro::to_avro_datum(
            &self.key,
            rec(vec![
                ("instance", s(&self.instance)),
                ("episode", s(&e.key)),
            ]),
        )?;
        let value = apache_avro::to_avro_datum(&self.value, self.value_of(e, emitted_at_ms))?;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        wire::frame(self.key_id, &key, &mut k);
        wire::frame(self.value_id, &value, &mut v);
        Ok((k, v))
    }

    fn value_of(&self, e: &EpisodeEvent, emitted_at_ms: i64) -> Value {
        let ep = &e.episode;
        let long = |v: u64| Value::Long(v as i64);
        let phase = match e.phase {
            Phase::Open => 0,
            Phase::Update => 1,
            Phase::Close => 2,
        };
        rec(vec![
            ("phase", Value::Enum(phase, format!("{:?}", e.phase))),
            ("episode", s(&e.key)),
            // `Kind::ALL` is the symbols' order (checked by a test).
            ("kind", Value::Enum(ep.kind as u32, ep.kind.to_string())),
            ("replica", s(&ep.replica)),
            ("table", opt(ep.table.as_deref(), s)),
            ("summary", s(&ep.summary())),
            ("opened_at_ms", Value::Long(ep.opened_at_ms)),
            ("last_at_ms", Value::Long(ep.last_at_ms)),
            ("closed_at_ms", opt(ep.closed_at_ms, Value::Long)),
            ("first_position", opt(ep.first_position, |p| long(p.tx))),
            ("last_position", opt(ep.last_position, |p| long(p.tx))),
            ("verdicts", long(ep.verdicts)),
            ("windows", long(ep.windows)),
            ("ranges", long(ep.ranges)),
            ("unrecovered_ranges", long(ep.unrecovered_ranges)),
            (
                "consequences",
                Value::Map(
                    ep.consequences
                        .iter()
                        .map(|(t, n)| (t.clone(), long(*n)))
                        .collect(),
                ),
            ),
            ("keys", long(ep.keys)),
            (
                "sample_keys",
                Value::Array(ep.sample_keys.iter().map(|k| s(k)).collect()),
            ),
            (
                "named_keys",
                Value::Array(ep.named_keys.iter().map(|k| key_diff(k, true)).collect()),
            ),
            ("keys_truncated", Value::Boolean(ep.keys_truncated)),
            ("latest", s(&ep.latest)),
            ("emitted_at_ms", Value::Long(emitted_at_ms)),
            ("instance", s(&self.instance)),
        ])
    }
}

/// A differing key as the alert records carry it: the key and both rows as JSON text (and,
/// in episodes, its repair statements).
pub(super) fn key_diff(k: &KeyDiff, with_repair: bool) -> Value {
    let mut fields = vec![
        ("key", s(&k.key.to_string())),
        (
            "primary_position",
            opt(k.primary.as_ref(), |i| Value::Long(i.position.tx as i64)),
        ),
        (
            "primary_row",
            opt(k.primary.as_ref(), |i| s(&i.row.to_string())),
        ),
        (
            "replica_position",
            opt(k.replica.as_ref(), |i| Value::Long(i.position.tx as i64)),
        ),
        (
            "replica_row",
            opt(k.replica.as_ref(), |i| s(&i.row.to_string())),
        ),
    ];
    if with_repair {
        fields.push(("repair_mysql", opt(k.repair.as_deref(), |r| s(&r.mysql))));
        fields.push((
            "repair_postgresql",
            opt(k.repair.as_deref(), |r| s(&r.postgresql)),
        ));
    }
    rec(fields)
}

#[cfg(test)]
mod tests {
    use cdc_verifier_core::episodes::EpisodeState;
    use cdc_verifier_core::verdict::{Kind, RowImage};

    use super::*;

    fn event() -> EpisodeEvent {
        let image = |n: i64| RowImage {
            position: cdc_verifier_core::Position { tx: 42, order: 0 },
            op: cdc_verifier_core::Op::Update,
            row: serde_json::json!({"id": 7, "total": n}),
            schema_id: 3,
        };
        EpisodeEvent {
            phase: Phase::Update,
            key: "replica-1/orders/DataMismatch/w12".into(),
            episode: EpisodeState {
                replica: "replica-1".into(),
                table: Some("orders".into()),
                kind: Kind::DataMismatch,
                opened_at_ms: 1_000,
                last_at_ms: 2_000,
                closed_at_ms: None,
                first_position: Some(cdc_verifier_core::Position { tx: 40, order: 0 }),
                last_position: Some(cdc_verifier_core::Position { tx: 44, order: 0 }),
                verdicts: 3,
                ranges: 2,
                unrecovered_ranges: 1,
                windows: 3,
                keys: 1,
                sample_keys: vec![r#"{"id":7}"#.into()],
                named_keys: vec![KeyDiff {
                    key: serde_json::json!({"id": 7}),
                    primary: Some(image(5)),
                    replica: Some(image(6)),
                    repair: Some(Box::new(cdc_verifier_core::repair::Statements {
                        mysql: "REPLACE INTO `orders` (`id`) VALUES (7);".into(),
                        postgresql: String::new(),
                    })),
                }],
                keys_truncated: true,
                consequences: [("orders".to_string(), 4)].into(),
                latest: "the latest".into(),
            },
        }
    }

    #[test]
    fn an_episode_reads_back_as_written() {
        let codec = EpisodeCodec::new(9, 8, "here".into());
        let (k, v) = codec.encode(&event(), 5_000).unwrap();
        let (kid, kbody) = wire::split(&k).unwrap();
        let (vid, vbody) = wire::split(&v).unwrap();
        assert_eq!((kid, vid), (8, 9));
        let key = apache_avro::from_avro_datum(&codec.key, &mut &kbody[..], None).unwrap();
        let key: serde_json::Value = apache_avro::from_value(&key).unwrap();
        assert_eq!(
            key,
            serde_json::json!({"instance": "here", "episode": "replica-1/orders/DataMismatch/w12"})
        );
        let value = apache_avro::from_avro_datum(&codec.value, &mut &vbody[..], None).unwrap();
        let Value::Record(fields) = value else {
            panic!("a record")
        };
        let get = |n: &str| fields.iter().find(|(f, _)| f == n).unwrap().1.clone();
        assert_eq!(get("phase"), Value::Enum(1, "Update".into()));
        assert_eq!(get("kind"), Value::Enum(0, "DataMismatch".into()));
        assert_eq!(get("unrecovered_ranges"), Value::Long(1));
        assert_eq!(get("keys_truncated"), Value::Boolean(true));
        assert_eq!(get("emitted_at_ms"), Value::Long(5_000));
        let Value::Array(keys) = get("named_keys") else {
            panic!("an array")
        };
        assert_eq!(keys.len(), 1);
        assert!(
            matches!(get("summary"), Value::String(s) if s.contains("DataMismatch on replica-1 orders"))
        );
    }

    #[test]
    fn the_kind_and_phase_symbols_are_in_order() {
        let schema: serde_json::Value = serde_json::from_str(VALUE_SCHEMA).unwrap();
        let symbols = |name: &str| -> Vec<String> {
            schema["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == name)
                .unwrap()["type"]["symbols"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        let kinds: Vec<String> = Kind::ALL.iter().map(|k| k.to_string()).collect();
        assert_eq!(symbols("kind"), kinds);
        assert_eq!(symbols("phase"), ["Open", "Update", "Close"]);
    }
}
