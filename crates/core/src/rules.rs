//! Column rules: what a table's rows are compared without, or compared loosely on.
//!
//! A replica may legitimately differ from its primary in ways nobody wants paged for: a
//! column only the replica keeps (`updated_at` set by a trigger), floats computed on another
//! CPU, timestamps kept at a coarser precision, text under a case-insensitive collation. A
//! rule names a table (or `*`), its columns (or `*`) and a treatment; each treatment is
//! applied to both sides' rows before they are hashed, so the comparison, the digests and the
//! key drill-down all see the treated values. Row images shown to people (the keys named,
//! the repair statements) stay as written.
//!
//! Treatments:
//! - [`Treatment::Ignore`]: the column is left out of the row hash, and out of schema drift
//!   (a column the replica alone has, or lacks, is not a drift).
//! - [`Treatment::FloatDecimals`]: `float` and `double` values rounded to that many digits
//!   after the decimal point (as `ROUND(x, n)` would; pt-table-checksum's
//!   `--float-precision`).
//! - [`Treatment::TimePrecision`]: times and timestamps truncated to a unit: Avro's logical
//!   types, Debezium's `io.debezium.time.*` (numbers in ms, µs or ns, and `ZonedTimestamp`'s
//!   ISO-8601 text) and Kafka Connect's `Timestamp` and `Time`.
//! - [`Treatment::CaseInsensitive`]: text compared in lower case (Unicode's).
//!
//! A treatment that does not fit a column it names (rounding a text column) is not applied;
//! the decoder says so once (see [`crate::decode::Decoder::rule_notes`]).

use std::fmt;
use std::sync::Arc;

/// A unit of time a time or timestamp is compared at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimeUnit {
    Nanos,
    Micros,
    Millis,
    Seconds,
}

impl TimeUnit {
    /// Nanoseconds in one unit.
    pub fn nanos(self) -> i64 {
        match self {
            TimeUnit::Nanos => 1,
            TimeUnit::Micros => 1_000,
            TimeUnit::Millis => 1_000_000,
            TimeUnit::Seconds => 1_000_000_000,
        }
    }

    /// Digits after the second's decimal point at this unit.
    pub fn digits(self) -> usize {
        match self {
            TimeUnit::Nanos => 9,
            TimeUnit::Micros => 6,
            TimeUnit::Millis => 3,
            TimeUnit::Seconds => 0,
        }
    }

    /// `s`, `ms`, `us` (or `µs`), `ns`.
    pub fn parse(s: &str) -> Option<TimeUnit> {
        match s {
            "s" => Some(TimeUnit::Seconds),
            "ms" => Some(TimeUnit::Millis),
            "us" | "µs" => Some(TimeUnit::Micros),
            "ns" => Some(TimeUnit::Nanos),
            _ => None,
        }
    }
}

impl fmt::Display for TimeUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeUnit::Nanos => "ns",
            TimeUnit::Micros => "us",
            TimeUnit::Millis => "ms",
            TimeUnit::Seconds => "s",
        })
    }
}

/// What a rule does to its columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Treatment {
    Ignore,
    FloatDecimals(u32),
    TimePrecision(TimeUnit),
    CaseInsensitive,
}

impl fmt::Display for Treatment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Treatment::Ignore => f.write_str("ignored"),
            Treatment::FloatDecimals(n) => write!(f, "floats rounded to {n} decimals"),
            Treatment::TimePrecision(u) => write!(f, "times compared to the {u}"),
            Treatment::CaseInsensitive => f.write_str("text compared case-insensitively"),
        }
    }
}

/// One rule: a table (or `*`), its columns (or `*`: every column the treatment fits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRule {
    pub table: String,
    pub columns: Vec<String>,
    pub treatment: Treatment,
}

impl fmt::Display for ColumnRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} {}",
            self.table,
            self.columns.join(", "),
            self.treatment
        )
    }
}

/// Every configured rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnRules(pub Vec<ColumnRule>);

impl ColumnRules {
    /// The rules of `table`, `None` when there are none.
    pub fn for_table(&self, table: &str) -> Option<Arc<TableRules>> {
        let rules: Vec<ColumnRule> = self
            .0
            .iter()
            .filter(|r| r.table == "*" || r.table == table)
            .cloned()
            .collect();
        (!rules.is_empty()).then(|| {
            Arc::new(TableRules {
                table: table.to_string(),
                rules,
            })
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The rules that apply to one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRules {
    pub table: String,
    pub rules: Vec<ColumnRule>,
}

impl TableRules {
    /// What is done to `column`, and whether it was named (not matched by `*`): the first
    /// rule naming it wins over a `*`; `Ignore` over everything.
    pub fn treatments(&self, column: &str) -> Vec<(Treatment, bool)> {
        let mut out: Vec<(Treatment, bool)> = Vec::new();
        for r in &self.rules {
            let named = r.columns.iter().any(|c| c == column);
            if !named && !r.columns.iter().any(|c| c == "*") {
                continue;
            }
            if let Some(i) = out.iter().position(|(t, _)| {
                std::mem::discriminant(t) == std::mem::discriminant(&r.treatment)
            }) {
                if named && !out[i].1 {
                    out[i] = (r.treatment, true);
                }
                continue;
            }
            out.push((r.treatment, named));
        }
        out
    }

    /// Whether `column` is left out.
    pub fn ignores(&self, column: &str) -> bool {
        self.treatments(column)
            .iter()
            .any(|(t, _)| *t == Treatment::Ignore)
    }
}
