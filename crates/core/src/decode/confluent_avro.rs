//! Debezium envelopes in Avro, framed in the Confluent wire format (magic byte, schema id).
//!
//! Per record: split the framing, find the partition's plans (compiled once per writer and
//! reference schema), walk the envelope hashing both row images, and read the key canonical
//! under the primary's key schema.

use std::sync::Arc;

use super::{At, Decoded, Decoder, Kept, Read, Role, SchemaUnavailable};
use crate::avro::reader::{DecodeError, Reader};
use crate::avro::resolve::{Plan, Scratch};
use crate::avro::schema::{Node, Schema};
use crate::avro::{FieldDiff, json};
use crate::digest::{RowHasher, key_hash};
use crate::engine::TopicId;
use crate::envelope::{
    DecodeWith, EnvelopeLayout, Event, Hint, LayoutError, Position, PositionField,
};
use crate::hashmap::FastMap;
use crate::origins::{Epoch, Origins, PlaceError};
use crate::rules::{ColumnRules, TableRules};
use crate::source::{FetchError, RegisteredSchema, SchemaSource};
use crate::wire::{self, WireError};

/// Why a record does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Poison {
    #[error("value: {0}")]
    ValueFraming(WireError),
    #[error("record has a value but no key")]
    NoKey,
    #[error("key: {0}")]
    KeyFraming(WireError),
    #[error("{0}")]
    ValueSchema(SchemaError),
    #[error("key: {0}")]
    KeySchema(SchemaError),
    #[error("value schema id {id} is not a Debezium envelope: {reason}")]
    NotAnEnvelope { id: u32, reason: String },
    #[error("value schema id {id} is not registered under subject {subject}")]
    ValueSubject { id: u32, subject: String },
    #[error("key schema id {id} is not registered under subject {subject}")]
    KeySubject { id: u32, subject: String },
    #[error("value: {0}")]
    Value(DecodeError),
    #[error("key: {0}")]
    Key(DecodeError),
    #[error("value: position: {0}")]
    Position(PlaceError),
}

/// Why a schema id does not give a schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    #[error("schema id {0} is not registered")]
    NotRegistered(u32),
    #[error("schema id {id} does not parse: {reason}")]
    Unparsable { id: u32, reason: String },
}

/// Key schema ids are kept beside value schema ids with this bit set.
const KEY_BIT: u32 = 0x8000_0000;

struct Compiled {
    reg: RegisteredSchema,
    schema: Schema,
    layout: Result<EnvelopeLayout, String>,
    row_fp: u64,
}

impl Compiled {
    fn version_for(&self, subject: &str) -> Option<u32> {
        self.reg
            .subjects
            .iter()
            .find(|s| s.subject == subject)
            .map(|s| s.version)
    }
}

/// The plans of the schemas last seen on a partition.
struct PartCache {
    vid: u32,
    /// The reference the plan reads rows with.
    rid: u32,
    /// The writer's row schema differs structurally from the reference's.
    drift: bool,
    plan: Arc<Plan>,
    /// The plan without column rules, for rows shown to people; compiled when first needed
    /// (`None` also when the rules change nothing).
    render: Option<Arc<Plan>>,
    writer: Arc<Compiled>,
    reference: Arc<Compiled>,
    key: KeyCache,
    /// What decoding learned of this partition's last envelopes.
    hint: Hint,
}

struct KeyCache {
    kid: u32,
    rid: u32,
    plan: Arc<Plan>,
    writer: Arc<Compiled>,
    reference: Arc<Compiled>,
}

struct Topic {
    value_subject: String,
    key_subject: String,
    /// Schema ids found registered under the topic's subjects (keys' with `KEY_BIT`).
    checked: Vec<u32>,
    /// Per partition (boxed: taken out and put back at every record).
    parts: Vec<Option<Box<PartCache>>>,
    /// The column rules of the topic's table, and their number among the decoder's (0: none).
    rules: Option<(u32, Arc<TableRules>)>,
    /// With `lsn` positions, whether a replica's change was looked at for the origin a logical
    /// subscriber's events carry.
    origin_checked: bool,
}

