//! A replica that lost records: every loss gets a verdict, however little traffic there is.

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
