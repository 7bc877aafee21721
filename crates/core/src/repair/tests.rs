use serde_json::json;

use super::*;

/// The envelope Debezium's MariaDB connector registers for `orders` (abridged): DATETIME(3)
/// as io.debezium.time.Timestamp, TIMESTAMP(3) as ZonedTimestamp, DECIMAL as decimal bytes.
const ENVELOPE: &str = r#"{"type":"record","name":"Envelope","fields":[
  {"name":"before","type":["null",{"type":"record","name":"Value","fields":[
    {"name":"id","type":"long"},
    {"name":"status","type":{"type":"string","connect.name":"io.debezium.data.Enum"}},
    {"name":"total","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
    {"name":"created","type":{"type":"long","connect.name":"io.debezium.time.Timestamp"}},
    {"name":"placed","type":{"type":"string","connect.name":"io.debezium.time.ZonedTimestamp"}},
    {"name":"shipped","type":["null",{"type":"int","connect.name":"io.debezium.time.Date"}]},
    {"name":"at_us","type":{"type":"long","connect.name":"io.debezium.time.MicroTimestamp"}},
    {"name":"blob","type":["null","bytes"]},
    {"name":"note","type":["null","string"]}
  ]}]},
  {"name":"after","type":["null","Value"]},
  {"name":"op","type":"string"}]}"#;

fn row() -> Json {
    json!({
        "id": 2017,
        "status": "paid",
        "total": "17.50",
        "created": 1_719_907_200_123_i64,
        "placed": "2024-07-02T09:00:00.000Z",
        "shipped": 19_906,
        "at_us": 1_719_907_200_123_456_i64,
        "blob": "00ff10",
        "note": "it's a \\ back"
    })
}

#[test]
fn columns_are_typed_from_the_envelope() {
    let c = columns(ENVELOPE);
    let kind = |n: &str| c.iter().find(|(x, _)| x == n).unwrap().1;
    assert_eq!(kind("id"), Column::Plain);
    assert_eq!(kind("total"), Column::Decimal);
    assert_eq!(kind("created"), Column::Timestamp(TimeUnit::Millis));
    assert_eq!(kind("placed"), Column::Timestamp(TimeUnit::Text));
    assert_eq!(kind("shipped"), Column::Date);
    assert_eq!(kind("at_us"), Column::Timestamp(TimeUnit::Micros));
    assert_eq!(kind("blob"), Column::Bytes);
    assert_eq!(kind("note"), Column::Plain);
    assert!(columns("not json").is_empty());
}

#[test]
fn an_upsert_in_mysql_types_every_value() {
    let s = statement(
        Dialect::MySql,
        "shop.orders",
        &columns(ENVELOPE),
        &json!({"id": 2017}),
        &row(),
    );
    assert_eq!(
        s,
        "INSERT INTO `shop`.`orders` (`id`, `status`, `total`, `created`, `placed`, `shipped`, \
         `at_us`, `blob`, `note`) VALUES (2017, 'paid', 17.50, '2024-07-02 08:00:00.123', \
         '2024-07-02 09:00:00.000', '2024-07-02', '2024-07-02 08:00:00.123456', X'00ff10', \
         CONVERT(X'697427732061205c206261636b' USING utf8mb4)) ON DUPLICATE KEY UPDATE \
         `status` = VALUES(`status`), `total` = VALUES(`total`), `created` = VALUES(`created`), \
         `placed` = VALUES(`placed`), `shipped` = VALUES(`shipped`), `at_us` = VALUES(`at_us`), \
         `blob` = VALUES(`blob`), `note` = VALUES(`note`);"
    );
}

#[test]
fn an_upsert_in_postgresql_conflicts_on_the_key() {
    let mut r = row();
    r["note"] = json!("it's");
    r["blob"] = Json::Null;
    let s = statement(
        Dialect::Postgres,
        "orders",
        &columns(ENVELOPE),
        &json!({"id": 2017}),
        &r,
    );
    assert!(
        s.starts_with("INSERT INTO \"orders\" (\"id\", \"status\""),
        "{s}"
    );
    assert!(
        s.contains("'\\x00ff10'::bytea") || s.contains("NULL"),
        "{s}"
    );
    assert!(s.contains(", NULL, 'it''s')"), "{s}");
    assert!(
        s.ends_with("ON CONFLICT (\"id\") DO UPDATE SET \"status\" = EXCLUDED.\"status\", \"total\" = EXCLUDED.\"total\", \"created\" = EXCLUDED.\"created\", \"placed\" = EXCLUDED.\"placed\", \"shipped\" = EXCLUDED.\"shipped\", \"at_us\" = EXCLUDED.\"at_us\", \"blob\" = EXCLUDED.\"blob\", \"note\" = EXCLUDED.\"note\";"),
        "{s}"
    );
}

