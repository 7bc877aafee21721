//! The structural form of a type — field names, types, logical types, enum symbols and
//! defaults, never record names or namespaces — as text for drift reports and hashed into
//! a fingerprint.

use std::fmt;

use super::{Logical, Node, NodeId, Schema};

impl Schema {
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
