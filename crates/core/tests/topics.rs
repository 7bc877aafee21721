//! Topics found while running: a table whose topics appear after comparisons began, and
//! partitions added to a topic.

mod support;

use cdc_verifier_core::digest::{key_hash, table_seed};
use cdc_verifier_core::source::MemorySource;
use cdc_verifier_core::verdict::Kind;
use cdc_verifier_core::{Ingested, KeyRanges, Record, TopicId};
use support::harness::{Harness, range_of};
use support::{Change, Ids, encode_key, envelope_schema, history, key_schema, wire_pair};

/// The `orders` schemas, named after `items` (as Debezium names each table's records).
fn register_items(src: &mut MemorySource, stream: &str) -> Ids {
    let topic = format!("{stream}.shop.items");
    let items = |schema: String| schema.replace(".shop.orders", ".shop.items");
    Ids {
        key: src.register(&format!("{topic}-key"), &items(key_schema(stream))),
        v1: src.register(
            &format!("{topic}-value"),
            &items(envelope_schema(stream, false)),
        ),
        v2: src.register(
            &format!("{topic}-value"),
            &items(envelope_schema(stream, true)),
        ),
    }
}

/// Sends a change to a one-partition topic of the `items` table.
fn send_item(h: &mut Harness, topic: TopicId, ids: &Ids, offset: &mut i64, c: &Change) -> Ingested {
    let (k, v) = wire_pair(ids, c, false);
    let rec = Record {
        topic,
        partition: 0,
        offset: *offset,
        timestamp_ms: c.ts_ms,
        key: Some(&k),
        value: Some(&v),
    };
    *offset += 1;
    h.engine.ingest(&rec, &mut h.src).unwrap()
}

#[test]
fn a_table_found_while_running_is_verified_from_where_comparisons_had_reached() {
    let changes = history(6000, 300, 11);
    let half = changes.len() / 2;
    let mut h = Harness::new(&["replica-1"], 3, false);
    // Even keys are `orders`, verified from the start; odd keys are `items`, whose topics
    // are found once half the history has been compared.
    for (i, c) in changes[..half].iter().enumerate() {
        if c.key() % 2 == 0 {
            h.send(0, c, false);
            h.send(1, c, false);
        }
        if i % 100 == 99 {
            h.advance(c.ts_ms);
        }
    }
    assert!(h.engine.stats().windows_compared > 5);
    let ids = [
        register_items(&mut h.src, "primary"),
        register_items(&mut h.src, "replica-1"),
    ];
    let topics = [
        h.engine.add_topic("primary.shop.items", 0, "items", 1),
        h.engine.add_topic("replica-1.shop.items", 1, "items", 1),
    ];
    let mut offsets = [0i64; 2];
    // The new topics hold the table's changes from before they were found: already compared
    // windows went without them, on both streams.
    for c in changes[..half].iter().filter(|c| c.key() % 2 == 1) {
        for s in 0..2 {
            let r = send_item(&mut h, topics[s], &ids[s], &mut offsets[s], c);
            assert_ne!(r, Ingested::Late, "{c:?}");
        }
    }
    let victim = (half + 1000..changes.len())
        .find(|i| changes[*i].key() % 2 == 1 && changes[*i].op == "u")
        .unwrap();
    for (i, c) in changes.iter().enumerate().skip(half) {
        if c.key() % 2 == 0 {
            h.send(0, c, false);
            h.send(1, c, false);
        } else {
            send_item(&mut h, topics[0], &ids[0], &mut offsets[0], c);
            if i != victim {
                send_item(&mut h, topics[1], &ids[1], &mut offsets[1], c);
            }
        }
        if i % 100 == 99 {
            h.advance(c.ts_ms);
        }
    }
    h.finish();
    assert_eq!(h.engine.late_records(), 0);
    let stats: Vec<_> = h
        .engine
        .topic_stats()
        .filter(|(_, table, _, _)| *table == "items")
        .map(|(_, _, _, s)| s.clone())
        .collect();
    for s in &stats {
        assert!(s.before_table > 0 && s.events > 0, "{s:?}");
    }
    // The dropped update is found, in its range of `items`, and nothing else is.
    let key = changes[victim].key();
    let range = KeyRanges::default().range(key_hash(table_seed("items"), &encode_key(key)), None);
    assert!(!h.out.is_empty());
    for d in &h.out {
        assert_eq!(d.kind(), Kind::DataMismatch, "{d:#?}");
        assert_eq!(d.table(), Some("items"), "{d:#?}");
        assert_eq!(d.range().map(|r| r.index), Some(range), "{d:#?}");
    }
}

#[test]
fn a_partition_added_while_running_is_verified() {
    let changes = history(4000, 200, 12);
    let half = changes.len() / 2;
    let mut h = Harness::new(&["replica-1"], 2, false);
    for (i, c) in changes[..half].iter().enumerate() {
        h.send(0, c, false);
        h.send(1, c, false);
        if i % 100 == 99 {
            h.advance(c.ts_ms);
        }
    }
    for t in h.topics.clone() {
        h.engine.add_partitions(t, 4);
        assert_eq!(h.engine.partitions(t), 4);
    }
    h.partitions = 4;
    for o in &mut h.offsets {
        o.resize(4, 0);
    }
    let victim = (half + 500..changes.len())
        .find(|i| changes[*i].op == "u" && changes[*i].key() % 4 == 3)
        .unwrap();
    for (i, c) in changes.iter().enumerate().skip(half) {
        h.send(0, c, false);
        if i != victim {
            h.send(1, c, false);
        }
        if i % 100 == 99 {
            h.advance(c.ts_ms);
        }
    }
    h.finish();
    assert!(h.poison.is_empty(), "{:#?}", h.poison);
    let mm = h.of_kind(Kind::DataMismatch);
    assert!(!mm.is_empty(), "{:#?}", h.out);
    let key = changes[victim].key();
    assert!(
        mm.iter()
            .all(|d| d.range().map(|r| r.index) == Some(range_of(key))),
        "{mm:#?}"
    );
}
