//! Scale-out (`[scale]`): the shards of tables this instance verifies, given by a Kafka consumer
//! group that the instances of one `kafka.group-id` share (docs/scaling.md).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use cdc_verifier_kafka::admin::{Existing, TopicSpec, ensure_topics};
use cdc_verifier_kafka::exchange::Exchange;
use cdc_verifier_kafka::membership::{Membership, Standing};

use super::health::Health;
use super::placement::{self, Agreeing, Placement};
use super::state::Saved;
use crate::clients;
use crate::config::Config;
use cdc_verifier_core::Checkpoint;

/// The shards owned, out of how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Shards {
    pub total: u32,
    pub owned: BTreeSet<u32>,
    pub generation: u64,
    /// The tables' shards, as the group agreed for this assignment.
    pub placement: Placement,
}

impl Shards {
    /// Whether `table` is verified here.
    pub fn owns(&self, table: &str) -> bool {
        self.owned.contains(&self.shard(table))
    }

    /// The shard of `table`.
    pub fn shard(&self, table: &str) -> u32 {
        self.placement.shard(table, self.total)
    }

    /// The shards, as the log says them.
    pub fn list(&self) -> String {
        let v: Vec<String> = self.owned.iter().map(u32::to_string).collect();
        format!("[{}] of {}", v.join(", "), self.total)
    }
}

/// The group's name: the consumer group of the shard topic, beside the one offsets are
/// committed under.
pub(super) fn group(cfg: &Config) -> String {
    format!("{}.members", cfg.kafka.group_id)
}

/// The topic the instances tell each other how far each stream has written on.
pub(super) fn reach_topic(cfg: &Config) -> String {
    format!("{}.reach", cfg.shard_topic())
}

/// Creates the shard topic (one partition per shard) and the reach topic when they do not
/// exist, and joins the group sharing the shards.
pub(super) fn join(cfg: &Config, health: &Health) -> anyhow::Result<(Membership, Exchange)> {
    let kafka = clients::kafka_settings(cfg);
    let topic = cfg.shard_topic();
    health.starting(&format!("joining the group sharing {topic}"));
    let short = |partitions: i32, name: String| TopicSpec {
        name,
        partitions,
        // Only what is recent matters: segments rolled and dropped within minutes.
        configs: vec![
            ("retention.ms".into(), "300000".into()),
            ("segment.ms".into(), "60000".into()),
        ],
        replication: None,
    };
    ensure_topics(
        &kafka,
        &[short(1, reach_topic(cfg))],
        Existing::SamePartitions,
        Duration::from_secs(15),
    )
    .with_context(|| format!("the reach topic {} must have 1 partition", reach_topic(cfg)))?;
    let exchange = Exchange::open(&kafka, &reach_topic(cfg), placement::KEY)
        .with_context(|| format!("cannot read {}", reach_topic(cfg)))?;
    ensure_topics(
        &kafka,
        &[short(cfg.scale.shards as i32, topic.clone())],
        Existing::SamePartitions,
        Duration::from_secs(15),
    )
    .with_context(|| {
        format!(
            "the shard topic {topic} must have scale.shards = {} partitions (every instance of group {} must be configured with the same scale.shards; to change it, stop them all and delete the topic)",
            cfg.scale.shards, cfg.kafka.group_id
        )
    })?;
    let session = Duration::from_millis(cfg.scale.session_timeout_ms);
    // A hand-off drains as a stop does: it may take the shutdown timeout, and a little more.
    let hand_off = Duration::from_secs(cfg.service.shutdown_timeout_s + 15);
    let m = Membership::join(&kafka, &group(cfg), &topic, session, hand_off)
        .with_context(|| format!("cannot join the group {} over {topic}", group(cfg)))?;
    tracing::info!(
        topic,
        group = %group(cfg),
        shards = cfg.scale.shards,
        "sharing {} shards of tables with the other instances of the group",
        cfg.scale.shards
    );
    Ok((m, exchange))
}

