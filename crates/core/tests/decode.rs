//! The Confluent-Avro decoder on its own: events, records ahead of the primary, schema drift,
//! and why a record does not read.

mod support;

use cdc_verifier_core::decode::{At, ConfluentAvro, Decoded, Decoder, Poison, Read, Role};
use cdc_verifier_core::digest::{RowHasher, key_hash, table_seed};
use cdc_verifier_core::source::{FetchError, MemorySource, SchemaSource};
use cdc_verifier_core::{Op, Position, PositionField, wire};
use support::{Change, Row, register, wire_pair};

fn insert(id: i64, tx: u64) -> Change {
    Change {
        op: "c",
        before: None,
        after: Some(Row::new(id, "new", 100 * id)),
        tx,
        order: 0,
        ts_ms: 1_723_650_000_000 + tx as i64,
    }
}

struct Fixture {
    dec: ConfluentAvro,
    src: MemorySource,
    rows: RowHasher,
    seed: u64,
}

impl Fixture {
    /// Topic 0: the primary's `orders`; topic 1: the replica's.
    fn new() -> Fixture {
        let mut dec = ConfluentAvro::new(PositionField::Gtid, true, false);
        dec.add_topic(0, "primary.shop.orders", "orders", 1);
        dec.add_topic(1, "replica.shop.orders", "orders", 1);
        let seed = table_seed("orders");
        Fixture {
            dec,
            src: MemorySource::new(),
            rows: RowHasher::new(seed),
            seed,
        }
    }

    fn decode(
        &mut self,
        topic: u32,
        role: Role<'_>,
        key: Option<&[u8]>,
        value: &[u8],
    ) -> Result<(Read, Decoded), Poison> {
        let at = At {
            topic,
            partition: 0,
            table: 0,
            rows: &self.rows,
            seed: self.seed,
            role,
        };
        let src: &mut dyn SchemaSource = &mut self.src;
        let mut out = Decoded::EMPTY;
        self.dec
            .decode(&at, key, value, src, &mut out)
            .expect("the memory source always answers")
            .map(|read| (read, out))
    }
}

fn event(r: Result<(Read, Decoded), Poison>) -> Decoded {
    match r {
        Ok((Read::Event, d)) => d,
        Ok((Read::Ahead, _)) => panic!("read as ahead"),
        Err(e) => panic!("poison: {e}"),
    }
}

#[test]
fn a_change_reads_with_its_key_hashed_canonically() {
    let mut f = Fixture::new();
    let ids = register(&mut f.src, "primary");
    let c = insert(42, 7);
    let (k, v) = wire_pair(&ids, &c, false);
    let d = event(f.decode(0, Role::Primary, Some(&k), &v));
    assert_eq!(d.event.op, Op::Create);
    assert_eq!(d.event.ts_ms, c.ts_ms);
    assert!(d.event.before.is_none() && d.event.after.is_some());
    assert_eq!(d.key_hash, key_hash(f.seed, &support::encode_key(42)));
    assert_eq!(
        (d.schema, d.reference, d.key_schema),
        (ids.v1, ids.v1, ids.key)
    );
    assert!(!d.drift);
    let kept = f.dec.kept(&k, &v, &d.event);
    assert_eq!(kept.key, support::encode_key(42));
    assert!(kept.row.is_some());
}

#[test]
fn a_replica_reads_with_the_primarys_schema_once_the_primary_has_passed() {
    let mut f = Fixture::new();
    let p = register(&mut f.src, "primary");
    let r = register(&mut f.src, "replica");
    let c = insert(1, 5);
    let (pk, pv) = wire_pair(&p, &c, false);
    let primary = event(f.decode(0, Role::Primary, Some(&pk), &pv));
    let refs = [(p.v1, primary.event.position)];

    // The replica writes v2 (an added column): read with the primary's v1, it drifts.
    let (rk, rv) = wire_pair(&r, &c, true);
    let ahead = f.decode(
        1,
        Role::Replica {
            refs: &refs,
            passed: Position::ZERO,
        },
        Some(&rk),
        &rv,
    );
    assert!(matches!(
        ahead,
        Ok((Read::Ahead, d)) if d.event.position == primary.event.position && d.event.op == Op::Create
    ));
    let d = event(f.decode(
        1,
        Role::Replica {
            refs: &refs,
            passed: primary.event.position,
        },
        Some(&rk),
        &rv,
    ));
    assert_eq!((d.schema, d.reference), (r.v2, p.v1));
    assert!(d.drift);
    assert_eq!(d.key_hash, primary.key_hash);
}

