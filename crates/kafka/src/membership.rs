//! Shards owned through a Kafka consumer group, so that several verifiers share the work and
//! take over from one that stops, with no coordinator but the broker.
//!
//! Each instance subscribes one consumer to the shard topic (one partition per shard, never
//! written to) in a group of its own; the partitions the group assigns it are the shards it
//! owns. The rebalance protocol is eager: before any instance is given shards, every instance
//! hands its shards back — and a hand-off waits here until the caller has stopped using them and
//! committed what it verified ([`Membership::release`]), so that no two instances ever verify
//! one shard at a time and a new owner starts from the old one's last commit. An instance that
//! dies (kill -9) is given up by the group after `session.timeout.ms`, and its shards go to the
//! others.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, Rebalance};

use crate::consume::{ConsumeError, KafkaSettings};

/// Where the instance stands in its group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not given shards yet: joining the group, or a rebalance in progress.
    Joining,
    /// The shards owned since the `generation`-th assignment (possibly none: an instance beyond
    /// the number of shards stands by).
    Owns {
        generation: u64,
        shards: BTreeSet<u32>,
        /// The group's generation and this member's id, as the coordinator gave them with
        /// this assignment (`None` if librdkafka could not say): the same generation is the
        /// same assignment for every member.
        group: Option<(i32, String)>,
    },
    /// The group wants the shards back: stop using them, commit, then [`Membership::release`].
    HandingOff,
}

#[derive(Debug)]
struct State {
    standing: Standing,
    generation: u64,
    released: bool,
    /// Leaving the group: what was verified is committed already.
    leaving: bool,
    /// The last rebalance error the group reported, for the caller to say.
    error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    /// How long a hand-off waits for the caller before it lets the shards go anyway.
    hand_off: Duration,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

struct Ctx(Arc<Shared>);

impl ClientContext for Ctx {}

impl ConsumerContext for Ctx {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            let shared = &self.0;
            let mut s = shared.lock();
            let owned = matches!(&s.standing, Standing::Owns { shards, .. } if !shards.is_empty());
            if owned && !s.leaving {
                s.standing = Standing::HandingOff;
                s.released = false;
                shared.changed.notify_all();
                let deadline = Instant::now() + shared.hand_off;
                while !s.released {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        tracing::warn!(
                            "the shards were not handed off within {:?}: the group takes them back anyway",
                            shared.hand_off
                        );
                        break;
                    }
                    s = shared
                        .changed
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
            s.standing = Standing::Joining;
            shared.changed.notify_all();
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let shared = &self.0;
        let mut s = shared.lock();
        match rebalance {
            Rebalance::Assign(tpl) => {
                s.generation += 1;
                let shards = tpl
                    .elements()
                    .iter()
                    .filter_map(|e| u32::try_from(e.partition()).ok())
                    .collect();
                s.standing = Standing::Owns {
                    generation: s.generation,
                    shards,
                    group: crate::ffi::group_generation(consumer),
                };
                s.error = None;
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => s.error = Some(crate::secrets::redact(e.clone()).to_string()),
        }
        shared.changed.notify_all();
    }
}

/// This instance's membership of the group sharing the shards.
pub struct Membership {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Membership {
    /// Joins `group` over the shard `topic` (which must exist, one partition per shard). The
    /// group gives up an instance not heard from for `session_timeout`; a hand-off waits at
    /// most `hand_off` for [`Membership::release`].
    pub fn join(
        settings: &KafkaSettings,
        group: &str,
        topic: &str,
        session_timeout: Duration,
        hand_off: Duration,
    ) -> Result<Membership, ConsumeError> {
        let session = session_timeout.as_millis().to_string();
        // A hand-off longer than the poll interval would have the group drop this member.
        let poll_interval = (hand_off + Duration::from_secs(30)).as_millis().to_string();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                standing: Standing::Joining,
                generation: 0,
                released: false,
                leaving: false,
                error: None,
            }),
            changed: Condvar::new(),
            hand_off,
        });
        let consumer: BaseConsumer<Ctx> = settings
            .config_with(&[
                ("group.id", group),
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "false"),
                ("session.timeout.ms", &session),
                ("heartbeat.interval.ms", "1000"),
                ("max.poll.interval.ms", &poll_interval),
                ("partition.assignment.strategy", "roundrobin"),
            ])
            .create_with_context(Ctx(shared.clone()))
            .map_err(crate::secrets::redact)?;
        consumer.subscribe(&[topic])?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("membership".into())
                .spawn(move || {
                    // The shard topic holds no records: polling serves the group's callbacks.
                    while !stop.load(Ordering::Relaxed) {
                        let _ = consumer.poll(Duration::from_millis(200));
                    }
                    // Leaving at once hands the shards to the others without waiting for the
                    // session to expire.
                    consumer.unsubscribe();
                    let _ = consumer.poll(Duration::from_millis(100));
                    drop(consumer);
                })
                .map_err(|e| ConsumeError::Spawn("membership", e))?
        };
        Ok(Membership {
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// Where the instance stands now.
    pub fn standing(&self) -> Standing {
        self.shared.lock().standing.clone()
    }

    /// The group's last rebalance error, if the last rebalance failed.
    pub fn error(&self) -> Option<String> {
        self.shared.lock().error.clone()
    }

    /// Waits up to `timeout` for the standing to differ from `than`.
    pub fn wait_change(&self, than: &Standing, timeout: Duration) -> Standing {
        let s = self.shared.lock();
        let (s, _) = self
            .shared
            .changed
            .wait_timeout_while(s, timeout, |s| &s.standing == than)
            .unwrap_or_else(|p| p.into_inner());
        s.standing.clone()
    }

    /// The shards are no longer used and what was verified of them is committed: the group
    /// may give them to others.
    pub fn release(&self) {
        let mut s = self.shared.lock();
        s.released = true;
        self.shared.changed.notify_all();
    }

    /// Leaves the group, what was verified committed: its shards go to the others at once.
    pub fn leave(self) {
        drop(self);
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        {
            let mut s = self.shared.lock();
            s.leaving = true;
            s.released = true;
            self.shared.changed.notify_all();
        }
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The shards each member of `group` was assigned (of `topic`), by member id, as the group
/// coordinator describes it now: `None` when the group is not stable (a rebalance in progress)
/// or not found.
pub fn members(
    settings: &KafkaSettings,
    group: &str,
    topic: &str,
    timeout: Duration,
) -> Result<Option<BTreeMap<String, BTreeSet<u32>>>, ConsumeError> {
    let client: BaseConsumer = settings
        .config_with(&[])
        .create()
        .map_err(crate::secrets::redact)?;
    let list = client.fetch_group_list(Some(group), timeout)?;
    let Some(g) = list.groups().iter().find(|g| g.name() == group) else {
        return Ok(None);
    };
    if g.state() != "Stable" {
        return Ok(None);
    }
    let mut out = BTreeMap::new();
    for m in g.members() {
        let shards = m
            .assignment()
            .and_then(|a| assigned(a, topic))
            .unwrap_or_default();
        out.insert(m.id().to_string(), shards);
    }
    Ok(Some(out))
}

/// The partitions of `topic` in a consumer protocol assignment (Kafka's
/// `ConsumerProtocolAssignment`: version, then per topic its name and partitions, then user
/// data); `None` when the bytes are not one.
fn assigned(bytes: &[u8], topic: &str) -> Option<BTreeSet<u32>> {
    struct R<'a>(&'a [u8]);
    impl<'a> R<'a> {
        fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
            let (h, t) = self.0.split_at_checked(N)?;
            self.0 = t;
            h.try_into().ok()
        }
        fn i16(&mut self) -> Option<i16> {
            self.take().map(i16::from_be_bytes)
        }
        fn i32(&mut self) -> Option<i32> {
            self.take().map(i32::from_be_bytes)
        }
        fn str(&mut self) -> Option<&'a [u8]> {
            let n = usize::try_from(self.i16()?).ok()?;
            let (h, t) = self.0.split_at_checked(n)?;
            self.0 = t;
            Some(h)
        }
    }
    let mut r = R(bytes);
    r.i16()?; // version
    let mut out = BTreeSet::new();
    for _ in 0..r.i32()?.max(0) {
        let name = r.str()?;
        for _ in 0..r.i32()?.max(0) {
            let p = r.i32()?;
            if name == topic.as_bytes() {
                out.insert(u32::try_from(p).ok()?);
            }
        }
    }
    Some(out)
}

