//! What a peer proved: the certificate it presented, parsed once per connection in
//! `on_connect` ([`record_peer_identity`]), as data rather than strings.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::telemetry::Metrics;

/// SHA-256 of a certificate's DER encoding. Shown and accepted as lowercase hex; colons and
/// upper case are accepted on input because that is how `openssl x509 -fingerprint` prints it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of_der(der: &[u8]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Self(bytes)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let compact: String = text.trim().chars().filter(|c| *c != ':').collect();
        let bytes = hex::decode(&compact)
            .map_err(|_| format!("`{text}` is not a hex SHA-256 fingerprint"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("`{text}` is not 32 bytes long (a SHA-256 fingerprint)"))?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An X.500 distinguished name compared by its attributes, not by how a tool happened to print
/// it: `CN=a, O=b`, `O=b,CN=a` and `o = b, cn = a` are the same name. Bindings are written by
/// people (or copied from `openssl x509 -issuer` or `/api/whoami`), so this matters.
#[derive(Clone)]
pub struct DistinguishedName {
    display: String,
    canonical: String,
}

impl PartialEq for DistinguishedName {
    fn eq(&self, other: &Self) -> bool {
        self.canonical == other.canonical
    }
}

impl Eq for DistinguishedName {}

impl std::hash::Hash for DistinguishedName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.canonical.hash(state);
    }
}

impl DistinguishedName {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut attributes = Vec::new();
        for part in split_unescaped(text, &[',', '+', '/']) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` in `{text}` is not of the form KEY=value"))?;
            let key = canonical_attribute(key.trim());
            attributes.push(format!("{key}={}", value.trim()));
        }
        if attributes.is_empty() {
            return Err(format!("`{text}` names no attributes"));
        }
        attributes.sort();
        Ok(Self {
            display: text.trim().to_owned(),
            canonical: attributes.join(","),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.display
    }
}

fn canonical_attribute(key: &str) -> String {
    match key.to_ascii_uppercase().as_str() {
        "COMMONNAME" | "2.5.4.3" => "CN".into(),
        "ORGANIZATIONNAME" | "2.5.4.10" => "O".into(),
        "ORGANIZATIONALUNITNAME" | "2.5.4.11" => "OU".into(),
        "COUNTRYNAME" | "2.5.4.6" => "C".into(),
        "LOCALITYNAME" | "2.5.4.7" => "L".into(),
        "STATEORPROVINCENAME" | "2.5.4.8" => "ST".into(),
        other => other.to_owned(),
    }
}

/// Splits on any of `separators` unless escaped with a backslash (RFC 4514).
fn split_unescaped<'a>(text: &'a str, separators: &[char]) -> Vec<&'a str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if separators.contains(&c) {
            parts.push(&text[start..index]);
            start = index + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

impl fmt::Display for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display)
    }
}

impl fmt::Debug for DistinguishedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DistinguishedName({})", self.display)
    }
}

impl Serialize for DistinguishedName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.display)
    }
}

/// A SPIFFE ID (`spiffe://trust-domain/path`) as carried in a URI SAN.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(transparent)]
pub struct SpiffeId(String);

impl SpiffeId {
    pub fn parse(text: &str) -> Result<Self, String> {
        let rest = text
            .strip_prefix("spiffe://")
            .ok_or_else(|| format!("`{text}` is not a SPIFFE ID (spiffe://trust-domain/path)"))?;
        let domain = rest.split('/').next().unwrap_or_default();
        if domain.is_empty() || text.len() > 2048 || text.contains(['?', '#']) {
            return Err(format!("`{text}` is not a valid SPIFFE ID"));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The leaf certificate a client presented, reduced to what identity decisions need. Parsed once
/// per connection (in `on_connect`), not once per request.
#[derive(Debug, Clone, Serialize)]
pub struct PeerCertificate {
    pub fingerprint: Fingerprint,
    pub subject: DistinguishedName,
    pub issuer: DistinguishedName,
    /// Every CN in the subject, in order (a subject may have none or several).
    pub common_names: Vec<String>,
    pub spiffe_ids: Vec<SpiffeId>,
    pub dns_names: Vec<String>,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

impl PeerCertificate {
    /// Parses a DER certificate. The TLS layer has already verified the chain; this only reads.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("the certificate could not be parsed: {e}"))?;
        let text = |name: &x509_parser::x509::X509Name<'_>| {
            let shown = name.to_string();
            DistinguishedName::parse(&shown).or_else(|_| {
                // An empty or exotic name still gets a stable, comparable form.
                Ok::<_, String>(DistinguishedName {
                    display: shown.clone(),
                    canonical: shown,
                })
            })
        };
        let common_names = cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
            .collect();
        let mut spiffe_ids = Vec::new();
        let mut dns_names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) => {
                        if let Ok(id) = SpiffeId::parse(uri) {
                            spiffe_ids.push(id);
                        }
                    }
                    GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                    _ => {}
                }
            }
        }
        let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .map_err(|e| format!("the certificate's notAfter is out of range: {e}"))?;
        Ok(Self {
            fingerprint: Fingerprint::of_der(der),
            subject: text(cert.subject())?,
            issuer: text(cert.issuer())?,
            common_names,
            spiffe_ids,
            dns_names,
            serial: cert.raw_serial_as_string(),
            not_after,
        })
    }
}

