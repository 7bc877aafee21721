//! Avro as the verifier reads it: schemas, a bounds-checked binary reader, canonical
//! re-encoding under schema resolution, and JSON rendering for reports.

pub mod json;
pub mod reader;
pub mod resolve;
pub mod schema;

pub use reader::{DecodeError, DecodeErrorKind, Reader};
pub use resolve::{Canon, Plan, Scratch};
pub use schema::{FieldDiff, Logical, Node, NodeId, Schema, SchemaError};
