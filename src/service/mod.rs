//! `cdc-verifier run`: the live service.
//!
//! Two threads do the work: the consumer thread polls Kafka in batches; the verification loop
//! (this thread) feeds them to the engine, publishes verdicts, dead-letters undecodable
//! records, and commits offsets once every window fed by them was compared and its alerts were
//! acknowledged. A third serves metrics and health. SIGTERM drains and commits; a second
//! signal exits.
//!
//! The loop's state is in `state`; it starts in `startup`, finds and follows the streams'
//! topics in `discovery`, reads and paces its partitions in `flow`, publishes in `publish`,
//! commits and drains in `commit`, reports in `telemetry` and says how it is in `health`.

mod alerts;
mod commit;
mod discovery;
mod drill;
mod endpoints;
mod episodes;
mod flow;
mod health;
mod lag;
mod metrics;
mod orphans;
mod placement;
mod publish;
mod shards;
mod startup;
mod state;
mod telemetry;
mod webhook;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use health::Health;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use cdc_verifier_kafka::batches::Ended;
use cdc_verifier_kafka::consume::ConsumeError;

use crate::config::{Config, LogFormat};
use metrics::Metrics;
use state::Service;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (TOML); embedded defaults otherwise. Environment variables
    /// CDC_VERIFIER__<SECTION>__<KEY> override it, and flags override both.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Kafka bootstrap servers (kafka.bootstrap-servers).
    #[arg(long)]
    pub bootstrap_servers: Option<String>,
    /// Schema registry URL (registry.url).
    #[arg(long)]
    pub registry_url: Option<String>,
    /// Consumer group, under which offsets are committed (kafka.group-id).
    #[arg(long)]
    pub group_id: Option<String>,
    /// Prefix of the simulator's topics (`<prefix><stream>.shop.<table>`).
    #[arg(long)]
    pub topic_prefix: Option<String>,
    /// Any setting, as `section.key=value` (repeatable), e.g. `--set verify.cut-interval-ms=100`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print the effective configuration (secrets masked) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Verify what the topics hold now, then stop: once every partition is read to its end
    /// and stays so for a moment, compare every window as for a bounded input, publish,
    /// commit and exit (for batch runs, catch-up checks and benchmarks).
    #[arg(long)]
    pub until_caught_up: bool,
}

