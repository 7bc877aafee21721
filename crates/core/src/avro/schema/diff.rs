//! The field-level differences between the primary's and a replica's record schema, as a
//! schema-drift verdict names them.

use std::fmt;

use super::{Node, NodeId, Schema};

impl Schema {
    /// The field-level differences between two record schemas: fields missing from, added to,
    /// or of another type in `actual` compared with `expected`.
    pub fn field_diff(expected: &Schema, e: NodeId, actual: &Schema, a: NodeId) -> Vec<FieldDiff> {
        let (Node::Record { fields: ef, .. }, Node::Record { fields: af, .. }) =
            (expected.node(e), actual.node(a))
        else {
            return vec![FieldDiff::Changed {
                field: String::new(),
                expected: expected.describe(e),
                actual: actual.describe(a),
            }];
        };
        let mut diffs = Vec::new();
        for f in ef {
            match af.iter().find(|g| g.name == f.name) {
                None => diffs.push(FieldDiff::Missing {
                    field: f.name.clone(),
                    expected: expected.describe(f.node),
                }),
                Some(g) => {
                    let (te, ta) = (expected.describe(f.node), actual.describe(g.node));
                    if te != ta || f.default != g.default {
                        diffs.push(FieldDiff::Changed {
                            field: f.name.clone(),
                            expected: te,
                            actual: ta,
                        });
                    }
                }
            }
        }
        for g in af {
            if !ef.iter().any(|f| f.name == g.name) {
                diffs.push(FieldDiff::Added {
                    field: g.name.clone(),
                    actual: actual.describe(g.node),
                });
            }
        }
        diffs
    }
}

/// One difference between the expected (primary's) and actual (replica's) row schema.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum FieldDiff {
    Missing {
        field: String,
        expected: String,
    },
    Added {
        field: String,
        actual: String,
    },
    Changed {
        field: String,
        expected: String,
        actual: String,
    },
}

impl FieldDiff {
    /// The field's name.
    pub fn field(&self) -> &str {
        match self {
            FieldDiff::Missing { field, .. }
            | FieldDiff::Added { field, .. }
            | FieldDiff::Changed { field, .. } => field,
        }
    }
}

impl fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldDiff::Missing { field, expected } => {
                write!(f, "field `{field}` ({expected}) is missing")
            }
            FieldDiff::Added { field, actual } => write!(
                f,
                "field `{field}` ({actual}) is not in the primary's schema"
            ),
            FieldDiff::Changed {
                field,
                expected,
                actual,
            } => {
                write!(f, "field `{field}` is {actual}, expected {expected}")
            }
        }
    }
}
