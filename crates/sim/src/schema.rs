//! The shop tables, their Avro schemas and how they are registered.
//!
//! The row (`Value`) and `Key` schemas live in `schemas/shop/*.avsc`, written with the
//! placeholder namespace `shop.<table>`; each stream gets them under its own namespace
//! `<stream>.shop.<table>` (as Debezium names records after its server), and the `Envelope` is
//! composed here around the row schema.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// The tables of the simulated shop database, in topic order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Customers,
    Products,
    Inventory,
    Carts,
    CartItems,
    Orders,
    Payments,
}

impl Table {
    pub const ALL: [Table; 7] = [
        Table::Customers,
        Table::Products,
        Table::Inventory,
        Table::Carts,
        Table::CartItems,
        Table::Orders,
        Table::Payments,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Customers => "customers",
            Table::Products => "products",
            Table::Inventory => "inventory",
            Table::Carts => "carts",
            Table::CartItems => "cart_items",
            Table::Orders => "orders",
            Table::Payments => "payments",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The newest row schema version of this table (only `orders` migrates).
    pub fn latest_version(self) -> u8 {
        if self == Table::Orders { 2 } else { 1 }
    }

    /// The row schema file's text for a version (1-based).
    pub fn row_avsc(self, version: u8) -> &'static str {
        match (self, version) {
            (Table::Customers, _) => include_str!("../../../schemas/shop/customers.avsc"),
            (Table::Products, _) => include_str!("../../../schemas/shop/products.avsc"),
            (Table::Inventory, _) => include_str!("../../../schemas/shop/inventory.avsc"),
            (Table::Carts, _) => include_str!("../../../schemas/shop/carts.avsc"),
            (Table::CartItems, _) => include_str!("../../../schemas/shop/cart_items.avsc"),
            (Table::Orders, 1) => include_str!("../../../schemas/shop/orders.avsc"),
            (Table::Orders, _) => include_str!("../../../schemas/shop/orders.v2.avsc"),
            (Table::Payments, _) => include_str!("../../../schemas/shop/payments.avsc"),
        }
    }

    pub fn key_avsc(self) -> &'static str {
        match self {
            Table::Customers => include_str!("../../../schemas/shop/customers.key.avsc"),
            Table::Products => include_str!("../../../schemas/shop/products.key.avsc"),
            Table::Inventory => include_str!("../../../schemas/shop/inventory.key.avsc"),
            Table::Carts => include_str!("../../../schemas/shop/carts.key.avsc"),
            Table::CartItems => include_str!("../../../schemas/shop/cart_items.key.avsc"),
            Table::Orders => include_str!("../../../schemas/shop/orders.key.avsc"),
            Table::Payments => include_str!("../../../schemas/shop/payments.key.avsc"),
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The Avro namespace of a stream's records for a table: `<stream>.shop.<table>`, with
/// characters Avro does not allow in names replaced by `_` (`replica-1` → `replica_1`).
pub fn stream_namespace(stream: &str, table: Table) -> String {
    let mut ns = String::with_capacity(stream.len() + 16);
    for part in stream.split('.') {
        if !ns.is_empty() {
            ns.push('.');
        }
        if part.starts_with(|c: char| c.is_ascii_digit()) || part.is_empty() {
            ns.push('_');
        }
        ns.extend(part.chars().map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        }));
    }
    ns.push_str(".shop.");
    ns.push_str(table.name());
    ns
}

/// Strips insignificant whitespace from JSON text, so schemas are registered compactly.
pub fn minify_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    out
}

fn with_namespace(avsc: &str, table: Table, namespace: &str) -> String {
    let text = minify_json(avsc);
    let placeholder = format!("\"namespace\":\"shop.{}\"", table.name());
    debug_assert_eq!(
        text.matches(&placeholder).count(),
        1,
        "{table} schema must name namespace shop.{table} once"
    );
    text.replacen(&placeholder, &format!("\"namespace\":\"{namespace}\""), 1)
}

/// The row (`Value`) schema of `table` at `version` for `stream`.
pub fn row_schema(stream: &str, table: Table, version: u8) -> String {
    with_namespace(
        table.row_avsc(version),
        table,
        &stream_namespace(stream, table),
    )
}

/// The `Key` schema of `table` for `stream`.
pub fn key_schema(stream: &str, table: Table) -> String {
    with_namespace(table.key_avsc(), table, &stream_namespace(stream, table))
}

/// Debezium's `source` block for the MySQL connector (with `lsn` for log-sequence positions).
pub const SOURCE_SCHEMA: &str = concat!(
    r#"{"type":"record","name":"Source","namespace":"io.debezium.connector.mysql","fields":["#,
    r#"{"name":"version","type":"string"},"#,
    r#"{"name":"connector","type":"string"},"#,
    r#"{"name":"name","type":"string"},"#,
    r#"{"name":"ts_ms","type":"long"},"#,
    r#"{"name":"snapshot","type":["null","string"],"default":null},"#,
    r#"{"name":"db","type":"string"},"#,
    r#"{"name":"table","type":["null","string"],"default":null},"#,
    r#"{"name":"server_id","type":"long"},"#,
    r#"{"name":"gtid","type":["null","string"],"default":null},"#,
    r#"{"name":"file","type":"string"},"#,
    r#"{"name":"pos","type":"long"},"#,
    r#"{"name":"row","type":"int"},"#,
    r#"{"name":"thread","type":["null","long"],"default":null},"#,
    r#"{"name":"query","type":["null","string"],"default":null},"#,
    r#"{"name":"lsn","type":["null","long"],"default":null}"#,
    r#"]}"#
);