#[test]
fn records_that_do_not_read_say_why() {
    let mut f = Fixture::new();
    let ids = register(&mut f.src, "primary");
    let (k, v) = wire_pair(&ids, &insert(1, 1), false);
    let message = |r: Result<(Read, Decoded), Poison>| match r {
        Err(e) => e.to_string(),
        Ok(_) => panic!("read"),
    };

    let got = message(f.decode(0, Role::Primary, Some(&k), &[0, 1]));
    assert!(got.starts_with("value: "), "{got}");
    assert_eq!(
        message(f.decode(0, Role::Primary, None, &v)),
        "record has a value but no key"
    );
    let got = message(f.decode(0, Role::Primary, Some(&[9]), &v));
    assert!(got.starts_with("key: "), "{got}");

    let mut unknown = Vec::new();
    wire::frame(12345, &[], &mut unknown);
    assert_eq!(
        message(f.decode(0, Role::Primary, Some(&k), &unknown)),
        "schema id 12345 is not registered"
    );

    // The replica's schemas are registered under the replica's subjects, not the primary's.
    let other = register(&mut f.src, "replica");
    let (_, ov) = wire_pair(&other, &insert(1, 1), false);
    assert_eq!(
        message(f.decode(0, Role::Primary, Some(&k), &ov)),
        format!(
            "value schema id {} is not registered under subject primary.shop.orders-value",
            other.v1
        )
    );
}

/// A source that names the subject each fetch was for, and can be unavailable.
struct Asking {
    inner: MemorySource,
    asked: Vec<(u32, String)>,
    down: bool,
}

impl SchemaSource for Asking {
    fn fetch(
        &mut self,
        id: u32,
    ) -> Result<cdc_verifier_core::source::RegisteredSchema, FetchError> {
        self.fetch_for(id, "")
    }

    fn fetch_for(
        &mut self,
        id: u32,
        subject: &str,
    ) -> Result<cdc_verifier_core::source::RegisteredSchema, FetchError> {
        self.asked.push((id, subject.to_string()));
        if self.down {
            return Err(FetchError::Unavailable("registry down".into()));
        }
        self.inner.fetch(id)
    }
}

#[test]
fn schemas_are_fetched_for_the_topics_subjects_and_an_unavailable_source_is_not_poison() {
    let mut f = Fixture::new();
    let ids = register(&mut f.src, "primary");
    let (k, v) = wire_pair(&ids, &insert(1, 1), false);
    let mut src = Asking {
        inner: f.src.clone(),
        asked: Vec::new(),
        down: true,
    };
    let at = At {
        topic: 0,
        partition: 0,
        table: 0,
        rows: &f.rows,
        seed: f.seed,
        role: Role::Primary,
    };
    // Unavailable: the record is offered again later, never poison.
    let mut out = Decoded::EMPTY;
    let e = f
        .dec
        .decode(&at, Some(&k), &v, &mut src, &mut out)
        .expect_err("unavailable");
    assert_eq!(e.id, ids.v1);
    src.down = false;
    let read = f.dec.decode(&at, Some(&k), &v, &mut src, &mut out);
    event(read.expect("answers").map(|r| (r, out)));
    assert_eq!(
        src.asked,
        vec![
            (ids.v1, "primary.shop.orders-value".to_string()),
            (ids.v1, "primary.shop.orders-value".to_string()),
            (ids.key, "primary.shop.orders-key".to_string()),
        ]
    );
}

#[test]
fn a_position_field_the_envelopes_lack_is_a_misconfiguration_naming_the_fields_they_have() {
    let mut f = Fixture::new();
    f.dec = ConfluentAvro::new(PositionField::Field("origin".into()), true, false);
    f.dec.add_topic(0, "primary.shop.orders", "orders", 1);
    let ids = register(&mut f.src, "primary");
    assert_eq!(f.dec.misconfigured(), None);
    let (k, v) = wire_pair(&ids, &insert(1, 1), false);
    assert!(matches!(
        f.decode(0, Role::Primary, Some(&k), &v),
        Err(Poison::NotAnEnvelope { .. })
    ));
    let why = f.dec.misconfigured().expect("said");
    assert!(
        why.contains("verify.position = \"origin\"")
            && why.contains("primary.shop.orders-value")
            && why.contains("their source fields are: version, ts_ms, gtid, pos"),
        "{why}"
    );
    // With the right field, nothing to say.
    let mut f = Fixture::new();
    let ids = register(&mut f.src, "primary");
    let (k, v) = wire_pair(&ids, &insert(1, 1), false);
    event(f.decode(0, Role::Primary, Some(&k), &v));
    assert_eq!(f.dec.misconfigured(), None);
}
