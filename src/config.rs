//! One configuration tree: embedded defaults, then a TOML file, then `CDC_VERIFIER__*`
//! environment variables, then command-line flags. Keys are kebab-case; an unknown key or a
//! wrong value fails at start with a message that names it.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use anyhow::{Context, bail};
use cdc_verifier_core::{Drill, EngineConfig, KeyRanges, Limits, PositionField, Timing};
use serde::{Deserialize, Serialize};

/// The embedded defaults, also shipped as `config/default.toml`.
pub const DEFAULTS: &str = include_str!("../config/default.toml");

mod rules;
mod secrets;

pub use rules::ColumnRuleConfig;
pub use secrets::{Properties, Secret};

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
    pub scale: ScaleConfig,
}

/// Several instances sharing the tables through a Kafka consumer group (docs/scaling.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ScaleConfig {
    /// Shards the tables are spread over (each table in one, by a hash of its name), shared by
    /// the instances of one `kafka.group-id`; 0: this instance verifies every table alone.
    pub shards: u32,
    /// The topic whose partitions stand for the shards (created with `shards` partitions);
    /// empty: `<kafka.group-id>.shards`.
    pub shard_topic: String,
    /// How long the group waits for an instance it does not hear from before giving its
    /// shards to the others.
    pub session_timeout_ms: u64,
    /// How long the shards given must stay as they are before they are verified (instances
    /// starting together would otherwise hand them over once per instance that joins).
    pub settle_ms: u64,
    /// How the tables are placed on the shards: `hash` (of the names) or `load` (measured at
    /// each assignment by the holder of shard 0, so that the instances share the records).
    pub place_by: PlaceBy,
}

/// How the tables are placed on the shards (`scale.place-by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlaceBy {
    Hash,
    Load,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    /// Extra librdkafka properties passed through as they are (`security.protocol`,
    /// `sasl.mechanism`, `ssl.ca.location`, …); values of secret keys are never shown.
    #[serde(default)]
    pub properties: Properties,
    /// Properties whose values are secrets (`sasl.password`, `ssl.key.password`, …).
    #[serde(default, deserialize_with = "secrets::secret_properties")]
    pub secret_properties: Properties,
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
    /// Memory bounds (see `cdc_verifier_core::Limits`): past them a span of the replica that
    /// holds the memory is given up on, with an `Unverified` verdict.
    #[serde(default = "default_max_windows_mb")]
    pub max_windows_mb: u64,
    #[serde(default = "default_max_parked_mb")]
    pub max_parked_mb: u64,
    #[serde(default = "default_max_parked_s")]
    pub max_parked_s: u64,
    #[serde(default = "default_max_drill_keys")]
    pub max_drill_keys: usize,
    /// What rows are compared without, or loosely on: `[[verify.column-rules]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub column_rules: Vec<ColumnRuleConfig>,
}

fn default_max_drill_keys() -> usize {
    Limits::default().drill_keys
}

fn default_max_windows_mb() -> u64 {
    (Limits::default().window_bytes >> 20) as u64
}

fn default_max_parked_mb() -> u64 {
    (Limits::default().parked_bytes >> 20) as u64
}

fn default_max_parked_s() -> u64 {
    (Limits::default().parked_ms / 1000) as u64
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
    /// Episodes: one record when a fault opens, updates while it grows, one when it closes.
    pub topic: String,
    /// Every verdict (per key range and window), for machines and audits; off when empty.
    #[serde(default)]
    pub detail_topic: String,
    pub dead_letter_topic: String,
    /// Partitions of the alert and dead-letter topics when the verifier creates them.
    pub partitions: i32,
    /// Names this verifier in its divergence events; the host name when empty.
    #[serde(default)]
    pub instance: String,
    /// Seconds between updates of an open episode that grows, on the alert topic and in the
    /// log (one record and line when it opens and one when it closes, whatever this is).
    pub update_interval_s: u64,
    /// Keys an episode names at most, with both rows (found by re-reading the offsets of its
    /// mismatched windows); 0 names none.
    pub keys_per_episode: usize,
    /// Records a window may hold for its keys to be named by re-reading it.
    pub drill_max_records: u64,
    /// An Alertmanager (API v2) the episodes are posted to as alerts; off when empty.
    #[serde(default)]
    pub alertmanager_url: String,
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
    /// Seconds between looks at the cluster's topics: new tables' topics, added partitions,
    /// deleted topics.
    pub discovery_interval_s: u64,
    /// Seconds the main loop may go without completing an iteration (or a partition with
    /// records to read without reading one) before `/healthz` (or `/readyz`) says so.
    pub stall_timeout_s: u64,
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
        rules::column_rules(&self.verify.column_rules)?;
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
        if self.scale.shards > 0 && !(6000..=1_800_000).contains(&self.scale.session_timeout_ms) {
            bail!(
                "scale.session-timeout-ms must be between 6000 and 1800000 (the broker's default group.min/max.session.timeout.ms)"
            );
        }
        if self.service.discovery_interval_s == 0 {
            bail!("service.discovery-interval-s must be at least 1");
        }
        if self.service.stall_timeout_s == 0 {
            bail!("service.stall-timeout-s must be at least 1");
        }
        if self.kafka.end_offsets_interval_ms == 0 {
            bail!("kafka.end-offsets-interval-ms must be at least 1");
        }
        if self.verify.buckets == 0 {
            bail!("verify.buckets must be at least 1");
        }
        if self.verify.max_windows_mb == 0 || self.verify.max_parked_mb == 0 {
            bail!("verify.max-windows-mb and verify.max-parked-mb must be at least 1");
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

    /// The verification core's settings (the column rules checked by `validate`).
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
            timing: v.timing,
            origin_span: (None, None),
            lag_by: cdc_verifier_core::LagBy::RecordTime,
            limits: Limits {
                window_bytes: (v.max_windows_mb as usize).saturating_mul(1 << 20),
                parked_bytes: (v.max_parked_mb as usize).saturating_mul(1 << 20),
                parked_ms: (v.max_parked_s as i64).saturating_mul(1000),
                drill_keys: v.max_drill_keys,
            },
            rules: rules::column_rules(&v.column_rules).unwrap_or_default(),
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

    /// The shard topic of `[scale]`.
    pub fn shard_topic(&self) -> String {
        if self.scale.shard_topic.is_empty() {
            format!("{}.shards", self.kafka.group_id)
        } else {
            self.scale.shard_topic.clone()
        }
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
mod tests;
