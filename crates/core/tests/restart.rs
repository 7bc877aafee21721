//! A restart continues a schema drift in progress: the windows before the drift read again
//! (another replica had not compared them at the stop) neither close its episode nor open it
//! again.

mod support;

use cdc_verifier_core::verdict::{Divergence, Finding, Kind, Recovery};
use cdc_verifier_core::{Checkpoint, Progress};
use support::harness::Harness;
use support::{Change, history};

/// Sends `(stream, change, v2)` in order, as a live consumer reads them: every 100 ms of
/// record time every partition is found read to its end and the engine advances.
fn live(h: &mut Harness, sends: &[(usize, Change, bool)]) {
    let mut next = sends[0].1.ts_ms;
    for (s, c, v2) in sends {
        while c.ts_ms >= next {
            for topic in h.topics.clone() {
                for p in 0..h.partitions {
                    h.engine.set_progress(topic, p, Progress::CaughtUpAt(next));
                }
            }
            h.advance(next);
            next += 100;
        }
        h.send(*s, c, *v2);
    }
}

fn drift_verdicts(out: &[Divergence]) -> Vec<&Divergence> {
    out.iter()
        .filter(|d| {
            d.kind() == Kind::SchemaDrift
                || matches!(d.finding, Finding::Recovered(Recovery::SchemaDrift { .. }))
        })
        .collect()
}

#[test]
fn a_restart_continues_a_drift_without_closing_it_on_windows_read_again() {
    let mut changes = history(4000, 200, 6);
    let migrate_at = 1000;
    for c in &mut changes[migrate_at..] {
        for r in [c.before.as_mut(), c.after.as_mut()].into_iter().flatten() {
            r.currency = "EUR".into();
        }
    }
    // replica-2 keeps writing v1 after the migration (its rows lose `currency`).
    let outdated = |c: &Change| {
        let mut old = c.clone();
        for r in [old.before.as_mut(), old.after.as_mut()]
            .into_iter()
            .flatten()
        {
            r.currency = "USD".into();
        }
        old
    };
    // Changes `range` of each stream whose own range it is in.
    let sends = |primary: std::ops::Range<usize>,
                 replica1: std::ops::Range<usize>,
                 replica2: std::ops::Range<usize>| {
        let mut out = Vec::new();
        let end = primary.end.max(replica1.end).max(replica2.end);
        for (i, c) in changes.iter().enumerate().take(end) {
            let v2 = i >= migrate_at;
            if primary.contains(&i) {
                out.push((0, c.clone(), v2));
            }
            if replica1.contains(&i) {
                out.push((1, c.clone(), v2));
            }
            if replica2.contains(&i) {
                out.push((2, outdated(c), false));
            }
        }
        out
    };

    // Stopped once replica-2's drift was told, while replica-1 was behind, before the
    // migration: the windows between are compared by replica-2 only, and read again after
    // the restart.
    let behind = migrate_at - 300;
    let mut before = Harness::new(&["replica-1", "replica-2"], 4, false);
    live(&mut before, &sends(0..2000, 0..behind, 0..2000));
    let opened = drift_verdicts(&before.out);
    assert_eq!(opened.len(), 1, "{opened:#?}");
    assert_eq!(opened[0].kind(), Kind::SchemaDrift);
    let c: Checkpoint =
        serde_json::from_str(&serde_json::to_string(&before.engine.checkpoint()).unwrap()).unwrap();
    assert_eq!(c.drifting, [("replica-2".into(), "orders".into())]);
    let through = c.compared_through.expect("windows were compared").tx;
    assert!(
        through < changes[migrate_at].tx,
        "the windows before the drift are read again"
    );

    let mut after = Harness::new(&["replica-1", "replica-2"], 4, false);
    after.engine.restore(&c);
    live(&mut after, &sends(behind..4000, behind..4000, behind..4000));
    after.finish();
    let again = drift_verdicts(&after.out);
    assert!(
        again.is_empty(),
        "the drift goes on, told once before the restart: {again:#?}"
    );
}

/// A replica table found silent before a restart stays silent after it: its records read
/// again, from before it fell silent, do not end the silence (nor open it again).
#[test]
fn a_restart_continues_a_silence_without_ending_it_on_records_read_again() {
    let changes = history(4000, 200, 9);
    let stops_at = 1500;
    let mut cfg = cdc_verifier_core::EngineConfig::default();
    cfg.timing.silent_after_ms = 1000;
    let sends = |primary: std::ops::Range<usize>, replica: std::ops::Range<usize>| {
        let mut out = Vec::new();
        for (i, c) in changes.iter().enumerate() {
            if primary.contains(&i) {
                out.push((0, c.clone(), false));
            }
            if replica.contains(&i) {
                out.push((1, c.clone(), false));
            }
        }
        out
    };
    let silence = |out: &[Divergence]| -> Vec<String> {
        out.iter()
            .filter(|d| {
                d.kind() == Kind::StreamSilent
                    || matches!(d.finding, Finding::Recovered(Recovery::StreamSilent { .. }))
            })
            .map(|d| format!("{:?} at {}", d.kind(), d.detected_at_ms))
            .collect()
    };

    let mut before = Harness::with_config(cfg.clone(), &["replica-1"], 4);
    live(&mut before, &sends(0..3000, 0..stops_at));
    assert_eq!(silence(&before.out).len(), 1, "{:?}", silence(&before.out));
    let c: Checkpoint =
        serde_json::from_str(&serde_json::to_string(&before.engine.checkpoint()).unwrap()).unwrap();
    assert_eq!(c.silent, [("replica-1".into(), "orders".into())]);

    // Restarted (or taken over): both streams read again from before the stop, the
    // replica's from before it fell silent; the primary goes on writing.
    let mut after = Harness::with_config(cfg, &["replica-1"], 4);
    after.engine.restore(&c);
    live(&mut after, &sends(2500..4000, stops_at - 300..stops_at));
    let again = silence(&after.out);
    assert!(again.is_empty(), "the silence goes on: {again:?}");
}
