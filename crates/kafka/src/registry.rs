//! A blocking client for the Confluent Schema Registry REST API (and compatible registries such
//! as Apicurio's `/apis/ccompat/v7`).
//!
//! Only the calls the verifier and the simulator need. Errors carry the registry's own
//! `error_code` (40401 subject not found, 40403 schema not found, 409 incompatible, …) when
//! its answer had one: a 404 without it comes from something else (a proxy, a wrong path).
//! URLs in errors never carry credentials.

use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The media type of the Confluent API.
pub const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Confluent error codes worth naming.
pub mod error_code {
    pub const SUBJECT_NOT_FOUND: i64 = 40401;
    pub const VERSION_NOT_FOUND: i64 = 40402;
    pub const SCHEMA_NOT_FOUND: i64 = 40403;
    pub const INCOMPATIBLE_SCHEMA: i64 = 409;
    pub const INVALID_SCHEMA: i64 = 42201;
}

/// A registry call failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid registry url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot reach the schema registry at {url}")]
    Http { url: String, source: reqwest::Error },
    #[error(
        "schema registry answered {status} to {method} {url}: {message}{}",
        error_code.map(|c| format!(" (error code {c})")).unwrap_or_default()
    )]
    Api {
        method: Method,
        url: String,
        status: u16,
        /// The registry's own `error_code`, when the body had one.
        error_code: Option<i64>,
        message: String,
    },
    #[error("unexpected response from the schema registry to {method} {url}")]
    Decode {
        method: Method,
        url: String,
        source: reqwest::Error,
    },
}

impl RegistryError {
    /// The registry's `error_code`, when its answer had one.
    pub fn error_code(&self) -> Option<i64> {
        match self {
            RegistryError::Api { error_code, .. } => *error_code,
            _ => None,
        }
    }

    /// The HTTP status, when the registry (or what stands at its URL) answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the registry itself said the subject, version or schema does not exist: a 404
    /// with its own error code. A bare 404 may come from a proxy or a wrong path.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
            && matches!(
                self.error_code(),
                Some(
                    error_code::SUBJECT_NOT_FOUND
                        | error_code::VERSION_NOT_FOUND
                        | error_code::SCHEMA_NOT_FOUND
                )
            )
    }
}

/// A subject and version a schema is registered under.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
}

/// A schema as registered under a subject.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RegisteredSchema {
    pub subject: String,
    pub id: u32,
    pub version: u32,
    pub schema: String,
}

#[derive(Deserialize)]
struct IdResponse {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
}

#[derive(Deserialize)]
struct ErrorResponse {
    error_code: Option<i64>,
    message: Option<String>,
}

/// A blocking registry client; cheap to clone.
#[derive(Clone, Debug)]
pub struct RegistryClient {
    base: Url,
    http: Client,
    auth: Auth,
    timeout: Option<Duration>,
}

/// Credentials sent with every request.
#[derive(Clone, Default)]
enum Auth {
    #[default]
    None,
    Basic(String, Option<String>),
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "none",
            Auth::Basic(..) => "basic ***",
            Auth::Bearer(_) => "bearer ***",
        })
    }
}

