//! Column rules: what each treatment makes equal, what it leaves different, and that the
//! engine applies them to both sides (and to schema drift) before it compares.

mod support;

use cdc_verifier_core::EngineConfig;
use cdc_verifier_core::avro::reader::write_long;
use cdc_verifier_core::avro::{Plan, Reader, Schema, Scratch};
use cdc_verifier_core::rules::{ColumnRule, ColumnRules, TableRules, TimeUnit, Treatment};
use cdc_verifier_core::verdict::Kind;
use support::harness::Harness;
use support::{Change, Row, history};

fn rules(table: &str, columns: &[&str], treatment: Treatment) -> ColumnRules {
    ColumnRules(vec![ColumnRule {
        table: table.into(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        treatment,
    }])
}

/// Canonical bytes of a row datum read by `schema` under `rules` (as the row's own reader).
fn canonical(schema: &Schema, rules: Option<&TableRules>, datum: &[u8]) -> Vec<u8> {
    let (plan, notes) = Plan::compile_ruled(schema, schema.root(), schema, schema.root(), rules);
    assert!(notes.is_empty(), "{notes:?}");
    let mut scratch = Scratch::default();
    let mut r = Reader::new(datum);
    let out = plan.canonical(schema, &mut r, &mut scratch).unwrap();
    out.bytes().to_vec()
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    write_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

/// A row of the measurement table: id, a double, a nullable float, a Debezium µs
/// timestamp, a zoned timestamp, a name.
const MEASURES: &str = r#"{"type":"record","name":"Value","fields":[
    {"name":"id","type":"long"},
    {"name":"reading","type":"double"},
    {"name":"ratio","type":["null","float"],"default":null},
    {"name":"taken","type":{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}},
    {"name":"zoned","type":["null",{"type":"string","connect.name":"io.debezium.time.ZonedTimestamp"}],"default":null},
    {"name":"name","type":"string"}]}"#;

struct Measure<'a> {
    reading: f64,
    ratio: Option<f32>,
    taken: i64,
    zoned: &'a str,
    name: &'a str,
}

fn measure(m: &Measure<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    write_long(&mut out, 7);
    out.extend_from_slice(&m.reading.to_le_bytes());
    match m.ratio {
        None => write_long(&mut out, 0),
        Some(f) => {
            write_long(&mut out, 1);
            out.extend_from_slice(&f.to_le_bytes());
        }
    }
    write_long(&mut out, m.taken);
    write_long(&mut out, 1);
    put_str(&mut out, m.zoned);
    put_str(&mut out, m.name);
    out
}

const BASE: Measure<'static> = Measure {
    reading: 21.5,
    ratio: Some(0.25),
    taken: 1_723_650_000_123_456,
    zoned: "2024-08-14T10:00:00.123456Z",
    name: "Kari",
};

/// Whether `a` and `b` hash alike under `t` (on `columns`), and, as a control, without it.
fn alike(t: Treatment, columns: &[&str], a: &Measure<'_>, b: &Measure<'_>) -> (bool, bool) {
    let schema = Schema::parse_str(MEASURES).unwrap();
    let table = rules("m", columns, t).for_table("m").unwrap();
    let (da, db) = (measure(a), measure(b));
    (
        canonical(&schema, Some(&table), &da) == canonical(&schema, Some(&table), &db),
        canonical(&schema, None, &da) == canonical(&schema, None, &db),
    )
}

#[test]
fn floats_are_equal_at_the_decimals_asked_and_not_beyond() {
    let t = Treatment::FloatDecimals(3);
    let near = Measure {
        reading: 21.500_000_4,
        ratio: Some(0.250_000_1),
        ..BASE
    };
    assert_eq!(alike(t, &["*"], &BASE, &near), (true, false));
    let far = Measure {
        reading: 21.51,
        ..BASE
    };
    assert_eq!(alike(t, &["*"], &BASE, &far), (false, false));
    // Only the columns named.
    assert_eq!(alike(t, &["ratio"], &BASE, &near), (false, false));
    // A null stays a null, distinct from any number.
    let null = Measure {
        ratio: None,
        ..BASE
    };
    assert_eq!(alike(t, &["*"], &BASE, &null), (false, false));
}

#[test]
fn times_are_equal_within_the_unit_asked_numbers_and_text_alike() {
    let t = Treatment::TimePrecision(TimeUnit::Millis);
    let same_ms = Measure {
        taken: 1_723_650_000_123_999,
        zoned: "2024-08-14T10:00:00.1239Z",
        ..BASE
    };
    assert_eq!(alike(t, &["*"], &BASE, &same_ms), (true, false));
    let next_ms = Measure {
        taken: 1_723_650_000_124_000,
        ..BASE
    };
    assert_eq!(alike(t, &["*"], &BASE, &next_ms), (false, false));
    // To the second: a replica keeping DATETIME(0) against a primary's DATETIME(6).
    let t = Treatment::TimePrecision(TimeUnit::Seconds);
    let whole = Measure {
        taken: 1_723_650_000_000_000,
        zoned: "2024-08-14T10:00:00Z",
        ..BASE
    };
    assert_eq!(alike(t, &["taken", "zoned"], &BASE, &whole), (true, false));
    // Before 1970 too: truncation is toward the earlier second, on both sides alike.
    let a = Measure {
        taken: -1_500_000,
        ..BASE
    };
    let b = Measure {
        taken: -1_999_999,
        ..BASE
    };
    assert_eq!(alike(t, &["taken"], &a, &b), (true, false));
}

