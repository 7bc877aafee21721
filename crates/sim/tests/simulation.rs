//! The simulator's output, read back with an independent Avro implementation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use apache_avro::types::Value;
use apache_avro::{Schema, from_avro_datum};
use cdc_verifier_sim::*;

struct Run {
    records: Vec<Record>,
    manifest: Manifest,
    topics: Vec<TopicInfo>,
    schemas: Vec<SchemaEntry>,
    header: CaptureHeader,
}

fn run(cfg: SimConfig) -> Run {
    let mut registry = OfflineRegistry::new();
    let mut sim = Simulation::new(cfg, &mut registry).unwrap();
    let header = sim.capture_header();
    let records: Vec<Record> = sim.by_ref().collect();
    Run {
        records,
        manifest: sim.manifest(),
        topics: sim.topics().to_vec(),
        schemas: sim.schemas().to_vec(),
        header,
    }
}

fn cfg(scenario: Scenario, events: u64) -> SimConfig {
    SimConfig {
        scenario,
        events,
        ..SimConfig::default()
    }
}

/// A decoded change event.
#[derive(Clone, Debug)]
struct Event {
    index: usize,
    topic: String,
    stream: String,
    table: Table,
    partition: u32,
    offset: i64,
    timestamp_ms: i64,
    key: serde_json::Value,
    schema_id: u32,
    /// None for a tombstone.
    envelope: Option<Vec<(String, Value)>>,
}

impl Event {
    fn field(&self, name: &str) -> &Value {
        field(self.envelope.as_ref().unwrap(), name)
    }
    fn op(&self) -> &str {
        match self.field("op") {
            Value::String(s) => s,
            v => panic!("op {v:?}"),
        }
    }
    fn source(&self, name: &str) -> &Value {
        match self.field("source") {
            Value::Record(f) => field(f, name),
            v => panic!("source {v:?}"),
        }
    }
    /// The origin position: the sequence of `source.gtid` (after its last `-` or `:`), or
    /// `source.lsn`. A snapshot read without either (Debezium's MySQL and MariaDB snapshots)
    /// stands before every transaction: 0.
    fn position(&self) -> u64 {
        match self.source("gtid") {
            Value::Union(1, g) => match &**g {
                Value::String(s) => s[s.rfind([':', '-']).unwrap() + 1..].parse().unwrap(),
                v => panic!("gtid {v:?}"),
            },
            _ => match self.source("lsn") {
                Value::Union(1, l) => match **l {
                    Value::Long(l) => l as u64,
                    ref v => panic!("lsn {v:?}"),
                },
                _ if self.op() == "r" => 0,
                v => panic!("no position: {v:?}"),
            },
        }
    }
    /// The `transaction` block, if the event has one.
    fn transaction(&self) -> Option<&Vec<(String, Value)>> {
        match self.field("transaction") {
            Value::Union(0, _) => None,
            Value::Union(1, tx) => match &**tx {
                Value::Record(f) => Some(f),
                v => panic!("transaction {v:?}"),
            },
            v => panic!("transaction {v:?}"),
        }
    }
    fn image(&self, name: &str) -> Option<&Vec<(String, Value)>> {
        match self.field(name) {
            Value::Union(0, _) => None,
            Value::Union(1, r) => match &**r {
                Value::Record(f) => Some(f),
                v => panic!("{name} {v:?}"),
            },
            v => panic!("{name} {v:?}"),
        }
    }
}

fn field<'a>(fields: &'a [(String, Value)], name: &str) -> &'a Value {
    &fields
        .iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no field {name}"))
        .1
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Long(l) => (*l).into(),
        Value::Int(i) => (*i).into(),
        Value::String(s) => s.clone().into(),
        v => panic!("key field {v:?}"),
    }
}

struct Decoded {
    events: Vec<Event>,
    /// (topic, partition, offset) of records that do not decode, with the error.
    undecodable: BTreeMap<(String, u32, i64), String>,
}

