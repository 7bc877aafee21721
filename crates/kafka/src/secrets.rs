//! Client properties whose values are secrets, and keeping them out of what is shown: `Debug`
//! output, error messages, printed configuration. Passwords may be put among the plain
//! properties as well as among the secret ones, so they are told by their key.

use std::fmt;

use rdkafka::error::KafkaError;

/// What a secret value is shown as.
pub const MASK: &str = "***";

/// Key fragments that mark a property's value as a secret: `sasl.password`,
/// `ssl.key.password`, `ssl.keystore.password`, `sasl.jaas.config`,
/// `basic.auth.user.info`, `sasl.oauthbearer.client.secret`, `ssl.key.pem`, tokens, …
const SECRET_KEYS: [&str; 9] = [
    "password",
    "secret",
    "jaas",
    "credential",
    "user.info",
    "token",
    "oauthbearer.config",
    "key.pem",
    "private",
];

/// Whether a property's value is a secret, by its key.
pub fn is_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| key.contains(s))
}

/// A property's value as it may be shown: masked when its key names a secret.
pub fn shown<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret(key) { MASK } else { value }
}

/// Properties as they may be shown (`Debug`): secrets masked.
pub struct Shown<'a>(pub &'a [(String, String)]);

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, shown(k, v))))
            .finish()
    }
}

/// A client-creation error without the secret it may quote: librdkafka's refusal of a
/// property names its value (`Client config error: … sasl.jaas.config <value>`).
pub(crate) fn redact(e: KafkaError) -> KafkaError {
    match e {
        KafkaError::ClientConfig(code, desc, key, value) if is_secret(&key) => {
            let desc = if value.is_empty() {
                desc
            } else {
                desc.replace(&value, MASK)
            };
            KafkaError::ClientConfig(code, desc, key, MASK.to_string())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::types::RDKafkaConfRes;

    #[test]
    fn secret_keys_are_told_by_name() {
        for k in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.jaas.config",
            "basic.auth.user.info",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "SASL.PASSWORD",
            "schema.registry.basic.auth.credentials.source",
        ] {
            assert!(is_secret(k), "{k}");
        }
        for k in ["security.protocol", "sasl.username", "ssl.ca.location"] {
            assert!(!is_secret(k), "{k}");
        }
    }

    #[test]
    fn a_refused_secret_property_is_not_quoted_in_the_error() {
        let mut c = ClientConfig::new();
        c.set("sasl.jaas.config", "user=\"u\" password=\"hunter2-jaas\"");
        let e = c.create::<BaseConsumer>().map(|_| ()).unwrap_err();
        assert!(
            e.to_string().contains("hunter2-jaas"),
            "rdkafka quotes the value: {e}"
        );
        let e = redact(e);
        assert!(!e.to_string().contains("hunter2-jaas"), "{e}");
        assert!(!format!("{e:?}").contains("hunter2-jaas"), "{e:?}");

        let e = redact(KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"s3cret\" for property".into(),
            "ssl.key.password".into(),
            "s3cret".into(),
        ));
        assert!(!format!("{e} {e:?}").contains("s3cret"), "{e}");
    }

    #[test]
    fn shown_properties_mask_secrets() {
        let props = vec![
            ("sasl.username".to_string(), "verifier".to_string()),
            ("sasl.password".to_string(), "hunter2".to_string()),
        ];
        let s = format!("{:?}", Shown(&props));
        assert!(s.contains("verifier") && s.contains(MASK), "{s}");
        assert!(!s.contains("hunter2"), "{s}");
    }
}
