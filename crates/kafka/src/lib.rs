//! Kafka and schema-registry I/O: consumers, producers, topic creation, the registry client
//! and the cached schema source the verification core reads through.

pub mod admin;
pub mod assign;
pub mod batches;
pub mod consume;
pub mod end_offsets;
pub mod exchange;
mod ffi;
pub mod membership;
pub mod outbox;
pub mod produce;
pub mod registry;
pub mod secrets;
pub mod source;
