//! The Kafka and schema-registry clients as the configuration describes them, for the live
//! service and the replay alike.

use std::time::Duration;

use anyhow::Context;
use cdc_verifier_kafka::consume::KafkaSettings;
use cdc_verifier_kafka::registry::RegistryClient;
use cdc_verifier_kafka::source::RegistrySource;

use crate::config::Config;

/// The cluster's address and client properties, secrets included.
pub fn kafka_settings(cfg: &Config) -> KafkaSettings {
    let mut properties: Vec<(String, String)> = cfg
        .kafka
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    properties.extend(
        cfg.kafka
            .secret_properties
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    KafkaSettings {
        bootstrap_servers: cfg.kafka.bootstrap_servers.clone(),
        properties,
    }
}

/// A registry client with the configured credentials and timeout.
pub fn registry_client(cfg: &Config) -> anyhow::Result<RegistryClient> {
    let client = RegistryClient::new(&cfg.registry.url)
        .with_context(|| format!("registry.url {}", cfg.registry.url))?;
    let client = client.with_timeout(Duration::from_millis(cfg.registry.timeout_ms));
    Ok(
        match (
            &cfg.registry.username,
            &cfg.registry.password,
            &cfg.registry.bearer_token,
        ) {
            (_, _, Some(token)) => client.with_bearer(token.expose()),
            (Some(user), password, None) => {
                client.with_basic(user, password.as_ref().map(|p| p.expose()))
            }
            _ => client,
        },
    )
}

/// The registry as the verifier's schema source.
pub fn registry(cfg: &Config) -> anyhow::Result<RegistrySource> {
    Ok(RegistrySource::new(registry_client(cfg)?))
}
