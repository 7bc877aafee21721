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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_among_plain_properties_are_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[kafka.properties]\n\"sasl.username\" = \"verifier\"\n\"sasl.password\" = \"hunter2\"\n\
             \"ssl.keystore.password\" = \"ks-pass\"\n\"basic.auth.user.info\" = \"u:info-pass\"\n\
             \"sasl.jaas.config\" = \"password=jaas-pass\"\n",
        )
        .unwrap();
        let env = [(
            "CDC_VERIFIER__KAFKA__PROPERTIES__SSL__KEY__PASSWORD".to_string(),
            "12345678".to_string(),
        )];
        let over = [(
            "kafka.properties.sasl.oauthbearer.client.secret".to_string(),
            "oauth-pass".to_string(),
        )];
        let c = Config::load(Some(&f), &env, &over).unwrap();
        let props: Vec<(String, String)> = kafka_settings(&c).properties;
        for (k, v) in [
            ("sasl.password", "hunter2"),
            ("ssl.key.password", "12345678"),
            ("sasl.oauthbearer.client.secret", "oauth-pass"),
        ] {
            assert!(props.contains(&(k.to_string(), v.to_string())), "{k}");
        }
        let shown = format!(
            "{c:?} {} {:?}",
            toml::to_string(&c).unwrap(),
            kafka_settings(&c)
        );
        for secret in [
            "hunter2",
            "ks-pass",
            "info-pass",
            "jaas-pass",
            "12345678",
            "oauth-pass",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("verifier"),
            "plain values are shown: {shown}"
        );
    }

    #[test]
    fn dotted_and_numeric_properties_are_read_as_text() {
        let over = [
            ("kafka.properties.linger.ms".to_string(), "5".to_string()),
            (
                "kafka.secret-properties.sasl.password".to_string(),
                "1234".to_string(),
            ),
        ];
        let c = Config::load(None, &[], &over).unwrap();
        let props = kafka_settings(&c).properties;
        assert!(
            props.contains(&("linger.ms".into(), "5".into())),
            "{props:?}"
        );
        assert!(props.contains(&("sasl.password".into(), "1234".into())));
    }
}
