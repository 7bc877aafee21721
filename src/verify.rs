//! The verification pipeline shared by `run`, `replay` and `demo`: routes records of any
//! source to the engine by topic, advances it in batches, and keeps what it concluded.
//!
//! Every record enters here, so this is also where Kafka Connect JsonConverter records are
//! told from Avro (`verify.format`) and transcoded to the Avro wire format under synthetic
//! schema ids (see `cdc_verifier_core::connect_json` and docs/json-envelopes.md): the engine
//! sees Avro only, through a schema source that answers those ids.

use cdc_verifier_core::connect_json::looks_like_json;
use cdc_verifier_core::verdict::{Divergence, Kind};
use cdc_verifier_core::{
    ConnectJson, Engine, EngineConfig, Ingested, Record, SchemaSource, SchemaUnavailable, TopicId,
    WithConnectJson,
};

use crate::config::{Config, Format};

/// Records between two advances of the engine's watermarks.
pub const BATCH: u64 = 4096;

/// One record as a source read it: its topic is the index in the source's topic list the
/// verifier was made with.
#[derive(Clone, Copy, Debug)]
pub struct SourceRecord<'a> {
    pub topic: usize,
    pub partition: u32,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
}

/// What a routed source topic needs beyond its engine topic: its subjects.
struct TopicInfo {
    key_subject: String,
    value_subject: String,
}

pub struct Verifier {
    pub engine: Engine,
    /// Engine topic per source topic index (None: not a topic of a configured stream).
    routes: Vec<Option<TopicId>>,
    /// Per source topic index, for the routed ones.
    infos: Vec<Option<TopicInfo>>,
    pub verdicts: Vec<Divergence>,
    pub records: u64,
    since_advance: u64,
    format: Format,
    /// JsonConverter records' schemas, under synthetic ids.
    json: ConnectJson,
    /// The transcoded key and value of the record being fed.
    key_buf: Vec<u8>,
    value_buf: Vec<u8>,
}

impl Verifier {
    /// A verifier for `topics` (name, partitions) of a source, routed by the configured
    /// stream prefixes; other topics are ignored.
    pub fn new(cfg: &Config, engine_cfg: EngineConfig, topics: &[(String, u32)]) -> Verifier {
        let names: Vec<&str> = cfg.replicas.iter().map(|r| r.name.as_str()).collect();
        let engine = Engine::new(engine_cfg, &cfg.primary.name, &names);
        let mut v = Verifier {
            engine,
            routes: Vec::new(),
            infos: Vec::new(),
            verdicts: Vec::new(),
            records: 0,
            since_advance: 0,
            format: cfg.verify.format,
            json: ConnectJson::new(),
            key_buf: Vec::new(),
            value_buf: Vec::new(),
        };
        for (name, partitions) in topics {
            v.add_topic(cfg, name, *partitions);
        }
        v
    }

    /// Adds a source topic (at start or while running): its source index is the number of
    /// topics added before it. Not verified when it is not a topic of a configured stream.
    pub fn add_topic(&mut self, cfg: &Config, name: &str, partitions: u32) -> usize {
        let (route, info) = match cfg.route(name) {
            Some((stream, table)) => {
                let t = self
                    .engine
                    .add_topic(name, stream as u16, &table, partitions);
                let info = TopicInfo {
                    key_subject: format!("{name}-key"),
                    value_subject: format!("{name}-value"),
                };
                (Some(t), Some(info))
            }
            None => (None, None),
        };
        self.routes.push(route);
        self.infos.push(info);
        self.routes.len() - 1
    }

    pub fn route(&self, source_topic: usize) -> Option<TopicId> {
        self.routes.get(source_topic).copied().flatten()
    }

    pub fn routed_topics(&self) -> usize {
        self.routes.iter().flatten().count()
    }

    /// The schemas of JsonConverter records, registered under synthetic ids.
    #[cfg(test)]
    pub fn json_schemas(&self) -> &ConnectJson {
        &self.json
    }