fn decode(run: &Run) -> Decoded {
    let schemas: HashMap<u32, Schema> = run
        .schemas
        .iter()
        .map(|s| (s.id, Schema::parse_str(&s.schema).unwrap()))
        .collect();
    let mut events = Vec::new();
    let mut undecodable = BTreeMap::new();
    for (index, r) in run.records.iter().enumerate() {
        let t = &run.topics[r.topic as usize];
        let key = r.key.as_ref().unwrap();
        assert_eq!(key[0], 0);
        let key_schema = &schemas[&u32::from_be_bytes(key[1..5].try_into().unwrap())];
        let key = match from_avro_datum(key_schema, &mut &key[5..], None).unwrap() {
            Value::Record(f) => {
                serde_json::Value::Object(f.iter().map(|(n, v)| (n.clone(), to_json(v))).collect())
            }
            v => panic!("key {v:?}"),
        };
        let (schema_id, envelope) = match &r.value {
            None => (0, None),
            Some(v) => {
                let decoded = (|| {
                    if v.len() < 5 || v[0] != 0 {
                        return Err("bad magic byte".to_string());
                    }
                    let id = u32::from_be_bytes(v[1..5].try_into().unwrap());
                    let schema = schemas.get(&id).ok_or(format!("unknown schema id {id}"))?;
                    let mut rest = &v[5..];
                    let value = from_avro_datum(schema, &mut rest, None)
                        .map_err(|e| format!("truncated: {e}"))?;
                    if !rest.is_empty() {
                        return Err(format!("{} trailing bytes", rest.len()));
                    }
                    match value {
                        Value::Record(f) => Ok((id, f)),
                        v => Err(format!("not a record: {v:?}")),
                    }
                })();
                match decoded {
                    Ok((id, f)) => (id, Some(f)),
                    Err(e) => {
                        undecodable.insert((t.name.clone(), r.partition, r.offset), e);
                        continue;
                    }
                }
            }
        };
        events.push(Event {
            index,
            topic: t.name.clone(),
            stream: t.stream.clone(),
            table: t.table,
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key,
            schema_id,
            envelope,
        });
    }
    Decoded {
        events,
        undecodable,
    }
}

fn fingerprint(run: &Run) -> u64 {
    // FNV-1a over everything a consumer would see.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h = (h ^ x as u64).wrapping_mul(0x100_0000_01b3);
        }
    };
    for r in &run.records {
        eat(&r.topic.to_le_bytes());
        eat(&r.partition.to_le_bytes());
        eat(&r.offset.to_le_bytes());
        eat(&r.timestamp_ms.to_le_bytes());
        eat(r.key.as_deref().unwrap_or(b"<null>"));
        eat(r.value.as_deref().unwrap_or(b"<null>"));
    }
    eat(serde_json::to_string(&run.manifest).unwrap().as_bytes());
    h
}

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    let a = run(cfg(Scenario::Faults, 20_000));
    let b = run(cfg(Scenario::Faults, 20_000));
    assert_eq!(a.records.len(), b.records.len());
    assert!(
        a.records == b.records,
        "records differ between runs of one seed"
    );
    assert_eq!(
        serde_json::to_string(&a.manifest).unwrap(),
        serde_json::to_string(&b.manifest).unwrap()
    );
    assert_eq!(fingerprint(&a), fingerprint(&b));
    let c = run(SimConfig {
        seed: 43,
        ..cfg(Scenario::Faults, 20_000)
    });
    assert_ne!(fingerprint(&a), fingerprint(&c));
}

