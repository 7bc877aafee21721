//! Reports of a verification run: a JSON document with stable field names (documented in
//! `docs/report-format.md`) and a self-contained HTML page rendered from it.

pub mod html;
mod repair;

use cdc_verifier_core::verdict::{Divergence, Kind};
use cdc_verifier_core::{SchemaSeen, Segment};
use serde::{Deserialize, Serialize};

/// Version of the report format; bumped on any incompatible change.
pub const FORMAT: u32 = 1;

const VERDICT_CONSISTENT: &str = "consistent";
const VERDICT_DIVERGENT: &str = "divergent";
const VERDICT_NOTHING: &str = "nothing_verified";
/// Where to look when nothing was verified.
const CHECK: &str = "check the topics (the streams' prefixes, --topic-prefix), the span \
    (--from/--to are commit times, UTC), --offsets or the capture";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub format: u32,
    /// When the report was written (RFC 3339, UTC).
    pub generated_at: String,
    /// What was verified: a capture file, a Kafka time or offset window, or the demo.
    pub source: SourceInfo,
    /// `consistent` when no divergence was found, `divergent` when one was, and
    /// `nothing_verified` when no change event of any stream was: there was nothing to
    /// compare.
    pub verdict: String,
    pub primary: String,
    pub streams: Vec<StreamSummary>,
    pub replicas: Vec<ReplicaReport>,
    /// Every verdict, in the order it was reached.
    pub divergences: Vec<Divergence>,
    /// The column rules rows were compared under (`verify.column-rules`), a line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub column_rules: Vec<String>,
    /// What those rules could not do (a treatment that fits no column it names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rule_notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceInfo {
    /// `capture`, `kafka` or `demo`.
    pub kind: String,
    pub description: String,
    /// Origin time of the first and last event verified (RFC 3339), when known.
    pub from: Option<String>,
    pub to: Option<String>,
}

/// Records read per stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StreamSummary {
    pub name: String,
    pub role: String,
    pub events: u64,
    pub bytes: u64,
    pub duplicates: u64,
    pub late: u64,
    pub tombstones: u64,
    pub poison: u64,
    /// Snapshot reads summed into the stream's starting state.
    #[serde(default)]
    pub snapshot: u64,
    /// Reads of a second snapshot (a connector that lost its offsets): not verified.
    #[serde(default)]
    pub snapshot_late: u64,
    /// Records stamped in the future (past the end of what was read, or the wall clock):
    /// verified, but not allowed to move the verifier's clock.
    #[serde(default)]
    pub future: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub name: String,
    pub consistent: bool,
    /// Verdicts about this replica, by kind (`Recovered` included).
    pub counts: std::collections::BTreeMap<String, u64>,
    pub tables: Vec<TableReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableReport {
    pub table: String,
    pub consistent: bool,
    /// The first window in which this replica's table diverged, with what was seen there.
    pub first_divergence: Option<FirstDivergence>,
    /// The compared windows as runs of equal status: consistent, lagging, mismatched, drifted.
    pub timeline: Vec<Segment>,
    /// Value schemas the primary and this replica wrote the table with.
    pub schemas: Vec<SchemaSeen>,
    /// Keys whose rows differ, with both row images.
    pub differing_keys: Vec<KeyRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FirstDivergence {
    pub kind: Kind,
    pub window: i64,
    /// The first divergent origin position and its commit time (RFC 3339).
    pub position: u64,
    pub time: String,
    pub schema_subject: Option<String>,
    pub expected_version: Option<u32>,
    pub actual_version: Option<u32>,
    pub missing_fields: Vec<String>,
}

/// One differing key: both row images as of the end of the window where they differed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRow {
    pub key: serde_json::Value,
    pub window: i64,
    pub range: Option<String>,
    pub primary_position: Option<u64>,
    pub primary_row: serde_json::Value,
    pub replica_position: Option<u64>,
    pub replica_row: serde_json::Value,
    /// The statement that makes the replica's row the primary's.
    pub repair: Repair,
}

/// A repair statement in both dialects (see `cdc_verifier_core::repair`).
pub use cdc_verifier_core::repair::Statements as Repair;
pub use repair::repair_of;

impl Report {
    pub fn is_consistent(&self) -> bool {
        self.verdict == VERDICT_CONSISTENT
    }

    /// No event of any stream was verified: consistency cannot be told.
    pub fn nothing_verified(&self) -> bool {
        self.verdict == VERDICT_NOTHING
    }

    /// Why nothing was verified, and where to look: the error a command ends with then.
    pub fn nothing_to_compare(&self) -> String {
        format!(
            "verified 0 events ({}): nothing to compare — {CHECK}",
            self.source.description
        )
    }

    /// Divergences that count against consistency (everything but `Recovered`).
    pub fn findings(&self) -> impl Iterator<Item = &Divergence> {
        self.divergences
            .iter()
            .filter(|d| d.kind() != Kind::Recovered)
    }
}

