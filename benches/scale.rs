//! Scale-out against the local broker and registry (`scripts/bench scale`):
//!
//! 1. preloads the simulator's `faults` scenario (or `SCALE_SCENARIO`) (primary + 2 replicas, 8 partitions a topic);
//! 2. verifies it with one instance pinned to one core (`taskset`), then with two instances
//!    sharing the tables (`[scale] shards`), each pinned to a core of its own — each
//!    `run --until-caught-up`, records/s from its first record until it has read everything;
//!    alternating, `SCALE_ROUNDS` rounds (default 3), medians;
//! 3. compares the verdicts of the two (their identities on the detail topic; lag and silence,
//!    judged by a clock that moves with the order partitions are read in, counted apart) and
//!    measures what sharing writes to Kafka (the reach topic) per source record and against the
//!    source bytes;
//! 4. prints the CPU a record cost the instances and, beside them, the broker (which shares the
//!    host's cores with them), and their peak memory;
//! 5. in each round, consumes and discards every source record with one process, then with two
//!    pinned the same way (no verifying): what the host's broker and fetch path allow, and how
//!    that scales;
//! 6. in each round, verifies once more with one instance and the broker pinned to its core
//!    (`taskset -a -p`, given back every core after): each of two instances shares its core
//!    with the broker, one alone does not; against this baseline, the efficiency of sharing.
//!
//! `SCALE_SCENARIO` preloads another of the simulator's scenarios (`clean`: no fault, every
//! replica in line with the primary).
//! `SCALE_SAME=1` runs the second phase with one instance as well: what two runs of the same
//! differ in. `SCALE_EVENTS` (1.5 M primary events, about 5 M records: runs of seconds, so that
//! noticing the end, every 100 ms, weighs little) and `SCALE_SHARDS` (8) size it.
//! `SCALE_CONFIG=FILE`: a config file every instance reads (consumer properties to try).
//! `SCALE_LOGS=DIR` keeps each instance's log there, at the level `SCALE_LOG` sets (`info`).
//! `SCALE_NICE=N` runs the instances and the raw consumers at niceness N (10): the broker, which
//! shares their cores here, is served before them, as one on a host of its own would be;
//! `SCALE_NICE=0` runs them at its priority.
//!
//! The last line is the summary.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

const BIN: &str = env!("CARGO_BIN_EXE_cdc-verifier");

fn env_or(k: &str, d: &str) -> String {
    std::env::var(k).unwrap_or_else(|_| d.to_string())
}

fn bootstrap() -> String {
    env_or("CDC_VERIFIER_TEST_BOOTSTRAP", "127.0.0.1:9092")
}

fn registry() -> String {
    env_or(
        "CDC_VERIFIER_TEST_REGISTRY",
        "http://127.0.0.1:8081/apis/ccompat/v7",
    )
}

/// A consumer fetching as the verifier's own does (so that the raw consume-and-discard
/// compares like for like).
fn consumer(group: &str) -> BaseConsumer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "20");
    for (k, v) in cdc_verifier_kafka::consume::FETCH {
        c.set(*k, *v);
    }
    c.create().unwrap()
}

