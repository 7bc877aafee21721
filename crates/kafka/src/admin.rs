//! Topic creation through the admin API, for the simulator's topics and the service's alert
//! topics alike.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;

use crate::consume::KafkaSettings;

/// Preparing topics failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot create a Kafka admin client for {bootstrap}")]
    Client {
        bootstrap: String,
        source: KafkaError,
    },
    #[error("cannot read metadata from {bootstrap}")]
    Metadata {
        bootstrap: String,
        source: KafkaError,
    },
    #[error("cannot create topic {topic}")]
    CreateTopic { topic: String, source: KafkaError },
    #[error(
        "topic {topic} exists with {actual} partitions, not {expected}; use another topic prefix or delete it"
    )]
    PartitionMismatch {
        topic: String,
        expected: i32,
        actual: i32,
    },
    #[error("topic {topic} already holds {records} records; use another topic prefix or delete it")]
    NotEmpty { topic: String, records: i64 },
    #[error("topics did not become ready within {0:?}: {1}")]
    TopicsNotReady(Duration, String),
}

/// A topic to create.
#[derive(Clone, Debug)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Topic configs, e.g. `("retention.ms", "-1")`.
    pub configs: Vec<(String, String)>,
    /// Replicas per partition; `None`: as many as there are brokers, up to 3.
    pub replication: Option<i32>,
}

/// What a topic that already exists must look like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    /// Any partition count and content: it is used as it is.
    Any,
    /// The partition count asked.
    SamePartitions,
    /// The partition count asked, and no record (a fresh run's topics).
    Empty,
}

/// Creates the topics that do not exist and checks the others as `existing` says. Waits until
/// every partition has a leader.
pub fn ensure_topics(
    kafka: &KafkaSettings,
    topics: &[TopicSpec],
    existing: Existing,
    timeout: Duration,
) -> Result<(), AdminError> {
    let bootstrap = &kafka.bootstrap_servers;
    let admin: AdminClient<DefaultClientContext> =
        kafka
            .client_config()
            .create()
            .map_err(|source| AdminError::Client {
                bootstrap: bootstrap.clone(),
                source: crate::secrets::redact(source),
            })?;
    let metadata_err = |source| AdminError::Metadata {
        bootstrap: bootstrap.clone(),
        source,
    };
    let strict = existing != Existing::Any;

    let deadline = Instant::now() + timeout;
    let md = metadata(&admin, deadline).map_err(metadata_err)?;
    let brokers = md.brokers().len().max(1) as i32;
    let found: Vec<(String, i32)> = md
        .topics()
        .iter()
        .filter(|t| !t.partitions().is_empty())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect();
    let mut missing = Vec::new();
    for t in topics {
        match found.iter().find(|(n, _)| n == &t.name) {
            Some(&(_, actual)) if strict && actual != t.partitions => {
                return Err(AdminError::PartitionMismatch {
                    topic: t.name.clone(),
                    expected: t.partitions,
                    actual,
                });
            }
            Some(_) => {}
            None => missing.push(t),
        }
    }
    if !missing.is_empty() {
        let new: Vec<NewTopic> = missing
            .iter()
            .map(|t| {
                let replication = t.replication.unwrap_or(brokers.min(3));
                t.configs.iter().fold(
                    NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(replication)),
                    |n, (k, v)| n.set(k, v),
                )
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(timeout));
        let results = block_on(admin.create_topics(&new, &opts)).map_err(|source| {
            AdminError::CreateTopic {
                topic: missing[0].name.clone(),
                source,
            }
        })?;
        for r in results {
            match r {
                Ok(topic) => tracing::info!(topic = %topic, "created topic"),
                // Someone else created it meanwhile; its partition count is checked below.
                Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    tracing::debug!(topic = %topic, "topic exists")
                }
                Err((topic, code)) => {
                    return Err(AdminError::CreateTopic {
                        topic,
                        source: KafkaError::AdminOp(code),
                    });
                }
            }
        }
    }

    // Wait until the metadata shows every topic with all partitions led.
    loop {
        let md = metadata(&admin, deadline).map_err(metadata_err)?;
        let mut not_ready = None;
        for t in topics {
            match md.topics().iter().find(|m| m.name() == t.name) {
                Some(m) if m.error().is_none() && !m.partitions().is_empty() => {
                    let actual = m.partitions().len() as i32;
                    if strict && actual != t.partitions {
                        return Err(AdminError::PartitionMismatch {
                            topic: t.name.clone(),
                            expected: t.partitions,
                            actual,
                        });
                    }
                    if m.partitions().iter().any(|p| p.leader() < 0) {
                        not_ready = Some(format!("{} has partitions without a leader", t.name));
                    }
                }
                _ => not_ready = Some(format!("{} is not in the metadata yet", t.name)),
            }
        }
        match not_ready {
            None => break,
            Some(why) if Instant::now() >= deadline => {
                return Err(AdminError::TopicsNotReady(timeout, why));
            }
            Some(_) => thread::sleep(Duration::from_millis(100)),
        }
    }

    if existing == Existing::Empty {
        for t in topics {
            let mut records = 0;
            for p in 0..t.partitions {
                let (lo, hi) = retrying(deadline, || {
                    admin
                        .inner()
                        .fetch_watermarks(&t.name, p, Duration::from_secs(5))
                })
                .map_err(metadata_err)?;
                records += hi - lo.max(0);
                if hi > 0 && records == 0 {
                    // Emptied by retention or deletion: offsets would not start at 0.
                    records = hi;
                }
            }
            if records > 0 {
                return Err(AdminError::NotEmpty {
                    topic: t.name.clone(),
                    records,
                });
            }
        }
    }
    Ok(())
}

/// The cluster's metadata, retried until `deadline`: while topics are being created (by us or
/// anyone else) the broker may answer with leadership errors for a moment.
fn metadata(
    admin: &AdminClient<DefaultClientContext>,
    deadline: Instant,
) -> Result<Metadata, KafkaError> {
    retrying(deadline, || {
        admin.inner().fetch_metadata(None, Duration::from_secs(5))
    })
}

/// Retries a metadata-like request until it succeeds or `deadline` passes.
fn retrying<T>(
    deadline: Instant,
    mut f: impl FnMut() -> Result<T, KafkaError>,
) -> Result<T, KafkaError> {
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "broker not ready yet, retrying");
                thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Drives a future on this thread. rdkafka's admin futures are completed by its own background
/// thread, so no async runtime is needed.
fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => thread::park(),
        }
    }
}
