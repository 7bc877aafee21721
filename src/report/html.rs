//! The report as one self-contained HTML page: inline CSS, no script, no external resource,
//! so it can be mailed, attached to a ticket or opened from a CI artifact as it is.
//!
//! Every string that comes from the data (keys and row values come from databases; names from
//! configuration and topics) is written through [`Esc`]; numbers are the only other values
//! interpolated into markup.

use std::fmt::{self, Write as _};
use std::path::Path;

use anyhow::Context as _;
use cdc_verifier_core::time::civil_from_days;
use cdc_verifier_core::verdict::{Divergence, Kind};
use cdc_verifier_core::{SchemaSeen, Segment, WindowStatus};
use serde_json::Value;

use super::{FORMAT, FirstDivergence, KeyRow, ReplicaReport, Report, TableReport};

/// Differing keys shown per table; the JSON report has them all.
const MAX_KEYS_PER_TABLE: usize = 200;
/// Verdicts listed; the JSON report has them all.
const MAX_VERDICTS: usize = 1000;
/// Longest row value shown whole; longer ones are cut, the whole value is in the tooltip.
const MAX_VALUE_CHARS: usize = 160;
/// Equal columns named on the summary line under a differing key.
const MAX_EQUAL_SHOWN: usize = 8;
/// Most labels on the time axis.
const MAX_TICKS: i64 = 8;

/// Writing into a `String` cannot fail.
macro_rules! w {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
    }};
}

/// `report-html --input REPORT.json --output PAGE.html`: renders a JSON report as a page.
pub fn cli(input: &Path, output: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("reading report {}", input.display()))?;
    let report: Report = serde_json::from_str(&text)
        .with_context(|| format!("parsing report {}", input.display()))?;
    std::fs::write(output, render(&report))
        .with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}

/// Renders the whole page.
pub fn render(report: &Report) -> String {
    let view = View::new(report);
    let mut out = String::with_capacity(64 * 1024);
    head(&mut out, report, &view);
    hero(&mut out, report, &view);
    timeline(&mut out, report, &view);
    tables(&mut out, report);
    verdicts(&mut out, report);
    streams(&mut out, report);
    footer(&mut out, report);
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

/// HTML-escapes text for element content and double- or single-quoted attributes.
struct Esc<'a>(&'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = 0;
        for (i, b) in self.0.bytes().enumerate() {
            let rep = match b {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&self.0[last..i])?;
            f.write_str(rep)?;
            last = i + 1;
        }
        f.write_str(&self.0[last..])
    }
}

/// A replica's table that diverged, with where it first did.
struct Culprit<'a> {
    replica: &'a ReplicaReport,
    table: &'a TableReport,
    first: &'a FirstDivergence,
    anchor: String,
}

/// What the page derives from the report before writing it.
struct View<'a> {
    /// Diverged tables, earliest first divergence first.
    culprits: Vec<Culprit<'a>>,
    /// The time every timeline shares: first window start, last window end (ms).
    span: Option<(i64, i64)>,
    /// Windows compared: the most any replica's table went through.
    windows: u64,
    tables: usize,
}

impl<'a> View<'a> {
    fn new(report: &'a Report) -> Self {
        let mut culprits = Vec::new();
        let mut span: Option<(i64, i64)> = None;
        let mut windows = 0;
        let mut names = std::collections::BTreeSet::new();
        for (ri, replica) in report.replicas.iter().enumerate() {
            for (ti, table) in replica.tables.iter().enumerate() {
                names.insert(table.table.as_str());
                windows = windows.max(table.timeline.iter().map(|s| s.windows).sum());
                for s in &table.timeline {
                    let (lo, hi) = span.unwrap_or((s.start_ms, s.end_ms));
                    span = Some((lo.min(s.start_ms), hi.max(s.end_ms)));
                }
                if let Some(first) = &table.first_divergence {
                    culprits.push(Culprit {
                        replica,
                        table,
                        first,
                        anchor: anchor(ri, ti),
                    });
                }
            }
        }
        culprits.sort_by_key(|c| (c.first.position, c.first.window));
        View {
            culprits,
            span,
            windows,
            tables: names.len(),
        }
    }
}

fn anchor(replica: usize, table: usize) -> String {
    format!("t{replica}-{table}")
}

fn head(out: &mut String, report: &Report, view: &View) {
    let title = match view.culprits.first() {
        _ if report.is_consistent() => "consistent".to_string(),
        Some(c) => format!("DIVERGENT: {} · {}", c.replica.name, c.table.table),
        None => "DIVERGENT".to_string(),
    };
    out.push_str("<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    w!(
        out,
        "<title>cdc-verifier report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n",
        Esc(&title)
    );
}

