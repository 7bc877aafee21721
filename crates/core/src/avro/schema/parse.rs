//! Parsing a schema's JSON into a [`Schema`]'s arena — names resolved against their
//! namespaces, logical types kept where the underlying type fits them — and the bounds a
//! parsed schema must keep: [`MAX_SCHEMA_DEPTH`] and [`MAX_SCHEMA_NODES`].

use std::collections::HashMap;

use serde_json::Value as Json;

use super::{
    Field, Logical, MAX_SCHEMA_DEPTH, MAX_SCHEMA_NODES, Node, NodeId, Schema, SchemaError,
};

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
