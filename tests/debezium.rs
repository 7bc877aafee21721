//! The verifier on real change streams: a MariaDB primary and its GTID replica, both captured
//! by Debezium's MariaDB connector (default settings, Avro in the Confluent wire format) in a
//! Kafka Connect worker, into the real broker and registry — all started by the project's own
//! scripts (scripts/mariadb, scripts/debezium) on top of scripts/services.
//!
//! One story, in order, with a live verifier running throughout and a second one catching up
//! on all of it afterwards:
//! 1. clean: a seeded database (taken by the initial snapshot), then multi-statement,
//!    multi-table transactions of inserts, updates and deletes: no verdict at all;
//! 2. a connector killed mid-stream and restarted (Debezium delivers again): no verdict;
//! 3. a silent tamper on the replica (`sql_log_bin=0`), then a primary update of that row:
//!    DataMismatch on that key;
//! 4. a replica stopped for longer than the lag bound: ReplicaLag, then Recovered;
//! 5. the incident: the replica skips the primary's `ALTER TABLE orders ADD COLUMN currency`
//!    and replicates on with the outdated schema: one SchemaDrift naming the column and the
//!    first GTID after the ALTER; DataMismatch only on orders; `replay` names exactly the keys
//!    a SQL comparison of the two databases finds different.

mod support;

use support::cdc::{self, besides, is_outage, opt, unrecovered};

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::Consumer;
use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_cdc-verifier");
const TABLES: [&str; 3] = ["customers", "orders", "order_items"];
/// The verifier's lag bound in this test, and how long the replica is stopped.
const MAX_LAG_MS: u64 = 2000;
const STOPPED: Duration = Duration::from_secs(6);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs one of the project's scripts; panics with its output when it fails.
fn script(name: &str, args: &[&str]) {
    cdc::script(name, args, &[]);
}

