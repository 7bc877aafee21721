//! The engine end to end on fixture streams: verdicts for each kind of fault, silence for
//! benign disorder.

mod support;

use cdc_verifier_core::verdict::Kind;
use cdc_verifier_core::{Ingested, Progress, avro::FieldDiff};
use support::harness::{Harness, delayed, deliver_live, range_of};
use support::{Change, Row, history};

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
    assert!(
        out.is_empty(),
        "unexpected verdicts: {:#?}",
        &out[..out.len().min(3)]
    );
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
    let victim = changes
        .iter()
        .enumerate()
        .skip(1500)
        .find(|(_, c)| c.op == "u")
        .map(|(i, _)| i)
        .unwrap();
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
    assert_eq!(first.range().map(|r| r.index), Some(range_of(key)));
    let w = first.window().unwrap();
    assert!(
        w.first.tx <= changes[victim].tx && changes[victim].tx <= w.last.tx,
        "window {w:?} holds the dropped position"
    );
    assert_eq!(
        first.mismatch().unwrap().keys.len(),
        1,
        "{:#?}",
        first.mismatch().unwrap().keys
    );
    assert_eq!(
        first.mismatch().unwrap().keys[0].key,
        serde_json::json!({"id": key})
    );
    assert!(!first.mismatch().unwrap().offsets.is_empty());
    // Every mismatch is about that one key.
    for d in &mm {
        assert_eq!(d.range().map(|r| r.index), Some(range_of(key)));
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
        if i == corrupt
            && let Some(a) = rc.after.as_mut()
        {
            a.total_cents += 1;
        }
        h.send(1, &rc, false);
        if i == 1200 {
            let extra = Change {
                op: "c",
                before: None,
                after: Some(Row::new(999_999, "placed", 5)),
                tx: c.tx,
                order: 2,
                ts_ms: c.ts_ms,
            };
            h.send(1, &extra, false);
        }
    }
    h.finish();
    let keys: std::collections::BTreeSet<i64> = h
        .of_kind(Kind::DataMismatch)
        .iter()
        .flat_map(|d| {
            d.mismatch()
                .unwrap()
                .keys
                .iter()
                .map(|k| k.key["id"].as_i64().unwrap())
        })
        .collect();
    let mut want = std::collections::BTreeSet::from([999_999]);
    want.insert(changes[corrupt].key());
    assert_eq!(keys, want);
}

