//! `cdc-verifier replay`: verifies a window of history — from a capture file or from Kafka
//! by time or offsets — and names the exact keys that differ.
//!
//! Two passes over the same records. The first compares every window's digests (these are the
//! checkpoints: each window's digest per range is compared, so the first divergent window of
//! each replica and table is known exactly, without per-key state). The second re-reads the
//! same records keeping per-key state only for the ranges that diverged, and names their keys
//! with both row images. Both passes reach the same verdicts; the second adds the keys.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use cdc_verifier_core::verdict::Kind;
use cdc_verifier_core::{Drill, MemorySource, Progress};
use cdc_verifier_sim::CaptureReader;

use crate::config::Config;
use crate::report::{self, Report, SourceInfo};
use crate::verify::Verifier;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (TOML); embedded defaults otherwise.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Replay a capture file written by `cdc-verifier simulate --capture` or by a capture of
    /// real topics, with no service running.
    #[arg(long, conflicts_with = "offsets")]
    pub capture: Option<PathBuf>,
    /// Verify the transactions the primary committed from this time on (RFC 3339, e.g.
    /// 2024-08-14T15:40:00Z, or epoch ms), from Kafka or within the capture. Replicas are
    /// verified at the positions of those transactions, whenever they applied them.
    #[arg(long)]
    pub from: Option<String>,
    /// ... and before this time; default: up to the end of each partition (or of the capture).
    #[arg(long)]
    pub to: Option<String>,
    /// Replay from Kafka by offsets, `START..END` in every partition (either side may be empty).
    #[arg(long)]
    pub offsets: Option<String>,
    /// Kafka bootstrap servers (overrides kafka.bootstrap-servers).
    #[arg(long)]
    pub bootstrap_servers: Option<String>,
    /// Schema registry URL (overrides registry.url).
    #[arg(long)]
    pub registry_url: Option<String>,
    /// Prefix of the simulator's topics (`<prefix><stream>.shop.<table>`), for captures and
    /// topics written with `simulate --topic-prefix`.
    #[arg(long)]
    pub topic_prefix: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the HTML report here (default: next to the JSON report, or ./cdc-verifier-report.html).
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut overrides = Vec::new();
    if let Some(b) = &args.bootstrap_servers {
        overrides.push(("kafka.bootstrap-servers".to_string(), b.clone()));
    }
    if let Some(r) = &args.registry_url {
        overrides.push(("registry.url".to_string(), r.clone()));
    }
    let mut cfg = Config::from_env(args.config.as_deref(), &overrides)?;
    if let Some(p) = &args.topic_prefix {
        cfg = cfg.with_simulator_topics(p);
    }
    let report = if let Some(path) = &args.capture {
        let from = args
            .from
            .as_deref()
            .map(crate::kafka_replay::parse_time)
            .transpose()?;
        let to = args
            .to
            .as_deref()
            .map(crate::kafka_replay::parse_time)
            .transpose()?;
        replay_capture(&cfg, path, (from, to), !args.quiet)?
    } else if args.from.is_some() || args.to.is_some() || args.offsets.is_some() {
        crate::kafka_replay::replay(
            &cfg,
            args.from.as_deref(),
            args.to.as_deref(),
            args.offsets.as_deref(),
            !args.quiet,
        )?
    } else {
        bail!("say what to replay: --capture FILE, or --from/--to times, or --offsets START..END");
    };
    finish(&report, args.report.as_deref(), args.html.as_deref())
}

/// Prints the answer, writes the reports, and returns the exit status: 0 consistent,
/// 1 divergent.
pub fn finish(
    report: &Report,
    json: Option<&Path>,
    html: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    print!("{}", report::summary_text(report));
    if let Some(p) = json {
        std::fs::write(p, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("cannot write {}", p.display()))?;
        println!("report: {}", p.display());
    }
    let html_path = html.map(Path::to_path_buf).unwrap_or_else(|| match json {
        Some(j) => j.with_extension("html"),
        None => PathBuf::from("cdc-verifier-report.html"),
    });
    std::fs::write(&html_path, report::html::render(report))
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    println!("html report: {}", html_path.display());
    Ok(if report.is_consistent() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

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

/// Record-time bounds `[from, to)`.
type Span = (Option<i64>, Option<i64>);

fn replay_capture(cfg: &Config, path: &Path, span: Span, progress: bool) -> anyhow::Result<Report> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot open capture {}", path.display()))?
        .len();
    // Pass 1: digests only.
    let first = capture_pass(
        cfg,
        path,
        span,
        Drill::Off,
        progress.then_some(("checking digests", size)),
    )?;
    let diverged: Vec<(String, u64)> = {
        let mut v: Vec<(String, u64)> = first
            .verdicts
            .iter()
            .filter(|d| d.kind == Kind::DataMismatch)
            .filter_map(|d| Some((d.table.clone()?, d.range?)))
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
            span,
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

pub fn time_span(v: &Verifier) -> (Option<String>, Option<String>) {
    let tl = v.engine.timeline();
    let from = tl
        .iter()
        .filter_map(|(_, _, s)| s.first().map(|s| s.start_ms))
        .min();
    let to = tl
        .iter()
        .filter_map(|(_, _, s)| s.last().map(|s| s.end_ms))
        .max();
    (
        from.map(cdc_verifier_core::avro::json::format_millis),
        to.map(cdc_verifier_core::avro::json::format_millis),
    )
}

fn capture_pass(
    cfg: &Config,
    path: &Path,
    (from, to): Span,
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
    let mut v = Verifier::new(cfg, engine_cfg, &topics);
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
            r.topic as usize,
            r.partition,
            r.offset,
            r.timestamp_ms,
            r.key,
            r.value,
            &mut src,
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
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
