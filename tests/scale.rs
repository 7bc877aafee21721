//! Several `cdc-verifier run` instances sharing the tables as shards through a Kafka consumer
//! group (`[scale]`), against the real broker: together they reach the verdicts one instance
//! reaches, every table verified by exactly one of them. (Instances killed and restarted while
//! sharing: the chaos suite's `sharded-kill` and `rolling-restart`.)

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Output};

use serde_json::Value as Json;
use support::verdicts::{Alert, alerts, episode_records, score};

const BIN: &str = env!("CARGO_BIN_EXE_cdc-verifier");

struct Run {
    prefix: String,
}

impl Run {
    fn simulate(&self, events: u64) -> Json {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("manifest.json");
        let out = Command::new(BIN)
            .args(["simulate", "--scenario", "faults", "--events"])
            .arg(events.to_string())
            .args(["--topic-prefix", &self.prefix, "--partitions", "4"])
            .args(["--bootstrap-servers", &support::bootstrap()])
            .args(["--registry-url", &support::registry_url()])
            .arg("--manifest")
            .arg(&manifest)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "simulate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap()
    }

    /// A verifier reading everything there is, under `group`, publishing to `out`'s topics.
    fn verifier(&self, group: &str, out: &str, instance: &str, shards: u32) -> Command {
        let mut c = Command::new(BIN);
        c.args(["run", "--until-caught-up", "--topic-prefix", &self.prefix])
            .args(["--group-id", group])
            .args(["--bootstrap-servers", &support::bootstrap()])
            .args(["--registry-url", &support::registry_url()]);
        for set in [
            format!("alerts.detail-topic={out}"),
            format!("alerts.topic={out}.episodes"),
            format!("alerts.dead-letter-topic={out}.dead-letter"),
            format!("alerts.instance={instance}"),
            "service.listen=127.0.0.1:0".to_string(),
            "service.summary-interval-s=0".to_string(),
            "verify.silent-after-ms=3000".to_string(),
            format!("scale.shards={shards}"),
            "scale.session-timeout-ms=6000".to_string(),
            "scale.place-by=load".to_string(),
        ] {
            c.args(["--set", &set]);
        }
        c
    }
}

fn check(out: &Output, what: &str) -> String {
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{what} failed:\n{log}");
    log
}

/// (kind, replica, table, range, window) of a verdict.
type Identity = (String, String, Option<String>, Option<u64>, Option<i64>);

/// Each verdict but recoveries, with how many times it was published.
fn verdicts(a: &[Alert]) -> BTreeMap<Identity, usize> {
    let mut m = BTreeMap::new();
    for x in a.iter().filter(|x| x.kind != "Recovered") {
        *m.entry((
            x.kind.clone(),
            x.replica.clone(),
            x.table.clone(),
            x.range,
            x.window.map(|w| w.0),
        ))
        .or_default() += 1;
    }
    m
}

