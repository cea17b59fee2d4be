//! Authentication: from what the connection and the request carry to a [`Principal`] or a
//! [`Refusal`] with a stable [`ReasonCode`]. Pure: it reads only the in-memory registry
//! snapshot, so every row of its decision table is a unit test (below); the middleware that
//! calls it is `routes::middleware::require_principal`.
//!
//! Order of decisions:
//! 1. A verified certificate decides. On every request, not only in the handshake, it must be
//!    inside the validity of every certificate of its path and of its anchor (`cert_expired`),
//!    its anchor must still be a CA of the bundle (`issuer_not_allowed`), no certificate of the
//!    path nor a CA of the bundle above its anchor may be revoked by a CRL or the deny list, nor
//!    left uncovered by its signer's partitioned CRLs (`cert_revoked`), and it must be bound
//!    to exactly one registered client (`cert_unmapped`, `issuer_not_allowed`,
//!    `cert_ambiguous`). An API key sent alongside that belongs to a different client is
//!    `credential_mismatch`.
//! 2. Without a certificate, the `X-Api-Key` header is hashed and looked up. A key in the query
//!    string is never read.
//! 3. The client's migration mode is enforced on every request, so a flip applies to the next
//!    request, also on an open keep-alive connection.

use std::sync::Arc;

use actix_web::http::header::HeaderMap;
use secrecy::SecretString;
use serde_json::json;

use time::OffsetDateTime;

use crate::identity::{AuthMethod, ConnectionIdentity, VerifiedCertificate};
use crate::registry::{ApiKeyHash, CertMatchFailure, Client, MigrationMode, RegistrySnapshot};
use crate::tls::{PathFailure, Trust};

/// Who is calling: a registered client, how it proved it, and (for certificates) what it showed.
#[derive(Debug, Clone)]
pub struct Principal {
    pub client: Arc<Client>,
    pub method: AuthMethod,
    pub certificate: Option<Arc<VerifiedCertificate>>,
    /// The certificate authenticated an `mtls` client that also sent its own, retired, key:
    /// accepted (the certificate decides) but raised as an alert.
    pub retired_key_presented: bool,
    /// The key that authenticated it (`method` is `api_key`): whose use each key's record counts.
    pub key: Option<ApiKeyHash>,
}

/// A refusal with what is known of the caller, for the audit log. The caller sees only the
/// coarse problem type (and, if it proved it holds something we issued, the reason code); the
/// detail goes to the operator.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub reason: ReasonCode,
    pub client: Option<String>,
    pub method: Option<AuthMethod>,
    pub detail: serde_json::Value,
    /// For a refusal by the client's mode alone (`key_retired`, `method_not_allowed`): who the
    /// caller proved to be. Only a reverted guard's reopening may let it in (the middleware
    /// asks); nothing else reads it.
    pub readmits: Option<Box<Principal>>,
    /// A certificate refused though bindings name its client (its mode, a disabled client) or
    /// clients (`cert_ambiguous`): still evidence of whose it is, kept for the tryout
    /// (`storage::recorder`), so that no change hands it to another client meanwhile.
    pub evidence: Option<RefusedCertificate>,
}

/// A refused certificate and the clients whose bindings name it.
#[derive(Debug, Clone)]
pub struct RefusedCertificate {
    pub certificate: Arc<VerifiedCertificate>,
    pub clients: Vec<String>,
}

pub const API_KEY_HEADER: &str = "x-api-key";

/// The longest API key header we look at; anything longer is not one of our keys.
const MAX_KEY_LENGTH: usize = 256;

/// What the request carried in the way of an API key.
enum KeyHeader {
    Absent,
    Present(SecretString),
    /// Several headers, non-visible-ASCII or overlong: never a valid key.
    Malformed,
}

fn read_key_header(headers: &HeaderMap) -> KeyHeader {
    let mut values = headers.get_all(API_KEY_HEADER);
    let Some(value) = values.next() else {
        return KeyHeader::Absent;
    };
    if values.next().is_some() {
        return KeyHeader::Malformed;
    }
    match value.to_str() {
        Ok(text) if !text.trim().is_empty() && text.len() <= MAX_KEY_LENGTH => {
            KeyHeader::Present(SecretString::from(text.trim().to_owned()))
        }
        _ => KeyHeader::Malformed,
    }
}

