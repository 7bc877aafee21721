//! One card per replica and table: where it first diverged, the schemas each side wrote, and
//! the differing keys with both row images side by side.

use std::fmt::Write as _;

use cdc_verifier_core::{SchemaSeen, WindowStatus};
use serde_json::Value;

use crate::report::{FirstDivergence, KeyRow, ReplicaReport, Report, TableReport};

use super::format::{Esc, kind_class, plural, status_name, thousands, truncate, version};
use super::{MAX_EQUAL_SHOWN, MAX_KEYS_PER_TABLE, MAX_VALUE_CHARS, anchor};

pub(super) fn tables(out: &mut String, report: &Report) {
    out.push_str("<section id=\"tables\">\n<h2>Tables</h2>\n");
    let all = || {
        report.replicas.iter().enumerate().flat_map(|(ri, r)| {
            r.tables
                .iter()
                .enumerate()
                .map(move |(ti, t)| (anchor(ri, ti), r, t))
        })
    };
    // Diverged tables first, in full; the consistent ones after, one line each.
    for (anchor, replica, table) in all().filter(|(_, _, t)| diverged(t)) {
        table_card(out, report, replica, table, &anchor);
    }
    let consistent: Vec<_> = all().filter(|(_, _, t)| !diverged(t)).collect();
    if !consistent.is_empty() {
        w!(
            out,
            "<article class=\"card ok\">\n<h3>Consistent tables ({})</h3>\n<table class=\"list\">\n<thead><tr><th>replica</th><th>table</th><th>windows</th><th>schemas: {}</th><th>schemas: replica</th></tr></thead>\n<tbody>\n",
            consistent.len(),
            Esc(&report.primary)
        );
        for (anchor, replica, table) in &consistent {
            let (primary, other) = sides(&table.schemas, &report.primary);
            let windows: u64 = table.timeline.iter().map(|s| s.windows).sum();
            w!(
                out,
                "<tr id=\"{anchor}\"><td class=\"mono\">{}</td><td class=\"mono\"><b>{}</b></td><td>{}</td><td>",
                Esc(&replica.name),
                Esc(&table.table),
                thousands(windows)
            );
            schema_list(out, &primary, None);
            out.push_str("</td><td>");
            schema_list(out, &other, Some(&primary));
            out.push_str("</td></tr>\n");
        }
        out.push_str("</tbody>\n</table>\n</article>\n");
    }
    if report.replicas.iter().all(|r| r.tables.is_empty()) {
        out.push_str("<p class=\"muted\">No table was compared.</p>\n");
    }
    out.push_str("</section>\n");
}

pub(super) fn diverged(table: &TableReport) -> bool {
    !table.consistent || table.first_divergence.is_some()
}

pub(super) fn table_card(
    out: &mut String,
    report: &Report,
    replica: &ReplicaReport,
    table: &TableReport,
    anchor: &str,
) {
    w!(
        out,
        "<article class=\"card bad\" id=\"{anchor}\">\n<h3><span class=\"muted\">{} &middot;</span> {} <span class=\"pill k-bad\">divergent</span></h3>\n",
        Esc(&replica.name),
        Esc(&table.table),
    );
    let windows: u64 = table.timeline.iter().map(|s| s.windows).sum();
    let count = |st: WindowStatus| {
        table
            .timeline
            .iter()
            .filter(|s| s.status == st)
            .map(|s| s.windows)
            .sum::<u64>()
    };
    w!(
        out,
        "<p class=\"muted\">{} {} compared",
        thousands(windows),
        plural(windows, "window", "windows")
    );
    for st in [
        WindowStatus::Lagging,
        WindowStatus::Mismatched,
        WindowStatus::Drifted,
    ] {
        let n = count(st);
        if n > 0 {
            w!(
                out,
                " &middot; <i class=\"sw s-{0}\"></i>{1} {0}",
                status_name(st),
                thousands(n)
            );
        }
    }
    out.push_str("</p>\n<div class=\"card-grid\">\n");
    if let Some(f) = &table.first_divergence {
        first_divergence(out, f);
    }
    schemas(out, report, replica, table);
    out.push_str("</div>\n");
    if !table.differing_keys.is_empty() {
        keys(out, report, replica, table, anchor);
    }
    out.push_str("</article>\n");
}

