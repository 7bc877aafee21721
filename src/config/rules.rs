//! `[[verify.column-rules]]`: what rows are compared without, or compared loosely on (see
//! `cdc_verifier_core::rules`).

use anyhow::bail;
use cdc_verifier_core::rules::{ColumnRule, ColumnRules, TimeUnit, Treatment};
use serde::{Deserialize, Serialize};

/// One `[[verify.column-rules]]` entry: a table (or `*`), its columns (or `*`), and one or
/// more treatments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ColumnRuleConfig {
    pub table: String,
    pub columns: Vec<String>,
    /// Left out of the comparison and of schema drift.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore: bool,
    /// Floats and doubles rounded to this many digits after the decimal point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub float_decimals: Option<u32>,
    /// Times and timestamps truncated to `s`, `ms`, `us` or `ns`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_precision: Option<String>,
    /// Text compared in lower case.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub case_insensitive: bool,
}

/// The core's rules from the configured entries; names the entry (from 1) that is wrong.
pub fn column_rules(entries: &[ColumnRuleConfig]) -> anyhow::Result<ColumnRules> {
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let at = format!("verify.column-rules[{}] (table {:?})", i + 1, e.table);
        if e.table.is_empty() {
            bail!("{at}: `table` is empty (a table's name, or \"*\" for every table)");
        }
        if e.columns.is_empty() || e.columns.iter().any(String::is_empty) {
            bail!("{at}: `columns` must name columns (or \"*\" for every column it fits)");
        }
        let mut treatments = Vec::new();
        if e.ignore {
            if e.columns.iter().any(|c| c == "*") {
                bail!("{at}: `ignore` needs the columns named: \"*\" would ignore every column");
            }
            treatments.push(Treatment::Ignore);
        }
        if let Some(n) = e.float_decimals {
            if n > 15 {
                bail!("{at}: `float-decimals` = {n}: a double has at most 15 significant decimals");
            }
            treatments.push(Treatment::FloatDecimals(n));
        }
        if let Some(p) = &e.time_precision {
            let Some(u) = TimeUnit::parse(p) else {
                bail!("{at}: `time-precision` = {p:?}: expected \"s\", \"ms\", \"us\" or \"ns\"");
            };
            treatments.push(Treatment::TimePrecision(u));
        }
        if e.case_insensitive {
            treatments.push(Treatment::CaseInsensitive);
        }
        match treatments.len() {
            0 => bail!(
                "{at}: no treatment: set `ignore`, `float-decimals`, `time-precision` or `case-insensitive`"
            ),
            n if n > 1 && e.ignore => {
                bail!("{at}: `ignore` leaves nothing to round, truncate or fold: use it alone")
            }
            _ => {}
        }
        for treatment in treatments {
            out.push(ColumnRule {
                table: e.table.clone(),
                columns: e.columns.clone(),
                treatment,
            });
        }
    }
    Ok(ColumnRules(out))
}
