//! `cdc-verifier replay`: verifies a window of history — from a capture file or from Kafka
//! by time or offsets — and names the exact keys that differ.
//!
//! Two passes over the same records. The first compares every window's digests (these are the
//! checkpoints: each window's digest per range is compared, so the first divergent window of
//! each replica and table is known exactly, without per-key state). The second re-reads the
//! same records keeping per-key state only for the ranges that diverged, and names their keys
//! with both row images. Both passes reach the same verdicts; the second adds the keys.

mod capture;
mod kafka;

pub(crate) use kafka::drill_keys;
mod span;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::report::{self, Report};

use span::parse_time;
pub use span::time_span;

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
        let from = args.from.as_deref().map(parse_time).transpose()?;
        let to = args.to.as_deref().map(parse_time).transpose()?;
        capture::replay_capture(&cfg, path, (from, to), !args.quiet)?
    } else if args.from.is_some() || args.to.is_some() || args.offsets.is_some() {
        kafka::replay(
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
/// 1 divergent; an error (2) when no event was verified, whatever else was found: nothing was
/// compared, and saying "consistent" over nothing would hide a wrong span or topic.
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
    if report.nothing_verified() {
        bail!("{}", report.nothing_to_compare());
    }
    Ok(if report.is_consistent() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests;