/// The Confluent-Avro decoder: schemas fetched once per id, plans compiled once per (writer,
/// reference) pair.
pub struct ConfluentAvro {
    position: PositionField,
    check_subjects: bool,
    leading: bool,
    schemas: FastMap<u32, Arc<Compiled>>,
    /// By (writer, reference, the rules' number).
    plans: FastMap<(u32, u32, u32), Arc<Plan>>,
    rules: ColumnRules,
    /// Each table's rules, numbered from 1 in the order tables came.
    table_rules: Vec<Arc<TableRules>>,
    rule_notes: Vec<String>,
    misconfigured: Option<String>,
    scratch: Scratch,
    key_scratch: Scratch,
    topics: Vec<Topic>,
    /// Per table: the primary's key schema id, which every stream's keys are read with.
    key_refs: Vec<Option<u32>>,
    fetches: u64,
    /// The topic and partition of the last record decoded.
    last: (TopicId, u32),
    /// The origins of GTID positions, in the order they appeared to any stream.
    origins: Origins,
}

impl ConfluentAvro {
    /// `position`: where envelopes carry their origin position; `check_subjects`: require each
    /// schema id to be registered under the subject its topic implies; `leading`: read keys'
    /// leading integers (for integer ranges).
    pub fn new(position: PositionField, check_subjects: bool, leading: bool) -> ConfluentAvro {
        ConfluentAvro {
            position,
            check_subjects,
            leading,
            schemas: FastMap::default(),
            plans: FastMap::default(),
            rules: ColumnRules::default(),
            table_rules: Vec::new(),
            rule_notes: Vec::new(),
            misconfigured: None,
            scratch: Scratch::default(),
            key_scratch: Scratch::default(),
            topics: Vec::new(),
            key_refs: Vec::new(),
            fetches: 0,
            last: (0, 0),
            origins: Origins::default(),
        }
    }

    /// With column rules (see [`crate::rules`]) applied to every table's rows.
    pub fn with_rules(mut self, rules: ColumnRules) -> ConfluentAvro {
        self.rules = rules;
        self
    }

    /// A replica's first change read with `lsn` positions: when it carries `source.origin`
    /// (Debezium's PostgreSQL connector on a logical subscriber), its LSNs are the subscriber's
    /// own and cannot be compared with the primary's. (Once per topic: the datum is rendered.)
    #[cold]
    fn check_origin(&mut self, topic: TopicId, c: &PartCache, datum: &[u8]) {
        let schema = &c.writer.schema;
        let Ok(v) = json::to_json(schema, schema.root(), &mut Reader::new(datum)) else {
            return;
        };
        let origin = &v["source"]["origin"];
        if origin.is_null() || self.misconfigured.is_some() {
            return;
        }
        self.misconfigured = Some(format!(
            "verify.position = \"lsn\", but {} comes from a logical subscription \
             (source.origin = {origin}): a subscriber's LSNs are its own, none equals the \
             primary's. Set verify.position = \"ts_us\": a subscriber's events carry the \
             primary's commit time",
            self.topics[topic as usize]
                .value_subject
                .trim_end_matches("-value")
        ));
    }

    /// The schema of `id`, fetched for a record of topic `ti` (its key's when `key`).
    fn compiled(
        &mut self,
        id: u32,
        (ti, key): (usize, bool),
        src: &mut dyn SchemaSource,
    ) -> Result<Result<Arc<Compiled>, SchemaError>, SchemaUnavailable> {
        if let Some(c) = self.schemas.get(&id) {
            return Ok(Ok(c.clone()));
        }
        self.fetches += 1;
        let topic = &self.topics[ti];
        let subject = if key {
            &topic.key_subject
        } else {
            &topic.value_subject
        };
        let reg = match src.fetch_for(id, subject) {
            Ok(reg) => reg,
            Err(FetchError::NotFound(_)) => return Ok(Err(SchemaError::NotRegistered(id))),
            Err(FetchError::Unavailable(reason)) => return Err(SchemaUnavailable { id, reason }),
        };
        let schema = match Schema::parse_str(&reg.schema) {
            Ok(s) => s,
            Err(e) => {
                return Ok(Err(SchemaError::Unparsable {
                    id,
                    reason: e.to_string(),
                }));
            }
        };
        let layout = EnvelopeLayout::compile(&schema, &self.position);
        if let (false, Err(LayoutError::NoPositionField { wanted, available })) = (key, &layout)
            && self.misconfigured.is_none()
        {
            self.misconfigured = Some(format!(
                "verify.position = \"{wanted}\", but the envelopes of {subject} (schema id {id}) \
                 have no `source.{wanted}`; their source fields are: {}. Set verify.position to \
                 the field both streams order transactions by: \"gtid\" (MySQL, MariaDB), \
                 \"lsn\" (a PostgreSQL primary and its physical standby), \"ts_us\" (a \
                 PostgreSQL logical subscriber: its commit time is the primary's)",
                available.join(", ")
            ));
        }
        let layout = layout.map_err(|e| e.to_string());
        let row_fp = layout
            .as_ref()
            .map(|l| schema.fingerprint(l.row))
            .unwrap_or(0);
        let c = Arc::new(Compiled {
            reg,
            schema,
            layout,
            row_fp,
        });
        self.schemas.insert(id, c.clone());
        Ok(Ok(c))
    }

