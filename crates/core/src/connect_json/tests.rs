use std::collections::HashMap;

use super::base64::{b64_decode, b64_encode, b64_len};
use super::payload::decimal_bytes;
use super::*;
use crate::avro::json::to_json;
use crate::avro::{Plan, Reader, Schema, Scratch};
use crate::digest::{RowHasher, table_seed};
use crate::envelope::{EnvelopeLayout, PositionField};

/// A JsonConverter document of `schema` and `payload` (both JSON text).
fn doc(schema: &str, payload: &str) -> Vec<u8> {
    format!(r#"{{"schema":{schema},"payload":{payload}}}"#).into_bytes()
}

/// Transcodes and renders the datum back as JSON through the engine's reader.
fn roundtrip(schema: &str, payload: &str) -> Result<(String, serde_json::Value), ConnectJsonError> {
    let mut cj = ConnectJson::new();
    let mut out = Vec::new();
    let id = cj.transcode(&doc(schema, payload), "t-value", &mut out)?;
    let (wid, datum) = crate::wire::split(&out).unwrap();
    assert_eq!(wid, id);
    let text = cj.get(id).unwrap().schema.clone();
    let s = Schema::parse_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let mut r = Reader::new(datum);
    let v = to_json(&s, s.root(), &mut r).unwrap();
    r.finish().unwrap();
    Ok((text, v))
}

#[test]
fn every_connect_type_of_the_fixture() {
    let schema = r#"{"type":"struct","fields":[
        {"type":"int8","optional":false,"field":"a"},
        {"type":"int16","optional":true,"field":"b"},
        {"type":"int32","optional":false,"field":"c"},
        {"type":"int64","optional":false,"name":"io.debezium.time.Timestamp","version":1,"field":"d"},
        {"type":"float","optional":false,"field":"bad"}]}"#;
    assert!(
        matches!(avro_schema(schema), Err(ConnectJsonError::Schema(e)) if e.contains("unknown type `float`"))
    );
    let schema = r#"{"type":"struct","fields":[
        {"type":"int8","optional":false,"field":"a"},
        {"type":"int16","optional":true,"field":"b"},
        {"type":"int32","optional":false,"field":"c"},
        {"type":"int64","optional":false,"name":"io.debezium.time.Timestamp","version":1,"field":"d"},
        {"type":"float32","optional":false,"field":"e"},
        {"type":"float64","optional":true,"field":"f"},
        {"type":"boolean","optional":false,"field":"g"},
        {"type":"string","optional":false,"name":"io.debezium.data.Enum","version":1,"parameters":{"allowed":"new,paid"},"default":"new","field":"h"},
        {"type":"bytes","optional":true,"field":"i"},
        {"type":"int32","optional":false,"name":"org.apache.kafka.connect.data.Date","version":1,"field":"j"},
        {"type":"int64","optional":true,"name":"org.apache.kafka.connect.data.Timestamp","version":1,"field":"k"},
        {"type":"int32","optional":false,"name":"org.apache.kafka.connect.data.Time","version":1,"field":"l"},
        {"type":"array","items":{"type":"string","optional":false},"optional":false,"field":"m"},
        {"type":"map","keys":{"type":"string","optional":false},"values":{"type":"int64","optional":true},"optional":false,"field":"n"},
        {"type":"string","optional":false,"name":"io.debezium.time.ZonedTimestamp","version":1,"default":"1970-01-01T00:00:00Z","field":"o"}
    ],"optional":false,"name":"db.t.Value","version":1}"#;
    let (text, v) = roundtrip(
        schema,
        r#"{"a":-5,"b":null,"c":2147483647,"d":9223372036854775807,"e":1.1,"f":-2.5e-3,"g":true,"h":"paid","i":"AP8=",
            "j":19949,"k":1723650300000,"l":3600000,"m":["x","y"],"n":{"p":1,"q":null},"o":"2024-06-03T08:15:30.25Z"}"#,
    )
    .unwrap();
    assert_eq!(
        text,
        concat!(
            r#"{"type":"record","name":"Value","namespace":"db.t","fields":["#,
            r#"{"name":"a","type":{"type":"int","connect.type":"int8"}},"#,
            r#"{"name":"b","type":["null",{"type":"int","connect.type":"int16"}],"default":null},"#,
            r#"{"name":"c","type":"int"},"#,
            r#"{"name":"d","type":{"type":"long","connect.version":1,"connect.name":"io.debezium.time.Timestamp"}},"#,
            r#"{"name":"e","type":"float"},"#,
            r#"{"name":"f","type":["null","double"],"default":null},"#,
            r#"{"name":"g","type":"boolean"},"#,
            r#"{"name":"h","type":{"type":"string","connect.version":1,"connect.parameters":{"allowed":"new,paid"},"connect.default":"new","connect.name":"io.debezium.data.Enum"},"default":"new"},"#,
            r#"{"name":"i","type":["null","bytes"],"default":null},"#,
            r#"{"name":"j","type":{"type":"int","connect.version":1,"connect.name":"org.apache.kafka.connect.data.Date","logicalType":"date"}},"#,
            r#"{"name":"k","type":["null",{"type":"long","connect.version":1,"connect.name":"org.apache.kafka.connect.data.Timestamp","logicalType":"timestamp-millis"}],"default":null},"#,
            r#"{"name":"l","type":{"type":"int","connect.version":1,"connect.name":"org.apache.kafka.connect.data.Time","logicalType":"time-millis"}},"#,
            r#"{"name":"m","type":{"type":"array","items":"string"}},"#,
            r#"{"name":"n","type":{"type":"map","values":["null","long"]}},"#,
            r#"{"name":"o","type":{"type":"string","connect.version":1,"connect.default":"1970-01-01T00:00:00Z","connect.name":"io.debezium.time.ZonedTimestamp"},"default":"1970-01-01T00:00:00Z"}"#,
            r#"],"connect.version":1,"connect.name":"db.t.Value"}"#
        )
    );
    assert_eq!(
        v,
        serde_json::json!({"a":-5,"b":null,"c":2147483647i64,"d":9223372036854775807i64,"e":(1.1f32 as f64),"f":-0.0025,"g":true,"h":"paid",
            "i":"00ff","j":"2024-08-14","k":"2024-08-14T15:45:00.000Z","l":3600000,"m":["x","y"],"n":{"p":1,"q":null},
            "o":"2024-06-03T08:15:30.25Z"})
    );
}

