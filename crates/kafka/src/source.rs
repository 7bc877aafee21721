//! The registry as the core's [`SchemaSource`]: one HTTP round trip per schema id, cached for
//! the life of the process (a registered schema never changes), with timing and hit counts
//! for the metrics.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cdc_verifier_core::source::{FetchError, RegisteredSchema, SchemaSource, SubjectVersion};

use crate::registry::{RegistryClient, RegistryError};

/// Upper bounds (seconds) of the fetch latency histogram.
pub const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Counters of the cache and of the registry calls behind it.
#[derive(Debug, Default, Clone, Copy)]
pub struct RegistryStats {
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    /// Successful fetches, their total time, and their count per latency bucket (the last
    /// bucket also counts fetches slower than every bound).
    pub fetches: u64,
    pub fetch_time: Duration,
    pub buckets: [u64; LATENCY_BUCKETS.len()],
}

pub struct RegistrySource {
    client: RegistryClient,
    cache: HashMap<u32, RegisteredSchema>,
    pub stats: RegistryStats,
}

impl RegistrySource {
    pub fn new(client: RegistryClient) -> Self {
        RegistrySource {
            client,
            cache: HashMap::new(),
            stats: RegistryStats::default(),
        }
    }

    pub fn client(&self) -> &RegistryClient {
        &self.client
    }
}

fn classify(id: u32, e: RegistryError) -> FetchError {
    if e.is_not_found() {
        FetchError::NotFound(id)
    } else {
        // Unreachable, timed out, 5xx: transient, never a reason to drop a record.
        FetchError::Unavailable(e.to_string())
    }
}

impl SchemaSource for RegistrySource {
    fn fetch(&mut self, id: u32) -> Result<RegisteredSchema, FetchError> {
        if let Some(s) = self.cache.get(&id) {
            self.stats.hits += 1;
            return Ok(s.clone());
        }
        self.stats.misses += 1;
        let start = Instant::now();
        let schema = self.client.schema_by_id(id).map_err(|e| {
            self.stats.errors += 1;
            classify(id, e)
        })?;
        // Registries that do not list an id's subjects still serve the schema: the subject
        // check is then skipped for it.
        let subjects = match self.client.versions_by_id(id) {
            Ok(v) => v
                .into_iter()
                .map(|s| SubjectVersion {
                    subject: s.subject,
                    version: s.version,
                })
                .collect(),
            Err(e) if e.is_not_found() || e.error_code().is_some() => Vec::new(),
            Err(e) => {
                self.stats.errors += 1;
                return Err(classify(id, e));
            }
        };
        let took = start.elapsed();
        self.stats.fetches += 1;
        self.stats.fetch_time += took;
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| took.as_secs_f64() <= *b)
            .unwrap_or(LATENCY_BUCKETS.len() - 1);
        self.stats.buckets[i] += 1;
        let s = RegisteredSchema {
            id,
            schema,
            subjects,
        };
        self.cache.insert(id, s.clone());
        Ok(s)
    }
}
