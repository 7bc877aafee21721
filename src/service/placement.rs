//! Where each table is verified when instances share the tables: placed by load, once per
//! assignment of the group, by the holder of shard 0, and told to the others on the reach
//! topic. A hash of the names places tables, not traffic: with few tables, or one hot one, an
//! instance could get most of the work (docs/scaling.md).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use cdc_verifier_kafka::consume::Sizes;
use cdc_verifier_kafka::exchange::Exchange;
use cdc_verifier_kafka::membership::{self, shard_of};

use crate::clients;
use crate::config::Config;

/// The key placements are said under, per generation of the group.
pub(super) const KEY: &str = "placement/";

/// The tables' shards for one assignment of the group.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Placement {
    /// The group's generation it was placed for.
    pub generation: i32,
    /// Each member's shards in that generation, by member id.
    pub members: BTreeMap<String, BTreeSet<u32>>,
    /// Each table's shard; a table not here (found later) is placed by the hash of its name.
    pub tables: BTreeMap<String, u32>,
}

impl Placement {
    /// The shard of `table` among `total`.
    pub fn shard(&self, table: &str, total: u32) -> u32 {
        self.tables
            .get(table)
            .copied()
            .filter(|s| *s < total)
            .unwrap_or_else(|| shard_of(table, total))
    }

    /// Whether this placement was made for the assignment `member` has in `generation`, with
    /// `shards` (an earlier life of the group may have used the same generation number; never
    /// the same member id).
    fn is_for(&self, generation: i32, member: &str, shards: &BTreeSet<u32>) -> bool {
        self.generation == generation && self.members.get(member) == Some(shards)
    }
}

/// Places tables of the given loads (see [`loads`]) on `total` shards so that the members, each
/// holding the shards given, get about equal loads: the heaviest table first, on the member
/// with the least load so far, on its least loaded shard (longest processing time first; ties
/// by name and number, so that the result is the same wherever it is computed). Shards no
/// member holds are left out; with no member known, each shard counts as one.
pub(super) fn place(
    loads: &BTreeMap<String, u64>,
    members: &[BTreeSet<u32>],
    total: u32,
) -> BTreeMap<String, u32> {
    let mut members: Vec<Vec<u32>> = members
        .iter()
        .map(|m| {
            m.iter()
                .copied()
                .filter(|s| *s < total)
                .collect::<Vec<u32>>()
        })
        .filter(|m| !m.is_empty())
        .collect();
    if members.is_empty() {
        members = (0..total).map(|s| vec![s]).collect();
    }
    members.sort();
    let mut tables: Vec<(&String, u64)> = loads.iter().map(|(t, l)| (t, *l)).collect();
    tables.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let mut member_load = vec![0u64; members.len()];
    let mut shard_load: BTreeMap<u32, u64> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (table, load) in tables {
        // At least 1: tables quiet so far spread by count.
        let load = load.max(1);
        let m = (0..members.len())
            .min_by_key(|m| (member_load[*m], *m))
            .expect("a member");
        let shard = *members[m]
            .iter()
            .min_by_key(|s| (shard_load.get(s).copied().unwrap_or(0), **s))
            .expect("a shard");
        member_load[m] += load;
        *shard_load.entry(shard).or_default() += load;
        out.insert(table.clone(), shard);
    }
    out
}

/// What verifying a record costs beside its bytes, in bytes of it. Measured on the
/// simulator's tables (docs/scaling.md), a record costs about 0.3 µs plus 4.4 ns a byte of its
/// key and value (each fault-free table verified alone: 70 bytes' worth), or 0.7 µs plus
/// 6.5 ns (fitted to two instances' times: 110 bytes' worth): a record of 100 bytes costs
/// about twice what its bytes alone would say, one of 300 bytes a third more.
const RECORD_COST_BYTES: u64 = 100;

/// Records read at the end of each partition to learn the size of its records: up to 200,
/// and no more than 100,000 over all partitions (at least 10 each).
fn size_sample(partitions: usize) -> i64 {
    (100_000 / partitions.max(1)).clamp(10, 200) as i64
}