#[test]
fn a_row_the_primary_lacks_is_deleted_by_its_composite_key() {
    let key = json!({"order_id": 2017, "line": 2});
    let cols = [
        ("order_id".to_string(), Column::Plain),
        ("line".to_string(), Column::Plain),
    ];
    assert_eq!(
        statement(Dialect::MySql, "order_items", &cols, &key, &Json::Null),
        "DELETE FROM `order_items` WHERE `order_id` = 2017 AND `line` = 2;"
    );
    assert_eq!(
        statement(Dialect::Postgres, "order_items", &cols, &key, &Json::Null),
        "DELETE FROM \"order_items\" WHERE \"order_id\" = 2017 AND \"line\" = 2;"
    );
}

#[test]
fn identifiers_and_text_are_quoted() {
    let key = json!({"we`ird\"": "o'k"});
    assert_eq!(
        statement(Dialect::MySql, "t", &[], &key, &Json::Null),
        "DELETE FROM `t` WHERE `we``ird\"` = 'o''k';"
    );
    assert_eq!(
        statement(Dialect::Postgres, "t", &[], &key, &Json::Null),
        "DELETE FROM \"t\" WHERE \"we`ird\"\"\" = 'o''k';"
    );
}

#[test]
fn a_value_with_no_literal_is_said_not_guessed() {
    let s = statement(
        Dialect::MySql,
        "t",
        &[],
        &json!({"id": 1}),
        &json!({"id": 1, "tags": ["a", "b"]}),
    );
    assert!(
        s.starts_with("-- cannot repair key {\"id\":1}: column tags"),
        "{s}"
    );
    let bad = statement(
        Dialect::MySql,
        "shop.orders",
        &columns(ENVELOPE),
        &json!({"id": 1}),
        &json!({"id": 1, "total": "12;DROP"}),
    );
    assert!(bad.starts_with("-- cannot repair"), "{bad}");
}

#[test]
fn types_with_no_faithful_literal_and_malformed_values_are_said() {
    let bits = column_of(&json!({"type": "bytes", "connect.name": "io.debezium.data.Bits"}));
    let cols = [
        ("id".to_string(), Column::Plain),
        ("bits".to_string(), bits),
        ("total".to_string(), Column::Decimal),
    ];
    let key = json!({"id": 1});
    let s = statement(
        Dialect::MySql,
        "t",
        &cols,
        &key,
        &json!({"id": 1, "bits": "0102"}),
    );
    assert!(
        s.starts_with(
            "-- cannot repair key {\"id\":1}: column bits: a io.debezium.data.Bits value"
        ),
        "{s}"
    );
    for bad in ["--5", "1-2", "", "-", "1.2.3"] {
        let s = statement(
            Dialect::Postgres,
            "t",
            &cols,
            &key,
            &json!({"id": 1, "total": bad}),
        );
        assert!(s.starts_with("-- cannot repair"), "{bad}: {s}");
    }
    let s = statement(
        Dialect::Postgres,
        "t",
        &cols,
        &key,
        &json!({"id": 1, "total": "-0.50"}),
    );
    assert!(s.contains("VALUES (1, -0.50)"), "{s}");
}

#[test]
fn times_of_day_and_key_only_rows() {
    let cols = [
        ("k".to_string(), Column::Plain),
        ("t".to_string(), Column::Time(TimeUnit::Micros)),
    ];
    let key = json!({"k": 1});
    let row = json!({"k": 1, "t": -5_400_000_001_i64});
    let s = statement(Dialect::MySql, "x", &cols, &key, &row);
    assert!(s.contains("'-01:30:00.000001'"), "{s}");
    let s = statement(Dialect::MySql, "x", &cols[..1], &key, &json!({"k": 1}));
    assert_eq!(
        s,
        "INSERT INTO `x` (`k`) VALUES (1) ON DUPLICATE KEY UPDATE `k` = `k`;"
    );
}
