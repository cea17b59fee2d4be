//! What a peer proved, as data rather than strings: the certificate it presented and the path
//! the TLS layer verified it on (`tls::record_peer_identity`, once per connection), names
//! compared as encoded, fingerprints and key hashes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use time::OffsetDateTime;
use x509_parser::extensions::{DistributionPointName, ParsedExtension};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

mod names;

pub use dispatch_types::AuthMethod;
use names::Attribute;
pub use names::{DistinguishedName, SpiffeId};

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
        parse_sha256(text, "fingerprint").map(Self)
    }
}

/// A SHA-256 as hex, colons and upper case allowed (as `openssl ... -fingerprint` prints it).
fn parse_sha256(text: &str, what: &str) -> Result<[u8; 32], String> {
    let compact: String = text.trim().chars().filter(|c| *c != ':').collect();
    let bytes =
        hex::decode(&compact).map_err(|_| format!("`{text}` is not a hex SHA-256 {what}"))?;
    bytes
        .try_into()
        .map_err(|_| format!("`{text}` is not 32 bytes long (a SHA-256 {what})"))
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

/// SHA-256 of a SubjectPublicKeyInfo (the whole DER SEQUENCE), which names a CA's key
/// whatever its certificate says: `openssl x509 -noout -pubkey | openssl pkey -pubin -outform
/// der | sha256sum` prints it. Shown and accepted as hex like [`Fingerprint`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpkiHash([u8; 32]);

impl SpkiHash {
    pub fn of_der(spki: &[u8]) -> Self {
        Self(Fingerprint::of_der(spki).0)
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        parse_sha256(text, "SPKI hash").map(Self)
    }
}

impl fmt::Display for SpkiHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SpkiHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpkiHash({self})")
    }
}

impl Serialize for SpkiHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

const COMMON_NAME: &str = "2.5.4.3";

/// One certificate, reduced to what identity decisions need. Reading it proves nothing: only a
/// [`VerifiedCertificate`] (the TLS layer's verified path) can identify a client.
#[derive(Debug, Clone, Serialize)]
pub struct PeerCertificate {
    pub fingerprint: Fingerprint,
    pub subject: DistinguishedName,
    pub issuer: DistinguishedName,
    /// Every CN in the subject, in order (a subject may have none or several).
    pub common_names: Vec<String>,
    /// Every URI SAN as written, SPIFFE or not (an X.509-SVID has exactly one).
    pub uri_sans: Vec<String>,
    /// The URI SANs that are SPIFFE IDs.
    pub spiffe_ids: Vec<SpiffeId>,
    pub dns_names: Vec<String>,
    pub serial: String,
    /// Its public key (SHA-256 of the SubjectPublicKeyInfo): what a denied key is matched by.
    #[serde(skip)]
    pub spki: SpkiHash,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Which of its issuer's CRLs speak about it, read in the same parse.
    #[serde(skip)]
    pub crl_scope: CertificateScope,
}

impl PeerCertificate {
    /// Parses a DER certificate. This only reads; it verifies nothing.
    pub fn from_der(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("the certificate could not be parsed: {e}"))?;
        let subject = DistinguishedName::from_x509(cert.subject());
        let common_names = subject.values_of(COMMON_NAME).map(str::to_owned).collect();
        let mut uri_sans = Vec::new();
        let mut spiffe_ids = Vec::new();
        let mut dns_names = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| format!("the subjectAltName extension could not be parsed: {e}"))?;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) => {
                        uri_sans.push((*uri).to_owned());
                        if let Ok(id) = SpiffeId::parse(uri) {
                            spiffe_ids.push(id);
                        }
                    }
                    GeneralName::DNSName(dns) => dns_names.push((*dns).to_owned()),
                    _ => {}
                }
            }
        }
        let time = |t: x509_parser::time::ASN1Time, what: &str| {
            OffsetDateTime::from_unix_timestamp(t.timestamp())
                .map_err(|e| format!("the certificate's {what} is out of range: {e}"))
        };
        Ok(Self {
            fingerprint: Fingerprint::of_der(der),
            issuer: DistinguishedName::from_x509(cert.issuer()),
            subject,
            common_names,
            uri_sans,
            spiffe_ids,
            dns_names,
            serial: cert.raw_serial_as_string(),
            spki: SpkiHash::of_der(cert.public_key().raw),
            not_before: time(cert.validity().not_before, "notBefore")?,
            not_after: time(cert.validity().not_after, "notAfter")?,
            crl_scope: CertificateScope::of(&cert),
        })
    }
}