    /// The plan reading `writer`'s rows (`rows`) or keys as `reference`'s; rows under the
    /// column rules `rules` (their number, and them).
    fn plan(
        &mut self,
        writer: &Arc<Compiled>,
        wid: u32,
        reference: &Arc<Compiled>,
        rid: u32,
        rows: bool,
        rules: Option<&(u32, Arc<TableRules>)>,
    ) -> Arc<Plan> {
        let key = if rows {
            (wid, rid, rules.map_or(0, |r| r.0))
        } else {
            (wid | KEY_BIT, rid, 0)
        };
        if let Some(p) = self.plans.get(&key) {
            return p.clone();
        }
        let (w, r) = if rows {
            let wl = writer
                .layout
                .as_ref()
                .map(|l| l.row)
                .unwrap_or(writer.schema.root());
            let rl = reference
                .layout
                .as_ref()
                .map(|l| l.row)
                .unwrap_or(reference.schema.root());
            (wl, rl)
        } else {
            (writer.schema.root(), reference.schema.root())
        };
        let (p, notes) = Plan::compile_ruled(
            &writer.schema,
            w,
            &reference.schema,
            r,
            rules.map(|r| &*r.1),
        );
        if let Some((_, t)) = rules {
            for n in notes {
                let n = format!("{}: {n}", t.table);
                if !self.rule_notes.contains(&n) {
                    self.rule_notes.push(n);
                }
            }
        }
        let p = Arc::new(p);
        self.plans.insert(key, p.clone());
        p
    }

