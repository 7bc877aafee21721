//! One configuration tree: embedded defaults, then a TOML file, then `CDC_VERIFIER__*`
//! environment variables, then command-line flags. Keys are kebab-case; an unknown key or a
//! wrong value fails at start with a message that names it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use anyhow::{Context, bail};
use cdc_verifier_core::{Drill, EngineConfig, KeyRanges, PositionField, Timing};
use serde::{Deserialize, Serialize};

/// The embedded defaults, also shipped as `config/default.toml`.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

/// A value never printed: `Debug` and `Serialize` show `***`.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// Settings written as text: `Display` out, `FromStr` in. Another scalar (`format = 1`, as a
/// flag or an environment variable may give it) is read as its text, so that its error lists
/// the accepted values too.
mod text {
    use std::fmt::Display;
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer, Serializer, de};

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn read<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(match toml::Value::deserialize(d)? {
            toml::Value::String(s) => s,
            other => other.to_string(),
        })
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        read(d)?.parse().map_err(de::Error::custom)
    }
}

/// `Serialize` and `Deserialize` through [`text`].
macro_rules! text_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                text::serialize(self, s)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                text::deserialize(d)
            }
        }
    };
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    pub primary: StreamConfig,
    pub replicas: Vec<StreamConfig>,
    pub verify: VerifyConfig,
    pub alerts: AlertsConfig,
    pub service: ServiceConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    /// Extra librdkafka properties passed through as they are (`security.protocol`,
    /// `sasl.mechanism`, `ssl.ca.location`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Properties whose values are secrets (`sasl.password`, `ssl.key.password`, …).
    #[serde(default)]
    pub secret_properties: BTreeMap<String, Secret>,
    /// Records fetched per poll batch.
    pub batch_size: usize,
    /// How often the partitions' end offsets are read from the broker.
    pub end_offsets_interval_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RegistryConfig {
    pub url: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    pub timeout_ms: u64,
    /// First retry delay while the registry is unreachable; doubles up to `retry-max-ms`.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StreamConfig {
    pub name: String,
    /// Topics are `<topic-prefix><table>`; the table is what follows the prefix.
    pub topic_prefix: String,
    /// Tables to verify; empty means every topic with the prefix.
    #[serde(default)]
    pub tables: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct VerifyConfig {
    /// `gtid`, `lsn`, or the name of another `source` field.
    #[serde(with = "text")]
    pub position: PositionField,
    pub key_ranges: KeyRangeKind,
    pub buckets: u32,
    pub range_width: u64,
    /// `cut-interval-ms`, `idle-grace-ms`, … (see [`Timing`]).
    #[serde(flatten)]
    pub timing: Timing,
    pub check_subjects: bool,
    /// Ranges kept per key to name the exact keys that differ: `table:range` entries.
    #[serde(default)]
    pub drill_down: Vec<DrillRange>,
    /// How keys and values are encoded: Avro in the Confluent wire format, Kafka Connect's
    /// JsonConverter documents, or either, told by the first byte.
    #[serde(default)]
    pub format: Format,
}

/// `verify.format`: how keys and values are encoded (see docs/json-envelopes.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// A record whose first byte is 0x00 is Avro in the Confluent wire format; one whose first
    /// byte other than white space is `{` is a JsonConverter document.
    #[default]
    Auto,
    /// Avro in the Confluent wire format only.
    Avro,
    /// JsonConverter documents (`schemas.enable=true`) only.
    Json,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Avro => "avro",
            Format::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Format::Auto),
            "avro" => Ok(Format::Avro),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "expected \"auto\", \"avro\" or \"json\", got {other:?}"
            )),
        }
    }
}

text_serde!(Format);

/// `verify.key-ranges`: how keys are grouped into ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRangeKind {
    /// `verify.buckets` buckets of the key's hash.
    Hash,
    /// Ordered ranges of the leading integer key field, `verify.range-width` keys each.
    Integer,
}

impl fmt::Display for KeyRangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyRangeKind::Hash => "hash",
            KeyRangeKind::Integer => "integer",
        })
    }
}

impl FromStr for KeyRangeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hash" => Ok(KeyRangeKind::Hash),
            "integer" => Ok(KeyRangeKind::Integer),
            other => Err(format!("expected \"hash\" or \"integer\", got {other:?}")),
        }
    }
}

text_serde!(KeyRangeKind);

/// A `verify.drill-down` entry, written `table:range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillRange {
    pub table: String,
    pub range: u64,
}

impl fmt::Display for DrillRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.table, self.range)
    }
}

