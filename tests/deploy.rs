//! The files in deploy/: the Prometheus alerting rules, checked and unit-tested with promtool,
//! and the Grafana dashboard. Both may name only the metrics, and match and group only by the
//! labels, that src/service/metrics.rs exports, so that neither drifts from the code.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

const RULES: &str = "deploy/prometheus/cdc-verifier-rules.yml";
const RULES_TEST: &str = "deploy/prometheus/cdc-verifier-rules.test.yml";
const DASHBOARD: &str = "deploy/grafana/cdc-verifier.json";
const METRICS: &str = "src/service/metrics.rs";
/// Labels Prometheus adds to every series it scrapes.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// promtool, which Debian's `prometheus` package installs (`scripts/install-test-deps`, run
/// by `scripts/test`).
fn promtool() -> PathBuf {
    let path = PathBuf::from("/usr/bin/promtool");
    if path.is_file() {
        return path;
    }
    let on_path = Command::new("promtool").arg("--version").output();
    match on_path {
        Ok(out) if out.status.success() => PathBuf::from("promtool"),
        _ => panic!(
            "promtool is missing (neither /usr/bin/promtool nor on PATH): install Debian's \
             prometheus package, e.g. with scripts/install-test-deps (scripts/test runs it)"
        ),
    }
}

fn run_promtool(args: &[&str], dir: &Path) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool {} failed:\n{text}",
        args.join(" ")
    );
    eprintln!("promtool {}:\n{text}", args.join(" "));
}

fn is_word(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Each metric name starting `cdc_verifier_` in `text`, with what follows it (a name may
/// follow a `\n` escape).
fn names(text: &str) -> Vec<(&str, &str)> {
    text.match_indices("cdc_verifier_")
        .filter(|(i, _)| {
            let before = &text[..*i];
            before.ends_with("\\n") || !before.chars().next_back().is_some_and(is_word)
        })
        .map(|(i, _)| {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        })
        .collect()
}

/// The label names of a list of matchers or of `label="value"` pairs: `a="x",b=~"y"`.
fn label_names(list: &str) -> BTreeSet<String> {
    list.split(',')
        .map(|m| {
            m.trim()
                .chars()
                .take_while(|c| is_word(*c))
                .collect::<String>()
        })
        .filter(|l| !l.is_empty())
        .collect()
}

/// Metric name → label names, as src/service/metrics.rs writes them (`name{{a=\"{a}\"}}`).
fn exported() -> BTreeMap<String, BTreeSet<String>> {
    let source = read(METRICS);
    let mut metrics: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, rest) in names(&source) {
        let labels = metrics.entry(name.to_string()).or_default();
        if let Some(list) = rest.strip_prefix("{{") {
            let list = &list[..list.find("}}").expect("labels end with }}")];
            labels.extend(label_names(list));
        }
    }
    assert!(
        metrics.len() > 30 && metrics.contains_key("cdc_verifier_divergences_total"),
        "too few metrics found in {METRICS}: {metrics:?}"
    );
    metrics
}

/// Checks that a PromQL expression names only exported metrics, matches them only on their
/// labels, and groups or matches vectors only on labels one of its metrics has.
fn check_expr(expr: &str, exported: &BTreeMap<String, BTreeSet<String>>, what: &str) {
    let mut labels: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
    for (name, rest) in names(expr) {
        let Some(has) = exported.get(name) else {
            panic!("{what}: metric {name} is not exported by {METRICS}: {expr}");
        };
        labels.extend(has.iter().cloned());
        if let Some(list) = rest.strip_prefix('{') {
            let list = &list[..list.find('}').expect("matchers end with }")];
            for label in label_names(list) {
                assert!(
                    has.contains(&label) || TARGET_LABELS.contains(&label.as_str()),
                    "{what}: {name} has no label {label:?} (it has {has:?}): {expr}"
                );
            }
        }
    }
    for keyword in [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ] {
        for (i, _) in expr.match_indices(keyword) {
            let before = expr[..i].chars().next_back();
            let after = expr[i + keyword.len()..].trim_start();
            if before.is_some_and(is_word) || !after.starts_with('(') {
                continue;
            }
            let list = &after[1..after.find(')').expect("label list ends with )")];
            for label in label_names(list) {
                assert!(
                    labels.contains(&label),
                    "{what}: `{keyword}` names label {label:?}, which none of its metrics has: {expr}"
                );
            }
        }
    }
}

#[test]
fn promtool_accepts_the_alerting_rules() {
    run_promtool(&["check", "rules", RULES], root());
}

#[test]
fn the_alerting_rules_pass_their_unit_tests() {
    let tests = read(RULES_TEST);
    for alert in [
        "CdcVerifierDown",
        "CdcVerifierDataMismatch",
        "CdcVerifierReplicaLagging",
        "CdcVerifierDegraded",
    ] {
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "{RULES_TEST} does not test {alert}"
        );
    }
    let dir = root().join(RULES_TEST);
    let dir = dir.parent().unwrap();
    let file = Path::new(RULES_TEST).file_name().unwrap().to_str().unwrap();
    run_promtool(&["test", "rules", file], dir);
}