    /// Compiles (or finds) what decoding records of this value and key schema needs.
    #[cold]
    fn fill_cache(
        &mut self,
        at: &At<'_>,
        (vid, rid, kid): (u32, u32, u32),
        src: &mut dyn SchemaSource,
    ) -> Result<Result<PartCache, Poison>, SchemaUnavailable> {
        let ti = at.topic as usize;
        let writer = match self.compiled(vid, (ti, false), src)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(Poison::ValueSchema(e))),
        };
        if let Err(e) = &writer.layout {
            return Ok(Err(Poison::NotAnEnvelope {
                id: vid,
                reason: e.clone(),
            }));
        }
        if self.check_subjects && !self.topics[ti].checked.contains(&vid) {
            let subject = &self.topics[ti].value_subject;
            if !writer.reg.subjects.is_empty()
                && !writer.reg.subjects.iter().any(|s| &s.subject == subject)
            {
                return Ok(Err(Poison::ValueSubject {
                    id: vid,
                    subject: subject.clone(),
                }));
            }
            self.topics[ti].checked.push(vid);
        }
        let key_writer = match self.compiled(kid, (ti, true), src)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(Poison::KeySchema(e))),
        };
        if self.check_subjects && !self.topics[ti].checked.contains(&(kid | KEY_BIT)) {
            let subject = &self.topics[ti].key_subject;
            if !key_writer.reg.subjects.is_empty()
                && !key_writer
                    .reg
                    .subjects
                    .iter()
                    .any(|s| &s.subject == subject)
            {
                return Ok(Err(Poison::KeySubject {
                    id: kid,
                    subject: subject.clone(),
                }));
            }
            self.topics[ti].checked.push(kid | KEY_BIT);
        }
        let table = at.table as usize;
        if self.key_refs.len() <= table {
            self.key_refs.resize(table + 1, None);
        }
        if matches!(at.role, Role::Primary) && self.key_refs[table].is_none() {
            self.key_refs[table] = Some(kid);
        }
        let key_rid = self.key_refs[table].unwrap_or(kid);
        let key_reference = self
            .schemas
            .get(&key_rid)
            .cloned()
            .unwrap_or_else(|| key_writer.clone());
        let key_rid = if Arc::ptr_eq(&key_reference, &key_writer) {
            kid
        } else {
            key_rid
        };
        let key_plan = self.plan(&key_writer, kid, &key_reference, key_rid, false, None);
        let reference = self
            .schemas
            .get(&rid)
            .cloned()
            .unwrap_or_else(|| writer.clone());
        let rid = if Arc::ptr_eq(&reference, &writer) {
            vid
        } else {
            rid
        };
        let rules = self.topics[ti].rules.clone();
        let plan = self.plan(&writer, vid, &reference, rid, true, rules.as_ref());
        let mut drift = reference.row_fp != writer.row_fp;
        if drift && let Some((_, t)) = &rules {
            // A difference in columns the rules ignore is not a drift.
            drift = match (&reference.layout, &writer.layout) {
                (Ok(rl), Ok(wl)) => {
                    Schema::field_diff(&reference.schema, rl.row, &writer.schema, wl.row)
                        .iter()
                        .any(|d| !t.ignores(d.field()))
                }
                _ => true,
            };
        }
        Ok(Ok(PartCache {
            vid,
            rid,
            drift,
            plan,
            render: None,
            writer,
            reference,
            key: KeyCache {
                kid,
                rid: key_rid,
                plan: key_plan,
                writer: key_writer,
                reference: key_reference,
            },
            hint: Hint::default(),
        }))
    }

    /// [`Decoder::decode`] with the partition's plans taken out of it.
    #[inline]
    fn decode_with(
        &mut self,
        at: &At<'_>,
        cache: &mut Option<Box<PartCache>>,
        (vid, datum): (u32, &[u8]),
        (kid, kdatum): (u32, &[u8]),
        src: &mut dyn SchemaSource,
        out: &mut Decoded,
    ) -> Result<Result<Read, Poison>, SchemaUnavailable> {
        // Writer schema and the reference it is read with: the primary's own; a replica's is
        // the primary's schema in effect at the event's position, known once the primary's
        // watermark has passed it.
        if !cache
            .as_ref()
            .is_some_and(|c| c.vid == vid && c.key.kid == kid)
        {
            let rid = match at.role {
                Role::Primary => vid,
                Role::Replica { refs, .. } => refs.last().map_or(vid, |r| r.0),
            };
            match self.fill_cache(at, (vid, rid, kid), src)? {
                Ok(c) => *cache = Some(Box::new(c)),
                Err(e) => return Ok(Err(e)),
            }
        }
        let ev = &mut out.event;
        let c = cache.as_mut().expect("filled above");
        if let Err(e) = read_value(c, at.rows, datum, &mut self.scratch, ev) {
            return Ok(Err(Poison::Value(e)));
        }
        if let Err(e) = place(&mut self.origins, at, datum, ev) {
            return Ok(Err(e));
        }
        if let Role::Replica { .. } = at.role
            && self.position == PositionField::Lsn
            && ev.op != crate::digest::Op::Read
            && !self.topics[at.topic as usize].origin_checked
        {
            self.topics[at.topic as usize].origin_checked = true;
            self.check_origin(at.topic, c, datum);
        }
        if let Role::Replica { refs, passed } = at.role {
            if ev.position > passed {
                return Ok(Ok(Read::Ahead));
            }
            let rid = reference_at(refs, ev.position).unwrap_or(vid);
            if rid != c.rid {
                // A migration lies between the cached reference and this position.
                match self.fill_cache(at, (vid, rid, kid), src)? {
                    Ok(n) => *cache = Some(Box::new(n)),
                    Err(e) => return Ok(Err(e)),
                }
                let c = cache.as_mut().expect("filled above");
                if let Err(e) = read_value(c, at.rows, datum, &mut self.scratch, ev) {
                    return Ok(Err(Poison::Value(e)));
                }
                if let Err(e) = place(&mut self.origins, at, datum, ev) {
                    return Ok(Err(e));
                }
            }
        }
        let c = cache.as_ref().expect("filled above");

        // The key, canonical under the primary's key schema, picks the range.
        let k = &c.key;
        let mut r = Reader::new(kdatum);
        let canon = match k
            .plan
            .canonical(&k.writer.schema, &mut r, &mut self.key_scratch)
        {
            Ok(canon) => canon,
            Err(e) => return Ok(Err(Poison::Key(e))),
        };
        if let Err(e) = r.finish() {
            return Ok(Err(Poison::Key(e)));
        }
        let key_bytes = canon.bytes();
        let leading = if self.leading {
            leading_int(&k.reference.schema, key_bytes)
        } else {
            None
        };
        out.key_hash = key_hash(at.seed, key_bytes);
        out.leading = leading;
        out.schema = vid;
        out.reference = c.rid;
        out.key_schema = k.rid;
        out.drift = c.drift;
        Ok(Ok(Read::Event))
    }
}