    /// Feeds one record. Returns what became of it (`None` when its topic is not verified).
    pub fn feed(
        &mut self,
        rec: &SourceRecord<'_>,
        src: &mut dyn SchemaSource,
    ) -> Result<Option<Ingested>, SchemaUnavailable> {
        let SourceRecord {
            topic,
            partition,
            offset,
            timestamp_ms,
            key,
            value,
        } = *rec;
        let Some(t) = self.route(topic) else {
            return Ok(None);
        };
        let info = self.infos[topic]
            .as_ref()
            .expect("a routed topic has its info");
        // A tombstone's key is not read: it passes as it is.
        let transcoded = match value {
            None => Ok((false, false)),
            Some(v) => prepare(
                self.format,
                &mut self.json,
                &info.value_subject,
                "value",
                v,
                &mut self.value_buf,
            )
            .and_then(|vt| {
                match key {
                    Some(k) => prepare(
                        self.format,
                        &mut self.json,
                        &info.key_subject,
                        "key",
                        k,
                        &mut self.key_buf,
                    ),
                    None => Ok(false),
                }
                .map(|kt| (kt, vt))
            }),
        };
        let r = match transcoded {
            Err(error) => {
                let rec = Record {
                    topic: t,
                    partition,
                    offset,
                    timestamp_ms,
                    key,
                    value,
                };
                self.engine.reject(&rec, error)
            }
            Ok((kt, vt)) => {
                let rec = Record {
                    topic: t,
                    partition,
                    offset,
                    timestamp_ms,
                    key: if kt { Some(&self.key_buf[..]) } else { key },
                    value: if vt { Some(&self.value_buf[..]) } else { value },
                };
                let mut src = WithConnectJson {
                    json: &self.json,
                    inner: &mut *src,
                };
                self.engine.ingest(&rec, &mut src)?
            }
        };
        if let Ingested::Poison(d) = &r {
            self.verdicts.push((**d).clone());
        }
        self.records += 1;
        self.since_advance += 1;
        if self.since_advance >= BATCH {
            self.since_advance = 0;
            let mut src = WithConnectJson {
                json: &self.json,
                inner: src,
            };
            self.engine
                .advance(timestamp_ms, &mut src, &mut self.verdicts)?;
        }
        Ok(Some(r))
    }

    pub fn advance(
        &mut self,
        now_ms: i64,
        src: &mut dyn SchemaSource,
    ) -> Result<(), SchemaUnavailable> {
        self.since_advance = 0;
        let mut src = WithConnectJson {
            json: &self.json,
            inner: src,
        };
        self.engine.advance(now_ms, &mut src, &mut self.verdicts)
    }

    /// A stop that a restart continues (see [`Engine::release_starts`]).
    pub fn release_starts(&mut self) {
        self.engine.release_starts(&mut self.verdicts)
    }

    /// End of a bounded input.
    pub fn finish(&mut self, src: &mut dyn SchemaSource) -> Result<(), SchemaUnavailable> {
        let mut src = WithConnectJson {
            json: &self.json,
            inner: src,
        };
        self.engine.finish(&mut src, &mut self.verdicts)
    }

    /// Verdicts reached since the last call, no longer kept (a long-running service would
    /// otherwise keep every verdict it ever reached).
    pub fn take_new(&mut self) -> Vec<Divergence> {
        std::mem::take(&mut self.verdicts)
    }

    /// Verdicts that count against consistency.
    pub fn findings(&self) -> usize {
        self.verdicts
            .iter()
            .filter(|d| d.kind() != Kind::Recovered)
            .count()
    }
}

/// Reads one key or value as `format` says: `Ok(true)` when it was a JsonConverter document,
/// now in `buf` in the Avro wire format; `Ok(false)` when it goes to the engine as it is;
/// `Err` (a poison record) when it is in the other format or its JSON cannot be read.
fn prepare(
    format: Format,
    json: &mut ConnectJson,
    subject: &str,
    what: &str,
    bytes: &[u8],
    buf: &mut Vec<u8>,
) -> Result<bool, String> {
    let avro = bytes.first() == Some(&0);
    match format {
        Format::Auto | Format::Json if !avro && looks_like_json(bytes) => json
            .transcode(bytes, subject, buf)
            .map(|_| true)
            .map_err(|e| format!("{what}: {e}")),
        Format::Json if avro => Err(format!(
            "{what}: in the Avro wire format (magic byte 0x00), but verify.format is \"json\""
        )),
        Format::Json => Err(match bytes.first() {
            Some(b) => format!(
                "{what}: not a JSON document (first byte {b:#04x}), and verify.format is \"json\""
            ),
            None => format!("{what}: empty, and verify.format is \"json\""),
        }),
        Format::Avro if looks_like_json(bytes) => Err(format!(
            "{what}: a JSON document, but verify.format is \"avro\" (\"json\" or \"auto\" read \
             Kafka Connect JsonConverter records)"
        )),
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests;
