//! Properties of the checksum algebra and of the engine built on it.

mod support;

use cdc_verifier_core::PositionField;
use cdc_verifier_core::avro::{Plan, Reader, Schema, Scratch};
use cdc_verifier_core::digest::{Op, RangeDigest, RowHasher, table_seed};
use cdc_verifier_core::envelope::{EnvelopeLayout, Hint};
use cdc_verifier_core::verdict::Kind;
use proptest::prelude::*;
use support::harness::{Harness, range_of};
use support::{Change, Row, encode_envelope, envelope_schema, history};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 24,
        ..ProptestConfig::default()
    }
}

/// Fisher–Yates with a seed, so a failing case is reproducible from its inputs.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

fn run(primary: &[Change], replica: &[Change]) -> Harness {
    let mut h = Harness::new(&["replica-1"], 4, true);
    for c in primary {
        h.send(0, c, false);
    }
    for c in replica {
        h.send_at(1, c, false, c.ts_ms);
    }
    h.finish();
    h
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn window_digests_do_not_depend_on_event_order(seed in 1u64..u64::MAX, n in 50usize..600) {
        let changes = history(n, 40, seed);
        let mut replica = changes.clone();
        shuffle(&mut replica, seed);
        let h = run(&changes, &replica);
        prop_assert!(h.out.is_empty(), "{:#?}", h.out);
    }

    #[test]
    fn digests_of_disjoint_partitions_add_up_to_the_whole(events in prop::collection::vec((0u8..4, any::<u64>(), any::<Option<u128>>(), any::<Option<u128>>(), 0usize..8), 0..300)) {
        let op = |i: u8| [Op::Create, Op::Update, Op::Delete, Op::Read][i as usize];
        let mut whole = RangeDigest::default();
        let mut parts = [RangeDigest::default(); 8];
        for (o, tx, b, a, p) in &events {
            whole.add_event(op(*o), *tx, *b, *a);
            parts[*p].add_event(op(*o), *tx, *b, *a);
        }
        let mut merged = RangeDigest::default();
        for p in &parts {
            merged.merge(p);
        }
        prop_assert_eq!(merged, whole);
    }

    #[test]
    fn a_redelivered_event_changes_nothing(seed in 1u64..u64::MAX, n in 50usize..600, runs in prop::collection::vec((0.0f64..1.0, 1usize..20), 1..4)) {
        let changes = history(n, 40, seed);
        let mut replica = changes.clone();
        for (at, len) in runs {
            let start = (at * changes.len() as f64) as usize;
            let end = (start + len).min(changes.len());
            // Redelivered after the originals, byte-identical.
            let again: Vec<Change> = changes[start..end].to_vec();
            let insert_at = (end + len).min(replica.len());
            replica.splice(insert_at..insert_at, again);
        }
        let h = run(&changes, &replica);
        prop_assert!(h.out.is_empty(), "{:#?}", h.out);
    }

    #[test]
    fn one_dropped_altered_or_extra_event_changes_the_digest_of_its_range(seed in 1u64..u64::MAX, n in 50usize..600, at in 0.0f64..1.0, fault in 0u8..3) {
        let changes = history(n, 40, seed);
        let i = ((at * changes.len() as f64) as usize).min(changes.len() - 1);
        let mut replica = changes.clone();
        let victim = changes[i].clone();
        let key = match fault {
            0 => {
                replica.remove(i);
                victim.key()
            }
            1 => {
                let c = &mut replica[i];
                let img = c.after.as_mut().or(c.before.as_mut()).unwrap();
                img.status.push('!');
                victim.key()
            }
            _ => {
                let extra = Change { op: "c", before: None, after: Some(Row::new(1_000_000 + seed as i64 % 1000, "ghost", 1)), tx: victim.tx, order: 2, ts_ms: victim.ts_ms };
                let k = extra.key();
                replica.insert(i + 1, extra);
                k
            }
        };
        let h = run(&changes, &replica);
        let mm: Vec<_> = h.out.iter().filter(|d| d.kind() == Kind::DataMismatch).collect();
        prop_assert!(!mm.is_empty(), "fault {fault} at {i} went unnoticed");
        for d in &mm {
            prop_assert_eq!(d.range().map(|r| r.index), Some(range_of(key)));
            let w = d.window().unwrap();
            prop_assert!(w.first.tx <= victim.tx && victim.tx <= w.last.tx);
            prop_assert_eq!(d.mismatch().unwrap().keys.len(), 1);
            prop_assert_eq!(d.mismatch().unwrap().keys[0].key["id"].as_i64(), Some(key));
        }
    }

    #[test]
    fn a_row_under_an_older_schema_hashes_as_under_the_newer_when_values_agree(
        id in any::<i64>(), status in "[a-z]{0,12}", cents in any::<i64>(), note in proptest::option::of("[ -~]{0,20}"), created in any::<i64>(), currency in "[A-Z]{3}",
    ) {
        let row = Row { id, status, total_cents: cents, note, created_at: created, currency: "USD".into() };
        let c = Change { op: "u", before: Some(row.clone()), after: Some(row.clone()), tx: 7, order: 1, ts_ms: 1 };
        let v1 = Schema::parse_str(&envelope_schema("replica-2", false)).unwrap();
        let v2 = Schema::parse_str(&envelope_schema("primary", true)).unwrap();
        let l1 = EnvelopeLayout::compile(&v1, &PositionField::Gtid).unwrap();
        let l2 = EnvelopeLayout::compile(&v2, &PositionField::Gtid).unwrap();
        let old_to_new = Plan::compile(&v1, l1.row, &v2, l2.row);
        let new_to_new = Plan::compile(&v2, l2.row, &v2, l2.row);
        prop_assert!(!old_to_new.is_identity() && new_to_new.is_identity());
        let rows = RowHasher::new(table_seed("orders"));
        let mut scratch = Scratch::default();
        let old = l1.decode(&v1, &old_to_new, &rows, &encode_envelope(&c, false), &mut scratch).unwrap();
        let new = l2.decode(&v2, &new_to_new, &rows, &encode_envelope(&c, true), &mut scratch).unwrap();
        prop_assert_eq!(old.after, new.after);
        prop_assert_eq!(old.before, new.before);
        prop_assert_eq!(old.position, new.position);

        // A value the old schema cannot carry, other than the default, makes the rows differ.
        let mut other = c.clone();
        other.after.as_mut().unwrap().currency = currency.clone();
        let new_other = l2.decode(&v2, &new_to_new, &rows, &encode_envelope(&other, true), &mut scratch).unwrap();
        prop_assert_eq!(new_other.after == old.after, currency == "USD");
    }
}

