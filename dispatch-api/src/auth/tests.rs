//! The decision table of [`authenticate`]: connection × key header × the client's mode ×
//! disabled, every row. The expected answer of each row is written from the rules in the
//! module header, not derived from the code under test.

use std::collections::{BTreeSet, HashSet};

use actix_web::http::header::{HeaderName, HeaderValue};

use super::*;
use crate::identity::VerifiedCertificate;
use crate::registry::{ApiKey, CertBinding, CertBindingSpec, ClientName, Scope};
use crate::tls::testing::{CA, TEST_CA, leaf, trust, verified};

const ISSUER: &str = TEST_CA;
const ALPHA_KEY: &str = "alpha-key-0123456789abcdef0123456789abcdef";
const BETA_KEY: &str = "beta-key-0123456789abcdef0123456789abcdef";
const UNKNOWN_KEY: &str = "nobody-key-0123456789abcdef0123456789abcdef";

#[derive(Debug, Clone, Copy)]
enum Connection {
    NoCertificate,
    /// A verified certificate bound to `alpha`.
    Certificate,
    /// A verified certificate that no client is bound to.
    UnregisteredCertificate,
    /// A certificate the handshake accepted but that could not be read.
    Unreadable,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Key {
    Absent,
    Own,
    /// `beta`'s key: valid, but another client's.
    Another,
    Malformed,
    Unknown,
}

/// A leaf of the test CA with this CN, verified by the bundle of that CA.
fn cert(cn: &str) -> Arc<VerifiedCertificate> {
    verified(&trust(&[&CA], &[]), &leaf(&CA, cn, &[]), &[]).unwrap()
}

/// `authenticate` with the test CA's trust, now.
fn authenticate(
    snapshot: &RegistrySnapshot,
    connection: &ConnectionIdentity,
    headers: &HeaderMap,
) -> Result<Principal, Box<Refusal>> {
    super::authenticate(
        snapshot,
        &trust(&[&CA], &[]),
        connection,
        headers,
        OffsetDateTime::now_utc(),
    )
}

fn client(name: &str, key: &str, mode: MigrationMode, disabled: bool) -> Client {
    Client {
        name: ClientName::parse(name).unwrap(),
        mode,
        scopes: BTreeSet::from([Scope::PlansSubmit]),
        disabled,
        bindings: vec![
            CertBinding::parse(&CertBindingSpec {
                issuer: Some(ISSUER.into()),
                subject_cn: Some(name.into()),
                ..Default::default()
            })
            .unwrap(),
        ],
        api_keys: vec![ApiKey::new(
            ApiKeyHash::of(&SecretString::from(key.to_owned())),
            0,
        )],
    }
}

/// `alpha` in the row's mode and state; `beta`, an enabled `dual` client, owns the other key.
fn snapshot(mode: MigrationMode, disabled: bool) -> RegistrySnapshot {
    RegistrySnapshot::new(
        vec![
            client("alpha", ALPHA_KEY, mode, disabled),
            client("beta", BETA_KEY, MigrationMode::Dual, false),
        ],
        HashSet::new(),
    )
}

fn connection(kind: Connection) -> ConnectionIdentity {
    match kind {
        Connection::NoCertificate => ConnectionIdentity::Anonymous,
        Connection::Certificate => ConnectionIdentity::Certificate(cert("alpha")),
        Connection::UnregisteredCertificate => ConnectionIdentity::Certificate(cert("stranger")),
        Connection::Unreadable => ConnectionIdentity::Unreadable("bad DER".into()),
    }
}

fn headers(key: Key) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let name = HeaderName::from_static(API_KEY_HEADER);
    let mut put = |value: &str| {
        headers.append(name.clone(), HeaderValue::from_str(value).unwrap());
    };
    match key {
        Key::Absent => {}
        Key::Own => put(ALPHA_KEY),
        Key::Another => put(BETA_KEY),
        Key::Unknown => put(UNKNOWN_KEY),
        Key::Malformed => {
            // Two key headers: never a valid key, whatever they hold.
            put(ALPHA_KEY);
            put(ALPHA_KEY);
        }
    }
    headers
}

