//! Episodes: verdicts grouped into one story per fault, opened, throttled and closed.

use cdc_verifier_core::Position;
use cdc_verifier_core::digest::OpCounts;
use cdc_verifier_core::episodes::{EpisodeConfig, EpisodeEvent, Episodes, Phase};
use cdc_verifier_core::verdict::{
    Divergence, Drift, Finding, KeyDiff, Kind, LagInfo, Mismatch, PoisonInfo, RangeRef, Recovery,
    SchemaInfo, Side, Sides, Unverified, WindowRef,
};
use serde_json::json;

const R1: &str = "replica-1";
const R2: &str = "replica-2";

/// Window `id`: 200 ms of origin time, ten transactions.
fn window(id: i64) -> WindowRef {
    let tx = id as u64 * 10;
    WindowRef {
        id,
        first: Position { tx, order: 1 },
        last: Position {
            tx: tx + 9,
            order: 1,
        },
        start_ms: id * 200,
        end_ms: (id + 1) * 200,
    }
}

fn range(index: u64) -> RangeRef {
    RangeRef {
        index,
        label: format!("[{index:#x}..{:#x})", index + 1),
    }
}

fn lag_info() -> LagInfo {
    LagInfo {
        primary_position: Position { tx: 90, order: 1 },
        replica_position: Position { tx: 30, order: 2 },
        positions_behind: 60,
        ms_behind: 45_000,
    }
}

fn side(digest: &str) -> Side {
    Side {
        digest: digest.into(),
        ops: OpCounts {
            update: 2,
            ..Default::default()
        },
    }
}

/// A mismatch of range `r` of `table` in window `w`, naming `keys`.
fn mismatch(replica: &str, table: &str, r: u64, w: i64, at: i64, keys: &[i64]) -> Divergence {
    let keys = keys
        .iter()
        .map(|k| KeyDiff {
            key: json!({ "id": k }),
            primary: None,
            replica: None,
            repair: None,
        })
        .collect();
    Divergence::new(
        replica,
        at,
        Finding::DataMismatch(Mismatch {
            table: table.into(),
            range: range(r),
            window: Some(window(w)),
            sides: Some(Sides {
                primary: side("00ab"),
                replica: side("00cd"),
            }),
            offsets: Vec::new(),
            keys,
        }),
    )
}

fn drift(replica: &str, table: &str, w: i64, at: i64) -> Divergence {
    Divergence::new(
        replica,
        at,
        Finding::SchemaDrift(Drift {
            table: table.into(),
            window: window(w),
            schema: SchemaInfo {
                subject: format!("{replica}.shop.{table}-value"),
                expected_id: 9,
                expected_version: Some(2),
                actual_id: 4,
                actual_version: Some(3),
                fields: Vec::new(),
                first_position: window(w).first,
                first_ts_ms: at,
                events: 3,
            },
            offsets: Vec::new(),
        }),
    )
}

fn lag(replica: &str, w: i64, at: i64) -> Divergence {
    Divergence::new(
        replica,
        at,
        Finding::ReplicaLag {
            window: window(w),
            lag: lag_info(),
        },
    )
}

fn silent(replica: &str, table: &str, at: i64) -> Divergence {
    Divergence::new(
        replica,
        at,
        Finding::StreamSilent {
            table: table.into(),
            window: None,
            lag: lag_info(),
        },
    )
}

fn poison(replica: &str, table: &str, offset: i64, at: i64) -> Divergence {
    Divergence::new(
        replica,
        at,
        Finding::PoisonEvent {
            table: table.into(),
            poison: PoisonInfo {
                topic: format!("{replica}.shop.{table}"),
                partition: 0,
                offset,
                error: "bad magic byte".into(),
            },
        },
    )
}

fn unverified(replica: &str, w: i64, at: i64) -> Divergence {
    Divergence::new(
        replica,
        at,
        Finding::Unverified(Unverified {
            table: None,
            span: window(w),
            offsets: Vec::new(),
            lag: lag_info(),
            reason: "too many windows held".into(),
        }),
    )
}