/// What one instance says of a stream on the reach topic.
#[derive(serde::Serialize, serde::Deserialize)]
struct Said {
    reach: cdc_verifier_core::Reach,
    origins: Vec<cdc_verifier_core::origins::Epoch>,
}

impl super::state::Service {
    /// Tells the other instances how far each stream has written, as read here, and takes
    /// in what they told.
    pub(super) fn exchange_reach(&mut self) {
        let Some(ex) = self.exchange.clone() else {
            return;
        };
        let me = self.exchange_key.clone();
        let engine = &mut self.verifier.engine;
        let origins = engine.origin_epochs();
        for reach in engine.reach() {
            let key = format!("{me}/{}", reach.stream);
            let said = Said {
                reach,
                origins: origins.clone(),
            };
            if let Ok(v) = serde_json::to_vec(&said) {
                ex.say(&key, &v);
                self.reach_said.0 += 1;
                self.reach_said.1 += (key.len() + v.len()) as u64;
            }
        }
        self.say_lag(false);
        // A new assignment starts a new engine: what the others said before it, and will not
        // say again while their streams are quiet, is taken in first.
        let live = std::mem::replace(&mut self.reach_primed, true);
        let heard = if live { ex.heard() } else { ex.latest() };
        let now = super::state::wall_ms();
        for (key, value) in heard {
            // (Said just now: its instance is in the group. What priming reads may be old.)
            if let Some(instance) = super::orphans::speaker(&key).filter(|_| live) {
                self.orphans.heard(instance, now);
            }
            if self.hear_lag(&key, &value) || key.starts_with(&format!("{me}/")) {
                continue;
            }
            let Ok(said) = serde_json::from_slice::<Said>(&value) else {
                continue;
            };
            if self
                .verifier
                .engine
                .note_elsewhere(&said.reach, &said.origins)
            {
                self.reach_taken += 1;
            } else {
                self.reach_refused += 1;
            }
        }
    }
}

/// Waits until the group gives this instance shards to verify (`None`: a signal came first).
/// An instance given none stands by, ready, until it is.
pub(super) fn wait_for_shards(
    m: &Membership,
    exchange: &Exchange,
    cfg: &Config,
    signals: &AtomicBool,
    health: &Health,
) -> Option<Shards> {
    let mut standing = m.standing();
    let mut said_standby = false;
    let mut said_error: Option<String> = None;
    loop {
        if signals.load(Ordering::SeqCst) {
            return None;
        }
        match &standing {
            Standing::Owns {
                generation, shards, ..
            } if !shards.is_empty() => {
                // Instances starting together join one after another: each join takes every
                // shard back. Verifying starts once the group stays as it is for a moment.
                health.starting("given shards: waiting for the group to settle");
                let settle = Duration::from_millis(cfg.scale.settle_ms);
                let next = m.wait_change(&standing, settle);
                if next != standing {
                    standing = next;
                    continue;
                }
                let placement = if cfg.scale.place_by == crate::config::PlaceBy::Hash {
                    Placement::default()
                } else {
                    match agree(m, exchange, cfg, signals, health, &standing) {
                        Agreed::Yes(p) => p,
                        Agreed::Changed(next) => {
                            standing = next;
                            continue;
                        }
                        Agreed::Stopped => return None,
                    }
                };
                return Some(Shards {
                    total: cfg.scale.shards,
                    owned: shards.clone(),
                    generation: *generation,
                    placement,
                });
            }
            Standing::Owns { .. } => {
                health.beat();
                health.set(Vec::new());
                if !said_standby {
                    said_standby = true;
                    tracing::info!(
                        "standing by: the group gave this instance no shard (more instances than scale.shards = {}); it takes shards over when another instance stops",
                        cfg.scale.shards
                    );
                }
            }
            Standing::Joining => {
                health.starting("joining the group: waiting for shards");
                said_standby = false;
            }
            // Nothing was being verified: give them back at once.
            Standing::HandingOff => m.release(),
        }
        if let Some(e) = m.error()
            && said_error.as_ref() != Some(&e)
        {
            tracing::warn!(error = %e, group = %group(cfg), "the group's last rebalance failed: waiting for the next");
            said_error = Some(e);
        }
        standing = m.wait_change(&standing, Duration::from_millis(200));
    }
}

