//! One partition's records held up on their way (a slow broker leading it, a producer backed
//! up) longer than the skew allowed for, on the primary or on the replica, from the start or
//! throughout: the windows and the starting state compared without them tell nothing, as long
//! as the records come within `verify.confirm-ms`.

mod support;

use cdc_verifier_core::EngineConfig;
use cdc_verifier_core::verdict::Divergence;
use support::harness::{Harness, besides_lag_and_silence, deliver_stamped, snapshot};
use support::{Change, history};

#[derive(Clone, Copy, Debug)]
enum Held {
    /// Every partition of the primary.
    Primary,
    /// One partition of the primary, throughout.
    PrimaryPartition,
    /// One partition of the primary, for its snapshot and first changes.
    PrimaryPartitionAtStart,
    /// One partition of the replica, for its snapshot and first changes.
    ReplicaPartitionAtStart,
}

fn run(held: Held, partition: u32, extra: i64, seed: u64) -> Vec<Divergence> {
    let mut cfg = EngineConfig::default();
    cfg.timing.confirm_ms = 5000;
    let mut h = Harness::with_config(cfg, &["replica-1"], 4);
    let t0 = 1_723_650_000_000 - 10;
    let snapshot = snapshot(100, t0);
    let all: Vec<Change> = snapshot.chain(history(3000, 100, seed)).collect();
    let (mut last_p, mut last_r) = ([i64::MIN; 4], [i64::MIN; 4]);
    let (mut primary, mut replica) = (Vec::new(), Vec::new());
    for (i, c) in all.iter().enumerate() {
        let p = h.partition_of(c.key());
        let at_start = i < 400;
        let (dp, dr) = match held {
            Held::Primary => (extra, 0),
            Held::PrimaryPartition if p == partition => (extra, 0),
            Held::PrimaryPartitionAtStart if p == partition && at_start => (extra, 0),
            Held::ReplicaPartitionAtStart if p == partition && at_start => (0, extra),
            _ => (0, 0),
        };
        let at = (c.ts_ms + 5 + dp).max(last_p[p as usize]);
        last_p[p as usize] = at;
        primary.push((at, c.ts_ms, c.clone()));
        let at = (c.ts_ms + 5 + dr).max(last_r[p as usize]);
        last_r[p as usize] = at;
        replica.push((at, c.ts_ms, c.clone()));
    }
    deliver_stamped(&mut h, &primary, &replica);
    h.finish();
    besides_lag_and_silence(h.out)
}

#[test]
fn a_partition_held_up_on_either_stream_raises_nothing() {
    let mut wrong = Vec::new();
    for (seed, held) in [
        Held::Primary,
        Held::PrimaryPartition,
        Held::PrimaryPartitionAtStart,
        Held::ReplicaPartitionAtStart,
    ]
    .into_iter()
    .enumerate()
    {
        for partition in 0..4 {
            for extra in [300, 800, 1500, 2500, 4000] {
                let out = run(held, partition, extra, 7 + seed as u64);
                if let Some(d) = out.first() {
                    let w = d.window().map(|w| (w.first.tx, w.last.tx));
                    wrong.push(format!(
                        "{held:?} {partition} {extra} ms: {} verdicts, the first {:?} at {w:?}",
                        out.len(),
                        d.kind()
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// A transaction of two events in one partition, its second held up on the replica past the
/// skew while the other partitions go on: its window is compared without it, and when it
/// comes it is a late first delivery (its transaction's first event was seen, not this one),
/// not a redelivery, and it makes the window whole.
#[test]
fn the_rest_of_a_transaction_held_up_is_not_taken_for_a_redelivery() {
    let mut h = Harness::new(&["replica-1"], 4, false);
    let mut changes = history(3000, 100, 11);
    // Transaction 1500 gets a second event, on a key of the same partition.
    let first = changes[1500].clone();
    let other = (1..=100)
        .map(|k| k + 1000)
        .find(|k| h.partition_of(*k) == h.partition_of(first.key()))
        .unwrap();
    let mut second = first.clone();
    second.op = "c";
    second.before = None;
    second.after = Some(support::Row::new(other, "placed", 7));
    // (Without a transaction block, events of a transaction share its position.)
    second.order = first.order;
    changes.insert(1501, second);
    let primary: Vec<(i64, i64, Change)> = changes
        .iter()
        .map(|c| (c.ts_ms + 5, c.ts_ms, c.clone()))
        .collect();
    // (Its partition's records after it wait behind it.)
    let mut last = [i64::MIN; 4];
    let replica: Vec<(i64, i64, Change)> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let held = if i == 1501 { 2500 } else { 0 };
            let p = h.partition_of(c.key()) as usize;
            last[p] = last[p].max(c.ts_ms + 5 + held);
            (last[p], c.ts_ms, c.clone())
        })
        .collect();
    deliver_stamped(&mut h, &primary, &replica);
    h.finish();
    assert!(
        h.engine.late_records() > 0,
        "the held event comes after its window"
    );
    let out = besides_lag_and_silence(std::mem::take(&mut h.out));
    assert!(out.is_empty(), "{:#?}", out.first());
}
