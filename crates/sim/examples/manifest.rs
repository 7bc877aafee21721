//! Prints the manifest of a run: `cargo run -p cdc-verifier-sim --example manifest -- faults 30000`.
use cdc_verifier_sim::{OfflineRegistry, Scenario, SimConfig, Simulation};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let scenario = args
        .get(1)
        .and_then(|s| Scenario::from_name(s))
        .unwrap_or(Scenario::Faults);
    let events = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(30_000);
    let mut sim = Simulation::new(
        SimConfig {
            scenario,
            events,
            ..SimConfig::default()
        },
        &mut OfflineRegistry::new(),
    )
    .unwrap();
    sim.by_ref().for_each(drop);
    println!("{}", serde_json::to_string_pretty(&sim.manifest()).unwrap());
}