/// Runs SQL on `server` (primary or replica); returns the rows, tab-separated.
fn sql(server: &str, text: &str) -> String {
    let mut child = Command::new(root().join("scripts/mariadb"))
        .args(["sql", server, "-N", "-B"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "SQL on {server} failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The sequence number of the primary's last GTID.
fn primary_gtid() -> u64 {
    let pos = sql("primary", "SELECT @@gtid_binlog_pos;");
    pos.trim().rsplit('-').next().unwrap().parse().unwrap()
}

/// Waits until the replica has applied everything the primary wrote.
fn wait_replicated() {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = sql("primary", "SELECT @@gtid_binlog_pos;");
        let r = sql("replica", "SELECT @@gtid_slave_pos;");
        if p.trim() == r.trim() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not catch up: {p} vs {r}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn cdc_topics() -> Vec<String> {
    ["primary", "replica"]
        .iter()
        .flat_map(|s| TABLES.iter().map(move |t| format!("{s}.shop.{t}")))
        .collect()
}

/// Waits until both connectors have written what the databases hold: the replica caught up
/// and the topics' end offsets unchanged for 3 s.
fn wait_captured() {
    wait_replicated();
    cdc::wait_stable(&cdc_topics());
}

/// The workload: deterministic multi-statement, multi-table transactions over the seeded
/// rows (customers 1..=60, orders 1000.., items (order, line)).
struct Workload {
    next_order: i64,
    rng: u64,
}

impl Workload {
    fn rand(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    /// `n` transactions; `currency`: orders have the column (after the ALTER).
    fn transactions(&mut self, n: usize, currency: bool) -> String {
        let mut s = String::from("USE shop;\n");
        for _ in 0..n {
            let customer = 1 + self.rand(60);
            let order = self.next_order;
            self.next_order += 1;
            s.push_str("START TRANSACTION;\n");
            match self.rand(4) {
                0 => s.push_str(&format!(
                    "UPDATE customers SET name = CONCAT('Kund ', {customer}, ' ', {}) WHERE id = {customer};\n",
                    self.rand(1000)
                )),
                1 => s.push_str(&format!(
                    "UPDATE orders SET status = 'shipped' WHERE customer_id = {customer} AND status = 'paid';\n"
                )),
                2 => s.push_str(&format!(
                    "DELETE FROM order_items WHERE order_id = (SELECT MIN(id) FROM orders WHERE customer_id = {customer});\n"
                )),
                _ => {}
            }
            let total = 10 + self.rand(500);
            let cur = if currency {
                if self.rand(3) == 0 {
                    ", 'EUR'"
                } else {
                    ", 'USD'"
                }
            } else {
                ""
            };
            s.push_str(&format!(
                "INSERT INTO orders VALUES ({order}, {customer}, 'new', {total}.{:02}, '2025-06-01 10:00:00.{:03}'{cur});\n",
                self.rand(100),
                self.rand(1000)
            ));
            for line in 1..=1 + self.rand(3) {
                s.push_str(&format!(
                    "INSERT INTO order_items VALUES ({order}, {line}, 'SKU-{:04}', {}, {}.99);\n",
                    self.rand(10_000),
                    1 + self.rand(5),
                    self.rand(100)
                ));
            }
            s.push_str(&format!(
                "UPDATE orders SET status = 'paid' WHERE id = {order};\n"
            ));
            s.push_str("COMMIT;\n");
        }
        s
    }
}

fn seed_sql() -> String {
    let mut s = std::fs::read_to_string(root().join("tests/fixtures/debezium/seed.sql")).unwrap();
    // More rows than the fixture's, for the snapshot: customers 6..=60, an order each.
    s.push_str("INSERT INTO customers VALUES\n");
    let rows: Vec<String> = (6..=60)
        .map(|i| {
            format!(
                "({i}, 'kund{i}@example.se', 'Kund {i}', '2024-07-01 08:00:{:02}.{i:03}')",
                i % 60
            )
        })
        .collect();
    s.push_str(&rows.join(",\n"));
    s.push_str(";\nINSERT INTO orders VALUES\n");
    let rows: Vec<String> = (6..=60)
        .map(|i| {
            format!(
                "({}, {i}, 'paid', {i}.50, '2024-07-02 09:00:00.000')",
                2000 + i
            )
        })
        .collect();
    s.push_str(&rows.join(",\n"));
    s.push_str(";\nINSERT INTO order_items VALUES\n");
    let rows: Vec<String> = (6..=60)
        .map(|i| format!("({}, 1, 'SKU-{i:04}', 1, {i}.50)", 2000 + i))
        .collect();
    s.push_str(&rows.join(",\n"));
    s.push_str(";\n");
    s
}

/// A verifier configuration for the real topics.
fn config(dir: &Path, name: &str) -> PathBuf {
    config_with(dir, name, "")
}

/// [`config`] with `more` TOML after it.
fn config_with(dir: &Path, name: &str, more: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"[kafka]
bootstrap-servers = "{bootstrap}"
group-id = "{group}"
[registry]
url = "{registry}"
[primary]
name = "primary"
topic-prefix = "primary.shop."
[[replicas]]
name = "replica"
topic-prefix = "replica.shop."
[verify]
max-replica-lag-ms = {MAX_LAG_MS}
[alerts]
topic = "{alerts}.episodes"
detail-topic = "{alerts}"
dead-letter-topic = "{dlq}"
[service]
listen = "127.0.0.1:0"
summary-interval-s = 0
"#,
        bootstrap = support::bootstrap(),
        registry = support::registry_url(),
        group = support::unique_name(&format!("dbz-{name}")),
        alerts = alerts_topic(name),
        dlq = dlq_topic(name),
    );
    std::fs::write(&path, text + more).unwrap();
    path
}

/// `replay` of everything in the topics under the config `cfg`: the keys its report names as
/// differing, by table.
fn replay_keys(dir: &Path, cfg: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let report = dir.join("replay.json");
    let out = Command::new(BIN)
        .args(["replay", "--offsets", "0..", "--config"])
        .arg(cfg)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Json = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let mut named: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for d in report["divergences"].as_array().unwrap() {
        if d["kind"] == "DataMismatch" {
            for k in d["keys"].as_array().unwrap() {
                named
                    .entry(d["table"].as_str().unwrap().to_string())
                    .or_default()
                    .insert(k["key"].to_string());
            }
        }
    }
    named
}

fn alerts_topic(name: &str) -> String {
    format!("cdc-verifier.debezium-{}-{name}.alerts", run_id())
}

fn dlq_topic(name: &str) -> String {
    format!("cdc-verifier.debezium-{}-{name}.dead-letter", run_id())
}

/// Names this run's topics apart from an earlier run's on the same broker.
fn run_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| support::unique_name("run"))
}

fn alerts(topic: &str) -> Vec<Json> {
    cdc::verdicts(topic)
}

fn dead_letters(topic: &str) -> usize {
    let c = support::consumer(&support::unique_name("dlq"), "read_committed");
    c.subscribe(&[topic]).unwrap();
    support::poll_for(&c, Duration::from_secs(3)).len()
}

/// A union's value (apache-avro renders `["null", T]` as the value or null).
fn summary(alerts: &[Json]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| {
            format!(
                "{} {} {} range {} window {}",
                a["kind"].as_str().unwrap_or("?"),
                a["replica"].as_str().unwrap_or("?"),
                opt(a, "table").and_then(Json::as_str).unwrap_or("-"),
                opt(a, "range").map_or("-".into(), |r| r.to_string()),
                opt(a, "window").map_or("-".into(), |w| format!(
                    "{}..{}",
                    w["first_position"], w["last_position"]
                ))
            )
        })
        .collect()
}

fn of_kind<'a>(alerts: &'a [Json], kind: &str) -> Vec<&'a Json> {
    alerts.iter().filter(|a| a["kind"] == kind).collect()
}

