use super::*;
use crate::digest::OpCounts;

fn window(id: i64) -> WindowRef {
    WindowRef {
        id,
        first: Position { tx: 10, order: 1 },
        last: Position { tx: 20, order: 3 },
        start_ms: 1400,
        end_ms: 1600,
    }
}

fn range() -> RangeRef {
    RangeRef {
        index: 3,
        label: "[0x3000..0x4000)".into(),
    }
}

fn lag() -> LagInfo {
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

/// One verdict of every kind and episode, with its key.
fn samples() -> Vec<(Divergence, &'static str)> {
    let d = |finding| Divergence::new("replica-1", 5, finding);
    vec![
        (
            d(Finding::DataMismatch(Mismatch {
                table: "orders".into(),
                range: range(),
                window: Some(window(7)),
                sides: Some(Sides {
                    primary: side("00ab"),
                    replica: side("00cd"),
                }),
                offsets: Vec::new(),
                keys: Vec::new(),
            })),
            "DataMismatch/replica-1/orders/3/7",
        ),
        (
            d(Finding::DataMismatch(Mismatch {
                table: "orders".into(),
                range: range(),
                window: None,
                sides: None,
                offsets: Vec::new(),
                keys: Vec::new(),
            })),
            "DataMismatch/replica-1/orders/3/*",
        ),
        (
            d(Finding::SchemaDrift(Drift {
                table: "orders".into(),
                window: window(7),
                schema: SchemaInfo {
                    subject: "replica-1.shop.orders-value".into(),
                    expected_id: 9,
                    expected_version: Some(2),
                    actual_id: 4,
                    actual_version: None,
                    fields: Vec::new(),
                    first_position: Position { tx: 12, order: 1 },
                    first_ts_ms: 1450,
                    events: 3,
                },
                offsets: Vec::new(),
            })),
            "SchemaDrift/replica-1/orders/*/7",
        ),
        (
            d(Finding::ReplicaLag {
                window: window(8),
                lag: lag(),
            }),
            "ReplicaLag/replica-1/*/*/8",
        ),
        (
            d(Finding::StreamSilent {
                table: "customers".into(),
                window: None,
                lag: lag(),
            }),
            "StreamSilent/replica-1/customers/*/*",
        ),
        (
            d(Finding::PoisonEvent {
                table: "orders".into(),
                poison: PoisonInfo {
                    topic: "replica-1.shop.orders".into(),
                    partition: 1,
                    offset: 5,
                    error: "bad magic byte".into(),
                },
            }),
            "PoisonEvent/replica-1/replica-1.shop.orders/1/5",
        ),
        (
            d(Finding::Recovered(Recovery::DataMismatch {
                table: "orders".into(),
                range: range(),
                window: Some(window(9)),
            })),
            "Recovered:DataMismatch/replica-1/orders/3/9",
        ),
        (
            d(Finding::Recovered(Recovery::SchemaDrift {
                table: "orders".into(),
                window: window(9),
            })),
            "Recovered:SchemaDrift/replica-1/orders/*/9",
        ),
        (
            d(Finding::Recovered(Recovery::ReplicaLag {
                window: window(8),
            })),
            "Recovered:ReplicaLag/replica-1/*/*/8",
        ),
        (
            d(Finding::Recovered(Recovery::StreamSilent {
                table: "customers".into(),
            })),
            "Recovered:StreamSilent/replica-1/customers/*/*",
        ),
    ]
}

#[test]
fn every_kind_has_its_key() {
    for (d, key) in samples() {
        assert_eq!(d.key(), key);
    }
}

#[test]
fn every_kind_reads_back_from_its_record() {
    for (d, key) in samples() {
        let r = DivergenceRecord::from(&d);
        assert_eq!(r.kind, d.kind(), "{key}");
        assert_eq!(Divergence::try_from(r).as_ref(), Ok(&d), "{key}");
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            serde_json::from_str::<Divergence>(&json).unwrap(),
            d,
            "{key}"
        );
    }
}

#[test]
fn a_record_missing_what_its_kind_needs_is_refused() {
    let drift = samples().swap_remove(2).0;
    let mut r = DivergenceRecord::from(&drift);
    r.schema = None;
    assert_eq!(
        Divergence::try_from(r),
        Err(IncompleteRecord {
            kind: Kind::SchemaDrift,
            missing: "a schema"
        })
    );
    let mut r = DivergenceRecord::from(&samples()[0].0);
    r.replica_side = None;
    assert!(Divergence::try_from(r).is_err());
    let mut r = DivergenceRecord::from(&samples()[6].0);
    r.recovered = Some(Kind::PoisonEvent);
    assert!(Divergence::try_from(r).is_err());
}

#[test]
fn a_mismatch_of_equal_end_states_says_the_changes_differ_not_the_rows() {
    let mismatch = |replica: &str| {
        Divergence::new(
            "replica-1",
            5,
            Finding::DataMismatch(Mismatch {
                table: "carts".into(),
                range: range(),
                window: Some(window(7)),
                sides: Some(Sides {
                    primary: side("559c182e00"),
                    replica: side(replica),
                }),
                offsets: Vec::new(),
                keys: Vec::new(),
            }),
        )
        .summary()
    };
    assert_eq!(
        mismatch("559c182e00"),
        "DataMismatch replica-1 carts [0x3000..0x4000) window 7 (positions 10..20): the same \
         rows at the end (state 559c182e), reached by other changes: primary 2 events, replica 2 \
         events"
    );
    assert_eq!(
        mismatch("47d0fd3400"),
        "DataMismatch replica-1 carts [0x3000..0x4000) window 7 (positions 10..20): primary \
         559c182e (2 events), replica 47d0fd34 (2 events)"
    );
}
