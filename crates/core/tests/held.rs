//! A mismatch held while the replica has not yet written past the primary's last change of the
//! table: its offsets stay uncommitted while it is held (a restart finds it again), and a table
//! that stays quiet releases it once the replica has been read past that change.

mod support;

use cdc_verifier_core::verdict::Kind;
use cdc_verifier_core::{Progress, Record, TopicId};
use support::harness::Harness;
use support::{Change, Ids, history, register_table, wire_pair};

struct Two {
    h: Harness,
    /// Per stream: `customers`' topic, ids and next offset.
    customers: Vec<(TopicId, Ids, i64)>,
}

impl Two {
    fn new() -> Two {
        let mut h = Harness::new(&["replica-1"], 1, false);
        let mut customers = Vec::new();
        for (i, s) in ["primary", "replica-1"].iter().enumerate() {
            let ids = register_table(&mut h.src, s, "customers");
            let t = h
                .engine
                .add_topic(&format!("{s}.shop.customers"), i as u16, "customers", 1);
            customers.push((t, ids, 0));
        }
        Two { h, customers }
    }

    fn send_customer(&mut self, s: usize, c: &Change) {
        let (topic, ids, offset) = &mut self.customers[s];
        let (k, v) = wire_pair(ids, c, false);
        let rec = Record {
            topic: *topic,
            partition: 0,
            offset: *offset,
            timestamp_ms: c.ts_ms,
            key: Some(&k),
            value: Some(&v),
        };
        *offset += 1;
        self.h.engine.ingest(&rec, &mut self.h.src).unwrap();
    }

    /// The clock at `now`, every partition still being read (a backlog).
    fn tick_reading(&mut self, now: i64) {
        let mut topics = self.h.topics.clone();
        topics.extend(self.customers.iter().map(|(t, ..)| *t));
        for t in topics {
            self.h.engine.set_progress(t, 0, Progress::Reading);
        }
        self.h.advance(now);
    }

    /// Every partition found read to its end now, and the clock at `now`.
    fn tick(&mut self, now: i64) {
        let mut topics = self.h.topics.clone();
        topics.extend(self.customers.iter().map(|(t, ..)| *t));
        for t in topics {
            self.h.engine.set_progress(t, 0, Progress::CaughtUpAt(now));
        }
        self.h.advance(now);
    }

    fn orders_mismatches(&self) -> usize {
        self.h
            .of_kind(Kind::DataMismatch)
            .iter()
            .filter(|d| d.table() == Some("orders"))
            .count()
    }
}

#[test]
fn a_mismatch_held_for_a_quiet_table_keeps_its_offsets_and_is_published_once_the_replica_is_read_past_it()
 {
    // `orders` and `customers` alternate, then only `customers` is written; the replica
    // loses `orders`' last change, after which `orders` is never written again.
    let changes = history(2000, 50, 7);
    let last_order = 998;
    let mut t = Two::new();
    let mut lost_offset = None;
    let mut held_checks = 0;
    for (i, c) in changes.iter().enumerate() {
        if i < 1000 && i % 2 == 0 {
            if i == last_order {
                lost_offset = Some(t.h.offsets[0][0]);
            }
            t.h.send(0, c, false);
            if i != last_order {
                t.h.send(1, c, false);
            }
        } else {
            t.send_customer(0, c);
            t.send_customer(1, c);
        }
        if i % 20 == 0 {
            t.tick(c.ts_ms);
        }
    }
    let lost_offset = lost_offset.unwrap();
    let end = changes.last().unwrap().ts_ms;
    let mut published_at = None;
    for step in 0..1200 {
        let now = end + step * 100;
        t.tick(now);
        if t.orders_mismatches() > 0 {
            published_at.get_or_insert(now - end);
            continue;
        }
        // Held: the offsets of the lost change's window are not committed.
        let pending = t.h.engine.pending_offset(t.h.topics[0], 0);
        assert!(
            pending.is_some_and(|o| o <= lost_offset),
            "{:#?} {} s after the last change, the mismatch is held but the primary's `orders` \
             offsets may be committed up to {pending:?} (the lost change is at {lost_offset})",
            t.h.out,
            step / 10
        );
        // And what holds it is said.
        let (_, why) = t.h.engine.oldest_hold().expect("a window is open");
        assert!(
            why.contains("replica-1") && why.contains("`orders`"),
            "what holds the oldest window: {why}"
        );
        held_checks += 1;
    }
    assert!(held_checks > 0, "the mismatch was held for a while");
    let published_at =
        published_at.expect("the held mismatch is published without an end of input");
    let cfg = t.h.engine.config().timing;
    assert!(
        published_at <= cfg.confirm_ms + cfg.silent_after_ms + 5_000,
        "published {published_at} ms after the last change"
    );
    assert_eq!(t.orders_mismatches(), 1, "{:#?}", t.h.out);
    assert!(t.h.of_kind(Kind::StreamSilent).is_empty(), "{:#?}", t.h.out);
}

/// `orders` and `customers` alternate throughout; the replica stops sending `orders` halfway
/// while the primary keeps writing it. The clock ticks every `tick_every` changes (never: read
/// as one backlog, as after a broker outage), then on for a minute.
fn stopped_table(tick_every: Option<usize>) -> Two {
    stopped_table_with(tick_every, false)
}

fn stopped_table_with(tick_every: Option<usize>, reading: bool) -> Two {
    let changes = history(2000, 50, 7);
    let mut t = Two::new();
    for (i, c) in changes.iter().enumerate() {
        if i % 2 == 0 {
            t.h.send(0, c, false);
            if i < 1000 {
                t.h.send(1, c, false);
            }
        } else {
            t.send_customer(0, c);
            t.send_customer(1, c);
        }
        if tick_every.is_some_and(|n| i % n == 0) {
            if reading {
                t.tick_reading(c.ts_ms + 20_000);
            } else {
                t.tick(c.ts_ms);
            }
        }
    }
    let end = changes.last().unwrap().ts_ms;
    let cfg = t.h.engine.config().timing;
    let mut step = 0;
    while step * 100 < cfg.confirm_ms + cfg.silent_after_ms + 30_000 {
        t.tick(end + step * 100);
        step += 1;
    }
    t
}

/// One StreamSilent for `orders`, and nothing held for ever: the primary's `orders` offsets can
/// all be committed.
fn assert_silent_and_released(t: &Two) {
    let silent: Vec<_> =
        t.h.of_kind(Kind::StreamSilent)
            .into_iter()
            .filter(|d| d.table() == Some("orders"))
            .collect();
    assert_eq!(silent.len(), 1, "{:#?}", t.h.out);
    assert_eq!(
        t.h.engine.pending_offset(t.h.topics[0], 0),
        None,
        "{} windows open, {:#?}",
        t.h.engine.open_windows(),
        t.h.out
    );
}

#[test]
fn a_replica_table_that_stops_is_silent_and_holds_nothing_back() {
    for every in [5, 20, 200] {
        assert_silent_and_released(&stopped_table(Some(every)));
    }
}

#[test]
fn a_replica_table_that_stops_is_silent_while_its_backlog_is_read() {
    for every in [1, 3, 7, 31, 200] {
        assert_silent_and_released(&stopped_table_with(Some(every), true));
    }
}

#[test]
fn a_replica_table_that_stops_is_silent_even_when_read_as_one_backlog() {
    assert_silent_and_released(&stopped_table(None));
}
