//! The report as one self-contained HTML page: inline CSS, no script, no external resource,
//! so it can be mailed, attached to a ticket or opened from a CI artifact as it is.
//!
//! Every string that comes from the data (keys and row values come from databases; names from
//! configuration and topics) is written through [`Esc`](format::Esc); numbers are the only
//! other values interpolated into markup.

use std::path::Path;

use anyhow::Context as _;

use super::{FirstDivergence, ReplicaReport, Report, TableReport};

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

mod format;
mod lists;
mod overview;
mod tables;
#[cfg(test)]
mod tests;
mod timeline;

use self::lists::{footer, streams, verdicts};
use self::overview::{head, hero};
use self::tables::tables;
use self::timeline::timeline;

/// The page's style sheet, inlined into its head.
const CSS: &str = include_str!("html/report.css");

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
