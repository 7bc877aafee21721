//! The top of the page: the document head, the headline that answers who diverged, where and
//! since when, and the facts of the run.

use std::fmt::Write as _;

use crate::report::Report;

use super::format::{
    Esc, duration, human_bytes, kind_class, plural, rfc3339, thousands, version, versions_by_side,
};
use super::lists::summary;
use super::{CSS, Culprit, View};

pub(super) fn head(out: &mut String, report: &Report, view: &View) {
    let title = match view.culprits.first() {
        _ if report.nothing_verified() => "nothing verified".to_string(),
        _ if report.is_consistent() => "consistent".to_string(),
        Some(c) => format!("DIVERGENT: {} · {}", c.replica.name, c.table.table),
        None => "DIVERGENT".to_string(),
    };
    out.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    w!(
        out,
        "<title>cdc-verifier report: {}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n<main>\n",
        Esc(&title)
    );
}

pub(super) fn hero(out: &mut String, report: &Report, view: &View) {
    if report.nothing_verified() {
        out.push_str(
            "<header class=\"hero none\">\n<div class=\"badge\">? Nothing verified</div>\n",
        );
        out.push_str("<h1>No event was verified: nothing to compare</h1>\n");
        w!(
            out,
            "<p class=\"lede\">{}</p>\n",
            Esc(&report.nothing_to_compare())
        );
    } else if report.is_consistent() {
        out.push_str(
            "<header class=\"hero ok\">\n<div class=\"badge\">&#10004; Consistent</div>\n",
        );
        let who = match report.replicas.len() {
            1 => format!(
                "<span class=\"name\">{}</span> matches",
                Esc(&report.replicas[0].name)
            ),
            n => format!("All {n} replicas match"),
        };
        w!(
            out,
            "<h1>{who} <span class=\"name\">{}</span></h1>\n",
            Esc(&report.primary)
        );
        w!(
            out,
            "<p class=\"lede\">{} {} compared over {} {}; no data mismatch, schema drift or lag was found.</p>\n",
            view.tables,
            plural(view.tables as u64, "table", "tables"),
            thousands(view.windows),
            plural(view.windows, "window", "windows")
        );
    } else {
        out.push_str(
            "<header class=\"hero bad\">\n<div class=\"badge\">&#10008; Divergent</div>\n",
        );
        match view.culprits.first() {
            Some(c) => culprit_headline(out, report, c),
            None => finding_headline(out, report),
        }
    }
    facts(out, report, view);
    if view.culprits.len() > 1 {
        out.push_str("<div class=\"also\"><b>Also divergent:</b><ul>");
        for c in &view.culprits[1..] {
            w!(
                out,
                "<li><a href=\"#{}\">{} · {}</a> since position {} at {} ({}, {} {})</li>",
                c.anchor,
                Esc(&c.replica.name),
                Esc(&c.table.table),
                c.first.position,
                Esc(&c.first.time),
                c.first.kind,
                thousands(c.table.differing_keys.len() as u64),
                plural(
                    c.table.differing_keys.len() as u64,
                    "row differs",
                    "rows differ"
                )
            );
        }
        out.push_str("</ul></div>\n");
    }
    out.push_str("</header>\n");
}

/// The answer on-call needs first: who, which table, since when, which schema, how many rows.
pub(super) fn culprit_headline(out: &mut String, report: &Report, c: &Culprit) {
    let f = c.first;
    w!(
        out,
        "<h1><span class=\"name\">{}</span> diverged from <span class=\"name\">{}</span> on <a class=\"name\" href=\"#{}\">{}</a></h1>\n",
        Esc(&c.replica.name),
        Esc(&report.primary),
        c.anchor,
        Esc(&c.table.table)
    );
    w!(
        out,
        "<p class=\"lede\">since position <b class=\"mono\">{}</b> (window {}) at <b class=\"mono\">{}</b> &middot; <span class=\"pill k-{}\">{}</span></p>\n",
        f.position,
        f.window,
        Esc(&f.time),
        kind_class(f.kind),
        f.kind
    );
    out.push_str("<ul class=\"answers\">\n");
    match &f.schema_subject {
        Some(subject) => {
            w!(
                out,
                "<li><span class=\"q\">Schema</span> <code>{}</code>: primary writes version <b>{}</b>, {} writes version <b class=\"bad-text\">{}</b>",
                Esc(subject),
                version(f.expected_version),
                Esc(&c.replica.name),
                version(f.actual_version)
            );
            if !f.missing_fields.is_empty() {
                out.push_str(" &middot; missing ");
                for m in &f.missing_fields {
                    w!(out, "<code class=\"chip\">{}</code> ", Esc(m));
                }
            }
            out.push_str("</li>\n");
        }
        None => {
            let (p, r) = versions_by_side(&c.table.schemas, &report.primary);
            if !p.is_empty() || !r.is_empty() {
                w!(
                    out,
                    "<li><span class=\"q\">Schema</span> primary writes {}; {} writes {}</li>\n",
                    p,
                    Esc(&c.replica.name),
                    r
                );
            }
        }
    }
    let keys = c.table.differing_keys.len() as u64;
    if keys == 0 {
        out.push_str("<li><span class=\"q\">Rows</span> no differing keys recorded</li>\n");
    } else {
        w!(
            out,
            "<li><span class=\"q\">Rows</span> <b class=\"bad-text\">{}</b> {} <a href=\"#{}-keys\">(see the keys)</a></li>\n",
            thousands(keys),
            plural(keys, "row differs", "rows differ"),
            c.anchor
        );
    }
    out.push_str("</ul>\n");
}