fn load(args: &Args) -> anyhow::Result<Config> {
    let mut overrides = Vec::new();
    for (flag, key) in [
        (&args.bootstrap_servers, "kafka.bootstrap-servers"),
        (&args.registry_url, "registry.url"),
        (&args.group_id, "kafka.group-id"),
    ] {
        if let Some(v) = flag {
            overrides.push((key.to_string(), v.clone()));
        }
    }
    for s in &args.set {
        let (k, v) = s
            .split_once('=')
            .with_context(|| format!("--set `{s}` is not KEY=VALUE"))?;
        overrides.push((k.to_string(), v.to_string()));
    }
    let cfg = Config::from_env(args.config.as_deref(), &overrides)?;
    Ok(match &args.topic_prefix {
        Some(p) => cfg.with_simulator_topics(p),
        None => cfg,
    })
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("CDC_VERIFIER_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => b.json().try_init(),
        LogFormat::Text => b.try_init(),
    };
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = load(&args)?;
    if args.print_config {
        print!("{}", toml::to_string_pretty(&cfg)?);
        return Ok(ExitCode::SUCCESS);
    }
    init_logging(cfg.service.log_format);

    // Signals: the first asks for a drain, the second exits at once.
    let signals = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // A signal after the first exits at once; the first asks for a drain. Registered in
        // this order, the exit sees the flag as the previous signal left it.
        signal_hook::flag::register_conditional_shutdown(sig, 130, signals.clone())
            .context("cannot install signal handlers")?;
        signal_hook::flag::register(sig, signals.clone())
            .context("cannot install signal handlers")?;
    }

    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::new(Duration::from_secs(
        cfg.service.stall_timeout_s,
    )));
    health.starting("connecting to Kafka");
    endpoints::serve(cfg.service.listen, metrics.clone(), health.clone())?;
    tracing::info!(listen = %cfg.service.listen, "metrics on /metrics, health on /healthz and /readyz");

    if !cfg.verify.column_rules.is_empty() {
        let rules = cfg.engine().rules;
        let rules: Vec<String> = rules.0.iter().map(|r| r.to_string()).collect();
        tracing::info!("comparing under column rules: {}", rules.join("; "));
    }
    let (membership, exchange) = match cfg.scale.shards {
        0 => (None, None),
        _ => {
            let (m, e) = shards::join(&cfg, &health)?;
            (Some(m), Some(Arc::new(e)))
        }
    };
    // This process on the reach topic (an instance name may be shared by a restarted one).
    let exchange_key = format!(
        "{}#{}-{}",
        cfg.instance(),
        std::process::id(),
        crate::report::now_ms()
    );
    let mut handoffs = 0;
    loop {
        let owned = match &membership {
            None => None,
            Some(m) => match shards::wait_for_shards(
                m,
                exchange
                    .as_ref()
                    .expect("an exchange beside the membership"),
                &cfg,
                &signals,
                &health,
            ) {
                Some(s) => Some(s),
                None => {
                    tracing::info!("stopping: no shard was being verified");
                    break;
                }
            },
        };
        let mut svc = Service::start(&cfg, metrics.clone(), health.clone())?;
        if let Some(s) = &owned {
            tracing::info!(
                shards = %s.list(),
                generation = s.generation,
                "verifying the tables of shards {}",
                s.list()
            );
        }
        metrics.shards_owned.store(
            owned.as_ref().map_or(0, |s| s.owned.len() as u64),
            Ordering::Relaxed,
        );
        svc.shards = owned;
        svc.shard_handoffs = handoffs;
        svc.exchange = exchange.clone();
        // One key per assignment: what each engine last said stays heard after the next one
        // begins (see `Exchange::latest`).
        svc.exchange_key = format!("{exchange_key}.{handoffs}");
        svc.discover();
        tracing::info!(
            topics = svc.topic_names.len(),
            partitions = svc.partitions.len(),
            replicas = cfg.replicas.len(),
            group = %cfg.kafka.group_id,
            "verifying {} against {}",
            cfg.primary.name,
            cfg.replicas.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
        );
        if svc.shards.is_some() {
            let tables: std::collections::BTreeSet<&str> =
                svc.topic_routes.iter().map(|(_, t)| t.as_str()).collect();
            tracing::info!(
                "tables verified here: {}",
                tables.into_iter().collect::<Vec<_>>().join(" ")
            );
        }
        svc.resume_episodes();
        svc.until_caught_up = args.until_caught_up;
        match svc.run_loop(&signals, membership.as_ref())? {
            LoopEnd::Stopped => break,
            LoopEnd::HandedOff => {
                metrics.shards_owned.store(0, Ordering::Relaxed);
                handoffs += 1;
                drop(svc);
                metrics.carry_over();
                if let Some(m) = &membership {
                    m.release();
                }
                tracing::info!("shards handed back to the group: what was verified is committed");
            }
        }
    }
    if let Some(m) = membership {
        m.leave();
    }
    Ok(ExitCode::SUCCESS)
}

/// How the verification loop ended.
enum LoopEnd {
    /// Stopped (a signal, or `--until-caught-up` done): drained and committed.
    Stopped,
    /// The group wants this instance's shards back: drained and committed, to be handed over.
    HandedOff,
}

/// Alerts and dead letters waiting for Kafka beyond which no more records are read.
const MAX_PENDING_OUTPUTS: usize = 100_000;

