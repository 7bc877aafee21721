//! Passwords put among the plain Kafka properties never show: not in the printed
//! configuration, not in the error librdkafka's refusal of a property becomes.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_cdc-verifier");

const SECRETS: [&str; 4] = ["hunter2-sasl", "ks-s3cret", "jaas-s3cret", "info-s3cret"];

/// A configuration whose plain Kafka properties hold passwords, and `extra` besides.
fn config_file(dir: &tempfile::TempDir, extra: &str) -> std::path::PathBuf {
    let f = dir.path().join("verifier.toml");
    std::fs::write(
        &f,
        format!(
            r#"
[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.username" = "verifier"
"sasl.password" = "hunter2-sasl"
"ssl.keystore.password" = "ks-s3cret"
{extra}
"#
        ),
    )
    .unwrap();
    f
}

#[test]
fn print_config_masks_passwords_among_plain_properties() {
    let dir = tempfile::tempdir().unwrap();
    let extra = "\"sasl.jaas.config\" = \"required password='jaas-s3cret';\"\n\
                 \"basic.auth.user.info\" = \"user:info-s3cret\"";
    let out = Command::new(BIN)
        .args(["run", "--print-config", "--config"])
        .arg(config_file(&dir, extra))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for s in SECRETS {
        assert!(!text.contains(s), "{s} printed: {text}");
    }
    for line in [
        "\"sasl.password\" = \"***\"",
        "\"sasl.jaas.config\" = \"***\"",
        "\"basic.auth.user.info\" = \"***\"",
        "\"sasl.username\" = \"verifier\"",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[test]
fn a_refused_secret_property_is_named_without_its_value() {
    let dir = tempfile::tempdir().unwrap();
    for (key, value) in [
        // Not librdkafka properties (Java clients' names): refused, value and all.
        ("sasl.jaas.config", "required password='jaas-s3cret';"),
        ("basic.auth.user.info", "user:info-s3cret"),
    ] {
        let out = Command::new(BIN)
            .args(["run", "--config"])
            .arg(config_file(&dir, &format!("\"{key}\" = \"{value}\"")))
            .args(["--set", "service.listen=127.0.0.1:0"])
            .env("CDC_VERIFIER_LOG", "debug")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{text}");
        assert!(text.contains(key), "the property is named: {text}");
        for s in SECRETS {
            assert!(!text.contains(s), "{s} printed: {text}");
        }
    }
}
