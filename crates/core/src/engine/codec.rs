use super::*;

pub(super) struct Compiled {
    pub(super) reg: RegisteredSchema,
    pub(super) schema: Schema,
    pub(super) layout: Result<EnvelopeLayout, String>,
    pub(super) row_fp: u64,
}

impl Compiled {
    pub(super) fn version_for(&self, subject: &str) -> Option<u32> {
        self.reg
            .subjects
            .iter()
            .find(|s| s.subject == subject)
            .map(|s| s.version)
    }
}

pub(super) struct PartCache {
    pub(super) vid: u32,
    /// The reference the plan reads rows with.
    pub(super) rid: u32,
    /// The writer's row schema differs structurally from the reference's.
    pub(super) drift: bool,
    pub(super) plan: Arc<Plan>,
    pub(super) writer: Arc<Compiled>,
    pub(super) key: KeyCache,
    /// What decoding learned of this partition's last envelopes.
    pub(super) hint: Hint,
    /// The lowest position this partition has noted for `vid` in its table's `refs`
    /// (`Position::MAX` before the first): an event at or above it has nothing to note.
    pub(super) noted: std::cell::Cell<Position>,
}

/// Decodes a value datum with a partition's cached plans, into `ev`.
#[inline]
pub(super) fn decode(
    c: &mut PartCache,
    rows: &RowHasher,
    datum: &[u8],
    scratch: &mut Scratch,
    ev: &mut Event,
) -> Result<(), DecodeError> {
    let layout = c.writer.layout.as_ref().expect("checked when cached");
    layout.decode_hinted_into(
        &c.writer.schema,
        &c.plan,
        rows,
        datum,
        scratch,
        &mut c.hint,
        ev,
    )
}

pub(super) struct KeyCache {
    pub(super) kid: u32,
    pub(super) rid: u32,
    pub(super) plan: Arc<Plan>,
    pub(super) writer: Arc<Compiled>,
    pub(super) reference: Arc<Compiled>,
}

/// The value of the first field of a canonical key if it is an int or long.
pub(super) fn leading_int(schema: &Schema, canonical: &[u8]) -> Option<i64> {
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

impl Engine {
    pub(super) fn compiled(
        &mut self,
        id: u32,
        src: &mut dyn SchemaSource,
    ) -> Result<Result<Arc<Compiled>, String>, SchemaUnavailable> {
        if let Some(c) = self.schemas.get(&id) {
            return Ok(Ok(c.clone()));
        }
        self.stats.schema_fetches += 1;
        let reg = match src.fetch(id) {
            Ok(reg) => reg,
            Err(FetchError::NotFound(_)) => {
                return Ok(Err(format!("schema id {id} is not registered")));
            }
            Err(FetchError::Unavailable(reason)) => return Err(SchemaUnavailable { id, reason }),
        };
        let schema = match Schema::parse_str(&reg.schema) {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("schema id {id} does not parse: {e}"))),
        };
        let layout =
            EnvelopeLayout::compile(&schema, &self.cfg.position).map_err(|e| e.to_string());
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

    pub(super) fn plan(
        &mut self,
        writer: &Arc<Compiled>,
        wid: u32,
        reference: &Arc<Compiled>,
        rid: u32,
        rows: bool,
    ) -> Arc<Plan> {
        let key = if rows {
            (wid, rid)
        } else {
            (wid | 0x8000_0000, rid)
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
        let p = Arc::new(Plan::compile(&writer.schema, w, &reference.schema, r));
        self.plans.insert(key, p.clone());
        p
    }

    /// Compiles (or finds) what decoding records of this value and key schema needs.
    pub(super) fn fill_cache(
        &mut self,
        rec: &Record<'_>,
        vid: u32,
        rid: u32,
        kid: u32,
        src: &mut dyn SchemaSource,
    ) -> Result<Result<PartCache, String>, SchemaUnavailable> {
        let ti = rec.topic as usize;
        let (stream, table) = (self.topics[ti].stream, self.topics[ti].table);
        let writer = match self.compiled(vid, src)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = &writer.layout {
            return Ok(Err(format!(
                "value schema id {vid} is not a Debezium envelope: {e}"
            )));
        }
        if self.cfg.check_subjects && !self.topics[ti].checked.contains(&vid) {
            let subject = &self.topics[ti].value_subject;
            if !writer.reg.subjects.is_empty()
                && !writer.reg.subjects.iter().any(|s| &s.subject == subject)
            {
                return Ok(Err(format!(
                    "value schema id {vid} is not registered under subject {subject}"
                )));
            }
            self.topics[ti].checked.push(vid);
        }
        let key_writer = match self.compiled(kid, src)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(format!("key: {e}"))),
        };
        if self.cfg.check_subjects && !self.topics[ti].checked.contains(&(kid | 0x8000_0000)) {
            let subject = &self.topics[ti].key_subject;
            if !key_writer.reg.subjects.is_empty()
                && !key_writer
                    .reg
                    .subjects
                    .iter()
                    .any(|s| &s.subject == subject)
            {
                return Ok(Err(format!(
                    "key schema id {kid} is not registered under subject {subject}"
                )));
            }
            self.topics[ti].checked.push(kid | 0x8000_0000);
        }
        if stream == PRIMARY && self.tables[table as usize].ref_key.is_none() {
            self.tables[table as usize].ref_key = Some(kid);
        }
        let key_rid = self.tables[table as usize].ref_key.unwrap_or(kid);
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
        let key_plan = self.plan(&key_writer, kid, &key_reference, key_rid, false);
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
        let plan = self.plan(&writer, vid, &reference, rid, true);
        Ok(Ok(PartCache {
            vid,
            rid,
            drift: reference.row_fp != writer.row_fp,
            plan,
            writer,
            key: KeyCache {
                kid,
                rid: key_rid,
                plan: key_plan,
                writer: key_writer,
                reference: key_reference,
            },
            hint: Hint::default(),
            noted: std::cell::Cell::new(Position::MAX),
        }))
    }
}
