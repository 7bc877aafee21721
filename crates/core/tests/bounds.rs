//! Memory bounds: a replica far behind or far ahead of the primary, or one record at an
//! absurd position, holds no more than the limits; the span given up on is said with an
//! `Unverified` verdict, and everything else is still verified.

mod support;

use cdc_verifier_core::verdict::Kind;
use cdc_verifier_core::{EngineConfig, Limits, Progress};
use support::harness::Harness;
use support::{Change, history};

const PARTITIONS: u32 = 4;

fn harness(limits: Limits) -> Harness {
    let cfg = EngineConfig {
        limits,
        ..EngineConfig::default()
    };
    Harness::with_config(cfg, &["replica-1"], PARTITIONS)
}

/// Partitions of `streams` found read to their end as of `now`, and the clock at `now`.
fn tick(h: &mut Harness, streams: &[usize], now: i64) {
    for s in streams {
        for p in 0..PARTITIONS {
            h.engine
                .set_progress(h.topics[*s], p, Progress::CaughtUpAt(now));
        }
    }
    h.advance(now);
}

fn unverified_records(h: &Harness) -> u64 {
    h.engine
        .topic_stats()
        .filter(|(s, ..)| *s == "replica-1")
        .map(|(.., t)| t.unverified)
        .sum()
}

#[test]
fn a_replica_far_behind_is_given_up_on_past_the_window_bound_and_verified_again_after() {
    let limit = 256 << 10;
    let mut h = harness(Limits {
        window_bytes: limit,
        ..Limits::default()
    });
    let changes = history(40_000, 3000, 11);
    // The replica writes nothing from the 2,000th change to the 30,000th; then it writes what
    // it owed at once and goes on with the primary, except one change it loses near the end.
    let (stop, resume, lost) = (2000, 30_000, 39_000);
    let mut most = 0;
    for (i, c) in changes.iter().enumerate() {
        h.send(0, c, false);
        if i == resume {
            for owed in &changes[stop..resume] {
                h.send_at(1, owed, false, c.ts_ms);
            }
            assert!(!h.of_kind(Kind::Unverified).is_empty(), "{:#?}", h.out);
            assert!(
                most <= 2 * limit,
                "open windows held {most} bytes, the bound is {limit}"
            );
        }
        if (i < stop || i >= resume) && i != lost {
            h.send(1, c, false);
        }
        if i % 100 == 0 {
            tick(&mut h, &[0, 1], c.ts_ms);
            most = most.max(h.engine.held().windows);
        }
    }
    tick(&mut h, &[0, 1], changes.last().unwrap().ts_ms + 2000);
    h.finish();
    assert!(
        unverified_records(&h) > 0,
        "the records of the span are counted as such"
    );
    let mismatches = h.of_kind(Kind::DataMismatch);
    assert_eq!(mismatches.len(), 1, "{mismatches:#?}");
    let key = changes[lost].key();
    assert_eq!(
        mismatches[0].range().map(|r| r.index),
        Some(support::harness::range_of(key)),
        "the loss after the span is found"
    );
    let u = h.of_kind(Kind::Unverified)[0].clone();
    let reason = &u.finding;
    assert!(
        format!("{reason:?}").contains("verify.max-windows-mb"),
        "{reason:?}"
    );
}

#[test]
fn records_parked_while_the_primary_is_stalled_are_bounded_and_said_to_be_unverified() {
    let limit = 128 << 10;
    let mut h = harness(Limits {
        parked_bytes: limit,
        ..Limits::default()
    });
    let changes = history(20_000, 3000, 12);
    // The primary stalls after its 2,000th change (its partitions still being read: its
    // connector is stuck) while the replica writes everything; then the primary resumes.
    let stall = 2000;
    let mut most = 0;
    for (i, c) in changes.iter().enumerate() {
        if i < stall {
            h.send(0, c, false);
        }
        h.send(1, c, false);
        if i % 100 == 0 {
            let streams: &[usize] = if i < stall { &[0, 1] } else { &[1] };
            tick(&mut h, streams, c.ts_ms);
            most = most.max(h.engine.held().parked);
        }
    }
    assert!(!h.of_kind(Kind::Unverified).is_empty(), "{:#?}", h.out);
    assert!(
        most <= 2 * limit,
        "parked {most} bytes, the bound is {limit}"
    );
    let compared = h.engine.stats().windows_compared;
    let end = changes.last().unwrap().ts_ms;
    for c in &changes[stall..] {
        h.send_at(0, c, false, end + 1);
    }
    tick(&mut h, &[0, 1], end + 2000);
    h.finish();
    assert!(
        h.of_kind(Kind::DataMismatch).is_empty(),
        "{:#?}",
        h.of_kind(Kind::DataMismatch)
    );
    assert!(unverified_records(&h) > 0);
    assert!(
        h.engine.stats().windows_compared > compared,
        "windows beyond the span are compared once the primary resumes"
    );
}

#[test]
fn one_record_at_an_absurd_position_holds_back_neither_its_partition_nor_its_offsets_for_long() {
    let mut h = harness(Limits {
        parked_ms: 60_000,
        ..Limits::default()
    });
    let changes = history(20_000, 300, 13);
    let absurd = Change {
        tx: (1 << 40) - 2,
        ..changes[0].clone()
    };
    let p = h.partition_of(absurd.key());
    let absurd_offset = h.offsets[1][p as usize];
    h.send(1, &absurd, false);
    for (i, c) in changes.iter().enumerate() {
        h.send(0, c, false);
        h.send(1, c, false);
        if i % 100 == 0 {
            tick(&mut h, &[0, 1], c.ts_ms);
        }
    }
    // Read to the end well past the producers' skew: all but the absurd record are passed.
    tick(&mut h, &[0, 1], changes.last().unwrap().ts_ms + 5_000);
    let parked: u64 = h
        .engine
        .topic_stats()
        .filter(|(s, ..)| *s == "replica-1")
        .map(|(.., t)| t.parked)
        .sum();
    assert_eq!(parked, 1, "only the absurd record waits");
    assert!(h.of_kind(Kind::DataMismatch).is_empty(), "{:#?}", h.out);
    let end = changes.last().unwrap().ts_ms;
    tick(&mut h, &[0, 1], end + 61_000);
    let given_up = h.of_kind(Kind::Unverified);
    assert_eq!(given_up.len(), 1, "{:#?}", h.out);
    assert!(
        h.engine
            .pending_offset(h.topics[1], p)
            .is_none_or(|o| o > absurd_offset),
        "its partition's offsets may be committed past it"
    );
}

#[test]
fn drill_down_follows_keys_up_to_its_bound_and_ranges_are_still_verified() {
    let cfg = EngineConfig {
        drill: cdc_verifier_core::Drill::All,
        limits: Limits {
            drill_keys: 5,
            ..Limits::default()
        },
        ..EngineConfig::default()
    };
    let mut h = Harness::with_config(cfg, &["replica-1"], PARTITIONS);
    let changes = history(3000, 200, 14);
    let lost = 2500;
    for (i, c) in changes.iter().enumerate() {
        h.send(0, c, false);
        if i != lost {
            h.send(1, c, false);
        }
    }
    h.finish();
    assert!(h.engine.stats().drill_keys_skipped > 0);
    let mismatches = h.of_kind(Kind::DataMismatch);
    assert_eq!(mismatches.len(), 1, "{mismatches:#?}");
    assert_eq!(
        mismatches[0].range().map(|r| r.index),
        Some(support::harness::range_of(changes[lost].key()))
    );
}
