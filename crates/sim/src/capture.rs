//! Capture files: the records of a simulation (or of a recorded Kafka stretch) with the schemas
//! they reference, replayable without Kafka or a registry.
//!
//! Layout (all integers little-endian; see `docs/capture-format.md`):
//!
//! ```text
//! header   magic "CDCVCAP\0", u32 format version (1)
//!          u32 n + n bytes   metadata (JSON object, free-form)
//!          u32 topic count;  per topic:  u16 n + name, u32 partitions
//!          u32 schema count; per schema: u32 id, u32 version, u16 n + subject, u32 n + schema JSON
//! records  u8 tag 1, u16 topic index, u32 partition, i64 offset, i64 timestamp ms,
//!          i32 key length (-1 = null), i32 value length (-1 = null), key bytes, value bytes
//! end      u8 tag 0xFF, u64 record count
//! ```
//!
//! Fixed-width record headers keep the reader a handful of loads per record; the end marker
//! tells a complete file from a truncated one.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use crate::schema::SchemaEntry;

pub const MAGIC: &[u8; 8] = b"CDCVCAP\0";
pub const FORMAT_VERSION: u32 = 1;
const TAG_RECORD: u8 = 1;
const TAG_END: u8 = 0xFF;
const RECORD_HEADER: usize = 1 + 2 + 4 + 8 + 8 + 4 + 4;

/// A topic of a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureTopic {
    pub name: String,
    pub partitions: u32,
}

/// Everything before the records.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct CaptureHeader {
    /// A JSON object describing the capture (scenario, seed, …); `{}` if nothing.
    pub metadata: String,
    pub topics: Vec<CaptureTopic>,
    pub schemas: Vec<SchemaEntry>,
}

impl CaptureHeader {
    pub fn topic_index(&self, name: &str) -> Option<u16> {
        self.topics
            .iter()
            .position(|t| t.name == name)
            .map(|i| i as u16)
    }

    pub fn schema(&self, id: u32) -> Option<&SchemaEntry> {
        self.schemas.iter().find(|s| s.id == id)
    }
}

/// A record of a capture; key and value borrow from the reader's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Index into [`CaptureHeader::topics`].
    pub topic: u16,
    pub partition: u32,
    /// The offset Kafka assigned (or would assign) the record.
    pub offset: i64,
    pub timestamp_ms: i64,
    /// None for a null key.
    pub key: Option<&'a [u8]>,
    /// None for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
}

