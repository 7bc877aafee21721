//! Smoke test of the local services (`scripts/services up`): a real Kafka broker
//! and a real Confluent-compatible registry. Checks the things cdc-verifier
//! relies on: the registry's Confluent API, Confluent-framed Avro records
//! through an idempotent producer and a consumer group with explicit commits,
//! and read_committed isolation of aborted transactions.
//!
//! These tests fail (never skip) when the services are absent.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::{Record, Value};
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::json;

use support::*;

const KEY_SCHEMA: &str = r#"{"type":"record","name":"Key","namespace":"smoke.shop.orders",
  "fields":[{"name":"id","type":"long"}]}"#;

const VALUE_SCHEMA: &str = r#"{"type":"record","name":"Value","namespace":"smoke.shop.orders",
  "fields":[
    {"name":"id","type":"long"},
    {"name":"seq","type":"int"},
    {"name":"customer","type":"string"},
    {"name":"note","type":["null","string"],"default":null},
    {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
    {"name":"blob","type":"bytes"}
  ]}"#;

fn key_datum(schema: &Schema, id: i64) -> Vec<u8> {
    let mut r = Record::new(schema).unwrap();
    r.put("id", id);
    apache_avro::to_avro_datum(schema, r).unwrap()
}

fn value(schema: &Schema, id: i64, seq: i32) -> Value {
    let mut r = Record::new(schema).unwrap();
    r.put("id", id);
    r.put("seq", seq);
    r.put("customer", format!("customer-{id}-ünïcødé-{seq}"));
    let note = if seq % 3 == 0 {
        Value::Union(0, Box::new(Value::Null))
    } else {
        Value::Union(1, Box::new(Value::String(format!("note {seq}"))))
    };
    r.put("note", note);
    let cents = (id * 1000 + i64::from(seq)) * if seq % 2 == 0 { 1 } else { -1 };
    r.put(
        "amount",
        Value::Decimal(apache_avro::Decimal::from(cents.to_be_bytes().to_vec())),
    );
    // Every byte value, so that no byte is mangled on the way.
    let blob: Vec<u8> = (0..=255u8).cycle().skip(seq as usize).take(300).collect();
    r.put("blob", Value::Bytes(blob));
    r.into()
}

/// Resolves a schema id through the registry and checks it is `expected`.
fn assert_id_resolves_to(id: u32, expected: &Schema) -> Schema {
    let text = schema_by_id(id);
    let got = Schema::parse_str(&text)
        .unwrap_or_else(|e| panic!("schema {id} from the registry does not parse: {e}: {text}"));
    assert_eq!(
        got.canonical_form(),
        expected.canonical_form(),
        "schema id {id} resolves to another schema"
    );
    got
}

