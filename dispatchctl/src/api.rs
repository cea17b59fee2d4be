//! The admin API over mutual TLS: the operator's certificate, the internal CA, nothing else.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use awc::http::StatusCode;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::configuration::Settings;
use crate::error::CtlError;

fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, CtlError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| CtlError::Config(format!("{what} `{}`: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(CtlError::Config(format!(
            "{what} `{}` holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The rustls client configuration: trusts only `tls.ca_file`, presents the operator's
/// certificate. Server verification cannot be turned off.
pub fn tls_config(settings: &Settings) -> Result<ClientConfig, CtlError> {
    let mut roots = RootCertStore::empty();
    for ca in certificates(&settings.tls.ca_file, "the CA bundle")? {
        roots
            .add(ca)
            .map_err(|e| CtlError::Config(format!("the CA bundle: {e}")))?;
    }
    let (Some(cert_file), Some(key_file)) = (&settings.tls.cert_file, &settings.tls.key_file)
    else {
        return Err(CtlError::Config(
            "tls.cert_file and tls.key_file are required".into(),
        ));
    };
    let chain = certificates(cert_file, "the operator's certificate")?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        CtlError::Config(format!("the operator's key `{}`: {e}", key_file.display()))
    })?;
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| CtlError::Config(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| CtlError::Config(format!("the operator's certificate and key: {e}")))
}

/// A client of the admin API.
pub struct Admin {
    http: awc::Client,
    base: String,
}

impl Admin {
    pub fn new(settings: &Settings) -> Result<Self, CtlError> {
        settings.validate()?;
        let tls = tls_config(settings)?;
        let timeout = Duration::from_secs(settings.server.timeout_secs);
        let http = dispatch_tls::https_client(tls, timeout, None);
        Ok(Self {
            http,
            base: settings.server.url.trim_end_matches('/').to_owned(),
        })
    }

    /// A read: the answer read as `A` (its type in dispatch_types).
    pub async fn get<A: DeserializeOwned>(&self, path: &str) -> Result<A, CtlError> {
        let answer = self.send(self.http.get(self.url(path)), None).await?;
        self.read(answer)
    }

    /// A change: `body` (one of dispatch_types' requests) sent, the answer read as `A` (its
    /// answer's type there).
    pub async fn put<B: Serialize, A: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<A, CtlError> {
        self.typed(self.http.put(self.url(path)), body).await
    }

    pub async fn post<B: Serialize, A: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<A, CtlError> {
        self.typed(self.http.post(self.url(path)), body).await
    }

    pub async fn delete<B: Serialize, A: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<A, CtlError> {
        self.typed(self.http.delete(self.url(path)), body).await
    }

    async fn typed<B: Serialize, A: DeserializeOwned>(
        &self,
        request: awc::ClientRequest,
        body: &B,
    ) -> Result<A, CtlError> {
        let body = serde_json::to_value(body)
            .map_err(|e| CtlError::Config(format!("the request cannot be written: {e}")))?;
        let answer = self.send(request, Some(body)).await?;
        self.read(answer)
    }

    /// An answer read as its type: one this dispatchctl cannot read is from another version.
    fn read<A: DeserializeOwned>(&self, answer: Value) -> Result<A, CtlError> {
        serde_json::from_value(answer).map_err(|e| {
            CtlError::Unreachable(format!(
                "{}: an answer this dispatchctl does not read ({e}): is it the server's version?",
                self.base
            ))
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        request: awc::ClientRequest,
        body: Option<Value>,
    ) -> Result<Value, CtlError> {
        let sent = match body {
            Some(body) => request.send_json(&body).await,
            None => request.send().await,
        };
        let mut response =
            sent.map_err(|e| CtlError::Unreachable(format!("{}: {e}", self.base)))?;
        let status = response.status();
        let bytes = response.body().limit(16 * 1024 * 1024).await.map_err(|e| {
            CtlError::Unreachable(format!("{}: reading the answer: {e}", self.base))
        })?;
        let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        Err(refusal(status, &value))
    }
}

/// A problem document as an error: its type's last segment, and its detail (or title).
pub fn refusal(status: StatusCode, problem: &Value) -> CtlError {
    let kind = problem["type"]
        .as_str()
        .and_then(|t| t.rsplit(':').next())
        .unwrap_or("unknown")
        .to_owned();
    let mut detail = problem["detail"]
        .as_str()
        .or(problem["title"].as_str())
        .unwrap_or("no detail")
        .to_owned();
    if let Some(reason) = problem["reason"].as_str() {
        detail = format!("{detail} (reason: {reason})");
    }
    CtlError::Refused {
        status: status.as_u16(),
        detail: format!("{kind}: {detail}"),
        kind,
    }
}

/// The certificate chain the server presents, read with a handshake of our own (awc does not
/// show it): `check` needs its notAfter.
pub async fn server_chain(settings: &Settings) -> Result<Vec<CertificateDer<'static>>, CtlError> {
    let url: awc::http::Uri = settings
        .server
        .url
        .parse()
        .map_err(|e| CtlError::Config(format!("server.url: {e}")))?;
    let host = url.host().unwrap_or_default().to_owned();
    let port = url.port_u16().unwrap_or(443);
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_config(settings)?));
    let unreachable = |e: std::io::Error| CtlError::Unreachable(format!("{host}:{port}: {e}"));
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(unreachable)?;
    let name = rustls_pki_types::ServerName::try_from(host.clone())
        .map_err(|e| CtlError::Config(format!("server.url host: {e}")))?;
    let tls = connector.connect(name, tcp).await.map_err(unreachable)?;
    Ok(tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.to_vec())
        .unwrap_or_default())
}

/// notAfter (unix seconds) and subject of a DER certificate.
pub fn not_after(der: &[u8]) -> Option<(i64, String)> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    X509Certificate::from_der(der).ok().map(|(_, cert)| {
        (
            cert.validity().not_after.timestamp(),
            cert.subject().to_string(),
        )
    })
}

/// The CAs of `tls.ca_file`, for `check`.
pub fn ca_certificates(settings: &Settings) -> Result<Vec<CertificateDer<'static>>, CtlError> {
    certificates(&settings.tls.ca_file, "the CA bundle")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_problem_document_becomes_a_refusal_naming_its_type_detail_and_reason() {
        let error = refusal(
            StatusCode::CONFLICT,
            &json!({"type": "urn:dispatch-api:problem:last-admin", "title": "t", "detail": "d", "status": 409}),
        );
        assert_eq!(error.to_string(), "409: last-admin: d");
        assert_eq!(error.exit_code(), 3);
        let forbidden = refusal(
            StatusCode::FORBIDDEN,
            &json!({"type": "urn:dispatch-api:problem:forbidden", "title": "Forbidden", "reason": "policy_denied"}),
        );
        assert_eq!(
            forbidden.to_string(),
            "403: forbidden: Forbidden (reason: policy_denied)"
        );
        assert_eq!(
            refusal(StatusCode::BAD_GATEWAY, &Value::Null).to_string(),
            "502: unknown: no detail"
        );
        assert_eq!(CtlError::Config("x".into()).exit_code(), 2);
        assert_eq!(CtlError::Unreachable("x".into()).exit_code(), 4);
    }
}
