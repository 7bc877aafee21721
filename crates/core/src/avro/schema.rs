//! Avro schemas as the core needs them: parsed once per schema id into a flat arena,
//! with a structural fingerprint that ignores record names and namespaces.

use std::collections::HashMap;
use std::fmt;

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
    pub fn parse_str(text: &str) -> Result<Schema, SchemaError> {
        let json: Json =
            serde_json::from_str(text).map_err(|e| SchemaError::Json(e.to_string()))?;
        Schema::parse(&json)
    }

    pub fn parse(json: &Json) -> Result<Schema, SchemaError> {
        let mut parser = Parser {
            nodes: Vec::new(),
            names: HashMap::new(),
            connect_names: Vec::new(),
        };
        let root = parser.parse(json, "", 0)?;
        let schema = Schema {
            nodes: parser.nodes,
            root,
            connect_names: parser.connect_names,
        };
        schema.check_bounds()?;
        Ok(schema)
    }

    /// Kafka Connect's name of the primitive at `node` (`connect.name`), if it has one.
    pub fn connect_name(&self, node: NodeId) -> Option<&str> {
        self.connect_names
            .iter()
            .find(|(n, _)| *n == node)
            .map(|(_, name)| &**name)
    }

    /// Walks the schema as [`describe`](Self::describe) does — from the root, and from each
    /// record type, as a row or key schema is described alone — within
    /// [`MAX_SCHEMA_DEPTH`] and, all walks together, [`MAX_SCHEMA_NODES`].
    fn check_bounds(&self) -> Result<(), SchemaError> {
        let mut budget = MAX_SCHEMA_NODES;
        let mut stack = Vec::new();
        self.expand(self.root, 0, &mut stack, &mut budget)?;
        for (id, node) in self.nodes.iter().enumerate() {
            if id as NodeId != self.root && matches!(node, Node::Record { .. }) {
                self.expand(id as NodeId, 0, &mut stack, &mut budget)?;
            }
        }
        Ok(())
    }

    fn expand(
        &self,
        id: NodeId,
        depth: usize,
        stack: &mut Vec<NodeId>,
        budget: &mut usize,
    ) -> Result<(), SchemaError> {
        *budget = budget.checked_sub(1).ok_or(SchemaError::TooLarge {
            limit: MAX_SCHEMA_NODES,
        })?;
        if depth >= MAX_SCHEMA_DEPTH {
            return Err(SchemaError::TooDeep {
                limit: MAX_SCHEMA_DEPTH,
            });
        }
        match self.node(id) {
            Node::Record { fields, .. } => {
                if stack.contains(&id) {
                    return Ok(());
                }
                stack.push(id);
                for f in fields {
                    self.expand(f.node, depth + 1, stack, budget)?;
                }
                stack.pop();
            }
            Node::Array(item) | Node::Map(item) => self.expand(*item, depth + 1, stack, budget)?,
            Node::Union(branches) => {
                for b in branches {
                    self.expand(*b, depth + 1, stack, budget)?;
                }
            }
            _ => {}
        }
        Ok(())
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

    /// A 64-bit structural fingerprint of the subtree at `id`: field names, types, logical
    /// types, enum symbols, defaults — not record names or namespaces, which Debezium derives
    /// from the server name and so differ between a primary and its replicas.
    pub fn fingerprint(&self, id: NodeId) -> u64 {
        let mut buf = String::new();
        self.structure(id, &mut buf, &mut Vec::new());
        xxhash_rust::xxh3::xxh3_64(buf.as_bytes())
    }

    /// A human-readable structural form of a type, used in drift reports.
    pub fn describe(&self, id: NodeId) -> String {
        let mut buf = String::new();
        self.structure(id, &mut buf, &mut Vec::new());
        buf
    }

    fn structure(&self, id: NodeId, out: &mut String, stack: &mut Vec<NodeId>) {
        use std::fmt::Write;
        let logical = |out: &mut String, l: &Logical| {
            if *l != Logical::None {
                let _ = write!(out, "<{}>", LogicalName(l));
            }
        };
        match self.node(id) {
            Node::Null => out.push_str("null"),
            Node::Boolean => out.push_str("boolean"),
            Node::Int(l) => {
                out.push_str("int");
                logical(out, l)
            }
            Node::Long(l) => {
                out.push_str("long");
                logical(out, l)
            }
            Node::Float => out.push_str("float"),
            Node::Double => out.push_str("double"),
            Node::Bytes(l) => {
                out.push_str("bytes");
                logical(out, l)
            }
            Node::String(l) => {
                out.push_str("string");
                logical(out, l)
            }
            Node::Record { fields, .. } => {
                if let Some(depth) = stack.iter().position(|s| *s == id) {
                    let _ = write!(out, "^{}", stack.len() - depth);
                    return;
                }
                stack.push(id);
                out.push('{');
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&f.name);
                    out.push(':');
                    self.structure(f.node, out, stack);
                    if let Some(d) = &f.default {
                        let _ = write!(out, "={d}");
                    }
                }
                out.push('}');
                stack.pop();
            }
            Node::Enum {
                symbols, default, ..
            } => {
                let _ = write!(out, "enum[{}]", symbols.join(","));
                if let Some(d) = default {
                    let _ = write!(out, "={d}");
                }
            }
            Node::Array(item) => {
                out.push_str("array<");
                self.structure(*item, out, stack);
                out.push('>');
            }
            Node::Map(value) => {
                out.push_str("map<");
                self.structure(*value, out, stack);
                out.push('>');
            }
            Node::Union(branches) => {
                out.push('[');
                for (i, b) in branches.iter().enumerate() {
                    if i > 0 {
                        out.push('|');
                    }
                    self.structure(*b, out, stack);
                }
                out.push(']');
            }
            Node::Fixed {
                size, logical: l, ..
            } => {
                let _ = write!(out, "fixed({size})");
                logical(out, l)
            }
        }
    }

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

