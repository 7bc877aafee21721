//! The verifier's clock against records stamped in the future: one wrong stamp must not move
//! it for good.

mod support;

use cdc_verifier_core::Progress;
use cdc_verifier_core::verdict::Kind;
use support::harness::Harness;
use support::{Change, history};

/// Delivers records as the service reads them: in order of arrival, each stamped as given;
/// every 100 ms of arrival the wall clock is told and every partition is found read to its
/// end as of the engine's clock; the engine advances to the newest believable stamp. Without
/// `tell_wall_clock`, the engine is never told the wall clock (as before it could be).
fn deliver(h: &mut Harness, arrivals: &[(i64, usize, i64, Change)], tell_wall_clock: bool) {
    let mut next_probe = arrivals[0].0;
    let mut newest = i64::MIN;
    for (arrival, stream, stamp, c) in arrivals {
        while *arrival >= next_probe {
            if tell_wall_clock {
                h.engine.set_wall_clock(next_probe);
            }
            let as_of = h.engine.now_ms();
            for topic in h.topics.clone() {
                for p in 0..h.partitions {
                    h.engine.set_progress(topic, p, Progress::CaughtUpAt(as_of));
                }
            }
            if newest != i64::MIN {
                h.advance(newest);
            }
            next_probe += 100;
        }
        h.send_at(*stream, c, false, *stamp);
        if *stamp > newest && !h.engine.in_future(*stamp) {
            newest = *stamp;
        }
    }
    h.advance(newest);
}

/// Every change on the primary and on the replica, each arriving when stamped, except the
/// replica's partition 1, which arrives 300 ms late (a producer's skew, within what is
/// allowed); the primary's 100th record is stamped an hour ahead.
fn traffic(h: &Harness, changes: &[Change]) -> Vec<(i64, usize, i64, Change)> {
    let mut out = Vec::new();
    for (i, c) in changes.iter().enumerate() {
        let stamp = if i == 100 {
            c.ts_ms + 3_600_000
        } else {
            c.ts_ms
        };
        out.push((c.ts_ms, 0, stamp, c.clone()));
        let delay = if h.partition_of(c.key()) == 1 { 300 } else { 0 };
        out.push((c.ts_ms + delay, 1, c.ts_ms, c.clone()));
    }
    out.sort_by_key(|(arrival, stream, _, _)| (*arrival, *stream));
    out
}

#[test]
fn one_record_stamped_in_the_future_does_not_leave_the_traffic_after_it_unverified() {
    let changes = history(6000, 200, 41);
    let run = |tell_wall_clock: bool| {
        let mut h = Harness::new(&["replica-1"], 4, false);
        let arrivals = traffic(&h, &changes);
        deliver(&mut h, &arrivals, tell_wall_clock);
        let late = h.engine.late_records();
        let compared = h.engine.stats().windows_compared;
        h.finish();
        (h, late, compared)
    };

    let (h, late, compared) = run(true);
    assert_eq!(late, 0, "every record after the future one is verified");
    assert!(h.out.is_empty(), "{:#?}", &h.out[..h.out.len().min(3)]);
    let windows = (changes.last().unwrap().ts_ms - changes[0].ts_ms)
        / h.engine.config().timing.cut_interval_ms;
    assert!(
        compared >= windows as u64 - 5,
        "windows compared as the traffic went: {compared} of {windows}"
    );
    let future: u64 = h.engine.topic_stats().map(|(_, _, _, s)| s.future).sum();
    assert_eq!(future, 1, "the record stamped in the future is counted");
    let said = h.engine.future_records();
    assert_eq!(said.len(), 1, "{said:?}");
    assert_eq!(said[0].topic, "primary.shop.orders");
    assert!(said[0].timestamp_ms > said[0].limit_ms);
    assert!(
        h.engine.now_ms() < changes.last().unwrap().ts_ms + 1000,
        "the clock stays with the traffic"
    );

    // Not bounded by the wall clock, the one stamp moves the clock an hour ahead: every
    // partition looks read through the next hour, windows compare before the replica's
    // partition 1 has delivered, and its records after that come late. The mismatches those
    // comparisons find wait for partition 1 to be read past their windows, and its late
    // records withdraw them: none is told, but none of those windows was compared whole.
    let (h, late, _) = run(false);
    assert!(late > 100, "{late} late records");
    assert!(
        h.engine.stats().withdrawn > 0,
        "mismatches found early and withdrawn"
    );
    assert!(
        h.of_kind(Kind::DataMismatch).is_empty(),
        "{:#?}",
        h.out.first()
    );
}
