//! A differing key's repair statements, from what an engine read.

use cdc_verifier_core::Engine;
use cdc_verifier_core::repair::{self, Dialect, Statements};
use cdc_verifier_core::verdict::{KeyDiff, RowImage};

/// The statements that make `replica`'s row of `k` in `table` the primary's as of everything
/// `engine` read — not as of the window where they first differed: the key may have changed
/// since. A comment when the rows are equal by then (`until`: what was read, for it to say).
pub fn repair_of(
    engine: &Engine,
    replica: &str,
    table: &str,
    k: &KeyDiff,
    until: &str,
) -> Statements {
    let (last_p, last_r) = engine
        .final_images(replica, table, &k.key)
        .unwrap_or((k.primary.clone(), k.replica.clone()));
    let row_of = |i: &Option<RowImage>| {
        i.as_ref()
            .map(|i| i.row.clone())
            .unwrap_or(serde_json::Value::Null)
    };
    let (target, current) = (row_of(&last_p), row_of(&last_r));
    let schema = last_p.as_ref().or(last_r.as_ref()).map(|i| i.schema_id);
    let columns = schema
        .and_then(|s| engine.schema_text(s))
        .map(repair::columns)
        .unwrap_or_default();
    let sql = |d| {
        if target == current {
            format!(
                "-- {}: the replica's row is the primary's at the end of {until}",
                k.key
            )
        } else {
            repair::statement(d, table, &columns, &k.key, &target)
        }
    };
    Statements {
        mysql: sql(Dialect::MySql),
        postgresql: sql(Dialect::Postgres),
    }
}