impl Service {
    fn run_loop(
        &mut self,
        signals: &AtomicBool,
        membership: Option<&cdc_verifier_kafka::membership::Membership>,
    ) -> anyhow::Result<LoopEnd> {
        let commit_every = Duration::from_secs(1);
        let mut last_commit = Instant::now();
        let mut last_summary = Instant::now();
        let summary_every = Duration::from_secs(self.cfg.service.summary_interval_s.max(1));
        let mut summary_events = 0u64;
        let mut caught_up_since: Option<Instant> = None;
        loop {
            self.health.beat();
            if signals.load(Ordering::SeqCst) {
                tracing::info!("stopping: finishing in-flight windows, publishing and committing");
                self.health.stopping();
                self.drain(false)?;
                return Ok(LoopEnd::Stopped);
            }
            if self.until_caught_up {
                let settle = Duration::from_millis(
                    (self.cfg.verify.timing.publish_skew_ms
                        + self.cfg.verify.timing.cut_interval_ms) as u64
                        + 500,
                );
                if self.all_read {
                    let since = *caught_up_since.get_or_insert_with(Instant::now);
                    if self.caught_up_at.is_none() && self.first_record_at.is_some() {
                        self.caught_up_at = Some((Instant::now(), self.verifier.records));
                    }
                    if since.elapsed() >= settle {
                        tracing::info!(
                            "every partition is read to its end: comparing the last windows and stopping"
                        );
                        self.health.stopping();
                        self.drain(true)?;
                        return Ok(LoopEnd::Stopped);
                    }
                } else {
                    caught_up_since = None;
                }
            }
            self.producer.poll();
            // Alerts Kafka does not take pile up in memory: past a bound, reading waits.
            if self.producer.pending() > MAX_PENDING_OUTPUTS {
                std::thread::sleep(Duration::from_millis(50));
                if last_commit.elapsed() >= commit_every {
                    last_commit = Instant::now();
                    self.commit()?;
                    self.publish_metrics();
                    self.update_readiness();
                }
                continue;
            }
            self.discover_every();
            match self.batches.recv(Duration::from_millis(50)) {
                Ok(Some(batch)) => {
                    self.process(&batch)?;
                    for r in &batch.resets {
                        self.offset_reset(*r);
                    }
                    self.batches.recycle(batch);
                }
                Ok(None) => {}
                Err(Ended) => {
                    // The consumer thread ended: report why.
                    match self.batches.join() {
                        Some(Err(ConsumeError::Panicked)) => bail!("the consumer thread panicked"),
                        Some(Err(e)) => return Err(e).context("the consumer thread failed"),
                        _ => bail!("the consumer thread stopped"),
                    }
                }
            }
            self.retry_held()?;
            self.throttle()?;
            self.ask_end_offsets();
            self.advance()?;
            if last_commit.elapsed() >= commit_every {
                last_commit = Instant::now();
                if membership.is_some_and(|m| {
                    m.standing() == cdc_verifier_kafka::membership::Standing::HandingOff
                }) {
                    tracing::info!(
                        "the group rebalances: finishing in-flight windows, publishing and committing before handing the shards back"
                    );
                    self.health.starting("handing the shards back to the group");
                    self.metrics.shards_owned.store(0, Ordering::Relaxed);
                    self.drain(false)?;
                    return Ok(LoopEnd::HandedOff);
                }
                self.exchange_reach();
                self.tell_lag()?;
                self.close_orphans()?;
                self.commit()?;
                self.publish_metrics();
                self.update_readiness();
                self.warn_skew();
                self.warn_held();
                self.warn_rule_notes();
                self.tick_episodes()?;
            }
            if self.cfg.service.summary_interval_s > 0 && last_summary.elapsed() >= summary_every {
                let secs = last_summary.elapsed().as_secs_f64();
                last_summary = Instant::now();
                let events = self.verifier.records;
                eprintln!(
                    "{}",
                    self.summary_line((events - summary_events) as f64 / secs)
                );
                summary_events = events;
            }
        }
    }
}
