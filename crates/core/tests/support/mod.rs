//! Test fixtures: Debezium envelopes of a small `orders` table, encoded by hand, with a v1
//! and a v2 (added `currency` with default "USD") row schema.
#![allow(dead_code)]

pub mod harness;

use cdc_verifier_core::avro::reader::write_long;
use cdc_verifier_core::source::MemorySource;
use cdc_verifier_core::wire;

pub const GTID_UUID: &str = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

/// The row schema fields of `orders`, v1 or v2.
pub fn row_fields(v2: bool) -> String {
    let mut f = String::from(
        r#"{"name":"id","type":"long"},
           {"name":"status","type":"string"},
           {"name":"total","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
           {"name":"note","type":["null","string"],"default":null},
           {"name":"created_at","type":{"type":"long","logicalType":"timestamp-millis"}}"#,
    );
    if v2 {
        f.push_str(r#",{"name":"currency","type":"string","default":"USD"}"#);
    }
    f
}

/// A Debezium envelope schema for `orders` named after `server` (as Debezium names records).
pub fn envelope_schema(server: &str, v2: bool) -> String {
    let ns = format!("{}.shop.orders", server.replace('-', "_"));
    format!(
        r#"{{"type":"record","name":"Envelope","namespace":"{ns}","fields":[
            {{"name":"before","type":["null",{{"type":"record","name":"Value","fields":[{}]}}],"default":null}},
            {{"name":"after","type":["null","Value"],"default":null}},
            {{"name":"source","type":{{"type":"record","name":"Source","namespace":"io.debezium.connector.mysql","fields":[
                {{"name":"version","type":"string"}},
                {{"name":"ts_ms","type":"long"}},
                {{"name":"gtid","type":["null","string"],"default":null}},
                {{"name":"pos","type":"long"}}]}}}},
            {{"name":"op","type":"string"}},
            {{"name":"ts_ms","type":["null","long"],"default":null}},
            {{"name":"transaction","type":["null",{{"type":"record","name":"block","namespace":"event","fields":[
                {{"name":"id","type":"string"}},{{"name":"total_order","type":"long"}},{{"name":"data_collection_order","type":"long"}}]}}],"default":null}}
        ]}}"#,
        row_fields(v2)
    )
}

pub fn key_schema(server: &str) -> String {
    format!(
        r#"{{"type":"record","name":"Key","namespace":"{}.shop.orders","fields":[{{"name":"id","type":"long"}}]}}"#,
        server.replace('-', "_")
    )
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: i64,
    pub status: String,
    pub total_cents: i64,
    pub note: Option<String>,
    pub created_at: i64,
    pub currency: String,
}

