//! `cdc-verifier`: continuous verification of database replicas through their CDC streams.

use clap::{Parser, Subcommand};

mod simulate;

#[derive(Parser)]
#[command(name = "cdc-verifier", version, about = "Verifies database replicas continuously through their change-data-capture streams in Kafka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce realistic primary and replica CDC traffic, with injected faults and a ground-truth manifest
    Simulate(simulate::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Simulate(args) => simulate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
