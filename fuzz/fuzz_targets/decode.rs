//! Arbitrary bytes as a Confluent wire-format Debezium record: the decoder must return a
//! typed error or a result, never panic, hang or allocate beyond the input's size.
#![no_main]

use cdc_verifier_core::avro::{json, Plan, Reader, Schema, Scratch};
use cdc_verifier_core::envelope::{EnvelopeLayout, Hint};
use cdc_verifier_core::digest::RowHasher;
use cdc_verifier_core::{wire, PositionField};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const ROW_V1: &str = r#"{"name":"id","type":"long"},{"name":"status","type":"string"},
  {"name":"total","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
  {"name":"tags","type":{"type":"array","items":"string"}},
  {"name":"attrs","type":{"type":"map","values":["null","double","int"]}},
  {"name":"kind","type":{"type":"enum","name":"Kind","symbols":["A","B","C"]}},
  {"name":"sku","type":{"type":"fixed","name":"Sku","size":4}},
  {"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}},
  {"name":"next","type":["null","Value"],"default":null}"#;

fn envelope(row: &str) -> String {
    format!(
        r#"{{"type":"record","name":"Envelope","fields":[
          {{"name":"before","type":["null",{{"type":"record","name":"Value","fields":[{row}]}}],"default":null}},
          {{"name":"after","type":["null","Value"],"default":null}},
          {{"name":"source","type":{{"type":"record","name":"Source","fields":[{{"name":"ts_ms","type":"long"}},{{"name":"gtid","type":["null","string"]}}]}}}},
          {{"name":"op","type":"string"}},
          {{"name":"transaction","type":["null",{{"type":"record","name":"block","fields":[{{"name":"id","type":"string"}},{{"name":"total_order","type":"long"}}]}}]}}]}}"#
    )
}

/// A row of primitives only, as most tables are: its envelope has the flat walk.
const ROW_FLAT: &str = r#"{"name":"id","type":"long"},{"name":"status","type":"string"},
  {"name":"total","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
  {"name":"qty","type":"int"},{"name":"note","type":["null","string"]},{"name":"ok","type":"boolean"},
  {"name":"w","type":"double"},{"name":"k","type":{"type":"enum","name":"K","symbols":["A","B"]}},
  {"name":"seen","type":["null","long"]},{"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}}"#;

struct Fixture {
    flat: Schema,
    layout_flat: EnvelopeLayout,
    /// The same, with the flat walk's code for any x86-64 (`layout_flat` has this CPU's).
    layout_portable: EnvelopeLayout,
    flat_plan: Plan,
    writer: Schema,
    reader: Schema,
    layout_w: EnvelopeLayout,
    identity: Plan,
    resolve: Plan,
    rows: RowHasher,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let writer = Schema::parse_str(&envelope(ROW_V1)).unwrap();
        let v2 = ROW_V1.replace(r#"{"name":"at","#, r#"{"name":"currency","type":"string","default":"USD"},{"name":"at","#)
            .replace(r#""type":"long"},{"name":"status""#, r#""type":["null","long"]},{"name":"status""#);
        let reader = Schema::parse_str(&envelope(&v2)).unwrap();
        let layout_w = EnvelopeLayout::compile(&writer, &PositionField::Gtid).unwrap();
        let layout_r = EnvelopeLayout::compile(&reader, &PositionField::Gtid).unwrap();
        let identity = Plan::compile(&writer, layout_w.row, &writer, layout_w.row);
        let resolve = Plan::compile(&writer, layout_w.row, &reader, layout_r.row);
        let flat = Schema::parse_str(&envelope(ROW_FLAT)).unwrap();
        let layout_flat = EnvelopeLayout::compile(&flat, &PositionField::Gtid).unwrap();
        assert!(layout_flat.has_fast_path());
        let flat_plan = Plan::compile(&flat, layout_flat.row, &flat, layout_flat.row);
        let layout_portable = layout_flat.clone().portable();
        Fixture { flat, layout_flat, layout_portable, flat_plan, writer, reader, layout_w, identity, resolve, rows: RowHasher::new(1) }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let _ = &f.reader;
    let Ok((_id, datum)) = wire::split(data) else { return };
    let mut scratch = Scratch::default();
    let a = f.layout_w.decode(&f.writer, &f.identity, &f.rows, datum, &mut scratch);
    let b = f.layout_w.decode(&f.writer, &f.resolve, &f.rows, datum, &mut scratch);
    // Both plans accept and reject the same inputs.
    assert_eq!(a.is_ok(), b.is_ok(), "{a:?} vs {b:?}");
    if let Ok(ev) = a {
        if let Some((s, e)) = ev.image {
            let _ = json::to_json(&f.writer, f.layout_w.row, &mut Reader::new(&datum[s as usize..e as usize]));
        }
    }
    let _ = json::to_json(&f.writer, f.writer.root(), &mut Reader::new(datum));
    // The flat walk decides only what the general walk decides the same way.
    let general = f.layout_flat.decode_general(&f.flat, &f.flat_plan, &f.rows, datum, &mut scratch);
    if let Some(ev) = f.layout_flat.decode_fast(&f.rows, datum) {
        assert_eq!(Ok(ev), general, "flat walk disagrees");
    }
    if let Some(ev) = f.layout_portable.decode_fast(&f.rows, datum) {
        assert_eq!(Ok(ev), general, "portable flat walk disagrees");
    }
    assert_eq!(f.layout_flat.decode(&f.flat, &f.flat_plan, &f.rows, datum, &mut scratch), general);
    // With what was learned of earlier inputs (the tail's template), as a partition's
    // records are decoded: still the general walk's verdict.
    HINT.with_borrow_mut(|hint| {
        assert_eq!(f.layout_flat.decode_hinted(&f.flat, &f.flat_plan, &f.rows, datum, &mut scratch, hint), general, "hinted walk disagrees");
    });
});

thread_local! {
    static HINT: std::cell::RefCell<Hint> = Default::default();
}