fn recovered(replica: &str, at: i64, r: Recovery) -> Divergence {
    Divergence::new(replica, at, Finding::Recovered(r))
}

fn range_recovered(replica: &str, table: &str, r: u64, at: i64) -> Divergence {
    recovered(
        replica,
        at,
        Recovery::DataMismatch {
            table: table.into(),
            range: range(r),
            window: None,
        },
    )
}

fn drift_recovered(replica: &str, table: &str, w: i64, at: i64) -> Divergence {
    recovered(
        replica,
        at,
        Recovery::SchemaDrift {
            table: table.into(),
            window: window(w),
        },
    )
}

fn lag_recovered(replica: &str, w: i64, at: i64) -> Divergence {
    recovered(replica, at, Recovery::ReplicaLag { window: window(w) })
}

/// Runs verdicts through fresh episodes of `cfg`, returning the episodes and their events.
fn run(cfg: EpisodeConfig, verdicts: &[Divergence]) -> (Episodes, Vec<EpisodeEvent>) {
    let mut e = Episodes::new(cfg);
    let mut out = Vec::new();
    for d in verdicts {
        e.observe(d, &mut out);
    }
    (e, out)
}

fn phases(events: &[EpisodeEvent]) -> Vec<(Phase, Kind)> {
    events.iter().map(|e| (e.phase, e.episode.kind)).collect()
}

#[test]
fn a_drift_opens_updates_and_closes_with_one_key() {
    let (mut e, mut out) = run(EpisodeConfig::default(), &[drift(R1, "orders", 5, 1_000)]);
    assert_eq!(phases(&out), [(Phase::Open, Kind::SchemaDrift)]);
    assert_eq!(out[0].key, "replica-1/orders/SchemaDrift/w5");
    e.observe(&drift(R1, "orders", 6, 1_200), &mut out);
    assert_eq!(out.len(), 1, "a later verdict opens nothing");
    e.tick(31_000, &mut out);
    assert_eq!(out[1].phase, Phase::Update);
    let s = &out[1].episode;
    assert_eq!((s.verdicts, s.windows), (2, 2));
    assert_eq!(s.first_position, Some(window(5).first));
    assert_eq!(s.last_position, Some(window(6).last));
    assert_eq!((s.opened_at_ms, s.last_at_ms), (1_000, 1_200));
    e.observe(&drift_recovered(R1, "orders", 7, 32_000), &mut out);
    assert_eq!(out[2].phase, Phase::Close);
    assert_eq!(out[2].episode.closed_at_ms, Some(32_000));
    assert!(out.iter().all(|ev| ev.key == out[0].key), "{out:#?}");
    assert_eq!(e.open_count(), 0);
}

#[test]
fn updates_are_throttled_and_only_of_changed_episodes() {
    let cfg = EpisodeConfig {
        update_interval_ms: 10_000,
        ..Default::default()
    };
    let (mut e, mut out) = run(cfg, &[mismatch(R1, "orders", 1, 1, 0, &[])]);
    // Unchanged since it opened: no update, however long.
    e.tick(50_000, &mut out);
    assert_eq!(out.len(), 1);
    // Changed, but reported too recently is not; once the interval passed, one update.
    let mut t = 50_000;
    for w in 2..200 {
        t += 200;
        e.observe(&mismatch(R1, "orders", 1, w, t, &[]), &mut out);
        e.tick(t, &mut out);
    }
    let updates = out.iter().filter(|ev| ev.phase == Phase::Update).count();
    // Verdicts from 50.2 s to 89.6 s: an update at the first change, then every 10 s.
    assert_eq!(updates, 4, "{:#?}", phases(&out));
    let times: Vec<i64> = out[1..].iter().map(|ev| ev.episode.last_at_ms).collect();
    assert!(times.windows(2).all(|p| p[1] - p[0] >= 10_000), "{times:?}");
    // Nothing new: no update.
    let before = out.len();
    e.tick(t + 60_000, &mut out);
    e.tick(t + 120_000, &mut out);
    assert_eq!(out.len(), before + 1, "the last change is reported once");
}