/// One partition of a verified table: topic, table, partition, low and high watermarks.
type Held = (String, String, u32, i64, i64);

/// Each table's load: the records its topics hold now, on every stream (the topics of one
/// platform share a retention, so what they hold follows their traffic), each weighed by its
/// topic's record size (sampled from the newest records) plus [`RECORD_COST_BYTES`]: the tables
/// of one platform differ several times in their records' size, and so in what a record costs.
fn loads(cfg: &Config) -> anyhow::Result<BTreeMap<String, u64>> {
    let kafka = clients::kafka_settings(cfg);
    let consumer = kafka.consumer(&cfg.kafka.group_id)?;
    let timeout = Duration::from_secs(10);
    let mut held: Vec<Held> = Vec::new();
    for (topic, partitions) in consumer.discover(timeout)? {
        let Some((_, table)) = cfg.route(&topic) else {
            continue;
        };
        for p in 0..partitions {
            let (low, high) = consumer.watermarks(&topic, p, timeout)?;
            held.push((topic.clone(), table.clone(), p, low, high));
        }
    }
    let parts: Vec<(&str, u32, i64, i64)> = held
        .iter()
        .map(|(t, _, p, low, high)| (t.as_str(), *p, *low, *high))
        .collect();
    let sizes = kafka
        .sizes_before(&parts, size_sample(parts.len()), timeout)
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the newest records' sizes: tables placed by their records alone");
            HashMap::new()
        });
    let loads = weigh(&held, &sizes);
    tracing::info!(
        "tables' loads (records held × (mean size + {RECORD_COST_BYTES} B)): {}",
        loads
            .iter()
            .map(|(t, l)| format!("{t} {:.1} MB", *l as f64 / 1e6))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(loads)
}

/// Each table's load from its partitions' records held and the sizes sampled of them: a
/// topic's records weigh the mean size sampled from it, or, with none sampled, the mean of
/// all sampled (0 with none at all: tables weigh their records alone).
fn weigh(held: &[Held], sizes: &Sizes) -> BTreeMap<String, u64> {
    let mut per_topic: HashMap<&str, (u64, u64)> = HashMap::new();
    for ((topic, _), (records, bytes)) in sizes {
        let t = per_topic.entry(topic.as_str()).or_default();
        t.0 += records;
        t.1 += bytes;
    }
    let all = per_topic
        .values()
        .fold((0u64, 0u64), |a, s| (a.0 + s.0, a.1 + s.1));
    let mean = |(records, bytes): (u64, u64)| bytes.checked_div(records);
    let overall = mean(all).unwrap_or(0);
    let mut out: BTreeMap<String, u64> = BTreeMap::new();
    for (topic, table, _, low, high) in held {
        let size = per_topic
            .get(topic.as_str())
            .copied()
            .and_then(mean)
            .unwrap_or(overall);
        let records = u64::try_from(high - low).unwrap_or(0);
        *out.entry(table.clone()).or_default() += records * (size + RECORD_COST_BYTES);
    }
    out
}

/// The placement for this instance's assignment: computed and said here when this instance
/// holds shard 0, heard otherwise. Every instance takes the first placement said for its
/// assignment (they read one partition, in one order), so they agree even if two were said.
/// `None` until it is heard (the caller waits, watching the group).
pub(super) struct Agreeing {
    generation: i32,
    member: String,
    shards: BTreeSet<u32>,
    /// What this instance says, said again until heard (a record lost on the way is not).
    saying: Option<(Vec<u8>, Option<Instant>)>,
}

impl Agreeing {
    /// Starts agreeing on the placement for `shards`, given with the group's `generation` to
    /// `member`; when this instance holds shard 0, places the tables.
    pub fn start(cfg: &Config, generation: i32, member: String, shards: BTreeSet<u32>) -> Agreeing {
        let mut a = Agreeing {
            generation,
            member,
            shards,
            saying: None,
        };
        if a.shards.contains(&0) {
            let p = a.compute(cfg);
            tracing::info!(
                generation,
                tables = p.tables.len(),
                members = p.members.len(),
                "placed the tables by load for this assignment: {}",
                describe(&p)
            );
            a.saying = serde_json::to_vec(&p).ok().map(|v| (v, None));
        }
        a
    }

