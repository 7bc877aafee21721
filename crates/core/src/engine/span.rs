//! The origin span of a replay (`EngineConfig::origin_span`): which events lie in it, and when
//! a partition has been read past it, so that a replay reads each topic to the end of the span
//! by commit time and position — whatever the topics' record times say.

use super::*;

impl<D: Decoder> Engine<D> {
    /// Whether an event lies outside the origin span: by its commit time on the primary; by
    /// its position on a replica (the primary's watermark has passed it, so the primary's
    /// positions around it are known).
    pub(super) fn outside_span(&mut self, stream: StreamId, ev: &Event) -> bool {
        let (from, to) = self.cfg.origin_span;
        if stream == PRIMARY {
            if to.is_some_and(|t| ev.ts_ms >= t) {
                self.span_out = Some(self.span_out.map_or(ev.position, |o| o.min(ev.position)));
                return true;
            }
            if from.is_some_and(|f| ev.ts_ms < f) {
                return true;
            }
            self.span_lo = Some(self.span_lo.map_or(ev.position, |l| l.min(ev.position)));
            return false;
        }
        let after_start = match from {
            None => true,
            Some(_) => self.span_lo.is_some_and(|lo| ev.position.tx >= lo.tx),
        };
        let before_end = self.span_out.is_none_or(|o| ev.position.tx < o.tx);
        !(after_start && before_end)
    }

    /// Notes how far a partition has been read, in position and commit time, for
    /// [`Engine::passed_span`]: every event read (a replica's parked ones too).
    #[inline]
    pub(super) fn note_reach(&mut self, rec: &Record<'_>, ev: &Event) {
        let part = &mut self.topics[rec.topic as usize].parts[rec.partition as usize];
        let (pos, ts) = part.span_reach.get_or_insert((ev.position, ev.ts_ms));
        *pos = (*pos).max(ev.position);
        *ts = (*ts).max(ev.ts_ms);
    }

    /// Whether a partition has been read past the end of the origin span, so that nothing
    /// more of it can lie in the span: it has sent an event committed `slack_ms` or more after
    /// the span's end (a partition is in its server's commit order, but an event's commit time
    /// is when its statement ran: a long transaction's events precede, in time, those of
    /// shorter ones committed before it) — and, a replica's, an event at or past the primary's
    /// first position after the span (that first position only falls as the primary is read,
    /// so an event past it now is past it for good). Always false without a span end.
    pub fn passed_span(&self, topic: TopicId, partition: u32, slack_ms: i64) -> bool {
        let Some(to) = self.cfg.origin_span.1 else {
            return false;
        };
        let t = &self.topics[topic as usize];
        let Some(part) = t.parts.get(partition as usize) else {
            return false;
        };
        let Some((pos, ts)) = part.span_reach else {
            return false;
        };
        ts >= to.saturating_add(slack_ms)
            && (t.stream == PRIMARY || self.span_out.is_some_and(|o| pos.tx >= o.tx))
    }
}
