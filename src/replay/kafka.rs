//! Replay from Kafka: a bounded window of every verified topic, by time or by offsets, read
//! with a consumer that never commits (it leaves the live service's group alone).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cdc_verifier_core::verdict::Kind;
use cdc_verifier_core::{Drill, Progress};
use cdc_verifier_kafka::consume::{Consumer, KafkaSettings};
use cdc_verifier_kafka::source::RegistrySource;

use super::span::{parse_time, time_span};
use crate::clients;
use crate::config::Config;
use crate::report::{self, Report, SourceInfo};
use crate::verify::{SourceRecord, Verifier};

const META_TIMEOUT: Duration = Duration::from_secs(10);

/// The offsets to read: [start, end) per (topic, partition).
struct Window {
    topics: Vec<(String, u32)>,
    ranges: HashMap<(String, u32), (i64, i64)>,
}

impl Window {
    fn total(&self) -> u64 {
        self.ranges
            .values()
            .map(|(s, e)| (e - s).max(0) as u64)
            .sum()
    }
}

fn plan(
    cfg: &Config,
    consumer: &Consumer,
    from: Option<&str>,
    to: Option<&str>,
    offsets: Option<&str>,
) -> anyhow::Result<Window> {
    let all = consumer
        .discover(META_TIMEOUT)
        .with_context(|| format!("cannot list topics at {}", cfg.kafka.bootstrap_servers))?;
    let topics: Vec<(String, u32)> = all
        .into_iter()
        .filter(|(t, _)| cfg.route(t).is_some())
        .collect();
    if topics.is_empty() {
        bail!(
            "no topic at {} matches the configured streams (prefixes {})",
            cfg.kafka.bootstrap_servers,
            cfg.streams()
                .map(|s| s.topic_prefix.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let (from_ms, to_ms) = (
        from.map(parse_time).transpose()?,
        to.map(parse_time).transpose()?,
    );
    // Records of transactions committed before `to` can be written later (replication lag):
    // read on past it; the engine keeps exactly the transactions of the span.
    let to_ms = to_ms.map(|t| t + read_margin_ms(cfg));
    let (off_start, off_end) = match offsets {
        Some(o) => {
            let (a, b) = o
                .split_once("..")
                .with_context(|| format!("--offsets `{o}` is not START..END"))?;
            let p = |x: &str| -> anyhow::Result<Option<i64>> {
                if x.is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(x.parse().with_context(|| format!("offset `{x}`"))?))
                }
            };
            (p(a)?, p(b)?)
        }
        None => (None, None),
    };
    let mut ranges = HashMap::new();
    for (t, n) in &topics {
        let starts = match from_ms {
            Some(ms) => consumer.offsets_for_time(t, *n, ms, META_TIMEOUT)?,
            None => (0..*n)
                .map(|p| Ok(consumer.watermarks(t, p, META_TIMEOUT)?.0))
                .collect::<anyhow::Result<_>>()?,
        };
        let ends = match to_ms {
            Some(ms) => consumer.offsets_for_time(t, *n, ms, META_TIMEOUT)?,
            None => (0..*n)
                .map(|p| Ok(consumer.watermarks(t, p, META_TIMEOUT)?.1))
                .collect::<anyhow::Result<_>>()?,
        };
        for p in 0..*n {
            let (lo, hi) = consumer.watermarks(t, p, META_TIMEOUT)?;
            let start = off_start.unwrap_or(starts[p as usize]).clamp(lo, hi);
            let end = off_end.unwrap_or(ends[p as usize]).clamp(start, hi);
            ranges.insert((t.clone(), p), (start, end));
        }
    }
    Ok(Window { topics, ranges })
}

/// How far past the end of a time span records are read.
fn read_margin_ms(cfg: &Config) -> i64 {
    cfg.verify.timing.max_replica_lag_ms + cfg.verify.timing.silent_after_ms
}

pub fn replay(
    cfg: &Config,
    from: Option<&str>,
    to: Option<&str>,
    offsets: Option<&str>,
    progress: bool,
) -> anyhow::Result<Report> {
    let settings = clients::kafka_settings(cfg);
    let consumer = settings.consumer(&format!("{}-replay", cfg.kafka.group_id))?;
    let window = plan(cfg, &consumer, from, to, offsets)?;
    let span = (
        from.map(parse_time).transpose()?,
        to.map(parse_time).transpose()?,
    );
    let mut src = clients::registry(cfg)?;
    let first = pass(
        cfg,
        &settings,
        &window,
        span,
        Drill::Off,
        &mut src,
        progress.then_some("checking digests"),
    )?;
    let mut diverged: Vec<(String, u64)> = first
        .verdicts
        .iter()
        .filter(|d| d.kind() == Kind::DataMismatch)
        .filter_map(|d| Some((d.table()?.to_string(), d.range()?.index)))
        .collect();
    diverged.sort();
    diverged.dedup();
    let v = if diverged.is_empty() {
        first
    } else {
        pass(
            cfg,
            &settings,
            &window,
            span,
            Drill::Ranges(diverged),
            &mut src,
            progress.then_some("naming keys"),
        )?
    };
    let desc = format!(
        "kafka {} {}",
        cfg.kafka.bootstrap_servers,
        match (from, to, offsets) {
            (_, _, Some(o)) => format!("offsets {o}"),
            (f, t, None) => format!(
                "from {} to {}",
                f.unwrap_or("the beginning"),
                t.unwrap_or("the end")
            ),
        }
    );
    let (f, t) = time_span(&v);
    Ok(report::build(
        &v.engine,
        &v.verdicts,
        SourceInfo {
            kind: "kafka".into(),
            description: desc,
            from: f,
            to: t,
        },
    ))
}

fn pass(
    cfg: &Config,
    settings: &KafkaSettings,
    window: &Window,
    span: (Option<i64>, Option<i64>),
    drill: Drill,
    src: &mut RegistrySource,
    progress: Option<&str>,
) -> anyhow::Result<Verifier> {
    let consumer = settings.consumer(&format!("{}-replay", cfg.kafka.group_id))?;
    let mut engine_cfg = cfg.engine();
    engine_cfg.drill = drill;
    engine_cfg.origin_span = span;
    let mut v = Verifier::new(cfg, engine_cfg, &window.topics);
    let index: HashMap<&str, usize> = window
        .topics
        .iter()
        .enumerate()
        .map(|(i, (t, _))| (t.as_str(), i))
        .collect();
    let mut assign = Vec::new();
    let mut remaining = 0usize;
    for (i, (t, n)) in window.topics.iter().enumerate() {
        for p in 0..*n {
            let (start, end) = window.ranges[&(t.clone(), p)];
            let topic = v.route(i).expect("planned topics are routed");
            if start < end {
                assign.push((t.as_str(), p, start));
                v.engine.set_progress(topic, p, Progress::Reading);
                remaining += 1;
            } else {
                v.engine.set_progress(topic, p, Progress::Ended);
            }
        }
    }
    let bar = progress.map(|what| crate::progress::records_bar(what, window.total()));
    if remaining > 0 {
        consumer.assign(assign)?;
    }
    let mut done: HashMap<(usize, u32), bool> = HashMap::new();
    let mut last_ts = 0;
    let mut idle_since = Instant::now();
    while remaining > 0 {
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                if idle_since.elapsed() > Duration::from_secs(60) {
                    bail!(
                        "no record from Kafka for 60 s with {remaining} partitions still to read"
                    );
                }
            }
            Some(Err(e)) => return Err(e).context("reading from Kafka"),
            Some(Ok(m)) => {
                idle_since = Instant::now();
                let ti = index[m.topic()];
                let (_, end) = window.ranges[&(m.topic().to_string(), m.partition())];
                if m.offset() >= end || done.contains_key(&(ti, m.partition())) {
                    continue;
                }
                let ts = m.timestamp_ms().unwrap_or(last_ts);
                last_ts = last_ts.max(ts);
                let rec = SourceRecord {
                    topic: ti,
                    partition: m.partition(),
                    offset: m.offset(),
                    timestamp_ms: ts,
                    key: m.key(),
                    value: m.value(),
                };
                let mut backoff = Duration::from_millis(cfg.registry.retry_initial_ms);
                loop {
                    match v.feed(&rec, src) {
                        Ok(_) => break,
                        Err(e) => {
                            // The registry is away: wait and retry the same record.
                            tracing::warn!(error = %e, "schema registry unavailable, retrying in {backoff:?}");
                            std::thread::sleep(backoff);
                            backoff =
                                (backoff * 2).min(Duration::from_millis(cfg.registry.retry_max_ms));
                        }
                    }
                }
                if m.offset() + 1 >= end {
                    done.insert((ti, m.partition()), true);
                    let topic = v.route(ti).expect("routed");
                    v.engine.set_progress(topic, m.partition(), Progress::Ended);
                    remaining -= 1;
                }
                if let Some(b) = &bar
                    && v.records.is_multiple_of(16_384)
                {
                    b.set_position(v.records);
                    b.set_message(format!("{} findings", v.findings()));
                }
            }
        }
    }
    loop {
        match v.advance(last_ts, src) {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!(error = %e, "schema registry unavailable, retrying");
                std::thread::sleep(Duration::from_millis(cfg.registry.retry_max_ms.min(1000)));
            }
        }
    }
    v.finish(src).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(v)
}