#[test]
fn every_record_is_a_well_formed_debezium_event() {
    // Debezium's MariaDB defaults; MySQL GTIDs with transaction metadata; LSNs with
    // transaction metadata, replica topics with fewer partitions and ms commit times.
    let configs = [
        cfg(Scenario::Faults, 15_000),
        SimConfig {
            gtid_style: GtidStyle::MySql,
            transaction_metadata: true,
            ..cfg(Scenario::Faults, 15_000)
        },
        SimConfig {
            position: PositionKind::Lsn,
            transaction_metadata: true,
            replica_partitions: Some(3),
            whole_second_source_ts: false,
            ..cfg(Scenario::Faults, 15_000)
        },
    ];
    for config in configs {
        let (position, metadata) = (config.position, config.transaction_metadata);
        let run = run(config.clone());
        let d = decode(&run);
        let poison: Vec<_> = run.manifest.faults_of(FaultKind::Poison).collect();
        assert_eq!(
            d.undecodable.len(),
            poison.len(),
            "only poison records are undecodable: {:?}",
            d.undecodable
        );

        let mut next_offset: HashMap<(u16, u32), i64> = HashMap::new();
        let mut last_ts = i64::MIN;
        for r in &run.records {
            let o = next_offset.entry((r.topic, r.partition)).or_insert(0);
            assert_eq!(r.offset, *o, "offsets count from 0 per partition");
            *o += 1;
            assert!(
                r.timestamp_ms >= last_ts,
                "records come out in timestamp order"
            );
            last_ts = r.timestamp_ms;
            let key = r.key.as_ref().unwrap();
            let t = &run.topics[r.topic as usize];
            let want = if t.stream == "primary" {
                config.partitions
            } else {
                config.replica_partitions.unwrap_or(config.partitions)
            };
            assert_eq!(t.partitions, want, "{}", t.name);
            assert_eq!(
                r.partition,
                partition_for_key(key, t.partitions),
                "Kafka's default partitioner"
            );
        }
        // Snapshot reads, per stream: `first`, then per table `first_in_data_collection` …
        // `last_in_data_collection`, `true` between, and `last`, as Debezium writes them.
        let mut snapshot_flags: BTreeMap<&str, Vec<(Table, String)>> = BTreeMap::new();
        for e in d
            .events
            .iter()
            .filter(|e| e.envelope.is_some() && e.op() == "r")
        {
            let Value::Union(1, f) = e.source("snapshot") else {
                panic!("no snapshot flag")
            };
            let Value::String(f) = &**f else { panic!() };
            snapshot_flags
                .entry(e.stream.as_str())
                .or_default()
                .push((e.table, f.clone()));
        }
        assert_eq!(snapshot_flags.len(), 3);
        for (stream, reads) in &snapshot_flags {
            assert!(reads.len() > 100, "{stream}");
            let count = |f: &str| reads.iter().filter(|(_, x)| x == f).count();
            assert_eq!((count("first"), count("last")), (1, 1), "{stream}");
            assert_eq!(count("first_in_data_collection"), Table::ALL.len() - 1);
            assert_eq!(count("last_in_data_collection"), Table::ALL.len() - 1);
            assert_eq!(
                count("true") + 2 * Table::ALL.len(),
                reads.len(),
                "{stream}: every other read is `true`"
            );
            let first = reads.iter().find(|(_, f)| f == "first").unwrap();
            let last = reads.iter().find(|(_, f)| f == "last").unwrap();
            assert_eq!((first.0, last.0), (Table::Customers, Table::Payments));
        }

        let mut tables_seen = BTreeMap::new();
        for (i, e) in d.events.iter().enumerate() {
            let Some(env) = &e.envelope else {
                // A tombstone directly follows its delete in the same partition (or is redelivered).
                let prev = d.events[..i]
                    .iter()
                    .rev()
                    .find(|p| p.topic == e.topic && p.partition == e.partition)
                    .unwrap();
                assert_eq!(prev.key, e.key);
                assert!(prev.envelope.is_none() || prev.op() == "d");
                continue;
            };
            assert_eq!(
                env.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
                ["before", "after", "source", "op", "ts_ms", "transaction"]
            );
            let op = e.op().to_string();
            *tables_seen.entry((e.table, op.clone())).or_insert(0) += 1;
            let (before, after) = (e.image("before"), e.image("after"));
            match op.as_str() {
                "r" | "c" => assert!(before.is_none() && after.is_some()),
                "u" => assert!(before.is_some() && after.is_some()),
                "d" => assert!(before.is_some() && after.is_none()),
                other => panic!("op {other}"),
            }
            // The key is the row's primary key.
            let row = after.or(before).unwrap();
            for (k, v) in e.key.as_object().unwrap() {
                assert_eq!(&to_json(field(row, k)), v, "{}: key field {k}", e.topic);
            }
            if op != "r" {
                assert_eq!(
                    e.source("snapshot"),
                    &Value::Union(1, Box::new(Value::String("false".into())))
                );
            }
            // The origin server's id; 0 in a snapshot read.
            assert_eq!(
                e.source("server_id"),
                &Value::Long(if op == "r" { 0 } else { 1 })
            );
            assert_eq!(
                e.source("table"),
                &Value::Union(1, Box::new(Value::String(e.table.name().into())))
            );
            // The connector's processing time: the record's time, redelivered copies included.
            assert_eq!(
                e.field("ts_ms"),
                &Value::Union(1, Box::new(Value::Long(e.timestamp_ms))),
                "envelope ts_ms is the record time"
            );
            let Value::Long(commit) = e.source("ts_ms") else {
                panic!()
            };
            assert!(*commit < e.timestamp_ms, "emitted after the commit");
            if config.whole_second_source_ts {
                assert_eq!(commit % 1000, 0, "source.ts_ms in whole seconds");
            }
            let no_gtid = position == PositionKind::Lsn || op == "r";
            let gtid = match e.source("gtid") {
                Value::Union(0, _) => {
                    assert!(no_gtid, "gtid missing");
                    None
                }
                Value::Union(1, g) => {
                    assert!(!no_gtid, "{op}: a gtid");
                    let Value::String(g) = &**g else { panic!() };
                    let want = match config.gtid_style {
                        GtidStyle::MariaDb => "0-1-".to_string(),
                        GtidStyle::MySql => format!("{}:", run.manifest.server_uuid),
                    };
                    assert_eq!(g, &format!("{want}{}", e.position()));
                    assert_eq!(run.manifest.gtid_prefix, want);
                    Some(g.clone())
                }
                v => panic!("gtid {v:?}"),
            };
            match position {
                PositionKind::Gtid => {
                    assert_eq!(e.source("lsn"), &Value::Union(0, Box::new(Value::Null)))
                }
                // PostgreSQL's snapshot reads carry an lsn too.
                PositionKind::Lsn => assert!(matches!(e.source("lsn"), Value::Union(1, _))),
            }
            let Some(tx) = e.transaction() else {
                assert!(
                    !metadata || gtid.is_none() && position == PositionKind::Gtid,
                    "transaction block missing"
                );
                continue;
            };
            assert!(metadata, "a transaction block without transaction metadata");
            let Value::String(tx_id) = field(tx, "id") else {
                panic!()
            };
            match position {
                PositionKind::Gtid => {
                    assert_eq!(gtid.as_ref(), Some(tx_id), "transaction id is the gtid")
                }
                PositionKind::Lsn => assert!(tx_id.ends_with(&format!(":{}", e.position()))),
            }
            let (Value::Long(total), Value::Long(dco)) =
                (field(tx, "total_order"), field(tx, "data_collection_order"))
            else {
                panic!()
            };
            assert!(*total >= 1 && *dco >= 1 && dco <= total);
        }
        // Every table sees snapshot reads, inserts, updates; deletes where the shop deletes.
        for table in Table::ALL {
            for op in ["r", "c", "u"] {
                let n = tables_seen
                    .get(&(table, op.to_string()))
                    .copied()
                    .unwrap_or(0);
                assert!(
                    n > 0
                        || (table == Table::Products && op == "c")
                        || (table == Table::Inventory && op == "c"),
                    "no {op} on {table}"
                );
            }
        }
        for table in [Table::CartItems, Table::Carts] {
            assert!(
                tables_seen.contains_key(&(table, "d".to_string())),
                "no deletes on {table}"
            );
        }
    }
}