#[test]
fn text_is_equal_in_any_case_and_only_then() {
    let t = Treatment::CaseInsensitive;
    let upper = Measure {
        name: "KARI",
        ..BASE
    };
    assert_eq!(alike(t, &["name"], &BASE, &upper), (true, false));
    let other = Measure {
        name: "Kåre",
        ..BASE
    };
    assert_eq!(alike(t, &["name"], &BASE, &other), (false, false));
    let accents = Measure {
        name: "ÅSE",
        ..BASE
    };
    let lower = Measure {
        name: "åse",
        ..BASE
    };
    assert_eq!(alike(t, &["name"], &accents, &lower), (true, false));
}

#[test]
fn a_treatment_that_does_not_fit_a_named_column_is_said() {
    let schema = Schema::parse_str(MEASURES).unwrap();
    let table = rules("m", &["name", "id"], Treatment::FloatDecimals(2))
        .for_table("m")
        .unwrap();
    let (plan, notes) =
        Plan::compile_ruled(&schema, schema.root(), &schema, schema.root(), Some(&table));
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].contains("`id`") && notes[0].contains("floats rounded to 2 decimals"));
    // Nothing to do: the plan reads the bytes as they are.
    assert!(plan.is_identity());
    // `*` fits what it fits, silently.
    let table = rules("m", &["*"], Treatment::CaseInsensitive)
        .for_table("m")
        .unwrap();
    let (plan, notes) =
        Plan::compile_ruled(&schema, schema.root(), &schema, schema.root(), Some(&table));
    assert!(notes.is_empty() && !plan.is_identity());
}

fn engine_with(rules: ColumnRules) -> Harness {
    let cfg = EngineConfig {
        rules,
        ..EngineConfig::default()
    };
    Harness::with_config(cfg, &["replica"], 2)
}

/// The same history on both sides, each replica row changed by `f`; the replica on schema
/// v1 (no `currency`) when `old_schema`. Returns the verdicts' kinds.
fn run(h: &mut Harness, old_schema: bool, f: impl Fn(&mut Row)) -> Vec<Kind> {
    let changes = history(400, 50, 7);
    for c in &changes {
        let mut p = c.clone();
        for r in p.after.iter_mut().chain(p.before.iter_mut()) {
            if r.id % 3 == 0 {
                r.currency = "EUR".into();
            }
        }
        h.send(0, &p, true);
        let mut r: Change = p.clone();
        for row in r.after.iter_mut().chain(r.before.iter_mut()) {
            f(row);
        }
        h.send(1, &r, !old_schema);
    }
    h.finish().iter().map(|d| d.kind()).collect()
}

#[test]
fn the_engine_compares_both_sides_under_the_rules() {
    // A replica on an old schema: drift and mismatches, unless the column is ignored.
    let kinds = run(&mut engine_with(ColumnRules::default()), true, |_| {});
    assert!(kinds.contains(&Kind::SchemaDrift), "{kinds:?}");
    let kinds = run(
        &mut engine_with(rules("orders", &["currency"], Treatment::Ignore)),
        true,
        |_| {},
    );
    assert_eq!(
        kinds,
        [],
        "the ignored column is neither drift nor mismatch"
    );
    // Another table's rule changes nothing here.
    let kinds = run(
        &mut engine_with(rules("customers", &["currency"], Treatment::Ignore)),
        true,
        |_| {},
    );
    assert!(kinds.contains(&Kind::SchemaDrift), "{kinds:?}");

    // A replica folding case, and keeping whole seconds.
    let replica = |r: &mut Row| {
        r.status = r.status.to_uppercase();
        r.created_at -= r.created_at.rem_euclid(1000);
    };
    let kinds = run(&mut engine_with(ColumnRules::default()), false, replica);
    assert!(kinds.contains(&Kind::DataMismatch), "{kinds:?}");
    let both = ColumnRules(vec![
        ColumnRule {
            table: "*".into(),
            columns: vec!["status".into()],
            treatment: Treatment::CaseInsensitive,
        },
        ColumnRule {
            table: "orders".into(),
            columns: vec!["created_at".into()],
            treatment: Treatment::TimePrecision(TimeUnit::Seconds),
        },
    ]);
    let kinds = run(&mut engine_with(both.clone()), false, replica);
    assert_eq!(kinds, [], "equal under the rules");
    // A real difference still shows through the rules.
    let kinds = run(&mut engine_with(both), false, |r| {
        replica(r);
        if r.id == 11 {
            r.total_cents += 1;
        }
    });
    assert!(kinds.contains(&Kind::DataMismatch), "{kinds:?}");
}
