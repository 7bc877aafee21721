//! One pass over a replay's window: every partition read from its start until it has passed
//! the span or reached its end, replicas held back while far ahead of the primary.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cdc_verifier_core::{Drill, LagBy, Progress};
use cdc_verifier_kafka::consume::{Consumer, KafkaSettings};
use cdc_verifier_kafka::source::RegistrySource;

use super::{Window, read_margin_ms};
use crate::config::Config;
use crate::verify::{SourceRecord, Verifier};

/// Replica records parked ahead of the primary beyond which the replicas' partitions pause
/// (and below which they resume): a replica topic read faster than the primary's waits.
const PARKED_HIGH: usize = 200_000;
const PARKED_LOW: usize = 50_000;

/// Where each partition is: (source topic index, partition) → next offset to read, and
/// whether it is done (read to its end, or past the span).
struct Parts {
    next: HashMap<(usize, u32), i64>,
    done: HashMap<(usize, u32), bool>,
    /// Replica partitions paused while the primary catches up.
    throttled: bool,
}

pub(super) fn pass(
    cfg: &Config,
    settings: &KafkaSettings,
    window: &Window,
    drill: Drill,
    src: &mut RegistrySource,
    progress: Option<&str>,
) -> anyhow::Result<Verifier> {
    let consumer = settings.consumer(&format!("{}-replay", cfg.kafka.group_id))?;
    let mut engine_cfg = cfg.engine();
    engine_cfg.drill = drill;
    engine_cfg.origin_span = window.span;
    if window.span != (None, None) {
        // History selected by commit time: lag is judged in commit time too (the record
        // times say when each topic's connector read it, not how far a replica was behind).
        engine_cfg.lag_by = LagBy::CommitTime;
    }
    let mut v = Verifier::new(cfg, engine_cfg, &window.topics);
    v.engine.set_wall_clock(window.end_stamp);
    let index: HashMap<&str, usize> = window
        .topics
        .iter()
        .enumerate()
        .map(|(i, (t, _))| (t.as_str(), i))
        .collect();
    let mut assign = Vec::new();
    let mut parts = Parts {
        next: HashMap::new(),
        done: HashMap::new(),
        throttled: false,
    };
    for (i, (t, n)) in window.topics.iter().enumerate() {
        for p in 0..*n {
            let (start, end) = window.ranges[&(t.clone(), p)];
            let topic = v.route(i).expect("planned topics are routed");
            if start < end {
                assign.push((t.as_str(), p, start));
                v.engine.set_progress(topic, p, Progress::Reading);
                parts.next.insert((i, p), start);
                parts.done.insert((i, p), false);
            } else {
                v.engine.set_progress(topic, p, Progress::Ended);
            }
        }
    }
    let mut remaining = assign.len();
    let bar = progress.map(|what| crate::progress::records_bar(what, window.total()));
    if remaining > 0 {
        consumer.assign(assign)?;
    }
    let slack = read_margin_ms(cfg);
    let mut last_ts = 0;
    let mut idle_since = Instant::now();
    while remaining > 0 {
        match consumer.poll(Duration::from_millis(200)) {
            None => {
                if parts.throttled {
                    // Waiting on the primary, not on Kafka.
                    idle_since = Instant::now();
                    throttle(cfg, window, &consumer, &mut v, &mut parts, last_ts, src)?;
                } else if idle_since.elapsed() > Duration::from_secs(60) {
                    bail!(
                        "no record from Kafka for 60 s with {remaining} partitions still to read"
                    );
                }
            }
            Some(Err(e)) => return Err(e).context("reading from Kafka"),
            Some(Ok(m)) => {
                idle_since = Instant::now();
                let ti = index[m.topic()];
                let key = (ti, m.partition());
                let (_, end) = window.ranges[&(m.topic().to_string(), m.partition())];
                if m.offset() >= end || parts.done.get(&key) != Some(&false) {
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
                feed(cfg, &mut v, &rec, src)?;
                parts.next.insert(key, m.offset() + 1);
                let topic = v.route(ti).expect("routed");
                if m.offset() + 1 >= end || v.engine.passed_span(topic, m.partition(), slack) {
                    parts.done.insert(key, true);
                    v.engine.set_progress(topic, m.partition(), Progress::Ended);
                    consumer
                        .pause([(m.topic(), m.partition())])
                        .context("cannot pause a partition read through")?;
                    remaining -= 1;
                }
                if v.records.is_multiple_of(4096) {
                    throttle(cfg, window, &consumer, &mut v, &mut parts, last_ts, src)?;
                    if let Some(b) = &bar {
                        b.set_position(v.records);
                        b.set_message(format!("{} findings", v.findings()));
                    }
                }
            }
        }
    }
    advance(cfg, &mut v, last_ts, src);
    v.finish(src).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(v)
}

/// Feeds one record; while the registry is away, waits and offers it again. Fails on a
/// configuration that fits no record (see `Engine::misconfigured`).
fn feed(
    cfg: &Config,
    v: &mut Verifier,
    rec: &SourceRecord<'_>,
    src: &mut RegistrySource,
) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(cfg.registry.retry_initial_ms);
    loop {
        match v.feed(rec, src) {
            Ok(_) => {
                if let Some(why) = v.engine.misconfigured() {
                    anyhow::bail!("{why}");
                }
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(error = %e, "schema registry unavailable, retrying in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(cfg.registry.retry_max_ms));
            }
        }
    }
}

fn advance(cfg: &Config, v: &mut Verifier, now: i64, src: &mut RegistrySource) {
    while let Err(e) = v.advance(now, src) {
        tracing::warn!(error = %e, "schema registry unavailable, retrying");
        std::thread::sleep(Duration::from_millis(cfg.registry.retry_max_ms.min(1000)));
    }
}

/// Pauses the replicas' partitions while many of their records wait parked for the primary,
/// and resumes them where they were once it has caught up — unless the primary is read
/// through, when nothing more would release them.
fn throttle(
    cfg: &Config,
    window: &Window,
    consumer: &Consumer,
    v: &mut Verifier,
    parts: &mut Parts,
    now: i64,
    src: &mut RegistrySource,
) -> anyhow::Result<()> {
    let primary_open = parts
        .done
        .iter()
        .any(|((ti, _), done)| !done && is_primary(cfg, &window.topics[*ti].0));
    if parts.throttled {
        advance(cfg, v, now, src);
    }
    let want = primary_open
        && if parts.throttled {
            v.engine.parked() > PARKED_LOW
        } else {
            v.engine.parked() > PARKED_HIGH
        };
    if want == parts.throttled {
        return Ok(());
    }
    parts.throttled = want;
    let replicas: Vec<(&str, u32, i64)> = parts
        .done
        .iter()
        .filter(|((ti, _), done)| !**done && !is_primary(cfg, &window.topics[*ti].0))
        .map(|(k @ (ti, p), _)| (window.topics[*ti].0.as_str(), *p, parts.next[k]))
        .collect();
    if want {
        consumer
            .pause(replicas.iter().map(|(t, p, _)| (*t, *p)))
            .context("cannot pause replica partitions")?;
    } else {
        consumer
            .resume_at(replicas)
            .context("cannot resume replica partitions")?;
    }
    Ok(())
}

fn is_primary(cfg: &Config, topic: &str) -> bool {
    cfg.route(topic).is_some_and(|(stream, _)| stream == 0)
}