/// Feeds the primary's changes and the replica's deliveries in order of delivery time
/// (a partition never reorders), advancing the clock as a live consumer would.
fn deliver(h: &mut Harness, changes: &[Change], replica: &[(i64, Change)]) {
    let mut events: Vec<(i64, usize, Change)> =
        changes.iter().map(|c| (c.ts_ms, 0, c.clone())).collect();
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
        for r in [old.before.as_mut(), old.after.as_mut()]
            .into_iter()
            .flatten()
        {
            r.currency = "USD".into();
        }
        h.send(2, &old, false);
    }
    h.finish();
    let drift = h.of_kind(Kind::SchemaDrift);
    assert_eq!(drift.len(), 1, "{drift:#?}");
    let d = drift[0];
    assert_eq!(d.replica, "replica-2");
    assert_eq!(d.table(), Some("orders"));
    let s = &d.drift().unwrap().schema;
    assert_eq!(s.first_position.tx, changes[migrate_at].tx);
    assert_eq!(s.expected_version, Some(2));
    assert_eq!(s.actual_version, Some(1));
    assert_eq!(s.subject, "replica-2.shop.orders-value");
    assert!(
        s.fields
            .iter()
            .any(|f| matches!(f, FieldDiff::Missing { field, .. } if field == "currency")),
        "{:?}",
        s.fields
    );
    let w = d.window().unwrap();
    assert!(w.first.tx <= changes[migrate_at].tx && changes[migrate_at].tx <= w.last.tx);

    // Only keys whose currency differs from the default really differ.
    assert!(
        h.out.iter().all(|d| d.replica == "replica-2"),
        "nothing for replica-1: {:#?}",
        h.out
            .iter()
            .filter(|d| d.replica != "replica-2")
            .collect::<Vec<_>>()
    );
    let mm = h.of_kind(Kind::DataMismatch);
    assert!(!mm.is_empty());
    for d in &mm {
        for k in &d.mismatch().unwrap().keys {
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
            h.send_raw(
                1,
                0,
                Some(&[0, 0, 0, 0, 1, 2]),
                Some(&[7, 0, 0, 0, 1, 2, 3]),
                c.ts_ms,
            );
            h.send_raw(
                1,
                0,
                Some(&[0, 0, 0, 0, 1, 2]),
                Some(&[0, 0, 0, 0x30, 0x39, 2, 3]),
                c.ts_ms,
            );
            let (k, v) = support::wire_pair(&h.ids[1].clone(), c, false);
            h.send_raw(1, 0, Some(&k), Some(&v[..v.len() - 9]), c.ts_ms);
        }
    }
    assert!(h.finish().is_empty(), "{:#?}", h.out);
    assert_eq!(h.poison.len(), 3);
    let errors: Vec<&str> = h
        .poison
        .iter()
        .map(|d| d.poison().unwrap().error.as_str())
        .collect();
    assert!(errors[0].contains("magic byte is 0x07"), "{errors:?}");
    assert!(
        errors[1].contains("schema id 12345 is not registered"),
        "{errors:?}"
    );
    assert!(
        errors[2].contains("truncated") || errors[2].contains("exceeds"),
        "{errors:?}"
    );
    let p = h.poison[0].poison().unwrap();
    assert_eq!(
        (p.topic.as_str(), p.partition),
        ("replica-1.shop.orders", 0)
    );
}

#[test]
fn a_lagging_replica_is_reported_once_and_compared_after_it_catches_up() {
    let changes = history(8000, 200, 8);
    let mut h = Harness::new(&["replica-1"], 4, false);
    // From change 2000 on the replica applies 5 s late, then catches up at 2x speed.
    let mut replica = Vec::new();
    let mut last = 0;
    for (i, c) in changes.iter().enumerate() {
        let t = if i < 2000 {
            c.ts_ms
        } else {
            (changes[2000].ts_ms + 5000 + (c.ts_ms - changes[2000].ts_ms) / 2).max(c.ts_ms)
        };
        let t = t.max(last);
        last = t;
        replica.push((t, c.clone()));
    }
    deliver(&mut h, &changes, &replica);
    h.finish();
    assert_eq!(h.of_kind(Kind::ReplicaLag).len(), 1, "{:#?}", h.out);
    let lag = h.of_kind(Kind::ReplicaLag)[0].lag().unwrap().clone();
    assert!(
        lag.ms_behind >= 2000 && lag.positions_behind > 500,
        "{lag:?}"
    );
    assert!(
        h.of_kind(Kind::DataMismatch).is_empty(),
        "{:#?}",
        h.of_kind(Kind::DataMismatch)
    );
    let rec = h.of_kind(Kind::Recovered);
    assert_eq!(rec.len(), 1, "{rec:#?}");
    assert_eq!(rec[0].ended(), Some(Kind::ReplicaLag));
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
    assert!(
        h.of_kind(Kind::DataMismatch).is_empty(),
        "the silence is the verdict, not its missing rows"
    );
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
                if (1300..1340).contains(&c.tx)
                    && let Some(a) = rc.after.as_mut()
                {
                    a.status = "lost".into();
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
    let row = |n: i64| {
        Row::new(
            5,
            ["placed", "paid", "shipped", "delivered"][n as usize],
            100 + n,
        )
    };
    let c = |op: &'static str, b: Option<Row>, a: Option<Row>, tx: u64| Change {
        op,
        before: b,
        after: a,
        tx,
        order: 1,
        ts_ms: 1_723_650_000_000 + tx as i64,
    };
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
    assert_eq!(mm[0].mismatch().unwrap().keys.len(), 1);
    assert_eq!(
        mm[0].mismatch().unwrap().keys[0].key,
        serde_json::json!({"id": 5})
    );
}

