//! Publishing: verdicts as alerts, undecodable records as dead letters with their
//! coordinates.

use anyhow::Context;
use cdc_verifier_core::verdict::{Divergence, Kind};
use cdc_verifier_kafka::batches::Rec;
use cdc_verifier_kafka::produce::OutRecord;

use super::alerts;
use super::state::{Service, wall_ms};

impl Service {
    pub(super) fn publish_new(&mut self) -> anyhow::Result<()> {
        let new: Vec<Divergence> = self.verifier.drain_new().to_vec();
        for d in &new {
            if d.kind() == Kind::Recovered {
                tracing::info!(key = %d.key(), "{}", d.summary());
            } else {
                tracing::warn!(key = %d.key(), "{}", d.summary());
            }
            let (k, v) = self.codec.encode(d, wall_ms())?;
            self.producer
                .send_record(&OutRecord {
                    topic: &self.cfg.alerts.topic,
                    partition: None,
                    timestamp_ms: None,
                    key: Some(&k),
                    value: Some(&v),
                    headers: &[],
                })
                .context("cannot enqueue an alert")?;
            self.published += 1;
        }
        Ok(())
    }

    pub(super) fn dead_letter(
        &mut self,
        rec: &Rec,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        d: &Divergence,
    ) -> anyhow::Result<()> {
        let topic = &self.topic_names[rec.topic as usize];
        let error = d
            .poison()
            .map(|p| p.error.as_str())
            .unwrap_or("undecodable");
        let headers = alerts::dead_letter_headers(topic, rec.partition, rec.offset, error);
        self.producer
            .send_record(&OutRecord {
                topic: &self.cfg.alerts.dead_letter_topic,
                partition: None,
                timestamp_ms: Some(rec.timestamp_ms),
                key,
                value,
                headers: &headers,
            })
            .context("cannot enqueue an alert")?;
        self.dead_lettered += 1;
        Ok(())
    }
}
