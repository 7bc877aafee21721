//! The clock index and the window digests against plain references.

use super::windows::DENSE_RANGES;
use std::collections::HashMap;

use super::*;

/// The index answers as a scan of every record noted would, whatever the order of notes,
/// across folds of old buckets, between and without refreshes.
#[test]
fn clock_index_agrees_with_a_scan() {
    let mut next = crate::test_rng::xorshift(0x9E37_79B9_7F4A_7C15);
    let mut rnd = move |n: u64| next() % n;
    let mut idx = ClockIndex::default();
    let mut noted: Vec<(i64, Position)> = Vec::new();
    let mut now = 10_000i64;
    for i in 0..60_000u64 {
        now += rnd(3) as i64;
        // Mostly recent, sometimes well behind (a partition read late).
        let ts = now
            - if rnd(10) == 0 {
                rnd(3000) as i64
            } else {
                rnd(40) as i64
            };
        let p = Position {
            tx: (ts as u64) * 4 + rnd(4),
            order: 0,
        };
        idx.note(ts, p);
        noted.push((ts, p));
        if rnd(50) == 0 {
            idx.refresh_all();
        }
        if i % 97 == 0 {
            // Often about now, as the watermarks ask (the newest bucket's records count
            // once their bucket is wholly past); else anywhere in the span and before it.
            let t = if rnd(3) == 0 {
                now + 10 - rnd(30) as i64
            } else {
                now - rnd(4000) as i64
            };
            let limit = t.div_euclid(ClockIndex::BUCKET_MS);
            let want = noted
                .iter()
                .filter(|(ts, _)| ts.div_euclid(ClockIndex::BUCKET_MS) < limit)
                .map(|(_, p)| *p)
                .max()
                .unwrap_or(Position::ZERO);
            if let Some(got) = idx.before(t) {
                assert_eq!(got, want, "before({t}) after {i} notes");
            } else {
                assert!(limit < idx.folded_below);
            }
        }
    }
    assert!(idx.folded_below > 0, "the span was folded at least once");
}

/// A window's digests, by slots in arrays and in the map, against a map of digests: the
/// same digest for every key, in the order keys were first met.
#[test]
fn window_digests_are_found_by_their_keys() {
    let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
    let mut digests = WindowDigests::with_capacity(4);
    let mut reference: HashMap<(TableId, u64), RangeDigest> = HashMap::new();
    let mut order = Vec::new();
    for i in 0..20_000u64 {
        let table = (next() % 5) as TableId;
        let range = match next() % 4 {
            0 => next() % 1024,
            1 => DENSE_RANGES - 1 - next() % 3,
            2 => DENSE_RANGES + next() % 3,
            _ => (next() % 50) ^ (1 << 63),
        };
        let key = (table, range);
        let after = Some(next() as u128);
        reference
            .entry(key)
            .or_insert_with(|| {
                order.push(key);
                RangeDigest::default()
            })
            .add_event(Op::Update, i, Some(i as u128), after);
        digests
            .entry(key)
            .add_event(Op::Update, i, Some(i as u128), after);
    }
    assert_eq!(digests.len(), reference.len());
    assert_eq!(digests.iter().map(|(k, _)| *k).collect::<Vec<_>>(), order);
    for (key, d) in digests.iter() {
        assert!(digests.contains_key(key));
        assert_eq!(Some(d), reference.get(key), "{key:?}");
        assert_eq!(digests.get(key), reference.get(key), "{key:?}");
    }
    for key in [
        (7, 3),
        (0, DENSE_RANGES + 100),
        (1, 1 << 63),
        (4, DENSE_RANGES - 1 - 3),
    ] {
        assert_eq!(
            digests.contains_key(&key),
            reference.contains_key(&key),
            "{key:?}"
        );
    }
}

/// The remembered bucket is the division's, for times in any order, near and far.
#[test]
fn the_last_bucket_is_the_divisions() {
    let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
    for width in [1i64, 10, 200, 7919] {
        let mut last = LastBucket::default();
        let mut t = 0i64;
        for _ in 0..100_000 {
            let x = next();
            t = match x % 8 {
                0 => x as i64,
                1 => i64::MIN + (x % 1000) as i64,
                2 => t.saturating_neg(),
                _ => t.saturating_add((x % 64) as i64 - 16),
            };
            assert_eq!(last.of(t, width), t.div_euclid(width), "{t} / {width}");
        }
    }
}
