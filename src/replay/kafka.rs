//! Replay from Kafka: a bounded window of every verified topic, by time or by offsets, read
//! with a consumer that never commits (it leaves the live service's group alone).
//!
//! By time, the span is of commit times (`source.ts_ms`), not of Kafka record times: a
//! connector that caught up, a backfill or a copied topic stamps records hours after their
//! commits. Record times only say where reading may start (a record is stamped when its
//! connector produced it, after the commit); each partition is then read until it has passed
//! the span's end in commit time and position (see `Engine::passed_span`), or to its end.

mod read;

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use cdc_verifier_core::Drill;
use cdc_verifier_core::verdict::{KeyDiff, Kind, OffsetRange};
use cdc_verifier_kafka::consume::Consumer;
use cdc_verifier_kafka::consume::KafkaSettings;

use super::span::{parse_time, time_span};
use crate::clients;
use crate::config::Config;
use crate::report::{self, Report, SourceInfo};

const META_TIMEOUT: Duration = Duration::from_secs(10);

/// How long before the span's start reading starts, in record time: a record is stamped when
/// its connector produced it, after the commit, unless the connector's host clock runs behind
/// the database's.
const SEEK_MARGIN_MS: i64 = 60_000;

/// The offsets to read: [start, end) per (topic, partition).
struct Window {
    topics: Vec<(String, u32)>,
    ranges: HashMap<(String, u32), (i64, i64)>,
    /// The span's commit times `[from, to)`, when replaying by time.
    span: (Option<i64>, Option<i64>),
    /// The newest record time the window can hold: a record stamped later (plus
    /// `verify.future-tolerance-ms`) was stamped by a wrong clock.
    end_stamp: i64,
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
    settings: &KafkaSettings,
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
    let span = (
        from.map(parse_time).transpose()?,
        to.map(parse_time).transpose()?,
    );
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
        let starts = match span.0 {
            Some(ms) => Some(consumer.offsets_for_time(
                t,
                *n,
                ms.saturating_sub(SEEK_MARGIN_MS),
                META_TIMEOUT,
            )?),
            None => None,
        };
        for p in 0..*n {
            let (lo, hi) = consumer.watermarks(t, p, META_TIMEOUT)?;
            let start = off_start
                .or(starts.as_ref().map(|s| s[p as usize]))
                .unwrap_or(lo)
                .clamp(lo, hi);
            // By time, to the end: where the span ends is told by the records' commit times.
            let end = off_end.unwrap_or(hi).clamp(start, hi);
            ranges.insert((t.clone(), p), (start, end));
        }
    }
    // The end of the span replayed, in record time: no record in it was written after the
    // last one, nor after now. This, not the wall clock, bounds a replay's clock: a record
    // stamped in the future when it was written is long in the past now.
    let wall = report::now_ms();
    let ends = ranges.iter().map(|((t, p), (_, e))| (t.as_str(), *p, *e));
    let end_stamp = match settings.newest_stamp_before(ends, META_TIMEOUT) {
        Ok(Some(s)) => s.min(wall),
        Ok(None) => wall,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the last records of the span; its clock is bounded by the wall clock");
            wall
        }
    };
    Ok(Window {
        topics,
        ranges,
        span,
        end_stamp,
    })
}

/// How far past the end of a time span, in commit time, a partition is read: a partition is
/// in commit order, but an event's time is when its statement ran, so a long transaction's
/// events can come after those of later times.
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
    let window = plan(cfg, &settings, &consumer, from, to, offsets)?;
    let mut src = clients::registry(cfg)?;
    let first = read::pass(
        cfg,
        &settings,
        &window,
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
        read::pass(
            cfg,
            &settings,
            &window,
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
                "committed from {} to {}",
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

/// The keys that differ in one mismatched key range of `table`, from a re-read of exactly the
/// partitions and offsets that fed its window (`offsets`, as the verdict names them), keeping
/// per-key state for that range only. Refused, before anything is read, when the window holds
/// more than `max_records` records. Returns the keys and whether more differ than are named.
pub(crate) fn drill_keys(
    cfg: &Config,
    offsets: &[OffsetRange],
    table: &str,
    range: u64,
    max_records: u64,
) -> anyhow::Result<Vec<KeyDiff>> {
    let settings = clients::kafka_settings(cfg);
    let consumer = settings.consumer(&format!("{}-drill", cfg.kafka.group_id))?;
    let wanted: Vec<&OffsetRange> = offsets.iter().filter(|o| o.last >= o.first).collect();
    let total: u64 = wanted.iter().map(|o| (o.last - o.first + 1) as u64).sum();
    if total > max_records {
        bail!(
            "the window holds {total} records, more than alerts.drill-max-records ({max_records})"
        );
    }
    let counts: HashMap<String, u32> = consumer
        .discover(META_TIMEOUT)
        .context("cannot list topics")?
        .into_iter()
        .collect();
    let mut topics: Vec<(String, u32)> = Vec::new();
    let mut ranges = HashMap::new();
    for o in &wanted {
        let n = *counts
            .get(&o.topic)
            .with_context(|| format!("topic {} is gone", o.topic))?;
        if !topics.iter().any(|(t, _)| t == &o.topic) {
            topics.push((o.topic.clone(), n));
            for p in 0..n {
                ranges.insert((o.topic.clone(), p), (0, 0));
            }
        }
        ranges.insert((o.topic.clone(), o.partition), (o.first, o.last + 1));
    }
    let window = Window {
        topics,
        ranges,
        span: (None, None),
        end_stamp: report::now_ms(),
    };
    let mut src = clients::registry(cfg)?;
    let v = read::pass(
        cfg,
        &settings,
        &window,
        Drill::Ranges(vec![(table.to_string(), range)]),
        &mut src,
        None,
    )?;
    let mut keys: Vec<KeyDiff> = Vec::new();
    for d in &v.verdicts {
        if let Some(m) = d.mismatch()
            && m.table == table
            && m.range.index == range
        {
            for k in &m.keys {
                if !keys.iter().any(|x| x.key == k.key) {
                    let mut k = k.clone();
                    k.repair = Some(Box::new(report::repair_of(
                        &v.engine,
                        &d.replica,
                        table,
                        &k,
                        "the window",
                    )));
                    keys.push(k);
                }
            }
        }
    }
    Ok(keys)
}
