//! Where schemas come from: the registry client (in the I/O crate), a directory of `.avsc`
//! files, or the schemas a capture file carries. The core only sees this trait.

use std::collections::HashMap;
use std::path::Path;

/// A schema as the registry knows it: its global id, its text, and every (subject, version)
/// it is registered under.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegisteredSchema {
    pub id: u32,
    pub schema: String,
    pub subjects: Vec<SubjectVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The source answered, and can be trusted to know: no schema has this id. Records using
    /// it are undecodable.
    #[error("schema id {0} is not registered")]
    NotFound(u32),
    /// The source could not answer now, or its answer cannot be trusted (registry down,
    /// timeout, 5xx, a 404 from something other than the registry, a registry that lost its
    /// schemas): retry later, lose nothing.
    #[error("schema source unavailable: {0}")]
    Unavailable(String),
}

pub trait SchemaSource {
    fn fetch(&mut self, id: u32) -> Result<RegisteredSchema, FetchError>;

    /// [`fetch`](Self::fetch) for a record of a topic whose schemas are registered under
    /// `subject` (TopicNameStrategy): a source that must tell an id that was never registered
    /// from a registry that lost its schemas may look for the subject.
    fn fetch_for(&mut self, id: u32, subject: &str) -> Result<RegisteredSchema, FetchError> {
        let _ = subject;
        self.fetch(id)
    }
}

impl<S: SchemaSource + ?Sized> SchemaSource for &mut S {
    fn fetch(&mut self, id: u32) -> Result<RegisteredSchema, FetchError> {
        (**self).fetch(id)
    }

    fn fetch_for(&mut self, id: u32, subject: &str) -> Result<RegisteredSchema, FetchError> {
        (**self).fetch_for(id, subject)
    }
}

/// Schemas held in memory, with ids assigned as a registry does: global, and the same
/// schema text under two subjects gets the same id.
#[derive(Debug, Default, Clone)]
pub struct MemorySource {
    by_id: HashMap<u32, RegisteredSchema>,
    by_text: HashMap<String, u32>,
    versions: HashMap<String, u32>,
    next_id: u32,
}

impl MemorySource {
    pub fn new() -> Self {
        MemorySource {
            next_id: 1,
            ..Default::default()
        }
    }

    /// Registers `schema` under `subject` and returns its id.
    pub fn register(&mut self, subject: &str, schema: &str) -> u32 {
        let id = match self.by_text.get(schema) {
            Some(id) => *id,
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.by_text.insert(schema.to_string(), id);
                self.by_id.insert(
                    id,
                    RegisteredSchema {
                        id,
                        schema: schema.to_string(),
                        subjects: Vec::new(),
                    },
                );
                id
            }
        };
        let entry = self.by_id.get_mut(&id).expect("registered above");
        if !entry.subjects.iter().any(|s| s.subject == subject) {
            let v = self.versions.entry(subject.to_string()).or_insert(0);
            *v += 1;
            entry.subjects.push(SubjectVersion {
                subject: subject.to_string(),
                version: *v,
            });
        }
        id
    }

    /// Inserts a schema with a known id (as read back from a capture file).
    pub fn insert(&mut self, schema: RegisteredSchema) {
        self.next_id = self.next_id.max(schema.id + 1);
        self.by_text.insert(schema.schema.clone(), schema.id);
        for s in &schema.subjects {
            let v = self.versions.entry(s.subject.clone()).or_insert(0);
            *v = (*v).max(s.version);
        }
        self.by_id.insert(schema.id, schema);
    }

    /// Adds one (id, subject, version) registration, as listed by a registry or a capture.
    pub fn add(&mut self, id: u32, subject: &str, version: u32, schema: &str) {
        let entry = self.by_id.entry(id).or_insert_with(|| RegisteredSchema {
            id,
            schema: schema.to_string(),
            subjects: Vec::new(),
        });
        if !entry.subjects.iter().any(|s| s.subject == subject) {
            entry.subjects.push(SubjectVersion {
                subject: subject.to_string(),
                version,
            });
        }
        self.by_text.insert(schema.to_string(), id);
        let v = self.versions.entry(subject.to_string()).or_insert(0);
        *v = (*v).max(version);
        self.next_id = self.next_id.max(id + 1);
    }

    pub fn schemas(&self) -> impl Iterator<Item = &RegisteredSchema> {
        self.by_id.values()
    }

    /// Reads a directory laid out as the registry's subjects: `<subject>/<version>.avsc`.
    /// Ids are assigned in (subject, version) order.
    pub fn from_dir(dir: &Path) -> std::io::Result<Self> {
        let mut entries = Vec::new();
        for subject in std::fs::read_dir(dir)? {
            let subject = subject?;
            if !subject.file_type()?.is_dir() {
                continue;
            }
            let name = subject.file_name().to_string_lossy().into_owned();
            for file in std::fs::read_dir(subject.path())? {
                let path = file?.path();
                let version = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.parse::<u32>().ok());
                if let (Some(v), Some("avsc")) =
                    (version, path.extension().and_then(|e| e.to_str()))
                {
                    entries.push((name.clone(), v, std::fs::read_to_string(&path)?));
                }
            }
        }
        entries.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut src = MemorySource::new();
        for (subject, _, text) in entries {
            src.register(&subject, &text);
        }
        Ok(src)
    }
}

impl SchemaSource for MemorySource {
    fn fetch(&mut self, id: u32) -> Result<RegisteredSchema, FetchError> {
        self.by_id.get(&id).cloned().ok_or(FetchError::NotFound(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_global_and_shared_by_equal_schemas() {
        let mut m = MemorySource::new();
        let a = m.register("a-value", "\"long\"");
        let b = m.register("b-value", "\"long\"");
        let c = m.register("a-value", "\"string\"");
        assert_eq!(a, b);
        assert_ne!(a, c);
        let s = m.fetch(a).unwrap();
        assert_eq!(s.subjects.len(), 2);
        assert_eq!(
            m.fetch(c).unwrap().subjects,
            vec![SubjectVersion {
                subject: "a-value".into(),
                version: 2
            }]
        );
        assert_eq!(m.fetch(99), Err(FetchError::NotFound(99)));
    }
}
