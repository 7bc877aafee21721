//! The verification pipeline shared by `run`, `replay` and `demo`: routes records of any
//! source to the engine by topic, advances it in batches, and keeps what it concluded.

use cdc_verifier_core::verdict::{Divergence, Kind};
use cdc_verifier_core::{Engine, EngineConfig, Ingested, Record, SchemaSource, SchemaUnavailable, TopicId};

use crate::config::Config;

/// Records between two advances of the engine's watermarks.
pub const BATCH: u64 = 4096;

pub struct Verifier {
    pub engine: Engine,
    /// Engine topic per source topic index (None: not a topic of a configured stream).
    routes: Vec<Option<TopicId>>,
    pub verdicts: Vec<Divergence>,
    pub records: u64,
    since_advance: u64,
    /// Verdicts already handed out by [`Verifier::drain_new`].
    handed_out: usize,
}

impl Verifier {
    /// A verifier for `topics` (name, partitions) of a source, routed by the configured
    /// stream prefixes; other topics are ignored.
    pub fn new(cfg: &Config, engine_cfg: EngineConfig, topics: &[(String, u32)]) -> Verifier {
        let names: Vec<&str> = cfg.replicas.iter().map(|r| r.name.as_str()).collect();
        let mut engine = Engine::new(engine_cfg, &cfg.primary.name, &names);
        let routes = topics
            .iter()
            .map(|(name, partitions)| cfg.route(name).map(|(stream, table)| engine.add_topic(name, stream as u16, &table, *partitions)))
            .collect();
        Verifier { engine, routes, verdicts: Vec::new(), records: 0, since_advance: 0, handed_out: 0 }
    }

    pub fn route(&self, source_topic: usize) -> Option<TopicId> {
        self.routes.get(source_topic).copied().flatten()
    }

    pub fn routed_topics(&self) -> usize {
        self.routes.iter().flatten().count()
    }

    /// Feeds one record of source topic `topic`. Returns what became of it (`None` when the
    /// topic is not verified).
    #[allow(clippy::too_many_arguments)]
    pub fn feed(
        &mut self,
        topic: usize,
        partition: u32,
        offset: i64,
        timestamp_ms: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        src: &mut dyn SchemaSource,
    ) -> Result<Option<Ingested>, SchemaUnavailable> {
        let Some(t) = self.route(topic) else { return Ok(None) };
        let rec = Record { topic: t, partition, offset, timestamp_ms, key, value };
        let r = self.engine.ingest(&rec, src)?;
        if let Ingested::Poison(d) = &r {
            self.verdicts.push((**d).clone());
        }
        self.records += 1;
        self.since_advance += 1;
        if self.since_advance >= BATCH {
            self.since_advance = 0;
            self.engine.advance(timestamp_ms, src, &mut self.verdicts)?;
        }
        Ok(Some(r))
    }

    pub fn advance(&mut self, now_ms: i64, src: &mut dyn SchemaSource) -> Result<(), SchemaUnavailable> {
        self.since_advance = 0;
        self.engine.advance(now_ms, src, &mut self.verdicts)
    }

    /// End of a bounded input.
    pub fn finish(&mut self, src: &mut dyn SchemaSource) -> Result<(), SchemaUnavailable> {
        self.engine.finish(src, &mut self.verdicts)
    }

    /// Verdicts reached since the last call.
    pub fn drain_new(&mut self) -> &[Divergence] {
        let new = &self.verdicts[self.handed_out..];
        self.handed_out = self.verdicts.len();
        new
    }

    /// Verdicts that count against consistency.
    pub fn findings(&self) -> usize {
        self.verdicts.iter().filter(|d| d.kind != Kind::Recovered).count()
    }
}
