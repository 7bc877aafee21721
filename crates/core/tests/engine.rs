//! The engine end to end on fixture streams: verdicts for each kind of fault, silence for
//! benign disorder.

mod support;

use cdc_verifier_core::verdict::Kind;
use cdc_verifier_core::{avro::FieldDiff, Ingested};
use support::harness::{range_of, Harness};
use support::{history, Change, Row};

fn clean_run(h: &mut Harness, changes: &[Change]) {
    for c in changes {
        for s in 0..h.topics.len() {
            h.send(s, c, false);
        }
    }
}

#[test]
fn identical_streams_give_no_verdict() {
    let changes = history(3000, 200, 1);
    let mut h = Harness::new(&["replica-1", "replica-2"], 4, false);
    clean_run(&mut h, &changes);
    let out = h.finish();
    assert!(out.is_empty(), "unexpected verdicts: {:#?}", &out[..out.len().min(3)]);
    assert!(h.engine.stats().windows_compared > 10);
}

#[test]
fn replica_ahead_of_primary_is_parked_then_verified() {
    let changes = history(2000, 100, 2);
    let mut h = Harness::new(&["replica-1"], 4, false);
    // The replica's whole stream arrives first; the primary follows.
    let mut parked = 0;
    for c in &changes {
        if h.send(1, c, false) == Ingested::Parked {
            parked += 1;
        }
    }
    for c in &changes {
        h.send(0, c, false);
        if c.tx % 100 == 0 {
            h.advance(c.ts_ms);
        }
    }
    assert_eq!(parked, changes.len());
    assert!(h.finish().is_empty(), "{:#?}", h.out);
}

#[test]
fn a_dropped_update_is_named_by_range_window_and_key() {
    let changes = history(3000, 200, 3);
    let victim = changes.iter().enumerate().skip(1500).find(|(_, c)| c.op == "u").map(|(i, _)| i).unwrap();
    let mut h = Harness::new(&["replica-1"], 4, true);
    for (i, c) in changes.iter().enumerate() {
        h.send(0, c, false);
        if i != victim {
            h.send(1, c, false);
        }
    }
    h.finish();
    let mm = h.of_kind(Kind::DataMismatch);
    assert!(!mm.is_empty());
    let first = mm[0];
    let key = changes[victim].key();
    assert_eq!(first.range, Some(range_of(key)));
    let w = first.window.unwrap();
    assert!(w.first.tx <= changes[victim].tx && changes[victim].tx <= w.last.tx, "window {w:?} holds the dropped position");
    assert_eq!(first.keys.len(), 1, "{:#?}", first.keys);
    assert_eq!(first.keys[0].key, serde_json::json!({"id": key}));
    assert!(!first.offsets.is_empty());
    // Every mismatch is about that one key.
    for d in &mm {
        assert_eq!(d.range, Some(range_of(key)));
    }
}

#[test]
fn a_corrupted_value_and_an_extra_row_are_found() {
    let changes = history(2000, 150, 4);
    let mut h = Harness::new(&["replica-1"], 4, true);
    let corrupt = 900;
    for (i, c) in changes.iter().enumerate() {
        h.send(0, c, false);
        let mut rc = c.clone();
        if i == corrupt {
            if let Some(a) = rc.after.as_mut() {
                a.total_cents += 1;
            }
        }
        h.send(1, &rc, false);
        if i == 1200 {
            let extra = Change { op: "c", before: None, after: Some(Row::new(999_999, "placed", 5)), tx: c.tx, order: 2, ts_ms: c.ts_ms };
            h.send(1, &extra, false);
        }
    }
    h.finish();
    let keys: std::collections::BTreeSet<i64> = h
        .of_kind(Kind::DataMismatch)
        .iter()
        .flat_map(|d| d.keys.iter().map(|k| k.key["id"].as_i64().unwrap()))
        .collect();
    let mut want = std::collections::BTreeSet::from([999_999]);
    want.insert(changes[corrupt].key());
    assert_eq!(keys, want);
}

/// Feeds the primary's changes and the replica's deliveries in order of delivery time
/// (a partition never reorders), advancing the clock as a live consumer would.
fn deliver(h: &mut Harness, changes: &[Change], replica: &[(i64, Change)]) {
    let mut events: Vec<(i64, usize, Change)> = changes.iter().map(|c| (c.ts_ms, 0, c.clone())).collect();
    events.extend(replica.iter().map(|(t, c)| (*t, 1, c.clone())));
    events.sort_by_key(|(t, s, _)| (*t, *s));
    for (i, (t, s, c)) in events.iter().enumerate() {
        h.send_at(*s, c, false, *t);
        if i % 50 == 0 {
            h.advance(*t);
        }
    }
}

