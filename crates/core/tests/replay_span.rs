//! A replay of a span of history selected by commit time: when each partition has been read
//! past the span, and lag judged in commit time, whatever the record times and the order the
//! topics are read in.

mod support;

use cdc_verifier_core::verdict::Kind;
use cdc_verifier_core::{EngineConfig, LagBy, Progress};
use support::harness::Harness;
use support::{Change, history};

/// A replay from Kafka: each topic read partition by partition, to its end, in the order of
/// `streams`; each record stamped `stamp(stream, change)`.
fn replay(
    h: &mut Harness,
    streams: &[(usize, Vec<Change>)],
    stamp: impl Fn(usize, &Change) -> i64,
) {
    for s in 0..h.topics.len() {
        for p in 0..h.partitions {
            h.engine.set_progress(h.topics[s], p, Progress::Reading);
        }
    }
    let mut n = 0;
    let mut newest = i64::MIN;
    for (s, changes) in streams {
        for p in 0..h.partitions {
            let parts = h.partitions as i64;
            for c in changes
                .iter()
                .filter(|c| c.key().rem_euclid(parts) as u32 == p)
            {
                let t = stamp(*s, c);
                h.send_at(*s, c, false, t);
                newest = newest.max(t);
                n += 1;
                if n % 512 == 0 {
                    h.advance(newest);
                }
            }
            h.engine.set_progress(h.topics[*s], p, Progress::Ended);
        }
    }
    h.advance(newest);
    h.finish();
}

/// A span in the middle of the history, and lag measured as configured.
fn span_config(changes: &[Change], lag_by: LagBy) -> EngineConfig {
    let t0 = changes[0].ts_ms;
    EngineConfig {
        origin_span: (Some(t0 + 3_000), Some(t0 + 8_000)),
        lag_by,
        ..EngineConfig::default()
    }
}

#[test]
fn a_span_replay_reports_no_lag_for_a_replica_whose_topic_was_read_later() {
    // The replica applied every transaction; its connector read its binlog 8 s after the
    // primary's did (a restart, a backfill), so its records are stamped 8 s later; the replay
    // reads the primary's topic first, then the replica's.
    let changes = history(6000, 200, 51);
    let run = |lag_by: LagBy| {
        let mut h = Harness::with_config(span_config(&changes, lag_by), &["replica-1"], 4);
        replay(
            &mut h,
            &[(0, changes.clone()), (1, changes.clone())],
            |s, c| c.ts_ms + if s == 1 { 8_000 } else { 5 },
        );
        h
    };
    let h = run(LagBy::CommitTime);
    assert!(h.out.is_empty(), "{:#?}", &h.out[..h.out.len().min(3)]);
    assert!(h.engine.stats().windows_compared > 10);
    let events: u64 = h.engine.topic_stats().map(|(_, _, _, s)| s.events).sum();
    assert!(
        events > 2 * 2000,
        "the span's events were verified: {events}"
    );

    // Judged by record times, as before: the 8 s are taken for the replica's lag.
    let h = run(LagBy::RecordTime);
    assert_eq!(h.of_kind(Kind::ReplicaLag).len(), 1, "{:#?}", h.out);
}

#[test]
fn a_span_replay_reports_a_replica_that_committed_later_as_lagging() {
    // The replica committed the span's later transactions 5 s after the primary (it records
    // its own commit times); its records were read at once.
    let changes = history(6000, 200, 52);
    let t0 = changes[0].ts_ms;
    let replica: Vec<Change> = changes
        .iter()
        .map(|c| Change {
            ts_ms: if c.ts_ms >= t0 + 5_000 {
                c.ts_ms + 5_000
            } else {
                c.ts_ms
            },
            ..c.clone()
        })
        .collect();
    let mut h = Harness::with_config(span_config(&changes, LagBy::CommitTime), &["replica-1"], 4);
    replay(&mut h, &[(1, replica), (0, changes.clone())], |_, c| {
        c.ts_ms
    });
    let lag = h.of_kind(Kind::ReplicaLag);
    assert_eq!(lag.len(), 1, "{:#?}", h.out);
    assert!(
        lag[0].lag().unwrap().ms_behind >= 4_000,
        "{:?}",
        lag[0].lag()
    );
    assert!(h.of_kind(Kind::DataMismatch).is_empty(), "{:#?}", h.out);
}

#[test]
fn a_partition_has_passed_the_span_once_it_is_read_past_its_end_in_time_and_position() {
    let changes = history(6000, 200, 53);
    let cfg = span_config(&changes, LagBy::CommitTime);
    let to = cfg.origin_span.1.unwrap();
    let slack = 1_000;
    let mut h = Harness::with_config(cfg, &["replica-1"], 1);
    let (primary, replica) = (h.topics[0], h.topics[1]);
    let mut passed_at = [None, None];
    // The replica first, up to the end of the span and a little past it: its positions past
    // the span are not known to be past it before the primary has been read there.
    for c in changes.iter().filter(|c| c.ts_ms < to + 2 * slack) {
        h.send(1, c, false);
        assert!(!h.engine.passed_span(replica, 0, slack));
    }
    for c in &changes {
        h.send(0, c, false);
        if passed_at[0].is_none() && h.engine.passed_span(primary, 0, slack) {
            passed_at[0] = Some(c.ts_ms);
        }
        if passed_at[1].is_none() && h.engine.passed_span(replica, 0, slack) {
            passed_at[1] = Some(c.ts_ms);
        }
    }
    assert_eq!(
        passed_at[0],
        Some(to + slack),
        "the primary: once a commit time is past"
    );
    assert_eq!(
        passed_at[1],
        Some(to),
        "the replica: once the primary's first position past the span is known"
    );
    assert!(!h.engine.passed_span(primary, 0, 10 * slack));

    // Without an end to the span, nothing is ever passed.
    let mut h = Harness::new(&["replica-1"], 1, false);
    for c in &changes {
        h.send(0, c, false);
    }
    assert!(!h.engine.passed_span(h.topics[0], 0, 0));
}