#[test]
fn events_of_one_transaction_share_a_position_and_positions_grow() {
    // Without transaction metadata (the default) the shared gtid is all that ties them.
    let plain = run(cfg(Scenario::Clean, 10_000));
    let d = decode(&plain);
    assert!(
        d.events
            .iter()
            .all(|e| e.envelope.is_none() || e.transaction().is_none())
    );
    let run = run(SimConfig {
        transaction_metadata: true,
        ..cfg(Scenario::Clean, 10_000)
    });
    let d2 = decode(&run);
    // The same events, with the block.
    assert_eq!(d.events.len(), d2.events.len());
    let d = d2;
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut by_position: BTreeMap<u64, Vec<&Event>> = BTreeMap::new();
    for e in d.events.iter().filter(|e| e.envelope.is_some()) {
        let p = e.position();
        // In a clean run a stream's positions never go back: a connector reads its log in order.
        let l = last.entry(e.stream.clone()).or_insert(0);
        assert!(p >= *l, "{} went from {l} to {p}", e.stream);
        *l = p;
        if e.stream == "primary" {
            by_position.entry(p).or_default().push(e);
        }
    }
    let multi_table = by_position.values().filter(|v| {
        let tables: std::collections::BTreeSet<_> = v.iter().map(|e| e.table).collect();
        tables.contains(&Table::Orders)
            && tables.contains(&Table::Payments)
            && tables.contains(&Table::Inventory)
            && tables.contains(&Table::CartItems)
    });
    assert!(
        multi_table.count() > 10,
        "orders touch orders, payments, inventory and cart_items in one transaction"
    );
    // Snapshot reads (position 0) belong to no transaction.
    for events in by_position.range(1..).map(|(_, v)| v) {
        let mut totals: Vec<i64> = events
            .iter()
            .map(|e| {
                let tx = e.transaction().unwrap();
                let Value::Long(t) = field(tx, "total_order") else {
                    panic!()
                };
                *t
            })
            .collect();
        totals.sort();
        assert_eq!(totals, (1..=totals.len() as i64).collect::<Vec<_>>());
    }
}

#[test]
fn clean_replicas_mirror_the_primary() {
    let run = run(cfg(Scenario::Clean, 10_000));
    assert!(run.manifest.faults.is_empty());
    let d = decode(&run);
    type Image = Option<Vec<(String, Value)>>;
    type Seen = (Table, String, u64, String, Image, Image);
    let mut per_stream: BTreeMap<String, Vec<Seen>> = BTreeMap::new();
    for e in d.events.iter().filter(|e| e.envelope.is_some()) {
        per_stream.entry(e.stream.clone()).or_default().push((
            e.table,
            e.key.to_string(),
            e.position(),
            e.op().to_string(),
            e.image("before").cloned(),
            e.image("after").cloned(),
        ));
    }
    let mut primary = per_stream.remove("primary").unwrap();
    primary.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    assert_eq!(per_stream.len(), 2);
    for (name, mut events) in per_stream {
        events.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
        assert!(primary == events, "{name} differs from the primary");
    }
}

/// The events of `stream` for `table` and `key`, in emission order.
fn key_history<'a>(
    d: &'a Decoded,
    stream: &str,
    table: &str,
    key: &serde_json::Value,
) -> Vec<&'a Event> {
    d.events
        .iter()
        .filter(|e| {
            e.stream == stream && e.table.name() == table && &e.key == key && e.envelope.is_some()
        })
        .collect()
}