#[test]
fn a_mismatch_episode_closes_when_every_range_recovered() {
    let (mut e, mut out) = run(
        EpisodeConfig::default(),
        &[
            mismatch(R1, "orders", 1, 1, 100, &[1]),
            mismatch(R1, "orders", 2, 1, 100, &[2]),
            mismatch(R1, "orders", 3, 2, 300, &[3]),
        ],
    );
    assert_eq!(phases(&out), [(Phase::Open, Kind::DataMismatch)]);
    e.observe(&range_recovered(R1, "orders", 1, 400), &mut out);
    e.observe(&range_recovered(R1, "orders", 3, 500), &mut out);
    // A range of another table or replica does not count.
    e.observe(&range_recovered(R1, "customers", 2, 500), &mut out);
    e.observe(&range_recovered(R2, "orders", 2, 500), &mut out);
    assert_eq!(out.len(), 1, "range 2 still diverges");
    assert_eq!(
        e.open_episodes().next().map(|(_, s)| s.unrecovered_ranges),
        Some(1)
    );
    e.observe(&range_recovered(R1, "orders", 2, 600), &mut out);
    assert_eq!(phases(&out)[1], (Phase::Close, Kind::DataMismatch));
    let s = &out[1].episode;
    assert_eq!((s.verdicts, s.ranges, s.unrecovered_ranges), (3, 3, 0));
    assert_eq!((s.keys, s.windows), (3, 2));
    assert_eq!(s.sample_keys, [r#"{"id":1}"#, r#"{"id":2}"#, r#"{"id":3}"#]);
    assert_eq!(out[0].key, out[1].key);
}

#[test]
fn a_mismatch_under_an_open_drift_of_its_table_is_counted_there() {
    let (mut e, mut out) = run(
        EpisodeConfig::default(),
        &[
            drift(R1, "orders", 1, 100),
            mismatch(R1, "orders", 1, 2, 300, &[7]),
            mismatch(R1, "orders", 2, 2, 300, &[8]),
        ],
    );
    assert_eq!(phases(&out), [(Phase::Open, Kind::SchemaDrift)]);
    e.tick(60_000, &mut out);
    let s = &out[1].episode;
    assert_eq!((out[1].phase, s.kind), (Phase::Update, Kind::SchemaDrift));
    assert_eq!(s.verdicts, 1);
    assert_eq!(s.consequences.get("orders"), Some(&2));
    assert_eq!((s.ranges, s.keys), (2, 2));
    let summary = s.summary();
    assert!(
        summary.contains("explains 2 DataMismatch verdicts (2 on orders)"),
        "{summary}"
    );
    assert!(
        summary.contains("SchemaDrift on replica-1 orders"),
        "{summary}"
    );
}

#[test]
fn a_drift_of_another_table_or_replica_explains_nothing() {
    let (e, out) = run(
        EpisodeConfig::default(),
        &[
            drift(R1, "customers", 1, 100),
            drift(R2, "orders", 1, 100),
            mismatch(R1, "orders", 1, 2, 300, &[]),
        ],
    );
    assert_eq!(
        phases(&out),
        [
            (Phase::Open, Kind::SchemaDrift),
            (Phase::Open, Kind::SchemaDrift),
            (Phase::Open, Kind::DataMismatch)
        ]
    );
    assert!(e.open_episodes().all(|(_, s)| s.consequences.is_empty()));
}

#[test]
fn a_lag_explains_no_mismatch() {
    // Windows are compared at equal positions: a lagging replica's mismatch is a fault of its
    // data, and opens its own episode.
    let (mut e, mut out) = run(
        EpisodeConfig::default(),
        &[
            lag(R1, 1, 100),
            mismatch(R1, "orders", 1, 2, 300, &[]),
            mismatch(R1, "customers", 4, 2, 300, &[]),
        ],
    );
    assert_eq!(
        phases(&out),
        [
            (Phase::Open, Kind::ReplicaLag),
            (Phase::Open, Kind::DataMismatch),
            (Phase::Open, Kind::DataMismatch)
        ]
    );
    assert_eq!(out[0].key, "replica-1/*/ReplicaLag/w1");
    e.observe(&lag_recovered(R1, 1, 5_000), &mut out);
    let close = &out[3];
    assert_eq!(
        (close.phase, close.episode.kind),
        (Phase::Close, Kind::ReplicaLag)
    );
    assert!(close.episode.consequences.is_empty());
    assert_eq!(close.key, out[0].key);
    assert_eq!(e.open_count(), 2, "the mismatches stay open");
}

#[test]
fn a_mismatch_under_a_silent_stream_of_its_table_is_counted_there() {
    let (e, out) = run(
        EpisodeConfig::default(),
        &[
            silent(R1, "orders", 100),
            mismatch(R1, "orders", 1, 2, 300, &[]),
        ],
    );
    assert_eq!(phases(&out), [(Phase::Open, Kind::StreamSilent)]);
    assert_eq!(out[0].key, "replica-1/orders/StreamSilent/p30.2");
    let (_, s) = e.open_episodes().next().expect("one episode open");
    assert_eq!(s.consequences.get("orders"), Some(&1));
}

#[test]
fn a_recovery_of_a_range_the_root_cause_explained_is_marked_there() {
    let (mut e, mut out) = run(
        EpisodeConfig::default(),
        &[
            drift(R1, "orders", 1, 100),
            mismatch(R1, "orders", 1, 2, 300, &[]),
        ],
    );
    e.observe(&range_recovered(R1, "orders", 1, 400), &mut out);
    assert_eq!(out.len(), 1, "the drift stays open");
    let (_, s) = e.open_episodes().next().expect("one episode open");
    assert_eq!((s.ranges, s.unrecovered_ranges), (1, 0));
}

#[test]
fn a_recovery_of_no_open_episode_is_ignored() {
    let (e, out) = run(
        EpisodeConfig::default(),
        &[
            range_recovered(R1, "orders", 1, 100),
            drift_recovered(R1, "orders", 1, 100),
            lag_recovered(R1, 1, 100),
            recovered(
                R1,
                100,
                Recovery::StreamSilent {
                    table: "orders".into(),
                },
            ),
        ],
    );
    assert!(out.is_empty(), "{out:#?}");
    assert_eq!(e.open_count(), 0);
}

#[test]
fn poison_and_unverified_episodes_close_once_quiet() {
    let cfg = EpisodeConfig {
        poison_quiet_ms: 60_000,
        ..Default::default()
    };
    let (mut e, mut out) = run(
        cfg,
        &[
            poison(R1, "orders", 17, 1_000),
            unverified(R1, 3, 1_000),
            poison(R1, "orders", 18, 20_000),
            lag(R1, 1, 1_000),
        ],
    );
    assert_eq!(
        out[0].key,
        "replica-1/orders/PoisonEvent/replica-1.shop.orders:0:17"
    );
    assert_eq!(out[1].key, "replica-1/*/Unverified/w3");
    out.clear();
    e.tick(61_000, &mut out);
    // The unverified span is quiet for 60 s: closed. The poison episode grew since it opened
    // (a second record at 20 s) and 30 s have passed: one update.
    assert_eq!(
        phases(&out),
        [
            (Phase::Close, Kind::Unverified),
            (Phase::Update, Kind::PoisonEvent)
        ]
    );
    out.clear();
    e.tick(80_000, &mut out);
    assert_eq!(phases(&out), [(Phase::Close, Kind::PoisonEvent)]);
    assert_eq!(out[0].episode.verdicts, 2);
    e.tick(1_000_000, &mut out);
    assert_eq!(e.open_count(), 1, "a lag ends by its recovery only");
}

#[test]
fn an_episode_reopened_after_closing_has_a_new_key() {
    let (mut e, mut out) = run(
        EpisodeConfig::default(),
        &[
            drift(R1, "orders", 1, 100),
            drift_recovered(R1, "orders", 2, 400),
        ],
    );
    e.observe(&drift(R1, "orders", 9, 2_000), &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(out[2].phase, Phase::Open);
    assert_ne!(out[2].key, out[0].key);
}

#[test]
fn thousands_of_mismatches_under_one_drift_make_a_handful_of_events() {
    let cfg = EpisodeConfig::default();
    let mut e = Episodes::new(cfg);
    let mut out = Vec::new();
    let start = 1_000;
    e.observe(&drift(R1, "orders", 1, start), &mut out);
    let mut t = start;
    // 5,000 mismatches: 5 ranges in each of 1,000 windows of 200 ms, with a tick per window.
    for w in 2..1_002 {
        t += 200;
        for r in 0..5 {
            e.observe(
                &mismatch(R1, "orders", r, w, t, &[w * 10 + r as i64]),
                &mut out,
            );
        }
        e.tick(t, &mut out);
    }
    e.observe(&drift_recovered(R1, "orders", 1_002, t + 200), &mut out);
    let updates = out.iter().filter(|ev| ev.phase == Phase::Update).count() as i64;
    let bound = (t - start) / cfg.update_interval_ms + 1;
    assert!(updates <= bound, "{updates} updates over {} ms", t - start);
    assert_eq!(out.first().map(|ev| ev.phase), Some(Phase::Open));
    assert_eq!(out.last().map(|ev| ev.phase), Some(Phase::Close));
    assert_eq!(out.len() as i64, updates + 2);
    let s = &out[out.len() - 1].episode;
    assert_eq!(s.consequences.get("orders"), Some(&5_000));
    assert_eq!((s.ranges, s.windows, s.keys), (5, 1_001, 5_000));
    assert_eq!(s.sample_keys.len(), cfg.sample_keys);
    assert!(out.iter().all(|ev| ev.key == out[0].key));
}

#[test]
fn a_flush_says_where_every_changed_episode_stands_whatever_the_interval() {
    let (mut e, mut out) = run(
        EpisodeConfig::default(),
        &[
            drift(R1, "orders", 1, 100),
            mismatch(R1, "orders", 1, 2, 200, &[]),
            mismatch(R1, "orders", 2, 3, 300, &[]),
            mismatch(R2, "customers", 4, 2, 300, &[]),
            mismatch(R2, "customers", 5, 3, 350, &[]),
        ],
    );
    out.clear();
    // Well within the update interval: tick says nothing, flush says both (each changed since
    // it opened).
    e.tick(400, &mut out);
    assert!(out.is_empty(), "{out:#?}");
    e.flush(400, &mut out);
    assert_eq!(
        phases(&out),
        [
            (Phase::Update, Kind::SchemaDrift),
            (Phase::Update, Kind::DataMismatch)
        ]
    );
    assert_eq!(out[0].episode.consequences.get("orders"), Some(&2));
    out.clear();
    e.flush(500, &mut out);
    assert!(out.is_empty(), "nothing changed since: {out:#?}");
}

fn key(id: i64) -> KeyDiff {
    KeyDiff {
        key: json!({ "id": id }),
        primary: None,
        replica: None,
        repair: None,
    }
}

#[test]
fn keys_found_later_are_named_in_the_episode_at_once_then_bounded() {
    let m = mismatch(R1, "orders", 3, 1, 1_000, &[]);
    let (mut e, _) = run(EpisodeConfig::default(), std::slice::from_ref(&m));
    assert!(e.wants_keys(&m, 2));
    let mut out = Vec::new();
    e.name_keys(&m, vec![key(7), key(8)], false, 2, 1_500, &mut out);
    // The first keys are said at once, not at the next throttled update.
    assert_eq!(phases(&out), [(Phase::Update, Kind::DataMismatch)]);
    let named: Vec<String> = out[0]
        .episode
        .named_keys
        .iter()
        .map(|k| k.key.to_string())
        .collect();
    assert_eq!(named, [r#"{"id":7}"#, r#"{"id":8}"#]);
    assert!(!out[0].episode.keys_truncated);
    assert!(!e.wants_keys(&m, 2), "the bound is reached");
    // Past the bound: not named, and the episode says so.
    out.clear();
    e.name_keys(&m, vec![key(7), key(9)], false, 2, 1_600, &mut out);
    assert!(out.is_empty(), "later keys wait for the next update");
    let (_, state) = e.open_episodes().next().unwrap();
    assert_eq!(state.named_keys.len(), 2);
    assert!(state.keys_truncated);
}

#[test]
fn keys_of_a_mismatch_under_a_drift_go_to_the_drift_episode() {
    let d = drift(R1, "orders", 1, 1_000);
    let m = mismatch(R1, "orders", 3, 2, 1_100, &[]);
    let (mut e, _) = run(EpisodeConfig::default(), &[d, m.clone()]);
    assert_eq!(e.episode_key(&m), Some("replica-1/orders/SchemaDrift/w1"));
    let mut out = Vec::new();
    e.name_keys(&m, vec![key(5)], true, 100, 1_200, &mut out);
    assert_eq!(phases(&out), [(Phase::Update, Kind::SchemaDrift)]);
    assert_eq!(out[0].episode.named_keys.len(), 1);
    assert!(
        out[0].episode.keys_truncated,
        "the drill said more keys differ"
    );
}

#[test]
fn an_episode_continued_elsewhere_keeps_its_key_and_closes_on_its_recovery() {
    // An instance sees a drift, and mismatches of two ranges, one of which recovers.
    let (first, out) = run(
        EpisodeConfig::default(),
        &[
            drift(R1, "orders", 5, 1_000),
            mismatch(R1, "customers", 1, 5, 1_000, &[1]),
            mismatch(R1, "customers", 2, 6, 1_200, &[2]),
            range_recovered(R1, "customers", 1, 1_300),
        ],
    );
    let keys: Vec<&str> = out
        .iter()
        .filter(|ev| ev.phase == Phase::Open)
        .map(|ev| ev.key.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "replica-1/orders/SchemaDrift/w5",
            "replica-1/customers/DataMismatch/w5"
        ]
    );
    let saved: Vec<String> = keys.iter().map(|k| first.saved(k).unwrap()).collect();
    assert!(first.saved("replica-1/orders/SchemaDrift/w4").is_none());

    // The next instance takes them in, and a verdict of an episode open already is not
    // taken twice.
    let mut next = Episodes::new(EpisodeConfig::default());
    for s in &saved {
        assert!(next.resume(s).unwrap().is_some());
    }
    assert_eq!(next.resume(&saved[0]).unwrap(), None);
    assert_eq!(next.open_count(), 2);
    let mut out = Vec::new();
    // Its later verdicts count in the same episodes: nothing opens.
    next.observe(&drift(R1, "orders", 9, 2_000), &mut out);
    next.observe(&mismatch(R1, "customers", 3, 9, 2_000, &[3]), &mut out);
    assert!(out.is_empty(), "{out:#?}");
    next.flush(2_000, &mut out);
    let drift_now = out.iter().find(|ev| ev.episode.kind == Kind::SchemaDrift);
    let s = &drift_now.unwrap().episode;
    assert_eq!((s.verdicts, s.windows, s.opened_at_ms), (2, 2, 1_000));
    // The ranges behind its counts came with it: range 2 still diverges after 3 recovers.
    next.observe(&range_recovered(R1, "customers", 3, 2_100), &mut out);
    assert!(out.iter().all(|ev| ev.phase != Phase::Close), "{out:#?}");
    next.observe(&range_recovered(R1, "customers", 2, 2_200), &mut out);
    next.observe(&drift_recovered(R1, "orders", 10, 2_300), &mut out);
    let closed: Vec<&str> = out
        .iter()
        .filter(|ev| ev.phase == Phase::Close)
        .map(|ev| ev.key.as_str())
        .collect();
    assert_eq!(
        closed,
        [
            "replica-1/customers/DataMismatch/w5",
            "replica-1/orders/SchemaDrift/w5"
        ]
    );
    assert_eq!(next.open_count(), 0);
}

#[test]
fn instances_sharing_the_tables_own_their_replica_wide_episodes_but_not_the_lag() {
    let mut here = Episodes::new(EpisodeConfig::default()).owned_by("i1");
    let mut there = Episodes::new(EpisodeConfig::default()).owned_by("i2");
    let mut out = Vec::new();
    for e in [&mut here, &mut there] {
        e.observe(&unverified(R1, 45, 1_000), &mut out);
        e.observe(&lag(R1, 45, 1_000), &mut out);
        e.observe(&mismatch(R1, "orders", 1, 45, 1_000, &[1]), &mut out);
    }
    let keys: Vec<&str> = out.iter().map(|ev| ev.key.as_str()).collect();
    // What each instance could not verify: its own. A replica's lag and a table's: one key
    // wherever told.
    assert_eq!(
        keys,
        [
            "replica-1/*/Unverified/w45@i1",
            "replica-1/*/ReplicaLag/w45",
            "replica-1/orders/DataMismatch/w45",
            "replica-1/*/Unverified/w45@i2",
            "replica-1/*/ReplicaLag/w45",
            "replica-1/orders/DataMismatch/w45",
        ]
    );
}

#[test]
fn an_episode_no_verifier_continues_is_closed_from_its_record() {
    let (e, out) = run(EpisodeConfig::default(), &[lag(R1, 45, 1_000)]);
    let saved = e.saved(&out[0].key).unwrap();
    let closed = Episodes::close_saved(&saved, 9_000).unwrap().unwrap();
    assert_eq!(closed.phase, Phase::Close);
    assert_eq!(closed.key, out[0].key);
    assert_eq!(closed.episode.closed_at_ms, Some(9_000));
    assert_eq!(closed.episode.opened_at_ms, 1_000);
    // A closed one is not closed again.
    let mut done = Episodes::new(EpisodeConfig::default());
    done.resume(&saved).unwrap();
    let mut events = Vec::new();
    done.observe(
        &recovered(R1, 2_000, Recovery::ReplicaLag { window: window(45) }),
        &mut events,
    );
    let text = serde_json::to_string(&serde_json::json!({
        "key": events[0].key,
        "state": events[0].episode,
    }))
    .unwrap();
    assert_eq!(Episodes::close_saved(&text, 9_000).unwrap(), None);
}

#[test]
fn a_saved_episode_too_large_leaves_its_named_keys_to_its_record() {
    let (mut e, out) = run(
        EpisodeConfig::default(),
        &[mismatch(R1, "orders", 1, 5, 1_000, &[1])],
    );
    let key = out[0].key.clone();
    let row = json!({ "note": "x".repeat(4096) });
    let keys: Vec<KeyDiff> = (0..100)
        .map(|k| KeyDiff {
            key: json!({ "id": k }),
            primary: None,
            replica: None,
            repair: None,
        })
        .map(|mut k| {
            k.key["row"] = row.clone();
            k
        })
        .collect();
    let mut out = Vec::new();
    let d = mismatch(R1, "orders", 1, 5, 1_000, &[1]);
    e.name_keys(&d, keys, false, 100, 1_000, &mut out);
    let saved = e.saved(&key).unwrap();
    assert!(saved.len() <= Episodes::SAVED_MAX, "{}", saved.len());
    let mut next = Episodes::new(EpisodeConfig::default());
    next.resume(&saved).unwrap();
    let s = next.open_episodes().next().unwrap().1;
    assert!(s.named_keys.is_empty());
    assert_eq!((s.verdicts, s.ranges), (1, 1));
}
