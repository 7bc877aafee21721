//! What another verifier says it read of a stream (its reach) counts as if read here: a
//! verifier whose tables went quiet, while the streams' other tables (held elsewhere) went on,
//! closes its windows as one process reading every table would.

mod support;

use cdc_verifier_core::{Progress, Reach};
use support::harness::Harness;
use support::history;

/// Open windows, and how far the clock moved past the primary's last record, after both
/// sides wrote the same 400 changes of the table held here and nothing since, everything read;
/// `told`: another verifier said that both streams wrote later records (of their other
/// tables), 2 and 4 s after the last one here.
fn open_windows(told: bool) -> (usize, i64) {
    let changes = history(400, 50, 7);
    let mut h = Harness::new(&["replica"], 2, false);
    for c in &changes {
        h.send(0, c, false);
        h.send(1, c, false);
    }
    for t in h.topics.clone() {
        for p in 0..2 {
            h.engine.set_progress(t, p, Progress::Following);
        }
    }
    let last = changes.last().unwrap();
    if told {
        let origins = h.engine.origin_epochs();
        for stream in ["primary", "replica"] {
            for (after_ms, tx) in [(2_000, last.tx + 5), (4_000, last.tx + 9)] {
                let reach = Reach {
                    stream: stream.into(),
                    ts_ms: last.ts_ms + after_ms,
                    tx,
                    order: 0,
                };
                assert!(h.engine.note_elsewhere(&reach, &origins));
            }
        }
    }
    // The clock a verifier passes when it read nothing new: its newest record's.
    h.advance(last.ts_ms);
    (h.engine.open_windows(), h.engine.now_ms() - last.ts_ms)
}

#[test]
fn streams_written_further_elsewhere_close_the_windows_here() {
    let (alone, clock_alone) = open_windows(false);
    assert_eq!(clock_alone, 0);
    assert!(
        alone > 0,
        "with nothing newer read or said, the last window waits for the clock"
    );
    let (told, clock_told) = open_windows(true);
    assert_eq!(
        told, 0,
        "told the streams wrote past it, the last window closes"
    );
    // The clock moved to the newest record said, at the start of its 10 ms bucket.
    assert!(
        (3_990..=4_000).contains(&clock_told),
        "clock moved {clock_told} ms"
    );
}
