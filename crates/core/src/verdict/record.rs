//! The flat record of a verdict: one field per detail, null or empty where its kind has
//! none. It is the shape of a verdict in the JSON report (`docs/report-format.md`) and in the
//! Avro alert (`schemas/divergence.avsc`).

use serde::{Deserialize, Serialize};

use super::{
    Divergence, Drift, Finding, KeyDiff, Kind, LagInfo, Mismatch, OffsetRange, PoisonInfo,
    RangeRef, Recovery, SchemaInfo, Side, Sides, Unverified, WindowRef,
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivergenceRecord {
    pub kind: Kind,
    pub replica: String,
    pub table: Option<String>,
    pub range: Option<u64>,
    pub range_label: Option<String>,
    pub window: Option<WindowRef>,
    pub primary: Option<Side>,
    pub replica_side: Option<Side>,
    pub schema: Option<SchemaInfo>,
    pub offsets: Vec<OffsetRange>,
    pub lag: Option<LagInfo>,
    pub poison: Option<PoisonInfo>,
    /// For `Recovered`: which episode ended.
    pub recovered: Option<Kind>,
    pub keys: Vec<KeyDiff>,
    pub detected_at_ms: i64,
    /// For `Unverified`: why the span was given up on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A record that lacks a detail its kind requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {kind} verdict without {missing}")]
pub struct IncompleteRecord {
    pub kind: Kind,
    pub missing: &'static str,
}

impl From<&Divergence> for DivergenceRecord {
    fn from(d: &Divergence) -> Self {
        let mut r = DivergenceRecord {
            kind: d.kind(),
            replica: d.replica.clone(),
            table: None,
            range: None,
            range_label: None,
            window: None,
            primary: None,
            replica_side: None,
            schema: None,
            offsets: Vec::new(),
            lag: None,
            poison: None,
            recovered: None,
            keys: Vec::new(),
            detected_at_ms: d.detected_at_ms,
            detail: None,
        };
        let set_range = |r: &mut DivergenceRecord, range: &RangeRef| {
            r.range = Some(range.index);
            r.range_label = Some(range.label.clone());
        };
        match &d.finding {
            Finding::DataMismatch(m) => {
                r.table = Some(m.table.clone());
                set_range(&mut r, &m.range);
                r.window = m.window;
                if let Some(s) = &m.sides {
                    r.primary = Some(s.primary.clone());
                    r.replica_side = Some(s.replica.clone());
                }
                r.offsets = m.offsets.clone();
                r.keys = m.keys.clone();
            }
            Finding::SchemaDrift(s) => {
                r.table = Some(s.table.clone());
                r.window = Some(s.window);
                r.schema = Some(s.schema.clone());
                r.offsets = s.offsets.clone();
            }
            Finding::ReplicaLag { window, lag } => {
                r.window = Some(*window);
                r.lag = Some(lag.clone());
            }
            Finding::StreamSilent { table, window, lag } => {
                r.table = Some(table.clone());
                r.window = *window;
                r.lag = Some(lag.clone());
            }
            Finding::PoisonEvent { table, poison } => {
                r.table = Some(table.clone());
                r.poison = Some(poison.clone());
            }
            Finding::Unverified(u) => {
                r.table = u.table.clone();
                r.window = Some(u.span);
                r.offsets = u.offsets.clone();
                r.lag = Some(u.lag.clone());
                r.detail = Some(u.reason.clone());
            }
            Finding::Recovered(rec) => {
                r.recovered = Some(rec.ended());
                match rec {
                    Recovery::DataMismatch {
                        table,
                        range,
                        window,
                    } => {
                        r.table = Some(table.clone());
                        set_range(&mut r, range);
                        r.window = *window;
                    }
                    Recovery::SchemaDrift { table, window } => {
                        r.table = Some(table.clone());
                        r.window = Some(*window);
                    }
                    Recovery::ReplicaLag { window } => r.window = Some(*window),
                    Recovery::StreamSilent { table } => r.table = Some(table.clone()),
                }
            }
        }
        r
    }
}

impl From<Divergence> for DivergenceRecord {
    fn from(d: Divergence) -> Self {
        DivergenceRecord::from(&d)
    }
}

impl TryFrom<DivergenceRecord> for Divergence {
    type Error = IncompleteRecord;

    /// Reads a record back; details its kind does not have are ignored.
    fn try_from(r: DivergenceRecord) -> Result<Self, IncompleteRecord> {
        let kind = r.kind;
        let need = |missing| IncompleteRecord { kind, missing };
        let any_table = r.table.clone();
        let table = r.table.ok_or(need("a table"));
        let range = match (r.range, r.range_label) {
            (Some(index), Some(label)) => Ok(RangeRef { index, label }),
            _ => Err(need("a range")),
        };
        let window = r.window.ok_or(need("a window"));
        let lag = r.lag.ok_or(need("a lag"));
        let finding = match kind {
            Kind::DataMismatch => Finding::DataMismatch(Mismatch {
                table: table?,
                range: range?,
                window: r.window,
                sides: match (r.primary, r.replica_side) {
                    (Some(primary), Some(replica)) => Some(Sides { primary, replica }),
                    (None, None) => None,
                    _ => return Err(need("both sides")),
                },
                offsets: r.offsets,
                keys: r.keys,
            }),
            Kind::SchemaDrift => Finding::SchemaDrift(Drift {
                table: table?,
                window: window?,
                schema: r.schema.ok_or(need("a schema"))?,
                offsets: r.offsets,
            }),
            Kind::ReplicaLag => Finding::ReplicaLag {
                window: window?,
                lag: lag?,
            },
            Kind::StreamSilent => Finding::StreamSilent {
                table: table?,
                window: r.window,
                lag: lag?,
            },
            Kind::Unverified => Finding::Unverified(Unverified {
                table: any_table,
                span: window?,
                offsets: r.offsets,
                lag: lag?,
                reason: r.detail.ok_or(need("a reason"))?,
            }),
            Kind::PoisonEvent => Finding::PoisonEvent {
                table: table?,
                poison: r.poison.ok_or(need("a poison record"))?,
            },
            Kind::Recovered => Finding::Recovered(match r.recovered {
                Some(Kind::DataMismatch) => Recovery::DataMismatch {
                    table: table?,
                    range: range?,
                    window: r.window,
                },
                Some(Kind::SchemaDrift) => Recovery::SchemaDrift {
                    table: table?,
                    window: window?,
                },
                Some(Kind::ReplicaLag) => Recovery::ReplicaLag { window: window? },
                Some(Kind::StreamSilent) => Recovery::StreamSilent { table: table? },
                Some(Kind::PoisonEvent | Kind::Recovered | Kind::Unverified) | None => {
                    return Err(need("an episode that can end"));
                }
            }),
        };
        Ok(Divergence {
            replica: r.replica,
            detected_at_ms: r.detected_at_ms,
            finding,
        })
    }
}