#[test]
fn the_manifest_describes_every_fault() {
    let run = run(cfg(Scenario::Faults, 30_000));
    let m = &run.manifest;
    let d = decode(&run);
    let at = |f: &Fault| {
        let topic = f.topic.as_ref().unwrap();
        d.events.iter().find(|e| {
            &e.topic == topic && Some(e.partition) == f.partition && Some(e.offset) == f.offset
        })
    };
    for kind in FaultKind::ALL {
        let n = m.faults_of(kind).count();
        assert!(n >= 1, "no {} fault", kind.name());
    }
    let (lo, hi) = (m.snapshot_end_position, m.last_position);
    for f in &m.faults {
        assert_eq!(
            f.benign,
            matches!(f.kind, FaultKind::Duplicate | FaultKind::LatePartition),
            "{f:?}"
        );
        assert!(m.replicas.contains(&f.replica), "{f:?}");
        if !matches!(f.kind, FaultKind::Lag) {
            assert!(f.table.is_some(), "{f:?}");
        }
        if matches!(
            f.kind,
            FaultKind::Dropped
                | FaultKind::Corrupted
                | FaultKind::Extra
                | FaultKind::Reordered
                | FaultKind::SchemaDrift
                | FaultKind::Poison
        ) {
            assert!(f.key.is_some(), "{f:?}");
        }
        if f.kind != FaultKind::Poison {
            let p = f.position.unwrap_or_else(|| panic!("no position: {f:?}"));
            if f.kind != FaultKind::SchemaDrift {
                assert!(
                    p > lo + (hi - lo) / 20 && p < hi - (hi - lo) / 20,
                    "{f:?} too close to the start or end ({lo}..{hi})"
                );
            }
        }
    }
    let migration = m.migration.as_ref().unwrap();
    assert_eq!(migration.skipped_by, ["replica-2"]);

    for f in m.faults_of(FaultKind::Poison) {
        let key = (
            f.topic.clone().unwrap(),
            f.partition.unwrap(),
            f.offset.unwrap(),
        );
        let err = &d.undecodable[&key];
        let detail = f.detail.as_ref().unwrap();
        let expected = if detail.starts_with("bad magic") {
            "bad magic"
        } else if detail.starts_with("unknown schema id") {
            "unknown schema id"
        } else {
            "truncated"
        };
        assert!(err.starts_with(expected), "{detail}: {err}");
    }
    for f in m.faults_of(FaultKind::Dropped) {
        let (table, key, p) = (
            f.table.as_deref().unwrap(),
            f.key.as_ref().unwrap(),
            f.position.unwrap(),
        );
        let primary = key_history(&d, "primary", table, key);
        assert!(
            primary.iter().any(|e| e.position() == p && e.op() == "u"),
            "{f:?}"
        );
        let replica = key_history(&d, &f.replica, table, key);
        assert!(
            !replica.iter().any(|e| e.position() == p),
            "{f:?}: the replica emitted the dropped update"
        );
        // The next update carries the replica's own (stale) before image.
        let stale = primary
            .iter()
            .rev()
            .find(|e| e.position() < p)
            .and_then(|e| e.image("after"));
        if let Some(next) = replica.iter().find(|e| e.position() > p) {
            assert_eq!(next.image("before"), stale, "{f:?}");
        }
    }
    for f in m.faults_of(FaultKind::Corrupted) {
        let e = at(f).unwrap();
        assert_eq!(&e.key, f.key.as_ref().unwrap());
        assert_eq!(e.position(), f.position.unwrap());
        let primary = key_history(&d, "primary", e.table.name(), &e.key);
        let p = primary
            .iter()
            .find(|p| p.position() == e.position())
            .unwrap();
        assert_ne!(p.image("after"), e.image("after"), "{f:?}");
        let replica = key_history(&d, &f.replica, e.table.name(), &e.key);
        if let Some(next) = replica.iter().find(|n| n.position() > e.position()) {
            assert_eq!(
                next.image("before"),
                e.image("after"),
                "later events carry the corrupted before image"
            );
        }
    }
    for f in m.faults_of(FaultKind::Extra) {
        let e = at(f).unwrap();
        assert_eq!(e.op(), "c");
        assert_eq!(&e.key, f.key.as_ref().unwrap());
        assert_eq!(e.position(), f.position.unwrap());
        assert!(
            key_history(&d, "primary", e.table.name(), &e.key).is_empty(),
            "the primary never wrote it"
        );
        assert!(
            d.events.iter().any(|p| p.stream == "primary"
                && p.envelope.is_some()
                && p.position() == e.position()),
            "a position of a real transaction"
        );
    }
    for f in m.faults_of(FaultKind::Reordered) {
        let e = at(f).unwrap();
        let (p1, p2) = (f.position.unwrap(), f.other_position.unwrap());
        assert!(p1 < p2);
        let replica = key_history(&d, &f.replica, e.table.name(), &e.key);
        let i = replica.iter().position(|x| x.position() == p2).unwrap();
        assert_eq!(
            replica[i + 1].position(),
            p1,
            "the later update is emitted first"
        );
        assert_eq!(replica[i + 1].offset, e.offset);
        let primary = key_history(&d, "primary", e.table.name(), &e.key);
        let last_primary = primary.iter().rev().find(|x| x.position() <= p2).unwrap();
        assert_ne!(
            replica[i + 1].image("after"),
            last_primary.image("after"),
            "the replica ends with the wrong row"
        );
    }
    for f in m.faults_of(FaultKind::Duplicate) {
        let topic = f.topic.as_ref().unwrap();
        let part: Vec<&Event> = d
            .events
            .iter()
            .filter(|e| &e.topic == topic && Some(e.partition) == f.partition)
            .collect();
        let start = part
            .iter()
            .position(|e| Some(e.offset) == f.offset)
            .unwrap();
        let n = f.count.unwrap() as usize;
        let copies = &part[start..start + n];
        // Debezium redelivers the same key, before, after and source (and op, transaction);
        // only the envelope's ts_ms, its processing time, is the later one of the copy.
        let identity = |e: &Event| {
            let fields = e.envelope.as_ref().map(|env| {
                env.iter()
                    .filter(|(name, _)| name != "ts_ms")
                    .cloned()
                    .collect::<Vec<_>>()
            });
            (e.key.clone(), fields)
        };
        let originals_at = part
            .iter()
            .position(|e| identity(e) == identity(copies[0]))
            .unwrap();
        assert!(originals_at < start);
        for (o, c) in part[originals_at..originals_at + n].iter().zip(copies) {
            assert_eq!(identity(o), identity(c), "identical redelivery");
            assert!(c.timestamp_ms > o.timestamp_ms, "sent again later");
            if c.envelope.is_some() {
                assert_eq!(
                    c.field("ts_ms"),
                    &Value::Union(1, Box::new(Value::Long(c.timestamp_ms))),
                    "the copy's ts_ms is when it was sent again"
                );
            }
        }
        assert_eq!(copies[0].timestamp_ms, f.timestamp_ms.unwrap());
    }
    for f in m.faults_of(FaultKind::Lag) {
        let (from, until) = (f.position.unwrap(), f.until_position.unwrap());
        for e in d
            .events
            .iter()
            .filter(|e| e.stream == f.replica && e.envelope.is_some())
        {
            let p = e.position();
            if p >= from && p <= until {
                let Value::Long(commit) = e.source("ts_ms") else {
                    panic!()
                };
                assert!(
                    e.timestamp_ms >= commit + LAG_DELAY_MS,
                    "lagging records are late"
                );
            }
        }
    }
    for f in m.faults_of(FaultKind::Silent) {
        let table = f.table.as_deref().unwrap();
        let from = f.position.unwrap();
        assert!(!d.events.iter().any(|e| e.stream == f.replica
            && e.table.name() == table
            && e.envelope.is_some()
            && e.position() >= from));
        assert!(d.events.iter().any(|e| e.stream == "primary"
            && e.table.name() == table
            && e.envelope.is_some()
            && e.position() >= from));
    }
    for f in m.faults_of(FaultKind::LatePartition) {
        assert!(
            f.partition.is_some()
                && f.topic.is_some()
                && f.delay_ms == Some(LATE_PARTITION_DELAY_MS)
        );
    }
}

