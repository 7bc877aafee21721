//! Counters across assignments. An instance sharing the tables starts a new pipeline, with
//! counts of its own, each time it is given other shards; what the ones before counted is
//! carried into what is rendered, so that the process's counters only grow, as Prometheus
//! expects of a counter.

use std::collections::BTreeMap;

/// Counter families whose value already spans the process.
const PROCESS_WIDE: &[&str] = &["cdc_verifier_shard_handoffs_total"];

/// What the pipelines before counted: family → (its type line's kind, series → value).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Carried(BTreeMap<String, (String, BTreeMap<String, f64>)>);

/// The family of a sample's metric name, given the kinds the text declared so far.
fn family<'a>(metric: &'a str, kinds: &BTreeMap<String, String>) -> Option<&'a str> {
    if kinds.contains_key(metric) {
        return Some(metric);
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let f = metric.strip_suffix(suffix)?;
        (kinds.get(f).map(String::as_str) == Some("histogram")).then_some(f)
    })
}

fn carried_kind(kind: &str, family: &str) -> bool {
    matches!(kind, "counter" | "histogram") && !PROCESS_WIDE.contains(&family)
}

/// A sample line's series and value.
fn sample(line: &str) -> Option<(&str, f64)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    Some((series, value.parse().ok()?))
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

impl Carried {
    /// Adds the counters of `text` (a pipeline's last rendering, before anything carried).
    pub fn take(&mut self, text: &str) {
        let mut kinds = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ")
                && let Some((name, kind)) = rest.split_once(' ')
            {
                kinds.insert(name.to_string(), kind.to_string());
                continue;
            }
            let Some((series, value)) = sample(line) else {
                continue;
            };
            let metric = series.split('{').next().unwrap_or(series);
            let Some(f) = family(metric, &kinds) else {
                continue;
            };
            let kind = &kinds[f];
            if carried_kind(kind, f) {
                let (_, series_of) = self
                    .0
                    .entry(f.to_string())
                    .or_insert_with(|| (kind.clone(), BTreeMap::new()));
                *series_of.entry(series.to_string()).or_default() += value;
            }
        }
    }

    /// `text` with the carried counts added to its counters; a series only carried goes after
    /// its family's samples, or with a family of its own at the end.
    pub fn add_to(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len() + 256);
        let mut kinds = BTreeMap::new();
        let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        // The family whose samples are being written, and the series of it written.
        let mut open: Option<&str> = None;
        let close = |open: Option<&str>, seen: &BTreeMap<&str, Vec<&str>>, out: &mut String| {
            let Some((_, series_of)) = open.and_then(|f| self.0.get(f)) else {
                return;
            };
            let written = open.and_then(|f| seen.get(f));
            for (series, v) in series_of {
                if !written.is_some_and(|w| w.contains(&series.as_str())) {
                    out.push_str(&format!("{series} {}\n", number(*v)));
                }
            }
        };
        for line in text.lines() {
            if let Some(rest) = line
                .strip_prefix("# TYPE ")
                .or_else(|| line.strip_prefix("# HELP "))
            {
                let name = rest.split(' ').next().unwrap_or("");
                if open != Some(name) {
                    close(open, &seen, &mut out);
                    open = Some(name);
                }
                if let Some(rest) = line.strip_prefix("# TYPE ")
                    && let Some((name, kind)) = rest.split_once(' ')
                {
                    kinds.insert(name.to_string(), kind.to_string());
                }
                out.push_str(line);
                out.push('\n');
                continue;
            }
            let Some((series, value)) = sample(line) else {
                out.push_str(line);
                out.push('\n');
                continue;
            };
            let metric = series.split('{').next().unwrap_or(series);
            let f = family(metric, &kinds);
            if f != open {
                close(open, &seen, &mut out);
                open = f;
            }
            let before = f
                .and_then(|f| self.0.get(f))
                .and_then(|(_, s)| s.get(series));
            match (f, before) {
                (Some(f), Some(b)) => {
                    seen.entry(f).or_default().push(series);
                    out.push_str(&format!("{series} {}\n", number(value + b)));
                }
                _ => {
                    if let Some(f) = f {
                        seen.entry(f).or_default().push(series);
                    }
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        close(open, &seen, &mut out);
        for (f, (kind, series_of)) in &self.0 {
            if kinds.contains_key(f) {
                continue;
            }
            out.push_str(&format!("# TYPE {f} {kind}\n"));
            for (series, v) in series_of {
                out.push_str(&format!("{series} {}\n", number(*v)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: &str = "\
# HELP a_total A.
# TYPE a_total counter
a_total{table=\"orders\"} 5
a_total{table=\"carts\"} 2
# TYPE g gauge
g 7
# TYPE h histogram
h_bucket{le=\"1\"} 3
h_bucket{le=\"+Inf\"} 4
h_sum 0.5
h_count 4
# TYPE cdc_verifier_shard_handoffs_total counter
cdc_verifier_shard_handoffs_total 1
# TYPE gone_total counter
gone_total 9
";

    const SECOND: &str = "\
# HELP a_total A.
# TYPE a_total counter
a_total{table=\"orders\"} 1
a_total{table=\"payments\"} 3
# TYPE g gauge
g 2
# TYPE h histogram
h_bucket{le=\"1\"} 1
h_bucket{le=\"+Inf\"} 1
h_sum 0.25
h_count 1
# TYPE cdc_verifier_shard_handoffs_total counter
cdc_verifier_shard_handoffs_total 2
";

    #[test]
    fn counters_carry_over_and_gauges_do_not() {
        let mut c = Carried::default();
        c.take(FIRST);
        assert_eq!(
            c.add_to(SECOND),
            "\
# HELP a_total A.
# TYPE a_total counter
a_total{table=\"orders\"} 6
a_total{table=\"payments\"} 3
a_total{table=\"carts\"} 2
# TYPE g gauge
g 2
# TYPE h histogram
h_bucket{le=\"1\"} 4
h_bucket{le=\"+Inf\"} 5
h_sum 0.75
h_count 5
# TYPE cdc_verifier_shard_handoffs_total counter
cdc_verifier_shard_handoffs_total 2
# TYPE gone_total counter
gone_total 9
"
        );
        // A family the next pipeline declares but has no sample of yet: the carried ones.
        assert_eq!(
            c.add_to("# HELP a_total A.\n# TYPE a_total counter\n# TYPE g gauge\ng 1\n"),
            "# HELP a_total A.\n# TYPE a_total counter\na_total{table=\"carts\"} 2\n\
             a_total{table=\"orders\"} 5\n# TYPE g gauge\ng 1\n\
             # TYPE gone_total counter\ngone_total 9\n# TYPE h histogram\n\
             h_bucket{le=\"+Inf\"} 4\nh_bucket{le=\"1\"} 3\nh_count 4\nh_sum 0.5\n"
        );
        // Nothing carried: the text as it is.
        assert_eq!(Carried::default().add_to(SECOND), SECOND);
    }
}
