//! Checks the wiring of docker-compose.yml and the Dockerfile against the
//! embedded defaults in config/default.toml, without Docker: the verifier's
//! addresses name the right services and ports, the host-published ports are
//! the defaults, and the image builds the `cdc-verifier` binary.
//!
//! The checker returns a list of problems; the `mutated_*` tests feed it broken
//! variants to show that each check can fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml::Value as Yaml;

const BOOTSTRAP_ENV: &str = "CDC_VERIFIER__KAFKA__BOOTSTRAP_SERVERS";
const REGISTRY_ENV: &str = "CDC_VERIFIER__REGISTRY__URL";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn compose_text() -> String {
    read(&root().join("docker-compose.yml"))
}

fn defaults() -> Defaults {
    let t: toml::Value = toml::from_str(&read(&root().join("config/default.toml"))).unwrap();
    Defaults {
        bootstrap: t["kafka"]["bootstrap-servers"].as_str().unwrap().to_owned(),
        registry_url: t["registry"]["url"].as_str().unwrap().to_owned(),
    }
}

struct Defaults {
    bootstrap: String,
    registry_url: String,
}

/// host, port, path of `scheme://host:port/path` (port defaulted from the scheme).
fn parse_url(url: &str) -> Option<(String, u16, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/').to_owned()),
        None => (rest, String::new()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_owned(), p.parse().ok()?),
        None => (
            authority.to_owned(),
            if scheme == "https" { 443 } else { 80 },
        ),
    };
    Some((host, port, path))
}

fn parse_host_port(s: &str) -> Option<(String, u16)> {
    let (h, p) = s.trim().rsplit_once(':')?;
    Some((h.to_owned(), p.parse().ok()?))
}