/// The shard of a table among `shards`: a hash of its name that every instance (and version)
/// computes alike — FNV-1a, its bits mixed by MurmurHash3's finalizer (FNV's low bits alone
/// follow the names' last letters: tables ending alike would share a parity, and so, under
/// round-robin assignment, an instance).
pub fn shard_of(table: &str, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in table.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h % u64::from(shards.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_names_its_topics_partitions() {
        let mut b = vec![0, 1]; // version 1
        b.extend(2i32.to_be_bytes());
        for (topic, parts) in [("other", &[7i32][..]), ("g.shards", &[0, 2, 4][..])] {
            b.extend((topic.len() as i16).to_be_bytes());
            b.extend(topic.as_bytes());
            b.extend((parts.len() as i32).to_be_bytes());
            for p in parts {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes()); // no user data
        assert_eq!(assigned(&b, "g.shards"), Some([0, 2, 4].into()));
        assert_eq!(assigned(&b, "nothing"), Some(BTreeSet::new()));
        assert_eq!(assigned(&b[..b.len() - 9], "g.shards"), None, "cut short");
    }

    #[test]
    fn a_tables_shard_is_stable_and_spread() {
        assert_eq!(shard_of("orders", 1), 0);
        // "a" hashes to 0x82a2a958a9bece5b: every instance, of any version, must place a
        // table alike.
        assert_eq!(shard_of("a", u32::MAX), 744_585_140);
        assert_eq!(shard_of("a", 7), 1);
        let a: Vec<u32> = ["customers", "orders", "order_items", "products", "payments"]
            .iter()
            .map(|t| shard_of(t, 4))
            .collect();
        assert!(a.iter().all(|s| *s < 4));
        let spread: BTreeSet<u32> = (0..64).map(|i| shard_of(&format!("t{i}"), 4)).collect();
        assert_eq!(spread.len(), 4, "64 tables over 4 shards use every shard");
        // Names ending alike do not all land on one parity (one instance of two).
        let odd = [
            "carts",
            "orders",
            "payments",
            "customers",
            "products",
            "shipments",
        ]
        .iter()
        .filter(|t| shard_of(t, 8) % 2 == 1)
        .count();
        assert!((1..6).contains(&odd), "{odd} of 6 on odd shards");
    }
}
