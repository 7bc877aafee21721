//! Replay from a capture file: the same two passes as from Kafka, over the records of a file
//! written by `simulate --capture` or by a capture of real topics.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use cdc_verifier_core::verdict::Kind;
use cdc_verifier_core::{Drill, LagBy, MemorySource, Progress};
use cdc_verifier_sim::CaptureReader;

use super::span::time_span;
use crate::config::Config;
use crate::report::{self, Report, SourceInfo};
use crate::verify::{SourceRecord, Verifier};

/// Counts the bytes read through it, for progress.
struct Counting<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Commit-time bounds `[from, to)`.
type Span = (Option<i64>, Option<i64>);

pub fn replay_capture(
    cfg: &Config,
    path: &Path,
    span: Span,
    progress: bool,
) -> anyhow::Result<Report> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot open capture {}", path.display()))?
        .len();
    let end = end_stamp(path)?;
    // Pass 1: digests only.
    let first = capture_pass(
        cfg,
        path,
        (span, end),
        Drill::Off,
        progress.then_some(("checking digests", size)),
    )?;
    let diverged: Vec<(String, u64)> = {
        let mut v: Vec<(String, u64)> = first
            .verdicts
            .iter()
            .filter(|d| d.kind() == Kind::DataMismatch)
            .filter_map(|d| Some((d.table()?.to_string(), d.range()?.index)))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let v = if diverged.is_empty() {
        first
    } else {
        // Pass 2: per-key state for the ranges that diverged.
        let second = capture_pass(
            cfg,
            path,
            (span, end),
            Drill::Ranges(diverged),
            progress.then_some(("naming keys", size)),
        )?;
        let keys = |v: &Verifier| {
            let mut k: Vec<String> = v.verdicts.iter().map(|d| d.key()).collect();
            k.sort();
            k
        };
        if keys(&first) != keys(&second) {
            bail!(
                "the two passes over {} reached different verdicts; the capture changed while it was read",
                path.display()
            );
        }
        second
    };
    let header_desc = match span {
        (None, None) => format!("capture {}", path.display()),
        (f, t) => format!(
            "capture {} from {} to {}",
            path.display(),
            f.map_or(
                "the beginning".into(),
                cdc_verifier_core::avro::json::format_millis
            ),
            t.map_or(
                "the end".into(),
                cdc_verifier_core::avro::json::format_millis
            )
        ),
    };
    let (from, to) = time_span(&v);
    Ok(report::build(
        &v.engine,
        &v.verdicts,
        SourceInfo {
            kind: "capture".into(),
            description: header_desc,
            from,
            to,
        },
    ))
}

/// The end of the span a capture holds, in record time: its last record's stamp (records are
/// in the order they were produced, so none was written later), or now if that is earlier.
/// This, not the wall clock, bounds the replay's clock: a record stamped in the future when
/// it was written is long in the past now.
fn end_stamp(path: &Path) -> anyhow::Result<i64> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open capture {}", path.display()))?;
    let mut reader = CaptureReader::new(std::io::BufReader::with_capacity(1 << 20, file))
        .with_context(|| format!("{} is not a capture file", path.display()))?;
    let mut last = None;
    while let Some(r) = reader
        .next_record()
        .with_context(|| format!("reading {}", path.display()))?
    {
        last = Some(r.timestamp_ms);
    }
    let now = crate::report::now_ms();
    Ok(last.map_or(now, |l| l.min(now)))
}

fn capture_pass(
    cfg: &Config,
    path: &Path,
    ((from, to), end_stamp): (Span, i64),
    drill: Drill,
    progress: Option<(&str, u64)>,
) -> anyhow::Result<Verifier> {
    let read = Arc::new(AtomicU64::new(0));
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open capture {}", path.display()))?;
    let mut reader = CaptureReader::new(Counting {
        inner: std::io::BufReader::with_capacity(1 << 20, file),
        read: read.clone(),
    })
    .with_context(|| format!("{} is not a capture file", path.display()))?;
    let header = reader.header().clone();
    let mut src = MemorySource::new();
    for s in &header.schemas {
        src.add(s.id, &s.subject, s.version, &s.schema);
    }
    let topics: Vec<(String, u32)> = header
        .topics
        .iter()
        .map(|t| (t.name.clone(), t.partitions))
        .collect();
    let mut engine_cfg = cfg.engine();
    engine_cfg.drill = drill;
    engine_cfg.origin_span = (from, to);
    if (from, to) != (None, None) {
        // Selected by commit time, lag is judged in commit time too (see `LagBy`).
        engine_cfg.lag_by = LagBy::CommitTime;
    }
    let mut v = Verifier::new(cfg, engine_cfg, &topics);
    v.engine.set_wall_clock(end_stamp);
    if v.routed_topics() == 0 {
        bail!(
            "no topic of {} matches the configured streams (prefixes {}); is --topic-prefix needed?",
            path.display(),
            cfg.streams()
                .map(|s| s.topic_prefix.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // A capture holds its records in time order: every partition is read as far as the clock.
    v.engine.set_all_progress(Progress::Following);
    let bar = progress.map(|(what, size)| crate::progress::bytes_bar(what, size));
    let mut last_ts = 0;
    while let Some(r) = reader
        .next_record()
        .with_context(|| format!("reading {}", path.display()))?
    {
        last_ts = r.timestamp_ms;
        v.feed(
            &SourceRecord {
                topic: r.topic as usize,
                partition: r.partition,
                offset: r.offset,
                timestamp_ms: r.timestamp_ms,
                key: r.key,
                value: r.value,
            },
            &mut src,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(why) = v.engine.misconfigured() {
            anyhow::bail!("{why}");
        }
        if v.records.is_multiple_of(65_536)
            && let Some(b) = &bar
        {
            b.set_position(read.load(Ordering::Relaxed));
            b.set_message(format!("{} events, {} findings", v.records, v.findings()));
        }
    }
    v.advance(last_ts, &mut src)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    v.finish(&mut src).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(v)
}