pub(super) fn first_divergence(out: &mut String, f: &FirstDivergence) {
    out.push_str("<div class=\"panel\">\n<h4>First divergence</h4>\n<dl>");
    w!(
        out,
        "<dt>kind</dt><dd><span class=\"pill k-{}\">{}</span></dd>",
        kind_class(f.kind),
        f.kind
    );
    w!(out, "<dt>window</dt><dd>{}</dd>", f.window);
    w!(
        out,
        "<dt>position</dt><dd class=\"mono\">{}</dd>",
        f.position
    );
    w!(out, "<dt>time</dt><dd class=\"mono\">{}</dd>", Esc(&f.time));
    if let Some(subject) = &f.schema_subject {
        w!(out, "<dt>schema</dt><dd><code>{}</code></dd>", Esc(subject));
        w!(
            out,
            "<dt>version</dt><dd>expected <b>{}</b>, actual <b class=\"bad-text\">{}</b></dd>",
            version(f.expected_version),
            version(f.actual_version)
        );
    }
    if !f.missing_fields.is_empty() {
        out.push_str("<dt>missing</dt><dd>");
        for m in &f.missing_fields {
            w!(out, "<code class=\"chip\">{}</code> ", Esc(m));
        }
        out.push_str("</dd>");
    }
    out.push_str("</dl>\n</div>\n");
}

/// The schema versions each side wrote the table with, primary and replica side by side.
pub(super) fn schemas(
    out: &mut String,
    report: &Report,
    replica: &ReplicaReport,
    table: &TableReport,
) {
    out.push_str("<div class=\"panel\">\n<h4>Schema versions seen</h4>\n");
    let (primary, other) = sides(&table.schemas, &report.primary);
    out.push_str("<div class=\"sides\">");
    w!(
        out,
        "<div><div class=\"side-name\">{}</div>",
        Esc(&report.primary)
    );
    schema_list(out, &primary, None);
    w!(
        out,
        "</div><div><div class=\"side-name\">{}</div>",
        Esc(&replica.name)
    );
    schema_list(out, &other, Some(&primary));
    out.push_str("</div></div>\n</div>\n");
}

/// The schemas the primary's stream wrote a table with, and those the replica's did.
pub(super) fn sides<'a>(
    seen: &'a [SchemaSeen],
    primary: &str,
) -> (Vec<&'a SchemaSeen>, Vec<&'a SchemaSeen>) {
    seen.iter().partition(|s| s.stream == primary)
}

/// A side's schemas; against the primary's, those it lacks are marked as drift.
pub(super) fn schema_list(out: &mut String, seen: &[&SchemaSeen], primary: Option<&[&SchemaSeen]>) {
    out.push_str("<ul class=\"schemas\">");
    if seen.is_empty() {
        out.push_str("<li class=\"muted\">none recorded</li>");
    }
    for s in seen {
        let drift = primary.is_some_and(|p| {
            !p.is_empty()
                && !p
                    .iter()
                    .any(|p| p.subject == s.subject && p.version == s.version)
        });
        w!(
            out,
            "<li{}><code>{}</code> <b>v{}</b> <span class=\"muted\">id {}</span></li>",
            if drift {
                " class=\"drift\" title=\"the primary wrote no such version\""
            } else {
                ""
            },
            Esc(&s.subject),
            version(s.version),
            s.schema_id
        );
    }
    out.push_str("</ul>");
}

/// Differing keys, both row images side by side, the differing columns first and highlighted.
pub(super) fn keys(
    out: &mut String,
    report: &Report,
    replica: &ReplicaReport,
    table: &TableReport,
    anchor: &str,
) {
    let total = table.differing_keys.len();
    w!(
        out,
        "<h4 id=\"{anchor}-keys\">Differing keys ({})</h4>\n",
        thousands(total as u64)
    );
    w!(
        out,
        "<table class=\"keys\">\n<colgroup><col class=\"c-col\"><col><col></colgroup>\n<thead><tr><th>key / column</th><th>{}</th><th>{}</th></tr></thead>\n",
        Esc(&report.primary),
        Esc(&replica.name)
    );
    for k in table.differing_keys.iter().take(MAX_KEYS_PER_TABLE) {
        key_rows(out, k);
    }
    out.push_str("</table>\n");
    repair(out, table);
    if total > MAX_KEYS_PER_TABLE {
        let more = (total - MAX_KEYS_PER_TABLE) as u64;
        w!(
            out,
            "<p class=\"note\">and {} more differing {} not shown; the JSON report lists them all.</p>\n",
            thousands(more),
            plural(more, "key", "keys")
        );
    }
}

/// The statements that make the replica's rows the primary's, ready to copy: every key's,
/// in both dialects.
fn repair(out: &mut String, table: &TableReport) {
    for (dialect, pick, preamble) in [
        (
            "MySQL / MariaDB",
            (|k: &KeyRow| &k.repair.mysql) as fn(&KeyRow) -> &String,
            cdc_verifier_core::repair::preamble(cdc_verifier_core::repair::Dialect::MySql),
        ),
        (
            "PostgreSQL",
            |k: &KeyRow| &k.repair.postgresql,
            cdc_verifier_core::repair::preamble(cdc_verifier_core::repair::Dialect::Postgres),
        ),
    ] {
        w!(
            out,
            "<details class=\"repair\"><summary>Repair statements, {dialect} ({} keys; run on the replica, in its database, after fixing its schema if it drifted)</summary>\n<pre class=\"mono\">{}\n",
            table.differing_keys.len(),
            Esc(preamble)
        );
        for k in &table.differing_keys {
            w!(out, "{}\n", Esc(pick(k)));
        }
        out.push_str("</pre></details>\n");
    }
}