#[test]
fn canonical_form_matches_apache_avro_schema_resolution() {
    let row = |v2: bool| {
        format!(
            r#"{{"type":"record","name":"Value","fields":[{}]}}"#,
            support::row_fields(v2)
        )
    };
    let env_w = apache_avro::Schema::parse_str(&envelope_schema("replica-2", false)).unwrap();
    // apache-avro 0.21 rejects reading a 3-byte decimal at precision 12 during resolution
    // (its size check is stricter than the specification); the encoding does not depend on
    // precision, so its side reads the column as plain bytes.
    let plain = |s: String| {
        s.replace(
            r#"{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}"#,
            r#""bytes""#,
        )
    };
    let w = apache_avro::Schema::parse_str(&plain(row(false))).unwrap();
    let r = apache_avro::Schema::parse_str(&plain(row(true))).unwrap();
    let ours_w = Schema::parse_str(&envelope_schema("replica-2", false)).unwrap();
    let ours_r = Schema::parse_str(&envelope_schema("primary", true)).unwrap();
    let lw = EnvelopeLayout::compile(&ours_w, &PositionField::Gtid).unwrap();
    let lr = EnvelopeLayout::compile(&ours_r, &PositionField::Gtid).unwrap();
    let plan = Plan::compile(&ours_w, lw.row, &ours_r, lr.row);
    let hasher = RowHasher::new(table_seed("orders"));
    let mut scratch = Scratch::default();
    let mut rows = 0;
    for c in history(300, 50, 99) {
        let datum = encode_envelope(&c, false);
        // Our hand encoding is what apache-avro reads back as the same envelope…
        let value = apache_avro::from_avro_datum(&env_w, &mut &datum[..], None).unwrap();
        assert_eq!(apache_avro::to_avro_datum(&env_w, value).unwrap(), datum);
        // …and apache-avro's resolution of the row to the newer schema, re-encoded, is our
        // canonical form, so it hashes the same.
        let ev = lw
            .decode(&ours_w, &plan, &hasher, &datum, &mut scratch)
            .unwrap();
        if ev.after.is_none() {
            continue;
        }
        let (a, b) = ev.image.unwrap();
        let resolved =
            apache_avro::from_avro_datum(&w, &mut &datum[a as usize..b as usize], Some(&r))
                .unwrap();
        let bytes = apache_avro::to_avro_datum(&r, resolved).unwrap();
        assert_eq!(ev.after, Some(hasher.hash(&bytes)), "tx {}", c.tx);
        rows += 1;
    }
    assert!(rows > 200);
}