/// What of a certificate decides which CRLs of its issuer cover it (RFC 5280 §6.3.3): whether
/// it is a CA, and the distribution points it names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertificateScope {
    pub is_ca: bool,
    /// The full names of its CRL Distribution Points, as [`general_name_text`] writes them.
    pub distribution_points: Vec<String>,
}

impl CertificateScope {
    pub fn of(cert: &X509Certificate<'_>) -> Self {
        let distribution_points = cert
            .iter_extensions()
            .filter_map(|ext| match ext.parsed_extension() {
                ParsedExtension::CRLDistributionPoints(points) => Some(points),
                _ => None,
            })
            .flat_map(|points| points.points.iter())
            .filter_map(|point| match &point.distribution_point {
                Some(DistributionPointName::FullName(names)) => Some(names),
                _ => None,
            })
            .flatten()
            .map(general_name_text)
            .collect();
        Self {
            is_ca: cert.is_ca(),
            distribution_points,
        }
    }
}

/// A general name as text, its kind first (`URI:http://crl.example/ca.crl`), so that names of
/// different kinds never compare equal.
pub fn general_name_text(name: &GeneralName<'_>) -> String {
    match name {
        GeneralName::URI(uri) => format!("URI:{uri}"),
        GeneralName::DNSName(dns) => format!("DNS:{dns}"),
        GeneralName::RFC822Name(mail) => format!("email:{mail}"),
        GeneralName::DirectoryName(dn) => {
            format!("DirName:{}", DistinguishedName::from_x509(dn).as_str())
        }
        other => format!("{other:?}"),
    }
}

/// A certificate of a verified path other than the trust anchor: the leaf or an intermediate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainLink {
    pub fingerprint: Fingerprint,
    /// The serial as encoded (the DER INTEGER's content), as CRLs list it.
    pub serial: Vec<u8>,
    pub issuer: DistinguishedName,
    /// The key that signed this certificate in the verified path, hashed and as DER (to
    /// check the signature of that key's CRL).
    pub signer_spki: SpkiHash,
    pub signer_spki_der: Arc<[u8]>,
    /// Which of the signer's CRLs speak about it.
    pub scope: CertificateScope,
}

/// A client certificate with the path the TLS layer verified it on. This, not the printed
/// issuer, is what a binding is matched against: the issuer's name as encoded AND the key that
/// actually signed the leaf.
#[derive(Debug, Clone)]
pub struct VerifiedCertificate {
    pub leaf: PeerCertificate,
    /// SHA-256 of the SPKI of the CA that signed the leaf in the verified path.
    pub issuer_spki: SpkiHash,
    /// The leaf first, then the intermediates of the path up to (not including) the anchor.
    pub links: Vec<ChainLink>,
    /// The fingerprint of the trust anchor the path ends at (a certificate of the bundle).
    pub anchor: Fingerprint,
    /// The anchor's key: on every request it must still be a CA of the current bundle.
    pub anchor_spki: SpkiHash,
    /// The window in which every certificate of the path is valid: checked on every request.
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// The chain as the client presented it (leaf first), DER: kept as the evidence of the
    /// client's live certificate, which a registry change is tried against (`auth::tryout`).
    pub presented: Arc<[Vec<u8>]>,
}

impl VerifiedCertificate {
    /// Every certificate of the path, anchor included, by fingerprint (for the deny list).
    pub fn fingerprints(&self) -> impl Iterator<Item = &Fingerprint> {
        self.links
            .iter()
            .map(|link| &link.fingerprint)
            .chain(std::iter::once(&self.anchor))
    }
}

/// What the client CA bundle holds, by subject: which keys a name stands for. A binding that
/// names an issuer without pinning its key is matched against these (see
/// `registry::CertBinding`), so that a CA elsewhere in the bundle cannot mint an intermediate
/// that copies the name.
#[derive(Debug, Clone, Default)]
pub struct IssuerIndex {
    by_subject: HashMap<DistinguishedName, Vec<SpkiHash>>,
    count: usize,
}

impl IssuerIndex {
    pub fn new(cas: impl IntoIterator<Item = (DistinguishedName, SpkiHash)>) -> Self {
        let mut index = Self::default();
        for (subject, spki) in cas {
            let keys = index.by_subject.entry(subject).or_default();
            if !keys.contains(&spki) {
                keys.push(spki);
            }
            index.count += 1;
        }
        index
    }

