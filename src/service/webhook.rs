//! Episodes published to an Alertmanager (`alerts.alertmanager-url`): each open episode an
//! alert (labels `alertname`, `replica`, `table`, `kind`, `severity`, `verifier`,
//! `episode`; the instance posting it is an annotation), posted when it opens or
//! changes and again every minute while it lasts (Alertmanager resolves an alert not posted
//! again within its `resolve_timeout`), and posted resolved (`endsAt`) when it closes. A
//! sender thread posts; the main loop only hands it the latest state of each episode, so an
//! Alertmanager that is down delays nothing else and the newest state wins.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use cdc_verifier_core::episodes::{EpisodeEvent, Phase};
use cdc_verifier_core::time::format_utc;
use cdc_verifier_core::verdict::Kind;
use serde_json::{Value as Json, json};

/// How often a firing alert is posted again.
const RESEND: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Shared {
    /// Episode key → (alert, resolved, posted since it last changed).
    alerts: BTreeMap<String, (Json, bool, bool)>,
    stop: bool,
}

/// The hand-off to the sender thread.
pub struct Webhook {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Posts that failed (each try), and that succeeded.
    pub stats: Arc<Mutex<(u64, u64)>>,
}

/// The severity Alertmanager routes on: a replica serving wrong data (or unable to be
/// checked for it) pages; lag, silence and poison records warn.
fn severity(kind: Kind) -> &'static str {
    match kind {
        Kind::DataMismatch | Kind::SchemaDrift => "critical",
        _ => "warning",
    }
}

fn alert(e: &EpisodeEvent, verifier: &str, instance: &str, generator: &str) -> Json {
    let ep = &e.episode;
    let mut a = json!({
        // The labels are the alert's identity: the same whichever instance posts it (a
        // table handed to another instance goes on as the same alert).
        "labels": {
            "alertname": "CdcVerifierEpisode",
            "replica": ep.replica,
            "table": ep.table.as_deref().unwrap_or("*"),
            "kind": ep.kind.to_string(),
            "severity": severity(ep.kind),
            "verifier": verifier,
            // Each episode its own alert: a fault that ends and comes back is a new one.
            "episode": e.key,
        },
        "annotations": {
            "summary": ep.summary(),
            "instance": instance,
        },
        "startsAt": format_utc(ep.opened_at_ms),
        "generatorURL": generator,
    });
    if let Some(closed) = ep.closed_at_ms {
        // A close stamped before its opening (clocks apart) still resolves it now.
        a["endsAt"] = json!(format_utc(closed.max(ep.opened_at_ms + 1)));
    }
    a
}