#[test]
fn redelivery_and_a_late_partition_are_not_divergences() {
    let changes = history(3000, 100, 5);
    let mut h = Harness::new(&["replica-1"], 4, false);
    let mut replica = Vec::new();
    let mut last_p1 = 0;
    for (i, c) in changes.iter().enumerate() {
        // Partition 1 of the replica is held back 300 ms between 1000 and 1400.
        let mut t = c.ts_ms;
        if h.partition_of(c.key()) == 1 {
            if (1000..1400).contains(&i) {
                t += 300;
            }
            t = t.max(last_p1);
            last_p1 = t;
        }
        replica.push((t, c.clone()));
        // At-least-once redelivery of the last 50 events, byte-identical.
        if i == 2000 {
            for d in &changes[1950..=2000] {
                replica.push((c.ts_ms + 1, d.clone()));
            }
        }
    }
    deliver(&mut h, &changes, &replica);
    assert!(h.finish().is_empty(), "{:#?}", h.out);
}

#[test]
fn outdated_schema_on_one_replica_is_drift_on_the_first_drifted_window() {
    let mut changes = history(3000, 200, 6);
    let migrate_at = 1500;
    for c in &mut changes[migrate_at..] {
        for r in [c.before.as_mut(), c.after.as_mut()].into_iter().flatten() {
            if r.id % 7 == 0 {
                r.currency = "EUR".into();
            }
        }
    }
    let mut h = Harness::new(&["replica-1", "replica-2"], 4, true);
    for (i, c) in changes.iter().enumerate() {
        let v2 = i >= migrate_at;
        h.send(0, c, v2);
        h.send(1, c, v2);
        // replica-2 keeps writing v1 after the migration: the currency column is lost.
        let mut old = c.clone();
        for r in [old.before.as_mut(), old.after.as_mut()].into_iter().flatten() {
            r.currency = "USD".into();
        }
        h.send(2, &old, false);
    }
    h.finish();
    let drift = h.of_kind(Kind::SchemaDrift);
    assert_eq!(drift.len(), 1, "{drift:#?}");
    let d = drift[0];
    assert_eq!(d.replica, "replica-2");
    assert_eq!(d.table.as_deref(), Some("orders"));
    let s = d.schema.as_ref().unwrap();
    assert_eq!(s.first_position.tx, changes[migrate_at].tx);
    assert_eq!(s.expected_version, Some(2));
    assert_eq!(s.actual_version, Some(1));
    assert_eq!(s.subject, "replica-2.shop.orders-value");
    assert!(s.fields.iter().any(|f| matches!(f, FieldDiff::Missing { field, .. } if field == "currency")), "{:?}", s.fields);
    let w = d.window.unwrap();
    assert!(w.first.tx <= changes[migrate_at].tx && changes[migrate_at].tx <= w.last.tx);

    // Only keys whose currency differs from the default really differ.
    assert!(h.out.iter().all(|d| d.replica == "replica-2"), "nothing for replica-1: {:#?}", h.out.iter().filter(|d| d.replica != "replica-2").collect::<Vec<_>>());
    let mm = h.of_kind(Kind::DataMismatch);
    assert!(!mm.is_empty());
    for d in &mm {
        for k in &d.keys {
            assert_eq!(k.key["id"].as_i64().unwrap() % 7, 0, "{k:?}");
        }
    }
}

#[test]
fn poison_records_are_reported_with_coordinates_and_the_partition_keeps_flowing() {
    let changes = history(500, 50, 7);
    let mut h = Harness::new(&["replica-1"], 2, false);
    for (i, c) in changes.iter().enumerate() {
        h.send(0, c, false);
        h.send(1, c, false);
        if i == 100 {
            h.send_raw(1, 0, Some(&[0, 0, 0, 0, 1, 2]), Some(&[7, 0, 0, 0, 1, 2, 3]), c.ts_ms);
            h.send_raw(1, 0, Some(&[0, 0, 0, 0, 1, 2]), Some(&[0, 0, 0, 0x30, 0x39, 2, 3]), c.ts_ms);
            let (k, v) = support::wire_pair(&h.ids[1].clone(), c, false);
            h.send_raw(1, 0, Some(&k), Some(&v[..v.len() - 9]), c.ts_ms);
        }
    }
    assert!(h.finish().is_empty(), "{:#?}", h.out);
    assert_eq!(h.poison.len(), 3);
    let errors: Vec<&str> = h.poison.iter().map(|d| d.poison.as_ref().unwrap().error.as_str()).collect();
    assert!(errors[0].contains("magic byte is 0x07"), "{errors:?}");
    assert!(errors[1].contains("schema id 12345 is not registered"), "{errors:?}");
    assert!(errors[2].contains("truncated") || errors[2].contains("exceeds"), "{errors:?}");
    let p = h.poison[0].poison.as_ref().unwrap();
    assert_eq!((p.topic.as_str(), p.partition), ("replica-1.shop.orders", 0));
}

