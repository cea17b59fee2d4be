//! The awc client for dispatch-api: retries with exponential backoff and full jitter for
//! connection failures, 429 and 5xx (never other 4xx), an `Idempotency-Key` on every plan so a
//! retry cannot create a second plan, and failures turned into sentences an operator can act on.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use awc::error::{ConnectError, SendRequestError};
use awc::http::StatusCode;
use rustls::{AlertDescription, CertificateError};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::configuration::{RetrySettings, WorkerSettings};
use crate::error::WorkerError;
use crate::routing::PlanBody;

/// The most of an answer's body read: a problem document or a plan receipt is far smaller.
const MAX_ANSWER_BYTES: usize = 1_048_576;

pub struct DispatchClient {
    /// The HTTP client, and the identity's generation it was made for (see [`Self::http`]).
    http: std::cell::RefCell<(awc::Client, u64)>,
    /// What a new HTTP client is made of.
    tls: rustls::ClientConfig,
    timeout: Duration,
    keep_alive: Duration,
    /// The certificate presented, when there is one.
    identity: Option<Arc<crate::tls::ClientIdentity>>,
    base_url: String,
    host: String,
    api_key: Option<crate::configuration::ApiKeyFile>,
    retry: RetrySettings,
}

/// A plan the server accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub id: String,
    pub location: String,
    pub replayed: bool,
}

impl DispatchClient {
    pub fn new(settings: &WorkerSettings) -> Result<Self, WorkerError> {
        let (tls, identity) = crate::tls::client_config(&settings.tls)?;
        if let Some(identity) = &identity
            && settings.tls.reload_interval_secs > 0
        {
            actix_rt::spawn(
                identity
                    .clone()
                    .watch(Duration::from_secs(settings.tls.reload_interval_secs)),
            );
        }
        let base_url = settings.server.url.trim_end_matches('/').to_owned();
        let uri: awc::http::Uri = base_url.parse().map_err(|e| {
            WorkerError::Config(format!("server.url `{base_url}` is not a URL: {e}"))
        })?;
        if uri.scheme_str() != Some("https") {
            return Err(WorkerError::Config(format!(
                "server.url `{base_url}` must be https://"
            )));
        }
        let host = uri.host().unwrap_or_default().to_owned();
        let timeout = Duration::from_secs(settings.server.request_timeout_secs);
        let keep_alive = Duration::from_secs(settings.server.keep_alive_secs);
        let generation = identity
            .as_ref()
            .map_or(0, |identity| identity.generation());
        let http = dispatch_tls::https_client(
            crate::tls::for_this_certificate(&tls),
            timeout,
            Some(keep_alive),
        );
        Ok(Self {
            http: std::cell::RefCell::new((http, generation)),
            tls,
            timeout,
            keep_alive,
            identity,
            base_url,
            host,
            api_key: settings.api_key_file()?,
            retry: settings.retry.clone(),
        })
    }

    /// The HTTP client for the next request. Once the certificate was replaced, a new one, with
    /// connections and TLS sessions of its own: a connection keeps the certificate it was made
    /// with as long as it lives (one kept busy never idles out, so up to awc's connection
    /// lifetime, 75 s), and so does a session resumed from its tickets; the server refuses both
    /// once that certificate ends, and a short-lived one renewed when a third is left may end
    /// sooner than that. Requests in flight finish on the connections they began on.
    fn http(&self) -> awc::Client {
        let generation = self
            .identity
            .as_ref()
            .map_or(0, |identity| identity.generation());
        let mut http = self.http.borrow_mut();
        if http.1 != generation {
            let fresh = dispatch_tls::https_client(
                crate::tls::for_this_certificate(&self.tls),
                self.timeout,
                Some(self.keep_alive),
            );
            *http = (fresh, generation);
        }
        http.0.clone()
    }

