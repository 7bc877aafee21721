//! A replica that lost records: every loss gets a verdict, however little traffic there is;
//! and one that lost nothing gets none, whatever order its snapshot is released in.

mod support;

use cdc_verifier_core::verdict::Kind;
use support::harness::Harness;
use support::history;

fn lost_verdicts(h: &Harness) -> usize {
    h.of_kind(Kind::DataMismatch).len() + h.of_kind(Kind::StreamSilent).len()
}

#[test]
fn a_replica_that_lost_the_only_record_gets_a_verdict() {
    let changes = history(1, 10, 3);
    let mut h = Harness::new(&["replica-1"], 3, false);
    h.send(0, &changes[0], false);
    h.finish();
    assert!(lost_verdicts(&h) > 0, "{:#?}", h.out);
}

#[test]
fn a_replica_that_lost_the_first_of_a_few_records_gets_a_verdict() {
    let changes = history(5, 10, 3);
    let mut h = Harness::new(&["replica-1"], 3, false);
    for (i, c) in changes.iter().enumerate() {
        h.send(0, c, false);
        if i > 0 {
            h.send(1, c, false);
        }
    }
    h.finish();
    assert!(lost_verdicts(&h) > 0, "{:#?}", h.out);
}

#[test]
fn a_replica_that_lost_the_only_snapshot_row_gets_a_verdict() {
    let mut changes = history(1, 10, 3);
    changes[0].op = "r";
    changes[0].before = None;
    let mut h = Harness::new(&["replica-1"], 3, false);
    h.send(0, &changes[0], false);
    h.finish();
    assert!(lost_verdicts(&h) > 0, "{:#?}", h.out);
}

/// A replica's snapshot reads and first change, all ahead of the primary (parked), then the
/// primary's: the reads are the replica's snapshot, not a second one, and nothing differs.
#[test]
fn snapshot_reads_parked_ahead_of_the_primary_are_the_replicas_snapshot() {
    let mut changes = history(3, 10, 5);
    for (i, c) in changes.iter_mut().enumerate() {
        c.ts_ms = 1_700_000_000_000 + i as i64;
        if i < 2 {
            c.op = "r";
            c.before = None;
            c.tx = 1;
            c.order = i as i64 + 1;
        } else {
            c.op = "u";
            c.before = c.after.clone();
            c.tx = 2;
            c.order = 1;
        }
    }
    let mut h = Harness::new(&["replica-1"], 1, false);
    for c in &changes {
        let taken = h.send(1, c, false);
        assert_eq!(taken, cdc_verifier_core::Ingested::Parked);
    }
    for c in &changes {
        h.send(0, c, false);
    }
    h.finish();
    let replica = h
        .engine
        .topic_stats()
        .find(|(s, ..)| *s == "replica-1")
        .map(|(.., t)| t.clone())
        .unwrap();
    assert_eq!((replica.snapshot, replica.snapshot_late), (2, 0));
    assert!(h.out.is_empty(), "{:#?}", h.out);
}

/// Both streams have a snapshot; the replica loses the primary's only change.
#[test]
fn a_replica_that_lost_the_only_change_after_its_snapshot_gets_a_verdict() {
    let mut changes = history(2, 10, 3);
    changes[0].op = "r";
    changes[0].before = None;
    changes[1].op = "c";
    changes[1].before = None;
    let other = changes[0].key() + 1;
    if let Some(a) = changes[1].after.as_mut() {
        a.id = other;
    }
    for c in changes.iter_mut() {
        c.tx = 1;
        c.ts_ms = 1_700_000_000_000;
    }
    changes[1].order = 2;
    let mut h = Harness::new(&["replica-1"], 2, false);
    h.send(0, &changes[0], false);
    h.send(0, &changes[1], false);
    h.send_raw(0, 1, None, Some(&[]), 1_700_000_000_000);
    h.send_at(1, &changes[0], false, 1_700_000_000_001);
    h.offsets[1][1] += 1;
    h.send_raw(1, 1, None, Some(&[]), 1_700_000_000_003);
    h.finish();
    assert!(lost_verdicts(&h) > 0, "{:#?}", h.out);
}
