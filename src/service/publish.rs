//! Publishing: verdicts on the detail topic (when set) and grouped into the episodes of the
//! alert topic, undecodable records as dead letters with their coordinates. All go to the
//! outbox, which keeps them until Kafka acknowledged them.

use std::time::Duration;

use cdc_verifier_core::verdict::{Divergence, PoisonInfo};
use cdc_verifier_kafka::batches::Rec;
use cdc_verifier_kafka::outbox::{Outgoing, Output};

use super::alerts;
use super::state::{Service, wall_ms};
use crate::clients;

/// A dead letter's header with the refused record's own timestamp (ms); the dead letter itself
/// is stamped when it was dead-lettered.
const TIMESTAMP_HEADER: &str = "cdc-verifier.timestamp";

impl Service {
    pub(super) fn publish_new(&mut self) -> anyhow::Result<()> {
        let new: Vec<Divergence> = self.verifier.take_new();
        for d in &new {
            *self
                .verdict_counts
                .entry((d.kind().to_string(), d.replica.clone()))
                .or_default() += 1;
            if let Some(codec) = &self.codec {
                let (k, v) = codec.encode(d, wall_ms())?;
                self.producer.push(Outgoing {
                    output: Output::Detail,
                    topic: self.cfg.alerts.detail_topic.clone(),
                    timestamp_ms: None,
                    key: Some(k),
                    value: Some(v),
                    headers: Vec::new(),
                });
            }
            self.episode_of(d)?;
            if let Some(p) = d.poison() {
                let at = (p.topic.clone(), p.partition, p.offset);
                if !self.dead_lettered_at_feed.remove(&at) {
                    self.dead_letter_released(p);
                }
            }
        }
        Ok(())
    }

    /// Dead-letters a record fed just now, with its bytes.
    pub(super) fn dead_letter(
        &mut self,
        rec: &Rec,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        d: &Divergence,
    ) {
        let topic = &self.topic_names[rec.topic as usize];
        let error = d
            .poison()
            .map(|p| p.error.as_str())
            .unwrap_or("undecodable");
        let mut headers: Vec<(String, String)> =
            alerts::dead_letter_headers(topic, rec.partition, rec.offset, error)
                .map(|(k, v)| (k.to_owned(), v))
                .to_vec();
        headers.push((TIMESTAMP_HEADER.into(), rec.timestamp_ms.to_string()));
        self.dead_lettered_at_feed
            .insert((topic.clone(), rec.partition, rec.offset));
        self.producer.push(Outgoing {
            output: Output::DeadLetter,
            topic: self.cfg.alerts.dead_letter_topic.clone(),
            // Stamped now: stamped with the record's own time, a dead letter older than the
            // topic's retention would be deleted at the broker's next retention check.
            timestamp_ms: None,
            key: key.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
            headers,
        });
    }

    /// Dead-letters a record found undecodable when the engine released it from parking: the
    /// engine no longer holds its bytes, so they are read back from its partition (not yet
    /// committed past it); failing that, it goes by its coordinates only.
    fn dead_letter_released(&mut self, p: &PoisonInfo) {
        let kafka = clients::kafka_settings(&self.cfg);
        let found = match kafka.read_one(&p.topic, p.partition, p.offset, Duration::from_secs(10)) {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(topic = %p.topic, partition = p.partition, offset = p.offset, error = %e, "cannot read an undecodable record back: dead-lettering it by its coordinates");
                None
            }
        };
        let mut headers: Vec<(String, String)> =
            alerts::dead_letter_headers(&p.topic, p.partition, p.offset, &p.error)
                .map(|(k, v)| (k.to_owned(), v))
                .to_vec();
        match &found {
            Some(f) => {
                if let Some(t) = f.timestamp_ms {
                    headers.push((TIMESTAMP_HEADER.into(), t.to_string()));
                }
            }
            None => headers.push(("cdc-verifier.bytes".into(), "unavailable".into())),
        }
        let found = found.unwrap_or(cdc_verifier_kafka::consume::FoundRecord {
            timestamp_ms: None,
            key: None,
            value: None,
        });
        self.producer.push(Outgoing {
            output: Output::DeadLetter,
            topic: self.cfg.alerts.dead_letter_topic.clone(),
            timestamp_ms: None,
            key: found.key,
            value: found.value,
            headers,
        });
    }
}