#[test]
fn quiet_partitions_read_to_their_end_let_windows_close_and_skew_within_bounds_is_harmless() {
    // Partition 1 of the replica is held back 400 ms (less than publish_skew_ms) for a while;
    // two partitions go quiet in between. Windows are compared as the run goes, and nothing
    // is reported.
    let changes = history(6000, 100, 21);
    let mut h = Harness::new(&["replica-1"], 4, false);
    let skew = h.engine.config().timing.publish_skew_ms;
    assert!(skew > 400);
    let quiet = |i: usize, p: u32| (2000..2600).contains(&i) && p >= 2;
    let primary: Vec<Change> = changes
        .iter()
        .enumerate()
        .filter(|(i, c)| !quiet(*i, h.partition_of(c.key())))
        .map(|(_, c)| c.clone())
        .collect();
    let replica = delayed(&h, &primary, |i, p| {
        if p == 1 && (1000..1800).contains(&i) {
            400
        } else {
            0
        }
    });
    let compared = deliver_live(&mut h, &primary, &replica, None);
    let windows = (primary.last().unwrap().ts_ms - primary[0].ts_ms)
        / h.engine.config().timing.cut_interval_ms;
    assert!(
        compared >= (windows - 5) as u64,
        "windows compared while running: {compared} of {windows}"
    );
    assert_eq!(h.engine.late_records(), 0);
    assert!(
        h.engine.stats().arrival_behind_max_ms >= 300,
        "{:?}",
        h.engine.stats()
    );
    assert!(h.finish().is_empty(), "{:#?}", h.out);
}

#[test]
fn a_partition_not_known_to_be_read_to_its_end_holds_its_stream_back() {
    let changes = history(3000, 100, 22);
    let mut h = Harness::new(&["replica-1"], 4, false);
    // Partition 3 of the replica receives nothing and the end offsets never vouch for it.
    let primary: Vec<Change> = changes
        .iter()
        .filter(|c| h.partition_of(c.key()) != 3)
        .cloned()
        .collect();
    let replica = delayed(&h, &primary, |_, _| 0);
    assert_eq!(
        deliver_live(&mut h, &primary, &replica, Some((1, 3))),
        0,
        "no window may be compared past a partition that may hold records"
    );
    assert!(h.finish().is_empty(), "{:#?}", h.out);
    assert!(h.engine.stats().windows_compared > 10);
}

#[test]
fn records_later_than_the_skew_allows_are_counted_late_not_summed() {
    let changes = history(4000, 100, 23);
    let mut h = Harness::new(&["replica-1"], 4, false);
    let skew = h.engine.config().timing.publish_skew_ms;
    let replica = delayed(&h, &changes, |i, p| {
        if p == 1 && (1000..1100).contains(&i) {
            skew + 1500
        } else {
            0
        }
    });
    deliver_live(&mut h, &changes, &replica, None);
    let late = h.engine.late_records();
    assert!(
        late > 0,
        "records {} ms late must come after their window was compared",
        skew + 1500
    );
    assert!(
        h.engine.stats().arrival_behind_max_ms > skew,
        "{:?}",
        h.engine.stats()
    );
    // The windows compared without them differ, but their mismatches wait until partition 1
    // is read past them (`verify.confirm-ms` at most), and the late records, counted into
    // them, withdraw them. Each late record was counted once and not added to any later
    // window (which would make that one differ, and be told).
    h.finish();
    assert!(h.engine.stats().withdrawn > 0, "{:?}", h.engine.stats());
    assert!(h.out.is_empty(), "{:#?}", h.out.first());
}

