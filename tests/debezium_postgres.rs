//! The verifier on a real PostgreSQL primary and its logical replica (a subscription to the
//! primary's publication), both captured by Debezium's PostgreSQL connector (pgoutput, Avro in
//! the Confluent wire format) in a Kafka Connect worker — started by scripts/postgres and
//! scripts/debezium on top of scripts/services.
//!
//! A subscriber's LSNs are its own; its events carry the primary's commit time (`source.ts_us`,
//! to the microsecond), which is what both streams are aligned by (`verify.position = "ts_us"`).
//! One story, a live verifier throughout:
//! 1. clean: a seeded database (taken by both snapshots), then transactions from concurrent
//!    sessions: no verdict;
//! 2. the incident in PostgreSQL's form: `ADD COLUMN` on the primary only; the subscription's
//!    apply worker fails on the next row of that table and applies nothing more: ReplicaLag
//!    (and StreamSilent if it lasts), until the column is added on the subscriber and the
//!    backlog applied: Recovered, no DataMismatch;
//! 3. a write on the subscriber, then a primary update of that row: DataMismatch on that key;
//! 4. a column both add, with another default on the subscriber: SchemaDrift naming it, and
//!    the rows that took each side's default differ.

mod support;

use support::cdc::{self, besides, opt, unrecovered};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;