enum Agreed {
    Yes(Placement),
    /// The group changed first.
    Changed(Standing),
    /// A signal came first.
    Stopped,
}

/// Agrees with the others on where the tables go for the assignment `standing` (see
/// [`placement`]); the hash when librdkafka could not say the group's generation.
fn agree(
    m: &Membership,
    exchange: &Exchange,
    cfg: &Config,
    signals: &AtomicBool,
    health: &Health,
    standing: &Standing,
) -> Agreed {
    let Standing::Owns { shards, group, .. } = standing else {
        return Agreed::Changed(standing.clone());
    };
    let Some((gen_id, member)) = group else {
        tracing::warn!(
            "the group's generation is unknown here: tables placed by the hash of their names"
        );
        return Agreed::Yes(Placement::default());
    };
    let gen_id = *gen_id;
    health.starting("agreeing on where the tables go: waiting for the holder of shard 0");
    let mut a = Agreeing::start(cfg, gen_id, member.clone(), shards.clone());
    let since = std::time::Instant::now();
    let mut warned = false;
    loop {
        if signals.load(Ordering::SeqCst) {
            return Agreed::Stopped;
        }
        if let Some(p) = a.poll(exchange) {
            return Agreed::Yes(p);
        }
        if !warned && since.elapsed() > Duration::from_secs(30) {
            warned = true;
            tracing::warn!(
                generation = gen_id,
                "no placement of the tables heard for this assignment after 30 s: waiting for the holder of shard 0 (or the group's next assignment)"
            );
        }
        let next = m.wait_change(standing, Duration::from_millis(100));
        if &next != standing {
            return Agreed::Changed(next);
        }
    }
}

