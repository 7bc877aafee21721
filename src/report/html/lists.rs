//! The lists at the end of the page: every verdict, the streams read, and the footer.

use std::fmt::Write as _;

use cdc_verifier_core::verdict::{Divergence, Side};

use crate::report::{FORMAT, Report};

use super::MAX_VERDICTS;
use super::format::{Esc, clock, human_bytes, kind_class, rfc3339, thousands};

pub(super) fn verdicts(out: &mut String, report: &Report) {
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
            kind_class(d.kind()),
            d.kind(),
            d.ended()
                .map(|k| format!(" <small>{k}</small>"))
                .unwrap_or_default(),
            Esc(&d.replica),
            Esc(d.table().unwrap_or("–")),
            Esc(d.range().map(|r| r.label.as_str()).unwrap_or("–"))
        );
        match d.window() {
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
pub(super) fn summary(d: &Divergence) -> String {
    let short = |s: &Side| !s.digest.is_char_boundary(8);
    let sides = d.mismatch().and_then(|m| m.sides.as_ref());
    if sides.is_some_and(|s| short(&s.primary) || short(&s.replica)) {
        return d.key();
    }
    d.summary()
}

pub(super) fn streams(out: &mut String, report: &Report) {
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

pub(super) fn footer(out: &mut String, report: &Report) {
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