/// Decides who the caller is. Pure: the snapshot, the trust (CA bundle and CRLs), the
/// connection, the headers and the time in, an answer out; its decision table is tested row by
/// row below.
pub fn authenticate(
    snapshot: &RegistrySnapshot,
    trust: &Trust,
    connection: &ConnectionIdentity,
    headers: &HeaderMap,
    now: OffsetDateTime,
) -> Result<Principal, Box<Refusal>> {
    let key = read_key_header(headers);
    match connection {
        ConnectionIdentity::Certificate(cert) => by_certificate(snapshot, trust, cert, &key, now),
        ConnectionIdentity::Unverified { kind, detail } => Err(refusal(
            match *kind {
                "revoked" | "expired_crl" => ReasonCode::CertRevoked,
                "expired" | "not_yet_valid" => ReasonCode::CertExpired,
                _ => ReasonCode::IssuerNotAllowed,
            },
            None,
            Some(AuthMethod::Certificate),
            json!({ "certificate": detail }),
        )),
        ConnectionIdentity::Unreadable(why) => Err(refusal(
            ReasonCode::CertUnreadable,
            None,
            Some(AuthMethod::Certificate),
            json!({ "certificate": why }),
        )),
        ConnectionIdentity::Anonymous => by_key(snapshot, key, now),
    }
}

/// A verified certificate: in date, its path not revoked, bound to exactly one client, no
/// other client's key beside it; then the client's mode decides.
fn by_certificate(
    snapshot: &RegistrySnapshot,
    trust: &Trust,
    cert: &Arc<VerifiedCertificate>,
    key: &KeyHeader,
    now: OffsetDateTime,
) -> Result<Principal, Box<Refusal>> {
    let certificate_refusal = |reason| {
        refusal(
            reason,
            None,
            Some(AuthMethod::Certificate),
            certificate_detail(cert),
        )
    };
    if now < cert.not_before || now > cert.not_after {
        return Err(certificate_refusal(ReasonCode::CertExpired));
    }
    // The deny list reaches every certificate of the anchor's key and of the CA keys of
    // the bundle above it here (the path's own certificates are checked with the
    // binding, below).
    if let Err(failure) = trust.check_path(cert, now, |ca| snapshot.is_revoked(ca)) {
        let (reason, detail) = path_refusal(failure);
        let mut refused = certificate_refusal(reason);
        refused.detail["revocation"] = detail;
        return Err(refused);
    }
    let client = snapshot
        .client_for_certificate(cert, trust.issuers())
        .map_err(|failure| {
            let mut refused = certificate_refusal(match failure {
                CertMatchFailure::Revoked => ReasonCode::CertRevoked,
                CertMatchFailure::Unmapped => ReasonCode::CertUnmapped,
                CertMatchFailure::IssuerNotAllowed => ReasonCode::IssuerNotAllowed,
                CertMatchFailure::Ambiguous => ReasonCode::CertAmbiguous,
            });
            if failure == CertMatchFailure::Ambiguous {
                refused.evidence = Some(RefusedCertificate {
                    certificate: cert.clone(),
                    clients: snapshot.clients_naming(cert, trust.issuers()),
                });
            }
            refused
        })?;
    let mut retired_key_presented = false;
    match key {
        KeyHeader::Present(secret) => {
            match snapshot.client_for_key(&ApiKeyHash::of(secret)) {
                Some((owner, _)) if owner.name != client.name => {
                    let mut detail = certificate_detail(cert);
                    detail["key_client"] = json!(owner.name.as_str());
                    return Err(refusal(
                        ReasonCode::CredentialMismatch,
                        Some(client),
                        Some(AuthMethod::Certificate),
                        detail,
                    ));
                }
                Some(_) => retired_key_presented = client.mode == MigrationMode::Mtls,
                // The certificate decides; an unknown key beside it changes nothing.
                None => {}
            }
        }
        KeyHeader::Malformed | KeyHeader::Absent => {}
    }
    enforce_mode(
        Principal {
            client: client.clone(),
            method: AuthMethod::Certificate,
            certificate: Some(cert.clone()),
            retired_key_presented,
            key: None,
        },
        || certificate_detail(cert),
    )
}

/// Why a certificate's path is refused, in the reason code and the detail the caller gets.
fn path_refusal(failure: PathFailure) -> (ReasonCode, serde_json::Value) {
    match failure {
        PathFailure::Revoked { fingerprint } => (
            ReasonCode::CertRevoked,
            json!({ "revoked_by_crl": fingerprint }),
        ),
        PathFailure::Denied { fingerprint } => {
            (ReasonCode::CertRevoked, json!({ "denied_ca": fingerprint }))
        }
        PathFailure::CrlExpired { crl, .. } => (
            ReasonCode::CertRevoked,
            json!({ "crl_past_next_update": crl.display().to_string() }),
        ),
        PathFailure::StatusUnknown { fingerprint } => (
            ReasonCode::CertRevoked,
            json!({ "no_crl_covers": fingerprint }),
        ),
        // The CA the path ends at is no longer trusted: the same answer as a
        // resumed session whose chain no longer verifies.
        PathFailure::AnchorRemoved { anchor } => (
            ReasonCode::IssuerNotAllowed,
            json!({ "anchor_no_longer_in_bundle": anchor }),
        ),
        PathFailure::AnchorExpired { anchor, .. } => {
            (ReasonCode::CertExpired, json!({ "anchor_expired": anchor }))
        }
    }
}