    /// Submits a plan, retrying transient failures. The idempotency key is derived from the plan
    /// itself, so even a restarted worker re-sending the same plan creates nothing new.
    pub async fn submit(&self, plan: &PlanBody) -> Result<Accepted, WorkerError> {
        let body = serde_json::to_vec(plan).map_err(|e| WorkerError::Config(e.to_string()))?;
        let idempotency_key = format!(
            "rw-{}",
            &hex::encode(ring::digest::digest(&ring::digest::SHA256, &body))[..40]
        );
        let url = format!("{}/api/dispatch-plans", self.base_url);
        let response = self
            .with_retries("submit plan", || {
                let mut request = self
                    .http()
                    .post(&url)
                    .insert_header(("Idempotency-Key", idempotency_key.as_str()))
                    .insert_header(("Content-Type", "application/json"));
                if let Some(key) = &self.api_key {
                    request = request.insert_header(("X-Api-Key", key.current().expose_secret()));
                }
                request.send_body(body.clone())
            })
            .await?;
        let location = response
            .headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Ok(Accepted {
            id: response.body["id"].as_str().unwrap_or_default().to_owned(),
            location,
            replayed: response.body["replayed"].as_bool().unwrap_or(false),
        })
    }

    /// The certificate this worker presents on new connections: its SHA-256 fingerprint (hex)
    /// and notAfter (RFC 3339).
    pub fn presenting(&self) -> Option<(String, String)> {
        self.identity
            .as_ref()
            .and_then(|identity| identity.presenting())
    }

    /// How the server sees this worker (`GET /api/whoami`).
    pub async fn whoami(&self) -> Result<Value, WorkerError> {
        let url = format!("{}/api/whoami", self.base_url);
        let response = self
            .with_retries("whoami", || {
                let mut request = self.http().get(&url);
                if let Some(key) = &self.api_key {
                    request = request.insert_header(("X-Api-Key", key.current().expose_secret()));
                }
                request.send()
            })
            .await?;
        Ok(response.body)
    }

    async fn with_retries<F, Fut>(&self, what: &str, mut send: F) -> Result<Reply, WorkerError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<awc::ClientResponse, SendRequestError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (error, retry_after) = match send().await {
                Ok(mut response) => {
                    let status = response.status();
                    let retry_after = retry_after_secs(response.headers());
                    let headers = response.headers().clone();
                    let bytes = response
                        .body()
                        .limit(MAX_ANSWER_BYTES)
                        .await
                        .unwrap_or_default();
                    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                    if status.is_success() {
                        return Ok(Reply { headers, body });
                    }
                    let location = headers.get("location").and_then(|v| v.to_str().ok());
                    (http_failure(status, &body, location), retry_after)
                }
                Err(error) => (transport_failure(&error, &self.base_url, &self.host), None),
            };
            let error = match after_failure(what, error, attempt, &self.retry) {
                Next::GiveUp(error) => return Err(error),
                Next::Retry(error) => error,
            };
            let delay = backoff(&self.retry, attempt, retry_after);
            tracing::warn!(what, attempt, of = self.retry.max_attempts, delay_ms = delay.as_millis() as u64, error = %error, "retrying");
            actix_rt::time::sleep(delay).await;
        }
    }
}

struct Reply {
    headers: awc::http::header::HeaderMap,
    body: Value,
}

/// What to do after a failed attempt: try again while the failure is transient and attempts
/// remain (at least one attempt is always made), otherwise give up with the failure, saying how
/// many attempts a transient one took.
enum Next {
    Retry(WorkerError),
    GiveUp(WorkerError),
}

fn after_failure(what: &str, error: WorkerError, attempt: u32, retry: &RetrySettings) -> Next {
    if !error.is_transient() {
        return Next::GiveUp(error);
    }
    if attempt >= retry.max_attempts.max(1) {
        return Next::GiveUp(WorkerError::Transient(format!(
            "{what}: gave up after {attempt} attempts: {error}"
        )));
    }
    Next::Retry(error)
}

