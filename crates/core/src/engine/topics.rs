//! Tables and topics: registered at start, or found while running — a table whose topics
//! appear later (Debezium creates a table's topic at its first change), a partition added to
//! a topic.
//!
//! A table found while running joins at the position comparisons have reached: its events at
//! or below it fell into windows compared without it, so they are not verified, on every
//! stream alike (counted in [`TopicStats::before_table`]); its later events are compared as
//! any table's. Streams that skip the same events agree on the deltas after them.

use super::*;

impl<D: Decoder> Engine<D> {
    fn table_id(&mut self, name: &str) -> TableId {
        if let Some(i) = self.tables.iter().position(|t| t.name == name) {
            return i as TableId;
        }
        let seed = table_seed(name);
        let joined = self.compared_through();
        self.tables.push(Table {
            name: name.to_string(),
            seed,
            rows: RowHasher::new(seed),
            refs: Vec::new(),
            primary_topic: None,
            joined,
            compared_through: self.compared_through,
        });
        let id = (self.tables.len() - 1) as TableId;
        if let Drill::Ranges(sel) = &self.cfg.drill {
            for (t, r) in sel {
                if t == name {
                    self.drill.ranges.push((id, *r));
                }
            }
        }
        id
    }

    /// The highest position some stream has compared through (zero before any comparison).
    fn compared_through(&self) -> Position {
        self.streams
            .iter()
            .filter_map(|s| s.closed_pos)
            .max()
            .unwrap_or(Position::ZERO)
    }

    /// Registers a topic of a stream, carrying one table, with its partition count; at start
    /// or while running.
    pub fn add_topic(
        &mut self,
        name: &str,
        stream: StreamId,
        table: &str,
        partitions: u32,
    ) -> TopicId {
        let table_name = table;
        let table = self.table_id(table);
        let id = self.topics.len() as TopicId;
        if stream == PRIMARY {
            self.tables[table as usize].primary_topic = Some(id);
        }
        self.decoder.add_topic(id, name, table_name, partitions);
        self.topics.push(Topic {
            name: name.to_string(),
            stream,
            table,
            parts: (0..partitions).map(|_| Part::default()).collect(),
            stats: TopicStats::default(),
            last_ms: i64::MIN,
            behind_since: i64::MIN,
            behind_mark: Position::ZERO,
            silent_mark: Position::ZERO,
            silent: false,
            max_pos: Position::ZERO,
        });
        self.streams[stream as usize].topics.push(id);
        id
    }

    /// Grows a topic to `partitions` partitions (partitions are only ever added). A new
    /// partition holds its stream back until it is read or found read to its end.
    pub fn add_partitions(&mut self, topic: TopicId, partitions: u32) {
        let t = &mut self.topics[topic as usize];
        if partitions as usize <= t.parts.len() {
            return;
        }
        t.parts.resize_with(partitions as usize, Part::default);
        self.decoder.add_partitions(topic, partitions);
    }

    /// The partitions of a topic.
    pub fn partitions(&self, topic: TopicId) -> u32 {
        self.topics[topic as usize].parts.len() as u32
    }

    /// Whether an event of `table` lies where comparisons had reached when the table was
    /// found: not verified.
    #[inline(always)]
    pub(super) fn before_table(&self, table: TableId, position: Position) -> bool {
        let joined = self.tables[table as usize].joined;
        joined != Position::ZERO && position <= joined
    }
}