/// Debezium's transaction metadata block.
pub const TRANSACTION_SCHEMA: &str = concat!(
    r#"{"type":"record","name":"block","namespace":"event","fields":["#,
    r#"{"name":"id","type":"string"},"#,
    r#"{"name":"total_order","type":"long"},"#,
    r#"{"name":"data_collection_order","type":"long"}"#,
    r#"]}"#
);

/// The Debezium `Envelope` schema of `table` at row version `version` for `stream`.
pub fn envelope_schema(stream: &str, table: Table, version: u8) -> String {
    let ns = stream_namespace(stream, table);
    let row = row_schema(stream, table, version);
    let mut s =
        String::with_capacity(row.len() + SOURCE_SCHEMA.len() + TRANSACTION_SCHEMA.len() + 400);
    s.push_str(r#"{"type":"record","name":"Envelope","namespace":""#);
    s.push_str(&ns);
    s.push_str(r#"","fields":[{"name":"before","type":["null","#);
    s.push_str(&row);
    s.push_str(r#"],"default":null},{"name":"after","type":["null","Value"],"default":null},"#);
    s.push_str(r#"{"name":"source","type":"#);
    s.push_str(SOURCE_SCHEMA);
    s.push_str(r#"},{"name":"op","type":"string"},{"name":"ts_ms","type":["null","long"],"default":null},"#);
    s.push_str(r#"{"name":"transaction","type":["null","#);
    s.push_str(TRANSACTION_SCHEMA);
    s.push_str(r#"],"default":null}]}"#);
    s
}

/// A schema as registered under a subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemaEntry {
    pub id: u32,
    pub subject: String,
    pub version: u32,
    pub schema: String,
}

/// The id and subject version a registry assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Registered {
    pub id: u32,
    pub version: u32,
}

/// Where the simulator gets schema ids from: a real registry in Kafka mode, [`OfflineRegistry`]
/// for captures.
pub trait SchemaRegistrar {
    /// Registers `schema` (Avro JSON) under `subject`, or finds it there, and returns its global
    /// id and its version within the subject.
    fn register(
        &mut self,
        subject: &str,
        schema: &str,
    ) -> Result<Registered, Box<dyn std::error::Error + Send + Sync>>;
}

/// An in-memory registry with Confluent semantics: ids are global and count from 1, the same
/// schema text gets the same id under every subject, versions count from 1 per subject, and
/// registering a schema a subject already has returns the existing version.
#[derive(Debug, Default)]
pub struct OfflineRegistry {
    ids: HashMap<String, u32>,
    subjects: BTreeMap<String, Vec<u32>>,
    next_id: u32,
}

impl OfflineRegistry {
    pub fn new() -> Self {
        OfflineRegistry {
            next_id: 1,
            ..Default::default()
        }
    }
}

impl SchemaRegistrar for OfflineRegistry {
    fn register(
        &mut self,
        subject: &str,
        schema: &str,
    ) -> Result<Registered, Box<dyn std::error::Error + Send + Sync>> {
        let id = match self.ids.get(schema) {
            Some(&id) => id,
            None => {
                let id = self.next_id.max(1);
                self.next_id = id + 1;
                self.ids.insert(schema.to_owned(), id);
                id
            }
        };
        let versions = self.subjects.entry(subject.to_owned()).or_default();
        let version = match versions.iter().position(|&v| v == id) {
            Some(i) => i + 1,
            None => {
                versions.push(id);
                versions.len()
            }
        };
        Ok(Registered {
            id,
            version: version as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_valid_avro_names() {
        assert_eq!(
            stream_namespace("primary", Table::Orders),
            "primary.shop.orders"
        );
        assert_eq!(
            stream_namespace("replica-2", Table::CartItems),
            "replica_2.shop.cart_items"
        );
        assert_eq!(stream_namespace("9x", Table::Carts), "_9x.shop.carts");
    }

    #[test]
    fn minify_keeps_strings() {
        assert_eq!(
            minify_json("{ \"a b\" : [ 1, \"c\\\" d\" ] }"),
            "{\"a b\":[1,\"c\\\" d\"]}"
        );
    }

    #[test]
    fn every_schema_parses_and_streams_differ_only_in_names() {
        for table in Table::ALL {
            for version in 1..=table.latest_version() {
                let p = envelope_schema("primary", table, version);
                let r = envelope_schema("replica-1", table, version);
                let v: serde_json::Value = serde_json::from_str(&p).unwrap();
                assert_eq!(v["namespace"], format!("primary.shop.{table}"));
                assert_eq!(p.replace("primary.shop", "replica_1.shop"), r);
            }
            let k: serde_json::Value =
                serde_json::from_str(&key_schema("replica-1", table)).unwrap();
            assert_eq!(k["name"], "Key");
            assert_eq!(k["namespace"], format!("replica_1.shop.{table}"));
        }
    }

    #[test]
    fn offline_registry_has_confluent_semantics() {
        let mut r = OfflineRegistry::new();
        assert_eq!(
            r.register("a-value", "S1").unwrap(),
            Registered { id: 1, version: 1 }
        );
        assert_eq!(
            r.register("b-value", "S1").unwrap(),
            Registered { id: 1, version: 1 }
        );
        assert_eq!(
            r.register("a-value", "S2").unwrap(),
            Registered { id: 2, version: 2 }
        );
        assert_eq!(
            r.register("a-value", "S1").unwrap(),
            Registered { id: 1, version: 1 }
        );
    }
}