/// Every record of `topic`: its key and its size (key and value).
fn read_topic(topic: &str) -> Vec<(Vec<u8>, usize)> {
    let c = consumer("cdc-verifier-bench-scale");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut left = 0i64;
    for t in md.topics() {
        for p in t.partitions() {
            let (low, high) = c
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            left += high - low;
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
        }
    }
    c.assign(&tpl).unwrap();
    let mut out = Vec::new();
    while left > 0 {
        match c.poll(Duration::from_secs(10)) {
            Some(Ok(m)) => {
                left -= 1;
                let key = m.key().unwrap_or_default().to_vec();
                let size = key.len() + m.payload().map_or(0, <[u8]>::len);
                out.push((key, size));
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => panic!("reading {topic}: stalled with {left} records left"),
        }
    }
    out
}

/// `--raw <prefix> <k> <n>` (this bench run again, pinned to a core): consumes and discards
/// the source partitions whose index is `k` modulo `n`, fetching as the verifier's consumer
/// does, and prints `raw: <records> <seconds>` (from the first record to the last).
fn raw_part(prefix: &str, k: usize, n: usize) {
    let c = consumer("cdc-verifier-bench-scale-raw");
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let mut all = Vec::new();
    for t in md
        .topics()
        .iter()
        .filter(|t| t.name().starts_with(prefix) && t.name().contains(".shop."))
    {
        for p in t.partitions() {
            all.push((t.name().to_string(), p.id()));
        }
    }
    all.sort();
    let mut tpl = TopicPartitionList::new();
    let mut left = 0i64;
    for (topic, p) in all.into_iter().skip(k).step_by(n) {
        let (low, high) = c
            .fetch_watermarks(&topic, p, Duration::from_secs(10))
            .unwrap();
        left += high - low;
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let (mut records, mut first, mut last) = (0u64, None, Instant::now());
    while left > 0 {
        match c.poll(Duration::from_secs(10)) {
            Some(Ok(_)) => {
                left -= 1;
                records += 1;
                last = Instant::now();
                first.get_or_insert(last);
            }
            Some(Err(e)) => panic!("raw consume: {e}"),
            None => panic!("raw consume stalled with {left} records left"),
        }
    }
    let seconds = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    println!("raw: {records} {seconds}");
}

/// Consume-and-discard of every source record by one process per core in `cores`, each
/// pinned to its core and given an equal share of the partitions: records/s together. What
/// the host's broker and fetch path allow, with no verifying at all.
/// A command run on `core` alone (`taskset`), at the niceness `SCALE_NICE` gives (none by
/// default): with the instances niced, the broker that shares their cores is served first, as
/// a broker on a host of its own would be.
fn pinned(core: usize) -> Command {
    let mut c = Command::new("nice");
    c.args([
        "-n",
        &env_or("SCALE_NICE", "0"),
        "taskset",
        "-c",
        &core.to_string(),
    ]);
    c
}

fn raw(prefix: &str, cores: &[usize]) -> f64 {
    let me = std::env::current_exe().unwrap();
    let children: Vec<_> = cores
        .iter()
        .enumerate()
        .map(|(k, core)| {
            pinned(*core)
                .arg(&me)
                .args(["--raw", prefix, &k.to_string(), &cores.len().to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .expect("taskset and the bench run")
        })
        .collect();
    let (mut records, mut seconds) = (0u64, 0f64);
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "raw consume failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.starts_with("raw: ")).unwrap();
        let mut f = line[5..].split(' ');
        records += f.next().unwrap().parse::<u64>().unwrap();
        seconds = seconds.max(f.next().unwrap().parse().unwrap());
    }
    records as f64 / seconds
}

/// The source topics' records and bytes (key and value).
fn source_size(prefix: &str) -> (u64, u64) {
    let c = consumer("cdc-verifier-bench-scale");
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let topics: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|t| t.starts_with(prefix) && t.contains(".shop."))
        .collect();
    let (mut n, mut b) = (0u64, 0u64);
    for t in topics {
        for (_, size) in read_topic(&t) {
            n += 1;
            b += size as u64;
        }
    }
    (n, b)
}

/// One instance's figures: records verified, seconds from its first record to caught up, and
/// what it said on the reach topic (of its first shards).
struct Ran {
    records: u64,
    seconds: f64,
    reach_bytes: u64,
    /// The instance's peak resident memory, MB (`VmHWM`, last read before it exited).
    peak_rss_mb: f64,
}

/// A process's peak resident memory so far, MB, from `/proc/<pid>/status`.
fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU seconds a process has used so far (user and system), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks / 100.0)
}

/// CPU seconds the host has been busy (every core, user, system, interrupts), from
/// `/proc/stat`.
fn host_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().next() else {
        return f64::NAN;
    };
    let f: Vec<f64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: f64 =
        f.iter().take(8).sum::<f64>() - f.get(3).unwrap_or(&0.0) - f.get(4).unwrap_or(&0.0);
    busy / 100.0
}