#[test]
fn the_incident_replica_keeps_writing_schema_v1() {
    let run = run(cfg(Scenario::Incident, 30_000));
    let m = &run.manifest;
    let mig = m.migration.as_ref().unwrap();
    let at_1545 = time::parse_utc("2024-08-14T15:45:00Z").unwrap();
    assert!(
        mig.timestamp_ms >= at_1545 && mig.timestamp_ms < at_1545 + 100,
        "migration at 15:45 UTC"
    );
    assert!(
        m.start_timestamp_ms < at_1545 && m.start_timestamp_ms >= at_1545 - 120_000,
        "clock starts shortly before"
    );
    assert!(
        m.faults
            .iter()
            .all(|f| f.kind == FaultKind::SchemaDrift && f.replica == "replica-2")
    );
    let version = |id: u32| run.schemas.iter().find(|s| s.id == id).unwrap().version;
    let d = decode(&run);
    let orders: Vec<&Event> = d
        .events
        .iter()
        .filter(|e| e.table == Table::Orders && e.envelope.is_some())
        .collect();
    for e in &orders {
        let after_migration = e.position() > mig.position;
        let want = if after_migration && e.stream != "replica-2" {
            2
        } else {
            1
        };
        assert_eq!(
            version(e.schema_id),
            want,
            "{} at {}",
            e.stream,
            e.position()
        );
        let row = e.image("after").or(e.image("before")).unwrap();
        assert_eq!(row.iter().any(|(n, _)| n == "currency"), want == 2);
    }
    let first = &m.faults[0];
    assert!(first.detail.as_deref().unwrap().contains("v1"));
    let first_drifted = orders
        .iter()
        .filter(|e| e.stream == "replica-2" && e.position() > mig.position)
        .min_by_key(|e| e.index)
        .unwrap();
    assert_eq!(
        (first.position, first.key.as_ref()),
        (Some(first_drifted.position()), Some(&first_drifted.key))
    );
    let lost: Vec<&Fault> = m.faults[1..].iter().collect();
    assert!(!lost.is_empty());
    for f in lost {
        assert!(
            f.detail
                .as_deref()
                .unwrap()
                .starts_with("value lost to outdated schema")
        );
        let primary = orders
            .iter()
            .find(|e| {
                e.stream == "primary"
                    && e.position() == f.position.unwrap()
                    && Some(&e.key) == f.key.as_ref()
            })
            .unwrap();
        let currency =
            |img: Option<&Vec<(String, Value)>>| img.map(|r| field(r, "currency").clone());
        let usd = Some(Value::String("USD".into()));
        assert!(
            currency(primary.image("after")) != usd || currency(primary.image("before")) != usd,
            "{f:?}"
        );
    }
    // The primary writes other currencies after the migration.
    let eur = ("currency".to_string(), Value::String("EUR".into()));
    assert!(
        orders
            .iter()
            .any(|e| e.stream == "primary" && e.image("after").is_some_and(|r| r.contains(&eur)))
    );
}

