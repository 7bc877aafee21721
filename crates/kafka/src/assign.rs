//! The assignment as topics come and go while the service runs: the cluster's topics listed,
//! partitions added and removed, and a partition restarted where its fetching stopped.

use std::time::Duration;

use rdkafka::consumer::Consumer as _;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::consume::{ConsumeError, Consumer};

/// The cluster's topics at one metadata answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Every non-internal topic whose partitions all have a leader, with its partition count,
    /// sorted by name.
    pub topics: Vec<(String, u32)>,
    /// Topics the answer named with an error or a partition without a leader (just created,
    /// a leader moving): neither new nor gone yet.
    pub unsettled: Vec<String>,
}

impl Listing {
    /// Whether the answer named the topic at all.
    pub fn names(&self, topic: &str) -> bool {
        self.topics.iter().any(|(t, _)| t == topic) || self.unsettled.iter().any(|t| t == topic)
    }
}

fn list<'a>(
    partitions: impl IntoIterator<Item = (&'a str, u32, Option<i64>)>,
) -> Result<TopicPartitionList, ConsumeError> {
    let mut tpl = TopicPartitionList::new();
    for (t, p, o) in partitions {
        match o {
            Some(o) => tpl.add_partition_offset(t, p as i32, Offset::Offset(o))?,
            None => {
                tpl.add_partition(t, p as i32);
            }
        }
    }
    Ok(tpl)
}

impl Consumer {
    /// The cluster's topics (a topic missing from a successful answer does not exist).
    pub fn list_topics(&self, timeout: Duration) -> Result<Listing, ConsumeError> {
        let md = self.inner.fetch_metadata(None, timeout)?;
        let mut out = Listing::default();
        for t in md.topics().iter().filter(|t| !t.name().starts_with("__")) {
            let settled = t.error().is_none()
                && !t.partitions().is_empty()
                && t.partitions()
                    .iter()
                    .all(|p| p.error().is_none() && p.leader() >= 0);
            if settled {
                out.topics
                    .push((t.name().to_string(), t.partitions().len() as u32));
            } else {
                out.unsettled.push(t.name().to_string());
            }
        }
        out.topics.sort();
        out.unsettled.sort();
        Ok(out)
    }

    /// Reads these partitions too, from these offsets (the others assigned stay as they are).
    pub fn add<'a>(
        &self,
        partitions: impl IntoIterator<Item = (&'a str, u32, i64)>,
    ) -> Result<(), ConsumeError> {
        let tpl = list(partitions.into_iter().map(|(t, p, o)| (t, p, Some(o))))?;
        if tpl.count() > 0 {
            self.inner.incremental_assign(&tpl)?;
        }
        Ok(())
    }

    /// Stops reading these partitions.
    pub fn remove<'a>(
        &self,
        partitions: impl IntoIterator<Item = (&'a str, u32)>,
    ) -> Result<(), ConsumeError> {
        let tpl = list(partitions.into_iter().map(|(t, p)| (t, p, None)))?;
        if tpl.count() > 0 {
            self.inner.incremental_unassign(&tpl)?;
        }
        Ok(())
    }

    /// Reads a partition whose fetching stopped (its offset out of range) again from
    /// `offset`: a seek cannot restart it, a new assignment does.
    pub fn restart_at(&self, topic: &str, partition: u32, offset: i64) -> Result<(), ConsumeError> {
        self.remove([(topic, partition)])?;
        self.add([(topic, partition, offset)])
    }

    /// The partitions assigned, as (topic, partition).
    pub fn assigned(&self) -> Result<Vec<(String, u32)>, ConsumeError> {
        Ok(self
            .inner
            .assignment()?
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition() as u32))
            .collect())
    }
}
