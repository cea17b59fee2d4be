//! The CA itself: certificates and CRLs made with rcgen, and the errors of the whole crate.

use std::net::IpAddr;
use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use crate::TRUST_DOMAIN;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("`{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` exists; pass --force to overwrite", .0.display())]
    Exists(PathBuf),
    #[error("the operating system's random source failed")]
    Random,
}

/// What a certificate may be used for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    /// No EKU at all (accepted for any purpose by webpki).
    Unrestricted,
}

/// A leaf certificate to issue.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub uris: Vec<String>,
    pub usage: Usage,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// A certificate valid from a minute ago for `lifetime`.
    pub fn new(common_name: &str, usage: Usage, lifetime: Duration) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: common_name.to_owned(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            uris: Vec::new(),
            usage,
            not_before: now - Duration::minutes(1),
            not_after: now + lifetime,
        }
    }

    /// The dispatch-api server certificate: serverAuth, names `dispatch-api`, `localhost`, 127.0.0.1.
    pub fn server(lifetime: Duration) -> Self {
        let mut spec = Self::new("dispatch-api", Usage::Server, lifetime);
        spec.dns_names = vec!["dispatch-api".into(), "localhost".into()];
        spec.ip_addresses = vec![IpAddr::from([127, 0, 0, 1])];
        spec
    }

    /// A workload client certificate: clientAuth, CN and SPIFFE ID `spiffe://dispatch.internal/<name>`.
    pub fn workload(name: &str, lifetime: Duration) -> Self {
        let mut spec = Self::new(name, Usage::Client, lifetime);
        spec.uris = vec![format!("spiffe://{TRUST_DOMAIN}/{name}")];
        spec
    }
}

/// A PEM certificate and its PEM private key.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    /// The serial number, for revocation lists.
    pub serial: Vec<u8>,
}

/// A certificate authority that can issue leaves.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub key_pem: String,
}

pub(crate) fn random_serial() -> Result<SerialNumber, PkiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Random)?;
    bytes[0] &= 0x7f; // a positive INTEGER
    Ok(SerialNumber::from_slice(&bytes))
}

/// The parameters of a CA certificate (root or intermediate): subject CN and O (none when
/// empty), may sign
/// certificates and CRLs, valid from a minute ago for `lifetime`.
fn ca_params(
    common_name: &str,
    organization: &str,
    lifetime: Duration,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if !organization.is_empty() {
        params
            .distinguished_name
            .push(DnType::OrganizationName, organization);
    }
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = OffsetDateTime::now_utc() - Duration::minutes(1);
    params.not_after = OffsetDateTime::now_utc() + lifetime;
    params.serial_number = Some(random_serial()?);
    Ok(params)
}

impl CertificateAuthority {
    /// A new self-signed root with the given subject CN and organisation.
    pub fn new(
        common_name: &str,
        organization: &str,
        lifetime: Duration,
    ) -> Result<Self, PkiError> {
        let params = ca_params(common_name, organization, lifetime)?;
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// An intermediate CA signed by this one (for chains of three in tests): it can issue
    /// leaves, and its `cert_pem` is the intermediate's certificate.
    pub fn intermediate(
        &self,
        common_name: &str,
        organization: &str,
        lifetime: Duration,
    ) -> Result<Self, PkiError> {
        let mut params = ca_params(common_name, organization, lifetime)?;
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let key_pem = key.serialize_pem();
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// The DER of this CA's certificate.
    pub fn cert_der(&self) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(self.cert_pem.as_bytes())
            .expect("rcgen wrote this PEM")
            .1
            .contents
    }

    /// The dev CA (`CN=Dispatch Dev Internal CA, O=Dispatch Dev`).
    pub fn dev(lifetime: Duration) -> Result<Self, PkiError> {
        Self::new("Dispatch Dev Internal CA", "Dispatch Dev", lifetime)
    }

    /// A CA from its PEM certificate and key, to issue more leaves.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            issuer,
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.as_str());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match spec.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::Unrestricted => vec![],
        };
        let mut sans = Vec::new();
        for dns in &spec.dns_names {
            sans.push(SanType::DnsName(dns.as_str().try_into()?));
        }
        for ip in &spec.ip_addresses {
            sans.push(SanType::IpAddress(*ip));
        }
        for uri in &spec.uris {
            sans.push(SanType::URI(uri.as_str().try_into()?));
        }
        params.subject_alt_names = sans;
        params.not_before = spec.not_before;
        params.not_after = spec.not_after;
        let serial = random_serial()?;
        params.serial_number = Some(serial.clone());
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial: serial.to_bytes(),
        })
    }

    /// A CRL (PEM) revoking the certificates with these serial numbers, valid for `lifetime`.
    pub fn revocation_list(
        &self,
        revoked_serials: &[Vec<u8>],
        lifetime: Duration,
    ) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        self.revocation_list_between(revoked_serials, now - Duration::minutes(1), now + lifetime)
    }

    /// A CRL (PEM) with the given thisUpdate and nextUpdate (for tests of which CRL counts).
    pub fn revocation_list_between(
        &self,
        revoked_serials: &[Vec<u8>],
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
    ) -> Result<String, PkiError> {
        let now = OffsetDateTime::now_utc();
        let params = rcgen::CertificateRevocationListParams {
            this_update,
            next_update,
            // Numbered by thisUpdate: a later list is a higher number, as a CA numbers them
            // (RFC 5280 §5.2.3), and the number is what picks the newest of one CA's lists.
            crl_number: {
                let bytes = this_update
                    .unix_timestamp()
                    .max(1)
                    .unsigned_abs()
                    .to_be_bytes();
                let first = bytes.iter().position(|b| *b != 0).unwrap_or(7);
                SerialNumber::from_slice(&bytes[first..])
            },
            issuing_distribution_point: None,
            revoked_certs: revoked_serials
                .iter()
                .map(|serial| rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: now - Duration::minutes(1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}
