//! Settings that may hold secrets: [`Secret`] values, and the librdkafka properties passed
//! through, whose values are masked by key wherever they are shown (`Debug`, printed
//! configuration), whether they were put among `kafka.secret-properties` or the plain ones.

use std::collections::BTreeMap;
use std::fmt;

use cdc_verifier_kafka::secrets::{MASK, shown};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A value never printed: `Debug` and `Serialize` show `***`. Any scalar is read as its text
/// (a numeric password given as a flag or an environment variable).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match toml::Value::deserialize(d)? {
            toml::Value::Table(_) | toml::Value::Array(_) => {
                Err(de::Error::custom("expected a text value"))
            }
            v => Ok(Secret(text(v))),
        }
    }
}

/// librdkafka properties (`kafka.properties`, `kafka.secret-properties`): key → value. A
/// dotted key may be written quoted (`"sasl.mechanism" = …`) or as TOML's dotted keys,
/// which flags and environment variables give (`--set kafka.properties.sasl.mechanism=…`);
/// any scalar is read as its text (`"linger.ms" = 5`). A value whose key names a secret
/// (`sasl.password`, `ssl.key.password`, `sasl.jaas.config`, … see
/// [`cdc_verifier_kafka::secrets::is_secret`]) is shown as `***`; among
/// `secret-properties` every value is.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Properties {
    map: BTreeMap<String, String>,
    /// Every value is a secret.
    all_secret: bool,
}

impl Properties {
    /// Properties whose every value is a secret.
    pub fn secret(self) -> Properties {
        Properties {
            all_secret: true,
            ..self
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.map.iter()
    }

    /// A value as it may be shown.
    fn shown<'a>(&self, key: &str, value: &'a str) -> &'a str {
        if self.all_secret {
            MASK
        } else {
            shown(key, value)
        }
    }
}

impl FromIterator<(String, String)> for Properties {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        Properties {
            map: iter.into_iter().collect(),
            all_secret: false,
        }
    }
}

impl fmt::Debug for Properties {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.map.iter().map(|(k, v)| (k, self.shown(k, v))))
            .finish()
    }
}

impl Serialize for Properties {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.map.iter().map(|(k, v)| (k, self.shown(k, v))))
    }
}

impl<'de> Deserialize<'de> for Properties {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(d)?;
        let mut map = BTreeMap::new();
        flatten("", table, &mut map).map_err(de::Error::custom)?;
        Ok(Properties {
            map,
            all_secret: false,
        })
    }
}

/// Reads `kafka.secret-properties`: every value a secret.
pub fn secret_properties<'de, D: Deserializer<'de>>(d: D) -> Result<Properties, D::Error> {
    Properties::deserialize(d).map(Properties::secret)
}

/// Dotted keys from nested tables: `{sasl = {password = …}}` → `sasl.password`.
fn flatten(
    prefix: &str,
    table: toml::Table,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out)?,
            // (The value is not quoted: it may be a secret.)
            toml::Value::Array(_) => return Err(format!("{key}: expected a text value")),
            v => {
                out.insert(key, text(v));
            }
        }
    }
    Ok(())
}

/// A scalar as text.
fn text(v: toml::Value) -> String {
    match v {
        toml::Value::String(s) => s,
        other => other.to_string(),
    }
}