#[test]
fn captures_round_trip() {
    let run = run(cfg(Scenario::Faults, 10_000));
    let mut w = CaptureWriter::new(Vec::new(), &run.header).unwrap();
    for r in &run.records {
        w.write(&r.as_ref()).unwrap();
    }
    let bytes = w.finish().unwrap();
    let mut reader = CaptureReader::new(&bytes[..]).unwrap();
    assert_eq!(reader.header(), &run.header);
    assert_eq!(reader.header().schemas, run.schemas);
    for r in &run.records {
        assert_eq!(reader.next_record().unwrap().unwrap(), r.as_ref());
    }
    assert!(reader.next_record().unwrap().is_none());
}

#[test]
fn each_topic_frames_keys_with_its_own_key_schema_so_partitions_differ_per_side() {
    let run = run(SimConfig {
        replica_partitions: Some(3),
        ..cfg(Scenario::Clean, 10_000)
    });
    assert_eq!(
        (run.manifest.partitions, run.manifest.replica_partitions),
        (8, 3)
    );
    // One key schema per topic, named after it (`<stream>.shop.<table>.Key`), with its own id.
    let mut key_ids: BTreeMap<String, u32> = BTreeMap::new();
    for s in run.schemas.iter().filter(|s| s.subject.ends_with("-key")) {
        let topic = s.subject.trim_end_matches("-key");
        let v: serde_json::Value = serde_json::from_str(&s.schema).unwrap();
        assert_eq!(v["name"], "Key");
        assert_eq!(
            v["namespace"].as_str().unwrap(),
            topic.replace('-', "_"),
            "{topic}"
        );
        key_ids.insert(topic.to_string(), s.id);
    }
    assert_eq!(key_ids.len(), 21);
    let distinct: std::collections::BTreeSet<_> = key_ids.values().collect();
    assert_eq!(distinct.len(), 21, "every topic has its own key schema id");
    // Every record's key is framed with its topic's id; a key's partition is its own per side.
    let mut placed: HashMap<(Table, String), BTreeMap<String, u32>> = HashMap::new();
    for r in &run.records {
        let t = &run.topics[r.topic as usize];
        let key = r.key.as_ref().unwrap();
        assert_eq!(
            u32::from_be_bytes(key[1..5].try_into().unwrap()),
            key_ids[&t.name]
        );
        placed
            .entry((t.table, format!("{:?}", &key[5..])))
            .or_default()
            .insert(t.stream.clone(), r.partition);
    }
    let (mut keys, mut same) = (0, 0);
    for sides in placed.values() {
        let (Some(p), Some(r1), Some(r2)) = (
            sides.get("primary"),
            sides.get("replica-1"),
            sides.get("replica-2"),
        ) else {
            continue;
        };
        assert!(*p < 8 && *r1 < 3 && *r2 < 3);
        keys += 1;
        same += usize::from(p == r1);
    }
    assert!(keys > 1_000, "{keys}");
    assert!(
        same * 2 < keys,
        "{same} of {keys} keys in the same partition number on both sides"
    );
}

