//! The chaos suite: `cdc-verifier run` on live simulated traffic carrying known data faults,
//! while what it runs on fails — the broker killed, the registry hanging, the alert topic
//! deleted, the verifier itself killed, a replica's connector silent for a minute. Whatever
//! happens, every data fault of the simulator's manifest is reported, nothing else is, every
//! poison record reaches the dead-letter topic, and the verifier recovers on its own.
//!
//! It runs on a broker and registry of its own (other ports, state in `.services/chaos`), which
//! it kills and starts, and prints a line per scenario and then
//! `chaos: <N> scenarios, <F> faults, alerted <A>, lost <L>, false <X>, max recovery <S> s`.
//! `scripts/chaos` runs it; `CDC_VERIFIER_CHAOS=broker-kill,verifier-kill` picks scenarios
//! (default: all), `CDC_VERIFIER_CHAOS_EVENTS` sizes the traffic (default 30000 events at 1500
//! a second), `CDC_VERIFIER_CHAOS_PLACE_BY` (`hash`, `load`) how sharing instances place the
//! tables (default: the configuration's). `scripts/test` runs it like every test.

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use support::verdicts::{
    Alert, EpisodeRecord, alerts, episode_records, faults_without_episode, latest_episodes,
    read_all, score,
};

const BIN: &str = env!("CARGO_BIN_EXE_cdc-verifier");

/// How long the verifier may take to be healthy and reading again after a fault ends.
const RECOVERY_BOUND: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// kill -9 the broker, start it again 5 s later on its data.
    BrokerKill,
    /// The registry stops answering (SIGSTOP) for longer than the verifier's retry ceiling.
    RegistryHang,
    /// The alert topic deleted under the running verifier.
    AlertTopicDeleted,
    /// kill -9 the verifier while it publishes, start it again.
    VerifierKill,
    /// The replicas' connectors start a minute after the primary's, then catch up.
    ReplicaSilent,
    /// Halfway, the primary fails over to a new MySQL server: GTIDs of a new server uuid,
    /// whose sequence starts again at 1.
    Failover,
    /// A record of the primary written again, stamped an hour ahead of the wall clock.
    FutureRecord,
    /// The replicas' connectors start 15 s late and create their topics at their first
    /// record, as Kafka Connect does: the verifier is running when they appear.
    LateTopic,
    /// Three verifiers share the tables as three shards (`[scale]`); one is killed (kill -9)
    /// and started again 15 s later: the others take its shard over, then give it back.
    ShardedKill,
    /// Three verifiers share the tables as three shards; each is stopped (SIGTERM) and started
    /// again in turn, as a rolling deploy does.
    RollingRestart,
}

/// Verifiers sharing the tables, and shards, in the scenarios that have several.
const SHARED: usize = 3;

const ALL: [(&str, Fault); 10] = [
    ("broker-kill", Fault::BrokerKill),
    ("registry-hang", Fault::RegistryHang),
    ("alert-topic-deleted", Fault::AlertTopicDeleted),
    ("verifier-kill", Fault::VerifierKill),
    ("replica-silent", Fault::ReplicaSilent),
    ("failover", Fault::Failover),
    ("future-record", Fault::FutureRecord),
    ("late-topic", Fault::LateTopic),
    ("sharded-kill", Fault::ShardedKill),
    ("rolling-restart", Fault::RollingRestart),
];

/// What one scenario came to.
struct Outcome {
    name: &'static str,
    faults: usize,
    alerted: usize,
    lost: Vec<String>,
    false_alerts: Vec<String>,
    recovery: Option<Duration>,
    /// Verdicts (detail topic), and the alert topic's records and episodes.
    verdicts: usize,
    episode_records: usize,
    episodes: usize,
}

