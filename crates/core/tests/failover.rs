//! Positions across a failover: a GTID's origin orders its positions, so the new primary's
//! transactions (`<new uuid>:1, :2, …`) are verified rather than taken for duplicates, and a
//! divergence after the failover is found.

mod support;

use cdc_verifier_core::decode::{At, ConfluentAvro, Decoded, Decoder, Poison, Read, Role};
use cdc_verifier_core::digest::{RowHasher, table_seed};
use cdc_verifier_core::source::{MemorySource, SchemaSource};
use cdc_verifier_core::verdict::{Finding, Kind};
use cdc_verifier_core::{Ingested, PositionField};
use support::harness::{Harness, range_of};
use support::{Change, Row, history, register, wire_pair_at};

const OLD: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";
const NEW: &str = "9f0c2a1e-5b7d-11ef-8a3c-0242ac120002";

/// The GTID of change `i` of a history whose primary failed over from `OLD` to `NEW` before
/// change `at`: the new primary counts from 1.
fn gtid(c: &Change, i: usize, at: usize) -> String {
    if i < at {
        format!("{OLD}:{}", c.tx)
    } else {
        format!("{NEW}:{}", i - at + 1)
    }
}

fn assert_all_verified(h: &Harness, events: u64) {
    for (stream, topic, _, stats) in h.engine.topic_stats() {
        assert_eq!(
            (stats.duplicates, stats.late, stats.events),
            (0, 0, events),
            "{stream} {topic}: every event verified, none a duplicate or late"
        );
    }
}

#[test]
fn after_a_failover_the_new_origins_events_are_verified_and_a_later_mismatch_found() {
    let changes = history(3000, 200, 11);
    let (failover, corrupt) = (1500, 2200);
    let mut h = Harness::new(&["replica-1"], 4, true);
    for (i, c) in changes.iter().enumerate() {
        let g = gtid(c, i, failover);
        h.send_gtid(0, c, &g);
        let mut rc = c.clone();
        if i == corrupt {
            let a = rc.after.get_or_insert_with(|| Row::new(c.key(), "x", 0));
            a.total_cents += 1;
        }
        h.send_gtid(1, &rc, &g);
        if i % 100 == 0 {
            h.advance(c.ts_ms);
        }
    }
    h.finish();
    assert!(h.poison.is_empty(), "{:#?}", h.poison);
    assert_all_verified(&h, changes.len() as u64);
    assert_eq!(h.engine.stats().origins, 2);
    assert_eq!(h.engine.stats().origin_returns, 0);
    let mm = h.of_kind(Kind::DataMismatch);
    assert!(!mm.is_empty(), "the mismatch after the failover is found");
    let key = changes[corrupt].key();
    for d in &mm {
        assert_eq!(d.range().map(|r| r.index), Some(range_of(key)));
        let w = d.window().unwrap();
        // The new origin's positions follow the old one's: epoch 1.
        assert!(w.first.tx >= 1 << 40, "window {w:?} is of the new origin");
    }
    assert_eq!(
        mm[0].mismatch().unwrap().keys[0].key,
        serde_json::json!({"id": key})
    );
    assert_eq!(
        h.out.len(),
        mm.len(),
        "nothing but the mismatch: {:#?}",
        h.out
    );
}

#[test]
fn a_failover_alone_gives_no_verdict_and_a_restart_keeps_the_order_of_origins() {
    let changes = history(2000, 150, 12);
    let failover = 800;
    let mut h = Harness::new(&["replica-1", "replica-2"], 4, false);
    for (i, c) in changes.iter().enumerate().take(1200) {
        let g = gtid(c, i, failover);
        for s in 0..3 {
            h.send_gtid(s, c, &g);
        }
    }
    let checkpoint = h.engine.checkpoint();
    assert_eq!(
        checkpoint
            .origins
            .iter()
            .map(|e| e.origin.as_str())
            .collect::<Vec<_>>(),
        [OLD, NEW]
    );
    // A restart that reads only the new origin's transactions still orders them after the
    // old one's: it would otherwise take the new origin for the first.
    let mut r = Harness::new(&["replica-1", "replica-2"], 4, false);
    r.engine.restore(&checkpoint);
    for (i, c) in changes.iter().enumerate().skip(1200) {
        let g = gtid(c, i, failover);
        for s in 0..3 {
            let got = r.send_gtid(s, c, &g);
            assert!(
                matches!(got, Ingested::Counted | Ingested::Parked),
                "{got:?}"
            );
        }
    }
    assert!(h.finish().is_empty(), "{:#?}", h.out);
    assert!(r.finish().is_empty(), "{:#?}", r.out);
    assert_eq!(r.engine.stats().origins, 2);
    for (replica, p, _) in r.engine.replica_positions() {
        assert!(p.tx > 1 << 40, "{replica} at {p}: of the second origin");
    }
}

