//! `cdc-verifier run` against the real broker and registry, with traffic from the simulator:
//! verdicts on the alert topic match the ground-truth manifest, undecodable records reach the
//! dead-letter topic, a crash changes no verdict, and a registry outage loses nothing.

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, Message};
use serde_json::Value as Json;
use support::verdicts::{
    Alert, EpisodeRecord, alerts, episode_records, faults, faults_without_episode,
    keyed_episode_records, latest_episodes, range_of, read_all, score,
};

const BIN: &str = env!("CARGO_BIN_EXE_cdc-verifier");

/// The tests of this file run side by side, except those that verify live traffic: on a small
/// host, a verifier and a simulator of another test beside them starve their producer, whose
/// records then come seconds late — a property of the host, not of the verifier (which reports
/// it and learns the skew). Those run alone.
static TURNS: RwLock<()> = RwLock::new(());

fn side_by_side() -> RwLockReadGuard<'static, ()> {
    TURNS.read().unwrap_or_else(|e| e.into_inner())
}

fn alone() -> RwLockWriteGuard<'static, ()> {
    TURNS.write().unwrap_or_else(|e| e.into_inner())
}

struct Run {
    prefix: String,
    alerts: String,
    dlq: String,
    group: String,
}

impl Run {
    fn new(name: &str) -> Run {
        let prefix = format!("{}-", support::unique_name(name));
        Run {
            alerts: format!("{prefix}alerts"),
            dlq: format!("{prefix}dead-letter"),
            group: format!("{prefix}group"),
            prefix,
        }
    }