impl Row {
    pub fn new(id: i64, status: &str, total_cents: i64) -> Row {
        Row {
            id,
            status: status.into(),
            total_cents,
            note: None,
            created_at: 1_723_650_000_000 + id,
            currency: "USD".into(),
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    write_long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

fn put_decimal(out: &mut Vec<u8>, v: i64) {
    let be = (v as i128).to_be_bytes();
    let mut i = 0;
    while i + 1 < be.len()
        && ((be[i] == 0 && be[i + 1] & 0x80 == 0) || (be[i] == 0xff && be[i + 1] & 0x80 != 0))
    {
        i += 1;
    }
    write_long(out, (be.len() - i) as i64);
    out.extend_from_slice(&be[i..]);
}

pub fn encode_row(out: &mut Vec<u8>, r: &Row, v2: bool) {
    write_long(out, r.id);
    put_str(out, &r.status);
    put_decimal(out, r.total_cents);
    match &r.note {
        None => write_long(out, 0),
        Some(n) => {
            write_long(out, 1);
            put_str(out, n);
        }
    }
    write_long(out, r.created_at);
    if v2 {
        put_str(out, &r.currency);
    }
}

#[derive(Debug, Clone)]
pub struct Change {
    pub op: &'static str,
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub tx: u64,
    pub order: i64,
    pub ts_ms: i64,
}

impl Change {
    pub fn key(&self) -> i64 {
        self.after
            .as_ref()
            .or(self.before.as_ref())
            .map(|r| r.id)
            .unwrap_or(0)
    }
}

pub fn encode_envelope(c: &Change, v2: bool) -> Vec<u8> {
    encode_envelope_at(c, v2, &format!("{GTID_UUID}:{}", c.tx))
}

/// [`encode_envelope`] with `source.gtid` = `gtid` (the change's `tx` ignored).
pub fn encode_envelope_at(c: &Change, v2: bool, gtid: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    for img in [&c.before, &c.after] {
        match img {
            None => write_long(&mut out, 0),
            Some(r) => {
                write_long(&mut out, 1);
                encode_row(&mut out, r, v2);
            }
        }
    }
    put_str(&mut out, "2.7.0.Final");
    write_long(&mut out, c.ts_ms);
    write_long(&mut out, 1);
    put_str(&mut out, gtid);
    write_long(&mut out, 4242);
    put_str(&mut out, c.op);
    write_long(&mut out, 1);
    write_long(&mut out, c.ts_ms + 3);
    write_long(&mut out, 1);
    put_str(&mut out, gtid);
    write_long(&mut out, c.order);
    write_long(&mut out, c.order);
    out
}

pub fn encode_key(id: i64) -> Vec<u8> {
    let mut out = Vec::new();
    write_long(&mut out, id);
    out
}

/// Registered schema ids of one stream's `orders` topic.
#[derive(Debug, Clone, Copy)]
pub struct Ids {
    pub key: u32,
    pub v1: u32,
    pub v2: u32,
}

pub fn register(src: &mut MemorySource, stream: &str) -> Ids {
    register_table(src, stream, "orders")
}

/// Registers the `orders` schemas under another table's subjects (a second table of the
/// same shape).
pub fn register_table(src: &mut MemorySource, stream: &str, table: &str) -> Ids {
    let topic = format!("{stream}.shop.{table}");
    Ids {
        key: src.register(&format!("{topic}-key"), &key_schema(stream)),
        v1: src.register(&format!("{topic}-value"), &envelope_schema(stream, false)),
        v2: src.register(&format!("{topic}-value"), &envelope_schema(stream, true)),
    }
}

/// A wire-format (key, value) pair for a change.
pub fn wire_pair(ids: &Ids, c: &Change, v2: bool) -> (Vec<u8>, Vec<u8>) {
    wire_pair_at(ids, c, v2, &format!("{GTID_UUID}:{}", c.tx))
}

/// [`wire_pair`] with `source.gtid` = `gtid`.
pub fn wire_pair_at(ids: &Ids, c: &Change, v2: bool, gtid: &str) -> (Vec<u8>, Vec<u8>) {
    let mut k = Vec::new();
    wire::frame(ids.key, &encode_key(c.key()), &mut k);
    let mut v = Vec::new();
    wire::frame(
        if v2 { ids.v2 } else { ids.v1 },
        &encode_envelope_at(c, v2, gtid),
        &mut v,
    );
    (k, v)
}

/// A plausible history: inserts, then updates and deletes, one change per transaction,
/// `per_ms` transactions per millisecond of origin time.
pub fn history(n: usize, keys: i64, seed: u64) -> Vec<Change> {
    let mut state: std::collections::BTreeMap<i64, Row> = Default::default();
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let tx = 1000 + i as u64;
        let ts_ms = 1_723_650_000_000 + (i as i64) * 2;
        let id = (rnd() % keys as u64) as i64 + 1;
        let c = match state.get(&id).cloned() {
            None => {
                let r = Row::new(id, "placed", (rnd() % 100_000) as i64);
                state.insert(id, r.clone());
                Change {
                    op: "c",
                    before: None,
                    after: Some(r),
                    tx,
                    order: 1,
                    ts_ms,
                }
            }
            Some(old) if rnd() % 10 == 0 => {
                state.remove(&id);
                Change {
                    op: "d",
                    before: Some(old),
                    after: None,
                    tx,
                    order: 1,
                    ts_ms,
                }
            }
            Some(old) => {
                let mut new = old.clone();
                new.status =
                    ["paid", "shipped", "delivered", "refunded"][(rnd() % 4) as usize].into();
                new.total_cents = (rnd() % 100_000) as i64;
                if rnd() % 3 == 0 {
                    new.note = Some(format!("note {}", rnd() % 1000));
                }
                state.insert(id, new.clone());
                Change {
                    op: "u",
                    before: Some(old),
                    after: Some(new),
                    tx,
                    order: 1,
                    ts_ms,
                }
            }
        };
        out.push(c);
    }
    out
}