struct LogicalName<'a>(&'a Logical);

impl fmt::Display for LogicalName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Logical::None => Ok(()),
            Logical::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            Logical::Date => f.write_str("date"),
            Logical::TimeMillis => f.write_str("time-millis"),
            Logical::TimeMicros => f.write_str("time-micros"),
            Logical::TimestampMillis => f.write_str("timestamp-millis"),
            Logical::TimestampMicros => f.write_str("timestamp-micros"),
            Logical::TimestampNanos => f.write_str("timestamp-nanos"),
            Logical::LocalTimestampMillis => f.write_str("local-timestamp-millis"),
            Logical::LocalTimestampMicros => f.write_str("local-timestamp-micros"),
            Logical::Uuid => f.write_str("uuid"),
        }
    }
}

struct Parser {
    nodes: Vec<Node>,
    names: HashMap<String, NodeId>,
    connect_names: Vec<(NodeId, Box<str>)>,
}

impl Parser {
    fn push(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        (self.nodes.len() - 1) as NodeId
    }

    fn fullname(name: &str, namespace: Option<&str>, enclosing: &str) -> String {
        if name.contains('.') {
            return name.to_string();
        }
        match namespace.or(if enclosing.is_empty() {
            None
        } else {
            Some(enclosing)
        }) {
            Some(ns) if !ns.is_empty() => format!("{ns}.{name}"),
            _ => name.to_string(),
        }
    }

    fn primitive(name: &str) -> Option<Node> {
        Some(match name {
            "null" => Node::Null,
            "boolean" => Node::Boolean,
            "int" => Node::Int(Logical::None),
            "long" => Node::Long(Logical::None),
            "float" => Node::Float,
            "double" => Node::Double,
            "bytes" => Node::Bytes(Logical::None),
            "string" => Node::String(Logical::None),
            _ => return None,
        })
    }