#[test]
fn decoder_reads_back_every_row_as_json() {
    let s = Schema::parse_str(&envelope_schema("primary", true)).unwrap();
    let l = EnvelopeLayout::compile(&s, &PositionField::Gtid).unwrap();
    let mut row = Row::new(42, "paid", -1234);
    row.note = Some("gift".into());
    row.currency = "EUR".into();
    let c = Change {
        op: "c",
        before: None,
        after: Some(row),
        tx: 5,
        order: 1,
        ts_ms: 1_723_650_300_000,
    };
    let datum = encode_envelope(&c, true);
    let own = Plan::compile(&s, l.row, &s, l.row);
    let ev = l
        .decode(
            &s,
            &own,
            &RowHasher::new(0),
            &datum,
            &mut Scratch::default(),
        )
        .unwrap();
    let (a, b) = ev.image.unwrap();
    let json = cdc_verifier_core::avro::json::to_json(
        &s,
        l.row,
        &mut Reader::new(&datum[a as usize..b as usize]),
    )
    .unwrap();
    assert_eq!(
        json,
        serde_json::json!({"id": 42, "status": "paid", "total": "-12.34", "note": "gift", "created_at": "2024-08-14T15:40:00.042Z", "currency": "EUR"})
    );
}

/// The `orders` envelope (v2) read as written, which has the flat walk: schema, layout,
/// identity plan of its rows, the table's row hasher.
fn orders_flat() -> (Schema, EnvelopeLayout, Plan, RowHasher) {
    let schema = Schema::parse_str(&envelope_schema("primary", true)).unwrap();
    let layout = EnvelopeLayout::compile(&schema, &PositionField::Gtid).unwrap();
    assert!(
        layout.has_fast_path(),
        "a Debezium envelope of primitives has the flat walk"
    );
    let plan = Plan::compile(&schema, layout.row, &schema, layout.row);
    (schema, layout, plan, RowHasher::new(table_seed("orders")))
}

