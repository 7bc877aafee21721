//! The registry as the core's [`SchemaSource`]: one HTTP round trip per schema id, cached for
//! the life of the process (a registered schema never changes), with timing and hit counts
//! for the metrics.
//!
//! # When "not registered" is believed
//!
//! A record whose schema id is not registered is poison: it goes to the dead-letter topic. A
//! registry restarted with empty storage, or a wrong URL path, would make every record poison,
//! so the answer is believed only from a registry that demonstrably still holds its schemas:
//!
//! - the answer to `GET /schemas/ids/{id}` is a 404 carrying the registry's own error code
//!   40403 (schema not found), and
//! - one of the last ids this source was served (up to [`PROBES`]) is still served, or, when
//!   none was served yet, the registry has versions under the subject the record's topic
//!   implies (`<topic>-value` or `<topic>-key`; when no subject is given, any subject at all).
//!
//! Anything else is *unavailable* — the partition pauses and retries with backoff, nothing is
//! dead-lettered — and said in an ERROR line naming the registry and its answer, and counted
//! by [`Unavailability`]: no answer or a timeout; a 5xx; any other refusal (401, 403, 429);
//! a 404 without the registry's error code or a body that is not the registry's (a proxy, a
//! wrong path); 40403 also for ids served before, or no versions under the topic's subject
//! (lost storage). Nothing but a registered schema is cached: an error never is.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use cdc_verifier_core::source::{FetchError, RegisteredSchema, SchemaSource, SubjectVersion};

use crate::registry::{RegistryClient, RegistryError, error_code};

/// Upper bounds (seconds) of the fetch latency histogram.
pub const LATENCY_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// How many of the ids served last are asked for again before an id is believed unregistered.
pub const PROBES: usize = 3;

/// Why the registry was taken as unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailability {
    /// No answer: connection refused or reset, timeout.
    Unreachable,
    /// A 5xx.
    ServerError,
    /// Another refusal: 401, 403, 429, …
    Refused,
    /// A 404 without the registry's error code, or a body that is not the registry's: a proxy
    /// or a wrong URL path.
    NotTheRegistry,
    /// 40403 also for ids it served before: restarted with empty storage.
    LostSchemas,
    /// 40403 while no id was served yet, and no versions under the topic's subject (or no
    /// subject at all).
    MissingSubject,
}

impl Unavailability {
    pub const ALL: [Unavailability; 6] = [
        Unavailability::Unreachable,
        Unavailability::ServerError,
        Unavailability::Refused,
        Unavailability::NotTheRegistry,
        Unavailability::LostSchemas,
        Unavailability::MissingSubject,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Unavailability::Unreachable => "unreachable",
            Unavailability::ServerError => "server_error",
            Unavailability::Refused => "refused",
            Unavailability::NotTheRegistry => "not_the_registry",
            Unavailability::LostSchemas => "lost_schemas",
            Unavailability::MissingSubject => "missing_subject",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Unavailability::Unreachable => "no answer",
            Unavailability::ServerError => "a server error",
            Unavailability::Refused => "a refusal",
            Unavailability::NotTheRegistry => {
                "an answer that is not the registry's (a wrong URL path, or a proxy)"
            }
            Unavailability::LostSchemas => "it no longer has schemas it served before",
            Unavailability::MissingSubject => "it does not have the topic's subject",
        }
    }

    fn of(e: &RegistryError) -> Unavailability {
        match e {
            RegistryError::Http { .. } | RegistryError::InvalidUrl { .. } => {
                Unavailability::Unreachable
            }
            RegistryError::Decode { .. } => Unavailability::NotTheRegistry,
            RegistryError::Api { status, .. } if *status >= 500 => Unavailability::ServerError,
            RegistryError::Api { status: 404, .. } => Unavailability::NotTheRegistry,
            RegistryError::Api { .. } => Unavailability::Refused,
        }
    }
}

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
    /// Fetches that found the registry unavailable, per [`Unavailability::ALL`].
    pub unavailable: [u64; Unavailability::ALL.len()],
    /// The last fetch found the registry unavailable.
    pub unavailable_now: bool,
}

pub struct RegistrySource {
    client: RegistryClient,
    cache: HashMap<u32, RegisteredSchema>,
    /// The ids served last, newest first: asked for again to tell lost storage.
    served: VecDeque<u32>,
    down: Option<Unavailability>,
    pub stats: RegistryStats,
}