/// A `Retry-After` in seconds (the form dispatch-api sends); an HTTP date is ignored.
fn retry_after_secs(headers: &awc::http::header::HeaderMap) -> Option<u64> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// A failure before any answer: a TLS refusal (not transient) or a connection failure (transient).
fn transport_failure(error: &SendRequestError, base_url: &str, host: &str) -> WorkerError {
    if let Some(tls) = tls_error(error) {
        return WorkerError::Refused(tls_sentence(tls, host));
    }
    let detail = match error {
        SendRequestError::Connect(ConnectError::Io(e))
            if e.kind() == io::ErrorKind::ConnectionRefused =>
        {
            format!(
                "cannot connect to {}: connection refused (is dispatch-api running?)",
                base_url
            )
        }
        SendRequestError::Connect(e) => format!("cannot connect to {}: {e}", base_url),
        SendRequestError::Timeout => format!("{} did not answer in time", base_url),
        other => format!("the request to {} failed: {other}", base_url),
    };
    WorkerError::Transient(detail)
}

/// What a TLS failure means for the operator, in a sentence naming the file or party at fault.
fn tls_sentence(error: &rustls::Error, host: &str) -> String {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            presented,
            ..
        }) => format!(
            "the server's certificate is not valid for {} (it names {})",
            host,
            presented.join(", ")
        ),
        rustls::Error::InvalidCertificate(CertificateError::NotValidForName) => {
            format!("the server's certificate is not valid for {}", host)
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate was not issued by the configured CA (tls.ca_file)".to_owned()
        }
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => "the server's certificate has expired".to_owned(),
        rustls::Error::InvalidCertificate(other) => {
            format!("the server's certificate is not acceptable: {other}")
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the server requires a client certificate: configure tls.cert_file and tls.key_file"
                .to_owned()
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::UnknownCA
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied),
        ) => format!(
            "the server refused our certificate (expired? revoked? wrong CA?): alert {alert:?}"
        ),
        other => format!("the TLS handshake with {} failed: {other}", host),
    }
}

/// Exponential backoff with full jitter, capped; a server's Retry-After is a floor.
fn backoff(retry: &RetrySettings, attempt: u32, retry_after: Option<u64>) -> Duration {
    let cap = retry
        .initial_backoff_ms
        .saturating_mul(1u64 << (attempt - 1).min(20))
        .min(retry.max_backoff_ms);
    let jittered = fastrand::u64(0..=cap);
    let floor = retry_after
        .map(|s| s.saturating_mul(1000))
        .unwrap_or(0)
        .min(retry.max_backoff_ms);
    Duration::from_millis(jittered.max(floor))
}

/// What a refusal tells the operator: a sentence per reason code the server sends, so the
/// worker's log says what to fix rather than a status number.
fn http_failure(status: StatusCode, problem: &Value, location: Option<&str>) -> WorkerError {
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return WorkerError::Transient(format!("the server answered {status}"));
    }
    if status.is_redirection() {
        return WorkerError::Refused(format!(
            "the server answered {status} to {}: route-worker follows no redirect (it would carry \
             the API key and the plan there); set server.url to dispatch-api's own address",
            location.unwrap_or("no Location")
        ));
    }
    let reason = problem["reason"].as_str().unwrap_or_default();
    let sentence = match (status.as_u16(), reason) {
        (_, "key_retired") => "the server says this client's API key is retired: configure the client certificate".to_owned(),
        (_, "key_expired") => "the server says this API key has expired (replaced by a rotation, or past its lifetime): put the client's new key in auth.api_key_file".to_owned(),
        (_, "cert_unmapped") => {
            "the server does not recognise this certificate: register its subject or SPIFFE ID".to_owned()
        }
        (_, "issuer_not_allowed") => "the server knows this certificate's name but not from this issuer: check the client's binding".to_owned(),
        (_, "method_not_allowed") => {
            "this client is in api_key mode on the server: an operator must move it to dual before it may use its certificate".to_owned()
        }
        (_, "cert_revoked") => "the server has revoked this certificate (or a CA certificate of its chain): get a new one".to_owned(),
        (_, "cert_expired") => "this client's certificate has expired (or is not valid yet): renew it; the worker picks up the new files by itself".to_owned(),
        (_, "cert_ambiguous") => "this certificate names more than one client to the server (several CNs or URI SANs, or bindings of two clients): issue one with a single name".to_owned(),
        (_, "cert_unreadable") => "the server could not read this certificate: reissue it with a standard X.509 encoding".to_owned(),
        (_, "credential_mismatch") => "the API key belongs to another client than the certificate: fix auth.api_key_file".to_owned(),
        (_, "client_disabled") => "this client is disabled on the server".to_owned(),
        (_, "policy_denied") => "this client may not do this (for plans it needs the plans:submit scope)".to_owned(),
        (401, _) => "the server did not accept our credentials: check auth.api_key_file or configure the client certificate".to_owned(),
        (422, _) if problem["errors"].is_array() => format!(
            "the server refused the plan: {}",
            problem["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| format!("{} {}", e["pointer"].as_str().unwrap_or(""), e["detail"].as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        _ => format!(
            "the server refused the request ({status}): {}",
            problem["detail"].as_str().or(problem["title"].as_str()).unwrap_or("no detail")
        ),
    };
    WorkerError::Refused(sentence)
}

