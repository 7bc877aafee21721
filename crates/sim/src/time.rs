//! UTC timestamps: the core's, shared with the simulator.

pub use cdc_verifier_core::time::*;