#[test]
fn decimals_positive_negative_zero_and_numeric() {
    let schema = r#"{"type":"struct","fields":[{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,
        "parameters":{"scale":"2","connect.decimal.precision":"12"},"field":"x"}],"optional":false,"name":"D"}"#;
    let text = avro_schema(schema).unwrap();
    assert!(text.contains(r#"["null",{"type":"bytes","scale":2,"precision":12,"connect.version":1,"connect.parameters":{"scale":"2","connect.decimal.precision":"12"},"connect.name":"org.apache.kafka.connect.data.Decimal","logicalType":"decimal"}],"default":null"#), "{text}");
    for (payload, want) in [
        (r#""Mr4=""#, serde_json::json!("129.90")),
        (r#""/w==""#, serde_json::json!("-0.01")),
        (r#""zUI=""#, serde_json::json!("-129.90")),
        (r#""AA==""#, serde_json::json!("0.00")),
        ("null", serde_json::Value::Null),
        // decimal.format=NUMERIC
        ("129.9", serde_json::json!("129.90")),
        ("-0.01", serde_json::json!("-0.01")),
        ("0", serde_json::json!("0.00")),
        ("1.5e2", serde_json::json!("150.00")),
    ] {
        let (_, v) = roundtrip(schema, &format!(r#"{{"x":{payload}}}"#)).unwrap();
        assert_eq!(v["x"], want, "{payload}");
    }
    assert_eq!(decimal_bytes("129.9", 2).unwrap(), [0x32, 0xbe]);
    assert_eq!(decimal_bytes("-128", 0).unwrap(), [0x80]);
    assert_eq!(decimal_bytes("128", 0).unwrap(), [0x00, 0x80]);
    assert_eq!(decimal_bytes("0", 3).unwrap(), [0x00]);
    let err = roundtrip(schema, r#"{"x":1.234}"#).unwrap_err();
    assert!(
        err.to_string().contains("more than 2 decimal places"),
        "{err}"
    );
    let err = roundtrip(schema, r#"{"x":"not base64!"}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "payload does not match its schema: at `x`: not base64"
    );
}

#[test]
fn base64_both_ways() {
    for b in [&b""[..], b"a", b"ab", b"abc", b"abcd", &[0xff, 0x00, 0x80]] {
        let e = b64_encode(b);
        let mut out = Vec::new();
        b64_decode(e.as_bytes(), &mut out).unwrap();
        assert_eq!(out, b);
        assert_eq!(b64_len(e.as_bytes()), Some(b.len()));
        let mut out = Vec::new();
        b64_decode(e.trim_end_matches('=').as_bytes(), &mut out).unwrap();
        assert_eq!(out, b);
    }
    assert_eq!(b64_len(b"abcde"), None);
    assert!(b64_decode(b"ab!d", &mut Vec::new()).is_none());
}

#[test]
fn nulls_defaults_and_optional_structs() {
    let schema = r#"{"type":"struct","fields":[
        {"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":true,"name":"n.Row","field":"before"},
        {"type":"struct","fields":[{"type":"int32","optional":false,"field":"id"}],"optional":true,"name":"n.Row","field":"after"},
        {"type":"string","optional":true,"default":"false","field":"snap"},
        {"type":"string","optional":false,"default":"USD","field":"cur"}
    ],"optional":false,"name":"n.Envelope"}"#;
    let (text, v) = roundtrip(schema, r#"{"before":null,"after":{"id":7},"snap":null}"#).unwrap();
    // The second use of a record is a reference; an optional with a default is [T, null].
    assert!(
        text.contains(r#"{"name":"after","type":["null","Row"],"default":null}"#),
        "{text}"
    );
    assert!(text.contains(r#"{"name":"snap","type":[{"type":"string","connect.default":"false"},"null"],"default":"false"}"#), "{text}");
    // A null of a required value with a default is its default, as JsonConverter reads it.
    assert_eq!(
        v,
        serde_json::json!({"before":null,"after":{"id":7},"snap":null,"cur":"USD"})
    );
    let err = roundtrip(schema, r#"{"before":null,"after":{"id":null}}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "payload does not match its schema: at `after.id`: null for a required value"
    );
    let err = roundtrip(schema, r#"{"after":{"id":"7"}}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "payload does not match its schema: at `after.id`: expected an integer, found a string"
    );
    let err = roundtrip(r#"{"type":"int8","optional":false}"#, "300").unwrap_err();
    assert!(
        err.to_string().contains("300 is out of range [-128, 127]"),
        "{err}"
    );
    // Two different structs of one name cannot both be Avro records.
    let clash = schema.replacen(
        r#""type":"int32","optional":false,"field":"id""#,
        r#""type":"int64","optional":false,"field":"id""#,
        1,
    );
    assert!(
        matches!(avro_schema(&clash), Err(ConnectJsonError::Schema(e)) if e.contains("two different structs"))
    );
}

#[test]
fn envelopes_that_are_not_right() {
    let mut cj = ConnectJson::new();
    let mut out = Vec::new();
    let mut t = |d: &str| {
        cj.transcode(d.as_bytes(), "t-value", &mut out)
            .unwrap_err()
            .to_string()
    };
    assert!(t("{").starts_with("not valid JSON"));
    assert!(t(r#"{"schema":{"type":"int32"},"payload":1} x"#).contains("trailing"));
    assert!(t(r#"{"before":null,"after":{"id":1},"op":"c"}"#).contains("schemas.enable=false"));
    assert_eq!(
        t(r#"{"payload":{}}"#),
        "`schema` is missing from the JsonConverter document"
    );
    assert_eq!(
        t(r#"{"schema":{"type":"int32","optional":false}}"#),
        "`payload` is missing from the JsonConverter document"
    );
    assert_eq!(
        t(r#"{"schema":null,"payload":{"a":1}}"#),
        "`schema` is null: the record was written without a Connect schema"
    );
    assert!(
        t(r#"{"schema":{"type":"int32","optional":false},"payload":"1"}"#)
            .contains("expected an integer, found a string")
    );
}

#[test]
fn ids_and_subjects_are_registered_like_a_registry() {
    let mut cj = ConnectJson::new();
    let mut out = Vec::new();
    let a = r#"{"type":"int64","optional":false}"#;
    let b = r#"{"type":"string","optional":false}"#;
    let id1 = cj.transcode(&doc(a, "1"), "x-key", &mut out).unwrap();
    assert_eq!(out, [0, 0x70, 0, 0, 0, 2]);
    // The same schema written otherwise: the same Avro schema, the same id.
    let id2 = cj
        .transcode(&doc(&a.replace(':', ": "), "2"), "y-key", &mut out)
        .unwrap();
    let id3 = cj.transcode(&doc(b, r#""s""#), "x-key", &mut out).unwrap();
    assert_eq!((id1, id2, id3), (FIRST_ID, FIRST_ID, FIRST_ID + 1));
    let subjects = |id| {
        cj.get(id)
            .unwrap()
            .subjects
            .iter()
            .map(|s| (s.subject.clone(), s.version))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        subjects(id1),
        [("x-key".to_string(), 1), ("y-key".to_string(), 1)]
    );
    assert_eq!(subjects(id3), [("x-key".to_string(), 2)]);
    struct Inner;
    impl SchemaSource for Inner {
        fn fetch(&mut self, id: u32) -> Result<RegisteredSchema, FetchError> {
            Err(FetchError::NotFound(id))
        }
    }
    let mut src = WithConnectJson {
        json: &cj,
        inner: &mut Inner,
    };
    assert_eq!(src.fetch(id3).unwrap().schema, r#""string""#);
    assert_eq!(src.fetch(5), Err(FetchError::NotFound(5)));
    assert!(is_synthetic(id3) && !is_synthetic(5) && !is_synthetic(0x8000_0000));
    assert!(looks_like_json(b" \n{") && !looks_like_json(b"\0{") && !looks_like_json(b""));
}

#[test]
fn escapes_and_unicode_in_strings() {
    let (_, v) = roundtrip(
        r#"{"type":"string","optional":false}"#,
        r#""a\"\\\/\n\u00e9\ud83d\ude00é""#,
    )
    .unwrap();
    assert_eq!(v, serde_json::json!("a\"\\/\né😀é"));
    assert!(roundtrip(r#"{"type":"string","optional":false}"#, r#""\ud83d""#).is_err());
}

// ---------------------------------------------------------------------------------------------
// The real capture: the same changes through AvroConverter and through JsonConverter.

struct Rec {
    topic: String,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

fn fixture(path: &str) -> Vec<Rec> {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/debezium/"
    );
    let text = std::fs::read_to_string(format!("{root}{path}")).unwrap();
    let hex = |s: &str| {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>()
    };
    text.lines()
        .map(|l| {
            let j: serde_json::Value = serde_json::from_str(l).unwrap();
            Rec {
                topic: j["topic"].as_str().unwrap().into(),
                key: hex(j["key"].as_str().unwrap()),
                value: j["value"].as_str().map(hex),
            }
        })
        .collect()
}

fn registry_schema(id: u32) -> String {
    let root = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/debezium/schemas/"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{root}{id}.json")).unwrap())
            .unwrap();
    j["schema"]["schema"].as_str().unwrap().to_string()
}

/// One change decoded the engine's way.
struct Decoded {
    /// (topic, op, key, gtid, row): what tells the change apart in either run.
    identity: String,
    before: Option<u128>,
    after: Option<u128>,
    /// The row images as JSON.
    rows: serde_json::Value,
}

fn decode(
    topic: &str,
    key_schema: &Schema,
    key: &[u8],
    schema: &Schema,
    datum: &[u8],
    reference: Option<&Schema>,
) -> Decoded {
    let layout = EnvelopeLayout::compile(schema, &PositionField::Gtid).unwrap();
    let reference = reference.unwrap_or(schema);
    let rl = EnvelopeLayout::compile(reference, &PositionField::Gtid).unwrap();
    let plan = Plan::compile(schema, layout.row, reference, rl.row);
    let table = topic.rsplit('.').next().unwrap();
    let ev = layout
        .decode_general(
            schema,
            &plan,
            &RowHasher::new(table_seed(table)),
            datum,
            &mut Scratch::default(),
        )
        .unwrap();
    let mut r = Reader::new(datum);
    let v = to_json(schema, schema.root(), &mut r).unwrap();
    r.finish().unwrap();
    let mut r = Reader::new(key);
    let k = to_json(key_schema, key_schema.root(), &mut r).unwrap();
    let identity = format!(
        "{topic} {} {k} {} {}",
        v["op"], v["source"]["gtid"], v["source"]["row"]
    );
    Decoded {
        identity,
        before: ev.before,
        after: ev.after,
        rows: serde_json::json!([v["before"], v["after"]]),
    }
}

#[test]
fn the_json_capture_hashes_as_the_avro_capture() {
    let mut avro_schemas: HashMap<u32, Schema> = HashMap::new();
    let mut avro_text: HashMap<String, String> = HashMap::new();
    let mut avro: HashMap<String, Decoded> = HashMap::new();
    let mut avro_value_schema: HashMap<String, u32> = HashMap::new();
    for rec in fixture("records.jsonl") {
        let Some(value) = &rec.value else { continue };
        let (kid, kd) = crate::wire::split(&rec.key).unwrap();
        let (vid, vd) = crate::wire::split(value).unwrap();
        for (id, subject) in [
            (kid, format!("{}-key", rec.topic)),
            (vid, format!("{}-value", rec.topic)),
        ] {
            avro_schemas.entry(id).or_insert_with(|| {
                let t = registry_schema(id);
                avro_text.insert(subject, t.clone());
                Schema::parse_str(&t).unwrap()
            });
        }
        avro_value_schema.insert(rec.topic.clone(), vid);
        let d = decode(
            &rec.topic,
            &avro_schemas[&kid],
            kd,
            &avro_schemas[&vid],
            vd,
            None,
        );
        avro.insert(d.identity.clone(), d);
    }

    let mut cj = ConnectJson::new();
    let (mut kb, mut vb) = (Vec::new(), Vec::new());
    let (mut matched, mut hashes, mut cross) = (0, 0, 0);
    let mut json_records = 0;
    let mut seen = std::collections::HashSet::new();
    for rec in fixture("json/records.jsonl") {
        let Some(value) = &rec.value else { continue };
        json_records += 1;
        let kid = cj
            .transcode(&rec.key, &format!("{}-key", rec.topic), &mut kb)
            .unwrap();
        let vid = cj
            .transcode(value, &format!("{}-value", rec.topic), &mut vb)
            .unwrap();
        for (id, subject) in [
            (kid, format!("{}-key", rec.topic)),
            (vid, format!("{}-value", rec.topic)),
        ] {
            // What AvroConverter registered for the same Connect schema, to the byte.
            assert_eq!(cj.get(id).unwrap().schema, avro_text[&subject], "{subject}");
        }
        let ks = Schema::parse_str(&cj.get(kid).unwrap().schema).unwrap();
        let vs = Schema::parse_str(&cj.get(vid).unwrap().schema).unwrap();
        let d = decode(&rec.topic, &ks, &kb[5..], &vs, &vb[5..], None);
        let a = avro
            .get(&d.identity)
            .unwrap_or_else(|| panic!("no Avro record for {}", d.identity));
        matched += 1;
        seen.insert(d.identity.clone());
        assert_eq!(d.rows, a.rows, "{}", d.identity);
        assert_eq!((d.before, d.after), (a.before, a.after), "{}", d.identity);
        assert!(d.before.is_some() || d.after.is_some());
        hashes += d.before.is_some() as u32 + d.after.is_some() as u32;
        // Read with the Avro primary's schema as the reference, as the engine reads a replica.
        let reference = &avro_schemas[&avro_value_schema[&rec.topic]];
        let x = decode(&rec.topic, &ks, &kb[5..], &vs, &vb[5..], Some(reference));
        assert_eq!((x.before, x.after), (a.before, a.after), "{}", d.identity);
        cross += 1;
    }
    assert_eq!((json_records, matched, cross), (88, 88, 88));
    eprintln!("matched {matched}, row images hashed equal {hashes}");
    // 88 changes a side (19 snapshot reads, 21 streamed changes and 4 redelivered copies each):
    // every one found in the other run; 110 row images, every one of the same hash.
    assert_eq!(hashes, 110);
    assert_eq!(
        seen.len(),
        avro.len(),
        "every Avro change has its JSON twin"
    );
    // 12 schemas, as the registry holds for the Avro run.
    assert_eq!(cj.schemas().count(), 12);
}

#[test]
fn maps_with_other_keys_and_fixed_bytes() {
    let schema = r#"{"type":"struct","fields":[
        {"type":"map","keys":{"type":"int32","optional":false},"values":{"type":"string","optional":true},"optional":false,"field":"m"},
        {"type":"bytes","optional":false,"parameters":{"connect.fixed.size":"2"},"field":"f"}],"optional":false,"name":"x.R"}"#;
    let (text, v) = roundtrip(schema, r#"{"m":[[1,"a"],[2,null]],"f":"AP8="}"#).unwrap();
    assert!(text.contains(r#"{"type":"array","items":{"type":"record","name":"MapEntry","namespace":"io.confluent.connect.avro","fields":[{"name":"key","type":"int"},{"name":"value","type":["null","string"],"default":null}]}}"#), "{text}");
    assert_eq!(
        v,
        serde_json::json!({"m":[{"key":1,"value":"a"},{"key":2,"value":null}],"f":"00ff"})
    );
    assert!(
        roundtrip(schema, r#"{"m":[],"f":"AA=="}"#)
            .unwrap_err()
            .to_string()
            .contains("1 bytes, expected 2")
    );
}