impl RegistryClient {
    /// A client for the API at `base_url` (for example `http://127.0.0.1:8081` or
    /// `http://127.0.0.1:8081/apis/ccompat/v7`).
    pub fn new(base_url: &str) -> Result<Self, RegistryError> {
        let invalid = |reason: String| RegistryError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let base =
            Url::parse(base_url.trim_end_matches('/')).map_err(|e| invalid(e.to_string()))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("expected an http(s) url".into()));
        }
        let http = Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| RegistryError::Http {
                url: base_url.to_owned(),
                source,
            })?;
        Ok(RegistryClient {
            base,
            http,
            auth: Auth::None,
            timeout: None,
        })
    }

    /// Sends HTTP basic credentials with every request.
    pub fn with_basic(mut self, user: &str, password: Option<&str>) -> Self {
        self.auth = Auth::Basic(user.to_owned(), password.map(str::to_owned));
        self
    }

    /// Sends a bearer token with every request.
    pub fn with_bearer(mut self, token: &str) -> Self {
        self.auth = Auth::Bearer(token.to_owned());
        self
    }

    /// Bounds every request to `timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Every subject (also a cheap "does it answer" check).
    pub fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        self.call(Method::GET, &["subjects"], None)
    }

    /// The API's base URL, without credentials.
    pub fn base_url(&self) -> String {
        shown(&self.base)
    }

    /// Registers an Avro schema under `subject` (or finds it there) and returns its global id.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let body = serde_json::json!({ "schema": schema });
        let r: IdResponse = self.call(
            Method::POST,
            &["subjects", subject, "versions"],
            Some(&body),
        )?;
        Ok(r.id)
    }

    /// Looks `schema` up under `subject`: its id and the subject's version that holds it.
    pub fn lookup(&self, subject: &str, schema: &str) -> Result<RegisteredSchema, RegistryError> {
        let body = serde_json::json!({ "schema": schema });
        self.call(Method::POST, &["subjects", subject], Some(&body))
    }

    /// The schema text of a global id.
    pub fn schema_by_id(&self, id: u32) -> Result<String, RegistryError> {
        let r: SchemaResponse =
            self.call(Method::GET, &["schemas", "ids", &id.to_string()], None)?;
        Ok(r.schema)
    }

    /// Every (subject, version) that holds the schema of a global id.
    pub fn versions_by_id(&self, id: u32) -> Result<Vec<SubjectVersion>, RegistryError> {
        self.call(
            Method::GET,
            &["schemas", "ids", &id.to_string(), "versions"],
            None,
        )
    }

    /// One version of a subject (`version` 0 or below means the latest).
    pub fn subject_version(
        &self,
        subject: &str,
        version: i32,
    ) -> Result<RegisteredSchema, RegistryError> {
        let v = if version <= 0 {
            "latest".to_string()
        } else {
            version.to_string()
        };
        self.call(Method::GET, &["subjects", subject, "versions", &v], None)
    }

    /// The versions registered under a subject.
    pub fn subject_versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        self.call(Method::GET, &["subjects", subject, "versions"], None)
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // Percent-encodes each segment, so subjects with `/` or `%` stay one segment.
        url.path_segments_mut()
            .expect("checked in new")
            .pop_if_empty()
            .extend(segments);
        url
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&serde_json::Value>,
    ) -> Result<T, RegistryError> {
        let url = self.url(segments);
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .header(reqwest::header::ACCEPT, CONTENT_TYPE);
        req = match &self.auth {
            Auth::None => req,
            Auth::Basic(user, password) => req.basic_auth(user, password.as_deref()),
            Auth::Bearer(token) => req.bearer_auth(token),
        };
        if let Some(t) = self.timeout {
            req = req.timeout(t);
        }
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(serde_json::to_vec(body).expect("a JSON value serializes"));
        }
        let resp = req.send().map_err(|source| RegistryError::Http {
            url: shown(&url),
            source: source.without_url(),
        })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(api_error(method, url, status, resp));
        }
        resp.json().map_err(|source| RegistryError::Decode {
            method,
            url: shown(&url),
            source: source.without_url(),
        })
    }
}

/// `url` without the user and password it may carry.
fn shown(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

fn api_error(method: Method, url: Url, status: StatusCode, resp: Response) -> RegistryError {
    let text = resp.text().unwrap_or_default();
    let excerpt = || -> String {
        if text.trim().is_empty() {
            "(no body)".into()
        } else {
            text.chars().take(200).collect()
        }
    };
    let (error_code, message) = match serde_json::from_str::<ErrorResponse>(&text) {
        Ok(ErrorResponse {
            error_code: Some(code),
            message,
        }) => (Some(code), message.unwrap_or_default()),
        _ => (None, excerpt()),
    };
    RegistryError::Api {
        method,
        url: shown(&url),
        status: status.as_u16(),
        error_code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_the_api_prefix_and_escape_subjects() {
        let c = RegistryClient::new("http://127.0.0.1:8081/apis/ccompat/v7/").unwrap();
        assert_eq!(
            c.url(&["subjects", "a/b c-value", "versions"]).as_str(),
            "http://127.0.0.1:8081/apis/ccompat/v7/subjects/a%2Fb%20c-value/versions"
        );
        let c = RegistryClient::new("http://localhost:8081").unwrap();
        assert_eq!(
            c.url(&["schemas", "ids", "7"]).as_str(),
            "http://localhost:8081/schemas/ids/7"
        );
        assert!(matches!(
            RegistryClient::new("not a url"),
            Err(RegistryError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn not_found_is_recognised_by_code() {
        let e = RegistryError::Api {
            method: Method::GET,
            url: "u".into(),
            status: 404,
            error_code: Some(error_code::SCHEMA_NOT_FOUND),
            message: "Schema not found".into(),
        };
        assert!(e.is_not_found());
        assert_eq!(e.error_code(), Some(40403));
        assert_eq!(
            e.to_string(),
            "schema registry answered 404 to GET u: Schema not found (error code 40403)"
        );
        // A 404 without the registry's error code is not the registry saying "not found".
        let bare = RegistryError::Api {
            method: Method::GET,
            url: "u".into(),
            status: 404,
            error_code: None,
            message: "(no body)".into(),
        };
        assert!(!bare.is_not_found());
        assert_eq!(
            bare.to_string(),
            "schema registry answered 404 to GET u: (no body)"
        );
    }

    #[test]
    fn urls_shown_carry_no_credentials() {
        let c = RegistryClient::new("https://user:secret@registry.example:8081/api").unwrap();
        assert_eq!(c.base_url(), "https://registry.example:8081/api");
        assert_eq!(
            shown(&c.url(&["subjects"])),
            "https://registry.example:8081/api/subjects"
        );
    }
}
