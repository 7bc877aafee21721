use super::*;

#[test]
fn fingerprint_ignores_names_and_namespaces() {
    let a = Schema::parse_str(r#"{"type":"record","name":"Value","namespace":"primary.shop.orders","fields":[{"name":"id","type":"long"},{"name":"note","type":["null","string"],"default":null}]}"#).unwrap();
    let b = Schema::parse_str(r#"{"type":"record","name":"Value","namespace":"replica_2.shop.orders","fields":[{"name":"id","type":"long"},{"name":"note","type":["null","string"],"default":null}]}"#).unwrap();
    assert_eq!(a.fingerprint(a.root()), b.fingerprint(b.root()));
}

#[test]
fn fingerprint_sees_fields_types_logical_types_and_defaults() {
    let base = r#"{"type":"record","name":"V","fields":[{"name":"id","type":"long"},{"name":"c","type":"string","default":"USD"}]}"#;
    let fp = |s: &str| {
        let s = Schema::parse_str(s).unwrap();
        s.fingerprint(s.root())
    };
    let f0 = fp(base);
    assert_ne!(f0, fp(&base.replace("\"USD\"", "\"EUR\"")));
    assert_ne!(f0, fp(&base.replace("\"long\"", "\"int\"")));
    assert_ne!(f0, fp(&base.replace("\"c\"", "\"d\"")));
    assert_ne!(
        f0,
        fp(&base.replace(
            "\"type\":\"long\"",
            "\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}"
        ))
    );
}

#[test]
fn recursive_schema_parses_and_fingerprints() {
    let s = Schema::parse_str(r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}"#).unwrap();
    assert!(s.describe(s.root()).contains("^1"));
}

#[test]
fn field_diff_names_the_missing_column() {
    let v2 = Schema::parse_str(r#"{"type":"record","name":"V","fields":[{"name":"id","type":"long"},{"name":"currency","type":"string","default":"USD"}]}"#).unwrap();
    let v1 =
        Schema::parse_str(r#"{"type":"record","name":"V","fields":[{"name":"id","type":"long"}]}"#)
            .unwrap();
    let d = Schema::field_diff(&v2, v2.root(), &v1, v1.root());
    assert_eq!(
        d,
        vec![FieldDiff::Missing {
            field: "currency".into(),
            expected: "string".into()
        }]
    );
}

/// Records `R0`..`Rn` in a root union, each `R{i}` with two fields of type `R{i-1}`: a
/// text of a few hundred bytes whose expansion (what describe, fingerprint and the plan's
/// identity check walk) doubles with every record.
fn doubling(n: usize) -> String {
    let mut types =
        vec![r#"{"type":"record","name":"R0","fields":[{"name":"x","type":"long"}]}"#.to_string()];
    for i in 1..=n {
        types.push(format!(
            r#"{{"type":"record","name":"R{i}","fields":[{{"name":"a","type":"R{p}"}},{{"name":"b","type":"R{p}"}}]}}"#,
            p = i - 1
        ));
    }
    format!("[{}]", types.join(","))
}

#[test]
fn a_schema_that_expands_exponentially_is_refused() {
    // The expansion is exponential: each record more doubles the description.
    let small = |n| {
        let s = Schema::parse_str(&doubling(n)).unwrap();
        s.describe(s.root()).len()
    };
    assert!(small(11) > 2 * small(10) - 100);
    assert!(small(10) > 2 * small(9) - 100);
    // With 40 records it is 2^40 types: refused at parse, not walked.
    let text = doubling(40);
    assert!(text.len() < 4_000);
    assert_eq!(
        Schema::parse_str(&text).unwrap_err(),
        SchemaError::TooLarge {
            limit: MAX_SCHEMA_NODES
        }
    );
    assert_eq!(
        Schema::parse_str(&text).unwrap_err().to_string(),
        "schema expands to more than 100000 types (named types referenced over and over)"
    );
}

#[test]
fn a_schema_nested_too_deep_is_refused() {
    // A chain of references nests without nesting the JSON.
    let chain = |n: usize| {
        let mut types = vec![r#"{"type":"record","name":"C0","fields":[]}"#.to_string()];
        for i in 1..=n {
            types.push(format!(
                r#"{{"type":"record","name":"C{i}","fields":[{{"name":"c","type":"C{p}"}}]}}"#,
                p = i - 1
            ));
        }
        format!("[{}]", types.join(","))
    };
    assert!(Schema::parse_str(&chain(50)).is_ok());
    assert_eq!(
        Schema::parse_str(&chain(100)).unwrap_err(),
        SchemaError::TooDeep {
            limit: MAX_SCHEMA_DEPTH
        }
    );
    // So does JSON nested past the limit.
    let nested = format!(
        "{}\"long\"{}",
        r#"{"type":"array","items":"#.repeat(70),
        "}".repeat(70)
    );
    assert_eq!(
        Schema::parse_str(&nested).unwrap_err(),
        SchemaError::TooDeep {
            limit: MAX_SCHEMA_DEPTH
        }
    );
}

#[test]
fn mutually_recursive_records_are_finite() {
    let s = Schema::parse_str(r#"{"type":"record","name":"A","fields":[{"name":"b","type":["null",{"type":"record","name":"B","fields":[{"name":"a","type":["null","A"]},{"name":"b","type":["null","B"]}]}]}]}"#).unwrap();
    assert_eq!(s.describe(s.root()), "{b:[null|{a:[null|^2],b:[null|^1]}]}");
}

#[test]
fn errors_are_typed() {
    assert!(matches!(Schema::parse_str("{"), Err(SchemaError::Json(_))));
    assert_eq!(
        Schema::parse_str(r#""nope""#).unwrap_err(),
        SchemaError::UnknownType("nope".into())
    );
    assert_eq!(
        Schema::parse_str(r#"{"type":"record","name":"R"}"#).unwrap_err(),
        SchemaError::Missing("record", "fields")
    );
}