    fn parse(&mut self, json: &Json, ns: &str, depth: usize) -> Result<NodeId, SchemaError> {
        if depth >= MAX_SCHEMA_DEPTH {
            return Err(SchemaError::TooDeep {
                limit: MAX_SCHEMA_DEPTH,
            });
        }
        let depth = depth + 1;
        match json {
            Json::String(name) => self.named_or_primitive(name, ns),
            Json::Array(branches) => {
                let id = self.push(Node::Union(Vec::new()));
                let mut ids = Vec::with_capacity(branches.len());
                for b in branches {
                    ids.push(self.parse(b, ns, depth)?);
                }
                self.nodes[id as usize] = Node::Union(ids);
                Ok(id)
            }
            Json::Object(obj) => {
                let ty = obj
                    .get("type")
                    .ok_or(SchemaError::Missing("schema object", "type"))?;
                let ty = match ty {
                    Json::String(s) => s.as_str(),
                    // {"type": {...}} or {"type": [...]}: a wrapped schema
                    other => return self.parse(other, ns, depth),
                };
                let logical = obj.get("logicalType").and_then(Json::as_str);
                match ty {
                    "record" | "error" => {
                        let name = obj
                            .get("name")
                            .and_then(Json::as_str)
                            .ok_or(SchemaError::Missing("record", "name"))?;
                        let full =
                            Self::fullname(name, obj.get("namespace").and_then(Json::as_str), ns);
                        let inner_ns = full
                            .rsplit_once('.')
                            .map(|(n, _)| n.to_string())
                            .unwrap_or_default();
                        let id = self.push(Node::Record {
                            name: full.clone(),
                            fields: Vec::new(),
                        });
                        self.names.insert(full.clone(), id);
                        let raw = obj
                            .get("fields")
                            .and_then(Json::as_array)
                            .ok_or(SchemaError::Missing("record", "fields"))?;
                        let mut fields = Vec::with_capacity(raw.len());
                        for f in raw {
                            let fname = f
                                .get("name")
                                .and_then(Json::as_str)
                                .ok_or(SchemaError::Missing("field", "name"))?;
                            let ftype =
                                f.get("type").ok_or(SchemaError::Missing("field", "type"))?;
                            let node = self.parse(ftype, &inner_ns, depth)?;
                            fields.push(Field {
                                name: fname.to_string(),
                                node,
                                default: f.get("default").cloned(),
                            });
                        }
                        self.nodes[id as usize] = Node::Record { name: full, fields };
                        Ok(id)
                    }
                    "enum" => {
                        let name = obj
                            .get("name")
                            .and_then(Json::as_str)
                            .ok_or(SchemaError::Missing("enum", "name"))?;
                        let full =
                            Self::fullname(name, obj.get("namespace").and_then(Json::as_str), ns);
                        let symbols = obj
                            .get("symbols")
                            .and_then(Json::as_array)
                            .ok_or(SchemaError::Missing("enum", "symbols"))?
                            .iter()
                            .map(|s| {
                                s.as_str().map(str::to_string).ok_or_else(|| {
                                    SchemaError::Invalid("enum symbol is not a string".into())
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?;
                        let default = obj
                            .get("default")
                            .and_then(Json::as_str)
                            .map(str::to_string);
                        let id = self.push(Node::Enum {
                            name: full.clone(),
                            symbols,
                            default,
                        });
                        self.names.insert(full, id);
                        Ok(id)
                    }
                    "fixed" => {
                        let name = obj
                            .get("name")
                            .and_then(Json::as_str)
                            .ok_or(SchemaError::Missing("fixed", "name"))?;
                        let full =
                            Self::fullname(name, obj.get("namespace").and_then(Json::as_str), ns);
                        let size = obj
                            .get("size")
                            .and_then(Json::as_u64)
                            .ok_or(SchemaError::Missing("fixed", "size"))?
                            as usize;
                        let logical = match logical {
                            Some("decimal") => decimal(obj)?,
                            Some("uuid") => Logical::Uuid,
                            _ => Logical::None,
                        };
                        let id = self.push(Node::Fixed {
                            name: full.clone(),
                            size,
                            logical,
                        });
                        self.names.insert(full, id);
                        Ok(id)
                    }
                    "array" => {
                        let id = self.push(Node::Null);
                        let items = self.parse(
                            obj.get("items")
                                .ok_or(SchemaError::Missing("array", "items"))?,
                            ns,
                            depth,
                        )?;
                        self.nodes[id as usize] = Node::Array(items);
                        Ok(id)
                    }
                    "map" => {
                        let id = self.push(Node::Null);
                        let values = self.parse(
                            obj.get("values")
                                .ok_or(SchemaError::Missing("map", "values"))?,
                            ns,
                            depth,
                        )?;
                        self.nodes[id as usize] = Node::Map(values);
                        Ok(id)
                    }
                    prim => {
                        let node = Self::primitive(prim)
                            .ok_or_else(|| SchemaError::UnknownType(prim.to_string()))?;
                        // Unknown or mismatched logical types fall back to the underlying type,
                        // as the Avro specification requires.
                        let node = match (node, logical) {
                            (Node::Int(_), Some("date")) => Node::Int(Logical::Date),
                            (Node::Int(_), Some("time-millis")) => Node::Int(Logical::TimeMillis),
                            (Node::Long(_), Some("time-micros")) => Node::Long(Logical::TimeMicros),
                            (Node::Long(_), Some("timestamp-millis")) => {
                                Node::Long(Logical::TimestampMillis)
                            }
                            (Node::Long(_), Some("timestamp-micros")) => {
                                Node::Long(Logical::TimestampMicros)
                            }
                            (Node::Long(_), Some("timestamp-nanos")) => {
                                Node::Long(Logical::TimestampNanos)
                            }
                            (Node::Long(_), Some("local-timestamp-millis")) => {
                                Node::Long(Logical::LocalTimestampMillis)
                            }
                            (Node::Long(_), Some("local-timestamp-micros")) => {
                                Node::Long(Logical::LocalTimestampMicros)
                            }
                            (Node::Bytes(_), Some("decimal")) => Node::Bytes(decimal(obj)?),
                            (Node::String(_), Some("uuid")) => Node::String(Logical::Uuid),
                            (n, _) => n,
                        };
                        let id = self.push(node);
                        if let Some(name) = obj.get("connect.name").and_then(Json::as_str) {
                            self.connect_names.push((id, name.into()));
                        }
                        Ok(id)
                    }
                }
            }
            other => Err(SchemaError::Invalid(format!(
                "unexpected JSON in schema: {other}"
            ))),
        }
    }

    fn named_or_primitive(&mut self, name: &str, ns: &str) -> Result<NodeId, SchemaError> {
        if let Some(node) = Self::primitive(name) {
            return Ok(self.push(node));
        }
        let full = Self::fullname(name, None, ns);
        self.names
            .get(&full)
            .or_else(|| self.names.get(name))
            .copied()
            .ok_or_else(|| SchemaError::UnknownType(name.to_string()))
    }
}

fn decimal(obj: &serde_json::Map<String, Json>) -> Result<Logical, SchemaError> {
    let precision = obj
        .get("precision")
        .and_then(Json::as_u64)
        .ok_or(SchemaError::Missing("decimal", "precision"))? as u32;
    let scale = obj.get("scale").and_then(Json::as_u64).unwrap_or(0) as u32;
    Ok(Logical::Decimal { precision, scale })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_ignores_names_and_namespaces() {
        let a = Schema::parse_str(r#"{"type":"record","name":"Value","namespace":"primary.shop.orders","fields":[{"name":"id","type":"long"},{"name":"note","type":["null","string"],"default":null}]}"#).unwrap();
        let b = Schema::parse_str(r#"{"type":"record","name":"Value","namespace":"replica_2.shop.orders","fields":[{"name":"id","type":"long"},{"name":"note","type":["null","string"],"default":null}]}"#).unwrap();
        assert_eq!(a.fingerprint(a.root()), b.fingerprint(b.root()));
    }

    #[test]
    fn fingerprint_sees_fields_types_logical_types_and_defaults() {
        let base = r#"{"type":"record","name":"V","fields":[{"name":"id","type":"long"},{"name":"c","type":"string","default":"USD"}]}"#;
        let fp = |s: &str| {
            let s = Schema::parse_str(s).unwrap();
            s.fingerprint(s.root())
        };
        let f0 = fp(base);
        assert_ne!(f0, fp(&base.replace("\"USD\"", "\"EUR\"")));
        assert_ne!(f0, fp(&base.replace("\"long\"", "\"int\"")));
        assert_ne!(f0, fp(&base.replace("\"c\"", "\"d\"")));
        assert_ne!(
            f0,
            fp(&base.replace(
                "\"type\":\"long\"",
                "\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}"
            ))
        );
    }

    #[test]
    fn recursive_schema_parses_and_fingerprints() {
        let s = Schema::parse_str(r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"]}]}"#).unwrap();
        assert!(s.describe(s.root()).contains("^1"));
    }

    #[test]
    fn field_diff_names_the_missing_column() {
        let v2 = Schema::parse_str(r#"{"type":"record","name":"V","fields":[{"name":"id","type":"long"},{"name":"currency","type":"string","default":"USD"}]}"#).unwrap();
        let v1 = Schema::parse_str(
            r#"{"type":"record","name":"V","fields":[{"name":"id","type":"long"}]}"#,
        )
        .unwrap();
        let d = Schema::field_diff(&v2, v2.root(), &v1, v1.root());
        assert_eq!(
            d,
            vec![FieldDiff::Missing {
                field: "currency".into(),
                expected: "string".into()
            }]
        );
    }

    /// Records `R0`..`Rn` in a root union, each `R{i}` with two fields of type `R{i-1}`: a
    /// text of a few hundred bytes whose expansion (what describe, fingerprint and the plan's
    /// identity check walk) doubles with every record.
    fn doubling(n: usize) -> String {
        let mut types = vec![
            r#"{"type":"record","name":"R0","fields":[{"name":"x","type":"long"}]}"#.to_string(),
        ];
        for i in 1..=n {
            types.push(format!(
                r#"{{"type":"record","name":"R{i}","fields":[{{"name":"a","type":"R{p}"}},{{"name":"b","type":"R{p}"}}]}}"#,
                p = i - 1
            ));
        }
        format!("[{}]", types.join(","))
    }

    #[test]
    fn a_schema_that_expands_exponentially_is_refused() {
        // The expansion is exponential: each record more doubles the description.
        let small = |n| {
            let s = Schema::parse_str(&doubling(n)).unwrap();
            s.describe(s.root()).len()
        };
        assert!(small(11) > 2 * small(10) - 100);
        assert!(small(10) > 2 * small(9) - 100);
        // With 40 records it is 2^40 types: refused at parse, not walked.
        let text = doubling(40);
        assert!(text.len() < 4_000);
        assert_eq!(
            Schema::parse_str(&text).unwrap_err(),
            SchemaError::TooLarge {
                limit: MAX_SCHEMA_NODES
            }
        );
        assert_eq!(
            Schema::parse_str(&text).unwrap_err().to_string(),
            "schema expands to more than 100000 types (named types referenced over and over)"
        );
    }

    #[test]
    fn a_schema_nested_too_deep_is_refused() {
        // A chain of references nests without nesting the JSON.
        let chain = |n: usize| {
            let mut types = vec![r#"{"type":"record","name":"C0","fields":[]}"#.to_string()];
            for i in 1..=n {
                types.push(format!(
                    r#"{{"type":"record","name":"C{i}","fields":[{{"name":"c","type":"C{p}"}}]}}"#,
                    p = i - 1
                ));
            }
            format!("[{}]", types.join(","))
        };
        assert!(Schema::parse_str(&chain(50)).is_ok());
        assert_eq!(
            Schema::parse_str(&chain(100)).unwrap_err(),
            SchemaError::TooDeep {
                limit: MAX_SCHEMA_DEPTH
            }
        );
        // So does JSON nested past the limit.
        let nested = format!(
            "{}\"long\"{}",
            r#"{"type":"array","items":"#.repeat(70),
            "}".repeat(70)
        );
        assert_eq!(
            Schema::parse_str(&nested).unwrap_err(),
            SchemaError::TooDeep {
                limit: MAX_SCHEMA_DEPTH
            }
        );
    }

    #[test]
    fn mutually_recursive_records_are_finite() {
        let s = Schema::parse_str(r#"{"type":"record","name":"A","fields":[{"name":"b","type":["null",{"type":"record","name":"B","fields":[{"name":"a","type":["null","A"]},{"name":"b","type":["null","B"]}]}]}]}"#).unwrap();
        assert_eq!(s.describe(s.root()), "{b:[null|{a:[null|^2],b:[null|^1]}]}");
    }

    #[test]
    fn errors_are_typed() {
        assert!(matches!(Schema::parse_str("{"), Err(SchemaError::Json(_))));
        assert_eq!(
            Schema::parse_str(r#""nope""#).unwrap_err(),
            SchemaError::UnknownType("nope".into())
        );
        assert_eq!(
            Schema::parse_str(r#"{"type":"record","name":"R"}"#).unwrap_err(),
            SchemaError::Missing("record", "fields")
        );
    }
}
