//! Repair statements: for a key whose row differs, the SQL that makes the replica's row the
//! primary's — an upsert of the primary's row, or a delete where the primary has none — in
//! the MySQL/MariaDB and PostgreSQL dialects.
//!
//! Values are typed by the primary's row schema as the Debezium connector registered it
//! ([`columns`]): Kafka Connect and Debezium time types become date/time literals (UTC:
//! MySQL statements set the session's `time_zone` to UTC first), decimals exact numerals,
//! bytes hex literals, text quoted. A value this module cannot write as a literal (a nested
//! record, an array) is never guessed: the key gets a comment saying which column and why,
//! instead of a statement.

use serde_json::{Map, Value as Json};

use crate::time::{civil_from_days, format_utc};

/// A key's repair statement in both dialects.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Statements {
    pub mysql: String,
    pub postgresql: String,
}

/// How a column's values are written as SQL literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    /// Numbers and booleans as they are; text quoted.
    Plain,
    /// Exact decimal numerals (rendered as strings).
    Decimal,
    /// Days since the epoch, or `YYYY-MM-DD` text.
    Date,
    /// A point in time: epoch milliseconds, microseconds or nanoseconds, or RFC 3339 text.
    Timestamp(TimeUnit),
    /// Time of day in milliseconds or microseconds.
    Time(TimeUnit),
    /// Bytes, rendered as hex.
    Bytes,
    /// A type whose rendering does not give its SQL value (e.g. Debezium's little-endian
    /// `Bits`, `NanoTime`, `MicroDuration`): said, never guessed.
    Unsupported(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Millis,
    Micros,
    Nanos,
    /// Already text (RFC 3339).
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    MySql,
    Postgres,
}

