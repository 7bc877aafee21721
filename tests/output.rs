//! `cdc-verifier run` against the real broker when its output does not go through: alerts a
//! topic refuses hold the offsets back until Kafka takes them, a poison record too large for
//! the producer is dead-lettered truncated, and a poison record found when a parked replica
//! record is released is dead-lettered as well as alerted.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const BIN: &str = env!("CARGO_BIN_EXE_cdc-verifier");

struct Run {
    prefix: String,
    /// The alert topic (episodes).
    alerts: String,
    /// The detail topic (every verdict).
    details: String,
    dlq: String,
    group: String,
    port: u16,
}

impl Run {
    fn new(name: &str) -> Run {
        let prefix = format!("{}-", support::unique_name(name));
        Run {
            alerts: format!("{prefix}alerts"),
            details: format!("{prefix}details"),
            dlq: format!("{prefix}dead-letter"),
            group: format!("{prefix}group"),
            port: std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
            prefix,
        }
    }

    fn simulate(&self, events: u64) {
        let out = Command::new(BIN)
            .args(["simulate", "--scenario", "clean", "--events"])
            .arg(events.to_string())
            .args(["--topic-prefix", &self.prefix, "--partitions", "2"])
            .args(["--bootstrap-servers", &support::bootstrap()])
            .args(["--registry-url", &support::registry_url()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "simulate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn topic(&self, stream: &str) -> String {
        format!("{}{stream}.shop.orders", self.prefix)
    }

    fn verifier(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args([
            "run",
            "--topic-prefix",
            &self.prefix,
            "--group-id",
            &self.group,
        ])
        .args(["--bootstrap-servers", &support::bootstrap()])
        .args(["--registry-url", &support::registry_url()])
        .args(["--set", &format!("alerts.topic={}", self.alerts)])
        .args(["--set", &format!("alerts.detail-topic={}", self.details)])
        .args(["--set", &format!("alerts.dead-letter-topic={}", self.dlq)])
        .args(["--set", &format!("service.listen=127.0.0.1:{}", self.port)])
        .args(["--set", "service.summary-interval-s=0"])
        .args(extra);
        c
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let body = support::http()
            .get(format!("http://127.0.0.1:{}/metrics", self.port))
            .send()
            .ok()?
            .text()
            .ok()?;
        body.lines().find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    /// The group's committed offset of a partition (`None`: nothing committed).
    fn committed(&self, topic: &str, partition: i32) -> Option<i64> {
        let c = support::consumer(&self.group, "read_committed");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let got = c.committed_offsets(tpl, support::SERVICE_TIMEOUT).unwrap();
        let o = match got.find_partition(topic, partition).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => Some(o),
            _ => None,
        };
        drop(got);
        o
    }
}

/// Produces records to a partition; returns their offsets.
fn produce(topic: &str, partition: i32, records: &[(Option<&[u8]>, &[u8])]) -> Vec<i64> {
    let p = support::idempotent_producer();
    for (k, v) in records {
        let mut r = BaseRecord::<[u8], [u8]>::to(topic)
            .partition(partition)
            .payload(*v);
        if let Some(k) = k {
            r = r.key(*k);
        }
        p.send(r).map_err(|(e, _)| e).unwrap();
    }
    support::flush(&p);
    let d = p.context().delivered();
    p.context().clear();
    d.into_iter().map(|(_, o)| o).collect()
}

fn set_topic_config(topic: &str, key: &str, value: &str) {
    let admin = support::admin();
    let cfg = AlterConfig::new(ResourceSpecifier::Topic(topic)).set(key, value);
    let r = support::block_on(admin.alter_configs(
        [&cfg],
        &AdminOptions::new().operation_timeout(Some(support::SERVICE_TIMEOUT)),
    ))
    .unwrap();
    for x in r {
        x.unwrap_or_else(|e| panic!("altering {topic}: {e:?}"));
    }
}

/// Every record of `topic`, from the beginning until it has been quiet for a while.
fn read_all(topic: &str) -> Vec<OwnedMessage> {
    let c = support::consumer(&support::unique_name("reader"), "read_committed");
    c.subscribe(&[topic]).unwrap();
    support::poll_for(&c, Duration::from_secs(4))
}

fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn stop(mut child: Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("SIGTERM did not stop the verifier");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn alerts_kafka_refuses_hold_the_offsets_until_it_takes_them() {
    support::require_services();
    let run = Run::new("out-refused");
    run.simulate(3_000);
    let primary = run.topic("primary");
    // Two undecodable records at the end of a partition: each gives a verdict (on the detail
    // topic, which takes it), an episode of them on the alert topic, and a dead letter.
    let poison = produce(
        &primary,
        0,
        &[(Some(b"k1"), b"not avro 1"), (Some(b"k2"), b"not avro 2")],
    );
    // The alert topic refuses every record: larger than its max.message.bytes.
    support::create_topic_with(&run.alerts, 1, &[("max.message.bytes", "64")]);

    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("verifier.log");
    let child = run
        .verifier(&[])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let degraded = "cdc_verifier_degraded{reason=\"output_delivery\"}";
    wait_until(
        "the poison records are read",
        Duration::from_secs(60),
        || run.metric("cdc_verifier_dead_lettered_total") >= Some(poison.len() as f64),
    );
    // Long enough for every window to be compared and committed, were alerts not awaited.
    std::thread::sleep(Duration::from_secs(12));
    let held = run.committed(&primary, 0);
    assert!(
        held.is_none_or(|o| o <= poison[0]),
        "committed {held:?} past the poison records at {poison:?} whose alerts Kafka refused"
    );
    assert_eq!(run.metric(degraded), Some(1.0));
    assert!(
        run.metric("cdc_verifier_output_delivery_failures_total{output=\"alerts\"}") >= Some(1.0)
    );
    assert_eq!(run.metric("cdc_verifier_alerts_published_total"), Some(0.0));
    let log = std::fs::read_to_string(&log_path).unwrap();
    let error = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("cannot deliver to Kafka"))
        .collect::<Vec<_>>();
    assert_eq!(error.len(), 1, "one ERROR for the episode: {log}");
    assert!(error[0].contains(&run.alerts), "{}", error[0]);

    // The fault is lifted: the alerts go through, and the offsets move on by themselves.
    set_topic_config(&run.alerts, "max.message.bytes", "1048588");
    wait_until(
        "the offsets pass the poison records",
        Duration::from_secs(90),
        || run.committed(&primary, 0).is_some_and(|o| o > poison[1]),
    );
    assert_eq!(run.metric(degraded), Some(0.0));
    assert!(run.metric("cdc_verifier_alerts_published_total") >= Some(1.0));
    let status = stop(child);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "exit {status:?}: {log}");
    assert!(log.contains("delivering to Kafka again"), "{log}");
    let about_poison = read_all(&run.details)
        .iter()
        .filter(|m| {
            let v = m.payload().unwrap();
            v.windows(primary.len()).any(|w| w == primary.as_bytes())
        })
        .count();
    assert!(
        about_poison >= poison.len(),
        "{about_poison} alerts about the poison records at {poison:?}"
    );
    assert_eq!(read_all(&run.dlq).len(), poison.len());
}

#[test]
fn a_poison_record_larger_than_the_producer_allows_is_dead_lettered_truncated() {
    support::require_services();
    let run = Run::new("out-oversized");
    run.simulate(2_000);
    let primary = run.topic("primary");
    let big: Vec<u8> = (0..500_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let at = produce(&primary, 1, &[(None, &big)])[0];
    // The producer's limit is set below the record's size.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("verifier.toml");
    std::fs::write(
        &config,
        "[kafka.properties]\n\"message.max.bytes\" = \"200000\"\n",
    )
    .unwrap();
    let out = run
        .verifier(&["--config", config.to_str().unwrap(), "--until-caught-up"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verifier failed: {log}");
    let dlq = read_all(&run.dlq);
    assert_eq!(dlq.len(), 1, "one dead letter");
    let m = &dlq[0];
    assert_eq!(
        support::header(m, "cdc-verifier.truncated").as_deref(),
        Some("true")
    );
    assert_eq!(
        support::header(m, "cdc-verifier.original-size").as_deref(),
        Some("500000")
    );
    assert_eq!(
        support::header(m, "cdc-verifier.topic").as_deref(),
        Some(&primary[..])
    );
    assert_eq!(
        support::header(m, "cdc-verifier.partition").as_deref(),
        Some("1")
    );
    assert_eq!(
        support::header(m, "cdc-verifier.offset"),
        Some(at.to_string())
    );
    let v = m.payload().unwrap();
    assert!(v.len() < 200_000 && v.len() > 100_000, "{}", v.len());
    assert_eq!(v, &big[..v.len()], "the record's first bytes");
    assert!(log.contains("too large"), "{log}");
}

/// The value's `source.gtid` (MariaDB style, `0-1-<seq>`) moved far ahead of every position
/// the primary writes: the record is parked until the input ends.
fn far_ahead(value: &[u8]) -> Vec<u8> {
    let at = value
        .windows(4)
        .position(|w| w == b"0-1-")
        .expect("a MariaDB gtid in the value");
    let len_byte = at - 1;
    let old_len = (value[len_byte] / 2) as usize;
    assert!(value[at..at + old_len].starts_with(b"0-1-"));
    let gtid = b"0-1-999999999";
    let mut out = value[..len_byte].to_vec();
    out.push((gtid.len() * 2) as u8);
    out.extend_from_slice(gtid);
    out.extend_from_slice(&value[at + old_len..]);
    out
}

#[test]
fn a_poison_record_released_from_parking_is_dead_lettered_and_alerted() {
    support::require_services();
    let run = Run::new("out-released");
    run.simulate(2_000);
    let replica = run.topic("replica-1");
    // A replica record whose value reads, but whose key (framed, empty) does not: its
    // position is read first and is ahead of the primary, so it is parked, and found
    // undecodable only when released.
    let c = support::consumer(&support::unique_name("copy"), "read_committed");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&replica, 0, Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let first = support::poll_n(&c, 50, Duration::from_secs(20))
        .into_iter()
        .rfind(|m| m.payload().is_some())
        .expect("a replica record");
    drop(c);
    let value = far_ahead(first.payload().unwrap());
    let key = first.key().unwrap()[..5].to_vec();
    let at = produce(&replica, 0, &[(Some(&key), &value)])[0];

    let out = run.verifier(&["--until-caught-up"]).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verifier failed: {log}");
    let alerted = read_all(&run.alerts).iter().any(|m| {
        let v = m.payload().unwrap();
        v.windows(replica.len()).any(|w| w == replica.as_bytes())
    });
    assert!(alerted, "a PoisonEvent alert for {replica}: {log}");
    let dlq = read_all(&run.dlq);
    let letter = dlq
        .iter()
        .find(|m| support::header(m, "cdc-verifier.offset") == Some(at.to_string()))
        .unwrap_or_else(|| panic!("no dead letter for {replica} [0] @ {at}: {log}"));
    assert_eq!(
        support::header(letter, "cdc-verifier.topic").as_deref(),
        Some(&replica[..])
    );
    assert!(support::header(letter, "cdc-verifier.error").is_some());
    assert_eq!(letter.payload(), Some(&value[..]), "the record's bytes");
    assert_eq!(letter.key(), Some(&key[..]));
}

#[test]
fn refused_commits_are_retried_while_the_service_stays_up() {
    support::require_services();
    let run = Run::new("out-commit");
    run.simulate(3_000);
    // Another member in the verifier's group: Kafka refuses commits from outside the
    // group's generation (UNKNOWN_MEMBER_ID) for as long as it stays.
    let other = run.topic("other");
    support::create_topic(&other, 1);
    let stop_member = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let member = {
        let (group, stop) = (run.group.clone(), stop_member.clone());
        std::thread::spawn(move || {
            let c = support::consumer(&group, "read_committed");
            c.subscribe(&[&other]).unwrap();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = c.poll(Duration::from_millis(100));
            }
            c.unsubscribe();
            let _ = c.poll(Duration::from_millis(500));
        })
    };
    std::thread::sleep(Duration::from_secs(5)); // joined

    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("verifier.log");
    let mut child = run
        .verifier(&[])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let degraded = "cdc_verifier_degraded{reason=\"commit\"}";
    wait_until("commits fail", Duration::from_secs(60), || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the verifier exited: {}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        run.metric("cdc_verifier_commit_failures_total") >= Some(1.0)
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the verifier exited: {}",
        std::fs::read_to_string(&log_path).unwrap()
    );
    assert_eq!(run.metric(degraded), Some(1.0));
    let ok = support::http()
        .get(format!("http://127.0.0.1:{}/healthz", run.port))
        .send()
        .unwrap();
    assert!(ok.status().is_success());

    // The other member leaves: commits go through again.
    stop_member.store(true, std::sync::atomic::Ordering::SeqCst);
    member.join().unwrap();
    let primary = run.topic("primary");
    wait_until("offsets are committed", Duration::from_secs(90), || {
        run.committed(&primary, 0).is_some_and(|o| o > 0)
    });
    wait_until("no longer degraded", Duration::from_secs(30), || {
        run.metric(degraded) == Some(0.0)
    });
    let status = stop(child);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "exit {status:?}: {log}");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("cannot commit offsets"))
        .collect();
    assert_eq!(errors.len(), 1, "one ERROR for the episode: {log}");
    assert!(log.contains("committing offsets again"), "{log}");
}

#[test]
fn a_position_field_the_envelopes_lack_stops_the_verifier_naming_the_fields_they_have() {
    support::require_services();
    let run = Run::new("out-position");
    run.simulate(500);
    let out = run
        .verifier(&["--until-caught-up", "--set", "verify.position=origin"])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the verifier stops: {log}");
    assert!(
        log.contains("verify.position = \"origin\"")
            && log.contains("have no `source.origin`; their source fields are: ")
            && log.contains("gtid"),
        "{log}"
    );
    // Nothing dead-lettered, nothing committed: after the fix, every record is read again.
    assert_eq!(read_all(&run.dlq).len(), 0, "{log}");
    for p in 0..2 {
        assert_eq!(run.committed(&run.topic("primary"), p), None, "{log}");
    }
}