/// What a row must answer: the client, the method and whether the retired key was seen,
/// or the reason code of the refusal.
type Expected = Result<(&'static str, AuthMethod, bool), ReasonCode>;

fn expected(connection: Connection, key: Key, mode: MigrationMode, disabled: bool) -> Expected {
    use AuthMethod::{ApiKey, Certificate};
    use MigrationMode::Mtls;
    match connection {
        Connection::Unreadable => Err(ReasonCode::CertUnreadable),
        Connection::UnregisteredCertificate => Err(ReasonCode::CertUnmapped),
        // The certificate decides; another client's key beside it is a mismatch, checked
        // before the client's own state.
        Connection::Certificate if key == Key::Another => Err(ReasonCode::CredentialMismatch),
        Connection::Certificate if disabled => Err(ReasonCode::ClientDisabled),
        Connection::Certificate if mode == MigrationMode::ApiKey => {
            Err(ReasonCode::MethodNotAllowed)
        }
        Connection::Certificate => Ok(("alpha", Certificate, key == Key::Own && mode == Mtls)),
        Connection::NoCertificate => match key {
            Key::Absent => Err(ReasonCode::NoCredentials),
            Key::Malformed | Key::Unknown => Err(ReasonCode::KeyInvalid),
            // `beta` is enabled and `dual`: its key is accepted whatever `alpha`'s state.
            Key::Another => Ok(("beta", ApiKey, false)),
            Key::Own if disabled => Err(ReasonCode::ClientDisabled),
            Key::Own if mode == Mtls => Err(ReasonCode::KeyRetired),
            Key::Own => Ok(("alpha", ApiKey, false)),
        },
    }
}

#[test]
fn every_row_of_the_authentication_decision_table() {
    let connections = [
        Connection::NoCertificate,
        Connection::Certificate,
        Connection::UnregisteredCertificate,
        Connection::Unreadable,
    ];
    let keys = [
        Key::Absent,
        Key::Own,
        Key::Another,
        Key::Malformed,
        Key::Unknown,
    ];
    let modes = [
        MigrationMode::ApiKey,
        MigrationMode::Dual,
        MigrationMode::Mtls,
    ];
    let mut rows = 0;
    for connection_kind in connections {
        for key in keys {
            for mode in modes {
                for disabled in [false, true] {
                    let snapshot = snapshot(mode, disabled);
                    let answer =
                        authenticate(&snapshot, &connection(connection_kind), &headers(key))
                            .map(|p| (p.client.name.to_string(), p.method, p.retired_key_presented))
                            .map_err(|refusal| refusal.reason);
                    let want = expected(connection_kind, key, mode, disabled)
                        .map(|(client, method, retired)| (client.to_owned(), method, retired));
                    assert_eq!(
                        answer, want,
                        "connection {connection_kind:?}, key {key:?}, mode {mode:?}, disabled {disabled}"
                    );
                    rows += 1;
                }
            }
        }
    }
    assert_eq!(rows, 4 * 5 * 3 * 2);
}

#[test]
fn a_refusal_names_the_client_only_when_a_credential_proved_it() {
    let snapshot = snapshot(MigrationMode::Mtls, false);
    let retired = authenticate(
        &snapshot,
        &connection(Connection::NoCertificate),
        &headers(Key::Own),
    )
    .unwrap_err();
    assert_eq!(retired.client.as_deref(), Some("alpha"));
    assert_eq!(retired.method, Some(AuthMethod::ApiKey));
    let unknown = authenticate(
        &snapshot,
        &connection(Connection::NoCertificate),
        &headers(Key::Unknown),
    )
    .unwrap_err();
    assert_eq!(unknown.client, None);
    let mismatch = authenticate(
        &snapshot,
        &connection(Connection::Certificate),
        &headers(Key::Another),
    )
    .unwrap_err();
    assert_eq!(mismatch.client.as_deref(), Some("alpha"));
    assert_eq!(mismatch.detail["key_client"], "beta");
    // A certificate refusal tells the operator which certificate it was.
    let stranger = cert("stranger");
    let unmapped = authenticate(
        &snapshot,
        &ConnectionIdentity::Certificate(stranger.clone()),
        &headers(Key::Absent),
    )
    .unwrap_err();
    assert_eq!(unmapped.detail["subject"], "CN=stranger");
    assert_eq!(unmapped.detail["issuer"], ISSUER);
    assert_eq!(
        unmapped.detail["fingerprint"],
        stranger.leaf.fingerprint.to_string()
    );
    assert_eq!(
        unmapped.detail["issuer_spki_sha256"],
        stranger.issuer_spki.to_string()
    );
}

#[test]
fn a_key_in_a_header_of_surrounding_spaces_is_the_same_key_and_an_overlong_one_is_malformed() {
    let snapshot = snapshot(MigrationMode::Dual, false);
    let mut spaced = HeaderMap::new();
    spaced.insert(
        HeaderName::from_static(API_KEY_HEADER),
        HeaderValue::from_str(&format!("  {ALPHA_KEY} ")).unwrap(),
    );
    let principal =
        authenticate(&snapshot, &connection(Connection::NoCertificate), &spaced).unwrap();
    assert_eq!(principal.client.name.as_str(), "alpha");
    let mut long = HeaderMap::new();
    long.insert(
        HeaderName::from_static(API_KEY_HEADER),
        HeaderValue::from_str(&"k".repeat(MAX_KEY_LENGTH + 1)).unwrap(),
    );
    let refusal =
        authenticate(&snapshot, &connection(Connection::NoCertificate), &long).unwrap_err();
    assert_eq!(refusal.reason, ReasonCode::KeyInvalid);
    assert_eq!(refusal.detail["key"], "malformed header");
}

#[test]
fn every_reason_code_has_its_stable_name_and_status() {
    use actix_web::http::StatusCode;
    // (code, stable name, status): 401 when the caller is not accepted, 403 when it is but may
    // not do this.
    let table = [
        (
            ReasonCode::NoCredentials,
            "no_credentials",
            StatusCode::UNAUTHORIZED,
        ),
        (
            ReasonCode::KeyInvalid,
            "key_invalid",
            StatusCode::UNAUTHORIZED,
        ),
        (
            ReasonCode::KeyRetired,
            "key_retired",
            StatusCode::UNAUTHORIZED,
        ),
        (
            ReasonCode::MethodNotAllowed,
            "method_not_allowed",
            StatusCode::UNAUTHORIZED,
        ),
        (
            ReasonCode::CertUnmapped,
            "cert_unmapped",
            StatusCode::UNAUTHORIZED,
        ),
        (
            ReasonCode::IssuerNotAllowed,
            "issuer_not_allowed",
            StatusCode::UNAUTHORIZED,
        ),
        (
            ReasonCode::CertAmbiguous,
            "cert_ambiguous",
            StatusCode::UNAUTHORIZED,
        ),
        (
            ReasonCode::CertExpired,
            "cert_expired",
            StatusCode::UNAUTHORIZED,
        ),
        (
            ReasonCode::CertUnreadable,
            "cert_unreadable",
            StatusCode::UNAUTHORIZED,
        ),
        (
            ReasonCode::CertRevoked,
            "cert_revoked",
            StatusCode::UNAUTHORIZED,
        ),
        (
            ReasonCode::CredentialMismatch,
            "credential_mismatch",
            StatusCode::UNAUTHORIZED,
        ),
        (
            ReasonCode::ClientDisabled,
            "client_disabled",
            StatusCode::FORBIDDEN,
        ),
        (
            ReasonCode::PolicyDenied,
            "policy_denied",
            StatusCode::FORBIDDEN,
        ),
    ];
    for (code, name, status) in table {
        assert_eq!(code.as_str(), name);
        // The serialised form (audit detail, JSON) is the same stable name.
        assert_eq!(serde_json::to_value(code).unwrap(), name);
        assert_eq!(code.status(), status, "{name}");
    }
}

#[test]
fn a_certificate_past_its_not_after_is_cert_expired_on_the_next_request() {
    let snapshot = snapshot(MigrationMode::Dual, false);
    let alpha = cert("alpha");
    let connection = ConnectionIdentity::Certificate(alpha.clone());
    let trust = trust(&[&CA], &[]);
    let at = |now| {
        super::authenticate(&snapshot, &trust, &connection, &headers(Key::Absent), now)
            .map(|p| p.client.name.to_string())
            .map_err(|r| r.reason)
    };
    assert_eq!(at(alpha.not_after), Ok("alpha".to_owned()));
    assert_eq!(at(alpha.not_before), Ok("alpha".to_owned()));
    assert_eq!(
        at(alpha.not_after + time::Duration::seconds(1)),
        Err(ReasonCode::CertExpired)
    );
    assert_eq!(
        at(alpha.not_before - time::Duration::seconds(1)),
        Err(ReasonCode::CertExpired)
    );
    // Its own key does not rescue it: the certificate decides.
    let refused = super::authenticate(
        &snapshot,
        &trust,
        &connection,
        &headers(Key::Own),
        alpha.not_after + time::Duration::seconds(1),
    )
    .unwrap_err();
    assert_eq!(refused.reason, ReasonCode::CertExpired);
}

#[test]
fn a_crl_loaded_after_the_handshake_refuses_the_next_request_of_the_connection() {
    let snapshot = snapshot(MigrationMode::Dual, false);
    let issued = leaf(&CA, "alpha", &[]);
    let before = trust(&[&CA], &[]);
    let alpha = verified(&before, &issued, &[]).unwrap();
    let connection = ConnectionIdentity::Certificate(alpha);
    let now = OffsetDateTime::now_utc();
    let crl = CA
        .revocation_list(
            std::slice::from_ref(&issued.serial),
            time::Duration::days(1),
        )
        .unwrap();
    let after = trust(&[&CA], &[crl]);
    let refused = super::authenticate(&snapshot, &after, &connection, &headers(Key::Absent), now)
        .unwrap_err();
    assert_eq!(refused.reason, ReasonCode::CertRevoked);
    assert!(
        super::authenticate(&snapshot, &before, &connection, &headers(Key::Absent), now).is_ok()
    );
}

#[test]
fn a_resumed_session_that_no_longer_verifies_never_authenticates() {
    let snapshot = snapshot(MigrationMode::Dual, false);
    for (kind, reason) in [
        ("expired", ReasonCode::CertExpired),
        ("not_yet_valid", ReasonCode::CertExpired),
        ("revoked", ReasonCode::CertRevoked),
        ("expired_crl", ReasonCode::CertRevoked),
        ("untrusted_issuer", ReasonCode::IssuerNotAllowed),
    ] {
        let connection = ConnectionIdentity::Unverified {
            kind,
            detail: kind.into(),
        };
        let refused = authenticate(&snapshot, &connection, &headers(Key::Own)).unwrap_err();
        assert_eq!(refused.reason, reason, "{kind}");
    }
}

#[test]
fn a_certificate_bound_to_two_clients_is_cert_ambiguous() {
    let mut beta = client("beta", BETA_KEY, MigrationMode::Dual, false);
    beta.bindings = vec![
        CertBinding::parse(&CertBindingSpec {
            issuer: Some(ISSUER.into()),
            spiffe_id: Some("spiffe://d/alpha".into()),
            ..Default::default()
        })
        .unwrap(),
    ];
    let snapshot = RegistrySnapshot::new(
        vec![client("alpha", ALPHA_KEY, MigrationMode::Dual, false), beta],
        HashSet::new(),
    );
    let trust = trust(&[&CA], &[]);
    let both = verified(&trust, &leaf(&CA, "alpha", &["spiffe://d/alpha"]), &[]).unwrap();
    let refused = super::authenticate(
        &snapshot,
        &trust,
        &ConnectionIdentity::Certificate(both),
        &headers(Key::Absent),
        OffsetDateTime::now_utc(),
    )
    .unwrap_err();
    assert_eq!(refused.reason, ReasonCode::CertAmbiguous);
    // Still evidence of whose it is: both clients keep it.
    let evidence = refused
        .evidence
        .expect("an ambiguous certificate is evidence");
    let mut clients = evidence.clients.clone();
    clients.sort();
    assert_eq!(clients, ["alpha", "beta"]);
}

#[test]
fn a_certificate_refused_for_its_clients_mode_or_a_disabled_client_is_still_that_clients_evidence()
{
    // (mode, disabled, connection, evidence kept for alpha)
    let rows = [
        (MigrationMode::ApiKey, false, Connection::Certificate, true),
        (MigrationMode::Mtls, true, Connection::Certificate, true),
        (MigrationMode::Dual, true, Connection::Certificate, true),
        // Let in: its usage is the evidence, not a refusal's.
        (MigrationMode::Mtls, false, Connection::Certificate, false),
        // No certificate, or one no client's bindings name: nothing to keep.
        (MigrationMode::Mtls, false, Connection::NoCertificate, false),
        (
            MigrationMode::ApiKey,
            true,
            Connection::NoCertificate,
            false,
        ),
        (
            MigrationMode::Mtls,
            false,
            Connection::UnregisteredCertificate,
            false,
        ),
    ];
    for (mode, disabled, kind, kept) in rows {
        let key = match kind {
            Connection::NoCertificate => Key::Own,
            _ => Key::Absent,
        };
        let answer = authenticate(&snapshot(mode, disabled), &connection(kind), &headers(key));
        let evidence = answer.err().and_then(|refused| refused.evidence);
        assert_eq!(
            evidence.is_some(),
            kept,
            "{mode:?} disabled={disabled} {kind:?}"
        );
        if let Some(evidence) = evidence {
            assert_eq!(evidence.clients, ["alpha"]);
            assert_eq!(evidence.certificate.leaf.common_names, ["alpha"]);
        }
    }
}

#[test]
fn a_ca_removed_from_the_bundle_refuses_its_open_connections_next_request_as_issuer_not_allowed() {
    let partner =
        devpki::CertificateAuthority::new("Partner CA", "Test", time::Duration::days(1)).unwrap();
    let snapshot = snapshot(MigrationMode::Dual, false);
    let both = trust(&[&CA, &partner], &[]);
    let alpha = verified(&both, &leaf(&CA, "alpha", &[]), &[]).unwrap();
    let connection = ConnectionIdentity::Certificate(alpha.clone());
    let now = OffsetDateTime::now_utc();
    let ask = |trust: &Trust| {
        super::authenticate(&snapshot, trust, &connection, &headers(Key::Absent), now)
    };
    assert!(ask(&both).is_ok());
    let refused = ask(&trust(&[&partner], &[])).unwrap_err();
    assert_eq!(refused.reason, ReasonCode::IssuerNotAllowed);
    assert_eq!(
        refused.detail["revocation"]["anchor_no_longer_in_bundle"],
        alpha.anchor_spki.to_string()
    );
    // Removing another CA changes nothing for it.
    assert!(ask(&trust(&[&CA], &[])).is_ok());
}

#[test]
fn a_deny_listed_root_refuses_the_leaves_of_its_intermediate_though_the_path_ends_at_the_intermediate()
 {
    let intermediate = CA
        .intermediate("Issuing CA", "Test", time::Duration::days(1))
        .unwrap();
    let bundle = trust(&[&CA, &intermediate], &[]);
    let alpha = verified(&bundle, &leaf(&intermediate, "alpha", &[]), &[]).unwrap();
    let anchor = crate::identity::Fingerprint::of_der(&intermediate.cert_der());
    assert_eq!(alpha.anchor, anchor, "the path ends at the intermediate");
    let mut bound = client("alpha", ALPHA_KEY, MigrationMode::Dual, false);
    bound.bindings = vec![
        CertBinding::parse(&CertBindingSpec {
            issuer: Some("CN=Issuing CA, O=Test".into()),
            subject_cn: Some("alpha".into()),
            ..Default::default()
        })
        .unwrap(),
    ];
    let connection = ConnectionIdentity::Certificate(alpha);
    let root = crate::identity::Fingerprint::of_der(&CA.cert_der());
    let ask = |denied: &[crate::identity::Fingerprint]| {
        let snapshot = RegistrySnapshot::new(
            vec![bound.clone()],
            denied.iter().copied().collect::<HashSet<_>>(),
        );
        super::authenticate(
            &snapshot,
            &bundle,
            &connection,
            &headers(Key::Absent),
            OffsetDateTime::now_utc(),
        )
    };
    assert!(ask(&[]).is_ok());
    for denied in [root, anchor] {
        let refused = ask(&[denied]).unwrap_err();
        assert_eq!(refused.reason, ReasonCode::CertRevoked);
    }
    assert_eq!(
        ask(&[root]).unwrap_err().detail["revocation"]["denied_ca"],
        root.to_string()
    );
}

#[test]
fn a_certificate_no_crl_of_its_issuer_covers_is_refused_as_cert_revoked_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = devpki::openssl::OpensslCa::root(dir.path(), "/O=Test/CN=Partition CA");
    let outside = root.client(
        "/CN=alpha",
        "crlDistributionPoints=URI:http://crl.test/2.crl\n",
    );
    let partition = root.crl(&devpki::openssl::CrlSpec {
        number: 1,
        extensions: "issuingDistributionPoint=critical,@idp\n[idp]\nfullname=URI:http://crl.test/1.crl\n",
        ..Default::default()
    });
    let before = crate::tls::testing::openssl_trust(&[&root], &[]).unwrap();
    let alpha = crate::tls::testing::openssl_verified(&before, &outside, &[]).unwrap();
    let after = crate::tls::testing::openssl_trust(&[&root], &[("1.crl", &partition)]).unwrap();
    let mut bound = client("alpha", ALPHA_KEY, MigrationMode::Dual, false);
    bound.bindings = vec![
        CertBinding::parse(&CertBindingSpec {
            issuer: Some("O=Test, CN=Partition CA".into()),
            subject_cn: Some("alpha".into()),
            ..Default::default()
        })
        .unwrap(),
    ];
    let snapshot = RegistrySnapshot::new(vec![bound], HashSet::new());
    let connection = ConnectionIdentity::Certificate(alpha.clone());
    let now = OffsetDateTime::now_utc();
    assert!(
        super::authenticate(&snapshot, &before, &connection, &headers(Key::Absent), now).is_ok()
    );
    let refused = super::authenticate(&snapshot, &after, &connection, &headers(Key::Absent), now)
        .unwrap_err();
    assert_eq!(refused.reason, ReasonCode::CertRevoked);
    assert_eq!(
        refused.detail["revocation"]["no_crl_covers"],
        alpha.leaf.fingerprint.to_string()
    );
}

