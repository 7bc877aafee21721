//! Arbitrary bytes as a schema's JSON text, as a registry may serve it: parsing returns a
//! schema or a typed error, and a schema it accepts describes, fingerprints, and compiles as an
//! envelope layout and as a plan against itself, without panicking and in bounded time and
//! memory (the parse's depth and expansion limits are what bound them).
#![no_main]

use cdc_verifier_core::avro::{Plan, Schema};
use cdc_verifier_core::envelope::EnvelopeLayout;
use cdc_verifier_core::PositionField;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(schema) = Schema::parse_str(text) else {
        return;
    };
    let root = schema.root();
    let _ = schema.fingerprint(root);
    let _ = schema.describe(root);
    let plan = Plan::compile(&schema, root, &schema, root);
    assert!(plan.is_identity(), "a schema is identical to itself");
    if let Ok(layout) = EnvelopeLayout::compile(&schema, &PositionField::Gtid) {
        let _ = schema.fingerprint(layout.row);
        let _ = Plan::compile(&schema, layout.row, &schema, layout.row);
    }
});
