//! The Avro value of one change event: the Debezium envelope with its `source` block.

use crate::avro::{Enc, push_u64};
use crate::model::Row;

use super::stream::{Emit, Stream};
use super::{Ctx, PositionKind};

const DEBEZIUM_VERSION: &str = "3.6.1.Final";

/// `value` with the envelope `ts_ms` encoded at `at` replaced by `ts_ms`.
pub(super) fn with_envelope_ts(value: &[u8], at: usize, ts_ms: i64) -> Vec<u8> {
    let mut end = at;
    while value[end] & 0x80 != 0 {
        end += 1;
    }
    let mut v = Vec::with_capacity(value.len() + 2);
    v.extend_from_slice(&value[..at]);
    Enc::new(&mut v).long(ts_ms);
    v.extend_from_slice(&value[end + 1..]);
    v
}

/// `source.snapshot` of a snapshot read, as Debezium writes it, by the read's index in the
/// snapshot (whose rows come table by table).
const SNAPSHOT_FLAGS: [&str; 6] = [
    "false",
    "first",
    "first_in_data_collection",
    "true",
    "last_in_data_collection",
    "last",
];

/// The index into [`SNAPSHOT_FLAGS`] of the `i`th read of the snapshot `rows`.
pub(super) fn snapshot_flag(rows: &[Row], i: usize) -> u8 {
    let table = |j: usize| rows[j].table();
    if i == 0 {
        1
    } else if i + 1 == rows.len() {
        5
    } else if table(i - 1) != table(i) {
        2
    } else if table(i + 1) != table(i) {
        4
    } else {
        3
    }
}

impl Stream {
    /// Appends the wire-format value of `ev`, sent at `emit_ms`, to `value`; returns where in
    /// it the envelope's `ts_ms` is encoded.
    pub(super) fn encode_value(
        &self,
        value: &mut Vec<u8>,
        scratch: &mut Vec<u8>,
        ctx: &Ctx,
        ev: &Emit,
        emit_ms: i64,
    ) -> usize {
        let meta = ev.meta;
        let version = self.version(ev.table);
        let mut e = Enc::new(value);
        e.wire_header(self.value_ids[ev.table.index()][version as usize - 1]);
        match &ev.before {
            Some(r) => {
                e.union_index(1);
                r.encode(version, &mut e, scratch);
            }
            None => e.null(),
        }
        match &ev.after {
            Some(r) => {
                e.union_index(1);
                r.encode(version, &mut e, scratch);
            }
            None => e.null(),
        }
        // source
        e.string(DEBEZIUM_VERSION);
        e.string("mysql");
        e.string(&self.source_name);
        e.long(meta.source_ts_ms);
        e.union_index(1);
        e.string(SNAPSHOT_FLAGS[ev.snap as usize]);
        e.string("shop");
        e.union_index(1);
        e.string(ev.table.name());
        // server_id of the origin, the primary; 0 in snapshot reads, which have no origin event.
        e.long(if meta.snapshot {
            0
        } else {
            1 + meta.origin as i64
        });
        let gtid = |scratch: &mut Vec<u8>| {
            scratch.clear();
            scratch.extend_from_slice(ctx.gtid_prefixes[meta.origin as usize].as_bytes());
            push_u64(scratch, meta.gtid_seq);
        };
        match ctx.position {
            // Snapshot reads carry no gtid: they are state, not a logged transaction.
            PositionKind::Gtid if !meta.snapshot => {
                e.union_index(1);
                gtid(scratch);
                e.bytes(scratch);
            }
            _ => e.null(),
        }
        e.string(&self.binlog_file);
        e.long(ev.pos);
        e.int(if meta.snapshot { 0 } else { ev.dco as i32 - 1 });
        if meta.snapshot {
            e.null();
        } else {
            e.union_index(1);
            e.long(meta.thread);
        }
        e.null(); // query
        match ctx.position {
            PositionKind::Lsn => {
                e.union_index(1);
                e.long(meta.lsn as i64);
            }
            PositionKind::Gtid => e.null(),
        }
        e.string(ev.op.code());
        e.union_index(1);
        let ts_at = e.buf.len();
        e.long(emit_ms);
        // transaction: only with `provide.transaction.metadata`, and never for snapshot reads
        // (no transaction wrote them)
        if !ctx.transaction_metadata || (meta.snapshot && ctx.position == PositionKind::Gtid) {
            e.null();
            return ts_at;
        }
        e.union_index(1);
        match ctx.position {
            PositionKind::Gtid => gtid(scratch),
            PositionKind::Lsn => {
                scratch.clear();
                push_u64(scratch, meta.seq);
                scratch.push(b':');
                push_u64(scratch, meta.lsn);
            }
        }
        e.bytes(scratch);
        e.long(ev.total_order as i64);
        e.long(ev.dco as i64);
        ts_at
    }
}