/// Waits until the live verifier has published at least `n` alerts besides those `seen`
/// before; returns those others.
fn wait_alerts(topic: &str, seen: &[Json], n: usize, what: &str) -> Vec<Json> {
    wait_alerts_until(topic, seen, what, |a| a.len() >= n)
}

/// Waits until the alerts published so far, besides those `seen` before, satisfy `done` (a
/// mismatch found at an idle moment is published once confirmed: `verify.confirm-ms`, 30 s, at
/// the latest); returns them.
fn wait_alerts_until(
    topic: &str,
    seen: &[Json],
    what: &str,
    done: impl Fn(&[Json]) -> bool,
) -> Vec<Json> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = besides(alerts(topic), seen);
        if done(&a) {
            return a;
        }
        if Instant::now() >= deadline {
            dump_topics(what);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {} alerts after 60 s: {:#?}",
            a.len(),
            summary(&a)
        );
    }
}

struct Live(Child);

impl Live {
    /// Once everything written is captured and a moment has passed for the verifier to
    /// compare it: no alert at all besides those `seen`.
    fn assert_quiet(&mut self, dir: &Path, seen: &[Json], what: &str) {
        wait_captured();
        std::thread::sleep(Duration::from_secs(3));
        self.alive(dir);
        let a = besides(alerts(&alerts_topic("live")), seen);
        if !a.is_empty() {
            dump_topics(what);
        }
        assert!(
            a.is_empty(),
            "{what}: {:#?}\nlog: {}",
            summary(&a),
            live_log_tail(dir)
        );
    }

    /// Like `assert_quiet`, but a stream may have been behind or silent for a while (one
    /// connector resuming before the other), as long as each such verdict is followed by its
    /// recovery; returns those verdicts.
    fn assert_quiet_but_outages(&mut self, dir: &Path, seen: &[Json], what: &str) -> Vec<Json> {
        wait_captured();
        std::thread::sleep(Duration::from_secs(3));
        self.alive(dir);
        let a = wait_alerts_until(&alerts_topic("live"), seen, what, |a| {
            unrecovered(a).is_empty()
        });
        let other: Vec<Json> = a.iter().filter(|x| !is_outage(x)).cloned().collect();
        if !other.is_empty() {
            dump_topics(what);
        }
        assert!(
            other.is_empty(),
            "{what}: {:#?}\nlog: {}",
            summary(&a),
            live_log_tail(dir)
        );
        a
    }