    fn simulate(&self, scenario: &str, events: u64, extra: &[&str]) -> Json {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("manifest.json");
        let out = Command::new(BIN)
            .args([
                "simulate",
                "--scenario",
                scenario,
                "--events",
                &events.to_string(),
                "--topic-prefix",
                &self.prefix,
            ])
            .args([
                "--bootstrap-servers",
                &support::bootstrap(),
                "--registry-url",
                &support::registry_url(),
                "--partitions",
                "4",
            ])
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

    /// Starts the `faults` scenario produced at `rate` primary events/s, its manifest to
    /// `manifest` and its log to `log`.
    fn simulate_paced(
        &self,
        events: u64,
        rate: u64,
        manifest: &std::path::Path,
        log: Stdio,
    ) -> Child {
        Command::new(BIN)
            .args(["simulate", "--scenario", "faults", "--events"])
            .arg(events.to_string())
            .arg("--rate")
            .arg(rate.to_string())
            .args(["--topic-prefix", &self.prefix, "--partitions", "4"])
            .args(["--bootstrap-servers", &support::bootstrap()])
            .args(["--registry-url", &support::registry_url()])
            .arg("--manifest")
            .arg(manifest)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    /// The alert topic: episodes.
    fn episodes(&self) -> String {
        format!("{}.episodes", self.alerts)
    }

    fn verifier_args(&self, group: &str, registry: &str) -> Vec<String> {
        let port = free_port();
        [
            "run",
            "--topic-prefix",
            &self.prefix,
            "--group-id",
            group,
            "--bootstrap-servers",
            &support::bootstrap(),
            "--registry-url",
            registry,
            "--set",
            &format!("alerts.detail-topic={}", self.alerts),
            "--set",
            &format!("alerts.topic={}.episodes", self.alerts),
            "--set",
            &format!("alerts.dead-letter-topic={}", self.dlq),
            "--set",
            &format!("service.listen=127.0.0.1:{port}"),
            "--set",
            "verify.silent-after-ms=3000",
            "--set",
            "service.summary-interval-s=0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// Runs the verifier until it has read everything, and returns its output.
    fn verify_until_caught_up(&self) -> Output {
        self.verify_until_caught_up_with(&self.group, &support::registry_url())
    }

    fn verify_until_caught_up_with(&self, group: &str, registry: &str) -> Output {
        let out = Command::new(BIN)
            .args(self.verifier_args(group, registry))
            .arg("--until-caught-up")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "verifier failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn clean_traffic_gives_no_divergence() {
    support::require_services();
    let _turn = side_by_side();
    let run = Run::new("svc-clean");
    let m = run.simulate("clean", 40_000, &[]);
    assert!(faults(&m).is_empty());
    run.verify_until_caught_up();
    let a = alerts(&run.alerts);
    assert!(
        a.is_empty(),
        "a clean run published verdicts: {:#?}",
        &a[..a.len().min(5)]
    );
    let e = episode_records(&run.episodes());
    assert!(e.is_empty(), "a clean run published episodes: {e:#?}");
    assert!(read_all(&run.dlq).is_empty());
}

#[test]
fn the_incident_is_named_replica_table_versions_and_field() {
    support::require_services();
    let _turn = side_by_side();
    let run = Run::new("svc-incident");
    let m = run.simulate("incident", 60_000, &[]);
    run.verify_until_caught_up();
    let a = alerts(&run.alerts);
    assert!(
        a.iter().all(|x| x.replica == "replica-2"),
        "nothing about replica-1: {:#?}",
        a.iter()
            .filter(|x| x.replica != "replica-2")
            .collect::<Vec<_>>()
    );
    let drift: Vec<&Alert> = a.iter().filter(|x| x.kind == "SchemaDrift").collect();
    assert_eq!(drift.len(), 1, "{drift:#?}");
    let d = drift[0];
    assert_eq!(d.table.as_deref(), Some("orders"));
    assert_eq!((d.expected_version, d.actual_version), (Some(2), Some(1)));
    assert!(
        d.fields
            .contains(&("missing".to_string(), "currency".to_string())),
        "{:?}",
        d.fields
    );
    let first = faults(&m)
        .iter()
        .filter(|f| f["kind"] == "schema_drift")
        .map(|f| f["position"].as_u64().unwrap())
        .min()
        .unwrap();
    let (_, lo, hi) = d.window.unwrap();
    assert!(
        lo <= first && first <= hi,
        "drift reported on window {lo}..{hi}, first drifted event at {first}"
    );
    // Data mismatches exactly on the ranges of rows whose values were lost.
    let lost: BTreeSet<u64> = faults(&m)
        .iter()
        .filter(|f| f["detail"].as_str().unwrap_or("").contains("value lost"))
        .map(|f| range_of("orders", &f["key"]))
        .collect();
    let mismatched: BTreeSet<u64> = a
        .iter()
        .filter(|x| x.kind == "DataMismatch")
        .map(|x| x.range.unwrap())
        .collect();
    assert!(!lost.is_empty());
    assert_eq!(mismatched, lost);
    assert!(
        a.iter()
            .filter(|x| x.kind == "DataMismatch")
            .all(|x| x.table.as_deref() == Some("orders"))
    );

    // On the alert topic: one episode, the drift, which counts the mismatches it explains.
    let records = episode_records(&run.episodes());
    let latest = latest_episodes(&records);
    assert_eq!(latest.len(), 1, "one episode: {latest:#?}");
    let drift = latest.values().next().unwrap();
    assert_eq!(
        (
            drift.kind.as_str(),
            drift.replica.as_str(),
            drift.table.as_deref()
        ),
        ("SchemaDrift", "replica-2", Some("orders")),
        "{drift:#?}"
    );
    let mismatches = a.iter().filter(|x| x.kind == "DataMismatch").count() as i64;
    assert_eq!(
        drift.consequences,
        vec![("orders".to_string(), mismatches)],
        "the drift explains every mismatch of orders: {drift:#?}"
    );
    assert_eq!(records.first().map(|r| r.phase.as_str()), Some("Open"));
    assert!(
        records.len() <= 1 + drift.windows.max(1) as usize,
        "records: {records:#?}"
    );
    eprintln!(
        "incident: {} verdicts on the detail topic, {} records on the alert topic ({} episode)",
        a.len(),
        records.len(),
        latest.len()
    );
}

#[test]
fn every_fault_of_the_manifest_is_reported_and_nothing_else() {
    support::require_services();
    let _turn = side_by_side();
    let run = Run::new("svc-faults");
    let m = run.simulate("faults", 300_000, &[]);
    let out = run.verify_until_caught_up();
    let a = alerts(&run.alerts);
    check_faults_covered(&m, &a);
    check_episodes(&m, &a, &episode_records(&run.episodes()), "faults");
    // How soon after each verdict its keys were named (the log says it of every drill).
    let log = String::from_utf8_lossy(&out.stderr);
    let mut ms: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("keys named:"))
        .filter_map(|l| l.split(" in ").nth(1)?.split(" ms").next()?.parse().ok())
        .collect();
    ms.sort_unstable();
    assert!(!ms.is_empty(), "no drill: {log}");
    eprintln!(
        "faults: {} drills, verdict to keys named: median {} ms, max {} ms",
        ms.len(),
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    );

    // Poison records are on the dead-letter topic with their coordinates.
    let dlq = read_all(&run.dlq);
    let poison: Vec<&Json> = faults(&m)
        .into_iter()
        .filter(|f| f["kind"] == "poison")
        .collect();
    assert_eq!(dlq.len(), poison.len(), "one dead letter per poison record");
    for f in poison {
        let hit = dlq.iter().any(|msg| {
            let h = msg.headers().unwrap();
            let get = |k: &str| {
                h.iter()
                    .find(|x| x.key == k)
                    .and_then(|x| x.value)
                    .map(|v| String::from_utf8_lossy(v).to_string())
            };
            get("cdc-verifier.topic").as_deref() == f["topic"].as_str()
                && get("cdc-verifier.offset") == f["offset"].as_i64().map(|o| o.to_string())
                && get("cdc-verifier.error").is_some()
        });
        assert!(hit, "poison record {f} is not on the dead-letter topic");
    }
}

/// The alert topic tells every injected fault as an episode, in a few records each: its
/// opening, an update when it grew, its close.
fn check_episodes(m: &Json, a: &[Alert], records: &[EpisodeRecord], what: &str) {
    let latest = latest_episodes(records);
    let episodes: Vec<&EpisodeRecord> = latest.values().collect();
    let missed = faults_without_episode(m, &episodes);
    assert!(
        missed.is_empty(),
        "faults with no episode: {missed:#?}\n{episodes:#?}"
    );
    // Every data mismatch episode names its keys, and each is a key a fault of that replica
    // and table touched.
    for e in episodes.iter().filter(|e| e.kind == "DataMismatch") {
        assert!(!e.named_keys.is_empty(), "no key named: {e:#?}");
        // Each with its repair: a statement on that table, or a comment saying why not.
        for r in &e.repairs {
            let r = r.as_deref().unwrap_or_default();
            let table = format!("`{}`", e.table.as_deref().unwrap_or_default());
            assert!(
                r.contains(&table) || r.starts_with("--"),
                "repair {r:?} of {}",
                e.episode
            );
        }
        assert_eq!(e.repairs.len(), e.named_keys.len());
        for (k, _, _) in &e.named_keys {
            let k: Json = serde_json::from_str(k).unwrap();
            assert!(
                faults(m)
                    .iter()
                    .any(|f| f["replica"].as_str() == Some(e.replica.as_str())
                        && f["table"].as_str() == e.table.as_deref()
                        && f["key"] == k),
                "key {k} of {} is no fault's",
                e.episode
            );
        }
    }
    let named: usize = episodes.iter().map(|e| e.named_keys.len()).sum();
    let statements = episodes
        .iter()
        .flat_map(|e| &e.repairs)
        .filter(|r| r.as_deref().is_some_and(|r| !r.starts_with("--")))
        .count();
    assert!(
        named == 0 || statements > 0,
        "no repair statement among {named} keys"
    );
    eprintln!("{what}: {named} keys named, {statements} with a repair statement");
    for e in &episodes {
        let own = records.iter().filter(|r| r.episode == e.episode).count();
        assert!(
            own <= 4,
            "{} records for episode {}: {:#?}",
            own,
            e.episode,
            records
                .iter()
                .filter(|r| r.episode == e.episode)
                .collect::<Vec<_>>()
        );
    }
    eprintln!(
        "{what}: {} faults, {} verdicts on the detail topic, {} records on the alert topic for {} episodes",
        faults(m).len(),
        a.len(),
        records.len(),
        episodes.len()
    );
}

fn check_faults_covered(m: &Json, a: &[Alert]) {
    let s = score(m, a);
    assert!(s.missed.is_empty(), "faults not reported: {:#?}", s.missed);
    assert!(
        s.unexplained.is_empty(),
        "divergences no fault explains: {:#?}",
        s.unexplained
    );
}

/// (kind, replica, table, range, window) of an alert.
type AlertKey = (String, String, Option<String>, Option<u64>, Option<i64>);

fn alert_keys(a: &[Alert]) -> BTreeSet<AlertKey> {
    a.iter()
        .filter(|x| x.kind != "Recovered")
        .map(|x| {
            (
                x.kind.clone(),
                x.replica.clone(),
                x.table.clone(),
                x.range,
                x.window.map(|w| w.0),
            )
        })
        .collect()
}

#[test]
fn a_crash_and_restart_reaches_the_same_verdicts() {
    support::require_services();
    let _turn = side_by_side();
    let run = Run::new("svc-crash");
    // A backlog large enough that the verifier is killed halfway through it, after it has
    // committed some of it and published some verdicts.
    let m = run.simulate("incident", 400_000, &[]);
    let mut child: Child = Command::new(BIN)
        .args(run.verifier_args(&run.group, &support::registry_url()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed as soon as its first verdict is on the alert topic: mid-way through the backlog.
    wait_for_first_record(&run.alerts, Duration::from_secs(60));
    child.kill().unwrap(); // SIGKILL: no drain, no final commit
    child.wait().unwrap();
    assert!(!faults(&m).is_empty());
    let before = alerts(&run.alerts).len();
    // Restarted under the same group, it resumes from the committed offsets.
    run.verify_until_caught_up();
    let crashed_alerts = alerts(&run.alerts);
    assert!(
        before > 0 && before < crashed_alerts.len(),
        "killed halfway: {before} verdicts before the crash, {} after the restart",
        crashed_alerts.len()
    );
    let crashed = alert_keys(&crashed_alerts);

    // The same topics verified in one go, under another group and alert topic.
    let clean = Run {
        prefix: run.prefix.clone(),
        alerts: format!("{}alerts-2", run.prefix),
        dlq: format!("{}dead-letter-2", run.prefix),
        group: format!("{}group-2", run.prefix),
    };
    clean.verify_until_caught_up();
    let clean_alerts = alerts(&clean.alerts);
    let uninterrupted = alert_keys(&clean_alerts);
    assert!(!uninterrupted.is_empty());
    assert!(
        crashed == uninterrupted,
        "a crash lost or invented verdicts: lost {:?}, new {:?}",
        uninterrupted.difference(&crashed).collect::<Vec<_>>(),
        crashed.difference(&uninterrupted).collect::<Vec<_>>()
    );
    // The records' Kafka keys too: a verdict published twice is the same record.
    let raw = |a: &[Alert]| {
        a.iter()
            .filter(|x| x.kind != "Recovered")
            .map(|x| x.key.clone())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(raw(&crashed_alerts), raw(&clean_alerts));
}

/// The verifier run with `args`, its log going to a file: a pipe nobody reads while it runs
/// could fill up.
fn spawn_logged(args: &[String], log_path: &std::path::Path) -> Child {
    Command::new(BIN)
        .args(args)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log_path).unwrap())
        .spawn()
        .unwrap()
}

/// Stops it as an orchestrator does (SIGTERM; it must be gone within 40 s): how it exited,
/// and its log.
fn sigterm(mut child: Child, log_path: &std::path::Path) -> (std::process::ExitStatus, String) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not stop the verifier"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, std::fs::read_to_string(log_path).unwrap())
}

fn wait_for_first_record(topic: &str, timeout: Duration) {
    let c = support::consumer(&support::unique_name("watch"), "read_committed");
    let deadline = Instant::now() + timeout;
    loop {
        assert!(Instant::now() < deadline, "nothing reached {topic}");
        let parts = c
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .map(|md| md.topics()[0].partitions().len())
            .unwrap_or(0);
        if parts > 0 {
            let mut tpl = rdkafka::TopicPartitionList::new();
            for p in 0..parts as i32 {
                tpl.add_partition_offset(topic, p, rdkafka::Offset::Beginning)
                    .unwrap();
            }
            c.assign(&tpl).unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    while Instant::now() < deadline {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(20)) {
            return;
        }
    }
    panic!("nothing reached {topic}");
}

/// An HTTP proxy in front of the registry (one request per connection) that goes down for a
/// while at the first schema look-up by id: connections are then closed without an answer.
struct FlakyRegistry {
    port: u16,
    outages: Arc<std::sync::atomic::AtomicUsize>,
}

impl FlakyRegistry {
    fn start(target: &str, outage: Duration) -> FlakyRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let outages = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (target, o) = (target.to_string(), outages.clone());
        std::thread::spawn(move || {
            let mut down_until: Option<Instant> = None;
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let Some(request) = read_request(&mut client) else {
                    continue;
                };
                let head = String::from_utf8_lossy(&request[..request.len().min(200)]).to_string();
                if down_until.is_none()
                    && head.starts_with("GET ")
                    && head.contains("/schemas/ids/")
                {
                    down_until = Some(Instant::now() + outage);
                    o.fetch_add(1, Ordering::SeqCst);
                }
                if down_until.is_some_and(|t| Instant::now() < t) {
                    continue; // dropped: the client sees the connection closed
                }
                let Ok(mut server) = TcpStream::connect(&target) else {
                    continue;
                };
                let request = force_close(&request);
                if server.write_all(&request).is_err() {
                    continue;
                }
                let mut response = Vec::new();
                let _ = server.read_to_end(&mut response);
                let _ = client.write_all(&response);
            }
        });
        FlakyRegistry { port, outages }
    }

    fn url(&self) -> String {
        let base = support::registry_url();
        let path = base
            .splitn(4, '/')
            .nth(3)
            .map(|p| format!("/{p}"))
            .unwrap_or_default();
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

fn read_request(c: &mut TcpStream) -> Option<Vec<u8>> {
    c.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = c.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = c.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Some(buf);
        }
    }
}

/// Rewrites the request to close the upstream connection after the answer.
fn force_close(req: &[u8]) -> Vec<u8> {
    let end = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&req[..end]);
    let mut out: Vec<String> = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(str::to_string)
        .collect();
    out.push("Connection: close".into());
    let mut bytes = out.join("\r\n").into_bytes();
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(&req[end + 4..]);
    bytes
}

#[test]
fn a_registry_outage_pauses_and_resumes_without_false_verdicts_or_dead_letters() {
    support::require_services();
    let _turn = side_by_side();
    let run = Run::new("svc-outage");
    let m = run.simulate("clean", 30_000, &[]);
    assert!(faults(&m).is_empty());
    let hostport = support::registry_url()
        .split('/')
        .nth(2)
        .unwrap()
        .to_string();
    // The registry goes away for 6 s at the verifier's first schema look-up: no schema id
    // is known to it while the outage lasts.
    let registry = FlakyRegistry::start(&hostport, Duration::from_secs(6));
    let started = Instant::now();
    let out = run.verify_until_caught_up_with(&run.group, &registry.url());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(registry.outages.load(Ordering::SeqCst), 1);
    assert!(
        started.elapsed() >= Duration::from_secs(6),
        "the verifier waited for the registry"
    );
    assert!(
        err.contains("registry unavailable"),
        "the outage was noticed: {err}"
    );
    assert!(
        err.contains("partition resumed"),
        "processing resumed: {err}"
    );
    let a = alerts(&run.alerts);
    assert!(a.is_empty(), "false verdicts after an outage: {a:#?}");
    assert!(
        read_all(&run.dlq).is_empty(),
        "nothing is dead-lettered for a transient error"
    );
    let events: u64 = err
        .lines()
        .filter(|l| l.contains("stopped cleanly"))
        .find_map(|l| {
            l.split("events=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(0);
    assert!(
        events > 30_000,
        "every record was verified after the outage: {err}"
    );
}

#[test]
fn sigterm_drains_commits_and_exits_zero() {
    support::require_services();
    let _turn = side_by_side();
    let run = Run::new("svc-sigterm");
    run.simulate("clean", 30_000, &[]);
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("verifier.log");
    let child = spawn_logged(
        &run.verifier_args(&run.group, &support::registry_url()),
        &log_path,
    );
    std::thread::sleep(Duration::from_secs(8));
    let (status, err) = sigterm(child, &log_path);
    assert!(status.success(), "exit {status:?}: {err}");
    assert!(err.contains("stopped cleanly"), "{err}");
    // It committed what it verified: a restart under the same group reads little or nothing again.
    let out = run.verify_until_caught_up();
    let again = String::from_utf8_lossy(&out.stderr);
    let events: u64 = again
        .lines()
        .find_map(|l| {
            l.split("events=")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(u64::MAX);
    assert!(
        events < 20_000,
        "after a clean stop, the restart re-read {events} events: {again}"
    );
    assert!(alerts(&run.alerts).is_empty());
}

/// Stopped while its traffic goes on and started again after it ended, the verifier continues
/// the episodes it left open — under their keys, each opened once — and the alert topic ends
/// as after one uninterrupted run: the same episodes, none left open beside its continuation.
#[test]
fn a_restart_continues_the_open_episodes_under_their_keys() {
    support::require_services();
    let _turn = alone();
    let run = Run::new("svc-resume");
    // Kept after the run: the three verifiers' logs and the manifest, for a failure to be
    // studied.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("service-resume");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = dir.join("manifest.json");
    // 12 s of paced traffic.
    let mut sim = run.simulate_paced(240_000, 20_000, &manifest, Stdio::null());
    std::thread::sleep(Duration::from_secs(2));
    let log_path = dir.join("verifier.log");
    let child = spawn_logged(
        &run.verifier_args(&run.group, &support::registry_url()),
        &log_path,
    );
    // Stopped once it has told a fault, while the traffic goes on.
    wait_for_first_record(&run.episodes(), Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let (status, log) = sigterm(child, &log_path);
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(sim.wait().unwrap().success(), "simulate failed");
    let before = keyed_episode_records(&run.episodes());
    let open_before = latest_episodes(&before.iter().map(|(_, r)| r.clone()).collect::<Vec<_>>())
        .values()
        .filter(|e| e.phase != "Close")
        .count();
    let out = run.verify_until_caught_up();
    std::fs::write(dir.join("restarted.log"), &out.stderr).unwrap();
    let again = String::from_utf8_lossy(&out.stderr);
    let records = keyed_episode_records(&run.episodes());
    assert!(
        open_before > 0 && records.len() > before.len(),
        "stopped mid-way: {open_before} episodes open at the stop, {} records before, {} after\n{log}",
        before.len(),
        records.len()
    );
    assert!(
        again.contains(&format!("continuing {open_before} episodes left open")),
        "{again}"
    );

    // Each episode under one key, opened once.
    let mut keys: std::collections::BTreeMap<&str, BTreeSet<&[u8]>> = Default::default();
    for (k, r) in &records {
        keys.entry(r.episode.as_str())
            .or_default()
            .insert(k.as_slice());
    }
    let split: Vec<_> = keys.iter().filter(|(_, k)| k.len() > 1).collect();
    assert!(split.is_empty(), "episodes under several keys: {split:?}");
    for e in keys.keys() {
        let opened = records
            .iter()
            .filter(|(_, r)| r.episode == *e && r.phase == "Open")
            .count();
        assert_eq!(opened, 1, "episode {e} opened {opened} times");
    }
    // No fault left open twice: one episode at most per (replica, table, kind).
    let all: Vec<EpisodeRecord> = records.into_iter().map(|(_, r)| r).collect();
    let latest = latest_episodes(&all);
    let mut open = BTreeSet::new();
    for e in latest.values().filter(|e| e.phase != "Close") {
        assert!(
            open.insert((e.replica.clone(), e.table.clone(), e.kind.clone())),
            "a second episode open for {} {:?} {}: {latest:#?}",
            e.replica,
            e.table,
            e.kind
        );
    }

    // The same topics in one go, under another group and alert topic: the same episodes of
    // the tables' data and schemas.
    let clean = Run {
        prefix: run.prefix.clone(),
        alerts: format!("{}alerts-2", run.prefix),
        dlq: format!("{}dead-letter-2", run.prefix),
        group: format!("{}group-2", run.prefix),
    };
    let out = clean.verify_until_caught_up();
    std::fs::write(dir.join("uninterrupted.log"), &out.stderr).unwrap();
    let uninterrupted = latest_episodes(&episode_records(&clean.episodes()));
    // A silence is judged by the clock, which moves with how the records were read (live,
    // or as a backlog): a replica table that stopped sending is told as StreamSilent in one
    // run, as the mismatches of the changes it lacks in the other (docs/known-issues.md).
    // Those tables are left out of the comparison, but each is told in both runs.
    let silent_in = |l: &std::collections::BTreeMap<String, EpisodeRecord>| {
        l.values()
            .filter(|e| e.kind == "StreamSilent")
            .map(|e| (e.replica.clone(), e.table.clone()))
            .collect::<BTreeSet<_>>()
    };
    let silent: BTreeSet<(String, Option<String>)> =
        &silent_in(&latest) | &silent_in(&uninterrupted);
    for (replica, table) in &silent {
        for (run, l) in [("restarted", &latest), ("uninterrupted", &uninterrupted)] {
            assert!(
                l.values().any(|e| &e.replica == replica
                    && &e.table == table
                    && (e.kind == "StreamSilent" || e.kind == "DataMismatch")),
                "{replica} {table:?} silent in one run, and nothing told of it in the {run} \
                 one: {l:#?}"
            );
        }
    }
    let tables = |l: &std::collections::BTreeMap<String, EpisodeRecord>| {
        l.values()
            .filter(|e| e.kind == "DataMismatch" || e.kind == "SchemaDrift")
            .filter(|e| !silent.contains(&(e.replica.clone(), e.table.clone())))
            .map(|e| (e.episode.clone(), e.phase == "Close"))
            .collect::<BTreeSet<_>>()
    };
    let (resumed, whole) = (tables(&latest), tables(&uninterrupted));
    if resumed != whole {
        // The whole of both, beside the logs; the difference, with each episode's summary.
        std::fs::write(
            dir.join("episodes.txt"),
            format!("resumed:\n{latest:#?}\nuninterrupted:\n{uninterrupted:#?}\n"),
        )
        .unwrap();
        let said = |l: &std::collections::BTreeMap<String, EpisodeRecord>,
                    only: &BTreeSet<(String, bool)>| {
            only.iter()
                .map(|(e, _)| format!("  {} {}", l[e].phase, l[e].summary))
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "the restarted run's episodes differ from one uninterrupted run's (all of both in \
             {}):\nonly after the restart:\n{}\nonly uninterrupted:\n{}",
            dir.join("episodes.txt").display(),
            said(&latest, &resumed.difference(&whole).cloned().collect()),
            said(
                &uninterrupted,
                &whole.difference(&resumed).cloned().collect()
            ),
        );
    }
    eprintln!(
        "restart: {open_before} episodes open at the stop, continued; {} episodes in all, as \
         in one uninterrupted run",
        latest.len()
    );
}

/// The value of an unlabelled metric on the verifier's `/metrics`.
fn metric(port: u16, name: &str) -> Option<f64> {
    let body = support::http()
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .ok()?
        .text()
        .ok()?;
    body.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

#[test]
fn live_paced_traffic_is_verified_as_it_arrives() {
    support::require_services();
    let _turn = alone();
    let run = Run::new("svc-live");
    // The simulator produces at a steady rate while the verifier follows it: partitions go
    // quiet and come back, records of one moment land in different partitions at different
    // times — none of which may look like a divergence.
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.json");
    let sim_log = std::fs::File::create(dir.path().join("simulate.log")).unwrap();
    let mut sim = run.simulate_paced(100_000, 10_000, &manifest, sim_log.into());
    wait_for_first_record(
        &format!("{}replica-2.shop.orders", run.prefix),
        Duration::from_secs(60),
    );
    let mut args = run.verifier_args(&run.group, &support::registry_url());
    // On two cores shared with the broker, producers here hold records back longer than the
    // default verify.publish-skew-ms allows for (the verifier says so when it happens); the
    // setting is raised as an operator would.
    args.extend([
        "--set".to_string(),
        "verify.publish-skew-ms=2000".to_string(),
    ]);
    let port: u16 = args
        .iter()
        .find_map(|a| a.strip_prefix("service.listen=127.0.0.1:"))
        .unwrap()
        .parse()
        .unwrap();
    let log_path = dir.path().join("verifier.log");
    let verifier = spawn_logged(&args, &log_path);
    let status = sim.wait().unwrap();
    assert!(
        status.success(),
        "simulate failed: {}",
        std::fs::read_to_string(dir.path().join("simulate.log")).unwrap()
    );
    // Compared as it arrived: a few seconds after the last record, nearly every window is.
    std::thread::sleep(Duration::from_secs(4));
    let compared = metric(port, "cdc_verifier_windows_compared_total").unwrap_or(0.0);
    let late = metric(port, "cdc_verifier_late_records_total");
    let (stopped, log) = sigterm(verifier, &log_path);
    assert!(stopped.success(), "exit {stopped:?}: {log}");
    assert_eq!(
        late,
        Some(0.0),
        "records came after their window was compared: {log}"
    );
    let m: Json = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    // Windows of 200 ms of commit time; commit times in whole seconds (as MariaDB's binlog
    // gives them, the simulator's default) make one window a second.
    let window_ms = if m["whole_second_source_ts"].as_bool().unwrap_or(false) {
        1000
    } else {
        200
    };
    let windows = (m["end_timestamp_ms"].as_i64().unwrap()
        - m["start_timestamp_ms"].as_i64().unwrap())
        / window_ms;
    assert!(
        compared >= windows as f64,
        "{compared} windows compared live, of about {windows} per replica"
    );
    // What the live run left open is finished by a restart; together they report every fault
    // and nothing else.
    run.verify_until_caught_up();
    check_faults_covered(&m, &alerts(&run.alerts));
}