#[test]
fn a_growing_producer_skew_is_learned_before_it_makes_records_late() {
    // Partition 1 of the replica falls behind steadily, up to 3 s: the skew allowed for
    // follows what is seen, and nothing is late or reported. Without learning, the same
    // input makes records late.
    let changes = history(8000, 100, 24);
    let run = |learn: bool| {
        let mut cfg = cdc_verifier_core::EngineConfig::default();
        if !learn {
            cfg.timing.max_publish_skew_ms = cfg.timing.publish_skew_ms;
        }
        let mut h = Harness::with_config(cfg, &["replica-1"], 4);
        let n = changes.len() as i64;
        let replica = delayed(
            &h,
            &changes,
            |i, p| if p == 1 { 3000 * i as i64 / n } else { 0 },
        );
        deliver_live(&mut h, &changes, &replica, None);
        let late = h.engine.late_records();
        let skew = h.engine.publish_skew_ms();
        h.finish();
        let lag = h.of_kind(Kind::ReplicaLag).len();
        (
            late,
            skew,
            h.out
                .iter()
                .filter(|d| d.kind() != Kind::ReplicaLag && d.kind() != Kind::Recovered)
                .count(),
            lag,
        )
    };
    let (late, skew, verdicts, lag) = run(true);
    assert_eq!(
        (late, verdicts),
        (0, 0),
        "learning the skew: no late record, nothing but the lag reported"
    );
    // The replica stamped its records on time; they were slow to arrive, which is the
    // producers' skew, not replication lag.
    assert_eq!(lag, 0, "no lag reported for records slow to arrive");
    assert!(
        skew > 2000,
        "the skew allowed for grew with what was seen: {skew} ms"
    );
    let (late, skew, _, _) = run(false);
    assert!(
        late > 0,
        "without learning, records {} ms behind are late",
        3000
    );
    assert_eq!(skew, 500);
}

#[test]
fn the_learned_skew_survives_a_restart_through_the_checkpoint() {
    let changes = history(4000, 100, 25);
    let mut h = Harness::new(&["replica-1"], 4, false);
    let n = changes.len() as i64;
    let replica = delayed(
        &h,
        &changes,
        |i, p| if p == 1 { 2000 * i as i64 / n } else { 0 },
    );
    deliver_live(&mut h, &changes, &replica, None);
    let learned = h.engine.publish_skew_ms();
    assert!(learned > 1000, "{learned}");
    let c = h.engine.checkpoint();
    let c: cdc_verifier_core::Checkpoint =
        serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    let mut again = Harness::new(&["replica-1"], 4, false);
    again.engine.restore(&c);
    assert_eq!(again.engine.publish_skew_ms(), learned);
}

#[test]
fn replica_records_parked_until_the_primary_passes_them_are_not_counted_as_skew() {
    // Every record arrives as soon as it is stamped; replica records wait (parked) until the
    // primary's watermark has passed them. Their release later is not a late arrival: the
    // skew allowed for stays at its setting, so windows do not wait longer and longer.
    let changes = history(8000, 100, 26);
    let mut h = Harness::new(&["replica-1"], 4, false);
    let replica = delayed(&h, &changes, |_, _| 0);
    deliver_live(&mut h, &changes, &replica, None);
    let setting = h.engine.config().timing.publish_skew_ms;
    assert!(
        h.engine.stats().arrival_behind_max_ms < 100,
        "{:?}",
        h.engine.stats()
    );
    // Their bytes were counted once, when they arrived.
    let sent: u64 = replica
        .iter()
        .map(|(_, c)| {
            let (k, v) = support::wire_pair(&h.ids[1], c, false);
            (k.len() + v.len()) as u64
        })
        .sum();
    let counted: u64 = h
        .engine
        .topic_stats()
        .filter(|(stream, _, _, _)| *stream == "replica-1")
        .map(|(_, _, _, s)| s.bytes)
        .sum();
    assert_eq!(counted, sent);
    assert_eq!(h.engine.publish_skew_ms(), setting);
    assert!(h.finish().is_empty(), "{:#?}", h.out);
}