#[test]
fn registry_speaks_the_confluent_subset_we_use() {
    require_registry();
    let schema = r#"{"type":"record","name":"Probe","namespace":"smoke.registry","fields":[{"name":"x","type":"long"},{"name":"y","type":"string"}]}"#;
    let a = unique_name("smoke-reg-a-value");
    let b = unique_name("smoke-reg-b-value");

    // The same schema under two subjects gets one id; re-registering is idempotent.
    let id_a = register_avro(&a, schema);
    let id_b = register_avro(&b, schema);
    assert_eq!(id_a, id_b, "one schema, one id across subjects");
    assert_eq!(
        register_avro(&a, schema),
        id_a,
        "re-registering returns the same id"
    );

    // GET /schemas/ids/{id}
    let text = schema_by_id(id_a);
    assert_eq!(
        Schema::parse_str(&text).unwrap().canonical_form(),
        Schema::parse_str(schema).unwrap().canonical_form()
    );

    // GET /schemas/ids/{id}/versions lists both subjects.
    let r = registry_get(&format!("/schemas/ids/{id_a}/versions"));
    assert_eq!(r.status, 200, "{}", r.body);
    let pairs: BTreeSet<(String, i64)> = r
        .body
        .as_array()
        .unwrap_or_else(|| panic!("expected an array, got {}", r.body))
        .iter()
        .map(|e| {
            (
                e["subject"].as_str().unwrap().to_owned(),
                e["version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(pairs.contains(&(a.clone(), 1)), "{pairs:?}");
    assert!(pairs.contains(&(b.clone(), 1)), "{pairs:?}");

    // GET /subjects/{s}/versions/{v} and .../latest
    for v in ["1", "latest"] {
        let r = registry_get(&format!("/subjects/{a}/versions/{v}"));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["subject"], json!(a));
        assert_eq!(r.body["version"], json!(1));
        assert_eq!(r.body["id"], json!(id_a));
        assert!(r.body["schema"].is_string(), "{}", r.body);
    }

    // A second, different schema under `a` becomes version 2 with a new id.
    let schema2 = r#"{"type":"record","name":"Probe","namespace":"smoke.registry","fields":[{"name":"x","type":"long"},{"name":"y","type":"string"},{"name":"z","type":["null","int"],"default":null}]}"#;
    let id2 = register_avro(&a, schema2);
    assert_ne!(id2, id_a);
    let r = registry_get(&format!("/subjects/{a}/versions"));
    assert_eq!(r.body, json!([1, 2]));

    // Errors carry the Confluent error codes.
    let missing = unique_name("smoke-missing");
    let r = registry_get(&format!("/subjects/{missing}/versions/1"));
    assert_eq!((r.status, r.error_code()), (404, Some(40401)), "{}", r.body);
    let r = registry_get(&format!("/subjects/{a}/versions/99"));
    assert_eq!((r.status, r.error_code()), (404, Some(40402)), "{}", r.body);
    let r = registry_get("/schemas/ids/2000000000");
    assert_eq!((r.status, r.error_code()), (404, Some(40403)), "{}", r.body);
    let r = registry_post(
        &format!("/subjects/{}/versions", unique_name("smoke-invalid")),
        &json!({"schemaType": "AVRO", "schema": "{\"type\":\"record\",\"name\":\"Bad\",\"fields\":[{\"name\":\"x\",\"type\":\"no.such.Type\"}]}"}),
    );
    assert_eq!((r.status, r.error_code()), (422, Some(42201)), "{}", r.body);
}

#[test]
fn idempotent_produce_and_group_consume_round_trip() {
    require_services();
    const KEYS: i64 = 12;
    const SEQS: i32 = 25;
    const PARTITIONS: i32 = 3;

    let topic = unique_name("smoke-orders");
    create_topic(&topic, PARTITIONS);

    let key_schema = Schema::parse_str(KEY_SCHEMA).unwrap();
    let value_schema = Schema::parse_str(VALUE_SCHEMA).unwrap();
    let key_id = register_avro(&format!("{topic}-key"), KEY_SCHEMA);
    let value_id = register_avro(&format!("{topic}-value"), VALUE_SCHEMA);
    assert_id_resolves_to(key_id, &key_schema);
    assert_id_resolves_to(value_id, &value_schema);

    // Produce SEQS versions of each of KEYS rows, interleaved.
    let producer = idempotent_producer();
    let mut expected: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
    let mut sent = 0usize;
    for seq in 0..SEQS {
        for id in 0..KEYS {
            let key = confluent_frame(key_id, &key_datum(&key_schema, id));
            let datum =
                apache_avro::to_avro_datum(&value_schema, value(&value_schema, id, seq)).unwrap();
            let val = confluent_frame(value_id, &datum);
            loop {
                match producer.send(BaseRecord::to(&topic).key(&key).payload(&val)) {
                    Ok(()) => break,
                    Err((e, _))
                        if e.rdkafka_error_code()
                            == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) =>
                    {
                        producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => panic!("send: {e}"),
                }
            }
            expected.entry(key).or_default().push(val);
            sent += 1;
        }
        producer.poll(Duration::ZERO);
    }
    flush(&producer);
    let delivered = producer.context().delivered();
    assert_eq!(delivered.len(), sent, "one delivery report per record");
    let delivered: BTreeSet<(i32, i64)> = delivered.into_iter().collect();
    assert_eq!(delivered.len(), sent, "no two records at the same offset");

    // Consume everything back in a fresh group.
    let group = unique_name("smoke-group");
    let consumer = consumer(&group, "read_committed");
    consumer.subscribe(&[&topic]).unwrap();
    let msgs = poll_n(&consumer, sent, Duration::from_secs(60));
    assert_eq!(
        msgs.len(),
        sent,
        "consumed {} of {sent} records",
        msgs.len()
    );
    let extra = poll_for(&consumer, Duration::from_millis(500));
    assert!(
        extra.is_empty(),
        "{} records beyond those produced",
        extra.len()
    );

    let mut got: HashMap<Vec<u8>, Vec<Vec<u8>>> = HashMap::new();
    let mut key_partition: HashMap<Vec<u8>, i32> = HashMap::new();
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut consumed: BTreeSet<(i32, i64)> = BTreeSet::new();
    let mut schemas: HashMap<u32, Schema> = HashMap::new();
    for m in &msgs {
        assert_eq!(m.topic(), topic);
        let (p, o) = (m.partition(), m.offset());
        assert!(consumed.insert((p, o)), "offset {p}/{o} delivered twice");
        if let Some(prev) = last_offset.insert(p, o) {
            assert!(
                o > prev,
                "offsets of partition {p} go backwards: {prev} then {o}"
            );
        }
        let key = m.key().expect("every record has a key").to_vec();
        let val = m.payload().expect("every record has a value").to_vec();
        let kp = *key_partition.entry(key.clone()).or_insert(p);
        assert_eq!(kp, p, "one key, one partition");

        // Each schema id in the frames resolves, through the registry, to what was registered.
        let (kid, kdatum) = confluent_unframe(&key);
        let (vid, vdatum) = confluent_unframe(&val);
        assert_eq!((kid, vid), (key_id, value_id));
        let vs = schemas
            .entry(vid)
            .or_insert_with(|| assert_id_resolves_to(vid, &value_schema))
            .clone();
        let ks = schemas
            .entry(kid)
            .or_insert_with(|| assert_id_resolves_to(kid, &key_schema))
            .clone();
        let k = apache_avro::from_avro_datum(&ks, &mut &kdatum[..], None).unwrap();
        let v = apache_avro::from_avro_datum(&vs, &mut &vdatum[..], None).unwrap();
        let Value::Record(kf) = &k else {
            panic!("key is not a record: {k:?}")
        };
        let Value::Long(id) = kf[0].1 else {
            panic!("key id: {k:?}")
        };
        let Value::Record(vf) = &v else {
            panic!("value is not a record: {v:?}")
        };
        let Value::Int(seq) = vf[1].1 else {
            panic!("value seq: {v:?}")
        };
        let sent_value = value(&value_schema, id, seq);
        assert_eq!(v, sent_value, "decoded value of key {id} seq {seq}");

        got.entry(key).or_default().push(val);
    }
    assert_eq!(
        consumed, delivered,
        "consumed offsets are the delivered offsets"
    );
    assert_eq!(got.len(), expected.len());
    for (k, vals) in &expected {
        // Byte-exact, and in production order per key.
        assert_eq!(
            got.get(k),
            Some(vals),
            "records of a key differ or are reordered"
        );
    }

    // Commit explicitly; the group's committed offsets reach the end of each partition.
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    let committed: BTreeMap<i32, Offset> = consumer
        .committed(SERVICE_TIMEOUT)
        .unwrap()
        .elements_for_topic(&topic)
        .iter()
        .map(|e| (e.partition(), e.offset()))
        .collect();
    for p in 0..PARTITIONS {
        let (_, high) = watermarks(&topic, p);
        assert_eq!(
            committed.get(&p),
            Some(&Offset::Offset(high)),
            "committed offset of partition {p}"
        );
    }
    drop(consumer);

    // A new member of the same group starts after the committed offsets: nothing left.
    let again = support::consumer(&group, "read_committed");
    again.subscribe(&[&topic]).unwrap();
    let leftover = poll_for(&again, Duration::from_secs(3));
    assert!(
        leftover.is_empty(),
        "{} records re-delivered after commit",
        leftover.len()
    );

    delete_topics(&[&topic]);
}

#[test]
fn aborted_transactions_are_invisible_to_read_committed_consumers() {
    require_services();
    const N: usize = 7;
    let topic = unique_name("smoke-txn");
    create_topic(&topic, 1);
    let schema = Schema::parse_str(KEY_SCHEMA).unwrap();
    let id = register_avro(&format!("{topic}-value"), KEY_SCHEMA);

    let frame = |n: i64| confluent_frame(id, &key_datum(&schema, n));
    let producer = transactional_producer(&unique_name("smoke-txn-id"));

    // Transaction 1: aborted.
    producer.begin_transaction().unwrap();
    for n in 0..N as i64 {
        let v = frame(1000 + n);
        producer
            .send(BaseRecord::<[u8], _>::to(&topic).payload(&v))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    flush(&producer);
    producer.abort_transaction(SERVICE_TIMEOUT).unwrap();

    // Transaction 2: committed.
    producer.begin_transaction().unwrap();
    let mut committed = Vec::new();
    for n in 0..N as i64 {
        let v = frame(2000 + n);
        producer
            .send(BaseRecord::<[u8], _>::to(&topic).payload(&v))
            .map_err(|(e, _)| e)
            .unwrap();
        committed.push(v);
    }
    producer.commit_transaction(SERVICE_TIMEOUT).unwrap();

    // Both transactions are in the log: 2N records and two control markers.
    let (low, high) = watermarks(&topic, 0);
    assert_eq!((low, high), (0, 2 * N as i64 + 2));

    let read = |isolation: &str, want: usize| {
        let c = support::consumer(&unique_name("smoke-txn-group"), isolation);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Beginning)
            .unwrap();
        c.assign(&tpl).unwrap();
        let mut msgs = poll_n(&c, want, Duration::from_secs(30));
        msgs.extend(poll_for(&c, Duration::from_millis(1500)));
        msgs.into_iter()
            .map(|m| m.payload().unwrap().to_vec())
            .collect::<Vec<_>>()
    };

    // read_committed sees exactly the committed transaction, in order.
    let seen = read("read_committed", N);
    assert_eq!(
        seen, committed,
        "read_committed must see only the committed records"
    );

    // read_uncommitted also sees the aborted records, so they really were written.
    let all = read("read_uncommitted", 2 * N);
    assert_eq!(all.len(), 2 * N, "read_uncommitted sees both transactions");
    assert_eq!(&all[N..], &committed[..]);
    for (n, v) in all[..N].iter().enumerate() {
        assert_eq!(v, &frame(1000 + n as i64));
    }

    delete_topics(&[&topic]);
}
