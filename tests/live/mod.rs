//! A `cdc-verifier run` process against the test services, watched through its HTTP
//! endpoints, its log and its alert topic; and the simulator's traffic to feed it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use apache_avro::types::Value;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use serde_json::Value as Json;

use super::support;

pub const BIN: &str = env!("CARGO_BIN_EXE_cdc-verifier");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `simulate` into topics `<prefix><stream>.shop.<table>`; returns its manifest.
pub fn simulate(prefix: &str, scenario: &str, events: u64, extra: &[&str]) -> Json {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    let out = Command::new(BIN)
        .args(["simulate", "--scenario", scenario, "--events"])
        .arg(events.to_string())
        .args(["--topic-prefix", prefix, "--partitions", "2"])
        .args(["--bootstrap-servers", &support::bootstrap()])
        .args(["--registry-url", &support::registry_url()])
        .arg("--manifest")
        .arg(&manifest)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "simulate failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap()
}

/// A running verifier; killed when dropped.
pub struct Verifier {
    pub child: Child,
    pub port: u16,
    pub alerts: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Verifier {
    /// Starts `run` with `args`, its own port and alert topics (named after `name`).
    pub fn start(name: &str, args: &[String]) -> Verifier {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("verifier.log");
        let port = free_port();
        let alerts = format!("{name}-alerts");
        let child = Command::new(BIN)
            .arg("run")
            .args(args)
            .args(["--bootstrap-servers", &support::bootstrap()])
            .args(["--set", &format!("service.listen=127.0.0.1:{port}")])
            .args(["--set", &format!("alerts.detail-topic={alerts}")])
            .args(["--set", &format!("alerts.topic={alerts}.episodes")])
            .args([
                "--set",
                &format!("alerts.dead-letter-topic={name}-dead-letter"),
            ])
            .args(["--set", "service.summary-interval-s=0"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Verifier {
            child,
            port,
            alerts,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET an endpoint: (status, body); `None` while nothing answers.
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = support::http()
            .get(format!("http://127.0.0.1:{}{path}", self.port))
            .timeout(Duration::from_secs(5))
            .send()
            .ok()?;
        Some((r.status().as_u16(), r.text().unwrap_or_default()))
    }

    /// Polls an endpoint until `want` holds of its answer; fails after `timeout`.
    pub fn wait_for(
        &mut self,
        path: &str,
        timeout: Duration,
        want: impl Fn(u16, &str) -> bool,
    ) -> (u16, String) {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the verifier exited ({status}): {}", self.log());
            }
            if let Some((status, body)) = self.get(path) {
                if want(status, &body) {
                    return (status, body);
                }
                last = Some((status, body));
            }
            if Instant::now() >= deadline {
                panic!(
                    "{path} never answered as expected in {timeout:?}\n{}",
                    self.state(last)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What the verifier says of itself, for a failure's message: `last` (an endpoint's
    /// answer), readiness, health, the metrics that are not zero and the log's tail.
    pub fn state(&self, last: Option<(u16, String)>) -> String {
        let answer = |r: Option<(u16, String)>| {
            r.map_or("no answer".to_string(), |(s, b)| {
                let b: Vec<&str> = b.lines().filter(|l| !l.starts_with('#')).take(60).collect();
                format!("{s} {}", b.join("\n    "))
            })
        };
        let metrics = self.get("/metrics").map(|(s, b)| {
            let lines = b
                .lines()
                .filter(|l| !l.starts_with('#') && !l.ends_with(" 0") && !l.contains("_bucket{"));
            (s, lines.collect::<Vec<_>>().join("\n"))
        });
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "last answer: {}\nreadyz: {}\nhealthz: {}\nmetrics not zero: {}\nlog (last 40 lines):\n{}",
            answer(last),
            answer(self.get("/readyz")),
            answer(self.get("/healthz")),
            answer(metrics),
            lines[lines.len().saturating_sub(40)..].join("\n")
        )
    }

    /// The value of a metric line (`name{labels}`) on `/metrics`.
    pub fn metric(&self, line: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics")?;
        body.lines().find_map(|l| {
            l.strip_prefix(line)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// SIGTERM, and the exit status.
    pub fn stop(mut self) -> (ExitStatus, String) {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (s, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "SIGTERM did not stop the verifier"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An alert read back: kind, replica, table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub kind: String,
    pub replica: String,
    pub table: Option<String>,
}

fn field<'a>(v: &'a Value, name: &str) -> &'a Value {
    match v {
        Value::Record(f) => &f.iter().find(|(n, _)| n == name).expect("field").1,
        other => panic!("not a record: {other:?}"),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) | Value::Enum(_, s) => Some(s.clone()),
        Value::Union(_, b) => text(b),
        _ => None,
    }
}

/// Every alert on `topic` so far.
pub fn alerts(topic: &str) -> Vec<Alert> {
    let schema =
        apache_avro::Schema::parse_str(include_str!("../../schemas/divergence.avsc")).unwrap();
    let c = support::consumer(&support::unique_name("alerts"), "read_committed");
    c.subscribe(&[topic]).unwrap();
    support::poll_for(&c, Duration::from_secs(3))
        .iter()
        .map(|m| {
            let (_, datum) = support::confluent_unframe(m.payload().unwrap());
            let v = apache_avro::from_avro_datum(&schema, &mut &datum[..], None).unwrap();
            Alert {
                kind: text(field(&v, "kind")).unwrap(),
                replica: text(field(&v, "replica")).unwrap(),
                table: text(field(&v, "table")),
            }
        })
        .collect()
}