/// Commit and record times at the ends of the range of times (a connector's bug, a hostile
/// record): windows are cut, close and compare there as anywhere, with no overflow (these
/// tests run with overflow checks) and no verdict for identical streams.
#[test]
fn times_at_the_ends_of_their_range_are_windows_like_any() {
    for (cut, base) in [
        (1, i64::MAX - 500),
        (200, i64::MAX - 500),
        (7, i64::MIN),
        (i64::MAX, i64::MAX - 500),
    ] {
        let mut cfg = cdc_verifier_core::EngineConfig::default();
        cfg.timing.cut_interval_ms = cut;
        let mut h = Harness::with_config(cfg, &["replica-1"], 2);
        let changes: Vec<Change> = history(300, 20, 11)
            .into_iter()
            .enumerate()
            .map(|(i, c)| Change {
                ts_ms: base.saturating_add(i as i64),
                ..c
            })
            .collect();
        for (i, c) in changes.iter().enumerate() {
            assert_eq!(
                h.send(0, c, false),
                Ingested::Counted,
                "cut {cut}: primary record {i}"
            );
            let taken = h.send(1, c, false);
            assert!(
                matches!(taken, Ingested::Counted | Ingested::Parked),
                "cut {cut}: replica record {i}: {taken:?}"
            );
            if i % 50 == 49 {
                h.advance(c.ts_ms);
            }
        }
        let out = h.finish();
        assert!(out.is_empty(), "cut {cut}: {:#?}", &out[..out.len().min(3)]);
        assert!(h.engine.stats().windows_compared >= 1, "cut {cut}");
    }
}

/// A primary's window that closed because its time was over and the primary was idle, and
/// then an event of one of its transactions that came later than the skew allows (on another
/// partition): the event goes to its transaction's window on the primary, as a replica's copy
/// of it does — not to the next open window, which made both windows mismatch.
#[test]
fn a_transactions_event_after_its_window_closed_by_time_stays_with_its_transaction() {
    let cfg = cdc_verifier_core::EngineConfig::default();
    let (grace, skew, cut) = (
        cfg.timing.idle_grace_ms,
        cfg.timing.publish_skew_ms,
        cfg.timing.cut_interval_ms,
    );
    let mut h = Harness::with_config(cfg, &["replica-1"], 2);
    h.engine.set_all_progress(Progress::Following);
    let t = 1_723_650_000_000;
    // Two rows of one transaction, on the two partitions.
    let row = |id: i64| Row::new(id, "placed", 100 * id);
    let (k0, k1) = (
        (1..).find(|k| h.partition_of(*k) == 0).unwrap(),
        (1..).find(|k| h.partition_of(*k) == 1).unwrap(),
    );
    let first = Change {
        op: "c",
        before: None,
        after: Some(row(k0)),
        tx: 50,
        order: 1,
        ts_ms: t,
    };
    let second = Change {
        op: "c",
        before: None,
        after: Some(row(k1)),
        tx: 50,
        order: 2,
        ts_ms: t,
    };
    assert_eq!(h.send(0, &first, false), Ingested::Counted);
    // The primary idle well past the window's end: the window closes by time.
    let later = t + cut + grace + skew + 5_000;
    h.advance(later);
    assert_eq!(h.send_at(0, &second, false, later), Ingested::Counted);
    for c in [&first, &second] {
        h.send_at(1, c, false, later + 10);
    }
    // Traffic goes on in later windows.
    for (i, id) in (100..140).enumerate() {
        let c = Change {
            op: "c",
            before: None,
            after: Some(row(id)),
            tx: 60 + i as u64,
            order: 1,
            ts_ms: later + 20 + i as i64 * 50,
        };
        h.send(0, &c, false);
        h.send_at(1, &c, false, c.ts_ms + 5);
        h.advance(c.ts_ms + 5);
    }
    let out = h.finish();
    let wrong: Vec<_> = out
        .iter()
        .filter(|d| d.kind() == Kind::DataMismatch)
        .collect();
    assert!(wrong.is_empty(), "{:#?}", &wrong[..wrong.len().min(2)]);
    assert_eq!(h.engine.late_records(), 0);
    assert!(h.engine.stats().windows_compared >= 2);
}