impl Decoder for ConfluentAvro {
    type Source<'s> = dyn SchemaSource + 's;
    type Poison = Poison;

    fn add_topic(&mut self, topic: TopicId, name: &str, table: &str, partitions: u32) {
        debug_assert_eq!(topic as usize, self.topics.len());
        self.topics.push(Topic {
            value_subject: format!("{name}-value"),
            key_subject: format!("{name}-key"),
            checked: Vec::new(),
            parts: (0..partitions).map(|_| None).collect(),
            rules: None,
            origin_checked: false,
        });
        if let Some(t) = self.rules.for_table(table) {
            let i = match self.table_rules.iter().position(|r| r.table == t.table) {
                Some(i) => i,
                None => {
                    self.table_rules.push(t);
                    self.table_rules.len() - 1
                }
            };
            self.topics[topic as usize].rules = Some((i as u32 + 1, self.table_rules[i].clone()));
        }
        self.origins.add_topic(partitions);
    }

    fn add_partitions(&mut self, topic: TopicId, partitions: u32) {
        let parts = &mut self.topics[topic as usize].parts;
        if parts.len() < partitions as usize {
            parts.resize_with(partitions as usize, || None);
        }
    }

    #[inline]
    fn decode(
        &mut self,
        at: &At<'_>,
        key: Option<&[u8]>,
        value: &[u8],
        src: &mut (dyn SchemaSource + '_),
        out: &mut Decoded,
    ) -> Result<Result<Read, Poison>, SchemaUnavailable> {
        let value = match wire::split(value) {
            Ok(x) => x,
            Err(e) => return Ok(Err(Poison::ValueFraming(e))),
        };
        let Some(key) = key else {
            return Ok(Err(Poison::NoKey));
        };
        let key = match wire::split(key) {
            Ok(x) => x,
            Err(e) => return Ok(Err(Poison::KeyFraming(e))),
        };
        // The partition's plans are taken out for the call, so that the hot path borrows them
        // without reference counting, and put back whatever the outcome.
        let (ti, pi) = (at.topic as usize, at.partition as usize);
        self.last = (at.topic, at.partition);
        let mut cache = self.topics[ti].parts[pi].take();
        let result = self.decode_with(at, &mut cache, value, key, src, out);
        self.topics[ti].parts[pi] = cache;
        result
    }

    /// (Drill-down only: the key is read again rather than kept at every record.)
    #[inline(never)]
    fn kept(&mut self, key: &[u8], value: &[u8], event: &Event) -> Kept {
        let (ti, pi) = (self.last.0 as usize, self.last.1 as usize);
        // Rows as written: compared under the column rules, shown without them.
        if self.topics[ti].rules.is_some()
            && let Some(mut c) = self.topics[ti].parts[pi].take()
        {
            if c.render.is_none() {
                let render = self.plan(&c.writer, c.vid, &c.reference.clone(), c.rid, true, None);
                c.render = Some(render);
            }
            self.topics[ti].parts[pi] = Some(c);
        }
        let Some(c) = self.topics[ti].parts[pi].as_deref() else {
            return Kept {
                key: Vec::new(),
                row: None,
            };
        };
        let key = wire::split(key)
            .ok()
            .and_then(|(_, kdatum)| {
                let mut r = Reader::new(kdatum);
                c.key
                    .plan
                    .canonical(&c.key.writer.schema, &mut r, &mut self.key_scratch)
                    .ok()
                    .map(|b| b.bytes().to_vec())
            })
            .unwrap_or_default();
        // The row as the reference schema reads it, so that both sides render with the same
        // columns (a column an outdated writer lacks shows its default).
        let row = match (wire::split(value), event.image) {
            (Ok((_, datum)), Some((a, b))) => {
                let mut r = Reader::new(&datum[a as usize..b as usize]);
                c.render
                    .as_deref()
                    .unwrap_or(&c.plan)
                    .canonical(&c.writer.schema, &mut r, &mut self.scratch)
                    .ok()
                    .map(|b| b.bytes().to_vec())
            }
            _ => None,
        };
        Kept { key, row }
    }

    fn fetches(&self) -> u64 {
        self.fetches
    }

    fn render_key(&self, key_schema: u32, key: &[u8]) -> serde_json::Value {
        match self.schemas.get(&key_schema) {
            Some(c) => json::to_json(&c.schema, c.schema.root(), &mut Reader::new(key))
                .unwrap_or(serde_json::Value::Null),
            None => serde_json::Value::Null,
        }
    }

    fn render_row(&self, schema: u32, row: &[u8]) -> serde_json::Value {
        match self.schemas.get(&schema).map(|c| (c, &c.layout)) {
            Some((c, Ok(l))) => json::to_json(&c.schema, l.row, &mut Reader::new(row))
                .unwrap_or(serde_json::Value::Null),
            _ => serde_json::Value::Null,
        }
    }

    fn schema_text(&self, schema: u32) -> Option<&str> {
        self.schemas.get(&schema).map(|c| c.reg.schema.as_str())
    }

    fn rule_notes(&self) -> &[String] {
        &self.rule_notes
    }

    fn misconfigured(&self) -> Option<&str> {
        self.misconfigured.as_deref()
    }

    fn field_diff(&self, expected: u32, actual: u32) -> Vec<FieldDiff> {
        match (self.schemas.get(&expected), self.schemas.get(&actual)) {
            (Some(e), Some(a)) => match (&e.layout, &a.layout) {
                (Ok(el), Ok(al)) => Schema::field_diff(&e.schema, el.row, &a.schema, al.row),
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn subject(&self, topic: TopicId) -> &str {
        &self.topics[topic as usize].value_subject
    }

    fn version(&self, schema: u32, subject: &str) -> Option<u32> {
        self.schemas.get(&schema)?.version_for(subject)
    }

    fn written_with(&self, topic: TopicId) -> impl Iterator<Item = u32> + '_ {
        self.topics[topic as usize]
            .checked
            .iter()
            .copied()
            .filter(|id| id & KEY_BIT == 0)
    }

    fn origins(&self) -> &Origins {
        &self.origins
    }

    fn restore_origins(&mut self, epochs: &[Epoch]) {
        self.origins.restore(epochs);
    }
}

/// Decodes a value datum with a partition's cached plans, into `ev`.
#[inline]
fn read_value(
    c: &mut PartCache,
    rows: &RowHasher,
    datum: &[u8],
    scratch: &mut Scratch,
    ev: &mut Event,
) -> Result<(), DecodeError> {
    let layout = c.writer.layout.as_ref().expect("checked when cached");
    let with = DecodeWith {
        schema: &c.writer.schema,
        plan: &c.plan,
        rows,
    };
    layout.decode_with(with, datum, scratch, &mut c.hint, ev)
}

/// An event's position among the engine's origins (see [`crate::origins`]): a GTID's
/// sequence becomes its place in the order of origins.
#[inline(always)]
fn place(origins: &mut Origins, at: &At<'_>, datum: &[u8], ev: &mut Event) -> Result<(), Poison> {
    if let Some((a, b)) = ev.origin {
        ev.position.tx = origins
            .place_gtid(
                &datum[a as usize..b as usize],
                ev.position.tx,
                at.topic as usize,
                at.partition as usize,
            )
            .map_err(Poison::Position)?;
    }
    Ok(())
}

/// The schema the primary wrote its table with at `p`: the last one seen at or before it, else
/// the first one seen.
fn reference_at(refs: &[(u32, Position)], p: Position) -> Option<u32> {
    refs.iter()
        .filter(|(_, from)| *from <= p)
        .max_by_key(|(_, from)| *from)
        .or_else(|| refs.iter().min_by_key(|(_, f)| *f))
        .map(|(id, _)| *id)
}

/// The value of the first field of a canonical key if it is an int or long.
fn leading_int(schema: &Schema, canonical: &[u8]) -> Option<i64> {
    let root = schema.root();
    let first = match schema.node(root) {
        Node::Record { fields, .. } => fields.first()?.node,
        _ => root,
    };
    match schema.node(first) {
        Node::Int(_) | Node::Long(_) => Reader::new(canonical).read_long().ok(),
        _ => None,
    }
}
