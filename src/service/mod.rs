//! `cdc-verifier run`: the live service.

use std::process::ExitCode;

use cdc_verifier_kafka::registry::RegistryClient;

use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file (TOML); embedded defaults otherwise.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
}

/// Applies the configured registry credentials and timeout to a client.
pub fn configure_registry(client: RegistryClient, _cfg: &Config) -> RegistryClient {
    client
}

pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the live service is being built")
}