#[test]
fn three_instances_sharing_the_tables_reach_the_verdicts_of_one() {
    support::require_services();
    let run = Run {
        prefix: format!("{}-", support::unique_name("scale")),
    };
    let m = run.simulate(100_000);
    let one = format!("{}one", run.prefix);
    check(
        &run.verifier(&format!("{}g-one", run.prefix), &one, "one", 0)
            .output()
            .unwrap(),
        "the single instance",
    );

    // Three instances started together, sharing 3 shards.
    let shared = format!("{}shared", run.prefix);
    let group = format!("{}g-shared", run.prefix);
    let children: Vec<_> = (1..=3)
        .map(|i| {
            run.verifier(&group, &shared, &format!("i{i}"), 3)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let logs: Vec<String> = children
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            check(
                &c.wait_with_output().unwrap(),
                &format!("instance {}", i + 1),
            )
        })
        .collect();
    // Each verified tables of its own shard: the group gave each instance one.
    let mut given = BTreeSet::new();
    for (i, log) in logs.iter().enumerate() {
        let first = log
            .lines()
            .find(|l| l.contains("verifying the tables of shards"))
            .unwrap_or_else(|| panic!("instance {} was given no shard:\n{log}", i + 1));
        given.insert(
            first
                .split("shards [")
                .nth(1)
                .unwrap()
                .split(']')
                .next()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(
        given.len(),
        3,
        "each instance first verified a shard of its own: {given:?}"
    );
    // The holder of shard 0 placed the tables by load, and the three took that placement:
    // each first verified tables of its own, together all of them.
    assert!(
        logs.iter().any(|l| l.contains("placed the tables by load")),
        "no placement said:\n{}",
        logs.join("\n")
    );
    let mut placed = Vec::new();
    for log in &logs {
        let line = log
            .lines()
            .find(|l| l.contains("tables verified here: "))
            .expect("the tables verified said");
        let tables = line.split("tables verified here: ").nth(1).unwrap();
        placed.extend(
            tables
                .split_whitespace()
                .map(|t| t.trim_end_matches('"').to_string()),
        );
    }
    let distinct: BTreeSet<&String> = placed.iter().collect();
    assert_eq!(
        distinct.len(),
        placed.len(),
        "a table verified by two instances: {placed:?}"
    );
    assert_eq!(distinct.len(), 7, "every table verified: {placed:?}");

    let (a_one, a_shared) = (alerts(&one), alerts(&shared));
    let (v_one, v_shared) = (verdicts(&a_one), verdicts(&a_shared));
    assert!(!v_one.is_empty());
    let keys = |v: &BTreeMap<_, usize>| v.keys().cloned().collect::<BTreeSet<_>>();
    let (k_one, k_shared) = (keys(&v_one), keys(&v_shared));
    assert!(
        k_one == k_shared,
        "sharing lost or invented verdicts: lost {:#?}, new {:#?}",
        k_one.difference(&k_shared).collect::<Vec<_>>(),
        k_shared.difference(&k_one).collect::<Vec<_>>()
    );
    // A replica's lag is judged by every instance on its own tables, and said by each (the
    // same verdict key): only the verdicts of one table must not come twice.
    let twice: Vec<_> = v_shared
        .iter()
        .filter(|((_, _, table, _, _), n)| table.is_some() && **n > 1)
        .collect();
    assert!(
        twice.is_empty(),
        "verdicts published more than once: {twice:#?}"
    );
    // A replica's lag is one episode for the group, told by the holder of shard 0: as many
    // lag episodes of each replica as one instance tells, each opened once, none keyed by an
    // instance.
    let lag_episodes = |topic: &str| {
        let mut by_replica: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut opened: BTreeMap<String, usize> = BTreeMap::new();
        for r in episode_records(topic)
            .into_iter()
            .filter(|r| r.kind == "ReplicaLag")
        {
            if r.phase == "Open" {
                *opened.entry(r.episode.clone()).or_default() += 1;
            }
            by_replica.entry(r.replica).or_default().insert(r.episode);
        }
        (by_replica, opened)
    };
    let (lag_one, _) = lag_episodes(&format!("{one}.episodes"));
    let (lag_shared, opened) = lag_episodes(&format!("{shared}.episodes"));
    let counts = |m: &BTreeMap<String, BTreeSet<String>>| -> BTreeMap<String, usize> {
        m.iter().map(|(r, e)| (r.clone(), e.len())).collect()
    };
    assert!(
        !lag_one.is_empty(),
        "the scenario's lag made no episode: nothing is checked"
    );
    assert_eq!(
        counts(&lag_shared),
        counts(&lag_one),
        "lag episodes: shared {lag_shared:#?}, one instance {lag_one:#?}"
    );
    for (e, n) in &opened {
        assert_eq!(*n, 1, "lag episode {e} opened {n} times");
        assert!(!e.contains('@'), "a lag episode keyed by its instance: {e}");
    }
    let s = score(&m, &a_shared);
    assert!(s.missed.is_empty(), "faults not reported: {:#?}", s.missed);
    assert!(
        s.unexplained.is_empty(),
        "unexplained: {:#?}",
        s.unexplained
    );
    eprintln!(
        "scale: 1 instance {} verdicts; 3 instances sharing 3 shards {} verdicts, the same; {} faults, all reported",
        a_one.len(),
        a_shared.len(),
        s.faults
    );
}

/// The placer weighs a table's records by their size, read from the newest records of each
/// partition (`KafkaSettings::sizes_before`).
#[test]
fn the_newest_records_of_each_partition_give_their_size() {
    use rdkafka::producer::BaseRecord;
    support::require_kafka();
    let topic = support::unique_name("sizes");
    support::create_topic(&topic, 3);
    let p = support::idempotent_producer();
    // Partition 0: 10 records of 100 bytes after 5 of 1,000; partition 1: 3 of 40 bytes (a
    // key of 10); partition 2: empty.
    let big = [b'x'; 1_000];
    let small = [b'y'; 100];
    let sends = (0..5)
        .map(|_| (0, &big[..], None))
        .chain((0..10).map(|_| (0, &small[..], None)));
    for (partition, value, key) in
        sends.chain((0..3).map(|_| (1, &small[..30], Some(&b"0123456789"[..]))))
    {
        let mut r = BaseRecord::<[u8], [u8]>::to(&topic)
            .partition(partition)
            .payload(value);
        if let Some(k) = key {
            r = r.key(k);
        }
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    support::flush(&p);
    let settings = support::kafka_settings();
    let sizes = settings
        .sizes_before(
            &[(&topic, 0, 0, 15), (&topic, 1, 0, 3), (&topic, 2, 0, 0)],
            10,
            std::time::Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(
        sizes.get(&(topic.clone(), 0)),
        Some(&(10, 1_000)),
        "the last 10 only"
    );
    assert_eq!(
        sizes.get(&(topic.clone(), 1)),
        Some(&(3, 120)),
        "keys count"
    );
    assert_eq!(sizes.get(&(topic.clone(), 2)), None, "an empty partition");
    // From the low watermark on, no earlier.
    let sizes = settings
        .sizes_before(
            &[(&topic, 0, 12, 15)],
            10,
            std::time::Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(sizes.get(&(topic.clone(), 0)), Some(&(3, 300)));
    support::delete_topics(&[&topic]);
}