/// No certificate: an API key, known, not expired; then the client's mode decides.
fn by_key(
    snapshot: &RegistrySnapshot,
    key: KeyHeader,
    now: OffsetDateTime,
) -> Result<Principal, Box<Refusal>> {
    let secret = match key {
        KeyHeader::Absent => {
            return Err(refusal(ReasonCode::NoCredentials, None, None, json!({})));
        }
        KeyHeader::Malformed => {
            return Err(refusal(
                ReasonCode::KeyInvalid,
                None,
                Some(AuthMethod::ApiKey),
                json!({ "key": "malformed header" }),
            ));
        }
        KeyHeader::Present(secret) => secret,
    };
    let hash = ApiKeyHash::of(&secret);
    // A short prefix of the key's hash tells an operator which key it was, and reveals
    // nothing about the key.
    let detail = || json!({ "key_sha256_prefix": &hash.to_hex()[..12] });
    let (client, stored) = snapshot.client_for_key(&hash).ok_or_else(|| {
        refusal(
            ReasonCode::KeyInvalid,
            None,
            Some(AuthMethod::ApiKey),
            detail(),
        )
    })?;
    // An expired key first: whatever the client's mode, that key is dead (and a flip
    // guard must not count it as a refusal its flip caused).
    if let Some(expired_at) = stored
        .expires_at
        .filter(|_| stored.expired(now.unix_timestamp()))
    {
        let mut detail = detail();
        detail["expired_at"] = json!(expired_at);
        return Err(refusal(
            ReasonCode::KeyExpired,
            Some(client),
            Some(AuthMethod::ApiKey),
            detail,
        ));
    }
    enforce_mode(
        Principal {
            client: client.clone(),
            method: AuthMethod::ApiKey,
            certificate: None,
            retired_key_presented: false,
            key: Some(hash),
        },
        detail,
    )
}

/// The client's state and mode decide whether `principal` is let in. A refusal for the mode
/// alone carries the principal it would have been: a reverted guard's reopening
/// (`registry::Reopening`) may still let it in from the networks it names.
fn enforce_mode(
    principal: Principal,
    detail: impl Fn() -> serde_json::Value,
) -> Result<Principal, Box<Refusal>> {
    let client = &principal.client;
    let method = principal.method;
    // Refused, the certificate is still this client's.
    let evidence = || {
        principal
            .certificate
            .clone()
            .map(|certificate| RefusedCertificate {
                certificate,
                clients: vec![client.name.to_string()],
            })
    };
    if client.disabled {
        let mut refused = refusal(
            ReasonCode::ClientDisabled,
            Some(client),
            Some(method),
            detail(),
        );
        refused.evidence = evidence();
        return Err(refused);
    }
    if client.mode.accepts(method) {
        return Ok(principal);
    }
    let reason = match method {
        AuthMethod::ApiKey => ReasonCode::KeyRetired,
        AuthMethod::Certificate => ReasonCode::MethodNotAllowed,
    };
    let mut detail = detail();
    detail["mode"] = json!(client.mode.as_str());
    let mut refused = refusal(reason, Some(client), Some(method), detail);
    refused.evidence = evidence();
    refused.readmits = Some(Box::new(principal));
    Err(refused)
}

fn refusal(
    reason: ReasonCode,
    client: Option<&Arc<Client>>,
    method: Option<AuthMethod>,
    detail: serde_json::Value,
) -> Box<Refusal> {
    Box::new(Refusal {
        reason,
        client: client.map(|c| c.name.to_string()),
        method,
        detail,
        readmits: None,
        evidence: None,
    })
}

/// What the operator needs to fix a binding: the names as printed (escaped, RFC 4514, in DER
/// order), the key that signed the leaf, and the URI SANs.
pub fn certificate_detail(cert: &VerifiedCertificate) -> serde_json::Value {
    json!({
        "subject": cert.leaf.subject.as_str(),
        "issuer": cert.leaf.issuer.as_str(),
        "issuer_spki_sha256": cert.issuer_spki,
        "fingerprint": cert.leaf.fingerprint.to_string(),
        "uri_sans": cert.leaf.uri_sans,
        "not_after": cert.not_after.unix_timestamp(),
    })
}

mod reason;
pub mod tryout;

pub use reason::ReasonCode;

#[cfg(test)]
mod tests;
