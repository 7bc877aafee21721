//! A replica that lost records: every loss gets a verdict, however little traffic there is;
//! and one that lost nothing gets none, whatever order its snapshot is released in or however
//! late it arrives.

mod support;

use cdc_verifier_core::verdict::Kind;
use support::harness::{Harness, delayed, deliver, range_of};
use support::{Change, Row, history};

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

/// One partition's snapshot reads come after the starting state was compared (its producer
/// held them back longer than the skew allowed for, as a connector writing its snapshot in one
/// burst can): they count into the state compared, and nothing differs — whichever stream's
/// reads were late.
#[test]
fn snapshot_reads_later_than_the_starting_state_count_into_it() {
    for late in ["replica-1", "primary"] {
        let mut h = Harness::new(&["replica-1"], 4, false);
        let skew = h.engine.config().timing.publish_skew_ms;
        let held = 1;
        let t0 = 1_723_650_000_000 - 10;
        let snapshot: Vec<Change> = (1..=100)
            .map(|id| Change {
                op: "r",
                before: None,
                after: Some(Row::new(id, "placed", id * 13)),
                tx: 1,
                order: id,
                ts_ms: t0,
            })
            .collect();
        // The held partition's first change comes well after its reads: until then the
        // snapshot is all it holds.
        let first_change = t0 + skew + 3000;
        let all: Vec<Change> = snapshot
            .iter()
            .cloned()
            .chain(
                history(4000, 100, 31)
                    .into_iter()
                    .filter(|c| h.partition_of(c.key()) != held || c.ts_ms > first_change),
            )
            .collect();
        let on_time = delayed(&h, &all, |_, _| 0);
        let held_back = delayed(&h, &all, |i, p| {
            if i < snapshot.len() && p == held {
                skew + 2000
            } else {
                0
            }
        });
        let (primary, replica) = if late == "primary" {
            (held_back, on_time)
        } else {
            (on_time, held_back)
        };
        deliver(&mut h, &primary, &replica, None);
        h.finish();
        assert!(
            h.engine.late_records() > 0,
            "{late}: the held reads must come after the starting state was compared"
        );
        assert!(h.out.is_empty(), "{late}: {:#?}", h.out);
        for (stream, .., t) in h.engine.topic_stats() {
            assert_eq!(
                (t.snapshot, t.snapshot_late),
                (100, 0),
                "{late}: {stream}'s reads all count"
            );
        }
    }
}

/// A starting state's mismatch waits while a partition of its table has sent no change (its
/// reads may still come); a stop that a restart continues publishes it, since the restart
/// verifies changes only and would not find it again.
#[test]
fn a_starting_states_mismatch_held_at_a_stop_is_published_by_the_stop() {
    let mut h = Harness::new(&["replica-1"], 4, false);
    let quiet = 2;
    let t0 = 1_723_650_000_000 - 10;
    let read = |id: i64, total: i64| Change {
        op: "r",
        before: None,
        after: Some(Row::new(id, "placed", total)),
        tx: 1,
        order: id,
        ts_ms: t0,
    };
    let differs = (1..=100).find(|id| h.partition_of(*id) != quiet).unwrap();
    let primary_reads: Vec<Change> = (1..=100).map(|id| read(id, id * 13)).collect();
    let replica_reads: Vec<Change> = (1..=100)
        .map(|id| read(id, if id == differs { 7 } else { id * 13 }))
        .collect();
    // The quiet partition's keys never change: it sends its reads and nothing after.
    let changes: Vec<Change> = history(2000, 100, 32)
        .into_iter()
        .filter(|c| h.partition_of(c.key()) != quiet)
        .collect();
    let stream = |reads: &[Change]| -> Vec<(i64, Change)> {
        let all: Vec<Change> = reads.iter().chain(&changes).cloned().collect();
        delayed(&h, &all, |_, _| 0)
    };
    let (primary, replica) = (stream(&primary_reads), stream(&replica_reads));
    deliver(&mut h, &primary, &replica, None);
    assert!(
        h.engine.stats().windows_compared > 0 && h.of_kind(Kind::DataMismatch).is_empty(),
        "held while the quiet partition may still send reads: {:#?}",
        h.out
    );
    h.engine.release_starts(&mut h.out);
    let mm = h.of_kind(Kind::DataMismatch);
    assert_eq!(mm.len(), 1, "{:#?}", h.out);
    assert_eq!(mm[0].range().unwrap().index, range_of(differs));
}