#[test]
fn a_redelivery_read_again_after_a_restart_is_not_summed_again() {
    // The run before the restart compared (and committed) the first half; a replica's
    // partition then holds, past its committed offset, a redelivery of records of that half
    // (an at-least-once producer). Read again after the restart, they are duplicates — not
    // changes of windows whose primary side was committed long ago.
    let changes = history(4000, 100, 31);
    let (first, second) = changes.split_at(2000);
    let mut h = Harness::new(&["replica-1"], 4, false);
    let replica = delayed(&h, first, |_, _| 0);
    deliver_live(&mut h, first, &replica, None);
    assert!(h.engine.stats().windows_compared > 0);
    let c: cdc_verifier_core::Checkpoint =
        serde_json::from_str(&serde_json::to_string(&h.engine.checkpoint()).unwrap()).unwrap();
    let through = c.compared_through.expect("windows were compared");
    let redelivered: Vec<Change> = first
        .iter()
        .filter(|x| x.tx <= through.tx)
        .rev()
        .take(20)
        .cloned()
        .collect();
    assert_eq!(redelivered.len(), 20);

    let restarted = |restore: bool| {
        let mut again = Harness::new(&["replica-1"], 4, false);
        if restore {
            again.engine.restore(&c);
        }
        for x in &redelivered {
            again.send_at(1, x, false, second[0].ts_ms);
        }
        let replica = delayed(&again, second, |_, _| 0);
        deliver_live(&mut again, second, &replica, None);
        again.finish();
        again.of_kind(Kind::DataMismatch).len()
    };
    assert_eq!(restarted(true), 0, "the redelivery is not summed again");
    // Without what the checkpoint says, the same records look like changes the primary lacks.
    assert!(restarted(false) > 0, "the control finds the redelivery");
}

#[test]
fn a_table_taken_over_from_an_instance_that_never_committed_is_verified_from_its_start() {
    // Instances sharing the tables: this one compared its other table (`payments`) through
    // the middle of the history and committed; the instance that held `orders` was killed
    // before it committed anything, so `orders` is read here from its start. A replica skipped
    // an update of `orders` in the first half: it is found, though `payments` was compared
    // further (its point is its own).
    let changes = history(4000, 100, 31);
    let (first, _) = changes.split_at(2000);
    let mut before = Harness::new(&["replica-1"], 4, false);
    let replica = delayed(&before, first, |_, _| 0);
    deliver_live(&mut before, first, &replica, None);
    let through = before
        .engine
        .checkpoint()
        .compared_through
        .expect("windows were compared");
    let skipped = first
        .iter()
        .position(|c| c.op == "u" && c.tx + 100 < through.tx)
        .expect("an update well inside the compared half");

    let taken_over = |c: &cdc_verifier_core::Checkpoint| {
        let c: cdc_verifier_core::Checkpoint =
            serde_json::from_str(&serde_json::to_string(c).unwrap()).unwrap();
        let mut h = Harness::new(&["replica-1"], 4, false);
        h.engine.restore(&c);
        let mut replica = delayed(&h, first, |_, _| 0);
        replica.remove(skipped);
        deliver_live(&mut h, first, &replica, None);
        h.finish();
        let found = h.of_kind(Kind::DataMismatch).len();
        (found, h.engine.checkpoint())
    };
    let merged = cdc_verifier_core::Checkpoint {
        compared_ahead: [("payments".to_string(), through)].into(),
        ..Default::default()
    };
    assert_eq!(merged.compared_through_of("orders"), None);
    let (found, after) = taken_over(&merged);
    assert!(found > 0, "the skipped update is found");
    assert!(
        after
            .compared_through_of("orders")
            .is_some_and(|p| p >= through)
    );
    // The control: had `orders` itself been compared through that point, its records there
    // would be read again as duplicates, not summed.
    let (found, _) = taken_over(&cdc_verifier_core::Checkpoint {
        compared_through: Some(through),
        ..Default::default()
    });
    assert_eq!(found, 0, "the control skips what was compared");
}
