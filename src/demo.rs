//! `cdc-verifier demo`: the 14 August 2024 incident, replayed in memory through the same
//! verification pipeline as `run`, with a live terminal view and the answer at the end. No
//! service needed.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use anyhow::Context;
use cdc_verifier_core::verdict::{Divergence, Kind};
use cdc_verifier_core::{Drill, MemorySource, Progress};
use cdc_verifier_sim::{OfflineRegistry, Record, Scenario, SimConfig, Simulation};

use crate::config::Config;
use crate::report::{self, SourceInfo};
use crate::verify::{SourceRecord, Verifier};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Primary change events to simulate (replicas and tombstones add about 2.3x).
    #[arg(long, default_value_t = 400_000)]
    pub events: u64,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 20240814)]
    pub seed: u64,
    /// Where to write the HTML and JSON reports.
    #[arg(long, default_value = ".")]
    pub out_dir: PathBuf,
}

const BATCH: usize = 8192;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let cfg = Config::defaults();
    let mut registry = OfflineRegistry::new();
    let sim_cfg = SimConfig {
        scenario: Scenario::Incident,
        seed: args.seed,
        events: args.events,
        replicas: 2,
        ..SimConfig::default()
    };
    let sim = Simulation::new(sim_cfg, &mut registry).context("cannot set up the simulation")?;
    let mut src = MemorySource::new();
    for s in sim.schemas() {
        src.add(s.id, &s.subject, s.version, &s.schema);
    }
    let topics: Vec<(String, u32)> = sim
        .topics()
        .iter()
        .map(|t| (t.name.clone(), t.partitions))
        .collect();
    let mut engine_cfg = cfg.engine();
    // The demo names the exact rows: per-key state for every range (a bounded, in-memory run).
    engine_cfg.drill = Drill::All;
    let mut v = Verifier::new(&cfg, engine_cfg, &topics);
    v.engine.set_all_progress(Progress::Following);

    println!(
        "cdc-verifier demo: 14 August 2024, 15:44 UTC. Peak traffic on the shop database; at 15:45 a"
    );
    println!(
        "maintenance deploy adds orders.currency (schema v2). replica-1 and replica-2 replicate it..."
    );
    println!(
        "verifying primary, replica-1 and replica-2 at equal GTID positions ({} primary events)\n",
        args.events
    );

    // The simulation runs on its own thread; batches of records come over a channel.
    let (tx, rx) = sync_channel::<Vec<Record>>(4);
    let producer = std::thread::spawn(move || {
        let mut sim = sim;
        let mut batch = Vec::with_capacity(BATCH);
        for r in sim.by_ref() {
            batch.push(r);
            if batch.len() == BATCH
                && tx
                    .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                    .is_err()
            {
                return;
            }
        }
        let _ = tx.send(batch);
    });

    let tty = std::io::stdout().is_terminal();
    let mut view = View {
        tty,
        lines: 0,
        last: Instant::now(),
        shown: 0,
        started,
    };
    let mut last_ts = 0;
    for batch in rx {
        for r in &batch {
            last_ts = r.timestamp_ms;
            v.feed(
                &SourceRecord {
                    topic: r.topic as usize,
                    partition: r.partition,
                    offset: r.offset,
                    timestamp_ms: r.timestamp_ms,
                    key: r.key.as_deref(),
                    value: r.value.as_deref(),
                },
                &mut src,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        view.update(&v, last_ts, false)?;
    }
    producer
        .join()
        .map_err(|_| anyhow::anyhow!("the simulation thread panicked"))?;
    v.advance(last_ts, &mut src)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    v.finish(&mut src).map_err(|e| anyhow::anyhow!("{e}"))?;
    view.update(&v, last_ts, true)?;

    let (from, to) = crate::replay::time_span(&v);
    let report = report::build(
        &v.engine,
        &v.verdicts,
        SourceInfo {
            kind: "demo".into(),
            description: "demo: the 2024-08-14 incident, simulated in memory".into(),
            from,
            to,
        },
    );
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let json = args.out_dir.join("cdc-verifier-demo.json");
    let html = args.out_dir.join("cdc-verifier-demo.html");
    std::fs::write(&json, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("cannot write {}", json.display()))?;
    std::fs::write(&html, report::html::render(&report))
        .with_context(|| format!("cannot write {}", html.display()))?;

    if report.nothing_verified() {
        anyhow::bail!("{}", report.nothing_to_compare());
    }
    println!();
    print!("{}", answer(&report));
    println!(
        "\nreport: {}",
        std::fs::canonicalize(&html).unwrap_or(html).display()
    );
    println!("json:   {}", json.display());
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// The answer the on-call engineer needed: which replica, which table, since when, which
/// schema version, how many rows.
fn answer(r: &report::Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "ANSWER");
    let mut any = false;
    for rep in &r.replicas {
        if rep.consistent {
            let _ = writeln!(
                s,
                "  {}: consistent with {} in all {} tables",
                rep.name,
                r.primary,
                rep.tables.len()
            );
            continue;
        }
        for t in rep.tables.iter().filter(|t| !t.consistent) {
            any = true;
            let _ = writeln!(s, "  {} diverged on table {}", rep.name, t.table);
            if let Some(f) = &t.first_divergence {
                let _ = writeln!(
                    s,
                    "    since position {} at {} (window {})",
                    f.position, f.time, f.window
                );
                if let (Some(subject), Some(actual), Some(expected)) =
                    (&f.schema_subject, f.actual_version, f.expected_version)
                {
                    let _ = writeln!(
                        s,
                        "    cause: it writes {subject} with schema version {actual}; the primary writes version {expected}{}",
                        if f.missing_fields.is_empty() {
                            String::new()
                        } else {
                            format!(" (missing: {})", f.missing_fields.join(", "))
                        }
                    );
                }
            }
            let ranges = r
                .divergences
                .iter()
                .filter(|d| {
                    d.kind() == Kind::DataMismatch
                        && d.replica == rep.name
                        && d.table() == Some(t.table.as_str())
                })
                .filter_map(|d| d.range().map(|r| r.index))
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            let _ = writeln!(
                s,
                "    {} rows differ from the primary, in {} key ranges",
                t.differing_keys.len(),
                ranges
            );
            if let Some(k) = t.differing_keys.first() {
                let diff = differing_columns(&k.primary_row, &k.replica_row);
                let _ = writeln!(s, "    e.g. key {}: {}", k.key, diff);
            }
        }
    }
    if !any {
        let _ = writeln!(s, "  every replica is consistent");
    }
    s
}

fn differing_columns(p: &serde_json::Value, r: &serde_json::Value) -> String {
    let (Some(p), Some(r)) = (p.as_object(), r.as_object()) else {
        return "row missing on one side".into();
    };
    let mut out = Vec::new();
    for (k, pv) in p {
        let rv = r.get(k).unwrap_or(&serde_json::Value::Null);
        if pv != rv {
            out.push(format!("{k} is {pv} on the primary, {rv} on the replica"));
        }
    }
    if out.is_empty() {
        "same columns, different history".into()
    } else {
        out.join("; ")
    }
}

struct View {
    tty: bool,
    lines: usize,
    last: Instant,
    shown: usize,
    started: Instant,
}

impl View {
    fn update(&mut self, v: &Verifier, last_ts: i64, last: bool) -> anyhow::Result<()> {
        let every = if self.tty {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(1)
        };
        if !last && self.last.elapsed() < every {
            return Ok(());
        }
        self.last = Instant::now();
        let mut out = std::io::stdout().lock();
        let new: Vec<&Divergence> = v.verdicts[self.shown..]
            .iter()
            .filter(|d| d.kind() != Kind::DataMismatch || self.shown == 0)
            .collect();
        let elapsed = self.started.elapsed().as_secs_f64();
        let status = format!(
            "  {} events verified ({:.0}/s), {} windows compared, {} divergence events, origin time {}",
            v.records,
            v.records as f64 / elapsed.max(1e-3),
            v.engine.stats().windows_compared,
            v.verdicts.len(),
            cdc_verifier_core::avro::json::format_millis(last_ts)
        );
        if self.tty && self.lines > 0 {
            write!(out, "\x1b[{}A\x1b[J", self.lines)?;
        }
        // Verdicts other than the many per-range mismatches are shown as they are found.
        for d in new.iter().filter(|d| d.kind() != Kind::DataMismatch) {
            writeln!(out, "  found: {}", d.summary())?;
        }
        let mismatches = v
            .verdicts
            .iter()
            .filter(|d| d.kind() == Kind::DataMismatch)
            .count();
        let status = if mismatches > 0 {
            format!("{status}\n  DataMismatch in {mismatches} (range, window) pairs so far")
        } else {
            status
        };
        writeln!(out, "{status}")?;
        self.lines = if self.tty { status.lines().count() } else { 0 };
        self.shown = v.verdicts.len();
        out.flush()?;
        Ok(())
    }
}
