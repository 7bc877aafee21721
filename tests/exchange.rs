//! The reach topic's exchange, against the real broker: a reader that starts over (a new
//! assignment's engine) still gets what was said before it began.

mod support;

use std::time::{Duration, Instant};

use cdc_verifier_kafka::exchange::Exchange;

#[test]
fn what_was_said_before_a_reader_starts_over_is_still_there() {
    support::require_kafka();
    let topic = support::unique_name("exchange");
    support::create_topic(&topic, 1);
    support::wait_for_topic(&topic, 1);
    let settings = support::kafka_settings();
    let ex = Exchange::open(&settings, &topic, "placement").expect("the exchange opens");
    for (k, v) in [("a/primary", "1"), ("b/primary", "7"), ("a/primary", "2")] {
        ex.say(k, v.as_bytes());
    }
    ex.say("placement/1", b"kept apart");
    // The first reader drains everything heard.
    let mut heard = Vec::new();
    let since = Instant::now();
    while heard.len() < 3 && since.elapsed() < Duration::from_secs(30) {
        heard.extend(ex.heard());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(heard.len(), 3, "{heard:?}");
    assert!(ex.heard().is_empty());
    // A reader starting over gets the newest under each key, though it was heard already.
    let latest: Vec<(String, String)> = ex
        .latest()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v).unwrap()))
        .collect();
    assert_eq!(
        latest,
        [("a/primary", "2"), ("b/primary", "7")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec()
    );
    ex.say("b/primary", b"8");
    let since = Instant::now();
    let mut next = Vec::new();
    while next.is_empty() && since.elapsed() < Duration::from_secs(30) {
        next = ex.heard();
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(next, vec![("b/primary".to_string(), b"8".to_vec())]);
    support::delete_topics(&[&topic]);
}