/// Finds the rustls error inside awc's error, wherever the handshake or a later read put it
/// (with TLS 1.3 the server's verdict on our certificate arrives with the first response).
fn tls_error(error: &SendRequestError) -> Option<&rustls::Error> {
    match error {
        SendRequestError::Connect(ConnectError::Io(e)) | SendRequestError::Send(e) => inside_io(e),
        SendRequestError::Response(e) => find_in_chain(e),
        other => find_in_chain(other),
    }
}

fn inside_io(error: &io::Error) -> Option<&rustls::Error> {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
}

fn find_in_chain<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(tls) = e.downcast_ref::<io::Error>().and_then(inside_io) {
            return Some(tls);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sentence(status: u16, problem: Value) -> WorkerError {
        http_failure(StatusCode::from_u16(status).unwrap(), &problem, None)
    }

    #[test]
    fn a_redirect_is_a_refusal_that_names_its_location() {
        for status in [301, 302, 307, 308] {
            let refusal = http_failure(
                StatusCode::from_u16(status).unwrap(),
                &Value::Null,
                Some("http://elsewhere.example/api"),
            );
            let WorkerError::Refused(sentence) = refusal else {
                panic!("{status}: {refusal:?}")
            };
            assert!(
                sentence
                    .contains("to http://elsewhere.example/api: route-worker follows no redirect"),
                "{sentence}"
            );
        }
        let WorkerError::Refused(bare) = sentence(302, Value::Null) else {
            panic!()
        };
        assert!(bare.contains("302 Found to no Location"), "{bare}");
    }

    #[test]
    fn every_reason_code_gets_its_own_advice() {
        let table = [
            ("key_retired", "API key is retired"),
            ("key_expired", "API key has expired"),
            ("cert_unmapped", "does not recognise this certificate"),
            ("issuer_not_allowed", "not from this issuer"),
            ("method_not_allowed", "api_key mode"),
            ("cert_revoked", "revoked this certificate"),
            ("cert_expired", "certificate has expired"),
            ("cert_ambiguous", "names more than one client"),
            ("cert_unreadable", "could not read this certificate"),
            ("credential_mismatch", "belongs to another client"),
            ("client_disabled", "disabled on the server"),
            ("policy_denied", "may not do this"),
        ];
        for (reason, advice) in table {
            for status in [401, 403] {
                match sentence(status, json!({ "reason": reason })) {
                    WorkerError::Refused(text) => {
                        assert!(text.contains(advice), "{reason}: {text}")
                    }
                    other => panic!("{reason}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn refusals_without_a_reason_are_explained_by_status_and_plan_errors_by_pointer() {
        use WorkerError::Refused;
        let Refused(unknown) = sentence(401, json!({})) else {
            panic!()
        };
        assert!(
            unknown.contains("did not accept our credentials"),
            "{unknown}"
        );
        let Refused(plan) = sentence(
            422,
            json!({ "errors": [{ "pointer": "/stops/0", "detail": "too far" }] }),
        ) else {
            panic!()
        };
        assert_eq!(plan, "the server refused the plan: /stops/0 too far");
        let Refused(other) = sentence(422, json!({ "title": "Invalid plan" })) else {
            panic!()
        };
        assert!(
            other.contains("(422 Unprocessable Entity): Invalid plan"),
            "{other}"
        );
        let Refused(detail) = sentence(404, json!({ "title": "t", "detail": "d" })) else {
            panic!()
        };
        assert!(detail.ends_with(": d"), "{detail}");
    }

    #[test]
    fn backoff_grows_by_doubling_up_to_its_cap_with_full_jitter_and_honours_retry_after() {
        let retry = RetrySettings {
            max_attempts: 8,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
        };
        // The largest of many draws comes close to the cap of the attempt, never past it.
        let most = |attempt, retry_after| {
            (0..400)
                .map(|_| backoff(&retry, attempt, retry_after).as_millis() as u64)
                .max()
                .unwrap()
        };
        for (attempt, cap) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1_000),
            (30, 1_000),
        ] {
            let largest = most(attempt, None);
            assert!(
                largest <= cap && largest > cap * 3 / 4,
                "attempt {attempt}: {largest}"
            );
        }
        let least = (0..400)
            .map(|_| backoff(&retry, 1, None).as_millis() as u64)
            .min()
            .unwrap();
        assert!(least < 25, "full jitter starts near zero: {least}");
        // Retry-After is a floor, itself capped.
        assert!(backoff(&retry, 1, Some(0)) <= Duration::from_millis(100));
        assert_eq!(
            (0..50).map(|_| backoff(&retry, 1, Some(9))).min().unwrap(),
            Duration::from_millis(1_000)
        );
        let floor = RetrySettings {
            max_backoff_ms: 60_000,
            ..retry
        };
        assert!(backoff(&floor, 1, Some(2)) >= Duration::from_secs(2));
        assert!(backoff(&floor, 1, Some(2)) <= Duration::from_secs(2));
    }

    #[test]
    fn too_many_requests_and_server_errors_are_transient() {
        for status in [429, 500, 503] {
            assert!(
                matches!(
                    sentence(status, json!({ "reason": "key_retired" })),
                    WorkerError::Transient(_)
                ),
                "{status}"
            );
        }
        assert!(matches!(sentence(400, json!({})), WorkerError::Refused(_)));
    }

    fn retry(max_attempts: u32) -> RetrySettings {
        RetrySettings {
            max_attempts,
            initial_backoff_ms: 100,
            max_backoff_ms: 1_000,
        }
    }

    #[test]
    fn transient_failures_are_retried_until_the_attempts_run_out_and_refusals_never_are() {
        use WorkerError::{Refused, Transient};
        let transient = || Transient("503".into());
        // (attempt, max_attempts, failure) -> retried?
        for (attempt, max, retried) in [(1, 3, true), (2, 3, true), (3, 3, false), (4, 3, false)] {
            let next = after_failure("submit plan", transient(), attempt, &retry(max));
            assert_eq!(
                matches!(next, Next::Retry(_)),
                retried,
                "{attempt} of {max}"
            );
        }
        // Zero attempts configured still means one attempt, and no retry.
        assert!(matches!(
            after_failure("x", transient(), 1, &retry(0)),
            Next::GiveUp(_)
        ));
        let Next::GiveUp(Transient(gave_up)) =
            after_failure("submit plan", transient(), 3, &retry(3))
        else {
            panic!("a transient failure on the last attempt gives up as transient")
        };
        assert_eq!(gave_up, "submit plan: gave up after 3 attempts: 503");
        let Next::GiveUp(Refused(refused)) = after_failure("x", Refused("no".into()), 1, &retry(5))
        else {
            panic!("a refusal is given up at once, unchanged")
        };
        assert_eq!(refused, "no");
        let Next::Retry(Transient(kept)) = after_failure("x", transient(), 1, &retry(2)) else {
            panic!()
        };
        assert_eq!(kept, "503");
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_a_date_is_ignored() {
        use awc::http::header::{HeaderMap, HeaderName, HeaderValue};
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                HeaderName::from_static("retry-after"),
                HeaderValue::from_str(value).unwrap(),
            );
            retry_after_secs(&headers)
        };
        assert_eq!(with("7"), Some(7));
        assert_eq!(with(" 2 "), Some(2));
        assert_eq!(with("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after_secs(&HeaderMap::new()), None);
    }

    fn in_io(error: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }

    #[test]
    fn a_tls_failure_is_a_refusal_found_wherever_awc_put_it_and_other_failures_are_transient() {
        use WorkerError::{Refused, Transient};
        let unknown = || rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let base = "https://dispatch:8443";
        for error in [
            SendRequestError::Connect(ConnectError::Io(in_io(unknown()))),
            SendRequestError::Send(in_io(unknown())),
            SendRequestError::Response(in_io(unknown()).into()),
        ] {
            let Refused(sentence) = transport_failure(&error, base, "dispatch") else {
                panic!("{error:?} is a refusal")
            };
            assert!(sentence.contains("tls.ca_file"), "{sentence}");
        }
        let cases = [
            (
                SendRequestError::Connect(ConnectError::Io(
                    io::ErrorKind::ConnectionRefused.into(),
                )),
                "cannot connect to https://dispatch:8443: connection refused (is dispatch-api running?)",
            ),
            (
                SendRequestError::Connect(ConnectError::Io(io::ErrorKind::TimedOut.into())),
                "cannot connect to https://dispatch:8443: timed out",
            ),
            (
                SendRequestError::Connect(ConnectError::Timeout),
                "cannot connect to https://dispatch:8443: ",
            ),
            (
                SendRequestError::Timeout,
                "https://dispatch:8443 did not answer in time",
            ),
            (
                SendRequestError::Send(io::ErrorKind::BrokenPipe.into()),
                "the request to https://dispatch:8443 failed: ",
            ),
        ];
        for (error, start) in cases {
            let Transient(detail) = transport_failure(&error, base, "dispatch") else {
                panic!("{error:?} is transient")
            };
            assert!(detail.starts_with(start), "{detail}");
        }
        assert!(tls_error(&SendRequestError::Timeout).is_none());
        assert!(tls_error(&SendRequestError::Send(io::Error::other("plain"))).is_none());
    }

    #[test]
    fn each_tls_failure_names_what_to_fix() {
        use rustls::pki_types::ServerName;
        let table: Vec<(rustls::Error, &str)> = vec![
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                    expected: ServerName::try_from("dispatch").unwrap(),
                    presented: vec!["DnsName(\"other\")".into(), "IpAddress(1.2.3.4)".into()],
                }),
                "not valid for dispatch (it names DnsName(\"other\"), IpAddress(1.2.3.4))",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::NotValidForName),
                "the server's certificate is not valid for dispatch",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "not issued by the configured CA (tls.ca_file)",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                "the server's certificate has expired",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::BadSignature),
                "the server's certificate is not acceptable: ",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                "configure tls.cert_file and tls.key_file",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRevoked),
                "the server refused our certificate (expired? revoked? wrong CA?): alert CertificateRevoked",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                "alert UnknownCA",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::HandshakeFailure),
                "the TLS handshake with dispatch failed: ",
            ),
        ];
        for (error, expected) in table {
            let sentence = tls_sentence(&error, "dispatch");
            assert!(sentence.contains(expected), "{error:?}: {sentence}");
        }
    }

    fn client(max_attempts: u32) -> DispatchClient {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        DispatchClient {
            identity: None,
            http: std::cell::RefCell::new((awc::Client::default(), 0)),
            tls,
            timeout: Duration::from_secs(1),
            keep_alive: Duration::from_secs(1),
            base_url: "https://dispatch:8443".into(),
            host: "dispatch".into(),
            api_key: None,
            retry: RetrySettings {
                max_attempts,
                initial_backoff_ms: 1,
                max_backoff_ms: 2,
            },
        }
    }

    #[actix_rt::test]
    async fn the_retry_loop_sends_as_many_attempts_as_configured_and_a_refusal_once() {
        use std::cell::Cell;
        let sent = Cell::new(0);
        let timeout = client(3)
            .with_retries("submit plan", || {
                sent.set(sent.get() + 1);
                async { Err(SendRequestError::Timeout) }
            })
            .await;
        assert_eq!(sent.get(), 3);
        let Err(WorkerError::Transient(message)) = timeout else {
            panic!("{:?}", timeout.err())
        };
        assert!(
            message.starts_with("submit plan: gave up after 3 attempts: "),
            "{message}"
        );

        sent.set(0);
        let refused = client(3)
            .with_retries("submit plan", || {
                sent.set(sent.get() + 1);
                let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
                async move { Err(SendRequestError::Send(in_io(unknown))) }
            })
            .await;
        assert_eq!(sent.get(), 1);
        assert!(matches!(refused, Err(WorkerError::Refused(_))));
    }

    /// Writes a fresh certificate of `ca` and its key into `dir`: the client's identity files.
    fn write_identity(
        ca: &devpki::CertificateAuthority,
        dir: &std::path::Path,
    ) -> (crate::configuration::ClientTlsSettings, devpki::Issued) {
        let issued = ca
            .issue(&devpki::LeafSpec::workload(
                "route-worker",
                time::Duration::hours(1),
            ))
            .unwrap();
        let (ca_file, cert, key) = (dir.join("ca.pem"), dir.join("w.pem"), dir.join("w.key"));
        std::fs::write(&ca_file, &ca.cert_pem).unwrap();
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        let settings = crate::configuration::ClientTlsSettings {
            ca_file,
            cert_file: Some(cert),
            key_file: Some(key),
            ..Default::default()
        };
        (settings, issued)
    }

    fn test_ca() -> devpki::CertificateAuthority {
        devpki::CertificateAuthority::new("Client Test CA", "Test", time::Duration::days(1))
            .unwrap()
    }

    #[test]
    fn the_client_presents_what_its_identity_holds_and_none_without_one() {
        assert_eq!(client(1).presenting(), None);
        let dir = tempfile::tempdir().unwrap();
        let (settings, issued) = write_identity(&test_ca(), dir.path());
        let (_, identity) = crate::tls::client_config(&settings).unwrap();
        let with = DispatchClient {
            identity,
            ..client(1)
        };
        let (fingerprint, _) = with.presenting().unwrap();
        assert_eq!(fingerprint, devpki::sha256_hex(&issued.der));
    }

    #[actix_rt::test]
    async fn a_new_http_client_is_made_once_the_certificate_is_replaced_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let ca = test_ca();
        let (settings, _) = write_identity(&ca, dir.path());
        let (_, identity) = crate::tls::client_config(&settings).unwrap();
        let identity = identity.unwrap();
        let with = DispatchClient {
            identity: Some(identity.clone()),
            ..client(1)
        };
        let made_for = |client: &DispatchClient| {
            client.http();
            client.http.borrow().1
        };
        assert_eq!(made_for(&with), 0);
        identity.reload_if_changed();
        assert_eq!(made_for(&with), 0, "the same certificate: the same client");
        let renewed = tempfile::tempdir().unwrap();
        let (files, _) = write_identity(&ca, renewed.path());
        for (from, to) in [
            (
                files.cert_file.unwrap(),
                settings.cert_file.clone().unwrap(),
            ),
            (files.key_file.unwrap(), settings.key_file.clone().unwrap()),
        ] {
            std::fs::copy(from, to).unwrap();
        }
        identity.reload_if_changed();
        assert_eq!(made_for(&with), 1, "renewed: a client of its own");
        assert_eq!(made_for(&with), 1);
    }
}