fn hero(out: &mut String, report: &Report, view: &View) {
    if report.is_consistent() {
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
fn culprit_headline(out: &mut String, report: &Report, c: &Culprit) {
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
fn finding_headline(out: &mut String, report: &Report) {
    match report.findings().next() {
        Some(d) => {
            w!(
                out,
                "<h1><span class=\"pill k-{}\">{}</span> on <span class=\"name\">{}</span>{}</h1>\n<p class=\"lede mono\">{}</p>\n",
                kind_class(d.kind),
                d.kind,
                Esc(&d.replica),
                d.table
                    .as_deref()
                    .map(|t| format!(" · <span class=\"name\">{}</span>", Esc(t)))
                    .unwrap_or_default(),
                Esc(&summary(d))
            );
        }
        None => out.push_str("<h1>The report is marked divergent but names no finding</h1>\n"),
    }
}

fn facts(out: &mut String, report: &Report, view: &View) {
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
}

fn timeline(out: &mut String, report: &Report, view: &View) {
    out.push_str("<section id=\"timeline\">\n<h2>Timeline</h2>\n");
    let Some((t0, t1)) = view.span else {
        out.push_str("<p class=\"muted\">No window was compared.</p>\n</section>\n");
        return;
    };
    let t1 = t1.max(t0 + 1);
    w!(
        out,
        "<p class=\"muted\">Compared windows by origin commit time (UTC), {} &rarr; {} ({}). Hover a segment for its windows and positions.</p>\n",
        rfc3339(t0),
        rfc3339(t1),
        duration(t1 - t0)
    );
    out.push_str("<div class=\"legend\">");
    for status in [
        WindowStatus::Consistent,
        WindowStatus::Lagging,
        WindowStatus::Mismatched,
        WindowStatus::Drifted,
    ] {
        let s = status_name(status);
        w!(out, "<span><i class=\"sw s-{s}\"></i>{s}</span>");
    }
    out.push_str("<span><i class=\"sw s-none\"></i>not compared</span><span><i class=\"sw-mark\"></i>first divergence</span></div>\n");
    let x = |ms: i64| (ms - t0) as f64 * 100.0 / (t1 - t0) as f64;
    for (ri, replica) in report.replicas.iter().enumerate() {
        w!(
            out,
            "<div class=\"tl-replica\">\n<h3>{} {}</h3>\n<div class=\"tl\">\n",
            Esc(&replica.name),
            replica_pill(replica)
        );
        for (ti, table) in replica.tables.iter().enumerate() {
            w!(
                out,
                "<a class=\"tl-name\" href=\"#{}\">{}</a><div class=\"bar\">",
                anchor(ri, ti),
                Esc(&table.table)
            );
            for s in &table.timeline {
                let (left, right) = (x(s.start_ms), x(s.end_ms));
                w!(
                    out,
                    "<i class=\"seg s-{}\" style=\"left:{left:.3}%;width:{:.3}%\" title=\"{}\"></i>",
                    status_name(s.status),
                    (right - left).max(0.0),
                    Esc(&segment_title(s))
                );
            }
            let mark = table
                .first_divergence
                .as_ref()
                .map(|f| (f, x(divergence_ms(f, &table.timeline).unwrap_or(t0))));
            if let Some((f, at)) = mark {
                w!(
                    out,
                    "<i class=\"mark\" style=\"left:{at:.3}%\" title=\"first divergence: window {} at {}\"></i>",
                    f.window,
                    Esc(&f.time)
                );
            }
            out.push_str("</div>\n");
            if let Some((f, at)) = mark {
                // Labels near the right edge grow leftwards so they stay on the page.
                let side = if at > 60.0 {
                    format!("right:{:.3}%", 100.0 - at)
                } else {
                    format!("left:{at:.3}%")
                };
                w!(
                    out,
                    "<span></span><div class=\"marklabel\"><span style=\"{side}\">&#9650; first divergence: window {}, position {}, {}, <span class=\"pill k-{}\">{}</span></span></div>\n",
                    f.window,
                    f.position,
                    Esc(&f.time),
                    kind_class(f.kind),
                    f.kind
                );
            }
            if table.timeline.is_empty() {
                out.push_str(
                    "<span></span><div class=\"marklabel muted\">no window compared</div>\n",
                );
            }
        }
        out.push_str("<span></span><div class=\"axis\">");
        let step = tick_step(t1 - t0);
        for ms in ticks(t0, t1, step) {
            let at = x(ms);
            // Labels at the ends are aligned inwards so they stay under the bar.
            let class = if at < 4.0 {
                " class=\"first\""
            } else if at > 96.0 {
                " class=\"last\""
            } else {
                ""
            };
            w!(
                out,
                "<span{class} style=\"left:{at:.3}%\" title=\"{}\">{}</span>",
                rfc3339(ms),
                clock(ms, step < 1000)
            );
        }
        out.push_str("</div>\n</div>\n</div>\n");
    }
    out.push_str("</section>\n");
}

/// The tick interval that puts at most [`MAX_TICKS`] labels on an axis spanning `span_ms`.
fn tick_step(span_ms: i64) -> i64 {
    const STEPS: [i64; 26] = [
        1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 15_000, 30_000, 60_000,
        120_000, 300_000, 600_000, 900_000, 1_800_000, 3_600_000, 7_200_000, 21_600_000,
        43_200_000, 86_400_000,
    ];
    STEPS
        .into_iter()
        .find(|s| span_ms / s < MAX_TICKS)
        .unwrap_or_else(|| (span_ms / (MAX_TICKS - 1) / 86_400_000 + 1) * 86_400_000)
}

/// Round times within `t0..=t1`, every `step` ms.
fn ticks(t0: i64, t1: i64, step: i64) -> impl Iterator<Item = i64> {
    let first = t0.div_euclid(step) * step;
    let first = if first < t0 { first + step } else { first };
    (0..)
        .map(move |i| first + i * step)
        .take_while(move |&t| t <= t1)
}

/// Where in time the first divergent window sits: inside its segment, windows taken as equal.
fn divergence_ms(f: &FirstDivergence, timeline: &[Segment]) -> Option<i64> {
    let s = timeline
        .iter()
        .find(|s| (s.first_window..=s.last_window).contains(&f.window))
        .or_else(|| {
            timeline
                .iter()
                .find(|s| s.status != WindowStatus::Consistent)
        })?;
    let n = (s.last_window - s.first_window + 1).max(1);
    let k = (f.window - s.first_window).clamp(0, n - 1);
    Some(s.start_ms + (s.end_ms - s.start_ms) * k / n)
}

fn segment_title(s: &Segment) -> String {
    format!(
        "{}: windows {}–{} ({}), {} – {}, positions {} – {}",
        status_name(s.status),
        s.first_window,
        s.last_window,
        s.windows,
        rfc3339(s.start_ms),
        rfc3339(s.end_ms),
        s.first_position,
        s.last_position
    )
}

fn tables(out: &mut String, report: &Report) {
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

fn diverged(table: &TableReport) -> bool {
    !table.consistent || table.first_divergence.is_some()
}

fn table_card(
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

fn first_divergence(out: &mut String, f: &FirstDivergence) {
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
fn schemas(out: &mut String, report: &Report, replica: &ReplicaReport, table: &TableReport) {
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
fn sides<'a>(seen: &'a [SchemaSeen], primary: &str) -> (Vec<&'a SchemaSeen>, Vec<&'a SchemaSeen>) {
    seen.iter().partition(|s| s.stream == primary)
}

/// A side's schemas; against the primary's, those it lacks are marked as drift.
fn schema_list(out: &mut String, seen: &[&SchemaSeen], primary: Option<&[&SchemaSeen]>) {
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
fn keys(
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

fn key_rows(out: &mut String, k: &KeyRow) {
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
struct Field<'a> {
    name: String,
    primary: Option<&'a Value>,
    replica: Option<&'a Value>,
}

/// Pairs the columns of two row images (JSON objects; `null` for an absent row), the
/// primary's columns first, then columns only the replica has.
fn compare_rows<'a>(primary: &'a Value, replica: &'a Value) -> Vec<Field<'a>> {
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
fn key_label(key: &Value) -> String {
    match key {
        Value::Object(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

fn verdicts(out: &mut String, report: &Report) {
    let total = report.divergences.len();
    w!(
        out,
        "<section id=\"verdicts\">\n<h2>Verdicts ({})</h2>\n",
        thousands(total as u64)
    );
    if total == 0 {
        out.push_str("<p class=\"muted\">None.</p>\n</section>\n");
        return;
    }
    out.push_str("<table class=\"list\">\n<thead><tr><th>kind</th><th>replica</th><th>table</th><th>range</th><th>window</th><th>summary</th></tr></thead>\n<tbody>\n");
    for d in report.divergences.iter().take(MAX_VERDICTS) {
        w!(
            out,
            "<tr><td><span class=\"pill k-{}\">{}</span>{}</td><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>",
            kind_class(d.kind),
            d.kind,
            d.recovered
                .map(|k| format!(" <small>{k}</small>"))
                .unwrap_or_default(),
            Esc(&d.replica),
            Esc(d.table.as_deref().unwrap_or("–")),
            Esc(d.range_label.as_deref().unwrap_or("–"))
        );
        match d.window {
            Some(wr) => w!(
                out,
                "<span title=\"{} – {}\">{}</span> <small class=\"muted\">{}</small>",
                rfc3339(wr.start_ms),
                rfc3339(wr.end_ms),
                wr.id,
                clock(wr.start_ms, false)
            ),
            None => out.push('–'),
        }
        w!(
            out,
            "</td><td class=\"summary mono\">{}</td></tr>\n",
            Esc(&summary(d))
        );
    }
    out.push_str("</tbody>\n</table>\n");
    if total > MAX_VERDICTS {
        w!(
            out,
            "<p class=\"note\">and {} more verdicts not shown; the JSON report lists them all.</p>\n",
            thousands((total - MAX_VERDICTS) as u64)
        );
    }
    out.push_str("</section>\n");
}

/// [`Divergence::summary`], which cuts digests to 8 characters, guarded for shorter ones in
/// a hand-written report.
fn summary(d: &Divergence) -> String {
    let short = |s: &Option<cdc_verifier_core::verdict::Side>| {
        s.as_ref().is_some_and(|s| !s.digest.is_char_boundary(8))
    };
    if d.kind == Kind::DataMismatch && (short(&d.primary) || short(&d.replica_side)) {
        return d.key();
    }
    d.summary()
}

fn streams(out: &mut String, report: &Report) {
    out.push_str("<section id=\"streams\">\n<h2>Streams</h2>\n");
    if report.streams.is_empty() {
        out.push_str("<p class=\"muted\">None.</p>\n</section>\n");
        return;
    }
    out.push_str("<table class=\"list num\">\n<thead><tr><th>stream</th><th>role</th><th>events</th><th>bytes</th><th>duplicates</th><th>late</th><th>tombstones</th><th>poison</th></tr></thead>\n<tbody>\n");
    for s in &report.streams {
        w!(
            out,
            "<tr><td><b>{}</b></td><td>{}</td><td>{}</td><td title=\"{} bytes\">{}</td><td>{}</td><td>{}</td><td>{}</td><td{}>{}</td></tr>\n",
            Esc(&s.name),
            Esc(&s.role),
            thousands(s.events),
            thousands(s.bytes),
            human_bytes(s.bytes),
            thousands(s.duplicates),
            thousands(s.late),
            thousands(s.tombstones),
            if s.poison > 0 {
                " class=\"bad-text\""
            } else {
                ""
            },
            thousands(s.poison)
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn footer(out: &mut String, report: &Report) {
    w!(
        out,
        "<footer>cdc-verifier report &middot; format {} &middot; generated {} &middot; primary <b>{}</b></footer>\n",
        if report.format == FORMAT {
            FORMAT.to_string()
        } else {
            format!("{} (this page renders format {FORMAT})", report.format)
        },
        Esc(&report.generated_at),
        Esc(&report.primary)
    );
}

fn replica_pill(replica: &ReplicaReport) -> String {
    let mut s = if replica.consistent {
        "<span class=\"pill k-ok\">consistent</span>".to_string()
    } else {
        "<span class=\"pill k-bad\">divergent</span>".to_string()
    };
    for (kind, n) in &replica.counts {
        if *n > 0 {
            w!(
                s,
                " <span class=\"count\">{} {}</span>",
                Esc(kind),
                thousands(*n)
            );
        }
    }
    s
}

fn versions_by_side(seen: &[SchemaSeen], primary: &str) -> (String, String) {
    let list = |side: Vec<&SchemaSeen>| {
        side.iter()
            .map(|s| format!("<code>{}</code> v{}", Esc(&s.subject), version(s.version)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (p, r) = sides(seen, primary);
    (list(p), list(r))
}

fn status_name(s: WindowStatus) -> &'static str {
    match s {
        WindowStatus::Consistent => "consistent",
        WindowStatus::Lagging => "lagging",
        WindowStatus::Mismatched => "mismatched",
        WindowStatus::Drifted => "drifted",
    }
}

fn kind_class(k: Kind) -> &'static str {
    match k {
        Kind::DataMismatch => "mismatch",
        Kind::SchemaDrift => "drift",
        Kind::ReplicaLag | Kind::StreamSilent => "lag",
        Kind::PoisonEvent => "poison",
        Kind::Recovered => "ok",
    }
}

fn version(v: Option<u32>) -> String {
    v.map_or_else(|| "?".to_string(), |v| v.to_string())
}

fn plural<'s>(n: u64, one: &'s str, many: &'s str) -> &'s str {
    if n == 1 { one } else { many }
}

fn truncate(s: &str, max_chars: usize) -> (&str, bool) {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => (&s[..i], true),
        None => (s, false),
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, ms / 1000 % 60)
    } else if ms < 86_400_000 {
        format!("{} h {} min", ms / 3_600_000, ms / 60_000 % 60)
    } else {
        format!("{} d {} h", ms / 86_400_000, ms / 3_600_000 % 24)
    }
}

/// `2024-08-14T15:44:00.000Z`.
fn rfc3339(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{}Z", clock(rem, true))
}

/// `15:44:00`, or `15:44:00.250` with milliseconds.
fn clock(ms: i64, millis: bool) -> String {
    let rem = ms.rem_euclid(86_400_000);
    let (h, mi, s, f) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    if millis {
        format!("{h:02}:{mi:02}:{s:02}.{f:03}")
    } else {
        format!("{h:02}:{mi:02}:{s:02}")
    }
}

const CSS: &str = r#"
:root{--ok:#1f9d55;--lag:#e0a100;--bad:#d92d20;--drift:#7a3fe0;--poison:#9f1239;--none:#e4e7ec;
--ink:#101828;--muted:#667085;--line:#e4e7ec;--bg:#f5f6f8}
*{box-sizing:border-box;-webkit-print-color-adjust:exact;print-color-adjust:exact}
html{background:var(--bg)}
body{margin:0;color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1320px;margin:0 auto;padding:24px 28px 40px}
a{color:inherit}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono","Liberation Mono",monospace;font-size:.92em}
.muted{color:var(--muted)}
.bad-text{color:var(--bad)}
h2{font-size:18px;margin:0 0 10px}
h3{font-size:15px;margin:0 0 8px}
h4{font-size:13px;margin:14px 0 6px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
.hero{border:1px solid var(--line);border-left:8px solid;border-radius:12px;padding:20px 26px 18px;margin-bottom:18px}
.hero.bad{background:#fef3f2;border-left-color:var(--bad)}
.hero.ok{background:#ecfdf3;border-left-color:var(--ok)}
.badge{display:inline-block;font-weight:700;font-size:12px;letter-spacing:.1em;text-transform:uppercase;color:#fff;padding:3px 12px;border-radius:999px}
.bad .badge{background:var(--bad)}
.ok .badge{background:var(--ok)}
.hero h1{font-size:27px;line-height:1.25;margin:10px 0 4px;font-weight:650}
.hero.bad h1{color:#7a271a}
.hero.ok h1{color:#054f31}
.hero .name{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;background:#fff;border:1px solid var(--line);border-radius:6px;padding:0 7px;text-decoration:none}
.lede{font-size:16px;margin:4px 0 8px}
.answers{list-style:none;margin:8px 0 4px;padding:0;font-size:15px}
.answers li{margin:4px 0}
.q{display:inline-block;min-width:70px;font-size:12px;font-weight:700;text-transform:uppercase;letter-spacing:.05em;color:var(--muted)}
.chip{background:#fff;border:1px solid #f3b0a8;color:var(--bad);border-radius:5px;padding:0 5px}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(120px,1fr));gap:10px;margin:14px 0 10px}
.fact{background:#fff;border:1px solid var(--line);border-radius:8px;padding:7px 12px}
.fact b{display:block;font-size:19px;font-variant-numeric:tabular-nums}
.fact span{font-size:11.5px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.source{margin:6px 0 0;color:#344054;font-size:13px}
.also{margin-top:10px;font-size:14px}
.also ul{margin:4px 0 0;padding-left:20px}
section,.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:16px 20px;margin:16px 0}
.legend{display:flex;flex-wrap:wrap;gap:16px;font-size:12.5px;margin:4px 0 12px;color:#344054}
.sw{display:inline-block;width:12px;height:12px;border-radius:3px;vertical-align:-1px;margin-right:5px}
.sw-mark{display:inline-block;width:0;height:13px;border-left:3px solid var(--ink);vertical-align:-2px;margin:0 6px 0 3px}
.s-consistent{background:var(--ok)}.s-lagging{background:var(--lag)}.s-mismatched{background:var(--bad)}.s-drifted{background:var(--drift)}
.s-none{background:repeating-linear-gradient(45deg,#eef0f3 0 4px,#dde1e6 4px 8px)}
.tl-replica{margin:14px 0 4px}
.tl{display:grid;grid-template-columns:minmax(90px,180px) 1fr;column-gap:14px;row-gap:4px;align-items:center}
.tl-name{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;text-align:right;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;text-decoration:none;font-size:13px}
.bar{position:relative;height:26px;border-radius:5px;background:repeating-linear-gradient(45deg,#eef0f3 0 4px,#dde1e6 4px 8px);margin:4px 0}
.seg{position:absolute;top:0;bottom:0;min-width:2px}
.mark{position:absolute;top:-6px;bottom:-6px;border-left:3px solid var(--ink);margin-left:-1px}
.mark::before{content:"";position:absolute;top:-2px;left:-6px;border:4.5px solid transparent;border-top:7px solid var(--ink)}
.marklabel{position:relative;height:20px;font-size:12px}
.marklabel>span{position:absolute;top:0;white-space:nowrap}
.axis{position:relative;height:24px;border-top:1px solid #98a2b3;margin-top:2px;font-size:11.5px;color:var(--muted);font-variant-numeric:tabular-nums}
.axis span{position:absolute;top:5px;transform:translateX(-50%);white-space:nowrap}
.axis span::before{content:"";position:absolute;left:50%;top:-6px;height:5px;border-left:1px solid #98a2b3}
.axis span.first{transform:none}.axis span.first::before{left:0}
.axis span.last{transform:translateX(-100%)}.axis span.last::before{left:100%}
.pill{display:inline-block;font-size:11.5px;font-weight:600;border-radius:999px;padding:1px 9px;vertical-align:1px;color:#fff;font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif}
.k-ok{background:var(--ok)}.k-bad,.k-mismatch{background:var(--bad)}.k-drift{background:var(--drift)}.k-lag{background:var(--lag);color:#3d2a00}.k-poison{background:var(--poison)}.k-absent{background:#98a2b3}
.count{font-size:12px;color:#344054;background:#f2f4f7;border-radius:5px;padding:1px 6px;font-weight:500}
#tables>.card{margin:12px 0}
.card{padding:14px 18px;break-inside:avoid-page}
.card.bad{border-left:5px solid var(--bad)}
.card.ok{border-left:5px solid var(--ok)}
.card-grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:12px}
.panel{border:1px solid var(--line);border-radius:8px;padding:4px 14px 10px}
.panel h4{margin-top:8px}
dl{display:grid;grid-template-columns:auto 1fr;gap:3px 14px;margin:0}
dt{color:var(--muted)}dd{margin:0}
.sides{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.side-name{font-weight:600;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;border-bottom:1px solid var(--line);padding-bottom:2px;margin-bottom:4px}
ul.schemas{list-style:none;margin:0;padding:0}
ul.schemas li{padding:2px 0}
ul.schemas li.drift{color:var(--drift);font-weight:600}
ul.schemas li.drift::after{content:" \2260  primary";font-weight:400;font-size:12px}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;vertical-align:top}
thead th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);border-bottom:2px solid var(--line)}
table.keys{table-layout:fixed;font-size:13px}
col.c-col{width:22%}
table.keys tbody{border-top:1px solid #d0d5dd;break-inside:avoid}
table.keys tr.kh th{font-weight:600;padding-top:8px;overflow-wrap:anywhere}
table.keys tr.kh small{display:block;font-weight:400;color:var(--muted)}
table.keys tr.kh td{padding-top:8px}
.key{background:#f2f4f7;border-radius:4px;padding:0 5px}
table.keys td.v{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px;overflow-wrap:anywhere;white-space:pre-wrap}
table.keys tr.d td{background:#fef3f2}
table.keys tr.d td.v{color:#912018;font-weight:600}
table.keys tr.d td:first-child{border-left:3px solid var(--bad)}
table.keys td.none{color:var(--muted);font-style:italic;font-weight:400}
table.keys tr.eq td{color:var(--muted);font-size:12px;padding-bottom:8px;overflow-wrap:anywhere}
table.list{font-size:13px}
table.list tbody tr{border-bottom:1px solid var(--line)}
table.list td.summary{font-size:12px;overflow-wrap:anywhere;color:#344054}
table.num td:nth-child(n+3),table.num th:nth-child(n+3){text-align:right;font-variant-numeric:tabular-nums}
.note{color:var(--muted);font-style:italic}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:18px}
@media (max-width:760px){main{padding:12px}.sides{grid-template-columns:1fr}.tl{grid-template-columns:90px 1fr}}
@media print{html{background:#fff}main{max-width:none;padding:0}section,.card{border-color:#ccc}a{text-decoration:none}}
"#;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use cdc_verifier_core::Position;
    use cdc_verifier_core::avro::FieldDiff;
    use cdc_verifier_core::digest::OpCounts;
    use cdc_verifier_core::verdict::{LagInfo, SchemaInfo, Side, WindowRef};
    use serde_json::json;

    use super::super::{SourceInfo, StreamSummary};
    use super::*;

    /// 2024-08-14T15:40:00Z.
    const T0: i64 = 1_723_650_000_000;
    const WINDOW_MS: i64 = 10_000;
    const XSS: &str = "<script>alert(1)</script>";

    fn pos(tx: u64) -> Position {
        Position { tx, order: 0 }
    }

    fn seg(status: WindowStatus, first: i64, last: i64) -> Segment {
        Segment {
            status,
            first_window: first,
            last_window: last,
            start_ms: T0 + first * WINDOW_MS,
            end_ms: T0 + (last + 1) * WINDOW_MS,
            first_position: pos(1000 + first as u64 * 100),
            last_position: pos(1000 + last as u64 * 100 + 99),
            windows: (last - first + 1) as u64,
        }
    }

    fn seen(stream: &str, table: &str, id: u32, version: u32) -> SchemaSeen {
        SchemaSeen {
            stream: stream.into(),
            table: table.into(),
            schema_id: id,
            subject: format!("shop.public.{table}-value"),
            version: Some(version),
        }
    }

    fn window(id: i64) -> WindowRef {
        WindowRef {
            id,
            first: pos(1000 + id as u64 * 100),
            last: pos(1000 + id as u64 * 100 + 99),
            start_ms: T0 + id * WINDOW_MS,
            end_ms: T0 + (id + 1) * WINDOW_MS,
        }
    }

    fn divergence(kind: Kind, replica: &str, table: Option<&str>, w: Option<i64>) -> Divergence {
        let mut d = Divergence::new(kind, replica, T0 + 600_000);
        d.table = table.map(Into::into);
        d.range = w.map(|_| 3);
        d.range_label = w.map(|_| "[0x3000..0x4000)".into());
        d.window = w.map(window);
        d
    }

    fn stream(name: &str, role: &str, events: u64) -> StreamSummary {
        StreamSummary {
            name: name.into(),
            role: role.into(),
            events,
            bytes: events * 212,
            duplicates: 3,
            ..Default::default()
        }
    }

    fn consistent_table(replica: &str, table: &str, windows: i64) -> TableReport {
        TableReport {
            table: table.into(),
            consistent: true,
            first_divergence: None,
            timeline: vec![seg(WindowStatus::Consistent, 0, windows - 1)],
            schemas: vec![seen("primary", table, 7, 1), seen(replica, table, 7, 1)],
            differing_keys: Vec::new(),
        }
    }

    fn key_row(id: u64) -> KeyRow {
        KeyRow {
            key: json!({ "id": id }),
            window: 14,
            range: Some("[0x3000..0x4000)".into()),
            primary_position: Some(2_412 + id),
            primary_row: json!({ "id": id, "customer": "ada", "total": "129.90", "status": "paid", "discount": "5.00" }),
            replica_position: Some(2_415 + id),
            replica_row: json!({ "id": id, "customer": "ada", "total": "124.90", "status": "pending" }),
        }
    }

    /// `replica-2` drifted to an older `orders` schema at window 12, then its rows diverged.
    fn divergent() -> Report {
        let mut keys: Vec<KeyRow> = (1..=4).map(key_row).collect();
        keys.push(KeyRow {
            key: json!({ "id": XSS }),
            window: 15,
            range: None,
            primary_position: Some(2_600),
            primary_row: json!({ "id": XSS, "customer": "\"quoted\" & <b>bold</b>", "total": "1.00" }),
            replica_position: None,
            replica_row: Value::Null,
        });
        let orders = TableReport {
            table: "orders".into(),
            consistent: false,
            first_divergence: Some(FirstDivergence {
                kind: Kind::SchemaDrift,
                window: 12,
                position: 2_200,
                time: rfc3339(T0 + 12 * WINDOW_MS + 1_250),
                schema_subject: Some("shop.public.orders-value".into()),
                expected_version: Some(3),
                actual_version: Some(2),
                missing_fields: vec!["discount".into()],
            }),
            timeline: vec![
                seg(WindowStatus::Consistent, 0, 11),
                seg(WindowStatus::Drifted, 12, 13),
                seg(WindowStatus::Mismatched, 14, 21),
                seg(WindowStatus::Lagging, 22, 23),
                seg(WindowStatus::Consistent, 24, 35),
            ],
            schemas: vec![
                seen("primary", "orders", 12, 3),
                seen("replica-2", "orders", 9, 2),
                seen("replica-2", "orders", 12, 3),
            ],
            differing_keys: keys,
        };
        let mut mismatch = divergence(Kind::DataMismatch, "replica-2", Some("orders"), Some(14));
        mismatch.primary = Some(Side {
            digest: "9f2c4e1a77b03d58".into(),
            ops: OpCounts {
                create: 40,
                update: 12,
                ..Default::default()
            },
        });
        mismatch.replica_side = Some(Side {
            digest: "0d41be93c2a6f710".into(),
            ops: OpCounts {
                create: 40,
                update: 11,
                ..Default::default()
            },
        });
        let mut drift = divergence(Kind::SchemaDrift, "replica-2", Some("orders"), Some(12));
        drift.schema = Some(SchemaInfo {
            subject: "shop.public.orders-value".into(),
            expected_id: 12,
            expected_version: Some(3),
            actual_id: 9,
            actual_version: Some(2),
            fields: vec![FieldDiff::Missing {
                field: "discount".into(),
                expected: "string".into(),
            }],
            first_position: pos(2_200),
            first_ts_ms: T0 + 121_250,
            events: 17,
        });
        let mut lag = divergence(Kind::ReplicaLag, "replica-2", None, Some(22));
        lag.lag = Some(LagInfo {
            primary_position: pos(3_400),
            replica_position: pos(3_100),
            positions_behind: 300,
            ms_behind: 12_400,
        });
        let mut recovered = divergence(Kind::Recovered, "replica-2", Some("orders"), Some(24));
        recovered.recovered = Some(Kind::DataMismatch);
        Report {
            format: FORMAT,
            generated_at: "2024-08-14T16:00:00Z".into(),
            source: SourceInfo {
                kind: "capture".into(),
                description: "captures/shop-2024-08-14.cap".into(),
                from: Some(rfc3339(T0)),
                to: Some(rfc3339(T0 + 360_000)),
            },
            verdict: "divergent".into(),
            primary: "primary".into(),
            streams: vec![
                stream("primary", "primary", 48_210),
                stream("replica-1", "replica", 48_210),
                stream("replica-2", "replica", 47_950),
            ],
            replicas: vec![
                ReplicaReport {
                    name: "replica-1".into(),
                    consistent: true,
                    counts: BTreeMap::new(),
                    tables: vec![
                        consistent_table("replica-1", "orders", 36),
                        consistent_table("replica-1", "customers", 36),
                    ],
                },
                ReplicaReport {
                    name: "replica-2".into(),
                    consistent: false,
                    counts: BTreeMap::from([
                        ("DataMismatch".into(), 1),
                        ("SchemaDrift".into(), 1),
                        ("ReplicaLag".into(), 1),
                        ("Recovered".into(), 1),
                    ]),
                    tables: vec![orders, consistent_table("replica-2", "customers", 36)],
                },
            ],
            divergences: vec![drift, mismatch, lag, recovered],
        }
    }

    fn consistent() -> Report {
        Report {
            format: FORMAT,
            generated_at: "2024-08-14T16:00:00Z".into(),
            source: SourceInfo {
                kind: "kafka".into(),
                description: "bootstrap 127.0.0.1:9092, last 6 minutes".into(),
                from: None,
                to: None,
            },
            verdict: "consistent".into(),
            primary: "primary".into(),
            streams: vec![
                stream("primary", "primary", 10_000),
                stream("replica-1", "replica", 10_000),
            ],
            replicas: vec![ReplicaReport {
                name: "replica-1".into(),
                consistent: true,
                counts: BTreeMap::new(),
                tables: vec![
                    consistent_table("replica-1", "orders", 36),
                    consistent_table("replica-1", "customers", 36),
                ],
            }],
            divergences: Vec::new(),
        }
    }

    /// The text of the page's first `<header>`, the headline.
    fn headline(page: &str) -> &str {
        let start = page.find("<header").expect("a header");
        &page[start..start + page[start..].find("</header>").expect("header closed")]
    }

    #[test]
    fn divergent_headline_answers_who_what_since_when_and_how_many() {
        let page = render(&divergent());
        let h = headline(&page);
        assert!(h.contains("hero bad"), "{h}");
        assert!(h.contains("Divergent"));
        assert!(h.contains(">replica-2</span> diverged from"), "{h}");
        assert!(h.contains(">orders</a>"), "{h}");
        assert!(
            h.contains("since position <b class=\"mono\">2200</b> (window 12)"),
            "{h}"
        );
        assert!(h.contains("2024-08-14T15:42:01.250Z"), "{h}");
        assert!(
            h.contains("<code>shop.public.orders-value</code>: primary writes version <b>3</b>"),
            "{h}"
        );
        assert!(
            h.contains("writes version <b class=\"bad-text\">2</b>"),
            "{h}"
        );
        assert!(h.contains("<code class=\"chip\">discount</code>"), "{h}");
        assert!(h.contains("<b class=\"bad-text\">5</b> rows differ"), "{h}");
        assert!(page.contains("<title>cdc-verifier report: DIVERGENT: replica-2 · orders</title>"));
    }

    #[test]
    fn consistent_report_is_green_and_says_what_was_checked() {
        let page = render(&consistent());
        let h = headline(&page);
        assert!(h.contains("hero ok") && h.contains("Consistent"), "{h}");
        assert!(
            h.contains(">replica-1</span> matches <span class=\"name\">primary</span>"),
            "{h}"
        );
        assert!(h.contains("<b>1</b><span>replica</span>"), "{h}");
        assert!(h.contains("2 tables compared over 36 windows"), "{h}");
        assert!(h.contains("<b>20,000</b><span>events</span>"), "{h}");
        assert!(h.contains("<b>2</b><span>streams</span>"), "{h}");
        assert!(!page.contains("hero bad") && !page.contains("class=\"mark\""));
        assert!(page.contains("<title>cdc-verifier report: consistent</title>"));
    }

    #[test]
    fn timeline_colours_windows_by_status_and_marks_the_first_divergence() {
        let page = render(&divergent());
        for status in ["consistent", "lagging", "mismatched", "drifted"] {
            assert!(
                page.contains(&format!("<i class=\"seg s-{status}\"")),
                "{status}"
            );
            assert!(
                page.contains(&format!("<i class=\"sw s-{status}\"></i>{status}")),
                "legend {status}"
            );
        }
        // 36 windows from T0: the drift starts at window 12, a third of the way along.
        assert!(
            page.contains("<i class=\"seg s-drifted\" style=\"left:33.333%;width:5.556%\""),
            "{page}"
        );
        assert!(page.contains("<i class=\"mark\" style=\"left:33.333%\""));
        assert!(page.contains("first divergence: window 12, position 2200"));
        for label in ["15:40:00", "15:41:00", "15:45:00", "15:46:00"] {
            assert!(
                page.contains(&format!(">{label}</span>")),
                "axis label {label}"
            );
        }
        assert!(
            page.contains("2024-08-14T15:40:00.000Z &rarr; 2024-08-14T15:46:00.000Z (6 min 0 s)")
        );
    }

    #[test]
    fn differing_columns_are_highlighted_side_by_side() {
        let page = render(&divergent());
        assert!(
            page.contains(
                "<tr class=\"d\"><td class=\"mono\">total</td><td class=\"v\">&quot;129.90&quot;</td><td class=\"v\">&quot;124.90&quot;</td></tr>"
            ),
            "{page}"
        );
        assert!(page.contains(
            "<tr class=\"d\"><td class=\"mono\">discount</td><td class=\"v\">&quot;5.00&quot;</td><td class=\"v none\">(no such column)</td></tr>"
        ));
        assert!(
            page.contains("2 equal columns: <span class=\"mono\">customer=&quot;ada&quot;</span> &middot; <span class=\"mono\">id=1</span>"),
            "{page}"
        );
        assert!(
            page.contains("@ 2413") && page.contains("@ 2416"),
            "positions"
        );
        assert!(
            page.contains("<span class=\"pill k-absent\">absent</span>"),
            "a row the replica lacks"
        );
        assert!(
            page.contains(
                "primary wrote no such version\"><code>shop.public.orders-value</code> <b>v2</b>"
            ),
            "the replica's older schema"
        );
    }

    #[test]
    fn every_string_from_the_data_is_escaped() {
        let mut report = divergent();
        report.primary = format!("p{XSS}");
        report.replicas[1].name = format!("replica-2\"><img onerror=x>{XSS}");
        report.replicas[1].tables[0].table = format!("orders'{XSS}");
        report.source.description = XSS.into();
        report.divergences[1].replica = XSS.into();
        let page = render(&report);
        assert!(!page.contains("<script"), "a script element got through");
        assert!(!page.contains("<img"), "an element got through");
        assert!(
            page.contains("replica-2&quot;&gt;&lt;img onerror=x&gt;"),
            "an attribute could be closed from the data"
        );
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("\\&quot;quoted\\&quot; &amp; &lt;b&gt;bold&lt;/b&gt;"));
        assert!(page.contains("orders&#39;&lt;script&gt;"));
        assert_eq!(
            Esc("a&b<c>d\"e'f").to_string(),
            "a&amp;b&lt;c&gt;d&quot;e&#39;f"
        );
    }

    #[test]
    fn the_page_is_self_contained() {
        for page in [render(&divergent()), render(&consistent())] {
            let lower = page.to_ascii_lowercase();
            for needle in [
                "http:", "https:", "src=", "<link", "<script", "@import", "url(", "//",
            ] {
                assert!(
                    !lower.contains(needle),
                    "the page refers to something outside it: {needle}"
                );
            }
            assert!(lower.starts_with("<!doctype html>") && lower.trim_end().ends_with("</html>"));
        }
    }

    #[test]
    fn differing_keys_are_capped_per_table() {
        let mut report = divergent();
        report.replicas[1].tables[0].differing_keys = (0..250).map(key_row).collect();
        let page = render(&report);
        assert_eq!(
            page.matches("<tr class=\"kh\">").count(),
            MAX_KEYS_PER_TABLE
        );
        assert!(page.contains("and 50 more differing keys not shown"));
        assert!(headline(&page).contains("<b class=\"bad-text\">250</b> rows differ"));
    }

    #[test]
    fn verdicts_and_streams_are_listed() {
        let page = render(&divergent());
        assert!(page.contains("<h2>Verdicts (4)</h2>"));
        assert!(page.contains("<span class=\"pill k-drift\">SchemaDrift</span>"));
        assert!(page.contains("DataMismatch replica-2 orders [0x3000..0x4000) window 14 (positions 2400..2499): primary 9f2c4e1a (52 events)"));
        assert!(
            page.contains("<span class=\"pill k-ok\">Recovered</span> <small>DataMismatch</small>")
        );
        assert!(
            page.contains("<td><b>replica-2</b></td><td>replica</td><td>47,950</td>"),
            "{page}"
        );
    }

    #[test]
    fn a_divergent_report_without_a_diverged_table_leads_with_its_first_finding() {
        let mut report = consistent();
        report.verdict = "divergent".into();
        let mut silent = divergence(Kind::StreamSilent, "replica-1", None, None);
        silent.lag = Some(LagInfo {
            primary_position: pos(10),
            replica_position: pos(5),
            positions_behind: 5,
            ms_behind: 90_000,
        });
        report.divergences.push(silent);
        let h = render(&report);
        let h = headline(&h);
        assert!(
            h.contains("hero bad")
                && h.contains("StreamSilent</span> on <span class=\"name\">replica-1</span>"),
            "{h}"
        );
        assert!(h.contains("no records for 90000 ms"), "{h}");
    }

    #[test]
    fn a_hand_written_short_digest_does_not_panic() {
        let mut report = consistent();
        let mut d = divergence(Kind::DataMismatch, "replica-1", Some("orders"), Some(1));
        d.primary = Some(Side {
            digest: "ab".into(),
            ops: OpCounts::default(),
        });
        report.divergences.push(d);
        assert!(render(&report).contains("DataMismatch/replica-1/orders/3/1"));
    }

    #[test]
    fn times_and_numbers_are_formatted() {
        assert_eq!(rfc3339(T0 + 1_250), "2024-08-14T15:40:01.250Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(clock(T0 + 61_000, false), "15:41:01");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(duration(3_723_000), "1 h 2 min");
        assert_eq!(truncate("héllo", 2), ("hé", true));
        assert_eq!(tick_step(360_000), 60_000);
        assert_eq!(tick_step(3_000), 500);
        assert_eq!(
            ticks(T0 + 1, T0 + 180_000, 60_000).collect::<Vec<_>>(),
            [T0 + 60_000, T0 + 120_000, T0 + 180_000]
        );
    }

    #[test]
    fn cli_renders_a_json_report_file() {
        let dir = Scratch::new("cli");
        let (input, output) = (
            dir.path().join("report.json"),
            dir.path().join("report.html"),
        );
        std::fs::write(&input, serde_json::to_string_pretty(&divergent()).unwrap()).unwrap();
        cli(&input, &output).unwrap();
        let page = std::fs::read_to_string(&output).unwrap();
        assert_eq!(
            page,
            render(&divergent()),
            "the JSON round trip changes nothing on the page"
        );
        let err = cli(&dir.path().join("missing.json"), &output).unwrap_err();
        assert!(format!("{err:#}").starts_with("reading report"), "{err:#}");
    }

    /// A fresh directory under the system's temporary directory, removed on drop unless
    /// `CDC_VERIFIER_KEEP_REPORT_PAGE` is set (to look at what the test rendered).
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(what: &str) -> Self {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir().join(format!(
                "cdc-verifier-report-{what}-{}-{nanos}",
                std::process::id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            if std::env::var_os("CDC_VERIFIER_KEEP_REPORT_PAGE").is_some() {
                eprintln!("kept {}", self.0.display());
            } else {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    const CHROMIUM: &str = "/usr/bin/chromium";

    /// Runs headless Chromium on `args` with a fresh profile; returns its stdout.
    fn chromium(scratch: &Path, profile: &str, args: &[String]) -> String {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: the HTML report is checked in a real browser. Install it with \
             `scripts/install-test-deps` (or `apt-get install -y chromium`)"
        );
        let profile = scratch.join(profile);
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting chromium");
        // Read stdout on a thread so a large DOM cannot fill the pipe while we wait.
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
        });
        let mut stderr = child.stderr.take().unwrap();
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
            s
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for chromium") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "chromium did not finish within 120 s: {}",
                    err_reader.join().unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stderr = err_reader.join().unwrap_or_default();
        assert!(status.success(), "chromium failed ({status}): {stderr}");
        reader.join().unwrap().expect("reading chromium's output")
    }

    #[test]
    fn renders_in_headless_chromium() {
        let scratch = Scratch::new("chromium");
        let page = scratch.path().join("report.html");
        std::fs::write(&page, render(&divergent())).unwrap();
        let url = format!("file://{}", page.display());

        let dom = chromium(
            scratch.path(),
            "profile-dom",
            &["--dump-dom".to_string(), url.clone()],
        );
        assert!(
            dom.contains("<header class=\"hero bad\">"),
            "the page did not render: {dom:.2000}"
        );
        assert!(
            dom.contains("replica-2</span> diverged from"),
            "the headline names the replica: {dom:.2000}"
        );
        assert!(
            dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "the key is text"
        );
        assert!(
            !dom.contains("<script"),
            "no script element in the rendered DOM"
        );
        assert!(
            dom.contains("class=\"seg s-mismatched\""),
            "the timeline rendered"
        );

        let png = scratch.path().join("report.png");
        chromium(
            scratch.path(),
            "profile-screenshot",
            &[
                format!("--screenshot={}", png.display()),
                "--window-size=1400,1000".to_string(),
                url,
            ],
        );
        let bytes = std::fs::read(&png).expect("chromium wrote no screenshot");
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
            "the screenshot is not a PNG"
        );
        let (width, height) = (
            u32::from_be_bytes(bytes[16..20].try_into().unwrap()),
            u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
        );
        assert_eq!((width, height), (1400, 1000), "screenshot size");
        // A blank 1400×1000 page compresses to a few kilobytes; the report is far busier.
        assert!(
            bytes.len() > 40_000,
            "the screenshot looks empty ({} bytes)",
            bytes.len()
        );
    }
}