impl RegistrySource {
    pub fn new(client: RegistryClient) -> Self {
        RegistrySource {
            client,
            cache: HashMap::new(),
            served: VecDeque::with_capacity(PROBES),
            down: None,
            stats: RegistryStats::default(),
        }
    }

    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    fn fetch_from_registry(
        &mut self,
        id: u32,
        subject: Option<&str>,
    ) -> Result<RegisteredSchema, FetchError> {
        if let Some(s) = self.cache.get(&id) {
            self.stats.hits += 1;
            return Ok(s.clone());
        }
        self.stats.misses += 1;
        let start = Instant::now();
        let schema = match self.client.schema_by_id(id) {
            Ok(s) => s,
            Err(e) => {
                self.stats.errors += 1;
                return Err(if schema_not_found(&e) {
                    self.not_found(id, subject, &e)
                } else {
                    self.unavailable(Unavailability::of(&e), detail(&e))
                });
            }
        };
        // Registries without the endpoint listing an id's subjects still serve the schema: the
        // subject check is then skipped for it. Only that is cached; a failure is not.
        let subjects = match self.client.versions_by_id(id) {
            Ok(v) => v
                .into_iter()
                .map(|s| SubjectVersion {
                    subject: s.subject,
                    version: s.version,
                })
                .collect(),
            Err(e) if lists_no_subjects(&e) => Vec::new(),
            Err(e) => {
                self.stats.errors += 1;
                let why = if schema_not_found(&e) {
                    // Served a moment ago, not found now.
                    Unavailability::LostSchemas
                } else {
                    Unavailability::of(&e)
                };
                return Err(self.unavailable(why, detail(&e)));
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
        self.answered();
        if self.served.len() == PROBES {
            self.served.pop_back();
        }
        self.served.push_front(id);
        let s = RegisteredSchema {
            id,
            schema,
            subjects,
        };
        self.cache.insert(id, s.clone());
        Ok(s)
    }

    /// The registry answered 40403 for `id`: believed only if it still holds its schemas.
    fn not_found(&mut self, id: u32, subject: Option<&str>, e: &RegistryError) -> FetchError {
        let intact = if self.served.is_empty() {
            // The subject asked for by name: a registry's full list may be capped.
            match subject {
                Some(s) => match self.client.subject_versions(s) {
                    Ok(v) if !v.is_empty() => Ok(()),
                    Ok(_) => Err((
                        Unavailability::MissingSubject,
                        format!("{e}, and subject {s} has no versions"),
                    )),
                    Err(p) if p.is_not_found() => Err((
                        Unavailability::MissingSubject,
                        format!("{e}, and it does not have subject {s} either"),
                    )),
                    Err(p) => Err((Unavailability::of(&p), detail(&p))),
                },
                None => match self.client.subjects() {
                    Ok(list) if list.is_empty() => Err((
                        Unavailability::MissingSubject,
                        format!("{e}, and it has no subject at all"),
                    )),
                    Ok(_) => Ok(()),
                    Err(p) => Err((Unavailability::of(&p), detail(&p))),
                },
            }
        } else {
            let mut lost = Vec::new();
            let mut result = None;
            for known in self.served.clone() {
                match self.client.schema_by_id(known) {
                    Ok(_) => {
                        result = Some(Ok(()));
                        break;
                    }
                    Err(p) if schema_not_found(&p) => lost.push(known.to_string()),
                    Err(p) => {
                        result = Some(Err((Unavailability::of(&p), detail(&p))));
                        break;
                    }
                }
            }
            result.unwrap_or_else(|| {
                Err((
                    Unavailability::LostSchemas,
                    format!(
                        "{e}, and also for schema id {}, which it served before",
                        lost.join(", ")
                    ),
                ))
            })
        };
        match intact {
            Ok(()) => {
                self.answered();
                FetchError::NotFound(id)
            }
            Err((why, detail)) => self.unavailable(why, detail),
        }
    }

    /// Counts and says (once per change of reason) that the registry is unavailable.
    fn unavailable(&mut self, why: Unavailability, detail: String) -> FetchError {
        self.stats.unavailable[why as usize] += 1;
        self.stats.unavailable_now = true;
        let registry = self.client.base_url();
        if self.down != Some(why) {
            tracing::error!(
                %registry,
                reason = why.label(),
                answer = %detail,
                "schema registry at {registry} unavailable, {}: records of schemas not seen before wait, their partitions paused and retried with backoff",
                why.what()
            );
        } else {
            tracing::debug!(%registry, reason = why.label(), answer = %detail, "schema registry still unavailable");
        }
        self.down = Some(why);
        FetchError::Unavailable(format!(
            "schema registry at {registry}: {} ({detail})",
            why.what()
        ))
    }

    fn answered(&mut self) {
        self.stats.unavailable_now = false;
        if self.down.take().is_some() {
            tracing::info!(registry = %self.client.base_url(), "schema registry answers again");
        }
    }
}

/// The registry itself said no schema has the id.
fn schema_not_found(e: &RegistryError) -> bool {
    e.status() == Some(404) && e.error_code() == Some(error_code::SCHEMA_NOT_FOUND)
}

/// The endpoint listing an id's subjects is not there (the schema itself was just served).
fn lists_no_subjects(e: &RegistryError) -> bool {
    match e.status() {
        Some(404) => !schema_not_found(e),
        Some(405 | 501) => true,
        _ => false,
    }
}

/// An error with its causes, on one line.
fn detail(e: &RegistryError) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

impl SchemaSource for RegistrySource {
    fn fetch(&mut self, id: u32) -> Result<RegisteredSchema, FetchError> {
        self.fetch_from_registry(id, None)
    }

    fn fetch_for(&mut self, id: u32, subject: &str) -> Result<RegisteredSchema, FetchError> {
        self.fetch_from_registry(id, Some(subject))
    }
}