    fn compute(&self, cfg: &Config) -> Placement {
        let kafka = clients::kafka_settings(cfg);
        let members = match membership::members(
            &kafka,
            &super::shards::group(cfg),
            &cfg.shard_topic(),
            Duration::from_secs(10),
        ) {
            Ok(Some(m)) => m,
            Ok(None) => {
                tracing::warn!(
                    "the group is rebalancing: tables placed by load over the shards alone"
                );
                BTreeMap::from([(self.member.clone(), self.shards.clone())])
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot describe the group: tables placed by load over the shards alone");
                BTreeMap::from([(self.member.clone(), self.shards.clone())])
            }
        };
        let tables = match loads(cfg) {
            Ok(loads) => {
                let sets: Vec<BTreeSet<u32>> = if members.len() > 1 {
                    members.values().cloned().collect()
                } else {
                    Vec::new()
                };
                place(&loads, &sets, cfg.scale.shards)
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot measure the tables' loads: tables placed by the hash of their names");
                BTreeMap::new()
            }
        };
        Placement {
            generation: self.generation,
            members,
            tables,
        }
    }

    /// The placement, once heard; says this instance's again meanwhile, every second.
    pub fn poll(&mut self, ex: &Exchange) -> Option<Placement> {
        let key = format!("{KEY}{}", self.generation);
        let heard = ex
            .kept(&key)
            .iter()
            .filter_map(|v| serde_json::from_slice::<Placement>(v).ok())
            .find(|p| p.is_for(self.generation, &self.member, &self.shards));
        if heard.is_some() {
            return heard;
        }
        if let Some((v, said)) = &mut self.saying
            && said.is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            ex.say(&key, v);
            *said = Some(Instant::now());
        }
        None
    }
}