/// The checkpoint to continue from, out of those committed on the partitions of the tables
/// verified here (each with its table; each table's first partition carries the checkpoint of
/// the instance that verified it last): per table the newest, keeping only that table's
/// episodes, merged — replica-wide state (lag, origins, skew) from the newest of all, a
/// replica's starting state compared only where every table's says so. Per table, not per
/// shard: where the tables go changes with each assignment.
pub(super) fn merge(
    shards: &Shards,
    saved: impl Iterator<Item = (String, Saved)>,
) -> Option<Checkpoint> {
    let mut newest: std::collections::BTreeMap<String, Saved> = std::collections::BTreeMap::new();
    for (table, s) in saved {
        if !shards.owns(&table) {
            continue;
        }
        if newest.get(&table).is_none_or(|n| n.saved_ms < s.saved_ms) {
            newest.insert(table, s);
        }
    }
    let latest = newest.values().max_by_key(|s| s.saved_ms)?;
    let mut c = Checkpoint {
        lagging: latest.checkpoint.lagging.clone(),
        skew_seen_ms: newest
            .values()
            .map(|s| s.checkpoint.skew_seen_ms)
            .max()
            .unwrap_or(0),
        origins: newest
            .values()
            .map(|s| &s.checkpoint.origins)
            .max_by_key(|o| o.len())
            .cloned()
            .unwrap_or_default(),
        started: latest
            .checkpoint
            .started
            .iter()
            .filter(|r| newest.values().all(|s| s.checkpoint.started.contains(r)))
            .cloned()
            .collect(),
        // Each table's windows were compared through its own point; a table without a
        // checkpoint (its last holder never committed) through none: read from its start, all
        // of it is summed.
        compared_through: None,
        compared_ahead: newest
            .iter()
            .filter_map(|(t, s)| Some((t.clone(), s.checkpoint.compared_through_of(t)?)))
            .collect(),
        ..Checkpoint::default()
    };
    for (table, s) in &newest {
        let own = |(_, t): &&(String, String)| t == table;
        c.drifting
            .extend(s.checkpoint.drifting.iter().filter(own).cloned());
        c.silent
            .extend(s.checkpoint.silent.iter().filter(own).cloned());
        c.drift_from.extend(
            s.checkpoint
                .drift_from
                .iter()
                .filter(|(_, t, _)| t == table)
                .cloned(),
        );
        c.silent_from.extend(
            s.checkpoint
                .silent_from
                .iter()
                .filter(|(_, t, _)| t == table)
                .cloned(),
        );
    }
    c.drifting.sort();
    c.drift_from.sort();
    c.silent_from.sort();
    c.silent.sort();
    Some(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdc_verifier_core::Position;

    fn saved(ms: i64, drifting: &[(&str, &str)], started: &[&str]) -> Saved {
        Saved {
            saved_ms: ms,
            checkpoint: Checkpoint {
                drifting: drifting
                    .iter()
                    .map(|(r, t)| (r.to_string(), t.to_string()))
                    .collect(),
                started: started.iter().map(|s| s.to_string()).collect(),
                skew_seen_ms: ms,
                ..Checkpoint::default()
            },
        }
    }

    #[test]
    fn each_table_continues_from_its_own_newest_checkpoint() {
        // orders and customers are placed on shard 1, held here; products on shard 0, not.
        let shards = Shards {
            total: 2,
            owned: [1].into(),
            generation: 1,
            placement: Placement {
                tables: [("orders", 1), ("customers", 1), ("products", 0)]
                    .into_iter()
                    .map(|(t, s)| (t.to_string(), s))
                    .collect(),
                ..Placement::default()
            },
        };
        let (a, b) = (String::from("orders"), String::from("customers"));
        let c = merge(
            &shards,
            [
                // orders: an old instance's checkpoint, then a newer one where the drift of
                // orders ended.
                (
                    a.clone(),
                    saved(10, &[("r1", "orders"), ("r1", "customers")], &["r1", "r2"]),
                ),
                (a.clone(), saved(20, &[], &["r1", "r2"])),
                // customers (verified elsewhere before this assignment): its own newest says
                // customers drifts; it also names another table, which is not its to say.
                (
                    b.clone(),
                    saved(15, &[("r1", "customers"), ("r2", "orders")], &["r1"]),
                ),
                // A table not verified here is ignored.
                ("products".into(), saved(99, &[("r1", "products")], &[])),
            ]
            .into_iter(),
        )
        .expect("a checkpoint");
        assert_eq!(
            c.drifting,
            vec![("r1".to_string(), "customers".to_string())]
        );
        assert_eq!(c.started, vec!["r1".to_string()]);
        assert_eq!(c.skew_seen_ms, 20);
        assert!(merge(&shards, std::iter::empty()).is_none());
    }

    #[test]
    fn each_table_continues_from_its_own_compared_point() {
        // orders and customers held here; customers' last holder never committed.
        let shards = Shards {
            total: 1,
            owned: [0].into(),
            generation: 1,
            placement: Placement::default(),
        };
        let at = |tx| Position { tx, order: 0 };
        let mut orders = saved(10, &[], &["r1"]);
        orders.checkpoint.compared_through = Some(at(4200));
        let mut payments = saved(12, &[], &["r1"]);
        payments.checkpoint.compared_through = Some(at(3000));
        payments.checkpoint.compared_ahead = [("payments".to_string(), at(5000))].into();
        let c = merge(
            &shards,
            [("orders".into(), orders), ("payments".into(), payments)].into_iter(),
        )
        .expect("a checkpoint");
        assert_eq!(c.compared_through_of("orders"), Some(at(4200)));
        assert_eq!(c.compared_through_of("payments"), Some(at(5000)));
        assert_eq!(c.compared_through_of("customers"), None);
    }
}