impl FromStr for DrillRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parsed = s.rsplit_once(':').and_then(|(table, range)| {
            Some(DrillRange {
                table: table.to_string(),
                range: range.parse().ok()?,
            })
        });
        match parsed {
            Some(d) if !d.table.is_empty() => Ok(d),
            _ => Err(format!(
                "expected \"table:range\" with a whole number as range, got {s:?}"
            )),
        }
    }
}

text_serde!(DrillRange);

/// `service.log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected \"text\" or \"json\", got {other:?}")),
        }
    }
}

text_serde!(LogFormat);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AlertsConfig {
    pub topic: String,
    pub dead_letter_topic: String,
    /// Partitions of the alert and dead-letter topics when the verifier creates them.
    pub partitions: i32,
    /// Names this verifier in its divergence events; the host name when empty.
    #[serde(default)]
    pub instance: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServiceConfig {
    /// Address of the `/metrics`, `/healthz` and `/readyz` endpoints.
    #[serde(serialize_with = "text::serialize", deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    pub log_format: LogFormat,
    /// Seconds between one-line summaries on the terminal; 0 turns them off.
    pub summary_interval_s: u64,
    /// Seconds SIGTERM waits for in-flight windows before exiting anyway.
    pub shutdown_timeout_s: u64,
}

impl Config {
    /// The embedded defaults alone.
    pub fn defaults() -> Config {
        Config::load(None, &[], &[]).expect("embedded defaults are valid")
    }

    /// Defaults, then `file`, then the environment (`CDC_VERIFIER__…`), then `overrides`
    /// (`section.key=value`, as given by flags).
    pub fn load(
        file: Option<&std::path::Path>,
        env: &[(String, String)],
        overrides: &[(String, String)],
    ) -> anyhow::Result<Config> {
        let mut tree: toml::Table = DEFAULTS.parse().context("embedded defaults do not parse")?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let file_tree: toml::Table = text
                .parse()
                .with_context(|| format!("config file {} is not valid TOML", path.display()))?;
            merge(&mut tree, file_tree);
        }
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("CDC_VERIFIER__") else {
                continue;
            };
            let path: Vec<String> = rest
                .split("__")
                .map(|p| p.to_ascii_lowercase().replace('_', "-"))
                .collect();
            set_path(&mut tree, &path, v).with_context(|| format!("environment variable {k}"))?;
        }
        for (k, v) in overrides {
            let path: Vec<String> = k.split('.').map(str::to_string).collect();
            set_path(&mut tree, &path, v).with_context(|| format!("setting {k}"))?;
        }
        let cfg: Config = toml::Value::Table(tree.clone())
            .try_into()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {}", locate(&tree, &e)))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads with the process environment.
    pub fn from_env(
        file: Option<&std::path::Path>,
        overrides: &[(String, String)],
    ) -> anyhow::Result<Config> {
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("CDC_VERIFIER__"))
            .collect();
        Config::load(file, &env, overrides)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.replicas.is_empty() {
            bail!("replicas: at least one replica must be configured");
        }
        let mut names = vec![&self.primary.name];
        for r in &self.replicas {
            if names.contains(&&r.name) {
                bail!("replicas: stream name `{}` is used twice", r.name);
            }
            names.push(&r.name);
        }
        let mut prefixes = vec![&self.primary.topic_prefix];
        for r in &self.replicas {
            if prefixes.iter().any(|p| {
                r.topic_prefix.starts_with(p.as_str()) || p.starts_with(r.topic_prefix.as_str())
            }) {
                bail!(
                    "replicas.{}.topic-prefix: `{}` overlaps another stream's prefix",
                    r.name,
                    r.topic_prefix
                );
            }
            prefixes.push(&r.topic_prefix);
        }
        if let Err(e) = self.verify.timing.check() {
            bail!("verify.{e}");
        }
        if self.kafka.end_offsets_interval_ms == 0 {
            bail!("kafka.end-offsets-interval-ms must be at least 1");
        }
        if self.verify.buckets == 0 {
            bail!("verify.buckets must be at least 1");
        }
        if self.verify.range_width == 0 {
            bail!("verify.range-width must be at least 1");
        }
        if !self.registry.url.starts_with("http://") && !self.registry.url.starts_with("https://") {
            bail!(
                "registry.url must start with http:// or https://, not `{}`",
                self.registry.url
            );
        }
        Ok(())
    }

    /// The verification core's settings.
    pub fn engine(&self) -> EngineConfig {
        let v = &self.verify;
        let ranges = match v.key_ranges {
            KeyRangeKind::Hash => KeyRanges::Hash { buckets: v.buckets },
            KeyRangeKind::Integer => KeyRanges::Integer {
                width: v.range_width,
            },
        };
        let drill = if v.drill_down.is_empty() {
            Drill::Off
        } else {
            Drill::Ranges(
                v.drill_down
                    .iter()
                    .map(|d| (d.table.clone(), d.range))
                    .collect(),
            )
        };
        EngineConfig {
            position: v.position.clone(),
            ranges,
            check_subjects: v.check_subjects,
            drill,
            ..EngineConfig::with_timing(v.timing)
        }
    }

    /// Every stream: the primary first.
    pub fn streams(&self) -> impl Iterator<Item = &StreamConfig> {
        std::iter::once(&self.primary).chain(self.replicas.iter())
    }

    /// The stream and table a topic belongs to, if any.
    pub fn route(&self, topic: &str) -> Option<(usize, String)> {
        for (i, s) in self.streams().enumerate() {
            if let Some(table) = topic.strip_prefix(s.topic_prefix.as_str()) {
                if table.is_empty() || table.contains('.') {
                    continue;
                }
                if s.tables.is_empty() || s.tables.iter().any(|t| t == table) {
                    return Some((i, table.to_string()));
                }
            }
        }
        None
    }

    /// Sets every stream's topic prefix to `<prefix><stream name>.shop.`, the simulator's layout.
    pub fn with_simulator_topics(mut self, prefix: &str) -> Config {
        self.primary.topic_prefix = format!("{prefix}{}.shop.", self.primary.name);
        for r in &mut self.replicas {
            r.topic_prefix = format!("{prefix}{}.shop.", r.name);
        }
        self
    }

    /// The instance name in divergence events.
    pub fn instance(&self) -> String {
        if !self.alerts.instance.is_empty() {
            return self.alerts.instance.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "cdc-verifier".into())
    }
}

fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = text::read(d)?;
    s.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "expected an address as ip:port (127.0.0.1:9464, [::]:9464), got {s:?}"
        ))
    })
}

/// The key and the message of a deserialisation error: `verify.key-ranges: expected …`.
fn locate(tree: &toml::Table, e: &toml::de::Error) -> String {
    let key = key_of(e);
    // A value inside a flattened struct comes back without its key: serde reads it from a
    // buffer that knows no keys. Reading the timing settings alone names it.
    if key.as_deref() == Some("verify")
        && let Some(verify) = tree.get("verify")
        && let Err(inner) = verify.clone().try_into::<Timing>()
        && let Some(k) = key_of(&inner)
    {
        return format!("verify.{k}: {}", inner.message());
    }
    match key {
        Some(k) => format!("{k}: {}", e.message()),
        None => e.message().to_string(),
    }
}

/// The dotted key an error is about: toml shows it only in `Display`, as a last line
/// "in `a.b`".
fn key_of(e: &toml::de::Error) -> Option<String> {
    let shown = e.to_string();
    let (_, key) = shown.trim_end().rsplit_once("\nin `")?;
    Some(key.trim_end_matches('`').to_string())
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Sets a dotted path in the tree; numeric segments index arrays (`replicas.0.name`).
fn set_path(tree: &mut toml::Table, path: &[String], raw: &str) -> anyhow::Result<()> {
    let (first, rest) = path.split_first().context("empty key")?;
    let value = parse_scalar(raw);
    if rest.is_empty() {
        tree.insert(first.clone(), value);
        return Ok(());
    }
    let child = tree
        .entry(first.clone())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    set_in(child, rest, value)
}

fn set_in(node: &mut toml::Value, path: &[String], value: toml::Value) -> anyhow::Result<()> {
    let (seg, rest) = path.split_first().context("empty key")?;
    let slot = match node {
        toml::Value::Table(t) => t
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new())),
        toml::Value::Array(a) => {
            let i: usize = seg
                .parse()
                .with_context(|| format!("`{seg}` is not an index of a list"))?;
            while a.len() <= i {
                a.push(toml::Value::Table(toml::Table::new()));
            }
            &mut a[i]
        }
        _ => bail!("`{seg}` is inside a value that is not a table"),
    };
    if rest.is_empty() {
        *slot = value;
        Ok(())
    } else {
        set_in(slot, rest, value)
    }
}

