//! `cdc-verifier`: continuous verification of database replicas through their CDC streams.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod clients;
mod config;
mod demo;
mod progress;
mod replay;
mod report;
mod service;
mod simulate;
mod verify;

#[derive(Parser)]
#[command(
    name = "cdc-verifier",
    version,
    about = "Verifies database replicas continuously through their change-data-capture streams in Kafka",
    long_about = "Verifies database replicas continuously through their change-data-capture streams in Kafka.\n\n\
        It reads the Debezium events of the primary and of every replica, compares additive per-key-range \
        digests at equal origin positions, validates every event against its registered schema, and reports \
        which replica, table, key range, schema version and offsets diverged."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay the 14 August 2024 incident in memory through the verifier and show the answer (no service needed)
    Demo(demo::Args),
    /// Verify the primary and every replica continuously from Kafka and publish divergence events
    Run(service::Args),
    /// Verify a window of history (a capture file, or Kafka by time or offsets) and name the exact keys that differ
    Replay(replay::Args),
    /// Produce realistic primary and replica CDC traffic, with injected faults and a ground-truth manifest
    Simulate(simulate::Args),
    /// Render a saved JSON report as a self-contained HTML page
    #[command(name = "report-html")]
    ReportHtml {
        /// The JSON report (from `replay --report` or the demo)
        #[arg(long)]
        input: std::path::PathBuf,
        /// Where to write the page
        #[arg(long)]
        output: std::path::PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => service::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Demo(args) => demo::run(args),
        Command::ReportHtml { input, output } => {
            report::html::cli(&input, &output).map(|()| ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