    /// The keys of the bundle's CAs with this name.
    pub fn keys_named(&self, name: &DistinguishedName) -> &[SpkiHash] {
        self.by_subject.get(name).map_or(&[], Vec::as_slice)
    }

    /// A CA of the bundle whose name holds the same attributes in another order: what an
    /// operator probably meant when a written issuer matches no CA.
    pub fn reordered(&self, name: &DistinguishedName) -> Option<&DistinguishedName> {
        let mut wanted: Vec<&Attribute> = name.rdns.iter().flatten().collect();
        wanted.sort();
        self.by_subject.keys().find(|subject| {
            let mut attributes: Vec<&Attribute> = subject.rdns.iter().flatten().collect();
            attributes.sort();
            attributes == wanted
        })
    }

    /// How many certificates the bundle holds.
    pub fn ca_count(&self) -> usize {
        self.count
    }
}

/// What the connection proved at the TLS layer, stored in connection data by `on_connect`.
#[derive(Debug, Clone)]
pub enum ConnectionIdentity {
    /// No TLS client certificate was presented (allowed in `optional` mode).
    Anonymous,
    /// A certificate on a path the TLS layer verified.
    Certificate(Arc<VerifiedCertificate>),
    /// A resumed session whose certificate no longer verifies under the current trust (`kind`
    /// as in the handshake-failure metric); never authenticates.
    Unverified { kind: &'static str, detail: String },
    /// The handshake accepted a certificate that we could not read; never authenticates.
    Unreadable(String),
}

/// Where a caller comes from, coarse enough that one client's instances on one subnet count
/// once: its /24 (IPv4) or /64 (IPv6). Anonymous refusals are counted by it, and a guard judges
/// refusals of a retired credential by it.
pub fn source_network(peer: Option<std::net::IpAddr>) -> String {
    use std::net::IpAddr;
    // On a dual-stack listener an IPv4 caller arrives as ::ffff:a.b.c.d: its /24, not the one
    // /64 every IPv4 caller would share.
    let peer = peer.map(|ip| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    });
    match peer {
        Some(IpAddr::V4(ip)) => {
            let [a, b, c, _] = ip.octets();
            format!("{a}.{b}.{c}.0/24")
        }
        Some(IpAddr::V6(ip)) => {
            let s = ip.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::names::{escape, unescape};
    use super::*;

    #[test]
    fn distinguished_names_compare_rdn_by_rdn_in_order_not_by_spelling() {
        let a = DistinguishedName::parse("CN=Dispatch CA, O=Acme").unwrap();
        let spaced = DistinguishedName::parse("cn = Dispatch CA ,organizationName=Acme").unwrap();
        let oid = DistinguishedName::parse("2.5.4.3=Dispatch CA, 2.5.4.10=Acme").unwrap();
        let slashed = DistinguishedName::parse("/CN=Dispatch CA/O=Acme").unwrap();
        assert_eq!(a, spaced);
        assert_eq!(a, oid);
        assert_eq!(a, slashed);
        // Another order is another name, as it is in DER.
        assert_ne!(
            a,
            DistinguishedName::parse("O=Acme, CN=Dispatch CA").unwrap()
        );
        assert_ne!(a, DistinguishedName::parse("CN=Other CA, O=Acme").unwrap());
        // Values are exact.
        assert_ne!(
            a,
            DistinguishedName::parse("CN=dispatch ca, O=Acme").unwrap()
        );
        // Inside one multi-valued RDN, order does not matter (a SET).
        assert_eq!(
            DistinguishedName::parse("OU=a+CN=b, O=c").unwrap(),
            DistinguishedName::parse("CN=b+OU=a, O=c").unwrap()
        );
    }

    #[test]
    fn a_one_attribute_look_alike_is_not_the_two_attribute_name() {
        let two = DistinguishedName::parse("CN=Interop Issuing CA, O=Interop").unwrap();
        let one = DistinguishedName::parse(r"CN=Interop Issuing CA\, O=Interop").unwrap();
        assert_ne!(two, one);
        let hex = DistinguishedName::parse(r"CN=Interop Issuing CA\2C O=Interop").unwrap();
        assert_eq!(one, hex);
    }

    #[test]
    fn names_read_from_der_print_escaped_and_parse_back_to_the_same_name() {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Interop Issuing CA, O=Interop");
        let key = KeyPair::generate().unwrap();
        let der = params.self_signed(&key).unwrap().der().to_vec();
        let cert = PeerCertificate::from_der(&der).unwrap();
        assert_eq!(cert.subject.as_str(), r"CN=Interop Issuing CA\, O=Interop");
        assert_eq!(cert.common_names, ["Interop Issuing CA, O=Interop"]);
        assert_eq!(
            DistinguishedName::parse(cert.subject.as_str()).unwrap(),
            cert.subject
        );
        assert_ne!(
            DistinguishedName::parse("CN=Interop Issuing CA, O=Interop").unwrap(),
            cert.subject
        );
    }

    #[test]
    fn values_are_escaped_as_rfc_4514_says_and_read_back() {
        for (value, printed) in [
            (" lead", r"\ lead"),
            ("#hash", r"\#hash"),
            ("trail ", r"trail\ "),
            ("in # side", "in # side"),
            ("a,b+c;d", r"a\,b\+c\;d"),
            (r#"q"<>\"#, r#"q\"\<\>\\"#),
            ("", ""),
        ] {
            assert_eq!(escape(value), printed, "{value:?}");
            if !value.is_empty() {
                assert_eq!(unescape(printed).unwrap(), value, "{printed:?}");
            }
        }
        // An escaped character followed by a hex digit is still one escaped character.
        assert_eq!(unescape(r"a\,Bc").unwrap(), "a,Bc");
        assert_eq!(unescape(r"\2Cx").unwrap(), ",x");
        assert!(unescape(r"\ff").is_err(), "a lone 0xff byte is not UTF-8");
    }

    #[test]
    fn unknown_attribute_types_and_dangling_escapes_are_refused() {
        assert!(DistinguishedName::parse("XYZ=a").is_err());
        assert!(DistinguishedName::parse("CN=a\\").is_err());
        assert!(DistinguishedName::parse("CN=a,,O=b").is_err());
        assert!(DistinguishedName::parse("1.2.3.4=a").is_ok());
        for not_an_oid in ["5=a", "1..2=a", ".1=a", "1.x=a"] {
            assert!(
                DistinguishedName::parse(not_an_oid).is_err(),
                "{not_an_oid}"
            );
        }
    }

    #[test]
    fn spki_hashes_parse_like_fingerprints() {
        let hash = SpkiHash::of_der(b"key");
        assert_eq!(SpkiHash::parse(&hash.to_string()).unwrap(), hash);
        assert!(SpkiHash::parse("abcd").unwrap_err().contains("SPKI hash"));
    }

    #[test]
    fn the_issuer_index_counts_every_ca_and_lists_keys_by_name() {
        let a = DistinguishedName::parse("CN=A").unwrap();
        let b = DistinguishedName::parse("CN=B").unwrap();
        let index = IssuerIndex::new([
            (a.clone(), SpkiHash::of_der(b"1")),
            (a.clone(), SpkiHash::of_der(b"2")),
            (b.clone(), SpkiHash::of_der(b"3")),
        ]);
        assert_eq!(index.ca_count(), 3);
        // A written name with the attributes of a CA in another order points at that CA.
        let ab = DistinguishedName::parse("CN=A, O=X").unwrap();
        let ordered = IssuerIndex::new([(ab.clone(), SpkiHash::of_der(b"4"))]);
        let reversed = DistinguishedName::parse("O=X, CN=A").unwrap();
        assert_eq!(ordered.reordered(&reversed), Some(&ab));
        assert_eq!(ordered.reordered(&ab), Some(&ab));
        assert_eq!(
            ordered.reordered(&DistinguishedName::parse("O=X, CN=B").unwrap()),
            None
        );
        assert_eq!(
            ordered.reordered(&DistinguishedName::parse("CN=A").unwrap()),
            None
        );
        assert_eq!(index.keys_named(&a).len(), 2);
        assert_eq!(index.keys_named(&b), [SpkiHash::of_der(b"3")]);
        assert!(
            index
                .keys_named(&DistinguishedName::parse("CN=C").unwrap())
                .is_empty()
        );
    }

    #[test]
    fn empty_distinguished_name_is_refused() {
        assert!(DistinguishedName::parse(" , ").is_err());
        assert!(DistinguishedName::parse("").is_err());
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
        let key = SpkiHash::of_der(b"k");
        assert_eq!(format!("{key:?}"), format!("SpkiHash({key})"));
        assert_eq!(serde_json::to_value(key).unwrap(), key.to_string());
    }

    #[test]
    fn equal_names_hash_alike_and_different_names_do_not() {
        use std::hash::{BuildHasher, RandomState};
        let hasher = RandomState::new();
        let a = DistinguishedName::parse("CN=a, O=b").unwrap();
        let same = DistinguishedName::parse("cn = a,o=b").unwrap();
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