/// `alpha` in `mode` holding ALPHA_KEY (current, made at 100) and BETA_KEY, which the rotation
/// replaced, valid until 1000.
fn rotated_alpha(mode: MigrationMode) -> RegistrySnapshot {
    let mut alpha = client("alpha", ALPHA_KEY, mode, false);
    alpha.api_keys = vec![
        ApiKey::new(ApiKeyHash::of(&SecretString::from(ALPHA_KEY)), 100),
        ApiKey {
            hash: ApiKeyHash::of(&SecretString::from(BETA_KEY)),
            created_at: 10,
            expires_at: Some(1000),
            replaced_at: Some(100),
        },
    ];
    RegistrySnapshot::new(vec![alpha], HashSet::new())
}

fn by_key_at(snapshot: &RegistrySnapshot, key: &str, now: i64) -> Result<Principal, Box<Refusal>> {
    let mut headers = HeaderMap::new();
    headers.insert(
        HeaderName::from_static(API_KEY_HEADER),
        HeaderValue::from_str(key).unwrap(),
    );
    super::authenticate(
        snapshot,
        &trust(&[&CA], &[]),
        &ConnectionIdentity::Anonymous,
        &headers,
        OffsetDateTime::from_unix_timestamp(now).unwrap(),
    )
}

#[test]
fn during_an_overlap_both_keys_authenticate_their_client_each_named_as_itself() {
    let snapshot = rotated_alpha(MigrationMode::Dual);
    for (key, at) in [
        (ALPHA_KEY, 500),
        (BETA_KEY, 500),
        (BETA_KEY, 999),
        (ALPHA_KEY, 5000),
    ] {
        let principal = by_key_at(&snapshot, key, at).unwrap();
        assert_eq!(principal.client.name.as_str(), "alpha");
        assert_eq!(principal.method, AuthMethod::ApiKey);
        assert_eq!(
            principal.key,
            Some(ApiKeyHash::of(&SecretString::from(key)))
        );
    }
}

#[test]
fn the_replaced_key_after_its_overlap_is_key_expired_naming_the_client() {
    let snapshot = rotated_alpha(MigrationMode::Dual);
    for at in [1000, 1001, 100_000] {
        let refusal = by_key_at(&snapshot, BETA_KEY, at).err().unwrap();
        assert_eq!(refusal.reason, ReasonCode::KeyExpired);
        assert_eq!(refusal.client.as_deref(), Some("alpha"));
        assert_eq!(refusal.detail["expired_at"], 1000);
    }
}

#[test]
fn an_expired_key_is_key_expired_whatever_the_clients_mode_and_a_live_one_keeps_the_mode_rule() {
    let snapshot = rotated_alpha(MigrationMode::Mtls);
    let refusal = by_key_at(&snapshot, BETA_KEY, 5000).err().unwrap();
    assert_eq!(refusal.reason, ReasonCode::KeyExpired);
    let refusal = by_key_at(&snapshot, BETA_KEY, 500).err().unwrap();
    assert_eq!(refusal.reason, ReasonCode::KeyRetired);
    let refusal = by_key_at(&snapshot, ALPHA_KEY, 5000).err().unwrap();
    assert_eq!(refusal.reason, ReasonCode::KeyRetired);
}