fn parse_scalar(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => return toml::Value::Boolean(true),
        "false" => return toml::Value::Boolean(false),
        _ => {}
    }
    if raw.starts_with('[')
        && let Ok(v) = format!("v = {raw}").parse::<toml::Table>()
        && let Some(v) = v.get("v")
    {
        return v.clone();
    }
    toml::Value::String(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_name_two_replicas() {
        let c = Config::defaults();
        assert_eq!(c.kafka.bootstrap_servers, "127.0.0.1:9092");
        assert_eq!(c.replicas.len(), 2);
        assert_eq!(c.route("replica-2.shop.orders"), Some((2, "orders".into())));
        assert_eq!(c.route("elsewhere.orders"), None);
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[kafka]\nbootstrap-servers = \"file:1\"\ngroup-id = \"from-file\"\n",
        )
        .unwrap();
        let env = vec![
            (
                "CDC_VERIFIER__KAFKA__BOOTSTRAP_SERVERS".to_string(),
                "env:2".to_string(),
            ),
            (
                "CDC_VERIFIER__VERIFY__CUT_INTERVAL_MS".to_string(),
                "500".to_string(),
            ),
            (
                "CDC_VERIFIER__REPLICAS__0__NAME".to_string(),
                "r-one".to_string(),
            ),
        ];
        let c = Config::load(
            Some(&f),
            &env,
            &[("registry.url".into(), "http://flag:3".into())],
        )
        .unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "env:2");
        assert_eq!(c.kafka.group_id, "from-file");
        assert_eq!(c.verify.timing.cut_interval_ms, 500);
        assert_eq!(c.replicas[0].name, "r-one");
        assert_eq!(c.registry.url, "http://flag:3");
    }

    #[test]
    fn a_wrong_setting_fails_naming_it() {
        let err = Config::load(
            None,
            &[("CDC_VERIFIER__KAFKA__BOOTSTRAP_SERVER".into(), "x".into())],
            &[],
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("bootstrap-server"), "{err:#}");
        let err =
            Config::load(None, &[], &[("verify.cut-interval-ms".into(), "0".into())]).unwrap_err();
        assert!(format!("{err:#}").contains("cut-interval-ms"), "{err:#}");
        let err = Config::load(
            None,
            &[],
            &[("verify.cut-interval-ms".into(), "soon".into())],
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("verify.cut-interval-ms: invalid type"),
            "{err:#}"
        );
        let err = Config::load(None, &[], &[("verify.buckets".into(), "many".into())]).unwrap_err();
        assert!(
            format!("{err:#}").contains("verify.buckets: invalid type"),
            "{err:#}"
        );
        let err = Config::load(None, &[], &[("verify.nope".into(), "1".into())]).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `nope`"),
            "{err:#}"
        );
        let err = Config::load(
            None,
            &[],
            &[("verify.max-publish-skew-ms".into(), "100".into())],
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("verify.max-publish-skew-ms: must be at least"),
            "{err:#}"
        );
        let err = Config::load(
            None,
            &[],
            &[("registry.url".into(), "localhost:8081".into())],
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("registry.url"), "{err:#}");
    }

    #[test]
    fn format_is_typed_and_named_in_errors() {
        assert_eq!(Config::defaults().verify.format, Format::Auto);
        let c = Config::load(
            None,
            &[("CDC_VERIFIER__VERIFY__FORMAT".into(), "json".into())],
            &[],
        )
        .unwrap();
        assert_eq!(c.verify.format, Format::Json);
        assert!(toml::to_string(&c).unwrap().contains("format = \"json\""));
        for bad in ["xml", "1"] {
            let err = Config::load(None, &[], &[("verify.format".into(), bad.into())]).unwrap_err();
            let msg = format!("{err:#}");
            assert!(
                msg.contains(&format!(
                    r#"verify.format: expected "auto", "avro" or "json", got "{bad}""#
                )),
                "{msg}"
            );
        }
    }

    /// Loads with one `--set key=value` and returns the error's text.
    fn error_of(key: &str, value: &str) -> String {
        let err = Config::load(None, &[], &[(key.into(), value.into())]).unwrap_err();
        format!("{err:#}")
    }

    #[test]
    fn position_is_typed_and_named_in_errors() {
        assert_eq!(Config::defaults().verify.position, PositionField::Gtid);
        let c = Config::load(
            None,
            &[("CDC_VERIFIER__VERIFY__POSITION".into(), "lsn".into())],
            &[],
        )
        .unwrap();
        assert_eq!(c.engine().position, PositionField::Lsn);
        let c = Config::load(None, &[], &[("verify.position".into(), "txId".into())]).unwrap();
        assert_eq!(c.verify.position, PositionField::Field("txId".into()));
        assert!(toml::to_string(&c).unwrap().contains("position = \"txId\""));
        for bad in ["", "tx id", "7", "source.gtid"] {
            let msg = error_of("verify.position", bad);
            assert!(
                msg.contains(&format!(
                    r#"verify.position: expected "gtid", "lsn" or the name of a `source` field, got "{bad}""#
                )),
                "{msg}"
            );
        }
    }

    #[test]
    fn key_ranges_are_typed_and_named_in_errors() {
        let c = Config::load(
            None,
            &[],
            &[
                ("verify.key-ranges".into(), "integer".into()),
                ("verify.range-width".into(), "500".into()),
            ],
        )
        .unwrap();
        assert_eq!(c.verify.key_ranges, KeyRangeKind::Integer);
        assert!(matches!(
            c.engine().ranges,
            KeyRanges::Integer { width: 500 }
        ));
        assert!(matches!(
            Config::defaults().engine().ranges,
            KeyRanges::Hash { buckets: 1024 }
        ));
        let msg = error_of("verify.key-ranges", "hsah");
        assert!(
            msg.contains(r#"verify.key-ranges: expected "hash" or "integer", got "hsah""#),
            "{msg}"
        );
    }

    #[test]
    fn drill_down_is_typed_and_named_in_errors() {
        let c = Config::load(
            None,
            &[],
            &[(
                "verify.drill-down".into(),
                "[\"orders:3\", \"a:b:7\"]".into(),
            )],
        )
        .unwrap();
        assert_eq!(
            c.verify.drill_down,
            [
                DrillRange {
                    table: "orders".into(),
                    range: 3
                },
                DrillRange {
                    table: "a:b".into(),
                    range: 7
                }
            ]
        );
        assert_eq!(
            c.engine().drill,
            Drill::Ranges(vec![("orders".into(), 3), ("a:b".into(), 7)])
        );
        assert!(
            toml::to_string(&c)
                .unwrap()
                .contains(r#"drill-down = ["orders:3", "a:b:7"]"#)
        );
        assert_eq!(Config::defaults().engine().drill, Drill::Off);
        for bad in ["orders", "orders:x", ":3"] {
            let msg = error_of("verify.drill-down", &format!("[\"{bad}\"]"));
            assert!(
                msg.contains(&format!(
                    r#"verify.drill-down: expected "table:range" with a whole number as range, got "{bad}""#
                )),
                "{msg}"
            );
        }
    }

    #[test]
    fn log_format_is_typed_and_named_in_errors() {
        assert_eq!(Config::defaults().service.log_format, LogFormat::Text);
        let c = Config::load(
            None,
            &[("CDC_VERIFIER__SERVICE__LOG_FORMAT".into(), "json".into())],
            &[],
        )
        .unwrap();
        assert_eq!(c.service.log_format, LogFormat::Json);
        let msg = error_of("service.log-format", "xml");
        assert!(
            msg.contains(r#"service.log-format: expected "text" or "json", got "xml""#),
            "{msg}"
        );
    }

    #[test]
    fn listen_is_typed_and_named_in_errors() {
        let c = Config::load(None, &[], &[("service.listen".into(), "[::1]:0".into())]).unwrap();
        assert_eq!(c.service.listen, "[::1]:0".parse::<SocketAddr>().unwrap());
        assert!(
            toml::to_string(&Config::defaults())
                .unwrap()
                .contains(r#"listen = "127.0.0.1:9464""#)
        );
        for bad in ["localhost", "127.0.0.1", "9464"] {
            let msg = error_of("service.listen", bad);
            assert!(
                msg.contains(&format!(
                    r#"service.listen: expected an address as ip:port (127.0.0.1:9464, [::]:9464), got "{bad}""#
                )),
                "{msg}"
            );
        }
    }

    #[test]
    fn timing_is_read_into_the_engine() {
        let c = Config::load(
            None,
            &[("CDC_VERIFIER__VERIFY__CONFIRM_MS".into(), "1234".into())],
            &[("verify.check-subjects".into(), "false".into())],
        )
        .unwrap();
        let e = c.engine();
        assert_eq!(e.confirm_ms, 1234);
        assert_eq!(e.cut_interval_ms, c.verify.timing.cut_interval_ms);
        assert!(!e.check_subjects);
        assert_eq!(Config::defaults().verify.timing, Timing::default());
    }

    #[test]
    fn secrets_are_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[registry]\npassword = \"hunter2\"\n[kafka.secret-properties]\n\"sasl.password\" = \"s3cret\"\n").unwrap();
        let c = Config::load(Some(&f), &[], &[]).unwrap();
        assert_eq!(c.registry.password.as_ref().unwrap().expose(), "hunter2");
        let shown = format!("{c:?} {}", toml::to_string(&c).unwrap());
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(shown.contains("***"));
    }
}