/// Reading a capture failed.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot read capture")]
    Io(#[from] io::Error),
    #[error("not a capture file (bad magic)")]
    BadMagic,
    #[error(
        "capture format version {0} is not supported (this build reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u32),
    #[error("capture is truncated in {0}")]
    Truncated(&'static str),
    #[error("capture is corrupt: {0}")]
    Corrupt(String),
}

/// Writes a capture; records go through a large buffer.
pub struct CaptureWriter<W: Write> {
    out: BufWriter<W>,
    records: u64,
}

impl CaptureWriter<File> {
    pub fn create(path: &Path, header: &CaptureHeader) -> io::Result<Self> {
        CaptureWriter::new(File::create(path)?, header)
    }
}

impl<W: Write> CaptureWriter<W> {
    pub fn new(inner: W, header: &CaptureHeader) -> io::Result<Self> {
        let mut out = BufWriter::with_capacity(1 << 20, inner);
        out.write_all(MAGIC)?;
        out.write_all(&FORMAT_VERSION.to_le_bytes())?;
        let metadata = if header.metadata.is_empty() {
            "{}"
        } else {
            &header.metadata
        };
        write_bytes32(&mut out, metadata.as_bytes())?;
        out.write_all(&(header.topics.len() as u32).to_le_bytes())?;
        for t in &header.topics {
            write_bytes16(&mut out, t.name.as_bytes())?;
            out.write_all(&t.partitions.to_le_bytes())?;
        }
        out.write_all(&(header.schemas.len() as u32).to_le_bytes())?;
        for s in &header.schemas {
            out.write_all(&s.id.to_le_bytes())?;
            out.write_all(&s.version.to_le_bytes())?;
            write_bytes16(&mut out, s.subject.as_bytes())?;
            write_bytes32(&mut out, s.schema.as_bytes())?;
        }
        Ok(CaptureWriter { out, records: 0 })
    }

    pub fn write(&mut self, r: &RecordRef<'_>) -> io::Result<()> {
        let mut h = [0u8; RECORD_HEADER];
        h[0] = TAG_RECORD;
        h[1..3].copy_from_slice(&r.topic.to_le_bytes());
        h[3..7].copy_from_slice(&r.partition.to_le_bytes());
        h[7..15].copy_from_slice(&r.offset.to_le_bytes());
        h[15..23].copy_from_slice(&r.timestamp_ms.to_le_bytes());
        h[23..27].copy_from_slice(&len_or_null(r.key).to_le_bytes());
        h[27..31].copy_from_slice(&len_or_null(r.value).to_le_bytes());
        self.out.write_all(&h)?;
        if let Some(k) = r.key {
            self.out.write_all(k)?;
        }
        if let Some(v) = r.value {
            self.out.write_all(v)?;
        }
        self.records += 1;
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Writes the end marker and flushes; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[TAG_END])?;
        self.out.write_all(&self.records.to_le_bytes())?;
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

fn len_or_null(b: Option<&[u8]>) -> i32 {
    b.map_or(-1, |b| {
        i32::try_from(b.len()).expect("record parts are below 2 GiB")
    })
}

fn write_bytes16(out: &mut impl Write, b: &[u8]) -> io::Result<()> {
    let n = u16::try_from(b.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name longer than 65535 bytes"))?;
    out.write_all(&n.to_le_bytes())?;
    out.write_all(b)
}

fn write_bytes32(out: &mut impl Write, b: &[u8]) -> io::Result<()> {
    out.write_all(&(b.len() as u32).to_le_bytes())?;
    out.write_all(b)
}

/// Reads a capture as a stream, with a reusable buffer: memory stays bounded for captures of any
/// size and records borrow from the buffer until the next call.
pub struct CaptureReader<R: Read> {
    inner: R,
    header: CaptureHeader,
    buf: Vec<u8>,
    pos: usize,
    len: usize,
    eof: bool,
    records: u64,
    done: bool,
}

impl CaptureReader<File> {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        CaptureReader::new(File::open(path)?)
    }
}

impl<R: Read> CaptureReader<R> {
    pub fn new(inner: R) -> Result<Self, CaptureError> {
        let mut r = CaptureReader {
            inner,
            header: CaptureHeader::default(),
            buf: vec![0; 1 << 20],
            pos: 0,
            len: 0,
            eof: false,
            records: 0,
            done: false,
        };
        r.header = r.read_header()?;
        Ok(r)
    }

    pub fn header(&self) -> &CaptureHeader {
        &self.header
    }

    /// Records read so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Makes at least `n` bytes available at `pos`; false if the input ends first.
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        if self.len - self.pos >= n {
            return Ok(true);
        }
        self.buf.copy_within(self.pos..self.len, 0);
        self.len -= self.pos;
        self.pos = 0;
        if self.buf.len() < n {
            self.buf.resize(n.next_power_of_two(), 0);
        }
        while self.len < n && !self.eof {
            match self.inner.read(&mut self.buf[self.len..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.len += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.len >= n)
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&[u8], CaptureError> {
        if !self.fill(n)? {
            return Err(CaptureError::Truncated(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, CaptureError> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, CaptureError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }

    fn string(&mut self, n: usize, what: &'static str) -> Result<String, CaptureError> {
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec())
            .map_err(|_| CaptureError::Corrupt(format!("{what} is not UTF-8")))
    }

    fn read_header(&mut self) -> Result<CaptureHeader, CaptureError> {
        if !self.fill(12)? || &self.buf[..8] != MAGIC {
            return Err(CaptureError::BadMagic);
        }
        self.pos = 8;
        let version = self.u32("header")?;
        if version != FORMAT_VERSION {
            return Err(CaptureError::UnsupportedVersion(version));
        }
        let n = self.u32("metadata")? as usize;
        let metadata = self.string(n, "metadata")?;
        let topics = (0..self.u32("topics")?)
            .map(|_| {
                let n = self.u16("topic name")? as usize;
                let name = self.string(n, "topic name")?;
                Ok(CaptureTopic {
                    name,
                    partitions: self.u32("topic")?,
                })
            })
            .collect::<Result<Vec<_>, CaptureError>>()?;
        let schemas = (0..self.u32("schemas")?)
            .map(|_| {
                let id = self.u32("schema")?;
                let version = self.u32("schema")?;
                let n = self.u16("subject")? as usize;
                let subject = self.string(n, "subject")?;
                let n = self.u32("schema")? as usize;
                let schema = self.string(n, "schema")?;
                Ok(SchemaEntry {
                    id,
                    subject,
                    version,
                    schema,
                })
            })
            .collect::<Result<Vec<_>, CaptureError>>()?;
        Ok(CaptureHeader {
            metadata,
            topics,
            schemas,
        })
    }

    /// The next record, or None after the end marker.
    #[inline]
    pub fn next_record(&mut self) -> Result<Option<RecordRef<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        if !self.fill(RECORD_HEADER)? {
            // The end marker is shorter than a record header.
            return self.read_end();
        }
        let h = &self.buf[self.pos..self.pos + RECORD_HEADER];
        if h[0] != TAG_RECORD {
            return self.read_end();
        }
        let topic = u16::from_le_bytes([h[1], h[2]]);
        let partition = u32::from_le_bytes(h[3..7].try_into().unwrap());
        let offset = i64::from_le_bytes(h[7..15].try_into().unwrap());
        let timestamp_ms = i64::from_le_bytes(h[15..23].try_into().unwrap());
        let klen = i32::from_le_bytes(h[23..27].try_into().unwrap());
        let vlen = i32::from_le_bytes(h[27..31].try_into().unwrap());
        if klen < -1 || vlen < -1 {
            return Err(CaptureError::Corrupt(format!(
                "negative length in record {}",
                self.records
            )));
        }
        if topic as usize >= self.header.topics.len() {
            return Err(CaptureError::Corrupt(format!(
                "record {} names topic index {topic}",
                self.records
            )));
        }
        let (kn, vn) = (klen.max(0) as usize, vlen.max(0) as usize);
        self.pos += RECORD_HEADER;
        if !self.fill(kn + vn)? {
            return Err(CaptureError::Truncated("a record"));
        }
        let start = self.pos;
        self.pos += kn + vn;
        self.records += 1;
        let body = &self.buf[start..start + kn + vn];
        Ok(Some(RecordRef {
            topic,
            partition,
            offset,
            timestamp_ms,
            key: (klen >= 0).then(|| &body[..kn]),
            value: (vlen >= 0).then(|| &body[kn..]),
        }))
    }

    fn read_end(&mut self) -> Result<Option<RecordRef<'_>>, CaptureError> {
        let tag = self.take(1, "the end marker")?[0];
        if tag != TAG_END {
            return Err(CaptureError::Corrupt(format!(
                "unknown tag {tag:#x} after record {}",
                self.records
            )));
        }
        let count = u64::from_le_bytes(self.take(8, "the end marker")?.try_into().unwrap());
        if count != self.records {
            return Err(CaptureError::Corrupt(format!(
                "end marker counts {count} records, read {}",
                self.records
            )));
        }
        self.done = true;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> CaptureHeader {
        CaptureHeader {
            metadata: r#"{"scenario":"test"}"#.into(),
            topics: vec![
                CaptureTopic {
                    name: "primary.shop.orders".into(),
                    partitions: 8,
                },
                CaptureTopic {
                    name: "replica-1.shop.orders".into(),
                    partitions: 8,
                },
            ],
            schemas: vec![SchemaEntry {
                id: 7,
                subject: "primary.shop.orders-value".into(),
                version: 2,
                schema: "\"long\"".into(),
            }],
        }
    }

    type Rec = (u16, u32, i64, i64, Option<Vec<u8>>, Option<Vec<u8>>);

    fn records() -> Vec<Rec> {
        (0..5000)
            .map(|i| {
                let key = (i % 7 != 0).then(|| vec![i as u8; (i % 13) as usize]);
                let value = (i % 5 != 0).then(|| vec![(i * 3) as u8; (i * 37 % 3000) as usize]);
                (
                    (i % 2) as u16,
                    (i % 8) as u32,
                    i / 2,
                    1_700_000_000_000 + i,
                    key,
                    value,
                )
            })
            .collect()
    }

    fn write_all(h: &CaptureHeader) -> Vec<u8> {
        let mut w = CaptureWriter::new(Vec::new(), h).unwrap();
        for (t, p, o, ts, k, v) in records() {
            w.write(&RecordRef {
                topic: t,
                partition: p,
                offset: o,
                timestamp_ms: ts,
                key: k.as_deref(),
                value: v.as_deref(),
            })
            .unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn round_trips_through_a_small_buffer() {
        let h = header();
        let bytes = write_all(&h);
        // A reader that hands out 7 bytes at a time exercises every refill path.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = out.len().min(7).min(self.0.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut r = CaptureReader::new(Trickle(&bytes)).unwrap();
        assert_eq!(r.header(), &h);
        for (t, p, o, ts, k, v) in records() {
            let rec = r.next_record().unwrap().unwrap();
            assert_eq!(
                rec,
                RecordRef {
                    topic: t,
                    partition: p,
                    offset: o,
                    timestamp_ms: ts,
                    key: k.as_deref(),
                    value: v.as_deref()
                }
            );
        }
        assert!(r.next_record().unwrap().is_none());
        assert!(r.next_record().unwrap().is_none());
        assert_eq!(r.records(), 5000);
    }

    #[test]
    fn truncation_and_garbage_are_errors() {
        let bytes = write_all(&header());
        let cut = &bytes[..bytes.len() - 3000];
        let mut r = CaptureReader::new(cut).unwrap();
        let err = loop {
            match r.next_record() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a truncated capture read as complete"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, CaptureError::Truncated(_)), "{err}");
        assert!(matches!(
            CaptureReader::new(&b"PAR1 not a capture"[..]),
            Err(CaptureError::BadMagic)
        ));
    }
}