const BIN: &str = env!("CARGO_BIN_EXE_cdc-verifier");
const TABLES: [&str; 2] = ["customers", "orders"];
const MAX_LAG_MS: u64 = 2000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs SQL on `server` (primary or replica); returns the rows, `|`-separated.
fn sql(server: &str, text: &str) -> String {
    let mut child = Command::new(root().join("scripts/postgres"))
        .args(["sql", server, "-At"])
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

/// Both tables' rows, as one text per server.
fn contents(server: &str) -> String {
    sql(
        server,
        "SELECT string_agg(c::text, ';' ORDER BY id) FROM customers c;
         SELECT string_agg(o::text, ';' ORDER BY id) FROM orders o;",
    )
}

/// Waits until the subscriber holds what the primary holds.
fn wait_replicated() {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (p, r) = (contents("primary"), contents("replica"));
        if p == r {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the subscriber did not catch up:\n{p}\nvs\n{r}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn cdc_topics() -> Vec<String> {
    ["primary", "replica"]
        .iter()
        .flat_map(|s| TABLES.iter().map(move |t| format!("{s}.public.{t}")))
        .collect()
}

/// Waits until both connectors have written what the databases hold.
fn wait_captured() {
    wait_replicated();
    cdc::wait_stable(&cdc_topics());
}

const SCHEMA: &str = "
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL, email text,
    joined timestamptz NOT NULL DEFAULT '2024-07-01 08:00:00+00');
CREATE TABLE orders (id int PRIMARY KEY, customer_id int NOT NULL, status text NOT NULL,
    total numeric(12,2) NOT NULL, placed timestamp(3) NOT NULL);
ALTER TABLE customers REPLICA IDENTITY FULL;
ALTER TABLE orders REPLICA IDENTITY FULL;
";

/// `n` transactions of session `s`: an order, its payment, sometimes a customer's email.
fn transactions(s: i64, from: i64, n: i64, currency: bool) -> String {
    let mut out = String::new();
    for i in from..from + n {
        let id = s * 100_000 + i;
        let c = 1 + (i * 7 + s) % 40;
        let cur = if currency { ", currency" } else { "" };
        let val = if currency {
            if i % 3 == 0 { ", 'EUR'" } else { ", 'USD'" }
        } else {
            ""
        };
        out.push_str(&format!(
            "BEGIN;
             INSERT INTO orders (id, customer_id, status, total, placed{cur})
                 VALUES ({id}, {c}, 'new', {}.{:02}, '2025-06-01 10:00:00.{:03}'{val});
             UPDATE orders SET status = 'paid' WHERE id = {id};
             {}
             COMMIT;\n",
            10 + i % 500,
            i % 100,
            i % 1000,
            if i % 4 == 0 {
                format!("UPDATE customers SET email = 'k{c}.{i}@example.no' WHERE id = {c};")
            } else {
                String::new()
            }
        ));
    }
    out
}

/// `sessions` sessions writing at once.
fn concurrent(sessions: i64, from: i64, n: i64, currency: bool) {
    let handles: Vec<_> = (1..=sessions)
        .map(|s| std::thread::spawn(move || sql("primary", &transactions(s, from, n, currency))))
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

fn config(dir: &Path, format: &str) -> PathBuf {
    let path = dir.join("live.toml");
    std::fs::write(
        &path,
        format!(
            r#"[kafka]
bootstrap-servers = "{bootstrap}"
group-id = "{group}"
[registry]
url = "{registry}"
[primary]
name = "primary"
topic-prefix = "primary.public."
[[replicas]]
name = "replica"
topic-prefix = "replica.public."
[verify]
position = "ts_us"
max-replica-lag-ms = {MAX_LAG_MS}
[alerts]
topic = "{alerts}.episodes"
detail-topic = "{alerts}"
dead-letter-topic = "{alerts}.dead-letter"
[service]
listen = "127.0.0.1:0"
summary-interval-s = 0
"#,
            bootstrap = support::bootstrap(),
            registry = support::registry_url(),
            group = support::unique_name("pg-live"),
            alerts = alerts_topic(format),
        ),
    )
    .unwrap();
    path
}

fn alerts_topic(format: &str) -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let id = ID.get_or_init(|| support::unique_name("pg"));
    format!("cdc-verifier.{id}-{format}.verdicts")
}

/// The verdicts published so far, as JSON.
fn alerts(format: &str) -> Vec<Json> {
    cdc::verdicts(&alerts_topic(format))
}

fn table(a: &Json) -> &str {
    opt(a, "table").and_then(Json::as_str).unwrap_or("-")
}

fn kinds(a: &[Json]) -> Vec<String> {
    a.iter()
        .map(|x| {
            format!(
                "{} {}{}",
                x["kind"].as_str().unwrap_or("?"),
                table(x),
                opt(x, "recovered")
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

/// Waits until `done` holds of the verdicts published besides those `seen`; returns them.
fn wait_alerts(
    format: &str,
    dir: &Path,
    seen: &[Json],
    what: &str,
    done: impl Fn(&[Json]) -> bool,
) -> Vec<Json> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let a = alerts(format);
        let new = besides(a, seen);
        if done(&new) {
            return new;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: after 60 s: {:#?}\n{}",
            kinds(&new),
            log_tail(dir)
        );
    }
}

struct Live(Child);

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("live.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The tests of this file share the databases and the Connect worker: one at a time.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn real_debezium_on_a_postgres_logical_replica_avro() {
    story("avro");
}

/// The same story through Kafka Connect's JsonConverter (schemas enabled), read natively.
#[test]
fn real_debezium_on_a_postgres_logical_replica_json() {
    story("json");
}

fn story(format: &str) {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    support::require_services();
    let dir = tempfile::tempdir().unwrap();
    cdc::script("debezium", &["down"], &[]);
    cdc::script("postgres", &["down"], &[]);
    cdc::script("postgres", &["up"], &[]);
    sql("primary", SCHEMA);
    sql("replica", SCHEMA);
    let seed: String = (1..=40)
        .map(|i| {
            format!(
                "INSERT INTO customers (id, name, email) VALUES ({i}, 'Kund {i}', 'k{i}@example.no');
                 INSERT INTO orders VALUES ({}, {i}, 'paid', {i}.50, '2024-07-02 09:00:00.000');\n",
                1000 + i
            )
        })
        .collect();
    sql("primary", &seed);
    cdc::script("postgres", &["refresh"], &[]);
    wait_replicated();
    cdc::script(
        "debezium",
        &["up"],
        &[("DEBEZIUM_SOURCE", "postgres"), ("DEBEZIUM_FORMAT", format)],
    );
    for t in cdc_topics() {
        support::wait_for_topic(&t, if t.starts_with("primary") { 3 } else { 2 });
    }
    let log = std::fs::File::create(dir.path().join("live.log")).unwrap();
    let _live = Live(
        Command::new(BIN)
            .args(["run", "--config"])
            .arg(config(dir.path(), format))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );

    // 1. Clean: four sessions at once.
    concurrent(4, 0, 50, false);
    wait_captured();
    std::thread::sleep(Duration::from_secs(3));
    let a = alerts(format);
    assert!(
        a.is_empty(),
        "clean: {:#?}\n{}",
        kinds(&a),
        log_tail(dir.path())
    );

    // 2. The stall: the column added on the primary only.
    let altered = now_ms();
    sql(
        "primary",
        "ALTER TABLE orders ADD COLUMN currency text NOT NULL DEFAULT 'USD';",
    );
    let writer = std::thread::spawn(|| {
        for i in 0..40 {
            sql("primary", &transactions(9, 1000 + i, 1, true));
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let lag = wait_alerts(format, dir.path(), &[], "stall", |a| {
        a.iter().any(|x| x["kind"] == "ReplicaLag")
    });
    let lag_at = lag.iter().find(|x| x["kind"] == "ReplicaLag").unwrap()["emitted_at_ms"]
        .as_i64()
        .unwrap();
    writer.join().unwrap();
    let fixed = now_ms();
    sql(
        "replica",
        "ALTER TABLE orders ADD COLUMN currency text NOT NULL DEFAULT 'USD';",
    );
    // Recovery is seen in windows written after the backlog: wait until the subscriber, which
    // retries the failed apply on its own schedule, has applied and the connector captured it,
    // or the new transactions are queued behind it and are late too.
    wait_captured();
    concurrent(2, 1500, 10, true);
    wait_captured();
    // Every lag and silence recovered: each (kind, table) followed by its Recovered.
    wait_alerts(format, dir.path(), &[], "stall recovered", |a| {
        let lag_recovered = a.iter().any(|x| {
            x["kind"] == "Recovered"
                && opt(x, "recovered").and_then(Json::as_str) == Some("ReplicaLag")
        });
        lag_recovered && unrecovered(a).is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    let stall = alerts(format);
    assert!(
        stall.iter().all(|x| {
            let k = x["kind"].as_str().unwrap_or("");
            k == "ReplicaLag" || k == "StreamSilent" || k == "Recovered"
        }),
        "stall: lag and silence, then recovered, and nothing else: {:#?}",
        kinds(&stall)
    );
    let recovered_at = stall
        .iter()
        .filter(|x| x["kind"] == "Recovered")
        .filter_map(|x| x["emitted_at_ms"].as_i64())
        .max()
        .unwrap();
    let seen = stall.clone();

    // 3. A write on the subscriber, then an update of that row on the primary.
    let tampered = now_ms();
    sql(
        "replica",
        "UPDATE customers SET name = 'tampered' WHERE id = 17;",
    );
    std::thread::sleep(Duration::from_millis(1500));
    sql(
        "primary",
        "UPDATE customers SET email = 'kund17@example.no' WHERE id = 17;",
    );
    concurrent(2, 2000, 10, true);
    let tamper = wait_alerts(format, dir.path(), &seen, "tamper", |a| {
        a.iter()
            .any(|x| x["kind"] == "DataMismatch" && table(x) == "customers")
    });
    std::thread::sleep(Duration::from_secs(3));
    let tamper_at = tamper[0]["emitted_at_ms"].as_i64().unwrap();
    let a = alerts(format);
    let tamper: Vec<Json> = besides(a.clone(), &seen);
    assert!(
        tamper
            .iter()
            .all(|x| x["kind"] == "DataMismatch" && table(x) == "customers"),
        "tamper: {:#?}",
        kinds(&tamper)
    );
    let seen = a;
    // The episode names the key, with its repair.
    let deadline = Instant::now() + Duration::from_secs(60);
    let named = loop {
        let records =
            support::verdicts::episode_records(&format!("{}.episodes", alerts_topic(format)));
        let named = records
            .iter()
            .filter(|r| r.kind == "DataMismatch" && r.table.as_deref() == Some("customers"))
            .flat_map(|r| {
                r.named_keys
                    .iter()
                    .map(|k| k.0.clone())
                    .zip(r.repairs.clone())
            })
            .find(|(k, _)| k == r#"{"id":17}"#);
        if let Some(n) = named {
            break n;
        }
        assert!(
            Instant::now() < deadline,
            "key 17 never named: {records:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(named.1.is_some(), "{named:?}");

    // 4. A column with another default on the subscriber.
    let drifted = now_ms();
    sql(
        "primary",
        "ALTER TABLE customers ADD COLUMN tier text NOT NULL DEFAULT 'basic';",
    );
    sql(
        "replica",
        "ALTER TABLE customers ADD COLUMN tier text NOT NULL DEFAULT 'gold';",
    );
    sql(
        "primary",
        "UPDATE customers SET email = 'ny' || id || '@example.no' WHERE id IN (3, 5);",
    );
    concurrent(2, 3000, 10, true);
    let drift = wait_alerts(format, dir.path(), &seen, "drift", |a| {
        a.iter().any(|x| x["kind"] == "SchemaDrift")
            && a.iter()
                .any(|x| x["kind"] == "DataMismatch" && table(x) == "customers")
    });
    let d = drift.iter().find(|x| x["kind"] == "SchemaDrift").unwrap();
    assert_eq!(table(d), "customers", "{:#?}", kinds(&drift));
    let fields: Vec<&str> = d["schema"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["field"].as_str())
        .collect();
    assert_eq!(fields, ["tier"], "{d:#}");
    assert!(
        drift.iter().all(|x| table(x) == "customers"),
        "drift: {:#?}",
        kinds(&drift)
    );
    let drift_at = d["emitted_at_ms"].as_i64().unwrap();

    eprintln!(
        "postgres ({format}): stall: {} (ReplicaLag {} ms after the ALTER, Recovered {} ms after the fix); tamper: {} ({} ms); drift: {} ({} ms)",
        kinds(&stall).join(", "),
        lag_at - altered,
        recovered_at - fixed,
        kinds(&tamper).join(", "),
        tamper_at - tampered,
        kinds(&drift).join(", "),
        drift_at - drifted,
    );
    drop(_live);

    // `lsn` positions against a logical subscriber do not align: refused, with the fix.
    let cfg = std::fs::read_to_string(config(dir.path(), format))
        .unwrap()
        .replace("position = \"ts_us\"", "position = \"lsn\"");
    let lsn_cfg = dir.path().join("lsn.toml");
    std::fs::write(&lsn_cfg, cfg).unwrap();
    let out = Command::new(BIN)
        .args(["run", "--until-caught-up", "--config"])
        .arg(&lsn_cfg)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "lsn positions refused: {log}");
    assert!(
        log.contains("comes from a logical subscription")
            && log.contains("Set verify.position = \"ts_us\""),
        "{log}"
    );

    cdc::script("debezium", &["down"], &[]);
    cdc::script("postgres", &["down"], &[]);
}