#[test]
fn a_lagging_replica_is_reported_once_and_compared_after_it_catches_up() {
    let changes = history(8000, 200, 8);
    let mut h = Harness::new(&["replica-1"], 4, false);
    // From change 2000 on the replica applies 5 s late, then catches up at 2x speed.
    let mut replica = Vec::new();
    let mut last = 0;
    for (i, c) in changes.iter().enumerate() {
        let t = if i < 2000 { c.ts_ms } else { (changes[2000].ts_ms + 5000 + (c.ts_ms - changes[2000].ts_ms) / 2).max(c.ts_ms) };
        let t = t.max(last);
        last = t;
        replica.push((t, c.clone()));
    }
    deliver(&mut h, &changes, &replica);
    h.finish();
    assert_eq!(h.of_kind(Kind::ReplicaLag).len(), 1, "{:#?}", h.out);
    let lag = h.of_kind(Kind::ReplicaLag)[0].lag.clone().unwrap();
    assert!(lag.ms_behind >= 2000 && lag.positions_behind > 500, "{lag:?}");
    assert!(h.of_kind(Kind::DataMismatch).is_empty(), "{:#?}", h.of_kind(Kind::DataMismatch));
    let rec = h.of_kind(Kind::Recovered);
    assert_eq!(rec.len(), 1, "{rec:#?}");
    assert_eq!(rec[0].recovered, Some(Kind::ReplicaLag));
}

#[test]
fn a_silent_replica_is_reported() {
    let changes = history(12_000, 300, 9);
    let mut h = Harness::new(&["replica-1"], 4, false);
    for (i, c) in changes.iter().enumerate() {
        h.send(0, c, false);
        if i < 3000 {
            h.send(1, c, false);
        }
        if i % 100 == 0 {
            h.advance(c.ts_ms);
        }
    }
    h.finish();
    let silent = h.of_kind(Kind::StreamSilent);
    assert_eq!(silent.len(), 1, "{:#?}", h.out);
    assert_eq!(h.of_kind(Kind::ReplicaLag).len(), 1);
    assert!(h.of_kind(Kind::DataMismatch).is_empty(), "the silence is the verdict, not its missing rows");
}

#[test]
fn verdicts_do_not_depend_on_how_streams_interleave() {
    let changes = history(3000, 100, 10);
    let run = |chunk: usize| {
        let mut h = Harness::new(&["replica-1"], 4, false);
        for part in changes.chunks(chunk) {
            for c in part {
                h.send(0, c, false);
            }
            for c in part {
                let mut rc = c.clone();
                if (1300..1340).contains(&c.tx) && rc.after.is_some() {
                    rc.after.as_mut().unwrap().status = "lost".into();
                }
                h.send(1, &rc, false);
            }
            h.advance(part.last().unwrap().ts_ms);
        }
        h.finish();
        let mut keys: Vec<String> = h.out.iter().map(|d| d.key()).collect();
        keys.sort();
        keys
    };
    let a = run(40);
    assert!(!a.is_empty());
    assert_eq!(a, run(40 * 3));
}

#[test]
fn a_reorder_healed_within_its_window_is_still_seen() {
    let row = |n: i64| Row::new(5, ["placed", "paid", "shipped", "delivered"][n as usize], 100 + n);
    let c = |op: &'static str, b: Option<Row>, a: Option<Row>, tx: u64| Change { op, before: b, after: a, tx, order: 1, ts_ms: 1_723_650_000_000 + tx as i64 };
    let primary = vec![
        c("c", None, Some(row(0)), 1),
        c("u", Some(row(0)), Some(row(1)), 2),
        c("u", Some(row(1)), Some(row(2)), 3),
        c("u", Some(row(2)), Some(row(3)), 4),
    ];
    // The replica applies 3 before 2, then 4 brings its row back in line.
    let replica = vec![
        c("c", None, Some(row(0)), 1),
        c("u", Some(row(0)), Some(row(2)), 3),
        c("u", Some(row(2)), Some(row(1)), 2),
        c("u", Some(row(1)), Some(row(3)), 4),
    ];
    let mut h = Harness::new(&["replica-1"], 1, true);
    for x in &primary {
        h.send(0, x, false);
    }
    for x in &replica {
        h.send(1, x, false);
    }
    h.finish();
    let mm = h.of_kind(Kind::DataMismatch);
    assert_eq!(mm.len(), 1, "{:#?}", h.out);
    assert_eq!(mm[0].keys.len(), 1);
    assert_eq!(mm[0].keys[0].key, serde_json::json!({"id": 5}));
}