/// A placement, for the log: each shard's tables.
fn describe(p: &Placement) -> String {
    let mut by_shard: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
    for (t, s) in &p.tables {
        by_shard.entry(*s).or_default().push(t);
    }
    by_shard
        .iter()
        .map(|(s, t)| format!("{s}: {}", t.join(" ")))
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(l: &[(&str, u64)]) -> BTreeMap<String, u64> {
        l.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn member_loads(
        placed: &BTreeMap<String, u32>,
        loads: &BTreeMap<String, u64>,
        members: &[BTreeSet<u32>],
    ) -> Vec<u64> {
        members
            .iter()
            .map(|m| {
                placed
                    .iter()
                    .filter(|(_, s)| m.contains(s))
                    .map(|(t, _)| loads[t])
                    .sum()
            })
            .collect()
    }

    #[test]
    fn tables_are_placed_so_that_members_share_the_load() {
        // The simulator's tables (records over three streams): a hash put 865k records on
        // one of two instances and 129k on the other.
        let l = loads(&[
            ("cart_items", 339_000),
            ("carts", 218_000),
            ("orders", 129_000),
            ("inventory", 110_000),
            ("payments", 98_000),
            ("customers", 80_000),
            ("products", 20_000),
        ]);
        let two: Vec<BTreeSet<u32>> = vec![[0, 2, 4, 6].into(), [1, 3, 5, 7].into()];
        let placed = place(&l, &two, 8);
        assert_eq!(placed.len(), 7);
        let per = member_loads(&placed, &l, &two);
        // Longest processing time first is within 4/3 of the best; here the busier member
        // gets 53 % (the best split is 51 %).
        let total: u64 = l.values().sum();
        let hi = *per.iter().max().unwrap();
        assert!(
            hi * 100 <= total * 53,
            "two members: {per:?} (every table placed: {placed:?})"
        );
        // Three members: the heaviest table alone is a third of the load; nothing does
        // better than it.
        let three: Vec<BTreeSet<u32>> = vec![[0, 3, 6].into(), [1, 4, 7].into(), [2, 5].into()];
        let per = member_loads(&place(&l, &three, 8), &l, &three);
        assert_eq!(per.iter().max(), Some(&339_000), "{per:?}");
        // The same wherever computed: the result depends on nothing but its inputs.
        assert_eq!(place(&l, &two, 8), placed);
        // Shards of a member are filled evenly: its two tables go on different shards.
        let one: Vec<BTreeSet<u32>> = vec![[0, 1].into()];
        let placed = place(&loads(&[("a", 5), ("b", 5)]), &one, 2);
        assert_ne!(placed["a"], placed["b"]);
    }

    #[test]
    fn a_table_of_larger_records_weighs_more_a_record() {
        let held = |topic: &str, table: &str, p: u32, records: i64| -> Held {
            (topic.into(), table.into(), p, 1_000, 1_000 + records)
        };
        let held = vec![
            held("primary.shop.cart_items", "cart_items", 0, 2_000),
            held("primary.shop.cart_items", "cart_items", 1, 1_000),
            held("primary.shop.orders", "orders", 0, 1_500),
            // Not sampled: weighs the mean of all sampled.
            held("replica-1.shop.orders", "orders", 0, 100),
            held("primary.shop.quiet", "quiet", 0, 0),
        ];
        let sizes = HashMap::from([
            (("primary.shop.cart_items".to_string(), 0), (200, 20_000)),
            (("primary.shop.cart_items".to_string(), 1), (200, 20_000)),
            (("primary.shop.orders".to_string(), 0), (200, 60_000)),
        ]);
        let l = weigh(&held, &sizes);
        // cart_items: 3,000 records of 100 B; orders: 1,500 of 300 B, and 100 of the mean,
        // (40,000 + 60,000) / 600 = 166 B.
        assert_eq!(l["cart_items"], 3_000 * (100 + RECORD_COST_BYTES));
        assert_eq!(
            l["orders"],
            1_500 * (300 + RECORD_COST_BYTES) + 100 * (166 + RECORD_COST_BYTES)
        );
        assert_eq!(l["quiet"], 0);
        // Twice the records of orders, and yet not twice its load.
        assert!(l["cart_items"] < l["orders"] * 2 * 9 / 10, "{l:?}");
        // Nothing sampled: by records alone.
        let l = weigh(&held, &HashMap::new());
        assert_eq!(l["cart_items"], 3_000 * RECORD_COST_BYTES);
        assert_eq!(l["orders"], 1_600 * RECORD_COST_BYTES);
    }

    #[test]
    fn with_no_member_known_each_shard_counts_as_one() {
        let l = loads(&[("a", 100), ("b", 60), ("c", 50), ("quiet", 0)]);
        let placed = place(&l, &[], 2);
        assert_eq!(placed["a"], 0);
        assert_eq!(placed["b"], 1);
        assert_eq!(placed["c"], 1);
        assert!(placed["quiet"] < 2);
    }

    #[test]
    fn a_placement_is_taken_only_for_its_own_assignment() {
        let p = Placement {
            generation: 7,
            members: BTreeMap::from([("m1".into(), [0, 2].into()), ("m2".into(), [1].into())]),
            tables: BTreeMap::from([("orders".into(), 1)]),
        };
        assert!(p.is_for(7, "m1", &[0, 2].into()));
        assert!(!p.is_for(8, "m1", &[0, 2].into()), "another generation");
        assert!(!p.is_for(7, "m1", &[0].into()), "other shards");
        assert!(!p.is_for(7, "m3", &[0, 2].into()), "another member");
        assert_eq!(p.shard("orders", 4), 1);
        assert_eq!(p.shard("customers", 4), shard_of("customers", 4));
        // A shard beyond the shards configured is not trusted.
        assert_eq!(p.shard("orders", 1), 0);
    }
}