/// What the connection proved at the TLS layer, stored in connection data by `on_connect`.
#[derive(Debug, Clone)]
pub enum ConnectionIdentity {
    /// No TLS client certificate was presented (allowed in `optional` mode).
    Anonymous,
    /// A certificate that chained to the client CA bundle (the handshake checked that).
    Certificate(Arc<PeerCertificate>),
    /// The handshake accepted a certificate that we could not read; never authenticates.
    Unreadable(String),
}

/// How a principal authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ApiKey,
    Certificate,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Certificate => "certificate",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "api_key" => Some(Self::ApiKey),
            "certificate" => Some(Self::Certificate),
            _ => None,
        }
    }
}

/// `HttpServer::on_connect`: stores what the TLS layer proved about the peer in connection data.
/// The leaf is the FIRST certificate of the peer chain.
pub fn record_peer_identity(connection: &dyn Any, data: &mut Extensions, metrics: &Metrics) {
    let Some(tls) = connection.downcast_ref::<TlsStream<TcpStream>>() else {
        return;
    };
    metrics.handshake(match tls.get_ref().1.handshake_kind() {
        Some(rustls::HandshakeKind::Resumed) => "resumed",
        _ => "full",
    });
    let identity = match tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
    {
        None => ConnectionIdentity::Anonymous,
        Some(leaf) => match PeerCertificate::from_der(leaf) {
            Ok(cert) => ConnectionIdentity::Certificate(Arc::new(cert)),
            Err(reason) => ConnectionIdentity::Unreadable(reason),
        },
    };
    data.insert(identity);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinguished_names_compare_by_attributes_not_by_spelling() {
        let a = DistinguishedName::parse("CN=Dispatch CA, O=Acme").unwrap();
        let b = DistinguishedName::parse("O=Acme,CN=Dispatch CA").unwrap();
        let c = DistinguishedName::parse("o = Acme , commonName = Dispatch CA").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_ne!(a, DistinguishedName::parse("CN=Other CA, O=Acme").unwrap());
    }

    #[test]
    fn escaped_commas_stay_inside_a_value() {
        let a = DistinguishedName::parse(r"CN=Dispatch\, Inc, O=Acme").unwrap();
        assert_eq!(a.canonical, r"CN=Dispatch\, Inc,O=Acme");
    }

    #[test]
    fn empty_distinguished_name_is_refused() {
        assert!(DistinguishedName::parse(" , ").is_err());
    }

    #[test]
    fn fingerprints_accept_openssl_colon_form() {
        let hex = "AB".repeat(32);
        let colon: Vec<String> = (0..32).map(|_| "ab".to_owned()).collect();
        assert_eq!(
            Fingerprint::parse(&hex).unwrap(),
            Fingerprint::parse(&colon.join(":")).unwrap()
        );
        assert!(Fingerprint::parse("abcd").is_err());
        assert!(Fingerprint::parse(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn spiffe_ids_need_the_scheme_and_a_trust_domain() {
        assert!(SpiffeId::parse("spiffe://dispatch.internal/route-worker").is_ok());
        assert!(SpiffeId::parse("https://dispatch.internal/route-worker").is_err());
        assert!(SpiffeId::parse("spiffe:///route-worker").is_err());
    }

    #[test]
    fn spiffe_ids_are_bounded_and_carry_no_query_or_fragment() {
        let prefix = "spiffe://d/";
        let longest = format!("{prefix}{}", "a".repeat(2048 - prefix.len()));
        assert_eq!(SpiffeId::parse(&longest).unwrap().as_str(), longest);
        assert!(SpiffeId::parse(&format!("{longest}a")).is_err());
        assert!(SpiffeId::parse("spiffe://d/w?x=1").is_err());
        assert!(SpiffeId::parse("spiffe://d/w#part").is_err());
    }

    #[test]
    fn names_and_fingerprints_print_as_written() {
        let name = DistinguishedName::parse("CN=a, O=b").unwrap();
        assert_eq!(name.to_string(), "CN=a, O=b");
        assert_eq!(format!("{name:?}"), "DistinguishedName(CN=a, O=b)");
        let fingerprint = Fingerprint::of_der(b"x");
        assert_eq!(
            format!("{fingerprint:?}"),
            format!("Fingerprint({fingerprint})")
        );
        assert_eq!(fingerprint.to_string().len(), 64);
    }

    #[test]
    fn equal_names_hash_alike_and_different_names_do_not() {
        use std::hash::{BuildHasher, RandomState};
        let hasher = RandomState::new();
        let a = DistinguishedName::parse("CN=a, O=b").unwrap();
        let same = DistinguishedName::parse("O=b,CN=a").unwrap();
        let other = DistinguishedName::parse("CN=c, O=b").unwrap();
        assert_eq!(hasher.hash_one(&a), hasher.hash_one(&same));
        assert_ne!(hasher.hash_one(&a), hasher.hash_one(&other));
    }

    #[test]
    fn a_certificate_yields_its_spiffe_ids_and_dns_names() {
        use devpki::{CertificateAuthority, LeafSpec};
        let ca = CertificateAuthority::dev(time::Duration::days(1)).unwrap();
        let workload = ca
            .issue(&LeafSpec::workload(
                "route-worker",
                time::Duration::hours(1),
            ))
            .unwrap();
        let cert = PeerCertificate::from_der(&workload.der).unwrap();
        assert_eq!(cert.common_names, ["route-worker"]);
        let ids: Vec<_> = cert.spiffe_ids.iter().map(SpiffeId::as_str).collect();
        assert_eq!(
            ids,
            [format!("spiffe://{}/route-worker", devpki::TRUST_DOMAIN)]
        );
        let server = ca
            .issue(&LeafSpec::server(time::Duration::hours(1)))
            .unwrap();
        let cert = PeerCertificate::from_der(&server.der).unwrap();
        assert!(
            cert.dns_names.contains(&"localhost".to_owned()),
            "{:?}",
            cert.dns_names
        );
        assert!(cert.spiffe_ids.is_empty());
    }

    #[test]
    fn auth_methods_have_stable_names_that_parse_back() {
        for (method, name) in [
            (AuthMethod::ApiKey, "api_key"),
            (AuthMethod::Certificate, "certificate"),
        ] {
            assert_eq!(method.as_str(), name);
            assert_eq!(AuthMethod::parse(name), Some(method));
            assert_eq!(serde_json::to_value(method).unwrap(), name);
        }
        assert_eq!(AuthMethod::parse("password"), None);
    }

    #[test]
    fn arbitrary_bytes_are_an_error_not_a_panic() {
        assert!(PeerCertificate::from_der(b"not a certificate").is_err());
        assert!(PeerCertificate::from_der(&[]).is_err());
    }
}