impl Webhook {
    pub fn start(url: &str, timeout: Duration) -> anyhow::Result<Webhook> {
        let endpoint = format!("{}/api/v2/alerts", url.trim_end_matches('/'));
        let client = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .build()?;
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let stats = Arc::new(Mutex::new((0, 0)));
        let (s, st) = (shared.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("alertmanager".into())
            .spawn(move || send_loop(&client, &endpoint, &s, &st))?;
        Ok(Webhook {
            shared,
            thread: Some(thread),
            stats,
        })
    }

    /// Hands over what changed: the newest state of each episode replaces the one waiting.
    pub fn push(&self, events: &[EpisodeEvent], verifier: &str, instance: &str, generator: &str) {
        if events.is_empty() {
            return;
        }
        let (m, cv) = &*self.shared;
        let mut s = m.lock().unwrap();
        for e in events {
            let resolved = e.phase == Phase::Close;
            s.alerts.insert(
                e.key.clone(),
                (alert(e, verifier, instance, generator), resolved, false),
            );
        }
        cv.notify_one();
    }

    /// Posts what waits, for at most `bound`, and stops the sender.
    pub fn stop(&mut self, bound: Duration) {
        let until = Instant::now() + bound;
        while Instant::now() < until {
            let pending = self.shared.0.lock().unwrap().alerts.values().any(|a| !a.2);
            if !pending {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.shared.0.lock().unwrap().stop = true;
        self.shared.1.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn send_loop(
    client: &reqwest::blocking::Client,
    endpoint: &str,
    shared: &(Mutex<Shared>, Condvar),
    stats: &Mutex<(u64, u64)>,
) {
    let (m, cv) = shared;
    let mut last_full = Instant::now();
    let mut failing = false;
    let mut backoff = Duration::from_millis(500);
    loop {
        let full;
        let batch: Vec<(String, Json, bool)> = {
            let mut s = m.lock().unwrap();
            while !s.stop && s.alerts.values().all(|a| a.2) && last_full.elapsed() < RESEND {
                let wait = RESEND.saturating_sub(last_full.elapsed());
                s = cv.wait_timeout(s, wait).unwrap().0;
            }
            if s.stop {
                return;
            }
            full = last_full.elapsed() >= RESEND;
            s.alerts
                .iter()
                .filter(|(_, a)| !a.2 || (full && !a.1))
                .map(|(k, a)| (k.clone(), a.0.clone(), a.1))
                .collect()
        };
        if batch.is_empty() {
            last_full = Instant::now();
            continue;
        }
        let body = Json::Array(batch.iter().map(|b| b.1.clone()).collect());
        let res = client
            .post(endpoint)
            .json(&body)
            .send()
            .and_then(|r| r.error_for_status());
        match res {
            Ok(_) => {
                stats.lock().unwrap().1 += 1;
                if failing {
                    tracing::info!(url = endpoint, "posting to Alertmanager again");
                    failing = false;
                }
                backoff = Duration::from_millis(500);
                if full {
                    last_full = Instant::now();
                }
                let mut s = m.lock().unwrap();
                for (k, a, resolved) in batch {
                    match s.alerts.get(&k) {
                        // Still the state posted: done; resolved ones are forgotten.
                        Some(cur) if cur.0 == a && resolved => {
                            s.alerts.remove(&k);
                        }
                        Some(cur) if cur.0 == a => {
                            s.alerts.get_mut(&k).unwrap().2 = true;
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                stats.lock().unwrap().0 += 1;
                if !failing {
                    tracing::warn!(url = endpoint, error = %e, "cannot post episodes to Alertmanager: kept and tried again");
                    failing = true;
                }
                // The whole pause: new episodes handed over meanwhile wait for its end.
                let until = Instant::now() + backoff;
                let mut s = m.lock().unwrap();
                while !s.stop && Instant::now() < until {
                    let left = until.saturating_duration_since(Instant::now());
                    s = cv.wait_timeout(s, left).unwrap().0;
                }
                if s.stop {
                    return;
                }
                drop(s);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use cdc_verifier_core::episodes::EpisodeState;

    use super::*;

    fn event(phase: Phase, closed: Option<i64>) -> EpisodeEvent {
        EpisodeEvent {
            phase,
            key: "replica-1/orders/DataMismatch/w3".into(),
            episode: EpisodeState {
                replica: "replica-1".into(),
                table: Some("orders".into()),
                kind: Kind::DataMismatch,
                opened_at_ms: 1_700_000_000_000,
                last_at_ms: 1_700_000_000_000,
                closed_at_ms: closed,
                first_position: None,
                last_position: None,
                verdicts: 1,
                ranges: 1,
                unrecovered_ranges: 1,
                windows: 1,
                keys: 0,
                sample_keys: Vec::new(),
                named_keys: Vec::new(),
                keys_truncated: false,
                consequences: Default::default(),
                latest: String::new(),
            },
        }
    }

    /// The alerts a real Alertmanager holds active, by their episode label.
    fn active(url: &str) -> Vec<String> {
        let v: Json = reqwest::blocking::get(format!("{url}/api/v2/alerts?active=true"))
            .unwrap()
            .json()
            .unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["status"]["state"] == "active")
            .map(|a| a["labels"]["episode"].as_str().unwrap().to_string())
            .collect()
    }

    fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(20);
        while !ok() {
            assert!(Instant::now() < until, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn an_episode_fires_in_a_real_alertmanager_and_its_close_resolves_it() {
        let bin = "/usr/bin/prometheus-alertmanager";
        assert!(
            std::path::Path::new(bin).is_file(),
            "{bin} is missing: install Debian's prometheus-alertmanager (scripts/install-test-deps)"
        );
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("am.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n",
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut am = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let result = std::panic::catch_unwind(|| {
            wait_for("Alertmanager is ready", || {
                reqwest::blocking::get(format!("{url}/-/ready"))
                    .is_ok_and(|r| r.status().is_success())
            });
            let mut w = Webhook::start(&url, Duration::from_secs(5)).unwrap();
            w.push(
                &[event(Phase::Open, None)],
                "verifiers",
                "here",
                "http://x/metrics",
            );
            wait_for("the episode fires", || {
                active(&url) == ["replica-1/orders/DataMismatch/w3"]
            });
            // Its table handed to another instance of the verifier: the same alert goes on.
            w.push(
                &[event(Phase::Update, None)],
                "verifiers",
                "there",
                "http://x/metrics",
            );
            wait_for("the update is posted", || w.stats.lock().unwrap().1 == 2);
            assert_eq!(active(&url), ["replica-1/orders/DataMismatch/w3"]);
            w.push(
                &[event(Phase::Close, Some(1_700_000_060_000))],
                "verifiers",
                "there",
                "http://x/metrics",
            );
            wait_for("the episode is resolved", || active(&url).is_empty());
            w.stop(Duration::from_secs(5));
            assert_eq!(*w.stats.lock().unwrap(), (0, 3), "(failed, accepted) posts");
        });
        let _ = am.kill();
        let _ = am.wait();
        if let Err(e) = result {
            std::panic::resume_unwind(e);
        }
    }
}