/// A divergent report with no diverged table (a silent stream, lag, poison): the first finding.
pub(super) fn finding_headline(out: &mut String, report: &Report) {
    match report.findings().next() {
        Some(d) => {
            w!(
                out,
                "<h1><span class=\"pill k-{}\">{}</span> on <span class=\"name\">{}</span>{}</h1>\n<p class=\"lede mono\">{}</p>\n",
                kind_class(d.kind()),
                d.kind(),
                Esc(&d.replica),
                d.table()
                    .map(|t| format!(" · <span class=\"name\">{}</span>", Esc(t)))
                    .unwrap_or_default(),
                Esc(&summary(d))
            );
        }
        None => out.push_str("<h1>The report is marked divergent but names no finding</h1>\n"),
    }
}

pub(super) fn facts(out: &mut String, report: &Report, view: &View) {
    let events: u64 = report.streams.iter().map(|s| s.events).sum();
    let bytes: u64 = report.streams.iter().map(|s| s.bytes).sum();
    let findings = report.findings().count() as u64;
    out.push_str("<div class=\"facts\">\n");
    let mut fact = |value: String, label: &str, title: Option<String>| {
        let label = if value == "1" {
            label.strip_suffix('s').unwrap_or(label)
        } else {
            label
        };
        let title = title
            .map(|t| format!(" title=\"{}\"", Esc(&t)))
            .unwrap_or_default();
        w!(
            out,
            "<div class=\"fact\"{title}><b>{value}</b><span>{label}</span></div>\n"
        );
    };
    fact(thousands(report.replicas.len() as u64), "replicas", None);
    fact(thousands(view.tables as u64), "tables", None);
    fact(
        thousands(view.windows),
        "windows",
        Some("windows compared (the most of any replica's table)".to_string()),
    );
    fact(thousands(report.streams.len() as u64), "streams", None);
    fact(thousands(events), "events", None);
    fact(
        human_bytes(bytes),
        "read",
        Some(format!("{} bytes", thousands(bytes))),
    );
    fact(thousands(findings), "findings", None);
    if let Some((lo, hi)) = view.span {
        fact(
            duration(hi - lo),
            "of history",
            Some(format!("{} to {}", rfc3339(lo), rfc3339(hi))),
        );
    }
    out.push_str("</div>\n");
    w!(
        out,
        "<p class=\"source\"><b>Source</b> {}: {}",
        Esc(&report.source.kind),
        Esc(&report.source.description)
    );
    if let (Some(from), Some(to)) = (&report.source.from, &report.source.to) {
        w!(
            out,
            " &middot; <span class=\"mono\">{}</span> &rarr; <span class=\"mono\">{}</span>",
            Esc(from),
            Esc(to)
        );
    }
    out.push_str("</p>\n");
    if !report.column_rules.is_empty() {
        out.push_str("<p class=\"source\"><b>Compared under column rules</b> ");
        for (i, r) in report.column_rules.iter().enumerate() {
            let sep = if i > 0 { " &middot; " } else { "" };
            w!(out, "{sep}<span class=\"mono\">{}</span>", Esc(r));
        }
        for n in &report.rule_notes {
            w!(out, "<br>not applied: {}", Esc(n));
        }
        out.push_str("</p>\n");
    }
}
