//! The registry source tells a schema id that is not registered (poison) from a registry that
//! cannot be trusted to know (unavailable: retry): against a fake registry answering canned
//! responses for each failure, and against the real registry for the plain case.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use cdc_verifier_core::source::{FetchError, SchemaSource};
use cdc_verifier_kafka::registry::RegistryClient;
use cdc_verifier_kafka::source::{RegistrySource, Unavailability};

const SCHEMA: &str = r#"{"schema":"\"long\""}"#;
const NOT_FOUND: (u16, &str) = (404, r#"{"error_code":40403,"message":"Schema not found"}"#);

/// What the fake registry answers to a request line such as `GET /api/schemas/ids/7`.
type Routes = dyn Fn(&str) -> (u16, String) + Send + Sync;

/// A registry on a local port answering each request (one per connection) from `routes`,
/// which may be changed while it runs; it keeps the request lines it was sent.
struct Fake {
    url: String,
    routes: Arc<Mutex<Box<Routes>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn start(routes: impl Fn(&str) -> (u16, String) + Send + Sync + 'static) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://127.0.0.1:{}/api",
            listener.local_addr().unwrap().port()
        );
        let routes: Arc<Mutex<Box<Routes>>> = Arc::new(Mutex::new(Box::new(routes)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (r, q) = (routes.clone(), requests.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let line = head.lines().next().unwrap_or("");
                let line = line.rsplit_once(' ').map_or(line, |(l, _)| l).to_string();
                let (status, body) = (r.lock().unwrap())(&line);
                q.lock().unwrap().push(line);
                let _ = write!(
                    c,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Fake {
            url,
            routes,
            requests,
        }
    }

    fn answer(&self, routes: impl Fn(&str) -> (u16, String) + Send + Sync + 'static) {
        *self.routes.lock().unwrap() = Box::new(routes);
    }

    fn source(&self) -> RegistrySource {
        RegistrySource::new(RegistryClient::new(&self.url).unwrap())
    }

    fn asked(&self, line: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == line)
            .count()
    }
}

fn ok(body: &str) -> (u16, String) {
    (200, body.to_string())
}

fn canned((status, body): (u16, &str)) -> (u16, String) {
    (status, body.to_string())
}

/// A healthy registry holding schema 1 under `orders-value`.
fn healthy(line: &str) -> (u16, String) {
    match line {
        "GET /api/schemas/ids/1" => ok(SCHEMA),
        "GET /api/schemas/ids/1/versions" => ok(r#"[{"subject":"orders-value","version":1}]"#),
        "GET /api/subjects" => ok(r#"["orders-value"]"#),
        "GET /api/subjects/orders-value/versions" => ok("[1]"),
        _ => canned(NOT_FOUND),
    }
}

fn reason_count(src: &RegistrySource, why: Unavailability) -> u64 {
    src.stats.unavailable[why as usize]
}

fn unavailable(r: Result<cdc_verifier_core::source::RegisteredSchema, FetchError>) -> String {
    match r {
        Err(FetchError::Unavailable(reason)) => reason,
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[test]
fn a_working_registry_saying_schema_not_found_makes_poison() {
    let fake = Fake::start(healthy);
    // Nothing served yet: believed because the registry lists the topic's subject.
    let mut src = fake.source();
    assert_eq!(
        src.fetch_for(2, "orders-value"),
        Err(FetchError::NotFound(2))
    );
    // Something served: believed because it still serves it.
    let mut src = fake.source();
    assert!(src.fetch_for(1, "orders-value").is_ok());
    assert_eq!(
        src.fetch_for(2, "orders-value"),
        Err(FetchError::NotFound(2))
    );
    assert!(
        fake.asked("GET /api/schemas/ids/1") >= 2,
        "id 1 was asked again"
    );
    assert!(!src.stats.unavailable_now);
}

#[test]
fn a_404_without_the_registry_error_code_is_unavailable() {
    // A proxy or a wrong path: 404 with no body, or with a body that is not the registry's.
    for body in ["", r#"{"title":"Could not find resource","status":404}"#] {
        let b = body.to_string();
        let fake = Fake::start(move |_| (404, b.clone()));
        let mut src = fake.source();
        let reason = unavailable(src.fetch_for(1, "orders-value"));
        assert!(reason.contains(&fake.url), "names the registry: {reason}");
        assert!(reason.contains("404"), "says what it answered: {reason}");
        assert_eq!(reason_count(&src, Unavailability::NotTheRegistry), 1);
        assert!(src.stats.unavailable_now);
    }
}

#[test]
fn a_registry_that_lost_the_schemas_it_served_is_unavailable() {
    let fake = Fake::start(healthy);
    let mut src = fake.source();
    assert!(src.fetch_for(1, "orders-value").is_ok());
    // Restarted with empty storage: every id, old and new, is "not found".
    fake.answer(|_| canned(NOT_FOUND));
    let reason = unavailable(src.fetch_for(2, "orders-value"));
    assert!(reason.contains("served before"), "{reason}");
    assert_eq!(reason_count(&src, Unavailability::LostSchemas), 1);
    // The schema it served stays cached: its records go on.
    assert!(src.fetch_for(1, "orders-value").is_ok());
    // Back with its schemas: the id is then known to be unregistered.
    fake.answer(healthy);
    assert_eq!(
        src.fetch_for(2, "orders-value"),
        Err(FetchError::NotFound(2))
    );
    assert!(!src.stats.unavailable_now);
}

#[test]
fn a_registry_without_the_topics_subject_is_unavailable() {
    // Restarted empty, then holding only the verifier's own alert subjects.
    let fake = Fake::start(|line| match line {
        "GET /api/subjects" => ok("[]"),
        "GET /api/subjects/orders-value/versions" => (
            404,
            r#"{"error_code":40401,"message":"Subject not found"}"#.into(),
        ),
        _ => canned(NOT_FOUND),
    });
    let mut src = fake.source();
    let reason = unavailable(src.fetch_for(1, "orders-value"));
    assert!(
        reason.contains("does not have subject orders-value"),
        "{reason}"
    );
    let reason = unavailable(src.fetch(1));
    assert!(reason.contains("no subject at all"), "{reason}");
    assert_eq!(reason_count(&src, Unavailability::MissingSubject), 2);
}

#[test]
fn server_errors_timeouts_and_refusals_are_unavailable() {
    let fake = Fake::start(|_| (503, "upstream down".into()));
    let mut src = fake.source();
    unavailable(src.fetch_for(1, "orders-value"));
    assert_eq!(reason_count(&src, Unavailability::ServerError), 1);
    fake.answer(|_| {
        (
            401,
            r#"{"error_code":40101,"message":"unauthorized"}"#.into(),
        )
    });
    unavailable(src.fetch_for(1, "orders-value"));
    assert_eq!(reason_count(&src, Unavailability::Refused), 1);
    // Nothing listens.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut src = RegistrySource::new(
        RegistryClient::new(&format!("http://user:secret@127.0.0.1:{port}")).unwrap(),
    );
    let reason = unavailable(src.fetch(1));
    assert!(!reason.contains("secret"), "no credentials shown: {reason}");
    assert_eq!(reason_count(&src, Unavailability::Unreachable), 1);
}

#[test]
fn a_server_error_listing_an_ids_subjects_is_not_cached() {
    let fake = Fake::start(|line| match line {
        "GET /api/schemas/ids/1/versions" => (500, "boom".into()),
        l => healthy(l),
    });
    let mut src = fake.source();
    unavailable(src.fetch_for(1, "orders-value"));
    assert_eq!(reason_count(&src, Unavailability::ServerError), 1);
    // Once it answers, the subjects are there: the error was not kept as "no subjects".
    fake.answer(healthy);
    let s = src.fetch_for(1, "orders-value").unwrap();
    assert_eq!(s.subjects.len(), 1);
    assert_eq!(s.subjects[0].subject, "orders-value");
    // A registry without the endpoint (404 without 40403) serves the schema without subjects.
    let fake = Fake::start(|line| match line {
        "GET /api/schemas/ids/1/versions" => (404, String::new()),
        l => healthy(l),
    });
    let s = fake.source().fetch_for(1, "orders-value").unwrap();
    assert!(s.subjects.is_empty());
}

/// The real registry (`CDC_VERIFIER_TEST_REGISTRY`): a registered id is served with its
/// subject, an unregistered one is poison.
#[test]
fn the_real_registry_serves_ids_and_says_which_are_not_registered() {
    let url = std::env::var("CDC_VERIFIER_TEST_REGISTRY")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "http://127.0.0.1:8081/apis/ccompat/v7".into());
    let client = RegistryClient::new(&url).unwrap();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let subject = format!("registry-source-{}-{nanos}-value", std::process::id());
    let schema = format!(
        r#"{{"type":"record","name":"R{nanos}","fields":[{{"name":"id","type":"long"}}]}}"#
    );
    let id = client.register(&subject, &schema).unwrap_or_else(|e| {
        panic!("the registry at {url} does not answer (scripts/services up): {e}")
    });
    let unregistered = 2_000_000_000;
    // Nothing served yet: the subject is listed.
    let mut src = RegistrySource::new(client.clone());
    assert_eq!(
        src.fetch_for(unregistered, &subject),
        Err(FetchError::NotFound(unregistered))
    );
    let mut src = RegistrySource::new(client);
    let s = src.fetch_for(id, &subject).unwrap();
    assert!(s.subjects.iter().any(|v| v.subject == subject));
    assert_eq!(
        src.fetch_for(unregistered, &subject),
        Err(FetchError::NotFound(unregistered))
    );
}
