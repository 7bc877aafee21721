//! The end of every replay: its answer and exit status.

use cdc_verifier_core::{Engine, EngineConfig};

use super::finish;
use crate::report::{self, SourceInfo};

#[test]
fn a_replay_that_verified_no_event_is_an_error_not_consistent() {
    let mut engine = Engine::new(EngineConfig::default(), "primary", &["replica-1"]);
    engine.add_topic("primary.shop.orders", 0, "orders", 1);
    engine.add_topic("replica-1.shop.orders", 1, "orders", 1);
    let report = report::build(
        &engine,
        &[],
        SourceInfo {
            kind: "kafka".into(),
            description: "kafka k:9092 committed from 2030-01-01T00:00:00Z to the end".into(),
            from: None,
            to: None,
        },
    );
    assert!(!report.is_consistent());
    assert!(report.nothing_verified());
    let text = report::summary_text(&report);
    assert!(!text.contains("CONSISTENT"), "{text}");
    assert!(text.contains("NOTHING VERIFIED"), "{text}");

    let dir = tempfile::tempdir().unwrap();
    let (json, html) = (dir.path().join("r.json"), dir.path().join("r.html"));
    let err = finish(&report, Some(&json), Some(&html)).expect_err("nothing was compared");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("verified 0 events") && msg.contains("nothing to compare"),
        "{msg}"
    );
    assert!(msg.contains("committed from 2030-01-01T00:00:00Z"), "{msg}");
    // The reports are still written, and say so too.
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(saved["verdict"], "nothing_verified");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("Nothing verified"), "{page}");
    assert!(!page.contains("Consistent"));
}
