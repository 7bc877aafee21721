//! Deterministic CDC traffic of a primary and its replicas, with injected faults.
//!
//! A [`Simulation`] turns a [`SimConfig`] (scenario, seed, size) into the ordered records a set
//! of Debezium MariaDB (or MySQL) connectors would write to Kafka — Avro envelopes in the Confluent wire
//! format, partitioned like the Java client — plus the ground-truth [`Manifest`] of every fault
//! it injected. It does no I/O: schema ids come from a [`SchemaRegistrar`], records are handed
//! out by iteration, and [`capture`] files store a run for replay.
//!
//! ```
//! use cdc_verifier_sim::{OfflineRegistry, SimConfig, Simulation};
//! let mut registry = OfflineRegistry::new();
//! let mut sim = Simulation::new(SimConfig { events: 2_000, ..SimConfig::default() }, &mut registry).unwrap();
//! let records = sim.by_ref().count();
//! assert!(records > 3 * 2_000);
//! assert!(sim.manifest().faults.is_empty());
//! ```

pub mod avro;
pub mod capture;
pub mod manifest;
pub mod model;
pub mod partitioner;
pub mod schema;
mod sim;
pub mod time;
mod world;

pub use capture::{
    CaptureError, CaptureHeader, CaptureReader, CaptureTopic, CaptureWriter, RecordRef,
};
pub use manifest::{ConnectorDelay, Fault, FaultKind, Manifest, ManifestError, Migration};
pub use partitioner::{murmur2, partition_for_key};
pub use schema::{OfflineRegistry, Registered, SchemaEntry, SchemaRegistrar, Table};
pub use sim::{
    CATCH_UP_SPEEDUP, DEFAULT_RATE, DUPLICATE_RUN, EXTRA_ID_BASE, GtidStyle, LAG_DELAY_MS,
    LATE_PARTITION_DELAY_MS, PositionKind, Record, Scenario, SimConfig, SimError, Simulation,
    TopicInfo, UNKNOWN_SCHEMA_ID,
};
pub use world::Op;

impl Simulation {
    /// The capture header for this run: its topics, schemas and a metadata object.
    pub fn capture_header(&self) -> CaptureHeader {
        let cfg = self.config();
        let metadata = serde_json::json!({
            "generator": "cdc-verifier simulate",
            "scenario": cfg.scenario.name(),
            "seed": cfg.seed,
            "events": cfg.events,
            "replicas": cfg.replicas,
            "position_kind": cfg.position.name(),
            "gtid_style": cfg.gtid_style.name(),
            "transaction_metadata": cfg.transaction_metadata,
            "whole_second_source_ts": cfg.whole_second_source_ts,
            "connector_delay_ms": cfg.connector_delay_ms,
            "replica_connector_delay_ms": cfg.replica_connector_delay_ms,
            "topic_prefix": cfg.topic_prefix,
        });
        CaptureHeader {
            metadata: metadata.to_string(),
            topics: self
                .topics()
                .iter()
                .map(|t| CaptureTopic {
                    name: t.name.clone(),
                    partitions: t.partitions,
                })
                .collect(),
            schemas: self.schemas().to_vec(),
        }
    }
}

impl Record {
    pub fn as_ref(&self) -> RecordRef<'_> {
        RecordRef {
            topic: self.topic,
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
        }
    }
}