#[test]
fn late_connectors_produce_long_after_the_commits_and_catch_up() {
    // Every connector an hour late: record times far from commit times on all sides alike.
    let hour = 3_600_000;
    let late = run(SimConfig {
        connector_delay_ms: hour,
        ..cfg(Scenario::Faults, 10_000)
    });
    let base = run(cfg(Scenario::Faults, 10_000));
    assert_eq!(late.records.len(), base.records.len());
    let delays = &late.manifest.connector_delays;
    assert_eq!(delays.len(), 3);
    assert!(
        delays
            .iter()
            .all(|d| d.delay_ms == hour && d.caught_up_position.is_none())
    );
    let d = decode(&late);
    let mut last_ts = i64::MIN;
    for r in &late.records {
        assert!(r.timestamp_ms >= last_ts, "records in timestamp order");
        last_ts = r.timestamp_ms;
        assert!(r.timestamp_ms >= late.manifest.start_timestamp_ms + hour);
    }
    for e in d.events.iter().filter(|e| e.envelope.is_some()) {
        let Value::Long(commit) = e.source("ts_ms") else {
            panic!()
        };
        assert!(e.timestamp_ms - commit > hour - 60_000, "{e:?}");
    }
    // The same events and faults, only later.
    let strip = |m: &Manifest| {
        m.faults
            .iter()
            .map(|f| (f.kind, f.replica.clone(), f.key.clone(), f.position))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&late.manifest), strip(&base.manifest));

    // The replicas' connectors 1 s later than the primary's: they catch up within the run.
    let run = run(SimConfig {
        replica_connector_delay_ms: 1_000,
        ..cfg(Scenario::Clean, 60_000)
    });
    let delays = &run.manifest.connector_delays;
    assert_eq!(
        delays.iter().map(|d| d.stream.as_str()).collect::<Vec<_>>(),
        ["replica-1", "replica-2"]
    );
    let d = decode(&run);
    for cd in delays {
        let caught_up = cd.caught_up_position.expect("caught up within the run");
        let (mut early, mut after) = (0, 0);
        for e in d
            .events
            .iter()
            .filter(|e| e.stream == cd.stream && e.envelope.is_some())
        {
            let Value::Long(commit) = e.source("ts_ms") else {
                panic!()
            };
            let behind = e.timestamp_ms - commit;
            if e.position() < 100 {
                assert!(behind >= 500, "{}: {behind} ms", cd.stream);
                early += 1;
            } else if e.position() > caught_up {
                assert!(behind < 1_100, "{}: {behind} ms", cd.stream);
                after += 1;
            }
        }
        assert!(early > 0 && after > 1_000, "{early} {after}");
        assert!(cd.caught_up_timestamp_ms.unwrap() > run.manifest.start_timestamp_ms + 1_000);
    }
}

#[test]
fn a_failover_switches_every_streams_gtids_to_a_new_server_counting_from_one() {
    let run = run(SimConfig {
        gtid_style: GtidStyle::MySql,
        failover_at: Some(4_000),
        ..cfg(Scenario::Clean, 10_000)
    });
    let m = &run.manifest;
    let failovers: Vec<&Fault> = m.faults_of(FaultKind::Failover).collect();
    assert_eq!(failovers.len(), 1);
    assert!(failovers[0].benign, "a failover is not a divergence");
    assert_eq!(failovers[0].position, Some((1 << 40) | 1));
    assert_eq!(m.faults.len(), 1);
    let d = decode(&run);
    // Per stream: the GTIDs of its changes, as (server uuid, sequence).
    let mut per_stream: BTreeMap<String, BTreeSet<(String, u64)>> = BTreeMap::new();
    for e in d.events.iter().filter(|e| e.envelope.is_some()) {
        let Value::Union(1, g) = e.source("gtid") else {
            continue;
        };
        let Value::String(g) = &**g else { panic!() };
        let (uuid, seq) = g.split_once(':').expect("uuid:seq");
        assert_eq!(uuid.len(), 36, "{g}");
        per_stream
            .entry(e.stream.clone())
            .or_default()
            .insert((uuid.to_string(), seq.parse().unwrap()));
    }
    let primary = per_stream.remove("primary").unwrap();
    let new: Vec<u64> = primary
        .iter()
        .filter(|(u, _)| *u != m.server_uuid)
        .map(|(_, s)| *s)
        .collect();
    let old_last = primary
        .iter()
        .filter(|(u, _)| *u == m.server_uuid)
        .map(|(_, s)| *s)
        .max()
        .unwrap();
    assert!(old_last > 100 && new.len() > 100);
    assert_eq!(new.iter().min(), Some(&1), "the new server counts from 1");
    for (name, gtids) in per_stream {
        assert_eq!(gtids, primary, "{name} carries the primary's GTIDs");
    }
}
