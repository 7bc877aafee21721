//! Episodes posted to a real Prometheus Alertmanager (Debian's `prometheus-alertmanager`,
//! installed by `scripts/install-test-deps`), started by the test: the verifier runs over
//! simulated traffic with known faults, and Alertmanager's active alerts are then exactly the
//! episodes the alert topic holds open, with their labels. (A closed episode resolved: the
//! test of `service::webhook`.)

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::verdicts::{episode_records, latest_episodes};

const BIN: &str = env!("CARGO_BIN_EXE_cdc-verifier");

/// Alertmanager, killed when dropped (a failing test too).
struct Alertmanager {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn alertmanager() -> Alertmanager {
    let bin = PathBuf::from("/usr/bin/prometheus-alertmanager");
    assert!(
        bin.is_file(),
        "{} is missing: install Debian's prometheus-alertmanager package, e.g. with \
         scripts/install-test-deps (scripts/test runs it)",
        bin.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: nobody\n  group_wait: 1s\nreceivers:\n  - name: nobody\n",
    )
    .unwrap();
    let port = free_port();
    let child = Command::new(&bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let am = Alertmanager {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = support::http()
            .get(format!("{}/-/ready", am.url))
            .send()
            .is_ok_and(|r| r.status().is_success());
        if ready {
            return am;
        }
        assert!(Instant::now() < deadline, "Alertmanager did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (replica, table, kind) of Alertmanager's active alerts.
fn active(am: &Alertmanager) -> BTreeSet<(String, String, String)> {
    let alerts: Json = support::http()
        .get(format!("{}/api/v2/alerts?active=true", am.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    alerts
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"]["state"] == "active")
        .map(|a| {
            let l = &a["labels"];
            assert_eq!(l["alertname"], "CdcVerifierEpisode", "{a:#}");
            assert!(
                l["severity"] == "critical" || l["severity"] == "warning",
                "{a:#}"
            );
            let s = |k: &str| l[k].as_str().unwrap().to_string();
            (s("replica"), s("table"), s("kind"))
        })
        .collect()
}

#[test]
fn open_episodes_are_the_active_alerts_in_alertmanager() {
    support::require_services();
    let am = alertmanager();
    let prefix = format!("{}-", support::unique_name("am"));
    let alerts = format!("{prefix}alerts");
    let manifest = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["simulate", "--scenario", "faults", "--events", "100000"])
        .args(["--topic-prefix", &prefix, "--partitions", "4"])
        .args(["--bootstrap-servers", &support::bootstrap()])
        .args(["--registry-url", &support::registry_url()])
        .arg("--manifest")
        .arg(manifest.path().join("m.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let started = Instant::now();
    let out = Command::new(BIN)
        .args(["run", "--until-caught-up", "--topic-prefix", &prefix])
        .args(["--group-id", &format!("{prefix}group")])
        .args(["--bootstrap-servers", &support::bootstrap()])
        .args(["--registry-url", &support::registry_url()])
        .args(["--set", &format!("alerts.topic={alerts}")])
        .args(["--set", &format!("alerts.dead-letter-topic={prefix}dlq")])
        .args(["--set", &format!("alerts.alertmanager-url={}", am.url)])
        .args([
            "--set",
            &format!("service.listen=127.0.0.1:{}", free_port()),
        ])
        .args(["--set", "verify.silent-after-ms=3000"])
        .args(["--set", "service.summary-interval-s=0"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verifier failed: {log}");
    assert!(!log.contains("cannot post episodes"), "{log}");

    let latest = latest_episodes(&episode_records(&alerts));
    let label = |e: &support::verdicts::EpisodeRecord| {
        (
            e.replica.clone(),
            e.table.clone().unwrap_or_else(|| "*".into()),
            e.kind.clone(),
        )
    };
    let open: BTreeSet<_> = latest
        .values()
        .filter(|e| e.phase != "Close")
        .map(label)
        .collect();
    let closed: BTreeSet<_> = latest
        .values()
        .filter(|e| e.phase == "Close")
        .map(label)
        .collect();
    assert!(
        !open.is_empty(),
        "the faults leave episodes open: {latest:#?}"
    );
    let firing = active(&am);
    assert_eq!(
        firing, open,
        "Alertmanager's active alerts are the open episodes"
    );
    eprintln!(
        "alertmanager: {} alerts firing, {} episodes closed, {:.1} s from the start \
         of the run",
        firing.len(),
        closed.len(),
        started.elapsed().as_secs_f64()
    );
}
