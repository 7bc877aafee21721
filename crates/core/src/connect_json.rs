//! Kafka Connect's `JsonConverter` with `schemas.enable=true`: every key and value is
//! `{"schema": {…Connect schema…}, "payload": {…}}`. Such records are transcoded at the edge
//! into what Confluent's (or Apicurio's) `AvroConverter` would have written for the same
//! Connect data — the Avro schema its `AvroData` derives from the Connect schema, and the Avro
//! binary datum of the payload — so that the engine, its decoders and its schema checks read
//! them as they read Avro, and a row hashes the same whichever converter carried it.
//!
//! Each distinct Connect schema gets a synthetic schema id in [`FIRST_ID`]`..=`[`LAST_ID`],
//! registered under the subject the caller names (`<topic>-value`, `<topic>-key`), versions
//! 1, 2, … in the order first seen per subject. [`WithConnectJson`] answers those ids and
//! passes every other id to the real source.

use std::collections::HashMap;

use crate::source::{FetchError, RegisteredSchema, SchemaSource, SubjectVersion};

/// The first synthetic schema id. Registries number their ids from 1 up, far below; the
/// engine keeps the top bit of an id for itself, so the range ends below `0x8000_0000`.
pub const FIRST_ID: u32 = 0x7000_0000;
/// The last synthetic schema id.
pub const LAST_ID: u32 = 0x7fff_ffff;

/// Whether `id` is in the synthetic range.
pub fn is_synthetic(id: u32) -> bool {
    (FIRST_ID..=LAST_ID).contains(&id)
}

/// Whether `bytes` look like a JSON document: the first byte that is not white space is `{`.
pub fn looks_like_json(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        == Some(&b'{')
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectJsonError {
    #[error("not valid JSON: {0}")]
    Json(String),
    #[error(
        "a JSON document without `schema` and `payload` (a JsonConverter with schemas.enable=false?); \
         the verifier needs schemas.enable=true"
    )]
    NoEnvelope,
    #[error("`{0}` is missing from the JsonConverter document")]
    Missing(&'static str),
    #[error("`schema` is null: the record was written without a Connect schema")]
    NullSchema,
    #[error("Connect schema: {0}")]
    Schema(String),
    #[error("payload does not match its schema: {0}")]
    Payload(String),
    #[error("no synthetic schema id is left")]
    IdsExhausted,
}

mod base64;
mod json;
mod payload;
mod schema;
#[cfg(test)]
mod tests;

use json::{J, Parser, split_document};
use payload::encode;
use schema::{CSchema, Compiler};

/// The Avro schema text `AvroConverter` would register for a Connect schema given as
/// JsonConverter writes it (the value of `schema`).
pub fn avro_schema(connect_schema: &str) -> Result<String, ConnectJsonError> {
    compile(connect_schema.as_bytes()).map(|(_, text)| text)
}

fn compile(raw: &[u8]) -> Result<(CSchema, String), ConnectJsonError> {
    let mut p = Parser::new(raw);
    let j = p.value(0).map_err(ConnectJsonError::Json)?;
    p.end().map_err(ConnectJsonError::Json)?;
    if j == J::Null {
        return Err(ConnectJsonError::NullSchema);
    }
    let mut c = Compiler {
        names: HashMap::new(),
        unnamed: 0,
    };
    let mut text = String::new();
    let s = c
        .schema(&j, None, &mut text, 0)
        .map_err(ConnectJsonError::Schema)?;
    Ok((s, text))
}

struct Entry {
    reg: RegisteredSchema,
    schema: CSchema,
}

/// Transcodes JsonConverter documents into the Confluent wire format, and holds the
/// synthetic schemas it registered on the way.
#[derive(Default)]
pub struct ConnectJson {
    /// Index: id − [`FIRST_ID`].
    entries: Vec<Entry>,
    /// The xxh3 of a `schema` text as it came, with that text and its id.
    by_raw: HashMap<u128, (Box<[u8]>, u32)>,
    /// Avro schema text → id: different Connect texts of one schema share its id.
    by_avro: HashMap<String, u32>,
    /// The latest version per subject.
    versions: HashMap<String, u32>,
}

impl ConnectJson {
    pub fn new() -> Self {
        ConnectJson::default()
    }

    /// Transcodes the JsonConverter document `doc` of `subject` into `out` (cleared first):
    /// `0x00`, the big-endian synthetic id, the Avro datum. Returns the id.
    pub fn transcode(
        &mut self,
        doc: &[u8],
        subject: &str,
        out: &mut Vec<u8>,
    ) -> Result<u32, ConnectJsonError> {
        let (span, payload) = split_document(doc)?;
        let id = self.id_for(&doc[span], subject)?;
        out.clear();
        out.push(0);
        out.extend_from_slice(&id.to_be_bytes());
        let e = &self.entries[(id - FIRST_ID) as usize];
        encode(&e.schema, Some(&payload), out)
            .map_err(|e| ConnectJsonError::Payload(e.render()))?;
        Ok(id)
    }

    fn id_for(&mut self, raw: &[u8], subject: &str) -> Result<u32, ConnectJsonError> {
        let h = xxhash_rust::xxh3::xxh3_128(raw);
        let id = match self.by_raw.get(&h) {
            Some((text, id)) if **text == *raw => *id,
            _ => {
                let (schema, text) = compile(raw)?;
                let id = match self.by_avro.get(&text) {
                    Some(id) => *id,
                    None => {
                        let id = FIRST_ID
                            .checked_add(self.entries.len() as u32)
                            .filter(|id| *id <= LAST_ID)
                            .ok_or(ConnectJsonError::IdsExhausted)?;
                        self.by_avro.insert(text.clone(), id);
                        self.entries.push(Entry {
                            reg: RegisteredSchema {
                                id,
                                schema: text,
                                subjects: Vec::new(),
                            },
                            schema,
                        });
                        id
                    }
                };
                self.by_raw.entry(h).or_insert_with(|| (raw.into(), id));
                id
            }
        };
        let reg = &mut self.entries[(id - FIRST_ID) as usize].reg;
        if !reg.subjects.iter().any(|s| s.subject == subject) {
            let v = self.versions.entry(subject.to_string()).or_insert(0);
            *v += 1;
            reg.subjects.push(SubjectVersion {
                subject: subject.to_string(),
                version: *v,
            });
        }
        Ok(id)
    }

    /// The synthetic schema `id`, if it was registered.
    pub fn get(&self, id: u32) -> Option<&RegisteredSchema> {
        id.checked_sub(FIRST_ID)
            .and_then(|i| self.entries.get(i as usize))
            .map(|e| &e.reg)
    }

    /// Every synthetic schema registered so far.
    pub fn schemas(&self) -> impl Iterator<Item = &RegisteredSchema> {
        self.entries.iter().map(|e| &e.reg)
    }
}

/// A schema source answering the synthetic ids of `json` and passing every other id to `inner`.
pub struct WithConnectJson<'a, S: SchemaSource + ?Sized> {
    pub json: &'a ConnectJson,
    pub inner: &'a mut S,
}

impl<S: SchemaSource + ?Sized> SchemaSource for WithConnectJson<'_, S> {
    fn fetch(&mut self, id: u32) -> Result<RegisteredSchema, FetchError> {
        match self.json.get(id) {
            Some(r) => Ok(r.clone()),
            None => self.inner.fetch(id),
        }
    }
}