#[test]
fn the_alerting_rules_name_only_exported_metrics_and_say_what_to_do() {
    let exported = exported();
    let text = read(RULES);
    for (name, _) in names(&text) {
        assert!(
            exported.contains_key(name),
            "{RULES} names {name}, which {METRICS} does not export"
        );
    }
    let rules: serde_yaml::Value = serde_yaml::from_str(&text).expect("rules are YAML");
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let alert = rule["alert"].as_str().expect("every rule is an alert");
            assert!(alerts.insert(alert.to_string()), "{alert} twice");
            let expr = rule["expr"].as_str().expect("expr");
            check_expr(expr, &exported, alert);
            let severity = rule["labels"]["severity"].as_str();
            assert!(
                matches!(severity, Some("critical" | "warning")),
                "{alert}: severity {severity:?}"
            );
            for annotation in ["summary", "description"] {
                let text = rule["annotations"][annotation].as_str().unwrap_or("");
                assert!(
                    text.len() > 20,
                    "{alert}: annotation {annotation} missing or too short"
                );
            }
        }
    }
    for alert in [
        "CdcVerifierDown",
        "CdcVerifierDataMismatch",
        "CdcVerifierSchemaDrift",
        "CdcVerifierReplicaLagging",
        "CdcVerifierStreamSilent",
        "CdcVerifierDegraded",
        "CdcVerifierOutputNotDelivered",
        "CdcVerifierRegistryUnavailable",
        "CdcVerifierRecordsDeadLettered",
        "CdcVerifierRecordsUnverified",
        "CdcVerifierConsumerLagGrowing",
        "CdcVerifierCommitFailing",
    ] {
        assert!(alerts.contains(alert), "{RULES} has no alert {alert}");
    }
}

#[test]
fn every_dashboard_panel_queries_exported_metrics_through_the_datasource_variable() {
    let exported = exported();
    let text = read(DASHBOARD);
    for (name, _) in names(&text) {
        assert!(
            exported.contains_key(name),
            "{DASHBOARD} names {name}, which {METRICS} does not export"
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    assert!(
        dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let variable = |name: &str| {
        variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no template variable {name}"))
    };
    assert_eq!(variable("DS_PROMETHEUS")["type"], "datasource");
    assert_eq!(variable("DS_PROMETHEUS")["query"], "prometheus");
    for name in ["instance", "replica"] {
        let v = variable(name);
        assert_eq!(v["type"], "query", "{name}");
        assert_eq!(v["datasource"]["uid"], "${DS_PROMETHEUS}", "{name}");
        check_expr(
            v["definition"].as_str().expect("definition"),
            &exported,
            name,
        );
    }

    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    for panel in panels {
        let title = panel["title"].as_str().unwrap_or("");
        assert!(!title.is_empty(), "a panel has no title: {panel}");
        assert!(ids.insert(panel["id"].as_u64().expect("id")), "{title}: id");
        assert!(panel["gridPos"].is_object(), "{title}: gridPos");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{title}: datasource"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no targets");
        for target in targets {
            if !target["datasource"].is_null() {
                assert_eq!(target["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
            }
            let expr = target["expr"].as_str().unwrap_or("");
            assert!(!expr.is_empty(), "{title}: a target has no expr");
            check_expr(expr, &exported, title);
            queries += 1;
        }
    }
    assert!(queries > 20, "{queries} queries");
}

#[test]
fn the_checks_catch_an_unknown_metric_or_label() {
    let exported = exported();
    for expr in [
        "rate(cdc_verifier_no_such_total[5m])",
        "cdc_verifier_replica_lag_seconds{table=\"orders\"}",
        "sum by (table) (cdc_verifier_divergences_total)",
    ] {
        let caught = std::panic::catch_unwind(|| check_expr(expr, &exported, "test"));
        assert!(caught.is_err(), "not caught: {expr}");
    }
    check_expr(
        "sum by (replica, kind) (increase(cdc_verifier_divergences_total{kind=\"DataMismatch\",instance=~\"$instance\"}[5m]))",
        &exported,
        "test",
    );
}
