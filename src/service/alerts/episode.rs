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
    /// The instance publishing (in the value).
    instance: String,
    /// The verifier all its instances make up, `kafka.group-id` (in the key).
    verifier: String,
}

/// An episode's record on the alert topic, as read back to continue it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadBack {
    pub verifier: String,
    pub episode: String,
    pub phase: Phase,
    pub table: Option<String>,
    /// Its kind's symbol (`ReplicaLag`, ...).
    pub kind: String,
    /// The instance that published it.
    pub instance: String,
    /// What [`cdc_verifier_core::episodes::Episodes::resume`] takes in (open episodes only).
    pub resume: Option<String>,
}

impl EpisodeCodec {
    pub fn new(value_id: u32, key_id: u32, instance: String, verifier: String) -> EpisodeCodec {
        EpisodeCodec {
            value: Schema::parse_str(VALUE_SCHEMA).expect("episode.avsc is valid"),
            key: Schema::parse_str(KEY_SCHEMA).expect("episode-key.avsc is valid"),
            value_id,
            key_id,
            instance,
            verifier,
        }
    }

    /// (key, value) in the wire format: the key is (verifier, episode), the same for every
    /// record of one episode whichever instance publishes it; `resume` is the open episode's
    /// state for the instance that continues it.
    pub fn encode(
        &self,
        e: &EpisodeEvent,
        emitted_at_ms: i64,
        resume: Option<&str>,
    ) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
        let key = apache_avro::to_avro_datum(
            &self.key,
            rec(vec![
                ("verifier", s(&self.verifier)),
                ("episode", s(&e.key)),
            ]),
        )?;
        let mut value = self.value_of(e, emitted_at_ms);
        if let Value::Record(fields) = &mut value {
            fields.push(("resume".into(), opt(resume, s)));
        }
        let value = apache_avro::to_avro_datum(&self.value, value)?;
        let (mut k, mut v) = (Vec::new(), Vec::new());
        wire::frame(self.key_id, &key, &mut k);
        wire::frame(self.value_id, &value, &mut v);
        Ok((k, v))
    }

    /// A record of the alert topic read back: `None` when it was not written with these
    /// schemas (another version's, or not an episode).
    pub fn read_back(&self, key: &[u8], value: &[u8]) -> Option<ReadBack> {
        let (kid, kbody) = wire::split(key).ok()?;
        let (vid, vbody) = wire::split(value).ok()?;
        if (kid, vid) != (self.key_id, self.value_id) {
            return None;
        }
        let key = apache_avro::from_avro_datum(&self.key, &mut &kbody[..], None).ok()?;
        let value = apache_avro::from_avro_datum(&self.value, &mut &vbody[..], None).ok()?;
        let (Value::Record(key), Value::Record(value)) = (key, value) else {
            return None;
        };
        let text = |fields: &[(String, Value)], name: &str| {
            fields.iter().find(|(f, _)| f == name).and_then(|(_, v)| {
                let v = match v {
                    Value::Union(_, inner) => inner.as_ref(),
                    v => v,
                };
                match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Enum(_, s) => Some(s.clone()),
                    _ => None,
                }
            })
        };
        let phase = match text(&value, "phase")?.as_str() {
            "Open" => Phase::Open,
            "Update" => Phase::Update,
            "Close" => Phase::Close,
            _ => return None,
        };
        Some(ReadBack {
            verifier: text(&key, "verifier")?,
            episode: text(&key, "episode")?,
            phase,
            table: text(&value, "table"),
            kind: text(&value, "kind")?,
            instance: text(&value, "instance")?,
            resume: text(&value, "resume"),
        })
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
        let codec = EpisodeCodec::new(9, 8, "here".into(), "verifiers".into());
        let (k, v) = codec.encode(&event(), 5_000, Some("{}")).unwrap();
        let (kid, kbody) = wire::split(&k).unwrap();
        let (vid, vbody) = wire::split(&v).unwrap();
        assert_eq!((kid, vid), (8, 9));
        let key = apache_avro::from_avro_datum(&codec.key, &mut &kbody[..], None).unwrap();
        let key: serde_json::Value = apache_avro::from_value(&key).unwrap();
        assert_eq!(
            key,
            serde_json::json!({"verifier": "verifiers", "episode": "replica-1/orders/DataMismatch/w12"})
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
    fn an_episode_has_one_key_whichever_instance_publishes_it_and_reads_back() {
        let here = EpisodeCodec::new(9, 8, "here".into(), "verifiers".into());
        let there = EpisodeCodec::new(9, 8, "there".into(), "verifiers".into());
        let other = EpisodeCodec::new(9, 8, "here".into(), "another-verifier".into());
        let (k1, v1) = here.encode(&event(), 5_000, Some("saved")).unwrap();
        let (k2, _) = there.encode(&event(), 6_000, None).unwrap();
        let (k3, _) = other.encode(&event(), 5_000, None).unwrap();
        assert_eq!(k1, k2, "the instance is not in the key");
        assert_ne!(k1, k3, "the verifier is");
        assert_eq!(
            there.read_back(&k1, &v1),
            Some(ReadBack {
                verifier: "verifiers".into(),
                episode: "replica-1/orders/DataMismatch/w12".into(),
                phase: Phase::Update,
                table: Some("orders".into()),
                kind: "DataMismatch".into(),
                instance: "here".into(),
                resume: Some("saved".into()),
            })
        );
        // Records under other schema ids (another version's) are not read as ours.
        let newer = EpisodeCodec::new(10, 8, "here".into(), "verifiers".into());
        assert_eq!(newer.read_back(&k1, &v1), None);
        assert_eq!(here.read_back(b"junk", &v1), None);
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
