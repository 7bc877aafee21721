//! Drill-down: per-key state of the ranges chosen, to name the exact keys that differ.

use std::collections::HashMap;

use super::*;
use crate::decode::Kept;

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

/// The keys drilled into, found by (table, key) and by range.
#[derive(Default)]
pub(super) struct KeyStates {
    keys: Vec<KeyEntry>,
    index: HashMap<(TableId, Vec<u8>), usize>,
    by_range: FastMap<(TableId, u64), Vec<usize>>,
    /// With `Drill::Ranges`: the (table, range) pairs drilled into.
    pub(super) ranges: Vec<(TableId, u64)>,
}

impl KeyStates {
    /// The keys of a range met so far.
    pub(super) fn in_range(&self, table: TableId, range: u64) -> impl Iterator<Item = &KeyEntry> {
        self.by_range
            .get(&(table, range))
            .into_iter()
            .flatten()
            .map(|i| &self.keys[*i])
    }

    /// Folds the windows up to `done` into each key's settled state.
    pub(super) fn settle(&mut self, done: i64) {
        for k in &mut self.keys {
            for s in &mut k.sides {
                let settled = s
                    .windows
                    .iter()
                    .filter(|(w, .., img)| *w <= done && img.is_some())
                    .max_by_key(|(w, ..)| *w)
                    .and_then(|(.., i)| i.clone());
                if settled.is_some() {
                    s.settled = settled;
                }
                for (_, d, ..) in s.windows.iter().filter(|(w, ..)| *w <= done) {
                    s.settled_state.add(*d);
                }
                s.windows.retain(|(w, ..)| *w > done);
            }
        }
    }
}

/// One event counted in a range drilled into.
pub(super) struct Observed<'a> {
    pub(super) stream: StreamId,
    pub(super) table: TableId,
    pub(super) range: u64,
    pub(super) window: i64,
    pub(super) event: &'a Event,
    pub(super) key_schema: u32,
    /// The value schema its row was read with.
    pub(super) schema: u32,
    pub(super) kept: Kept,
}

impl<D: Decoder> Engine<D> {
    #[inline(never)]
    pub(super) fn drill_observe(&mut self, o: Observed<'_>) {
        let Observed {
            stream,
            table,
            range,
            window: w,
            event: ev,
            key_schema,
            schema,
            kept: Kept { key, row: image },
        } = o;
        let n = self.streams.len();
        let drill = &mut self.drill;
        let idx = match drill.index.get(&(table, key.clone())) {
            Some(i) => *i,
            None if drill.keys.len() >= self.cfg.limits.drill_keys => {
                // Past the bound, keys not met yet are not followed (their differences are
                // found by range, not named).
                self.stats.drill_keys_skipped += 1;
                return;
            }
            None => {
                drill.keys.push(KeyEntry {
                    key: key.clone(),
                    key_schema,
                    sides: (0..n).map(|_| KeySide::default()).collect(),
                });
                let i = drill.keys.len() - 1;
                drill.index.insert((table, key), i);
                drill.by_range.entry((table, range)).or_default().push(i);
                i
            }
        };
        let side = &mut drill.keys[idx].sides[stream as usize];
        let d = Lanes::delta(ev.before, ev.after);
        let e = Lanes::of(event_hash(ev.position.tx, ev.before, ev.after));
        let row = if ev.after.is_some() { image } else { None };
        let img = Some((ev.position, ev.op, schema, row));
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
        let mut out = Vec::new();
        for k in self.drill.in_range(table, range) {
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
                repair: None,
            });
        }
        out.sort_by_key(|a| a.key.to_string());
        out
    }

    /// A drilled key's last images on the primary and on `replica`, as of everything read
    /// (the state a repair must reach): None when the key was not drilled.
    pub fn final_images(
        &self,
        replica: &str,
        table: &str,
        key: &serde_json::Value,
    ) -> Option<(Option<RowImage>, Option<RowImage>)> {
        let r = self.stream_id(replica)?;
        let t = self.tables.iter().position(|x| x.name == table)? as TableId;
        let idx = self
            .drill
            .index
            .iter()
            .filter(|((kt, _), _)| *kt == t)
            .map(|(_, i)| *i)
            .find(|i| self.render_key(&self.drill.keys[*i]) == *key)?;
        let k = &self.drill.keys[idx];
        Some((
            self.render_side(&k.sides[PRIMARY as usize], i64::MAX),
            self.render_side(&k.sides[r as usize], i64::MAX),
        ))
    }

    /// A configuration that cannot work with the records read (see
    /// [`crate::decode::Decoder::misconfigured`]).
    pub fn misconfigured(&self) -> Option<&str> {
        self.decoder.misconfigured()
    }

    /// What column rules could not do, `<table>: …` a line each (see [`crate::rules`]).
    pub fn rule_notes(&self) -> &[String] {
        self.decoder.rule_notes()
    }

    /// The text of a value schema seen, as registered.
    pub fn schema_text(&self, schema: u32) -> Option<&str> {
        self.decoder.schema_text(schema)
    }

    pub(super) fn render_key(&self, k: &KeyEntry) -> serde_json::Value {
        self.decoder.render_key(k.key_schema, &k.key)
    }

    pub(super) fn render_side(&self, side: &KeySide, w: i64) -> Option<RowImage> {
        let (position, op, schema_id, image) = side.image_at(w)?;
        let row = match image {
            Some(bytes) => self.decoder.render_row(*schema_id, bytes),
            None => serde_json::Value::Null,
        };
        Some(RowImage {
            position: *position,
            op: *op,
            row,
            schema_id: *schema_id,
        })
    }
}