    /// Panics with the log's tail when the live verifier has exited.
    fn alive(&mut self, dir: &Path) {
        if let Some(status) = self.0.try_wait().unwrap() {
            panic!(
                "the live verifier exited ({status}):\n{}",
                live_log_tail(dir)
            );
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The primary's and the replica's rows of `orders`, the replica's read as the primary's
/// schema would (a column it lacks at its default): the ids whose rows differ.
fn sql_differing_orders() -> BTreeSet<i64> {
    let q = |server: &str, currency: &str| -> BTreeMap<i64, String> {
        sql(server, &format!("SELECT id, customer_id, status, total, placed, {currency} FROM shop.orders ORDER BY id;"))
            .lines()
            .map(|l| (l.split('\t').next().unwrap().parse().unwrap(), l.to_string()))
            .collect()
    };
    let (p, r) = (q("primary", "currency"), q("replica", "'USD'"));
    p.keys()
        .chain(r.keys())
        .filter(|k| p.get(k) != r.get(k))
        .copied()
        .collect()
}

/// The tests of this file share the databases and the Connect worker: one at a time.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Fresh databases, the seed, then the connectors writing `format` (avro or json): their
/// snapshots take the seed.
fn start_real_parts(format: &str) {
    script("debezium", &["down"]);
    script("mariadb", &["down"]);
    script("mariadb", &["up"]);
    sql("primary", &seed_sql());
    wait_replicated();
    cdc::script("debezium", &["up"], &[("DEBEZIUM_FORMAT", format)]);
    // The snapshot creates the topics (a verifier discovers them once, at start).
    for t in cdc_topics() {
        support::wait_for_topic(&t, if t.starts_with("primary") { 3 } else { 2 });
    }
}

fn stop_real_parts() {
    script("debezium", &["down"]);
    script("mariadb", &["down"]);
}

/// Kafka Connect's JsonConverter (schemas enabled) on both sides, read natively: clean
/// traffic with a snapshot raises nothing; a tamper on the replica is the one finding.
#[test]
fn real_debezium_in_kafka_connect_json() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    support::require_services();
    let dir = tempfile::tempdir().unwrap();
    start_real_parts("json");
    let mut work = Workload {
        next_order: 10_000,
        rng: 0x2545_f491_4f6c_dd1d,
    };
    sql("primary", &work.transactions(100, false));
    sql(
        "replica",
        "SET sql_log_bin = 0; UPDATE shop.customers SET name = 'tampered' WHERE id = 23;",
    );
    sql(
        "primary",
        "UPDATE shop.customers SET email = 'kund23@example.no' WHERE id = 23;",
    );
    sql("primary", &work.transactions(10, false));
    wait_captured();
    let a = catch_up(dir.path(), "json");
    assert_eq!(
        dead_letters(&dlq_topic("json")),
        0,
        "JSON records are read natively"
    );
    assert_eq!(a.len(), 1, "one finding: {:#?}", summary(&a));
    assert_eq!(a[0]["kind"], "DataMismatch");
    assert_eq!(
        opt(&a[0], "table").and_then(Json::as_str),
        Some("customers")
    );
    eprintln!("json: {:#?}", summary(&a));

    // A replica whose customer 31 is named in capitals: a difference, unless `name` is
    // compared case-insensitively — and the tamper of 23 shows through that rule.
    sql(
        "replica",
        "SET sql_log_bin = 0; UPDATE shop.customers SET name = UPPER(name) WHERE id = 31;",
    );
    sql(
        "primary",
        "UPDATE shop.customers SET email = 'kund31@example.no' WHERE id = 31;",
    );
    sql("primary", &work.transactions(10, false));
    wait_captured();
    let plain = replay_keys(dir.path(), &config(dir.path(), "json-plain"));
    let ruled = replay_keys(
        dir.path(),
        &config_with(
            dir.path(),
            "json-ruled",
            "[[verify.column-rules]]\ntable = \"customers\"\ncolumns = [\"name\"]\ncase-insensitive = true\n",
        ),
    );
    let customers = |k: &BTreeMap<String, BTreeSet<String>>| {
        k.get("customers")
            .map(|s| s.iter().cloned().collect::<Vec<_>>())
    };
    assert_eq!(
        customers(&plain),
        Some(vec![r#"{"id":23}"#.to_string(), r#"{"id":31}"#.to_string()]),
        "{plain:?}"
    );
    assert_eq!(
        customers(&ruled),
        Some(vec![r#"{"id":23}"#.to_string()]),
        "{ruled:?}"
    );
    assert_eq!((plain.len(), ruled.len()), (1, 1), "{plain:?} {ruled:?}");
    eprintln!("json: column rules: without {plain:?}, with {ruled:?}");
    stop_real_parts();
}

#[test]
fn real_debezium_on_real_replication() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    support::require_services();
    let dir = tempfile::tempdir().unwrap();
    start_real_parts("avro");
    let live_cfg = config(dir.path(), "live");
    let live_log = std::fs::File::create(dir.path().join("live.log")).unwrap();
    let mut live = Live(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(&live_cfg)
            .stdout(Stdio::null())
            .stderr(live_log)
            .spawn()
            .unwrap(),
    );
    let mut work = Workload {
        next_order: 10_000,
        rng: 0x9e37_79b9_7f4a_7c15,
    };
    let mut timeline: Vec<(&str, i64)> = Vec::new();

    // 1. Clean.
    sql("primary", &work.transactions(150, false));
    live.assert_quiet(dir.path(), &[], "clean");

    // 2. The connector's worker killed mid-stream and restarted: Debezium delivers again.
    sql("primary", &work.transactions(30, false));
    script("debezium", &["kill"]);
    sql("primary", &work.transactions(30, false));
    script("debezium", &["restart"]);
    sql("primary", &work.transactions(30, false));
    // One connector may resume seconds before the other: that replica is behind meanwhile,
    // and said so, then recovered. Nothing else is raised.
    let restart = live.assert_quiet_but_outages(dir.path(), &[], "connector restart");
    let restarted_at = now_ms();

    // 3. A silent tamper on the replica, then an ordinary primary update of that row.
    sql(
        "replica",
        "SET sql_log_bin = 0; UPDATE shop.customers SET name = 'tampered' WHERE id = 17;",
    );
    timeline.push(("tamper", now_ms()));
    sql(
        "primary",
        "UPDATE shop.customers SET email = 'kund17@example.no' WHERE id = 17;",
    );
    live.alive(dir.path());
    let a = wait_alerts(&alerts_topic("live"), &restart, 1, "tamper");
    let mism = of_kind(&a, "DataMismatch");
    if (a.len(), mism.len()) != (1, 1) {
        dump_topics("tamper");
    }
    assert_eq!(
        (a.len(), mism.len()),
        (1, 1),
        "tamper: {:#?}\n{}\nlog: {}",
        summary(&a),
        serde_json::to_string_pretty(&a).unwrap(),
        live_log_tail(dir.path())
    );
    assert_eq!(
        opt(mism[0], "table").and_then(Json::as_str),
        Some("customers")
    );
    let tamper_alert = mism[0]["emitted_at_ms"].as_i64().unwrap();

    // 4. The replica stopped longer than the lag bound, then started again.
    sql("replica", "STOP SLAVE;");
    let stopped_at = now_ms();
    for _ in 0..STOPPED.as_secs() {
        sql("primary", &work.transactions(2, false));
        std::thread::sleep(Duration::from_secs(1));
    }
    sql("replica", "START SLAVE;");
    sql("primary", &work.transactions(20, false));
    wait_captured();
    live.alive(dir.path());
    let a = wait_alerts(&alerts_topic("live"), &restart, 3, "stopped replica");
    assert_eq!(
        of_kind(&a, "ReplicaLag").len(),
        1,
        "stopped replica: {:#?}",
        summary(&a)
    );
    let recovered: Vec<_> = of_kind(&a, "Recovered");
    assert_eq!(recovered.len(), 1, "stopped replica: {:#?}", summary(&a));
    assert_eq!(
        opt(recovered[0], "recovered").and_then(Json::as_str),
        Some("ReplicaLag")
    );
    assert_eq!(
        of_kind(&a, "DataMismatch").len(),
        1,
        "no mismatch from the lag: {:#?}",
        summary(&a)
    );
    let lag_alert = of_kind(&a, "ReplicaLag")[0]["emitted_at_ms"]
        .as_i64()
        .unwrap();

    // 5. The incident: the replica skips the ALTER and replicates on with the old schema.
    sql("replica", "STOP SLAVE SQL_THREAD;");
    sql(
        "primary",
        "ALTER TABLE shop.orders ADD COLUMN currency CHAR(3) NOT NULL DEFAULT 'USD';",
    );
    sql(
        "replica",
        "SET GLOBAL sql_slave_skip_counter = 1; START SLAVE SQL_THREAD;",
    );
    let altered = primary_gtid();
    timeline.push(("alter", now_ms()));
    // Orders in EUR and in USD, and one transaction that changes only the new column (the
    // replica's binlog gets nothing of it).
    sql("primary", &work.transactions(40, true));
    sql(
        "primary",
        "UPDATE shop.orders SET currency = 'GBP' WHERE id = 2017;",
    );
    // That transaction leaves nothing in the replica's stream: until the replica writes a
    // later one, it cannot be told from a replica one transaction behind. Traffic goes on.
    sql("primary", &work.transactions(5, true));
    wait_captured();
    let sql_keys = sql_differing_orders();
    assert!(
        sql_keys.len() >= 5,
        "the workload made EUR orders: {sql_keys:?}"
    );
    live.alive(dir.path());
    let a = wait_alerts_until(&alerts_topic("live"), &restart, "incident", |a| {
        a.iter().any(|x| {
            x["kind"] == "DataMismatch" && opt(x, "table").and_then(Json::as_str) == Some("orders")
        })
    });
    let drift = of_kind(&a, "SchemaDrift");
    assert_eq!(drift.len(), 1, "incident: {:#?}", summary(&a));
    let schema = &drift[0]["schema"];
    assert_eq!(
        opt(drift[0], "table").and_then(Json::as_str),
        Some("orders")
    );
    assert_eq!(schema["subject"], "replica.shop.orders-value");
    let fields: Vec<String> = schema["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(fields, vec!["currency".to_string()], "{schema:#}");
    assert_eq!(
        schema["first_position"].as_u64(),
        Some(altered + 1),
        "the first GTID after the ALTER ({altered})"
    );
    let drift_alert = drift[0]["emitted_at_ms"].as_i64().unwrap();
    // (The alert topic's partitions do not keep the order of publication.)
    let tables: Vec<&str> = of_kind(&a, "DataMismatch")
        .iter()
        .map(|m| opt(m, "table").and_then(Json::as_str).unwrap_or("-"))
        .collect();
    assert_eq!(
        tables.iter().filter(|t| **t == "customers").count(),
        1,
        "the tamper's alone: {:#?}",
        summary(&a)
    );
    assert!(
        tables.iter().all(|t| *t == "customers" || *t == "orders"),
        "incident: {:#?}",
        summary(&a)
    );
    assert_eq!(of_kind(&a, "PoisonEvent").len(), 0);
    assert_eq!(of_kind(&a, "StreamSilent").len(), 0, "{:#?}", summary(&a));
    assert_eq!(dead_letters(&dlq_topic("live")), 0);
    let live_verdicts = summary(&a);
    live.alive(dir.path());
    drop(live);

    // On the alert topic: the story's faults as episodes, a few records each — the drift
    // counts the mismatches of orders it explains.
    let records = support::verdicts::episode_records(&format!("{}.episodes", alerts_topic("live")));
    let mut latest = support::verdicts::latest_episodes(&records);
    // (Besides the restart's outages, closed before the story goes on.)
    latest.retain(|id, _| {
        records
            .iter()
            .filter(|r| r.episode == *id)
            .all(|r| r.emitted_at_ms >= restarted_at)
    });
    let told: BTreeSet<(String, Option<String>)> = latest
        .values()
        .map(|e| (e.kind.clone(), e.table.clone()))
        .collect();
    let expected: BTreeSet<(String, Option<String>)> = [
        ("DataMismatch", Some("customers")),
        ("ReplicaLag", None),
        ("SchemaDrift", Some("orders")),
    ]
    .into_iter()
    .map(|(k, t)| (k.to_string(), t.map(str::to_string)))
    .collect();
    assert_eq!(told, expected, "episodes: {latest:#?}");
    let drift_episode = latest.values().find(|e| e.kind == "SchemaDrift").unwrap();
    let orders_mismatches = of_kind(&a, "DataMismatch")
        .iter()
        .filter(|m| opt(m, "table").and_then(Json::as_str) == Some("orders"))
        .count() as i64;
    assert_eq!(
        drift_episode.consequences,
        vec![("orders".to_string(), orders_mismatches)],
        "{drift_episode:#?}"
    );
    for e in latest.values() {
        let own = records.iter().filter(|r| r.episode == e.episode).count();
        assert!(own <= 4, "{own} records for {}: {records:#?}", e.episode);
    }
    // The keys, live: the tamper's key, and under the drift only keys SQL finds different.
    let tamper = latest.values().find(|e| e.kind == "DataMismatch").unwrap();
    let tamper_keys: Vec<&str> = tamper.named_keys.iter().map(|k| k.0.as_str()).collect();
    assert_eq!(tamper_keys, [r#"{"id":17}"#], "{tamper:#?}");
    // With its repair: the statement that puts the primary's row back or, when the primary's
    // later update of the row (a full after image) already did, a comment saying so.
    let fix = tamper.repairs[0].as_deref().unwrap_or_default();
    let restores = fix.contains("`customers`") && fix.contains("17") && !fix.contains("tampered");
    let says_equal =
        fix == r#"-- {"id":17}: the replica's row is the primary's at the end of the window"#;
    assert!(restores || says_equal, "{fix}");
    let sql_orders: BTreeSet<String> = sql_keys.iter().map(|k| format!("{{\"id\":{k}}}")).collect();
    assert!(
        !drift_episode.named_keys.is_empty()
            && drift_episode
                .named_keys
                .iter()
                .all(|k| sql_orders.contains(&k.0)),
        "drift keys {:?} vs SQL's {sql_orders:?}",
        drift_episode.named_keys
    );
    eprintln!(
        "alert topic: {} verdicts on the detail topic, {} records for {} episodes",
        a.len(),
        records.len(),
        latest.len()
    );

    // 6. Catch-up: a verifier started after all of it is in Kafka reaches the same verdicts.
    let caught = catch_up(dir.path(), "catchup");
    let catch_cfg = dir.path().join("catchup.toml");
    let kinds = |s: &[String]| {
        s.iter()
            .map(|x| x.split(" range").next().unwrap().to_string())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        kinds(&summary(&caught)),
        kinds(&live_verdicts),
        "catch-up {:#?} vs live {:#?}",
        summary(&caught),
        live_verdicts
    );
    assert_eq!(dead_letters(&dlq_topic("catchup")), 0);

    // The exact keys: `replay` names what the SQL comparison finds.
    let named = replay_keys(dir.path(), &catch_cfg);
    let report: Json =
        serde_json::from_slice(&std::fs::read(dir.path().join("replay.json")).unwrap()).unwrap();
    let expected: BTreeSet<String> = sql_keys.iter().map(|k| format!("{{\"id\":{k}}}")).collect();
    assert_eq!(
        named.get("orders"),
        Some(&expected),
        "replay's keys against SQL's"
    );
    assert_eq!(
        named
            .get("customers")
            .map(|s| s.iter().cloned().collect::<Vec<_>>()),
        Some(vec![r#"{"id":17}"#.to_string()])
    );
    assert_eq!(named.len(), 2, "{named:?}");

    eprintln!("live verdicts: {live_verdicts:#?}");
    eprintln!(
        "keys: SQL finds {} orders differing, replay names {} orders and {:?} customers; catch-up verdicts {}",
        sql_keys.len(),
        named.get("orders").map_or(0, |k| k.len()),
        named.get("customers"),
        caught.len()
    );
    eprintln!(
        "detection: tamper {} ms, stopped replica {} ms after the stop, drift {} ms after the ALTER",
        tamper_alert - timeline[0].1,
        lag_alert - stopped_at,
        drift_alert - timeline[1].1
    );

    // The fix: the replica's schema as the SchemaDrift names it, then the report's repair
    // statements, make the replica checksum equal to the primary.
    let checksums = |server: &str| {
        sql(
            server,
            "CHECKSUM TABLE shop.customers, shop.orders, shop.order_items;",
        )
    };
    assert_ne!(
        checksums("primary"),
        checksums("replica"),
        "the replica differs before"
    );
    let mut statements = vec![
        "USE shop;".to_string(),
        cdc_verifier_core::repair::preamble(cdc_verifier_core::repair::Dialect::MySql).to_string(),
        "ALTER TABLE orders ADD COLUMN currency CHAR(3) NOT NULL DEFAULT 'USD';".to_string(),
    ];
    for r in report["replicas"].as_array().unwrap() {
        for t in r["tables"].as_array().unwrap() {
            for k in t["differing_keys"].as_array().unwrap() {
                statements.push(k["repair"]["mysql"].as_str().unwrap().to_string());
            }
        }
    }
    let applied = statements[3..]
        .iter()
        .filter(|s| !s.starts_with("--"))
        .count();
    assert!(
        statements.iter().all(|s| !s.starts_with("-- cannot")),
        "every key has a statement: {statements:#?}"
    );
    sql("replica", &statements.join("\n"));
    assert_eq!(
        checksums("primary"),
        checksums("replica"),
        "after the schema fix and {applied} repair statements"
    );
    eprintln!(
        "repair: {applied} statements applied to the replica; CHECKSUM TABLE equal to the primary's"
    );
    stop_real_parts();
}

/// Runs a verifier of its own (configuration `name`) over what the topics hold now, and
/// returns what it published.
fn catch_up(dir: &Path, name: &str) -> Vec<Json> {
    let cfg = config(dir, name);
    let out = Command::new(BIN)
        .args(["run", "--until-caught-up", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    alerts(&alerts_topic(name))
}

/// With `CDC_VERIFIER_TEST_DUMP=DIR`: every record of the CDC topics, for a failure to be
/// studied after the databases are gone.
fn dump_topics(what: &str) {
    if let Ok(dir) = std::env::var("CDC_VERIFIER_TEST_DUMP") {
        let dir = Path::new(&dir).join(format!("{}-{}", what.replace(' ', "-"), run_id()));
        // (Best effort: the check that failed is what the test reports.)
        let ok = Command::new(root().join("scripts").join("debezium"))
            .arg("dump")
            .arg(&dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            eprintln!("{what}: the CDC topics are in {}", dir.display());
        }
    }
}

fn live_log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("live.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}