#[test]
fn chaos() {
    let chosen = std::env::var("CDC_VERIFIER_CHAOS").unwrap_or_default();
    let chosen = match chosen.trim() {
        "" | "all" => ALL.map(|(n, _)| n).join(","),
        some => some.to_string(),
    };
    let scenarios: Vec<(&'static str, Fault)> = ALL
        .iter()
        .copied()
        .filter(|(name, _)| chosen.split(',').any(|c| c.trim() == *name))
        .collect();
    assert!(
        !scenarios.is_empty(),
        "CDC_VERIFIER_CHAOS={chosen:?} names none of {:?}",
        ALL.map(|(n, _)| n)
    );
    let pair = Pair::up();
    let mut outcomes = Vec::new();
    for (name, fault) in scenarios {
        let o = run_scenario(&pair, name, fault);
        println!(
            "chaos scenario {name}: faults {}, alerted {}, lost {}, false {}, recovery {}, \
             verdicts {} in {} episodes ({} alert records)",
            o.faults,
            o.alerted,
            o.lost.len(),
            o.false_alerts.len(),
            o.recovery.map_or("none within bound".into(), |d| format!(
                "{:.1} s",
                d.as_secs_f64()
            )),
            o.verdicts,
            o.episodes,
            o.episode_records,
        );
        outcomes.push(o);
    }
    let sum = |f: fn(&Outcome) -> usize| outcomes.iter().map(f).sum::<usize>();
    let max_recovery = outcomes
        .iter()
        .filter_map(|o| o.recovery)
        .max()
        .unwrap_or_default();
    println!(
        "chaos: {} scenarios, {} faults, alerted {}, lost {}, false {}, max recovery {:.0} s; \
         {} verdicts in {} episodes, {} alert records",
        outcomes.len(),
        sum(|o| o.faults),
        sum(|o| o.alerted),
        sum(|o| o.lost.len()),
        sum(|o| o.false_alerts.len()),
        max_recovery.as_secs_f64().ceil(),
        sum(|o| o.verdicts),
        sum(|o| o.episodes),
        sum(|o| o.episode_records),
    );
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.lost.is_empty() || !o.false_alerts.is_empty() || o.recovery.is_none())
        .map(|o| {
            format!(
                "{}: lost {:#?}\nfalse alerts {:#?}\nrecovered: {}",
                o.name,
                o.lost,
                o.false_alerts,
                o.recovery.is_some()
            )
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

fn run_scenario(pair: &Pair, name: &'static str, fault: Fault) -> Outcome {
    let run = Run::new(name);
    // Kept after the run: the verifier's log and the manifest, for a failure to be studied.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("chaos")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let events: u64 = std::env::var("CDC_VERIFIER_CHAOS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    let rate = 1500;
    let traffic_s = events as f64 / rate as f64;
    let manifest = dir.join("manifest.json");
    let mut extra: Vec<String> = Vec::new();
    match fault {
        Fault::ReplicaSilent => {
            extra.extend(["--replica-connector-delay-ms".into(), "60000".into()]);
        }
        Fault::Failover => extra.extend([
            "--gtid-style".into(),
            "mysql".into(),
            "--failover-at".into(),
            (events / 2).to_string(),
        ]),
        Fault::LateTopic => extra.extend([
            "--topics-at-first-record".into(),
            "--replica-connector-delay-ms".into(),
            "15000".into(),
        ]),
        _ => {}
    }
    let mut traffic = run.traffic(events, rate, &manifest, &extra);
    support::wait_for_topic(&format!("{}primary.shop.orders", run.prefix), 2);
    let sharing = matches!(fault, Fault::ShardedKill | Fault::RollingRestart);
    let mut fleet: Vec<Verifier> = if sharing {
        (1..=SHARED)
            .map(|i| Verifier::start(&run, &dir, Some(i)))
            .collect()
    } else {
        vec![Verifier::start(&run, &dir, None)]
    };

    // The fault, about a third of the way into the traffic.
    std::thread::sleep(Duration::from_secs_f64(traffic_s / 3.0));
    let fault_start = wall_ms();
    let mut before_deletion: Vec<Alert> = Vec::new();
    let mut episodes_before_deletion: Vec<EpisodeRecord> = Vec::new();
    let mut future = None;
    let mut takeover = None;
    match fault {
        Fault::BrokerKill => {
            pair.services(&["kill", "kafka"]);
            std::thread::sleep(Duration::from_secs(5));
            pair.services(&["start", "kafka"]);
        }
        Fault::RegistryHang => {
            pair.services(&["pause", "registry"]);
            // Longer than the verifier's retry ceiling (registry.retry-max-ms, 10 s).
            std::thread::sleep(Duration::from_secs(20));
            pair.services(&["resume", "registry"]);
        }
        Fault::AlertTopicDeleted => {
            // What the topics held is read with the verifier paused (and what it had sent
            // written), so that nothing it publishes falls between the reading and the
            // deletion: the deletion loses only what is read here.
            fleet[0].signal("STOP");
            std::thread::sleep(Duration::from_secs(1));
            before_deletion = alerts(&run.alerts);
            episodes_before_deletion = episode_records(&run.episodes());
            support::delete_topics(&[&run.alerts, &run.episodes()]);
            fleet[0].signal("CONT");
        }
        Fault::VerifierKill => {
            fleet[0].kill();
            std::thread::sleep(Duration::from_secs(2));
            fleet[0].spawn();
        }
        Fault::ShardedKill => {
            fleet[1].kill();
            // Past the group's session timeout (6 s) and settling (3 s): the others verify
            // its shard meanwhile — how soon is the recovery.
            let killed = Instant::now();
            takeover = taken_over(&mut fleet, &[0, 2]);
            std::thread::sleep(Duration::from_secs(15).saturating_sub(killed.elapsed()));
            fleet[1].spawn();
        }
        Fault::RollingRestart => {
            for (i, v) in fleet.iter_mut().enumerate() {
                if i > 0 {
                    std::thread::sleep(Duration::from_secs(5));
                }
                v.stop();
                v.spawn();
            }
            takeover = taken_over(&mut fleet, &[0, 1, 2]);
        }
        Fault::FutureRecord => {
            future = Some(stamp_ahead(
                &format!("{}primary.shop.orders", run.prefix),
                3_600_000,
            ))
        }
        Fault::ReplicaSilent | Fault::Failover | Fault::LateTopic => {}
    }
    let span = (fault_start, wall_ms());
    // (Sharing: until every shard is verified again.)
    let recovery = match fault {
        Fault::ShardedKill | Fault::RollingRestart => takeover,
        _ => fleet[0].recovery(),
    };

    let status = traffic.wait().unwrap();
    assert!(status.success(), "{name}: the simulator failed ({status})");
    for v in fleet.iter_mut() {
        v.settle();
    }
    let futures_seen = fleet[0].metric("cdc_verifier_future_records_total");
    for v in fleet.iter_mut() {
        v.stop();
    }

    let m: Json = serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let mut a = before_deletion;
    a.extend(alerts(&run.alerts));
    let mut e = episodes_before_deletion;
    e.extend(episode_records(&run.episodes()));
    // Only the broker's outage is one of what the connectors write to.
    let outage = (fault == Fault::BrokerKill).then_some(span);
    let mut o = judge(name, &m, &a, &run, outage, recovery);
    // The alert topic tells every fault as an episode.
    let latest = latest_episodes(&e);
    let told: Vec<&EpisodeRecord> = latest.values().collect();
    for f in faults_without_episode(&m, &told) {
        o.lost
            .push(format!("no episode on the alert topic for {f}"));
    }
    // A table's episode, and a replica's lag, opens once, and a fault is not left open twice:
    // a restart or a hand-over continues the episode it finds open, and instances sharing
    // the tables tell a replica's lag as one. (What an instance could not verify is its own.)
    let checked = |r: &&EpisodeRecord| r.table.is_some() || r.kind == "ReplicaLag";
    let mut opened: BTreeMap<&str, usize> = BTreeMap::new();
    for r in e.iter().filter(|r| r.phase == "Open").filter(checked) {
        *opened.entry(r.episode.as_str()).or_default() += 1;
    }
    for (episode, n) in opened.iter().filter(|(_, n)| **n > 1) {
        o.false_alerts
            .push(format!("episode {episode} opened {n} times"));
    }
    let mut open: BTreeMap<(&str, &str, &str), Vec<&str>> = BTreeMap::new();
    for r in latest
        .values()
        .filter(|r| r.phase != "Close")
        .filter(checked)
    {
        let table = r.table.as_deref().unwrap_or("*");
        open.entry((r.replica.as_str(), table, r.kind.as_str()))
            .or_default()
            .push(r.episode.as_str());
    }
    for (id, episodes) in open.iter().filter(|(_, e)| e.len() > 1) {
        o.false_alerts
            .push(format!("{id:?} left open twice: {episodes:?}"));
    }
    (o.verdicts, o.episode_records, o.episodes) = (a.len(), e.len(), latest.len());
    if let Some(at) = future {
        // Not a fault of the data: it must change no verdict (judged above), and be counted.
        o.faults += 1;
        if futures_seen.is_some_and(|n| n >= 1.0) {
            o.alerted += 1;
        } else {
            o.lost.push(format!(
                "the record stamped an hour ahead ({at}) is not counted by \
                 cdc_verifier_future_records_total ({futures_seen:?})"
            ));
        }
    }
    o
}

/// How long until the verifiers `alive` own every shard between them again, none degraded,
/// nothing pending for output.
fn taken_over(fleet: &mut [Verifier], alive: &[usize]) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < RECOVERY_BOUND {
        let mut owned = 0.0;
        let mut ok = true;
        for &i in alive {
            fleet[i].alive();
            let v = &fleet[i];
            owned += v.metric("cdc_verifier_shards_owned").unwrap_or(0.0);
            ok &= v.metric("cdc_verifier_degraded") == Some(0.0)
                && v.metric("cdc_verifier_output_pending") == Some(0.0);
        }
        if ok && owned == SHARED as f64 {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

/// Writes the newest record of `topic`'s partition 0 again (key and value), stamped
/// `ahead_ms` past the wall clock: a redelivery, as a connector restarting on a host whose clock
/// is wrong writes it. Returns where it was written from.
fn stamp_ahead(topic: &str, ahead_ms: i64) -> String {
    use rdkafka::Message;
    use rdkafka::producer::{BaseRecord, Producer};
    let last = support::read_to_end(topic)
        .into_iter()
        .filter(|m| m.partition() == 0)
        .max_by_key(|m| m.offset())
        .unwrap_or_else(|| panic!("{topic} has no record yet"));
    let p = support::idempotent_producer();
    let mut rec = BaseRecord::to(topic)
        .partition(0)
        .timestamp(wall_ms() + ahead_ms)
        .payload(last.payload().unwrap_or_default());
    if let Some(k) = last.key() {
        rec = rec.key(k);
    }
    p.send(rec).map_err(|(e, _)| e).unwrap();
    support::flush(&p);
    assert_eq!(p.context().delivered().len(), 1, "the record was written");
    format!("{topic}[0]@{}", last.offset())
}

/// The alerts and dead letters of a run against its manifest.
fn judge(
    name: &'static str,
    m: &Json,
    a: &[Alert],
    run: &Run,
    outage: Option<(i64, i64)>,
    recovery: Option<Duration>,
) -> Outcome {
    let s = score(m, a);
    let mut faults = s.faults;
    let mut alerted = s.alerted;
    let mut lost: Vec<String> = s.missed.iter().map(|f| f.to_string()).collect();
    // Connectors started late: each such replica is a fault of its own, reported as lagging or
    // silent; those verdicts are explained by it.
    let delayed: Vec<&str> = m["connector_delays"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["stream"].as_str()).collect())
        .unwrap_or_default();
    for r in &delayed {
        faults += 1;
        if a.iter()
            .any(|x| x.replica == *r && matches!(x.kind.as_str(), "ReplicaLag" | "StreamSilent"))
        {
            alerted += 1;
        } else {
            lost.push(format!("{r}: connector started late, never reported"));
        }
    }
    // An outage of what the connectors write to delays their streams, each by its own
    // amount: a replica's stream that fell behind while it lasted, or just after, and then
    // caught up, was behind (the verdict says so, and its recovery).
    let bound = RECOVERY_BOUND.as_millis() as i64;
    let outage_lag = |x: &Alert| {
        matches!(x.kind.as_str(), "ReplicaLag" | "StreamSilent")
            && outage.is_some_and(|(from, to)| (from..=to + bound).contains(&x.emitted_at_ms))
            && a.iter().any(|y| {
                y.kind == "Recovered"
                    && y.replica == x.replica
                    && y.recovered.as_deref() == Some(x.kind.as_str())
                    && y.table == x.table
                    && y.emitted_at_ms >= x.emitted_at_ms
            })
    };
    let false_alerts: Vec<String> = s
        .unexplained
        .iter()
        .filter(|x| {
            let late_connector = delayed.contains(&x.replica.as_str())
                && matches!(x.kind.as_str(), "ReplicaLag" | "StreamSilent");
            !(late_connector || outage_lag(x))
        })
        .map(|x| format!("{x:?}"))
        .collect();
    // Every poison record is dead-lettered too, once at least.
    let letters = read_all(&run.dlq);
    eprintln!("{} dead letters on {}", letters.len(), run.dlq);
    let dead: Vec<(String, i64, i64)> = letters
        .iter()
        .filter_map(|d| {
            let h = |k: &str| support::header(d, k);
            Some((
                h("cdc-verifier.topic")?,
                h("cdc-verifier.partition")?.parse().ok()?,
                h("cdc-verifier.offset")?.parse().ok()?,
            ))
        })
        .collect();
    for f in m["faults"].as_array().unwrap() {
        if f["kind"] == "poison" {
            // Where Kafka put it: the simulator takes the offsets from its delivery reports.
            let at = (
                f["topic"].as_str().unwrap_or_default().to_string(),
                f["partition"].as_i64().unwrap_or(-1),
                f["offset"].as_i64().unwrap_or(-1),
            );
            if !dead.contains(&at) {
                lost.push(format!(
                    "poison record not dead-lettered: {f} (dead letters: {dead:?})"
                ));
            }
        }
    }
    Outcome {
        name,
        faults,
        alerted,
        lost,
        false_alerts,
        recovery,
        verdicts: 0,
        episode_records: 0,
        episodes: 0,
    }
}

impl Run {
    /// The alert topic: episodes (`alerts` is the detail topic: every verdict).
    fn episodes(&self) -> String {
        format!("{}.episodes", self.alerts)
    }
}

/// One scenario's topics, group and output.
struct Run {
    prefix: String,
    alerts: String,
    dlq: String,
    group: String,
}

impl Run {
    fn new(name: &str) -> Run {
        let prefix = format!("{}-", support::unique_name(&format!("chaos-{name}")));
        Run {
            alerts: format!("{prefix}alerts"),
            dlq: format!("{prefix}dead-letter"),
            group: format!("{prefix}group"),
            prefix,
        }
    }

    /// The simulator writing the faults scenario live, paced at `rate` events a second.
    fn traffic(&self, events: u64, rate: u64, manifest: &Path, extra: &[String]) -> Child {
        Command::new(BIN)
            .args(["simulate", "--scenario", "faults"])
            .args(["--events", &events.to_string(), "--rate", &rate.to_string()])
            .args(["--topic-prefix", &self.prefix, "--partitions", "2"])
            .args(["--bootstrap-servers", &support::bootstrap()])
            .args(["--registry-url", &support::registry_url()])
            .arg("--manifest")
            .arg(manifest)
            .args(extra)
            .stdout(Stdio::null())
            // Kept beside the manifest: whether the simulator kept its pace.
            .stderr(std::fs::File::create(manifest.with_file_name("simulate.log")).unwrap())
            .spawn()
            .unwrap()
    }
}

/// `cdc-verifier run` as a child process, with its metrics endpoint.
struct Verifier {
    child: Option<Child>,
    args: Vec<String>,
    port: u16,
    log: PathBuf,
}

impl Verifier {
    /// The verifier of `run`; the `i`-th of those sharing the tables as shards, if `share`.
    fn start(run: &Run, dir: &Path, share: Option<usize>) -> Verifier {
        let port = free_port();
        let mut args = [
            "run",
            "--topic-prefix",
            &run.prefix,
            "--group-id",
            &run.group,
            "--bootstrap-servers",
            &support::bootstrap(),
            "--registry-url",
            &support::registry_url(),
            "--set",
            &format!("alerts.detail-topic={}", run.alerts),
            "--set",
            &format!("alerts.topic={}.episodes", run.alerts),
            "--set",
            &format!("alerts.dead-letter-topic={}", run.dlq),
            "--set",
            &format!("service.listen=127.0.0.1:{port}"),
            "--set",
            "service.summary-interval-s=0",
            "--set",
            "verify.silent-after-ms=3000",
            "--set",
            "verify.confirm-ms=5000",
        ]
        .map(String::from)
        .to_vec();
        if let Some(i) = share {
            for set in [
                format!("scale.shards={SHARED}"),
                "scale.session-timeout-ms=6000".into(),
                format!("alerts.instance=verifier-{i}"),
            ] {
                args.extend(["--set".into(), set]);
            }
            if let Ok(p) = std::env::var("CDC_VERIFIER_CHAOS_PLACE_BY") {
                args.extend(["--set".into(), format!("scale.place-by={p}")]);
            }
        }
        let log = match share {
            Some(i) => dir.join(format!("verifier-{i}.log")),
            None => dir.join("verifier.log"),
        };
        let mut v = Verifier {
            child: None,
            args,
            port,
            log,
        };
        v.spawn();
        v
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = Some(
            Command::new(BIN)
                .args(&self.args)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
    }

    /// Appends what `/metrics` says now (per topic: snapshot rows counted and ignored,
    /// duplicates, records not verified…) beside the log, for a failure to be studied.
    fn keep_metrics(&self) {
        let Ok(body) = support::http()
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .timeout(Duration::from_secs(2))
            .send()
            .and_then(|r| r.text())
        else {
            return;
        };
        let path = self.log.with_extension("metrics");
        let mut all = std::fs::read_to_string(&path).unwrap_or_default();
        all.push_str(&format!("# at {} ms (wall)\n{body}\n", wall_ms()));
        let _ = std::fs::write(path, all);
    }

    /// SIGKILL: no drain, no last commit.
    fn kill(&mut self) {
        if self.child.is_some() {
            self.keep_metrics();
        }
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Sends it a signal (`STOP`, `CONT`).
    fn signal(&self, sig: &str) {
        let c = self.child.as_ref().expect("running");
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &c.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// SIGTERM, as an orchestrator stops it: it drains and commits.
    fn stop(&mut self) {
        if self.child.is_some() {
            self.keep_metrics();
        }
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            c.wait().unwrap();
        }
    }

    fn alive(&mut self) {
        let c = self.child.as_mut().expect("running");
        if let Some(status) = c.try_wait().unwrap() {
            panic!("the verifier exited ({status}):\n{}", self.log_tail());
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The sum of every series of metric `name`; `None` while the endpoint does not answer.
    fn metric(&self, name: &str) -> Option<f64> {
        let body = support::http()
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .timeout(Duration::from_secs(2))
            .send()
            .ok()?
            .text()
            .ok()?;
        Some(
            body.lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum(),
        )
    }

    /// How long after now the verifier is healthy again: not degraded, nothing pending for
    /// output, the registry answering, and events verified since.
    fn recovery(&mut self) -> Option<Duration> {
        let start = Instant::now();
        let events_then = self.metric("cdc_verifier_events_total").unwrap_or(0.0);
        while start.elapsed() < RECOVERY_BOUND {
            self.alive();
            let ok = (|| {
                Some(
                    self.metric("cdc_verifier_degraded")? == 0.0
                        && self.metric("cdc_verifier_output_pending")? == 0.0
                        && self.metric("cdc_verifier_registry_unavailable")? == 0.0
                        && self.metric("cdc_verifier_events_total")? > events_then,
                )
            })();
            if ok == Some(true) {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        None
    }

    /// Waits until the verifier has read everything and its verdicts have stopped coming.
    fn settle(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut last = (f64::NAN, f64::NAN);
        let mut since = Instant::now();
        loop {
            self.alive();
            let lag = self.metric("cdc_verifier_consumer_lag_records");
            // Every window compared (a skew learned during an outage makes the last ones wait
            // that much longer) and nothing parked.
            let open = self.metric("cdc_verifier_open_windows");
            let parked = self.metric("cdc_verifier_parked_records");
            let now = (
                self.metric("cdc_verifier_divergences_total")
                    .unwrap_or(-1.0),
                self.metric("cdc_verifier_windows_compared_total")
                    .unwrap_or(-1.0),
            );
            if lag != Some(0.0) || open != Some(0.0) || parked != Some(0.0) || now.0 != last.0 {
                since = Instant::now();
            }
            last = now;
            // Quiet for longer than a mismatch waits for confirmation and a table for silence.
            if since.elapsed() > Duration::from_secs(12) {
                eprintln!(
                    "settled: dead-lettered {:?}, delivery failures {:?}, alerts {:?}",
                    self.metric("cdc_verifier_dead_lettered_total"),
                    self.metric("cdc_verifier_output_delivery_failures_total"),
                    self.metric("cdc_verifier_alerts_published_total"),
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the verifier did not settle: lag {lag:?}, open windows {open:?}, parked {parked:?}\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A broker and a registry for this suite alone.
struct Pair {
    env: Vec<(&'static str, String)>,
}

impl Pair {
    fn up() -> Pair {
        let ports: Vec<u16> = {
            let listeners: Vec<TcpListener> = (0..4)
                .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
                .collect();
            listeners
                .iter()
                .map(|l| l.local_addr().unwrap().port())
                .collect()
        };
        let state = root().join(".services").join("chaos");
        let pair = Pair {
            env: vec![
                ("SERVICES_STATE", state.display().to_string()),
                ("KAFKA_PORT", ports[0].to_string()),
                ("KAFKA_CONTROLLER_PORT", ports[1].to_string()),
                ("REGISTRY_PORT", ports[2].to_string()),
                ("REGISTRY_MANAGEMENT_PORT", ports[3].to_string()),
            ],
        };
        // A previous run's pair, if one was left behind.
        pair.services(&["down"]);
        pair.services(&["up"]);
        support::use_services(
            &format!("127.0.0.1:{}", ports[0]),
            &format!("http://127.0.0.1:{}/apis/ccompat/v7", ports[2]),
        );
        pair
    }

    fn services(&self, args: &[&str]) {
        let out = Command::new(root().join("scripts").join("services"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/services {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts").join("services"))
            .arg("down")
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output();
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
