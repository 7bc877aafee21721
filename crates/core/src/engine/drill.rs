use super::*;

/// Per-key state for drill-down.
/// A row image as the reference schema reads it: (position, op, reference schema id,
/// canonical row bytes or None when deleted).
pub(super) type Image = (Position, Op, u32, Option<Vec<u8>>);

#[derive(Default)]
pub(super) struct KeySide {
    /// Per open window: the key's state change, its event digest, and its last image there.
    pub(super) windows: Vec<(i64, Lanes, Lanes, Option<Image>)>,
    /// The last image of windows already settled.
    pub(super) settled: Option<Image>,
    /// The key's state change over the windows already settled (a snapshot read's included).
    pub(super) settled_state: Lanes,
}

impl KeySide {
    /// The key's image as of the end of window `w`.
    pub(super) fn image_at(&self, w: i64) -> Option<&Image> {
        self.windows
            .iter()
            .filter(|(dw, _, _, img)| *dw <= w && img.is_some())
            .max_by_key(|(dw, ..)| *dw)
            .and_then(|(.., i)| i.as_ref())
            .or(self.settled.as_ref())
    }

    /// The key's state as of the end of window `w`: Σ H(after) − H(before) of its events.
    pub(super) fn state_at(&self, w: i64) -> Lanes {
        let mut state = self.settled_state;
        for (_, d, ..) in self.windows.iter().filter(|(dw, ..)| *dw <= w) {
            state.add(*d);
        }
        state
    }
}

pub(super) struct KeyEntry {
    pub(super) key: Vec<u8>,
    pub(super) key_schema: u32,
    pub(super) sides: Vec<KeySide>,
}

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn drill_observe(
        &mut self,
        stream: StreamId,
        table: TableId,
        range: u64,
        key: Vec<u8>,
        key_schema: u32,
        w: i64,
        ev: &Event,
        vid: u32,
        image: Option<Vec<u8>>,
    ) {
        let n = self.streams.len();
        let idx = match self.drill_index.get(&(table, key.clone())) {
            Some(i) => *i,
            None => {
                self.drill_keys.push(KeyEntry {
                    key: key.clone(),
                    key_schema,
                    sides: (0..n).map(|_| KeySide::default()).collect(),
                });
                let i = self.drill_keys.len() - 1;
                self.drill_index.insert((table, key), i);
                self.drill_by_range
                    .entry((table, range))
                    .or_default()
                    .push(i);
                i
            }
        };
        let side = &mut self.drill_keys[idx].sides[stream as usize];
        let d = Lanes::delta(ev.before, ev.after);
        let e = Lanes::of(crate::digest::event_hash(
            ev.position.tx,
            ev.before,
            ev.after,
        ));
        let row = if ev.after.is_some() { image } else { None };
        let img = Some((ev.position, ev.op, vid, row));
        match side.windows.iter_mut().find(|(dw, ..)| *dw == w) {
            Some((_, l, evs, last)) => {
                l.add(d);
                evs.add(e);
                if last.as_ref().is_none_or(|(p, ..)| ev.position >= *p) {
                    *last = img;
                }
            }
            None => side.windows.push((w, d, e, img)),
        }
    }

    pub(super) fn key_diffs(
        &self,
        w: i64,
        r: StreamId,
        table: TableId,
        range: u64,
    ) -> Vec<KeyDiff> {
        let Some(idxs) = self.drill_by_range.get(&(table, range)) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for i in idxs {
            let k = &self.drill_keys[*i];
            let dp = k.sides[PRIMARY as usize]
                .windows
                .iter()
                .find(|(dw, ..)| *dw == w)
                .map(|x| (x.1, x.2))
                .unwrap_or_default();
            let dr = k.sides[r as usize]
                .windows
                .iter()
                .find(|(dw, ..)| *dw == w)
                .map(|x| (x.1, x.2))
                .unwrap_or_default();
            if dp == dr {
                continue;
            }
            out.push(KeyDiff {
                key: self.render_key(k),
                primary: self.render_side(&k.sides[PRIMARY as usize], w),
                replica: self.render_side(&k.sides[r as usize], w),
            });
        }
        out.sort_by_key(|a| a.key.to_string());
        out
    }

    pub(super) fn render_key(&self, k: &KeyEntry) -> serde_json::Value {
        match self.schemas.get(&k.key_schema) {
            Some(c) => json::to_json(&c.schema, c.schema.root(), &mut Reader::new(&k.key))
                .unwrap_or(serde_json::Value::Null),
            None => serde_json::Value::Null,
        }
    }

    pub(super) fn render_side(&self, side: &KeySide, w: i64) -> Option<RowImage> {
        let (position, op, schema_id, image) = side.image_at(w)?;
        let row = match (image, self.schemas.get(schema_id)) {
            (Some(bytes), Some(c)) => match &c.layout {
                Ok(l) => json::to_json(&c.schema, l.row, &mut Reader::new(bytes))
                    .unwrap_or(serde_json::Value::Null),
                Err(_) => serde_json::Value::Null,
            },
            _ => serde_json::Value::Null,
        };
        Some(RowImage {
            position: *position,
            op: *op,
            row,
            schema_id: *schema_id,
        })
    }
}