/// The columns of the row a Debezium envelope schema (Avro JSON) carries in `after`, with
/// how each is written. Empty when the schema is not such an envelope.
pub fn columns(envelope_schema: &str) -> Vec<(String, Column)> {
    let Ok(schema) = serde_json::from_str::<Json>(envelope_schema) else {
        return Vec::new();
    };
    let row = schema["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["name"] == "before" || f["name"] == "after")
        .filter_map(|f| record_of(&f["type"]))
        .next();
    let Some(row) = row else { return Vec::new() };
    row["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| Some((f["name"].as_str()?.to_string(), column_of(&f["type"]))))
        .collect()
}

fn record_of(t: &Json) -> Option<&Json> {
    match t {
        Json::Array(branches) => branches.iter().find_map(record_of),
        Json::Object(o) if o.get("type").and_then(Json::as_str) == Some("record") => Some(t),
        _ => None,
    }
}

fn column_of(t: &Json) -> Column {
    let t = match t {
        Json::Array(branches) => branches
            .iter()
            .find(|b| *b != "null")
            .unwrap_or(&Json::Null),
        other => other,
    };
    let attr = |k: &str| t.get(k).and_then(Json::as_str).unwrap_or("");
    let (logical, connect, base) = (attr("logicalType"), attr("connect.name"), attr("type"));
    match (logical, connect) {
        ("decimal", _) | (_, "org.apache.kafka.connect.data.Decimal") => Column::Decimal,
        ("date", _) | (_, "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date") => {
            Column::Date
        }
        ("timestamp-millis", _)
        | (_, "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp") => {
            Column::Timestamp(TimeUnit::Millis)
        }
        ("timestamp-micros", _) | (_, "io.debezium.time.MicroTimestamp") => {
            Column::Timestamp(TimeUnit::Micros)
        }
        (_, "io.debezium.time.NanoTimestamp") => Column::Timestamp(TimeUnit::Nanos),
        (_, "io.debezium.time.ZonedTimestamp") => Column::Timestamp(TimeUnit::Text),
        ("time-millis", _)
        | (_, "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time") => {
            Column::Time(TimeUnit::Millis)
        }
        ("time-micros", _) | (_, "io.debezium.time.MicroTime") => Column::Time(TimeUnit::Micros),
        (_, "io.debezium.data.Bits") => Column::Unsupported("io.debezium.data.Bits"),
        (_, "io.debezium.time.NanoTime") => Column::Unsupported("io.debezium.time.NanoTime"),
        (_, "io.debezium.time.MicroDuration") => {
            Column::Unsupported("io.debezium.time.MicroDuration")
        }
        _ if base == "bytes" || base == "fixed" || t == "bytes" => Column::Bytes,
        _ => Column::Plain,
    }
}

/// The statement that makes the replica's row of `key` the primary's `row` (an object), or
/// deletes it where the primary has none (`row` null). `table` is written as given, each
/// dot-separated part quoted.
pub fn statement(
    dialect: Dialect,
    table: &str,
    columns: &[(String, Column)],
    key: &Json,
    row: &Json,
) -> String {
    let Some(key) = key.as_object() else {
        return format!("-- cannot repair key {key}: the key is not a record of columns");
    };
    let kind = |name: &str| {
        columns
            .iter()
            .find(|(c, _)| c == name)
            .map_or(Column::Plain, |(_, k)| *k)
    };
    // In the schema's column order (columns it does not name last, by name).
    let order = |name: &str| {
        columns
            .iter()
            .position(|(c, _)| c == name)
            .unwrap_or(usize::MAX)
    };
    let values = |m: &Map<String, Json>| -> Result<Vec<(String, String)>, String> {
        let mut fields: Vec<(&String, &Json)> = m.iter().collect();
        fields.sort_by_key(|(c, _)| order(c));
        fields
            .into_iter()
            .map(|(c, v)| {
                let lit = literal(dialect, kind(c), v).map_err(|e| format!("column {c}: {e}"))?;
                Ok((ident(dialect, c), lit))
            })
            .collect()
    };
    let table = table
        .split('.')
        .map(|p| ident(dialect, p))
        .collect::<Vec<_>>()
        .join(".");
    let keys = match values(key) {
        Ok(k) => k,
        Err(e) => return format!("-- cannot repair key {}: {e}", Json::Object(key.clone())),
    };
    match row {
        Json::Object(r) => {
            let cols = match values(r) {
                Ok(c) => c,
                Err(e) => {
                    return format!("-- cannot repair key {}: {e}", Json::Object(key.clone()));
                }
            };
            let names: Vec<&str> = cols.iter().map(|(c, _)| c.as_str()).collect();
            let vals: Vec<&str> = cols.iter().map(|(_, v)| v.as_str()).collect();
            let non_key: Vec<&str> = names
                .iter()
                .copied()
                .filter(|c| !keys.iter().any(|(k, _)| k == c))
                .collect();
            let insert = format!(
                "INSERT INTO {table} ({}) VALUES ({})",
                names.join(", "),
                vals.join(", ")
            );
            match dialect {
                Dialect::MySql if non_key.is_empty() => {
                    format!("{insert} ON DUPLICATE KEY UPDATE {k} = {k};", k = keys[0].0)
                }
                Dialect::MySql => format!(
                    "{insert} ON DUPLICATE KEY UPDATE {};",
                    non_key
                        .iter()
                        .map(|c| format!("{c} = VALUES({c})"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Dialect::Postgres => {
                    let conflict: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
                    let action = if non_key.is_empty() {
                        "DO NOTHING".to_string()
                    } else {
                        format!(
                            "DO UPDATE SET {}",
                            non_key
                                .iter()
                                .map(|c| format!("{c} = EXCLUDED.{c}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    };
                    format!("{insert} ON CONFLICT ({}) {action};", conflict.join(", "))
                }
            }
        }
        _ => format!(
            "DELETE FROM {table} WHERE {};",
            keys.iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect::<Vec<_>>()
                .join(" AND ")
        ),
    }
}

/// What a block of statements of `dialect` starts with: MySQL reads time literals in the
/// session's time zone, and the values are UTC.
pub fn preamble(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::MySql => "SET time_zone = '+00:00';",
        Dialect::Postgres => "SET TIME ZONE 'UTC';",
    }
}

fn ident(d: Dialect, name: &str) -> String {
    match d {
        Dialect::MySql => format!("`{}`", name.replace('`', "``")),
        Dialect::Postgres => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

fn text(d: Dialect, s: &str) -> String {
    match d {
        // A backslash means an escape unless NO_BACKSLASH_ESCAPES is set: the bytes, as hex,
        // read the same either way.
        Dialect::MySql if s.contains('\\') || s.contains('\0') => {
            format!("CONVERT(X'{}' USING utf8mb4)", hex(s.as_bytes()))
        }
        _ => format!("'{}'", s.replace('\'', "''")),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn literal(d: Dialect, kind: Column, v: &Json) -> Result<String, String> {
    Ok(match (kind, v) {
        (_, Json::Null) => "NULL".into(),
        (Column::Unsupported(what), _) => return Err(format!("a {what} value")),
        (_, Json::Bool(b)) => if *b { "TRUE" } else { "FALSE" }.into(),
        (Column::Decimal, Json::String(s)) => {
            let digits = s.strip_prefix('-').unwrap_or(s);
            let numeral = digits.chars().any(|c| c.is_ascii_digit())
                && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
                && digits.chars().filter(|c| *c == '.').count() <= 1;
            if !numeral {
                return Err(format!("{s:?} is not a decimal numeral"));
            }
            s.clone()
        }
        (Column::Date, Json::Number(n)) => {
            let days = n
                .as_i64()
                .ok_or("a date that is not a whole number of days")?;
            let (y, m, dd) = civil_from_days(days);
            text(d, &format!("{y:04}-{m:02}-{dd:02}"))
        }
        (Column::Timestamp(unit), Json::Number(n)) => {
            let v = n.as_i64().ok_or("a time that is not a whole number")?;
            let (ms, sub) = match unit {
                TimeUnit::Millis => (v, String::new()),
                TimeUnit::Micros => (v.div_euclid(1000), format!("{:03}", v.rem_euclid(1000))),
                TimeUnit::Nanos => (
                    v.div_euclid(1_000_000),
                    format!("{:06}", v.rem_euclid(1_000_000)),
                ),
                TimeUnit::Text => return Err("a zoned time that is not text".into()),
            };
            text(d, &sql_time(&format_utc(ms), &sub)?)
        }
        (Column::Timestamp(_), Json::String(s)) => text(d, &sql_time(s, "")?),
        (Column::Time(unit), Json::Number(n)) => {
            let v = n
                .as_i64()
                .ok_or("a time of day that is not a whole number")?;
            let us = match unit {
                TimeUnit::Micros => v,
                _ => v * 1000,
            };
            // MySQL's TIME may be negative (an interval): the sign, then the magnitude.
            let sign = if us < 0 { "-" } else { "" };
            let us = us.unsigned_abs();
            let s = us / 1_000_000;
            text(
                d,
                &format!(
                    "{sign}{:02}:{:02}:{:02}.{:06}",
                    s / 3600,
                    s / 60 % 60,
                    s % 60,
                    us % 1_000_000
                ),
            )
        }
        (Column::Bytes, Json::String(h)) => {
            if h.len() % 2 != 0 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("{h:?} is not hex"));
            }
            match d {
                Dialect::MySql => format!("X'{h}'"),
                Dialect::Postgres => format!("'\\x{h}'::bytea"),
            }
        }
        (_, Json::Number(n)) => n.to_string(),
        (_, Json::String(s)) => text(d, s),
        (_, Json::Array(_) | Json::Object(_)) => {
            return Err("a nested value has no SQL literal here".into());
        }
    })
}

/// RFC 3339 UTC text as `YYYY-MM-DD HH:MM:SS[.fraction]` (both dialects read it), with
/// `more` digits appended to its fraction.
fn sql_time(rfc3339: &str, more: &str) -> Result<String, String> {
    let t = rfc3339
        .strip_suffix('Z')
        .ok_or_else(|| format!("{rfc3339:?} is not a UTC time"))?;
    let t = t.replacen('T', " ", 1);
    Ok(match (t.contains('.'), more.is_empty()) {
        (_, true) => t,
        (true, false) => format!("{t}{more}"),
        (false, false) => format!("{t}.000{more}"),
    })
}

#[cfg(test)]
mod tests;