#[test]
fn a_failback_is_counted_and_its_events_are_verified() {
    let changes = history(3000, 200, 13);
    // OLD up to 1000, NEW for 1000 transactions, then OLD again, continuing its own count.
    let g = |c: &Change, i: usize| match i {
        0..1000 => format!("{OLD}:{}", c.tx),
        1000..2000 => format!("{NEW}:{}", i - 999),
        _ => format!("{OLD}:{}", c.tx),
    };
    let corrupt = 2500;
    let mut h = Harness::new(&["replica-1"], 1, true);
    for (i, c) in changes.iter().enumerate() {
        h.send_gtid(0, c, &g(c, i));
        let mut rc = c.clone();
        if i == corrupt {
            let a = rc.after.get_or_insert_with(|| Row::new(c.key(), "x", 0));
            a.total_cents += 1;
        }
        h.send_gtid(1, &rc, &g(c, i));
    }
    h.finish();
    assert!(h.poison.is_empty(), "{:#?}", h.poison);
    assert_all_verified(&h, changes.len() as u64);
    assert_eq!(h.engine.stats().origin_returns, 1);
    let mm = h.of_kind(Kind::DataMismatch);
    assert!(!mm.is_empty());
    assert!(
        mm.iter()
            .all(|d| d.range().map(|r| r.index) == Some(range_of(changes[corrupt].key())))
    );
}

#[test]
fn a_sequence_beyond_what_a_position_carries_is_dead_lettered_with_its_coordinates() {
    let changes = history(10, 5, 14);
    let mut h = Harness::new(&["replica-1"], 1, false);
    let r = h.send_gtid(0, &changes[0], &format!("{OLD}:{}", 1u64 << 40));
    let Ingested::Poison(d) = r else {
        panic!("not dead-lettered: {r:?}")
    };
    let Finding::PoisonEvent { poison, .. } = &d.finding else {
        panic!("{d:?}")
    };
    assert_eq!((poison.partition, poison.offset), (0, 0));
    assert!(poison.topic.starts_with("primary."));
    assert!(
        poison.error.contains(&(1u64 << 40).to_string()) && poison.error.contains(OLD),
        "{}",
        poison.error
    );
    // The largest that fits is an event.
    let r = h.send_gtid(0, &changes[1], &format!("{OLD}:{}", (1u64 << 40) - 1));
    assert_eq!(r, Ingested::Counted);
}

/// The positions the decoder gives the primary's events with these GTIDs, in turn.
fn positions(gtids: &[&str]) -> Vec<u64> {
    let mut src = MemorySource::new();
    let ids = register(&mut src, "primary");
    let mut dec = ConfluentAvro::new(PositionField::Gtid, true, false);
    dec.add_topic(0, "primary.shop.orders", "orders", 1);
    let seed = table_seed("orders");
    let rows = RowHasher::new(seed);
    let c = history(1, 1, 15).remove(0);
    gtids
        .iter()
        .map(|g| {
            let (k, v) = wire_pair_at(&ids, &c, false, g);
            let at = At {
                topic: 0,
                partition: 0,
                table: 0,
                rows: &rows,
                seed,
                role: Role::Primary,
            };
            let s: &mut dyn SchemaSource = &mut src;
            let mut out = Decoded::EMPTY;
            let r: Result<Read, Poison> = dec.decode(&at, Some(&k), &v, s, &mut out).unwrap();
            assert_eq!(r.map_err(|e| e.to_string()), Ok(Read::Event), "{g}");
            out.event.position.tx
        })
        .collect()
}

#[test]
fn mysql_gtids_and_ranges_are_ordered_by_origin_then_sequence() {
    let e1 = 1u64 << 40;
    assert_eq!(
        positions(&[
            &format!("{OLD}:41"),
            &format!("{OLD}:1-42"),
            &format!("{NEW}:1"),
            &format!("{NEW}:2-7"),
            &format!("{NEW}:tag_a:3"),
            &format!("{OLD}:40"),
        ]),
        [41, 42, e1 | 1, e1 | 7, (2 * e1) | 3, 40]
    );
}

#[test]
fn mariadb_gtids_are_ordered_by_domain_not_server() {
    // Strict GTID mode: a failover to server 2 continues domain 0's sequence.
    assert_eq!(
        positions(&["0-1-41", "0-1-42", "0-2-43", "0-2-44", "1-2-5", "7", "3-9"]),
        [41, 42, 43, 44, (1 << 40) | 5, 7, 9]
    );
}