/// The layouts to check the flat walk of: the one chosen for this CPU, and the one for any
/// x86-64 (the same where this CPU has nothing more).
fn flat_layouts(layout: &EnvelopeLayout) -> [(&'static str, EnvelopeLayout); 2] {
    [
        ("this CPU's", layout.clone()),
        ("portable", layout.clone().portable()),
    ]
}

/// The envelope's flat walk and its general walk agree on every input: valid envelopes (all
/// of which the flat walk decodes itself), and the same bytes flipped, cut short, extended or
/// with a byte dropped (where the flat walk either gives the same event or leaves the
/// decision to the general walk, which names the error).
#[test]
fn the_flat_envelope_walk_agrees_with_the_general_walk() {
    let (schema, layout, plan, rows) = orders_flat();
    for (_, layout) in flat_layouts(&layout) {
        flat_walk_agrees(&schema, &layout, &plan, &rows);
    }
}

fn flat_walk_agrees(schema: &Schema, layout: &EnvelopeLayout, plan: &Plan, rows: &RowHasher) {
    let (fast, mutants) = (std::cell::Cell::new(0u64), std::cell::Cell::new(0u64));
    proptest!(ProptestConfig { cases: 256, ..config() }, |(changes in proptest::collection::vec(0u64..u64::MAX, 1..4), edits in proptest::collection::vec((0usize..4096, any::<u8>(), 0u8..4), 0..4))| {
        let mut scratch = Scratch::default();
        for (i, seed_c) in changes.iter().enumerate() {
            let c = &history(3, 50, *seed_c)[i % 3];
            let datum = encode_envelope(c, true);
            let general = layout.decode_general(schema, plan, rows, &datum, &mut scratch);
            prop_assert!(general.is_ok(), "{general:?}");
            prop_assert_eq!(layout.decode_fast(rows, &datum), Some(general.clone().unwrap()));
            fast.set(fast.get() + 1);
            let mut bad = datum.clone();
            for (at, byte, how) in &edits {
                let at = at % (bad.len() + 1);
                match how {
                    0 if at < bad.len() => bad[at] = *byte,
                    1 => bad.truncate(at),
                    2 => bad.insert(at, *byte),
                    _ if at < bad.len() => { bad.remove(at); }
                    _ => {}
                }
            }
            let general = layout.decode_general(schema, plan, rows, &bad, &mut scratch);
            if let Some(ev) = layout.decode_fast(rows, &bad) {
                prop_assert_eq!(Ok(ev), general.clone(), "mutant {:?}", bad);
            }
            prop_assert_eq!(layout.decode(schema, plan, rows, &bad, &mut scratch), general.clone());
            // With what was learned of the valid envelope: its tail's template must not let
            // a changed tail through.
            let mut hint = Hint::default();
            prop_assert!(layout.decode_fast_hinted(rows, &datum, &mut hint).is_some());
            prop_assert_eq!(layout.decode_hinted(schema, plan, rows, &bad, &mut scratch, &mut hint), general);
            mutants.set(mutants.get() + 1);
        }
    });
    assert!(fast.get() >= 256 && mutants.get() >= 256);
}

/// Every single-byte change of valid envelopes: the flat walk gives what the general walk
/// gives, or leaves it the decision.
#[test]
fn the_flat_walk_accepts_no_changed_byte_the_general_walk_reads_otherwise() {
    let (schema, layout, plan, rows) = orders_flat();
    for (which, layout) in flat_layouts(&layout) {
        flat_walk_accepts_no_changed_byte(which, &schema, &layout, &plan, &rows);
    }
}

fn flat_walk_accepts_no_changed_byte(
    which: &str,
    schema: &Schema,
    layout: &EnvelopeLayout,
    plan: &Plan,
    rows: &RowHasher,
) {
    let mut scratch = Scratch::default();
    let (mut checked, mut decided, mut decided_hinted) = (0, 0, 0);
    for c in history(40, 20, 77) {
        let datum = encode_envelope(&c, true);
        assert!(layout.decode_fast(rows, &datum).is_some());
        // What the flat walk learns of this envelope (its tail's template), offered with
        // every changed copy of it.
        let mut learned = Hint::default();
        assert!(
            layout
                .decode_fast_hinted(rows, &datum, &mut learned)
                .is_some()
        );
        assert!(
            learned.has_template(),
            "the tail of a Debezium envelope has a template"
        );
        for at in 0..datum.len() {
            for v in [
                datum[at].wrapping_add(2),
                datum[at].wrapping_sub(2),
                0,
                datum[at] ^ 0x80,
                datum[at] ^ 0x01,
            ] {
                let mut bad = datum.clone();
                bad[at] = v;
                let general = layout.decode_general(schema, plan, rows, &bad, &mut scratch);
                if let Some(ev) = layout.decode_fast(rows, &bad) {
                    assert_eq!(
                        Ok(ev),
                        general,
                        "{which} walk: byte {at} set to {v:#04x} in {datum:?}"
                    );
                    decided += 1;
                }
                if let Some(ev) = layout.decode_fast_hinted(rows, &bad, &mut learned.clone()) {
                    assert_eq!(
                        Ok(ev),
                        general,
                        "{which} walk, with the hint: byte {at} set to {v:#04x} in {datum:?}"
                    );
                    decided_hinted += 1;
                }
                checked += 1;
            }
        }
    }
    assert!(
        checked > 10_000 && decided > 1_000 && decided_hinted == decided,
        "{which} walk: {checked} {decided} {decided_hinted}"
    );
}

/// A partition whose envelopes' tails keep changing shape (here the GTID's length, every other
/// record) is decoded as the general walk decodes it, however often the learned tail misses.
#[test]
fn a_partition_whose_tails_keep_changing_is_decoded_as_the_general_walk_decodes_it() {
    let (schema, layout, plan, rows) = orders_flat();
    let mut scratch = Scratch::default();
    let mut hint = Hint::default();
    for (i, mut c) in history(400, 20, 5).into_iter().enumerate() {
        // Alternating lengths for 300 records, then one length again.
        c.tx = if i < 300 && i % 2 == 0 {
            7 + i as u64 % 3
        } else {
            1_234_567 + i as u64
        };
        let datum = encode_envelope(&c, true);
        let general = layout
            .decode_general(&schema, &plan, &rows, &datum, &mut scratch)
            .unwrap();
        assert_eq!(general.position.tx, c.tx);
        assert_eq!(
            layout.decode_hinted(&schema, &plan, &rows, &datum, &mut scratch, &mut hint),
            Ok(general),
            "record {i}"
        );
    }
    assert!(hint.has_template());
}
