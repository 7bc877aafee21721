//! Kafka and schema-registry I/O: consumers, producers, the registry client and the cached
//! schema source the verification core reads through.

pub mod consume;
pub mod produce;
pub mod registry;
pub mod source;
