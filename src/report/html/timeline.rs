//! The timeline: each replica's tables as bars of compared windows coloured by status, on a
//! shared time axis, with the first divergence marked.

use std::fmt::Write as _;

use cdc_verifier_core::{Segment, WindowStatus};

use crate::report::{FirstDivergence, Report};

use super::format::{Esc, clock, duration, kind_class, replica_pill, rfc3339, status_name};
use super::{MAX_TICKS, View, anchor};

pub(super) fn timeline(out: &mut String, report: &Report, view: &View) {
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
pub(super) fn tick_step(span_ms: i64) -> i64 {
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
pub(super) fn ticks(t0: i64, t1: i64, step: i64) -> impl Iterator<Item = i64> {
    let first = t0.div_euclid(step) * step;
    let first = if first < t0 { first + step } else { first };
    (0..)
        .map(move |i| first + i * step)
        .take_while(move |&t| t <= t1)
}

/// Where in time the first divergent window sits: inside its segment, windows taken as equal.
pub(super) fn divergence_ms(f: &FirstDivergence, timeline: &[Segment]) -> Option<i64> {
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

pub(super) fn segment_title(s: &Segment) -> String {
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