/// Assembles a report from what a run concluded.
pub fn build(
    engine: &cdc_verifier_core::Engine,
    verdicts: &[Divergence],
    source: SourceInfo,
) -> Report {
    use std::collections::{BTreeMap, BTreeSet};
    let names: Vec<String> = engine.stream_names().map(str::to_string).collect();
    let primary = names[0].clone();

    let mut streams: Vec<StreamSummary> = names
        .iter()
        .enumerate()
        .map(|(i, n)| StreamSummary {
            name: n.clone(),
            role: if i == 0 {
                "primary".into()
            } else {
                "replica".into()
            },
            ..Default::default()
        })
        .collect();
    for (stream, _table, _topic, st) in engine.topic_stats() {
        if let Some(s) = streams.iter_mut().find(|s| s.name == stream) {
            s.events += st.events;
            s.bytes += st.bytes;
            s.duplicates += st.duplicates;
            s.late += st.late;
            s.tombstones += st.tombstones;
            s.poison += st.poison;
            s.snapshot += st.snapshot;
            s.snapshot_late += st.snapshot_late;
            s.future += st.future;
        }
    }

    let timeline = engine.timeline();
    let seen = engine.schemas_seen();
    let mut replicas = Vec::new();
    for name in &names[1..] {
        let mine: Vec<&Divergence> = verdicts.iter().filter(|d| &d.replica == name).collect();
        let mut counts = BTreeMap::new();
        for d in &mine {
            *counts.entry(d.kind().to_string()).or_insert(0u64) += 1;
        }
        let mut tables: BTreeSet<String> = timeline
            .iter()
            .filter(|(r, _, _)| r == name)
            .map(|(_, t, _)| t.clone())
            .collect();
        tables.extend(mine.iter().filter_map(|d| d.table().map(str::to_string)));
        let mut table_reports = Vec::new();
        for table in tables {
            let of_table: Vec<&&Divergence> = mine
                .iter()
                .filter(|d| d.table() == Some(table.as_str()))
                .collect();
            let findings: Vec<&&Divergence> = of_table
                .iter()
                .copied()
                .filter(|d| d.kind() != Kind::Recovered)
                .collect();
            let drift = of_table.iter().find(|d| d.kind() == Kind::SchemaDrift);
            let first = of_table
                .iter()
                .filter(|d| matches!(d.kind(), Kind::DataMismatch | Kind::SchemaDrift))
                .min_by_key(|d| {
                    (
                        d.window().map(|w| w.id).unwrap_or(i64::MAX),
                        d.kind() != Kind::SchemaDrift,
                    )
                })
                .map(|d| {
                    let w = d.window().expect("window verdicts carry a window");
                    let (position, ts) = match d.drift() {
                        Some(d) => (d.schema.first_position.tx, d.schema.first_ts_ms),
                        None => (w.first.tx, w.start_ms),
                    };
                    let s = drift.and_then(|d| d.drift()).map(|d| &d.schema);
                    FirstDivergence {
                        kind: d.kind(),
                        window: w.id,
                        position,
                        time: cdc_verifier_core::avro::json::format_millis(ts),
                        schema_subject: s.map(|s| s.subject.clone()),
                        expected_version: s.and_then(|s| s.expected_version),
                        actual_version: s.and_then(|s| s.actual_version),
                        missing_fields: s
                            .map(|s| {
                                s.fields
                                    .iter()
                                    .filter_map(|f| match f {
                                        cdc_verifier_core::avro::FieldDiff::Missing {
                                            field,
                                            ..
                                        } => Some(field.clone()),
                                        _ => None,
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                    }
                });
            let mut keys: Vec<KeyRow> = Vec::new();
            for m in of_table.iter().filter_map(|d| d.mismatch()) {
                for k in &m.keys {
                    if keys.iter().any(|x| x.key == k.key) {
                        continue;
                    }
                    let row_of = |i: &Option<cdc_verifier_core::verdict::RowImage>| {
                        i.as_ref()
                            .map(|i| i.row.clone())
                            .unwrap_or(serde_json::Value::Null)
                    };
                    let primary_row = row_of(&k.primary);
                    keys.push(KeyRow {
                        repair: repair_of(engine, name, &m.table, k, "the span"),
                        key: k.key.clone(),
                        window: m.window.map(|w| w.id).unwrap_or_default(),
                        range: Some(m.range.label.clone()),
                        primary_position: k.primary.as_ref().map(|i| i.position.tx),
                        primary_row,
                        replica_position: k.replica.as_ref().map(|i| i.position.tx),
                        replica_row: k
                            .replica
                            .as_ref()
                            .map(|i| i.row.clone())
                            .unwrap_or(serde_json::Value::Null),
                    });
                }
            }
            table_reports.push(TableReport {
                consistent: findings.is_empty(),
                first_divergence: first,
                timeline: timeline
                    .iter()
                    .find(|(r, t, _)| r == name && *t == table)
                    .map(|(_, _, s)| s.clone())
                    .unwrap_or_default(),
                schemas: seen
                    .iter()
                    .filter(|s| s.table == table && (s.stream == primary || &s.stream == name))
                    .cloned()
                    .collect(),
                differing_keys: keys,
                table,
            });
        }
        replicas.push(ReplicaReport {
            consistent: mine.iter().all(|d| d.kind() == Kind::Recovered),
            name: name.clone(),
            counts,
            tables: table_reports,
        });
    }
    let consistent = verdicts.iter().all(|d| d.kind() == Kind::Recovered);
    // Changes, not snapshot reads: a snapshot is the starting state, and a span with no
    // change in it was not verified however its streams began.
    let verified: u64 = streams.iter().map(|s| s.events).sum();
    Report {
        format: FORMAT,
        generated_at: cdc_verifier_core::avro::json::format_millis(now_ms()),
        source,
        verdict: if verified == 0 {
            VERDICT_NOTHING.into()
        } else if consistent {
            VERDICT_CONSISTENT.into()
        } else {
            VERDICT_DIVERGENT.into()
        },
        primary,
        streams,
        replicas,
        divergences: verdicts.to_vec(),
        column_rules: engine
            .config()
            .rules
            .0
            .iter()
            .map(|r| r.to_string())
            .collect(),
        rule_notes: engine.rule_notes().to_vec(),
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The answer in a few lines, for the terminal.
pub fn summary_text(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let events: u64 = r.streams.iter().map(|s| s.events).sum();
    let _ = writeln!(
        s,
        "verified {events} events of {} streams ({})",
        r.streams.len(),
        r.source.description
    );
    if !r.column_rules.is_empty() {
        let _ = writeln!(
            s,
            "compared under column rules: {}",
            r.column_rules.join("; ")
        );
    }
    for n in &r.rule_notes {
        let _ = writeln!(s, "column rule not applied: {n}");
    }
    let future: u64 = r.streams.iter().map(|s| s.future).sum();
    if future > 0 {
        let _ = writeln!(
            s,
            "{future} record(s) stamped past the end of what was read (a producer's clock was wrong): verified, but not allowed to move the clock"
        );
    }
    if r.nothing_verified() {
        let _ = writeln!(s, "NOTHING VERIFIED: nothing to compare — {CHECK}");
        for d in r.findings() {
            let _ = writeln!(s, "  {}", d.summary());
        }
        return s;
    }
    if r.is_consistent() {
        let _ = writeln!(
            s,
            "CONSISTENT: every replica matches {} at equal positions",
            r.primary
        );
        return s;
    }
    let _ = writeln!(s, "DIVERGENT: {} finding(s)", r.findings().count());
    for rep in &r.replicas {
        if rep.consistent {
            let _ = writeln!(
                s,
                "  {}: consistent ({} tables)",
                rep.name,
                rep.tables.len()
            );
            continue;
        }
        for t in rep.tables.iter().filter(|t| !t.consistent) {
            match &t.first_divergence {
                Some(f) => {
                    let _ = writeln!(
                        s,
                        "  {} / {}: {} since position {} ({})",
                        rep.name, t.table, f.kind, f.position, f.time
                    );
                    if let (Some(subject), Some(a)) = (&f.schema_subject, f.actual_version) {
                        let missing = if f.missing_fields.is_empty() {
                            String::new()
                        } else {
                            format!("; missing field(s): {}", f.missing_fields.join(", "))
                        };
                        let _ = writeln!(
                            s,
                            "      writes {subject} version {a}, the primary writes version {}{missing}",
                            f.expected_version.map_or("?".into(), |v| v.to_string())
                        );
                    }
                }
                None => {
                    let kinds: Vec<String> = r
                        .divergences
                        .iter()
                        .filter(|d| {
                            d.replica == rep.name
                                && d.table() == Some(t.table.as_str())
                                && d.kind() != Kind::Recovered
                        })
                        .map(|d| d.kind().to_string())
                        .collect();
                    let _ = writeln!(s, "  {} / {}: {}", rep.name, t.table, kinds.join(", "));
                }
            }
            if !t.differing_keys.is_empty() {
                let k = &t.differing_keys[0];
                let _ = writeln!(
                    s,
                    "      {} row(s) differ, e.g. key {}",
                    t.differing_keys.len(),
                    k.key
                );
            }
        }
        for d in r
            .divergences
            .iter()
            .filter(|d| d.replica == rep.name && d.table().is_none() && d.kind() != Kind::Recovered)
        {
            let _ = writeln!(s, "  {}", d.summary());
        }
    }
    for d in r
        .divergences
        .iter()
        .filter(|d| d.kind() == Kind::PoisonEvent)
    {
        let _ = writeln!(s, "  {}", d.summary());
    }
    s
}
