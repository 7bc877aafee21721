//! A replica whose connector starts late and writes its backlog in a burst, one partition's
//! records held up on the way (a slow broker, a producer backed up) longer than the skew
//! allowed for: the windows and the starting state compared without them are not told as
//! mismatches while the records may still come (`verify.confirm-ms`); told after that, each
//! range is told recovered once they come.

mod support;

use std::collections::BTreeMap;

use cdc_verifier_core::EngineConfig;
use cdc_verifier_core::verdict::{Divergence, Kind};
use support::harness::{Harness, besides_lag_and_silence, deliver_stamped, snapshot};
use support::{Change, history};

const CONFIRM_MS: i64 = 5000;

/// Runs the burst with partition `held` of the replica `extra` ms later than the others;
/// returns the verdicts besides the late connector's own (lag and silence, and their ends).
fn burst(held: u32, extra: i64) -> Vec<Divergence> {
    let mut cfg = EngineConfig::default();
    cfg.timing.confirm_ms = CONFIRM_MS;
    let mut h = Harness::with_config(cfg, &["replica-1"], 4);
    let t0 = 1_723_650_000_000 - 10;
    let snapshot = snapshot(100, t0);
    let all: Vec<Change> = snapshot.chain(history(10_000, 100, 31)).collect();
    let primary: Vec<(i64, i64, Change)> = all
        .iter()
        .map(|c| (c.ts_ms + 5, c.ts_ms, c.clone()))
        .collect();
    // The replica's connector starts a minute late, then writes its backlog at five times the
    // pace, stamping each record when it writes it; partition `held` arrives `extra` later.
    let start = t0 + 60_000;
    let mut last = [i64::MIN; 4];
    let replica: Vec<(i64, i64, Change)> = all
        .iter()
        .map(|c| {
            let stamp = start + (c.ts_ms - t0) / 5 + i64::from(c.op != "r");
            let p = h.partition_of(c.key());
            let delay = if p == held { extra } else { 0 };
            let at = (stamp + 5 + delay).max(last[p as usize]);
            last[p as usize] = at;
            (at, stamp, c.clone())
        })
        .collect();
    deliver_stamped(&mut h, &primary, &replica);
    h.finish();
    besides_lag_and_silence(h.out)
}

#[test]
fn a_partition_held_up_within_the_confirmation_raises_nothing() {
    for held in 0..4 {
        for extra in [0, 1000, 2500, CONFIRM_MS - 1000] {
            let out = burst(held, extra);
            assert!(
                out.is_empty(),
                "partition {held} {extra} ms late: {} verdicts, the first {:#?}",
                out.len(),
                out.first()
            );
        }
    }
}

#[test]
fn a_partition_held_up_past_the_confirmation_ends_recovered_in_every_range() {
    let out = burst(1, CONFIRM_MS + 2000);
    assert!(
        out.iter().any(|d| d.kind() == Kind::DataMismatch),
        "held past the confirmation, the mismatches are told"
    );
    let mut last: BTreeMap<u64, Kind> = BTreeMap::new();
    for d in &out {
        last.insert(d.range().expect("a range's verdict").index, d.kind());
    }
    let open: Vec<_> = last
        .iter()
        .filter(|(_, k)| **k != Kind::Recovered)
        .collect();
    assert!(open.is_empty(), "ranges left told as differing: {open:?}");
}