/// Pins every thread of the broker to `cores` (as taskset reads a list); false when its
/// process is not known or taskset refuses.
fn pin_broker(cores: &str) -> bool {
    let Some(pid) = broker_pid() else {
        return false;
    };
    Command::new("taskset")
        .args(["-a", "-p", "-c", cores, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The broker's process, as `scripts/services` recorded it.
fn broker_pid() -> Option<u32> {
    let state = std::env::var("SERVICES_STATE")
        .unwrap_or_else(|_| format!("{}/.services", env!("CARGO_MANIFEST_DIR")));
    std::fs::read_to_string(format!("{state}/kafka.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.split(' ')
        .find_map(|w| w.strip_prefix(&format!("{name}=")))
}

/// CPU seconds the verifiers and the broker used while the verifiers were measured (each
/// from its first record until it had read everything).
#[derive(Default, Clone, Copy)]
struct Cpu {
    verifiers: f64,
    broker: f64,
    /// The host's cores busy (any process, the kernel included), on average over the span.
    host_busy: f64,
}

/// One reading: CPU seconds of the instances (one each) and of the broker, and the host's busy
/// seconds.
struct Sample {
    at: Instant,
    instances: Vec<f64>,
    broker: f64,
    host: f64,
}

/// Readings over time.
struct Samples(Vec<Sample>);

impl Samples {
    /// How much `which` grew from `from` to `to` (the nearest readings within).
    fn between(&self, from: Instant, to: Instant, which: impl Fn(&Sample) -> f64) -> f64 {
        let inside: Vec<&Sample> = self
            .0
            .iter()
            .filter(|s| s.at >= from && s.at <= to)
            .collect();
        match (inside.first(), inside.last()) {
            (Some(a), Some(b)) => which(b) - which(a),
            _ => f64::NAN,
        }
    }
}

/// Instances started together on `cores`, sharing `shards` shards under `group`.
fn verify(
    prefix: &str,
    group: &str,
    detail: &str,
    cores: &[usize],
    shards: u32,
) -> Option<(Vec<Ran>, Cpu)> {
    // (`SCALE_CONFIG`: a config file the instances read too, e.g. to try consumer properties.)
    let config: Vec<String> = std::env::var("SCALE_CONFIG")
        .map(|f| vec!["--config".into(), f])
        .unwrap_or_default();
    let mut children: Vec<_> = cores
        .iter()
        .enumerate()
        .map(|(i, core)| {
            pinned(*core)
                .arg(BIN)
                .args(["run", "--until-caught-up", "--topic-prefix", prefix])
                .args(&config)
                .args(["--group-id", group])
                .args(["--bootstrap-servers", &bootstrap()])
                .args(["--registry-url", &registry()])
                .args(["--set", &format!("alerts.detail-topic={detail}")])
                .args(["--set", &format!("alerts.topic={detail}.episodes")])
                .args(["--set", &format!("alerts.dead-letter-topic={detail}.dlq")])
                .args(["--set", &format!("alerts.instance={group}-{i}")])
                .args(["--set", "service.listen=127.0.0.1:0"])
                .args(["--set", "service.summary-interval-s=0"])
                .args(["--set", &format!("scale.shards={shards}")])
                .args(["--set", "scale.session-timeout-ms=6000"])
                // Both join before either starts: no hand-over mid-measurement.
                .args(["--set", "scale.settle-ms=10000"])
                .args(["--set", "scale.place-by=load"])
                .env("CDC_VERIFIER_LOG", env_or("SCALE_LOG", "info"))
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("taskset and the verifier run")
        })
        .collect();
    // Each log read as it is written, so that the moment an instance has read everything is
    // known here.
    let readers: Vec<_> = children
        .iter_mut()
        .map(|c| {
            let err = c.stderr.take().unwrap();
            std::thread::spawn(move || {
                let mut log = String::new();
                let (mut caught, mut rebalanced) = (None, None);
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    if caught.is_none() && line.contains("read everything:") {
                        caught = Some(Instant::now());
                    }
                    if rebalanced.is_none() && line.contains("the group rebalances") {
                        rebalanced = Some(Instant::now());
                    }
                    log.push_str(&line);
                    log.push('\n');
                }
                (log, caught, rebalanced)
            })
        })
        .collect();
    // CPU readings every 20 ms while they run.
    let pids: Vec<u32> = children.iter().map(std::process::Child::id).collect();
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        let broker = broker_pid();
        std::thread::spawn(move || {
            let mut samples = Vec::new();
            let mut last = vec![0.0; pids.len()];
            let mut peaks = vec![0.0f64; pids.len()];
            while !done.load(Ordering::SeqCst) {
                for (i, pid) in pids.iter().enumerate() {
                    if let Some(c) = cpu_seconds(*pid) {
                        last[i] = c;
                    }
                    if let Some(m) = peak_rss_mb(*pid) {
                        peaks[i] = peaks[i].max(m);
                    }
                }
                samples.push(Sample {
                    at: Instant::now(),
                    instances: last.clone(),
                    broker: broker.and_then(cpu_seconds).unwrap_or(f64::NAN),
                    host: host_busy_seconds(),
                });
                std::thread::sleep(Duration::from_millis(20));
            }
            (Samples(samples), peaks)
        })
    };
    for c in &mut children {
        let status = c.wait().unwrap();
        assert!(status.success(), "the verifier failed");
    }
    done.store(true, Ordering::SeqCst);
    let (samples, peaks) = sampler.join().unwrap();
    let mut cpu = Cpu::default();
    let mut span: Option<(Instant, Instant)> = None;
    let logs: Vec<(String, Option<Instant>, Option<Instant>)> =
        readers.into_iter().map(|r| r.join().unwrap()).collect();
    // An instance that is done leaves the group, and the others take its shards over: only
    // the first pass, until each has read everything, is measured; a run in which one was
    // handed shards before it had read everything is not.
    if logs
        .iter()
        .any(|(_, caught, rebalanced)| rebalanced.is_some_and(|r| caught.is_none_or(|c| r < c)))
    {
        return None;
    }
    // (`SCALE_LOGS=DIR`: each instance's log kept there, named after its outputs' topic.)
    if let Ok(dir) = std::env::var("SCALE_LOGS") {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, (log, _, _)) in logs.iter().enumerate() {
            std::fs::write(format!("{dir}/{detail}-{i}.log"), log).unwrap();
        }
    }
    let ran = logs
        .into_iter()
        .enumerate()
        .map(|(i, (log, caught_at, _))| {
            let caught = log
                .lines()
                .find(|l| l.contains("read everything:"))
                .unwrap_or_else(|| panic!("no `read everything` line:\n{log}"));
            let reach = log.lines().find(|l| l.contains("reach said:"));
            let ran = Ran {
                records: field(caught, "records").unwrap().parse().unwrap(),
                seconds: field(caught, "seconds").unwrap().parse().unwrap(),
                reach_bytes: reach
                    .and_then(|l| field(l, "bytes"))
                    .map_or(0, |b| b.parse().unwrap()),
                peak_rss_mb: peaks[i],
            };
            let to = caught_at.expect("the line was read");
            let from = to - Duration::from_secs_f64(ran.seconds);
            cpu.verifiers += samples.between(from, to, |s| s.instances[i]);
            span = Some(span.map_or((from, to), |(a, b)| (a.min(from), b.max(to))));
            ran
        })
        .collect::<Vec<Ran>>();
    // The broker over the whole measured span: from the first instance's first record until
    // the last has read everything.
    if let Some((from, to)) = span {
        cpu.broker = samples.between(from, to, |s| s.broker);
        cpu.host_busy =
            samples.between(from, to, |s| s.host) / to.duration_since(from).as_secs_f64().max(1e-9);
    }
    Some((ran, cpu))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list") {
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--raw") {
        raw_part(
            &args[i + 1],
            args[i + 2].parse().unwrap(),
            args[i + 3].parse().unwrap(),
        );
        return;
    }
    let events = env_or("SCALE_EVENTS", "1500000");
    let rounds: usize = env_or("SCALE_ROUNDS", "3").parse().unwrap();
    let shards: u32 = env_or("SCALE_SHARDS", "8").parse().unwrap();
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let prefix = format!("bench-scale-{t}-");
    let scenario = env_or("SCALE_SCENARIO", "faults");
    let out = Command::new(BIN)
        .args(["simulate", "--scenario", &scenario, "--events", &events])
        .args(["--topic-prefix", &prefix, "--partitions", "8"])
        .args(["--bootstrap-servers", &bootstrap()])
        .args(["--registry-url", &registry()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "simulate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (source_records, source_bytes) = source_size(&prefix);
    println!(
        "preloaded: {events} primary events of the {scenario} scenario, {source_records} records, {source_bytes} bytes; {shards} shards"
    );

    let (mut one, mut two, mut reach) = (Vec::new(), Vec::new(), Vec::new());
    // CPU microseconds a record: the one instance, the two together, the broker in each.
    let (mut cpu_one, mut cpu_two, mut broker_one, mut broker_two) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Peak resident memory, MB: the one instance, and the larger of the two.
    let (mut rss_one, mut rss_two) = (Vec::new(), Vec::new());
    // The host's cores busy over the span measured (any process and the kernel).
    let (mut host_one, mut host_two) = (Vec::new(), Vec::new());
    // Consume-and-discard alone, one process against two: the host's own ceiling.
    let (mut raw_one, mut raw_two) = (Vec::new(), Vec::new());
    // One instance with the broker pinned to its core.
    let mut one_beside = Vec::new();
    let mut equal = true;
    for round in 0..rounds {
        raw_one.push(raw(&prefix, &[0]));
        raw_two.push(raw(&prefix, &[0, 1]));
        println!(
            "round {}: raw consume-and-discard: 1 consumer {:.0} records/s, 2 consumers {:.0} records/s (efficiency {:.2})",
            round + 1,
            raw_one[round],
            raw_two[round],
            raw_two[round] / (2.0 * raw_one[round])
        );
        let d1 = format!("{prefix}r{round}-one");
        let (a, ca) = verify(&prefix, &format!("{prefix}r{round}-g1"), &d1, &[0], shards)
            .expect("one instance is never handed shards");
        // The one instance again, with the broker on its core: two instances each share their
        // core with the broker serving them, while one alone leaves the broker the other core.
        // This baseline gives one instance what each of two has.
        if pin_broker("0") {
            let d = format!("{prefix}r{round}-one-beside-broker");
            let beside = verify(&prefix, &format!("{prefix}r{round}-g1b"), &d, &[0], shards);
            let all = format!(
                "0-{}",
                std::thread::available_parallelism().map_or(1, |n| n.get()) - 1
            );
            assert!(
                pin_broker(&all),
                "the broker could not be given every core back"
            );
            let (r, _) = beside.expect("one instance is never handed shards");
            one_beside.push(r[0].records as f64 / r[0].seconds);
            println!(
                "round {}: 1 instance with the broker on its core {:.0} records/s",
                round + 1,
                one_beside[round]
            );
        }
        let cores: &[usize] = if std::env::var("SCALE_SAME").is_ok() {
            &[0]
        } else {
            &[0, 1]
        };
        let mut attempt = 0;
        let (d2, b, cb) = loop {
            let d2 = format!("{prefix}r{round}-two{attempt}");
            let group = format!("{prefix}r{round}-g2-{attempt}");
            if let Some((b, cb)) = verify(&prefix, &group, &d2, cores, shards) {
                break (d2, b, cb);
            }
            attempt += 1;
            assert!(attempt < 6, "shards changed hands mid-measurement 6 times");
            println!(
                "round {}: an instance done left, and the other was handed its shards before it had read everything: again",
                round + 1
            );
        };
        // Every record read once, whatever the sharing.
        assert_eq!(
            a[0].records, source_records,
            "1 instance read every record once"
        );
        assert_eq!(
            b.iter().map(|r| r.records).sum::<u64>(),
            source_records,
            "2 instances read every record once between them"
        );
        let rate_one = a[0].records as f64 / a[0].seconds;
        let rate_two = b.iter().map(|r| r.records).sum::<u64>() as f64
            / b.iter().map(|r| r.seconds).fold(0.0, f64::max);
        let said: u64 = b.iter().map(|r| r.reach_bytes).sum();
        let keys = |topic: &str| -> BTreeSet<Vec<u8>> {
            read_topic(topic).into_iter().map(|(k, _)| k).collect()
        };
        // Lag and silence are judged by the clock, which over a backlog moves with the order
        // the partitions happen to be read in: one instance run twice may differ in them
        // (SCALE_SAME=1 shows it). They are counted apart; every other verdict must be equal.
        let clocked = |k: &Vec<u8>| {
            let k = String::from_utf8_lossy(k);
            k.contains("ReplicaLag") || k.contains("StreamSilent")
        };
        let (k1, k2) = (keys(&d1), keys(&d2));
        let (c1, k1): (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>) = k1.into_iter().partition(clocked);
        let (c2, k2): (BTreeSet<Vec<u8>>, BTreeSet<Vec<u8>>) = k2.into_iter().partition(clocked);
        let same = k1 == k2;
        for (only, in_which) in [
            (k1.difference(&k2), "1 instance"),
            (k2.difference(&k1), "2 instances"),
        ] {
            for k in only.take(10) {
                println!("  only from {in_which}: {}", String::from_utf8_lossy(k));
            }
        }
        let clock_differ = c1.symmetric_difference(&c2).count();
        equal &= same;
        // The two are timed by the one that ends last: how far apart they end is the
        // placement's share of what two instances lose.
        println!(
            "round {}: 2 instances: {}",
            round + 1,
            b.iter()
                .map(|r| format!(
                    "{} records in {:.2} s ({:.0} records/s)",
                    r.records,
                    r.seconds,
                    r.records as f64 / r.seconds
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "round {}: 1 instance {:.0} records/s; 2 instances {:.0} records/s ({} and {} records); reach {} bytes; verdicts equal: {} ({} verdicts; lag and silence apart: {} and {}, {} differ)",
            round + 1,
            rate_one,
            rate_two,
            b[0].records,
            b.get(1).map_or(0, |r| r.records),
            said,
            if same { "yes" } else { "no" },
            k1.len(),
            c1.len(),
            c2.len(),
            clock_differ
        );
        let per = |cpu: f64, records: u64| 1e6 * cpu / records as f64;
        let records_two = b.iter().map(|r| r.records).sum::<u64>();
        cpu_one.push(per(ca.verifiers, a[0].records));
        cpu_two.push(per(cb.verifiers, records_two));
        broker_one.push(per(ca.broker, a[0].records));
        broker_two.push(per(cb.broker, records_two));
        host_one.push(ca.host_busy);
        host_two.push(cb.host_busy);
        rss_one.push(a[0].peak_rss_mb);
        rss_two.push(b.iter().map(|r| r.peak_rss_mb).fold(0.0, f64::max));
        println!(
            "round {}: CPU µs a record: 1 instance {:.2}, 2 instances {:.2} together; the broker {:.2} and {:.2}; the host's cores busy {:.2} and {:.2} of 2; peak memory {:.0} MB alone, {:.0} MB the larger of two",
            round + 1,
            cpu_one[round],
            cpu_two[round],
            broker_one[round],
            broker_two[round],
            host_one[round],
            host_two[round],
            rss_one[round],
            rss_two[round]
        );
        one.push(rate_one);
        two.push(rate_two);
        reach.push(said as f64);
    }
    let (a, b) = (median(one), median(two));
    let shuffle = median(reach);
    // The broker shares the host's cores with the instances: what it costs a record says how
    // much of the two cores the two instances really had.
    println!(
        "cpu, µs a record (medians): 1 instance {:.2}, 2 instances {:.2} together; the broker {:.2} and {:.2} beside them; the host's cores busy {:.2} and {:.2} of 2; peak memory {:.0} MB alone, {:.0} MB each of two",
        median(cpu_one),
        median(cpu_two),
        median(broker_one),
        median(broker_two),
        median(host_one),
        median(host_two),
        median(rss_one),
        median(rss_two)
    );
    let (r1, r2) = (median(raw_one), median(raw_two));
    println!(
        "raw consume-and-discard (medians): 1 consumer {r1:.0} records/s, 2 consumers {r2:.0} records/s, efficiency {:.2}; the verifier reads at {:.2} and {:.2} of them",
        r2 / (2.0 * r1),
        a / r1,
        b / r2
    );
    if !one_beside.is_empty() {
        let c = median(one_beside);
        println!(
            "beside the broker (medians): 1 instance sharing its core with the broker {c:.0} records/s ({:.2} of alone); 2 instances {b:.0} records/s: efficiency {:.2} against it",
            c / a,
            b / (2.0 * c)
        );
    }
    println!(
        "scale: 1 instance {a:.0} records/s, 2 instances {b:.0} records/s, efficiency {:.2}, shuffle {:.2} bytes/record ({:.3} % of the source bytes), verdicts equal: {}",
        b / (2.0 * a),
        shuffle / source_records as f64,
        100.0 * shuffle / source_bytes as f64,
        if equal { "yes" } else { "no" }
    );
}
