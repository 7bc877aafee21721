//! Avro schemas as the core needs them: parsed once per schema id into a flat arena,
//! with a structural fingerprint that ignores record names and namespaces.
//!
//! This file holds the arena's types and how to walk it; the parse and its bounds are in
//! `parse`, the structural form and fingerprint in `describe`, and the field-level
//! differences between two record schemas in `diff`.

mod describe;
mod diff;
mod parse;
#[cfg(test)]
mod tests;

pub use diff::FieldDiff;

use serde_json::Value as Json;

/// Index of a node in a [`Schema`]'s arena.
pub type NodeId = u32;

/// Logical types the canonical form interprets by value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Logical {
    None,
    Decimal { precision: u32, scale: u32 },
    Date,
    TimeMillis,
    TimeMicros,
    TimestampMillis,
    TimestampMicros,
    TimestampNanos,
    LocalTimestampMillis,
    LocalTimestampMicros,
    Uuid,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub node: NodeId,
    pub default: Option<Json>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Null,
    Boolean,
    Int(Logical),
    Long(Logical),
    Float,
    Double,
    Bytes(Logical),
    String(Logical),
    Record {
        name: String,
        fields: Vec<Field>,
    },
    Enum {
        name: String,
        symbols: Vec<String>,
        default: Option<String>,
    },
    Array(NodeId),
    Map(NodeId),
    Union(Vec<NodeId>),
    Fixed {
        name: String,
        size: usize,
        logical: Logical,
    },
}

/// How deeply a schema's types may nest, counted along named references (a recursive type
/// ends its loop where it refers back to itself).
pub const MAX_SCHEMA_DEPTH: usize = 64;

/// How many types a schema may expand to when every named reference is followed (a recursive
/// type once per loop), over the walk from the root and from each record type. A short schema
/// whose records each refer twice to the previous one expands exponentially: every walk that
/// describes, fingerprints or compiles a schema is bounded by this once the parse accepted it.
pub const MAX_SCHEMA_NODES: usize = 100_000;

/// A parsed schema: an arena of nodes, the root first. Named types are shared by id, so
/// recursive schemas are finite.
#[derive(Debug, Clone)]
pub struct Schema {
    nodes: Vec<Node>,
    root: NodeId,
    /// Kafka Connect's name for a primitive (`connect.name`, e.g. `io.debezium.time.MicroTimestamp`):
    /// a type Avro does not know, said beside it.
    connect_names: Vec<(NodeId, Box<str>)>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchemaError {
    #[error("schema is not valid JSON: {0}")]
    Json(String),
    #[error("unknown type `{0}`")]
    UnknownType(String),
    #[error("{0} is missing `{1}`")]
    Missing(&'static str, &'static str),
    #[error("invalid schema: {0}")]
    Invalid(String),
    #[error("schema nests deeper than {limit} levels")]
    TooDeep { limit: usize },
    #[error("schema expands to more than {limit} types (named types referenced over and over)")]
    TooLarge { limit: usize },
}

impl Schema {
    /// Kafka Connect's name of the primitive at `node` (`connect.name`), if it has one.
    pub fn connect_name(&self, node: NodeId) -> Option<&str> {
        self.connect_names
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, name)| &**name)
    }

    pub fn root(&self) -> NodeId {
        self.root
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id as usize]
    }

    /// The record field `name` of the record at `id`, if it is a record with that field.
    pub fn field(&self, id: NodeId, name: &str) -> Option<&Field> {
        match self.node(id) {
            Node::Record { fields, .. } => fields.iter().find(|f| f.name == name),
            _ => None,
        }
    }

    /// The non-null branch of a `["null", T]` union, or the node itself.
    pub fn non_null(&self, id: NodeId) -> NodeId {
        match self.node(id) {
            Node::Union(branches) => branches
                .iter()
                .copied()
                .find(|b| !matches!(self.node(*b), Node::Null))
                .unwrap_or(id),
            _ => id,
        }
    }
}