pub(super) fn key_rows(out: &mut String, k: &KeyRow) {
    let fields = compare_rows(&k.primary_row, &k.replica_row);
    out.push_str("<tbody>\n<tr class=\"kh\"><th>");
    w!(
        out,
        "<span class=\"key mono\">{}</span>",
        Esc(&key_label(&k.key))
    );
    w!(out, "<small>window {}", k.window);
    if let Some(range) = &k.range {
        w!(out, " &middot; range {}", Esc(range));
    }
    out.push_str("</small></th>");
    for (row, pos) in [
        (&k.primary_row, k.primary_position),
        (&k.replica_row, k.replica_position),
    ] {
        out.push_str("<td>");
        match pos {
            Some(p) => w!(out, "<span class=\"mono\">@ {p}</span>"),
            None => out.push_str("<span class=\"muted\">no position</span>"),
        }
        if row.is_null() {
            out.push_str(" <span class=\"pill k-absent\">absent</span>");
        }
        out.push_str("</td>");
    }
    out.push_str("</tr>\n");
    let mut equal = Vec::new();
    for f in &fields {
        if f.primary == f.replica {
            equal.push(f);
            continue;
        }
        w!(
            out,
            "<tr class=\"d\"><td class=\"mono\">{}</td>",
            Esc(&f.name)
        );
        for v in [f.primary, f.replica] {
            match v {
                Some(v) => {
                    let text = v.to_string();
                    let (shown, cut) = truncate(&text, MAX_VALUE_CHARS);
                    if cut {
                        w!(
                            out,
                            "<td class=\"v\" title=\"{}\">{}&hellip;</td>",
                            Esc(&text),
                            Esc(shown)
                        );
                    } else {
                        w!(out, "<td class=\"v\">{}</td>", Esc(shown));
                    }
                }
                None => out.push_str("<td class=\"v none\">(no such column)</td>"),
            }
        }
        out.push_str("</tr>\n");
    }
    if !equal.is_empty() {
        w!(
            out,
            "<tr class=\"eq\"><td colspan=\"3\">{} equal {}: ",
            equal.len(),
            plural(equal.len() as u64, "column", "columns")
        );
        for (i, f) in equal.iter().take(MAX_EQUAL_SHOWN).enumerate() {
            let text = f.primary.map_or_else(|| "∅".to_string(), Value::to_string);
            let (shown, cut) = truncate(&text, 40);
            w!(
                out,
                "{}<span class=\"mono\">{}={}{}</span>",
                if i > 0 { " &middot; " } else { "" },
                Esc(&f.name),
                Esc(shown),
                if cut { "&hellip;" } else { "" }
            );
        }
        if equal.len() > MAX_EQUAL_SHOWN {
            w!(
                out,
                " &middot; &hellip; {} more",
                equal.len() - MAX_EQUAL_SHOWN
            );
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</tbody>\n");
}

/// One column of two row images.
pub(super) struct Field<'a> {
    pub(super) name: String,
    pub(super) primary: Option<&'a Value>,
    pub(super) replica: Option<&'a Value>,
}

/// Pairs the columns of two row images (JSON objects; `null` for an absent row), the
/// primary's columns first, then columns only the replica has.
pub(super) fn compare_rows<'a>(primary: &'a Value, replica: &'a Value) -> Vec<Field<'a>> {
    match (primary, replica) {
        (Value::Object(_) | Value::Null, Value::Object(_) | Value::Null) => {
            let (p, r) = (primary.as_object(), replica.as_object());
            let mut names: Vec<&String> = p.into_iter().flat_map(|m| m.keys()).collect();
            for name in r.into_iter().flat_map(|m| m.keys()) {
                if !p.is_some_and(|m| m.contains_key(name)) {
                    names.push(name);
                }
            }
            names
                .into_iter()
                .map(|name| Field {
                    name: name.clone(),
                    primary: p.and_then(|m| m.get(name)),
                    replica: r.and_then(|m| m.get(name)),
                })
                .collect()
        }
        _ => vec![Field {
            name: "(row)".to_string(),
            primary: Some(primary),
            replica: Some(replica),
        }],
    }
}

/// `id=42, region="eu"` for an object key, the JSON text otherwise.
pub(super) fn key_label(key: &Value) -> String {
    match key {
        Value::Object(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}
