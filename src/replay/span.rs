//! The times of a replay: the span asked for on the command line, and the span the records
//! verified covered.

use crate::verify::Verifier;

/// Parses RFC 3339 (`2024-08-14T15:40:00Z`, fractional seconds and offsets allowed) or epoch
/// milliseconds.
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    cdc_verifier_core::time::parse_utc(s).ok_or_else(|| {
        anyhow::anyhow!("`{s}` is neither RFC 3339 (2024-08-14T15:40:00Z) nor epoch milliseconds")
    })
}

/// The record times the verifier's windows covered, first and last, as RFC 3339.
pub fn time_span(v: &Verifier) -> (Option<String>, Option<String>) {
    let tl = v.engine.timeline();
    let from = tl
        .iter()
        .filter_map(|(_, _, s)| s.first().map(|s| s.start_ms))
        .min();
    let to = tl
        .iter()
        .filter_map(|(_, _, s)| s.last().map(|s| s.end_ms))
        .max();
    (
        from.map(cdc_verifier_core::avro::json::format_millis),
        to.map(cdc_verifier_core::avro::json::format_millis),
    )
}

#[cfg(test)]
mod tests {
    use super::parse_time;

    #[test]
    fn times_parse() {
        assert_eq!(
            parse_time("2024-08-14T15:45:00Z").unwrap(),
            1_723_650_300_000
        );
        assert_eq!(
            parse_time("2024-08-14T15:45:00.250Z").unwrap(),
            1_723_650_300_250
        );
        assert_eq!(
            parse_time("2024-08-14T17:45:00+02:00").unwrap(),
            1_723_650_300_000
        );
        assert_eq!(parse_time("1723650300000").unwrap(), 1_723_650_300_000);
        assert!(parse_time("yesterday").is_err());
    }
}