/// A service's environment, from either the map or the list form.
fn env(service: &Yaml) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match service.get("environment") {
        Some(Yaml::Mapping(m)) => {
            for (k, v) in m {
                let v = match v {
                    Yaml::String(s) => s.clone(),
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Bool(b) => b.to_string(),
                    _ => String::new(),
                };
                out.insert(k.as_str().unwrap_or_default().to_owned(), v);
            }
        }
        Some(Yaml::Sequence(items)) => {
            for item in items {
                if let Some((k, v)) = item.as_str().and_then(|s| s.split_once('=')) {
                    out.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        _ => {}
    }
    out
}

/// (published host port, container port) pairs, short and long syntax.
fn published_ports(service: &Yaml) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    for p in service
        .get("ports")
        .and_then(Yaml::as_sequence)
        .into_iter()
        .flatten()
    {
        match p {
            Yaml::String(s) => {
                let s = s.split('/').next().unwrap();
                let parts: Vec<&str> = s.split(':').collect();
                let (host, container) = match parts.as_slice() {
                    [c] => (*c, *c),
                    [h, c] => (*h, *c),
                    [_ip, h, c] => (*h, *c),
                    _ => continue,
                };
                if let (Ok(h), Ok(c)) = (host.parse(), container.parse()) {
                    out.push((h, c));
                }
            }
            Yaml::Number(n) => {
                if let Some(n) = n.as_u64() {
                    out.push((n as u16, n as u16));
                }
            }
            Yaml::Mapping(_) => {
                let num = |k: &str| match p.get(k) {
                    Some(Yaml::Number(n)) => n.as_u64().map(|n| n as u16),
                    Some(Yaml::String(s)) => s.parse().ok(),
                    _ => None,
                };
                if let (Some(h), Some(c)) = (num("published"), num("target")) {
                    out.push((h, c));
                }
            }
            _ => {}
        }
    }
    out
}

/// `NAME://host:port,...` -> name -> (host, port)
fn listeners(spec: &str) -> BTreeMap<String, (String, u16)> {
    spec.split(',')
        .filter_map(|l| {
            let (name, addr) = l.trim().split_once("://")?;
            let (h, p) = parse_host_port(addr)?;
            Some((name.to_owned(), (h, p)))
        })
        .collect()
}

/// The names a service is reachable by inside the compose network.
fn service_names(services: &serde_yaml::Mapping, name: &str) -> Vec<String> {
    let mut names = vec![name.to_owned()];
    if let Some(h) = services
        .get(name)
        .and_then(|s| s.get("hostname"))
        .and_then(Yaml::as_str)
    {
        names.push(h.to_owned());
    }
    names
}

fn find_service_by_host(services: &serde_yaml::Mapping, host: &str) -> Option<String> {
    services.keys().filter_map(Yaml::as_str).find_map(|name| {
        service_names(services, name)
            .iter()
            .any(|n| n == host)
            .then(|| name.to_owned())
    })
}

/// Every wiring problem found; empty when all is well.
fn check(compose: &str, defaults: &Defaults, dockerfile: Option<&str>) -> Vec<String> {
    let mut errs = Vec::new();
    let doc: Yaml = match serde_yaml::from_str(compose) {
        Ok(d) => d,
        Err(e) => return vec![format!("docker-compose.yml does not parse: {e}")],
    };
    let Some(services) = doc.get("services").and_then(Yaml::as_mapping) else {
        return vec!["no services".into()];
    };
    let Some(verifier) = services.get("verifier") else {
        return vec!["no verifier service".into()];
    };
    let venv = env(verifier);

    // --- Kafka -----------------------------------------------------------
    let default_kafka = parse_host_port(&defaults.bootstrap);
    match venv.get(BOOTSTRAP_ENV).map(|s| parse_host_port(s)) {
        None => errs.push(format!("verifier does not set {BOOTSTRAP_ENV}")),
        Some(None) => errs.push(format!("{BOOTSTRAP_ENV} is not host:port")),
        Some(Some((host, port))) => match find_service_by_host(services, &host) {
            None => errs.push(format!("{BOOTSTRAP_ENV} names {host}, which is no service")),
            Some(kname) => {
                let kafka = &services[kname.as_str()];
                let kenv = env(kafka);
                let advertised =
                    listeners(kenv.get("KAFKA_ADVERTISED_LISTENERS").map_or("", |s| s));
                let bound = listeners(kenv.get("KAFKA_LISTENERS").map_or("", |s| s));
                let names = service_names(services, &kname);
                match advertised.iter().find(|(_, (h, p))| names.contains(h) && *p == port) {
                    None => errs.push(format!(
                        "{kname} advertises no listener at {host}:{port} (advertised: {advertised:?})"
                    )),
                    Some((lname, _)) => match bound.get(lname) {
                        Some((_, p)) if *p == port => {}
                        other => errs.push(format!(
                            "listener {lname} is advertised at port {port} but bound at {other:?}"
                        )),
                    },
                }
                if !verifier_depends_on(verifier, &kname) {
                    errs.push(format!("verifier does not wait for a healthy {kname}"));
                }
                if kafka.get("healthcheck").is_none() {
                    errs.push(format!("{kname} has no healthcheck"));
                }
                // The host-side default must reach a listener that advertises a host-reachable address.
                match default_kafka {
                    None => errs.push(format!(
                        "default bootstrap {} is not host:port",
                        defaults.bootstrap
                    )),
                    Some((dhost, dport)) => {
                        match published_ports(kafka).iter().find(|(h, _)| *h == dport) {
                            None => errs.push(format!(
                                "{kname} does not publish the default port {dport} (publishes {:?})",
                                published_ports(kafka)
                            )),
                            Some((_, target)) => {
                                let lname = bound.iter().find(|(_, (_, p))| p == target).map(|(n, _)| n);
                                match lname.and_then(|n| advertised.get(n)) {
                                    Some((ah, ap)) if *ap == dport && (ah == &dhost || ah == "localhost") => {}
                                    other => errs.push(format!(
                                        "host port {dport} goes to container port {target}, whose listener \
                                         advertises {other:?} instead of {dhost}:{dport}"
                                    )),
                                }
                            }
                        }
                    }
                }
            }
        },
    }

    // --- Registry --------------------------------------------------------
    let default_reg = parse_url(&defaults.registry_url);
    match venv.get(REGISTRY_ENV).map(|s| parse_url(s)) {
        None => errs.push(format!("verifier does not set {REGISTRY_ENV}")),
        Some(None) => errs.push(format!("{REGISTRY_ENV} is not a URL")),
        Some(Some((host, port, path))) => match find_service_by_host(services, &host) {
            None => errs.push(format!("{REGISTRY_ENV} names {host}, which is no service")),
            Some(rname) => {
                let reg = &services[rname.as_str()];
                // Apicurio (Quarkus) listens on QUARKUS_HTTP_PORT, 8080 unless set.
                let container_port: u16 = env(reg)
                    .get("QUARKUS_HTTP_PORT")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(8080);
                if port != container_port {
                    errs.push(format!(
                        "{REGISTRY_ENV} uses port {port}, but {rname} listens on {container_port}"
                    ));
                }
                if !verifier_depends_on(verifier, &rname) {
                    errs.push(format!("verifier does not wait for a healthy {rname}"));
                }
                if reg.get("healthcheck").is_none() {
                    errs.push(format!("{rname} has no healthcheck"));
                }
                match &default_reg {
                    None => errs.push(format!(
                        "default registry url {} does not parse",
                        defaults.registry_url
                    )),
                    Some((_, dport, dpath)) => {
                        if &path != dpath {
                            errs.push(format!(
                                "{REGISTRY_ENV} path {path} differs from the default {dpath}"
                            ));
                        }
                        match published_ports(reg).iter().find(|(h, _)| h == dport) {
                            None => errs.push(format!("{rname} does not publish the default port {dport}")),
                            Some((_, t)) if *t != container_port => errs.push(format!(
                                "{rname} publishes {dport} to container port {t}, but listens on {container_port}"
                            )),
                            Some(_) => {}
                        }
                    }
                }
            }
        },
    }

    // --- The image -------------------------------------------------------
    let build = verifier.get("build");
    let dockerfile_name = build
        .and_then(|b| b.get("dockerfile"))
        .and_then(Yaml::as_str)
        .unwrap_or("Dockerfile");
    let context = match build {
        Some(Yaml::String(s)) => Some(s.as_str()),
        Some(b) => b.get("context").and_then(Yaml::as_str),
        None => None,
    };
    if context != Some(".") {
        errs.push(format!(
            "verifier is not built from the repository root (context {context:?})"
        ));
    }
    if dockerfile_name != "Dockerfile" {
        errs.push(format!(
            "verifier uses {dockerfile_name}, not the root Dockerfile"
        ));
    }
    match dockerfile {
        None => errs.push("the Dockerfile does not exist".into()),
        Some(d) => errs.extend(check_dockerfile(d)),
    }
    errs
}

fn verifier_depends_on(verifier: &Yaml, service: &str) -> bool {
    match verifier.get("depends_on") {
        Some(Yaml::Mapping(m)) => {
            m.get(service)
                .and_then(|d| d.get("condition"))
                .and_then(Yaml::as_str)
                == Some("service_healthy")
        }
        _ => false,
    }
}

fn check_dockerfile(d: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let lines: Vec<String> = d
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    let builds = lines.iter().any(|l| {
        l.starts_with("RUN")
            && l.contains("cargo build")
            && l.contains("--release")
            && l.contains("--locked")
            && (l.contains("--bin cdc-verifier") || !l.contains("--bin"))
    });
    if !builds {
        errs.push(
            "the Dockerfile does not `cargo build --release --locked` the cdc-verifier binary"
                .into(),
        );
    }
    let froms = lines.iter().filter(|l| l.starts_with("FROM")).count();
    if froms < 2 {
        errs.push("the Dockerfile is not multi-stage".into());
    }
    let copies = lines
        .iter()
        .any(|l| l.starts_with("COPY --from=") && l.contains("cdc-verifier"));
    if !copies {
        errs.push("the runtime stage does not copy the cdc-verifier binary".into());
    }
    let entry = lines.iter().rev().find(|l| l.starts_with("ENTRYPOINT"));
    if !entry.is_some_and(|l| l.contains("cdc-verifier")) {
        errs.push(format!("the ENTRYPOINT is not cdc-verifier: {entry:?}"));
    }
    // The binary name is the root package's name.
    let cargo: toml::Value = toml::from_str(&read(&root().join("Cargo.toml"))).unwrap();
    if cargo["package"]["name"].as_str() != Some("cdc-verifier") {
        errs.push("the root package is not cdc-verifier".into());
    }
    errs
}

fn dockerfile_text() -> Option<String> {
    std::fs::read_to_string(root().join("Dockerfile")).ok()
}

#[test]
fn compose_wiring_matches_the_defaults() {
    let errs = check(&compose_text(), &defaults(), dockerfile_text().as_deref());
    assert!(
        errs.is_empty(),
        "docker-compose.yml wiring problems:\n  {}",
        errs.join("\n  ")
    );
}

#[test]
fn compose_verifier_runs_the_run_command() {
    let doc: Yaml = serde_yaml::from_str(&compose_text()).unwrap();
    let v = &doc["services"]["verifier"];
    let cmd = match &v["command"] {
        Yaml::Sequence(s) => s
            .iter()
            .filter_map(Yaml::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        Yaml::String(s) => s.clone(),
        Yaml::Null => String::new(),
        other => panic!("unexpected command {other:?}"),
    };
    // Either compose says `run` or the image's default command does.
    let image_cmd = dockerfile_text().unwrap_or_default();
    assert!(
        cmd == "run" || (cmd.is_empty() && image_cmd.contains(r#"CMD ["run"]"#)),
        "the verifier should run `cdc-verifier run`, command is {cmd:?}"
    );
}

fn assert_fails(mutated: &str, needle: &str) {
    let errs = check(mutated, &defaults(), dockerfile_text().as_deref());
    assert!(
        errs.iter().any(|e| e.contains(needle)),
        "expected a problem mentioning {needle:?}, got {errs:?}"
    );
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "docker-compose.yml no longer contains {from:?}; update this test"
    );
    text.replacen(from, to, 1)
}

#[test]
fn mutated_bootstrap_port_is_caught() {
    let c = replace_once(
        &compose_text(),
        "CDC_VERIFIER__KAFKA__BOOTSTRAP_SERVERS: kafka:9092",
        "CDC_VERIFIER__KAFKA__BOOTSTRAP_SERVERS: kafka:9094",
    );
    assert_fails(&c, "advertises no listener at kafka:9094");
}

#[test]
fn mutated_bootstrap_host_is_caught() {
    let c = replace_once(
        &compose_text(),
        "CDC_VERIFIER__KAFKA__BOOTSTRAP_SERVERS: kafka:9092",
        "CDC_VERIFIER__KAFKA__BOOTSTRAP_SERVERS: broker:9092",
    );
    assert_fails(&c, "names broker, which is no service");
}

#[test]
fn mutated_advertised_listener_is_caught() {
    let c = replace_once(
        &compose_text(),
        "PLAINTEXT://kafka:9092,",
        "PLAINTEXT://localhost:9092,",
    );
    assert_fails(&c, "advertises no listener at kafka:9092");
    let c = replace_once(
        &compose_text(),
        "HOST://127.0.0.1:9092",
        "HOST://kafka:19092",
    );
    assert_fails(&c, "instead of 127.0.0.1:9092");
}

#[test]
fn mutated_published_kafka_port_is_caught() {
    let c = replace_once(
        &compose_text(),
        "\"127.0.0.1:9092:19092\"",
        "\"127.0.0.1:29092:19092\"",
    );
    assert_fails(&c, "does not publish the default port 9092");
}

#[test]
fn mutated_registry_url_is_caught() {
    let url = "CDC_VERIFIER__REGISTRY__URL: http://registry:8081/apis/ccompat/v7";
    let c = replace_once(
        &compose_text(),
        url,
        "CDC_VERIFIER__REGISTRY__URL: http://registry:8081/apis/ccompat/v6",
    );
    assert_fails(&c, "differs from the default");
    let c = replace_once(
        &compose_text(),
        url,
        "CDC_VERIFIER__REGISTRY__URL: http://registry:8080/apis/ccompat/v7",
    );
    assert_fails(&c, "uses port 8080, but registry listens on 8081");
    let c = replace_once(
        &compose_text(),
        url,
        "CDC_VERIFIER__REGISTRY__URL: http://schema-registry:8081/apis/ccompat/v7",
    );
    assert_fails(&c, "which is no service");
}

#[test]
fn mutated_registry_port_is_caught() {
    let c = replace_once(
        &compose_text(),
        "QUARKUS_HTTP_PORT: 8081",
        "QUARKUS_HTTP_PORT: 8080",
    );
    assert_fails(&c, "listens on 8080");
    let c = replace_once(
        &compose_text(),
        "\"127.0.0.1:8081:8081\"",
        "\"127.0.0.1:18081:8081\"",
    );
    assert_fails(&c, "does not publish the default port 8081");
}

#[test]
fn mutated_dependencies_are_caught() {
    let c = replace_once(
        &compose_text(),
        "condition: service_healthy",
        "condition: service_started",
    );
    assert_fails(&c, "does not wait for a healthy kafka");
}

#[test]
fn mutated_dockerfile_is_caught() {
    let d = dockerfile_text().expect("the Dockerfile exists");
    assert!(
        check_dockerfile(&d).is_empty(),
        "{:?}",
        check_dockerfile(&d)
    );
    let broken = d.replace("--locked", "");
    assert!(
        check_dockerfile(&broken)
            .iter()
            .any(|e| e.contains("cargo build"))
    );
    let broken = d.replace("ENTRYPOINT [\"cdc-verifier\"]", "ENTRYPOINT [\"sh\"]");
    assert!(
        check_dockerfile(&broken)
            .iter()
            .any(|e| e.contains("ENTRYPOINT"))
    );
    let errs = check(&compose_text(), &defaults(), None);
    assert!(
        errs.iter().any(|e| e.contains("Dockerfile does not exist")),
        "{errs:?}"
    );
}

#[test]
fn mutated_defaults_are_caught() {
    let d = Defaults {
        bootstrap: "127.0.0.1:9192".into(),
        registry_url: "http://127.0.0.1:8081/apis/ccompat/v7".into(),
    };
    let errs = check(&compose_text(), &d, dockerfile_text().as_deref());
    assert!(
        errs.iter().any(|e| e.contains("default port 9192")),
        "{errs:?}"
    );
    let d = Defaults {
        bootstrap: "127.0.0.1:9092".into(),
        registry_url: "http://127.0.0.1:8082/apis/ccompat/v7".into(),
    };
    let errs = check(&compose_text(), &d, dockerfile_text().as_deref());
    assert!(
        errs.iter().any(|e| e.contains("default port 8082")),
        "{errs:?}"
    );
}
