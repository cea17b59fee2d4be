//! Binding and snapshot rules, without a database.

use std::collections::HashSet;
use std::sync::LazyLock;

use devpki::CertificateAuthority;

use super::tally::{RefusalAt, Tallied};
use super::*;
use crate::configuration::FlipGuard;
use crate::identity::AuthMethod;
use crate::identity::{DistinguishedName, Fingerprint, IssuerIndex, SpkiHash, VerifiedCertificate};
use crate::tls::testing::{CA, TEST_CA, leaf, trust, verified};

/// The second CA of the bundle in these tests.
static OTHER: LazyLock<CertificateAuthority> = LazyLock::new(|| {
    CertificateAuthority::new("Other CA", "Test", time::Duration::days(1)).unwrap()
});
const OTHER_CA: &str = "CN=Other CA, O=Test";

/// The issuer index of a bundle of both CAs.
fn issuers() -> IssuerIndex {
    trust(&[&CA, &OTHER], &[]).issuers().clone()
}

/// A verified leaf with this CN (and SPIFFE ID) issued by the CA named `issuer`.
fn cert(cn: &str, issuer: &str, spiffe: Option<&str>) -> VerifiedCertificate {
    let ca: &CertificateAuthority = if issuer == OTHER_CA { &OTHER } else { &CA };
    let issued = leaf(ca, cn, &spiffe.into_iter().collect::<Vec<_>>());
    let verified = verified(&trust(&[&CA, &OTHER], &[]), &issued, &[]).unwrap();
    (*verified).clone()
}

fn client(name: &str, binding: CertBindingSpec) -> Client {
    Client {
        name: ClientName::parse(name).unwrap(),
        mode: MigrationMode::Dual,
        scopes: BTreeSet::from([Scope::PlansSubmit]),
        disabled: false,
        bindings: vec![CertBinding::parse(&binding).unwrap()],
        api_keys: Vec::new(),
    }
}

fn by_cn(cn: &str, issuer: &str) -> CertBindingSpec {
    CertBindingSpec {
        issuer: Some(issuer.into()),
        subject_cn: Some(cn.into()),
        ..Default::default()
    }
}

#[test]
fn a_binding_by_name_requires_an_issuer() {
    let spec = CertBindingSpec {
        subject_cn: Some("a".into()),
        ..Default::default()
    };
    assert!(CertBinding::parse(&spec).is_err());
    assert!(CertBinding::parse(&CertBindingSpec::default()).is_err());
}

#[test]
fn san_uri_binding_matches_the_spiffe_id() {
    let spec = CertBindingSpec {
        issuer: Some(TEST_CA.into()),
        spiffe_id: Some("spiffe://d/w".into()),
        ..Default::default()
    };
    let snap = RegistrySnapshot::new(vec![client("w", spec)], HashSet::new());
    let found =
        snap.client_for_certificate(&cert("other-cn", TEST_CA, Some("spiffe://d/w")), &issuers());
    assert_eq!(found.unwrap().name.as_str(), "w");
    let missing =
        snap.client_for_certificate(&cert("other-cn", TEST_CA, Some("spiffe://d/x")), &issuers());
    assert_eq!(missing.unwrap_err(), CertMatchFailure::Unmapped);
}

#[test]
fn same_name_from_another_issuer_is_issuer_not_allowed() {
    let snap = RegistrySnapshot::new(vec![client("w", by_cn("w", TEST_CA))], HashSet::new());
    let err = snap
        .client_for_certificate(&cert("w", OTHER_CA, None), &issuers())
        .unwrap_err();
    assert_eq!(err, CertMatchFailure::IssuerNotAllowed);
}

#[test]
fn pinned_fingerprints_exclude_other_certificates_with_the_same_name() {
    let good = cert("w", TEST_CA, None);
    let mut spec = by_cn("w", TEST_CA);
    spec.fingerprints = vec![good.leaf.fingerprint.to_string()];
    let snap = RegistrySnapshot::new(vec![client("w", spec)], HashSet::new());
    assert!(snap.client_for_certificate(&good, &issuers()).is_ok());
    let renewed = cert("w", TEST_CA, None);
    assert_eq!(
        snap.client_for_certificate(&renewed, &issuers())
            .unwrap_err(),
        CertMatchFailure::Unmapped
    );
}

#[test]
fn revoked_fingerprint_wins_over_a_matching_binding() {
    let c = cert("w", TEST_CA, None);
    let snap = RegistrySnapshot::new(
        vec![client("w", by_cn("w", TEST_CA))],
        HashSet::from([c.leaf.fingerprint]),
    );
    assert_eq!(
        snap.client_for_certificate(&c, &issuers()).unwrap_err(),
        CertMatchFailure::Revoked
    );
}

#[test]
fn a_denied_key_takes_its_certificates_whatever_their_fingerprint_and_nothing_else() {
    let (denied, other) = (cert("w", TEST_CA, None), cert("w", TEST_CA, None));
    assert_ne!(denied.leaf.spki, other.leaf.spki, "two keys");
    let snap = RegistrySnapshot::new(vec![client("w", by_cn("w", TEST_CA))], HashSet::new());
    assert!(snap.client_for_certificate(&denied, &issuers()).is_ok());
    let after = snap.with_denied_keys([denied.leaf.spki]);
    assert_eq!(
        after
            .client_for_certificate(&denied, &issuers())
            .unwrap_err(),
        CertMatchFailure::Revoked
    );
    assert!(after.client_for_certificate(&other, &issuers()).is_ok());
    // A rebuilt base keeps the deny list; the snapshot it came from is unchanged.
    assert_eq!(
        after
            .rebuilt_for_test()
            .client_for_certificate(&denied, &issuers())
            .unwrap_err(),
        CertMatchFailure::Revoked
    );
    assert!(snap.client_for_certificate(&denied, &issuers()).is_ok());
}

#[tokio::test]
async fn a_denied_key_is_stored_read_back_whole_and_the_operators_own_key_is_refused() {
    let (_dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    assert!(
        registry
            .register(&client("w", by_cn("w", TEST_CA)), None, &issuers)
            .await
            .unwrap()
    );
    let stolen = cert("w", TEST_CA, None);
    assert!(!registry.key_denied(&stolen.leaf.spki));
    assert!(
        registry
            .deny_key(stolen.leaf.spki, operator_change())
            .await
            .unwrap()
    );
    assert!(registry.key_denied(&stolen.leaf.spki));
    assert!(!registry.key_denied(&cert("x", TEST_CA, None).leaf.spki));
    assert!(
        !registry
            .deny_key(stolen.leaf.spki, operator_change())
            .await
            .unwrap(),
        "once"
    );
    assert_eq!(
        registry
            .snapshot()
            .client_for_certificate(&stolen, &issuers)
            .unwrap_err(),
        CertMatchFailure::Revoked
    );
    // A whole read (another replica's, or a restart) finds it too.
    registry.refresh().await.unwrap();
    assert_eq!(
        registry
            .snapshot()
            .client_for_certificate(&stolen, &issuers)
            .unwrap_err(),
        CertMatchFailure::Revoked
    );
    assert!(
        registry
            .revocations()
            .await
            .unwrap()
            .iter()
            .any(|entry| entry.spki_sha256 == Some(stolen.leaf.spki.to_string()))
    );
    let own = cert("op", TEST_CA, None);
    let change = Change {
        operator: Some((&own, &issuers)),
        ..operator_change()
    };
    assert!(matches!(
        registry.deny_key(own.leaf.spki, change).await,
        Err(RegistryError::OwnCertificate { .. })
    ));
}

#[test]
fn api_keys_are_found_by_hash() {
    let key = generate_api_key();
    let mut c = client("w", by_cn("w", TEST_CA));
    c.api_keys = vec![ApiKey::new(ApiKeyHash::of(&key), 0)];
    let snap = RegistrySnapshot::new(vec![c], HashSet::new());
    assert!(snap.client_for_key(&ApiKeyHash::of(&key)).is_some());
    assert!(
        snap.client_for_key(&ApiKeyHash::of(&generate_api_key()))
            .is_none()
    );
}

#[test]
fn the_snapshot_finds_each_client_by_name_and_lists_them_all() {
    let snap = RegistrySnapshot::new(
        vec![
            client("a", by_cn("a", TEST_CA)),
            client("b", by_cn("b", TEST_CA)),
        ],
        HashSet::new(),
    );
    let a = ClientName::parse("a").unwrap();
    assert_eq!(snap.client(&a).unwrap().name, a);
    assert!(snap.client(&ClientName::parse("c").unwrap()).is_none());
    let mut names: Vec<_> = snap.clients().map(|c| c.name.as_str().to_owned()).collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn client_names_are_one_to_64_safe_characters() {
    assert!(ClientName::parse("").is_err());
    assert!(ClientName::parse(&"a".repeat(64)).is_ok());
    assert!(ClientName::parse(&"a".repeat(65)).is_err());
    assert!(ClientName::parse("route-worker_2.b").is_ok());
    assert!(ClientName::parse("route worker").is_err());
    assert!(ClientName::parse("a/b").is_err());
}

#[test]
fn modes_and_scopes_have_stable_names_that_parse_back() {
    for mode in [
        MigrationMode::ApiKey,
        MigrationMode::Dual,
        MigrationMode::Mtls,
    ] {
        assert_eq!(MigrationMode::parse(mode.as_str()), Ok(mode));
        assert_eq!(serde_json::to_value(mode).unwrap(), mode.as_str());
    }
    assert_eq!(MigrationMode::ApiKey.as_str(), "api_key");
    for scope in [Scope::PlansSubmit, Scope::Admin] {
        assert_eq!(Scope::parse(scope.as_str()), Ok(scope));
        assert_eq!(serde_json::to_value(scope).unwrap(), scope.as_str());
    }
    assert_eq!(Scope::PlansSubmit.as_str(), "plans:submit");
}

#[test]
fn a_binding_turns_back_into_the_spec_it_was_parsed_from() {
    let spec = CertBindingSpec {
        issuer: Some("CN=CA, O=Org".into()),
        issuer_spki_sha256: Some("cd".repeat(32)),
        subject_cn: Some("w".into()),
        spiffe_id: Some("spiffe://d/w".into()),
        dns_name: Some("w.dispatch.internal".into()),
        fingerprints: vec!["ab".repeat(32)],
    };
    let back = CertBinding::parse(&spec).unwrap().to_spec();
    assert_eq!(back.dns_name, spec.dns_name);
    assert_eq!(back.issuer, spec.issuer);
    assert_eq!(back.issuer_spki_sha256, spec.issuer_spki_sha256);
    assert_eq!(back.subject_cn, spec.subject_cn);
    assert_eq!(back.spiffe_id, spec.spiffe_id);
    assert_eq!(back.fingerprints, spec.fingerprints);
}

#[test]
fn a_binding_that_only_pins_identifies_the_pinned_certificate_and_no_other() {
    let pinned = cert("anything", TEST_CA, None);
    let other = cert("anything", TEST_CA, None);
    let only_pins = CertBindingSpec {
        fingerprints: vec![pinned.leaf.fingerprint.to_string()],
        ..Default::default()
    };
    let snap = RegistrySnapshot::new(vec![client("w", only_pins)], HashSet::new());
    assert_eq!(
        snap.client_for_certificate(&pinned, &issuers())
            .unwrap()
            .name
            .as_str(),
        "w"
    );
    assert_eq!(
        snap.client_for_certificate(&other, &issuers()).unwrap_err(),
        CertMatchFailure::Unmapped
    );
}

#[test]
fn a_binding_names_a_certificate_only_by_what_it_binds() {
    // Two bindings of one client: a pinned CN under TEST_CA, a SPIFFE ID under OTHER_CA.
    let presented = cert("b", TEST_CA, Some("spiffe://d/w"));
    let pinned = CertBindingSpec {
        issuer: Some(TEST_CA.into()),
        subject_cn: Some("a".into()),
        fingerprints: vec![presented.leaf.fingerprint.to_string()],
        ..Default::default()
    };
    let by_spiffe = CertBindingSpec {
        issuer: Some(OTHER_CA.into()),
        spiffe_id: Some("spiffe://d/w".into()),
        ..Default::default()
    };
    let mut two = client("w", pinned);
    two.bindings.push(CertBinding::parse(&by_spiffe).unwrap());
    let snap = RegistrySnapshot::new(vec![two], HashSet::new());
    // Found through its SPIFFE ID, whose binding expects another issuer; the pinned binding
    // names CN=a, not this certificate (CN=b), whatever its pins say.
    assert_eq!(
        snap.client_for_certificate(&presented, &issuers())
            .unwrap_err(),
        CertMatchFailure::IssuerNotAllowed
    );
}

#[test]
fn debug_output_shows_names_and_never_a_key_hash() {
    assert_eq!(format!("{:?}", ClientName::parse("w").unwrap()), "\"w\"");
    let hash = ApiKeyHash::of(&SecretString::from("a-key".to_owned()));
    let shown = format!("{hash:?}");
    assert_eq!(shown, "ApiKeyHash(..)");
    assert!(!shown.contains(&hash.to_hex()[..8]));
}

fn spki_of(ca: &CertificateAuthority) -> SpkiHash {
    *trust(&[ca], &[])
        .issuers()
        .keys_named(&DistinguishedName::from_x509(
            x509_parser::parse_x509_certificate(&ca.cert_der())
                .unwrap()
                .1
                .subject(),
        ))
        .first()
        .unwrap()
}

#[test]
fn a_second_ca_in_the_bundle_signing_an_intermediate_that_copies_the_issuers_name_is_not_the_issuer()
 {
    let rogue_root =
        CertificateAuthority::new("Partner Root", "Partner", time::Duration::days(1)).unwrap();
    // The partner's intermediate bears the exact name of the real issuing CA.
    let forged = rogue_root
        .intermediate("Test CA", "Test", time::Duration::days(1))
        .unwrap();
    let bundle = trust(&[&CA, &rogue_root], &[]);
    let operator = leaf(&forged, "operator", &[]);
    let presented =
        verified(&bundle, &operator, &[&forged]).expect("a valid chain to a trusted root");
    assert_eq!(
        presented.leaf.issuer.as_str(),
        TEST_CA,
        "the printed issuer is identical"
    );
    let snap = RegistrySnapshot::new(
        vec![client("operator", by_cn("operator", TEST_CA))],
        HashSet::new(),
    );
    assert_eq!(
        snap.client_for_certificate(&presented, bundle.issuers())
            .unwrap_err(),
        CertMatchFailure::IssuerNotAllowed
    );
    // The real CA's leaf of the same name is the client.
    let real = verified(&bundle, &leaf(&CA, "operator", &[]), &[]).unwrap();
    assert!(snap.client_for_certificate(&real, bundle.issuers()).is_ok());
}

#[test]
fn a_one_attribute_look_alike_issuer_name_does_not_match() {
    // One attribute, CN = "Test CA, O=Test": printed unescaped it reads like TEST_CA.
    let look_alike =
        CertificateAuthority::new("Test CA, O=Test", "", time::Duration::days(1)).unwrap();
    let bundle = trust(&[&CA, &look_alike], &[]);
    let presented = verified(&bundle, &leaf(&look_alike, "w", &[]), &[]).unwrap();
    assert_eq!(presented.leaf.issuer.as_str(), r"CN=Test CA\, O=Test");
    let snap = RegistrySnapshot::new(vec![client("w", by_cn("w", TEST_CA))], HashSet::new());
    assert_eq!(
        snap.client_for_certificate(&presented, bundle.issuers())
            .unwrap_err(),
        CertMatchFailure::IssuerNotAllowed
    );
}

#[test]
fn a_certificate_with_two_cns_is_ambiguous_for_a_cn_binding() {
    let mut presented = cert("w", TEST_CA, None);
    presented.leaf.common_names = vec!["w".into(), "operator".into()];
    let snap = RegistrySnapshot::new(vec![client("w", by_cn("w", TEST_CA))], HashSet::new());
    assert_eq!(
        snap.client_for_certificate(&presented, &issuers())
            .unwrap_err(),
        CertMatchFailure::Ambiguous
    );
}

#[test]
fn a_certificate_with_two_uri_sans_is_ambiguous_for_a_spiffe_binding() {
    let issued = leaf(&CA, "w", &["spiffe://d/w", "spiffe://d/operator"]);
    let bundle = trust(&[&CA, &OTHER], &[]);
    let presented = verified(&bundle, &issued, &[]).unwrap();
    let spec = CertBindingSpec {
        issuer: Some(TEST_CA.into()),
        spiffe_id: Some("spiffe://d/w".into()),
        ..Default::default()
    };
    let snap = RegistrySnapshot::new(vec![client("w", spec)], HashSet::new());
    assert_eq!(
        snap.client_for_certificate(&presented, bundle.issuers())
            .unwrap_err(),
        CertMatchFailure::Ambiguous
    );
}

#[test]
fn a_certificate_that_matches_two_clients_is_ambiguous_never_first_wins() {
    let by_id = CertBindingSpec {
        issuer: Some(TEST_CA.into()),
        spiffe_id: Some("spiffe://d/b".into()),
        ..Default::default()
    };
    let snap = RegistrySnapshot::new(
        vec![client("a", by_cn("a", TEST_CA)), client("b", by_id)],
        HashSet::new(),
    );
    let both = cert("a", TEST_CA, Some("spiffe://d/b"));
    assert_eq!(
        snap.client_for_certificate(&both, &issuers()).unwrap_err(),
        CertMatchFailure::Ambiguous
    );
}

#[test]
fn the_clients_naming_a_certificate_are_those_whose_bindings_name_it_each_once() {
    // `a` by its CN and by its SPIFFE ID (found twice by the indexes), `b` by the SPIFFE ID,
    // `c` by the same CN from the other CA (found by the index, named not).
    let mut a = client("a", by_cn("a", TEST_CA));
    a.bindings.push(
        CertBinding::parse(&CertBindingSpec {
            issuer: Some(TEST_CA.into()),
            spiffe_id: Some("spiffe://d/a".into()),
            ..Default::default()
        })
        .unwrap(),
    );
    let b = client(
        "b",
        CertBindingSpec {
            issuer: Some(TEST_CA.into()),
            spiffe_id: Some("spiffe://d/a".into()),
            ..Default::default()
        },
    );
    let c = client("c", by_cn("a", OTHER_CA));
    let snap = RegistrySnapshot::new(vec![a, b, c], HashSet::new());
    let mut named = snap.clients_naming(&cert("a", TEST_CA, Some("spiffe://d/a")), &issuers());
    named.sort();
    assert_eq!(named, ["a", "b"]);
    assert!(
        snap.clients_naming(&cert("z", TEST_CA, None), &issuers())
            .is_empty()
    );
}

#[test]
fn a_binding_with_a_cn_and_a_spiffe_id_needs_both() {
    let spec = CertBindingSpec {
        issuer: Some(TEST_CA.into()),
        subject_cn: Some("w".into()),
        spiffe_id: Some("spiffe://d/w".into()),
        ..Default::default()
    };
    let snap = RegistrySnapshot::new(vec![client("w", spec)], HashSet::new());
    for (cn, id, found) in [
        ("w", Some("spiffe://d/w"), true),
        ("w", None, false),
        ("x", Some("spiffe://d/w"), false),
        ("w", Some("spiffe://d/x"), false),
    ] {
        let answer = snap.client_for_certificate(&cert(cn, TEST_CA, id), &issuers());
        assert_eq!(answer.is_ok(), found, "CN {cn}, URI {id:?}");
    }
}

#[test]
fn two_same_named_cas_are_told_apart_by_the_pinned_key() {
    let twin = CertificateAuthority::new("Test CA", "Test", time::Duration::days(1)).unwrap();
    let bundle = trust(&[&CA, &twin], &[]);
    let mut spec = by_cn("w", TEST_CA);
    spec.issuer_spki_sha256 = Some(spki_of(&twin).to_string());
    let snap = RegistrySnapshot::new(vec![client("w", spec)], HashSet::new());
    let from_twin = verified(&bundle, &leaf(&twin, "w", &[]), &[]).unwrap();
    let from_ca = verified(&bundle, &leaf(&CA, "w", &[]), &[]).unwrap();
    assert!(
        snap.client_for_certificate(&from_twin, bundle.issuers())
            .is_ok()
    );
    assert_eq!(
        snap.client_for_certificate(&from_ca, bundle.issuers())
            .unwrap_err(),
        CertMatchFailure::IssuerNotAllowed
    );
    // Unpinned, the name stands for two keys: it never matches, and is refused up front.
    let unpinned = CertBinding::parse(&by_cn("w", TEST_CA)).unwrap();
    let why = unpinned.check_issuer(bundle.issuers()).unwrap_err();
    assert!(why.contains(&spki_of(&twin).to_string()), "{why}");
    assert!(why.contains(&spki_of(&CA).to_string()), "{why}");
    let snap = RegistrySnapshot::new(vec![client("w", by_cn("w", TEST_CA))], HashSet::new());
    assert_eq!(
        snap.client_for_certificate(&from_ca, bundle.issuers())
            .unwrap_err(),
        CertMatchFailure::IssuerNotAllowed
    );
    let problems = snap.ambiguous_issuers(bundle.issuers());
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0].starts_with("client `w`: ") && problems[0].contains("ambiguous"),
        "{problems:?}"
    );
    assert!(
        snap.ambiguous_issuers(trust(&[&CA], &[]).issuers())
            .is_empty()
    );
}

#[test]
fn an_issuer_outside_a_bundle_of_several_cas_must_be_pinned() {
    let intermediate = CA
        .intermediate("Issuing CA", "Test", time::Duration::days(1))
        .unwrap();
    let binding = CertBinding::parse(&by_cn("w", "CN=Issuing CA, O=Test")).unwrap();
    // Under a bundle of one CA, its intermediates can only come from that CA.
    let alone = trust(&[&CA], &[]);
    assert!(binding.check_issuer(alone.issuers()).is_ok());
    let presented = verified(&alone, &leaf(&intermediate, "w", &[]), &[&intermediate]).unwrap();
    let snap = RegistrySnapshot::new(
        vec![client("w", by_cn("w", "CN=Issuing CA, O=Test"))],
        HashSet::new(),
    );
    assert!(
        snap.client_for_certificate(&presented, alone.issuers())
            .is_ok()
    );
    // With a second CA in the bundle, the name alone is not enough.
    let two = trust(&[&CA, &OTHER], &[]);
    assert!(binding.check_issuer(two.issuers()).is_err());
    let presented = verified(&two, &leaf(&intermediate, "w", &[]), &[&intermediate]).unwrap();
    assert_eq!(
        snap.client_for_certificate(&presented, two.issuers())
            .unwrap_err(),
        CertMatchFailure::IssuerNotAllowed
    );
    let mut pinned = by_cn("w", "CN=Issuing CA, O=Test");
    pinned.issuer_spki_sha256 = Some(presented.issuer_spki.to_string());
    let snap = RegistrySnapshot::new(vec![client("w", pinned)], HashSet::new());
    assert!(
        snap.client_for_certificate(&presented, two.issuers())
            .is_ok()
    );
}

#[test]
fn an_intermediate_on_the_deny_list_takes_its_leaves_with_it() {
    let intermediate = CA
        .intermediate("Issuing CA", "Test", time::Duration::days(1))
        .unwrap();
    let bundle = trust(&[&CA], &[]);
    let presented = verified(&bundle, &leaf(&intermediate, "w", &[]), &[&intermediate]).unwrap();
    let snap = RegistrySnapshot::new(
        vec![client("w", by_cn("w", "CN=Issuing CA, O=Test"))],
        HashSet::from([Fingerprint::of_der(&intermediate.cert_der())]),
    );
    assert_eq!(
        snap.client_for_certificate(&presented, bundle.issuers())
            .unwrap_err(),
        CertMatchFailure::Revoked
    );
}

#[test]
fn overlapping_bindings_are_the_same_name_from_the_same_issuer_or_the_same_pinned_certificate() {
    let parse = |spec: CertBindingSpec| CertBinding::parse(&spec).unwrap();
    let pins = |spec: CertBindingSpec, pins: &[&str]| CertBindingSpec {
        fingerprints: pins.iter().map(|p| p.repeat(32)).collect(),
        ..spec
    };
    let keyed = |spec: CertBindingSpec, key: &str| CertBindingSpec {
        issuer_spki_sha256: Some(key.repeat(32)),
        ..spec
    };
    let spiffe = |id: &str| CertBindingSpec {
        issuer: Some(TEST_CA.into()),
        spiffe_id: Some(id.into()),
        ..Default::default()
    };
    let pin_only = |pin: &str| CertBindingSpec {
        fingerprints: vec![pin.repeat(32)],
        ..Default::default()
    };
    let table = [
        (by_cn("w", TEST_CA), by_cn("w", TEST_CA), true),
        (by_cn("w", TEST_CA), by_cn("x", TEST_CA), false),
        (by_cn("w", TEST_CA), by_cn("w", OTHER_CA), false),
        (spiffe("spiffe://d/w"), spiffe("spiffe://d/w"), true),
        (by_cn("w", TEST_CA), spiffe("spiffe://d/w"), false),
        (
            pins(by_cn("w", TEST_CA), &["aa"]),
            pins(by_cn("w", TEST_CA), &["bb"]),
            false,
        ),
        (
            pins(by_cn("w", TEST_CA), &["aa"]),
            by_cn("w", TEST_CA),
            true,
        ),
        (
            keyed(by_cn("w", TEST_CA), "aa"),
            keyed(by_cn("w", TEST_CA), "bb"),
            false,
        ),
        (keyed(by_cn("w", TEST_CA), "aa"), by_cn("w", TEST_CA), true),
        (pin_only("aa"), pin_only("aa"), true),
        (pin_only("aa"), pin_only("bb"), false),
        (pin_only("aa"), pins(by_cn("w", TEST_CA), &["aa"]), true),
        (pin_only("aa"), by_cn("w", TEST_CA), false),
    ];
    for (index, (a, b, overlap)) in table.into_iter().enumerate() {
        let (a, b) = (parse(a), parse(b));
        assert_eq!(a.overlaps(&b), overlap, "row {index}: {a:?} / {b:?}");
        assert_eq!(b.overlaps(&a), overlap, "row {index} reversed");
    }
    let snap = RegistrySnapshot::new(vec![client("w", by_cn("w", TEST_CA))], HashSet::new());
    let same = parse(by_cn("w", TEST_CA));
    assert_eq!(
        snap.overlapping(&ClientName::parse("x").unwrap(), &same)
            .map(ClientName::as_str),
        Some("w")
    );
    assert_eq!(
        snap.overlapping(&ClientName::parse("w").unwrap(), &same),
        None
    );
}

#[test]
fn an_issuer_key_pin_needs_the_issuer_name() {
    let spec = CertBindingSpec {
        issuer_spki_sha256: Some("ab".repeat(32)),
        fingerprints: vec!["cd".repeat(32)],
        ..Default::default()
    };
    assert!(CertBinding::parse(&spec).is_err());
}

/// A pool on the registry database of `dir`.
async fn pool_in(dir: &std::path::Path) -> crate::storage::Db {
    let settings = crate::configuration::DatabaseSettings {
        path: dir.join("registry.db"),
        ..Default::default()
    };
    let location = crate::storage::Location::of(&settings).unwrap();
    crate::storage::connect(&settings, &location).await.unwrap()
}

/// A registry on a fresh SQLite file (the directory lives as long as the registry is used).
async fn registry() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool_in(dir.path()).await;
    (dir, Registry::load(pool).await.unwrap())
}

#[tokio::test]
async fn registering_adds_each_absent_client_once_and_counts_what_it_added() {
    let (_dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    let batch = [
        client("a", by_cn("a", TEST_CA)),
        client("b", by_cn("b", TEST_CA)),
    ];
    assert_eq!(
        registry.register_all(&batch, None, &issuers).await.unwrap(),
        2
    );
    assert_eq!(
        registry.register_all(&batch, None, &issuers).await.unwrap(),
        0
    );
    let more = [
        client("a", by_cn("a", TEST_CA)),
        client("c", by_cn("c", TEST_CA)),
    ];
    assert_eq!(
        registry.register_all(&more, None, &issuers).await.unwrap(),
        1
    );
    assert!(!registry.register(&batch[0], None, &issuers).await.unwrap());
    assert!(
        registry
            .register(&client("d", by_cn("d", TEST_CA)), None, &issuers)
            .await
            .unwrap()
    );
    let snapshot = registry.snapshot();
    let mut names: Vec<_> = snapshot.clients().map(|c| c.name.to_string()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c", "d"]);
}

#[tokio::test]
async fn a_client_another_writer_stored_meanwhile_is_read_as_stored_not_as_the_batch_says() {
    let (dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    // Another writer of the database (a second process, say) stored `b` in api_key mode.
    let other = pool_in(dir.path()).await;
    sqlx::query(
        "INSERT INTO clients (name, mode, scopes, disabled, created_at, updated_at) \
         VALUES ('b', 'api_key', 'plans:submit', 0, 0, 0)",
    )
    .execute(other.sqlite().unwrap())
    .await
    .unwrap();
    let batch = [
        client("a", by_cn("a", TEST_CA)),
        client("b", by_cn("b", TEST_CA)),
    ];
    assert_eq!(
        registry.register_all(&batch, None, &issuers).await.unwrap(),
        1
    );
    let snapshot = registry.snapshot();
    let stored = snapshot.client(&ClientName::parse("b").unwrap()).unwrap();
    assert_eq!(stored.mode, MigrationMode::ApiKey, "as stored, not dual");
    assert!(stored.bindings.is_empty(), "without the batch's binding");
}

#[tokio::test]
async fn a_batch_with_a_binding_that_overlaps_another_clients_is_refused_whole() {
    let (_dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    // Within the batch: the later client names the earlier one.
    let batch = [
        client("a", by_cn("x", TEST_CA)),
        client("b", by_cn("x", TEST_CA)),
    ];
    match registry.register_all(&batch, None, &issuers).await {
        Err(RegistryError::BindingConflict { client, other }) => {
            assert_eq!((client.as_str(), other.as_str()), ("b", "a"));
        }
        other => panic!("expected a binding conflict, got {other:?}"),
    }
    assert_eq!(
        registry.snapshot().clients().count(),
        0,
        "nothing of the batch stays"
    );
    // Against a registered client.
    assert_eq!(
        registry
            .register_all(&batch[..1], None, &issuers)
            .await
            .unwrap(),
        1
    );
    match registry.register(&batch[1], None, &issuers).await {
        Err(RegistryError::BindingConflict { client, other }) => {
            assert_eq!((client.as_str(), other.as_str()), ("b", "a"));
        }
        other => panic!("expected a binding conflict, got {other:?}"),
    }
}

#[tokio::test]
async fn registering_a_binding_whose_issuer_is_ambiguous_is_refused() {
    let (_dir, registry) = registry().await;
    let twin = CertificateAuthority::new("Test CA", "Test", time::Duration::days(1)).unwrap();
    let issuers = trust(&[&CA, &twin], &[]).issuers().clone();
    let refused = registry
        .register(&client("a", by_cn("a", TEST_CA)), None, &issuers)
        .await;
    assert!(
        matches!(refused, Err(RegistryError::AmbiguousIssuer { ref client, .. }) if client == "a"),
        "{refused:?}"
    );
    let mut pinned = by_cn("a", TEST_CA);
    pinned.issuer_spki_sha256 = Some(spki_of(&twin).to_string());
    assert!(
        registry
            .register(&client("a", pinned), None, &issuers)
            .await
            .unwrap()
    );
    // The pin is stored and read back.
    let snapshot = registry.snapshot();
    let stored = snapshot.client(&ClientName::parse("a").unwrap()).unwrap();
    assert_eq!(
        stored.bindings[0].issuer_spki.as_deref(),
        Some(&spki_of(&twin))
    );
}

#[tokio::test]
async fn the_bootstrap_file_registers_absent_clients_and_says_which() {
    let (dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    let path = dir.path().join("clients.toml");
    let hash = "ab".repeat(32);
    std::fs::write(dir.path().join("w.sha256"), format!("{hash}\n")).unwrap();
    std::fs::write(
        &path,
        format!(
            "[[clients]]\nname = \"w\"\nmode = \"dual\"\napi_key_sha256_file = \"w.sha256\"\n\
             [[clients.bindings]]\nissuer = \"{TEST_CA}\"\nsubject_cn = \"w\"\n"
        ),
    )
    .unwrap();
    let file = BootstrapFile::read(&path).unwrap();
    let added = file
        .apply(&path, Some(dir.path()), &registry, &issuers)
        .await
        .unwrap();
    assert_eq!(added, [ClientName::parse("w").unwrap()]);
    let snapshot = registry.snapshot();
    let w = snapshot.client(&ClientName::parse("w").unwrap()).unwrap();
    assert_eq!(w.current_key().map(|key| key.hash.to_hex()), Some(hash));
    assert_eq!(w.mode, MigrationMode::Dual);
    drop(snapshot);
    // Never twice: a restart does not undo an operator's changes.
    let again = file
        .apply(&path, Some(dir.path()), &registry, &issuers)
        .await
        .unwrap();
    assert!(again.is_empty());
}

#[tokio::test]
async fn admin_writes_reach_the_snapshot_at_once_and_the_database_for_good() {
    let (dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    let (first, second) = (generate_api_key(), generate_api_key());
    let mut w = client("w", by_cn("w", TEST_CA));
    w.scopes = BTreeSet::from([Scope::PlansSubmit, Scope::Admin]);
    w.api_keys = vec![ApiKey::new(ApiKeyHash::of(&first), 0)];
    assert!(registry.register(&w, None, &issuers).await.unwrap());
    let name = ClientName::parse("w").unwrap();
    let change = || Change {
        actor: "op",
        reason: "test",
        operator: None,
        tryout: None,
    };
    // `w` is the only way into /admin: disabling it is refused until another admin exists.
    assert!(matches!(
        registry.set_disabled(&name, true, change()).await,
        Err(RegistryError::LastAdmin { .. })
    ));
    let mut keeper = client("keeper", by_cn("keeper", TEST_CA));
    keeper.scopes = BTreeSet::from([Scope::Admin]);
    assert!(registry.register(&keeper, None, &issuers).await.unwrap());
    let before = registry
        .set_mode(&name, MigrationMode::Mtls, None, change())
        .await
        .unwrap();
    assert_eq!(before, MigrationMode::Dual);
    registry.set_disabled(&name, true, change()).await.unwrap();
    let rotation = Rotation {
        key: ApiKeyHash::of(&second),
        overlap_secs: 0,
        expires_in_secs: None,
    };
    registry
        .rotate_api_key(&name, rotation, change())
        .await
        .unwrap();
    {
        let snapshot = registry.snapshot();
        let now = snapshot.client(&name).unwrap();
        assert_eq!(now.mode, MigrationMode::Mtls);
        assert!(now.disabled);
        assert!(snapshot.client_for_key(&ApiKeyHash::of(&second)).is_some());
        assert!(snapshot.client_for_key(&ApiKeyHash::of(&first)).is_none());
    }
    registry.set_disabled(&name, false, change()).await.unwrap();
    registry.remove_api_keys(&name, change()).await.unwrap();
    assert!(!registry.snapshot().client(&name).unwrap().disabled);
    assert!(
        registry
            .snapshot()
            .client(&name)
            .unwrap()
            .api_keys
            .is_empty()
    );
    let stranger = ClientName::parse("nobody").unwrap();
    assert!(matches!(
        registry
            .set_mode(&stranger, MigrationMode::Dual, None, change())
            .await,
        Err(RegistryError::NotFound(_))
    ));
    // The deny list: once, then already there.
    let denied = cert("w", TEST_CA, None);
    assert!(
        registry
            .revoke(denied.leaf.fingerprint, change())
            .await
            .unwrap()
    );
    assert!(
        !registry
            .revoke(denied.leaf.fingerprint, change())
            .await
            .unwrap()
    );
    assert_eq!(
        registry
            .snapshot()
            .client_for_certificate(&denied, &issuers)
            .unwrap_err(),
        CertMatchFailure::Revoked
    );
    let listed = registry.revocations().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].fingerprint,
        Some(denied.leaf.fingerprint.to_string())
    );
    assert_eq!(listed[0].revoked_by, "op");
    let at = listed[0].revoked_at;
    assert!(
        (at - time::OffsetDateTime::now_utc().unix_timestamp()).abs() < 60,
        "{at}"
    );

    // A registry opened afresh on the same file reads it all back.
    let again = Registry::load(pool_in(dir.path()).await).await.unwrap();
    let snapshot = again.snapshot();
    let stored = snapshot.client(&name).unwrap();
    assert_eq!(stored.mode, MigrationMode::Mtls);
    assert!(!stored.disabled);
    assert!(stored.api_keys.is_empty());
    assert_eq!(
        stored.scopes,
        BTreeSet::from([Scope::PlansSubmit, Scope::Admin])
    );
    assert_eq!(stored.bindings, w.bindings);
    assert_eq!(
        snapshot
            .client_for_certificate(&denied, &issuers)
            .unwrap_err(),
        CertMatchFailure::Revoked
    );
    // Every change left its audit event, with who and why.
    let events = crate::storage::list_audit(&pool_in(dir.path()).await, Some("w"), 100)
        .await
        .unwrap();
    let reasons: Vec<&str> = events.iter().map(|e| e.reason.as_str()).collect();
    for reason in [
        "client_registered",
        "mode_changed",
        "client_disabled_changed",
        "api_key_rotated",
        "api_key_removed",
    ] {
        assert!(reasons.contains(&reason), "{reason} in {reasons:?}");
    }
    let flip = events.iter().find(|e| e.reason == "mode_changed").unwrap();
    assert_eq!(
        (
            flip.before.as_deref(),
            flip.after.as_deref(),
            flip.actor.as_deref()
        ),
        (Some("dual"), Some("mtls"), Some("op"))
    );
}

#[test]
fn only_an_enabled_admin_reachable_by_certificate_administers() {
    let admin = || {
        let mut c = client("operator", by_cn("operator", TEST_CA));
        c.scopes = BTreeSet::from([Scope::Admin]);
        c.mode = MigrationMode::Mtls;
        c
    };
    assert!(admin().administers());
    type Change = fn(&mut Client);
    let variants: [(&str, Change); 4] = [
        ("disabled", |c| c.disabled = true),
        ("no admin scope", |c| {
            c.scopes = BTreeSet::from([Scope::PlansSubmit])
        }),
        ("api_key mode", |c| c.mode = MigrationMode::ApiKey),
        ("no binding", |c| c.bindings.clear()),
    ];
    for (what, change) in variants {
        let mut c = admin();
        change(&mut c);
        assert!(!c.administers(), "{what}");
    }
    let mut dual = admin();
    dual.mode = MigrationMode::Dual;
    assert!(dual.administers(), "dual accepts its certificate");
}

#[test]
fn a_change_locks_out_only_when_it_takes_the_last_way_into_admin() {
    let mut operator = client("operator", by_cn("operator", TEST_CA));
    operator.scopes = BTreeSet::from([Scope::Admin]);
    let mut disabled = operator.clone();
    disabled.disabled = true;
    let mut deputy = client("deputy", by_cn("deputy", TEST_CA));
    deputy.scopes = BTreeSet::from([Scope::Admin]);
    let worker = client("worker", by_cn("worker", TEST_CA));
    // Alone (with a worker): taking the operator's way in is refused.
    assert!(locks_out(
        &operator,
        &disabled,
        [&operator, &worker].into_iter()
    ));
    // With a deputy it is not; nor is a change that keeps the way in.
    assert!(!locks_out(
        &operator,
        &disabled,
        [&operator, &deputy].into_iter()
    ));
    assert!(!locks_out(&operator, &operator, [&operator].into_iter()));
    // A client that could not administer before cannot lock anyone out.
    assert!(!locks_out(&disabled, &disabled, [&disabled].into_iter()));
    // The stored copy of the client itself does not count as another way in.
    assert!(locks_out(&operator, &disabled, [&operator].into_iter()));
}

#[test]
fn a_clients_file_entry_differs_in_scopes_bindings_and_key_but_not_in_mode_or_disabled() {
    let stored = client("worker", by_cn("worker", TEST_CA));
    let mut file = stored.clone();
    file.mode = MigrationMode::ApiKey;
    file.disabled = true;
    assert!(bootstrap::differing_fields(&stored, &file).is_empty());
    file.scopes.insert(Scope::Admin);
    file.bindings = vec![CertBinding::parse(&by_cn("worker-2", TEST_CA)).unwrap()];
    file.api_keys = vec![ApiKey::new(ApiKeyHash::of(&generate_api_key()), 0)];
    assert_eq!(
        bootstrap::differing_fields(&stored, &file),
        ["scopes", "bindings", "api_key_sha256"]
    );
}

#[tokio::test]
async fn bindings_are_replaced_on_disk_and_in_the_snapshot_unless_they_overlap_or_lock_out() {
    let (dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    let mut admin = client("op", by_cn("op", TEST_CA));
    admin.scopes = BTreeSet::from([Scope::Admin]);
    admin.mode = MigrationMode::Mtls;
    for c in [
        admin,
        client("a", by_cn("a", TEST_CA)),
        client("b", by_cn("b", TEST_CA)),
    ] {
        assert!(registry.register(&c, None, &issuers).await.unwrap());
    }
    let change = || Change {
        actor: "op",
        reason: "test",
        operator: None,
        tryout: None,
    };
    let a = ClientName::parse("a").unwrap();
    let renamed = vec![CertBinding::parse(&by_cn("a-2", TEST_CA)).unwrap()];
    registry
        .set_bindings(&a, renamed.clone(), change(), &issuers, false)
        .await
        .unwrap();
    assert_eq!(registry.snapshot().client(&a).unwrap().bindings, renamed);
    let reread = Registry::load(pool_in(dir.path()).await).await.unwrap();
    assert_eq!(reread.snapshot().client(&a).unwrap().bindings, renamed);
    // b's name is taken.
    let overlapping = vec![CertBinding::parse(&by_cn("b", TEST_CA)).unwrap()];
    assert!(matches!(
        registry
            .set_bindings(&a, overlapping, change(), &issuers, false)
            .await,
        Err(RegistryError::BindingConflict { .. })
    ));
    // A binding that no longer names the operator's own certificate, with no other admin.
    let operator = cert("op", TEST_CA, None);
    let op = ClientName::parse("op").unwrap();
    let typo = vec![CertBinding::parse(&by_cn("oq", TEST_CA)).unwrap()];
    let by_operator = Change {
        actor: "op",
        reason: "typo",
        operator: Some((&operator, &issuers)),
        tryout: None,
    };
    assert!(matches!(
        registry
            .set_bindings(&op, typo, by_operator, &issuers, false)
            .await,
        Err(RegistryError::LastAdmin { .. })
    ));
    assert_eq!(
        registry.snapshot().client(&op).unwrap().bindings[0].name(Kind::SubjectCn),
        Some("op")
    );
}

#[tokio::test]
async fn a_revocation_of_the_operators_own_chain_is_refused() {
    let (_dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    let operator = cert("op", TEST_CA, None);
    let by_operator = || Change {
        actor: "op",
        reason: "oops",
        operator: Some((&operator, &issuers)),
        tryout: None,
    };
    for own in operator.fingerprints().copied().collect::<Vec<_>>() {
        assert!(matches!(
            registry.revoke(own, by_operator()).await,
            Err(RegistryError::OwnCertificate { .. })
        ));
    }
    let other = cert("someone-else", TEST_CA, None);
    assert!(
        registry
            .revoke(other.leaf.fingerprint, by_operator())
            .await
            .unwrap()
    );
}

/// The stored registry version (what other replicas compare with what they heard).
async fn stored_version(dir: &std::path::Path) -> i64 {
    let pool = pool_in(dir).await;
    sqlx::query_scalar("SELECT version FROM registry_version WHERE id = 1")
        .fetch_one(pool.sqlite().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn every_stored_registry_change_bumps_the_version_once_and_a_refused_one_not_at_all() {
    let (dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    let change = || Change {
        actor: "op",
        reason: "test",
        operator: None,
        tryout: None,
    };
    let name = ClientName::parse("v").unwrap();
    let mut expected = stored_version(dir.path()).await;
    assert!(
        registry
            .register(&client("v", by_cn("v", TEST_CA)), None, &issuers)
            .await
            .unwrap()
    );
    expected += 1;
    assert_eq!(stored_version(dir.path()).await, expected, "registered");
    // Already there: nothing stored, nothing announced.
    assert!(
        !registry
            .register(&client("v", by_cn("v", TEST_CA)), None, &issuers)
            .await
            .unwrap()
    );
    assert_eq!(stored_version(dir.path()).await, expected, "not registered");
    // Several at once: one bump for the batch.
    let batch = [
        client("v1", by_cn("v1", TEST_CA)),
        client("v2", by_cn("v2", TEST_CA)),
    ];
    assert_eq!(
        registry.register_all(&batch, None, &issuers).await.unwrap(),
        2
    );
    expected += 1;
    assert_eq!(stored_version(dir.path()).await, expected, "a batch");
    registry
        .set_mode(&name, MigrationMode::Dual, None, change())
        .await
        .unwrap();
    expected += 1;
    assert_eq!(stored_version(dir.path()).await, expected, "a flip");
    let stranger = ClientName::parse("nobody").unwrap();
    assert!(
        registry
            .set_disabled(&stranger, true, change())
            .await
            .is_err()
    );
    assert_eq!(stored_version(dir.path()).await, expected, "refused");
    let denied = cert("v", TEST_CA, None).leaf.fingerprint;
    assert!(registry.revoke(denied, change()).await.unwrap());
    expected += 1;
    assert_eq!(stored_version(dir.path()).await, expected, "a revocation");
    assert!(!registry.revoke(denied, change()).await.unwrap());
    assert_eq!(
        stored_version(dir.path()).await,
        expected,
        "revoked already"
    );
}

#[tokio::test]
async fn what_another_replica_stored_reaches_the_snapshot_through_the_followers_hooks() {
    let (dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    let other = pool_in(dir.path()).await;
    let other = other.sqlite().unwrap();
    // Another replica registered `r` and revoked a certificate: this one has not read either.
    sqlx::query(
        "INSERT INTO clients (name, mode, scopes, disabled, created_at, updated_at) \
         VALUES ('r', 'mtls', 'plans:submit', 0, 0, 0)",
    )
    .execute(other)
    .await
    .unwrap();
    let name = ClientName::parse("r").unwrap();
    assert!(registry.snapshot().client(&name).is_none());
    registry.reload_client(&name).await.unwrap();
    assert_eq!(
        registry.snapshot().client(&name).unwrap().mode,
        MigrationMode::Mtls
    );
    let revoked = cert("w", TEST_CA, None);
    registry.note_revoked(revoked.leaf.fingerprint).await;
    assert_eq!(
        registry
            .snapshot()
            .client_for_certificate(&revoked, &issuers)
            .unwrap_err(),
        CertMatchFailure::Revoked
    );
    // A full read finds everything stored, whatever was heard.
    sqlx::query("DELETE FROM clients WHERE name = 'r'")
        .execute(other)
        .await
        .unwrap();
    registry.refresh().await.unwrap();
    assert!(registry.snapshot().client(&name).is_none());
    assert!(registry.pool().sqlite().is_some());
}

fn hash(n: u8) -> ApiKeyHash {
    ApiKeyHash::parse_hex(&format!("{n:064x}")).unwrap()
}

fn rotation(overlap_secs: u64, expires_in_secs: Option<u64>) -> Rotation {
    Rotation {
        key: hash(9),
        overlap_secs,
        expires_in_secs,
    }
}

/// `w` with `keys`, a rotation of it at t = 1000: the keys after, and the rows written.
fn rotated(
    keys: &[ApiKey],
    rotation: &Rotation,
) -> Result<(Vec<ApiKey>, keys::KeyWrites), RegistryError> {
    let mut c = client("w", by_cn("w", TEST_CA));
    c.api_keys = keys.to_vec();
    let writes = keys::plan_rotation(&mut c, rotation, 1000)?;
    Ok((c.api_keys, writes))
}

fn key(n: u8, created_at: i64, expires_at: Option<i64>) -> ApiKey {
    ApiKey {
        hash: hash(n),
        created_at,
        expires_at,
        replaced_at: None,
    }
}

fn replaced(key: ApiKey, at: i64) -> ApiKey {
    ApiKey {
        replaced_at: Some(at),
        ..key
    }
}

#[test]
fn a_first_key_is_issued_alone() {
    let (keys, writes) = rotated(&[], &rotation(3600, None)).unwrap();
    assert_eq!(keys, [key(9, 1000, None)]);
    assert!(writes.removed.is_empty() && writes.retiring.is_none());
    assert_eq!(writes.issued, Some(key(9, 1000, None)));
}

#[test]
fn a_rotation_without_overlap_removes_the_old_key_at_once() {
    let (keys, writes) = rotated(&[key(1, 10, None)], &rotation(0, None)).unwrap();
    assert_eq!(keys, [key(9, 1000, None)]);
    assert_eq!(writes.removed, [hash(1)]);
    assert!(writes.retiring.is_none());
}

#[test]
fn a_rotation_with_overlap_keeps_the_old_key_until_the_overlap_ends() {
    let (keys, writes) = rotated(&[key(1, 10, None)], &rotation(3600, None)).unwrap();
    assert_eq!(
        keys,
        [key(9, 1000, None), replaced(key(1, 10, Some(4600)), 1000)]
    );
    assert!(writes.removed.is_empty());
    assert_eq!(writes.retiring, Some((hash(1), 4600)));
}

#[test]
fn an_overlap_never_outlives_the_old_keys_own_expiry() {
    let (keys, writes) = rotated(&[key(1, 10, Some(2000))], &rotation(3600, None)).unwrap();
    assert_eq!(keys[1], replaced(key(1, 10, Some(2000)), 1000));
    assert_eq!(writes.retiring, Some((hash(1), 2000)));
}

#[test]
fn a_new_key_with_a_lifetime_expires_after_it() {
    let (keys, _) = rotated(&[], &rotation(0, Some(86_400))).unwrap();
    assert_eq!(keys, [key(9, 1000, Some(87_400))]);
}

#[test]
fn a_rotation_while_an_overlap_runs_is_refused_naming_the_old_key_and_its_end() {
    let refused = rotated(
        &[key(2, 500, None), key(1, 10, Some(4600))],
        &rotation(3600, None),
    );
    match refused {
        Err(RegistryError::OverlapRunning {
            client,
            key_id,
            until,
        }) => {
            assert_eq!(client, "w");
            assert_eq!(key_id, hash(1).id());
            assert_eq!(until, 4600);
        }
        other => panic!("{:?}", other.map(|(keys, _)| keys)),
    }
}

#[test]
fn keys_expired_before_a_rotation_are_removed_by_it() {
    // The overlap ended at 900: the old key goes, the current one retires.
    let (keys, writes) = rotated(
        &[key(2, 500, None), replaced(key(1, 10, Some(900)), 500)],
        &rotation(60, None),
    )
    .unwrap();
    assert_eq!(
        keys,
        [key(9, 1000, None), replaced(key(2, 500, Some(1060)), 1000)]
    );
    assert_eq!(writes.removed, [hash(1)]);
    assert_eq!(writes.retiring, Some((hash(2), 1060)));
    // A key that expires exactly now is expired.
    let (keys, _) = rotated(&[key(2, 500, Some(1000))], &rotation(60, None)).unwrap();
    assert_eq!(keys, [key(9, 1000, None)]);
}

#[test]
fn a_key_id_is_a_prefix_of_its_hash_never_of_the_key() {
    let key = generate_api_key();
    let hash = ApiKeyHash::of(&key);
    assert_eq!(hash.id(), hash.to_hex()[..12]);
    assert!(!key.expose_secret().contains(&hash.id()));
}

#[test]
fn a_client_has_a_live_key_until_every_key_has_expired() {
    let mut c = client("w", by_cn("w", TEST_CA));
    assert!(!c.has_live_key(1000));
    c.api_keys = vec![key(1, 0, Some(2000)), replaced(key(2, 0, Some(1500)), 900)];
    assert!(c.has_live_key(1000));
    assert!(c.has_live_key(1999));
    assert!(!c.has_live_key(2000));
    assert_eq!(c.current_key(), Some(&key(1, 0, Some(2000))));
    // A client whose every key was replaced has none current.
    c.api_keys = vec![replaced(key(2, 0, Some(1500)), 900)];
    assert_eq!(c.current_key(), None);
}

#[test]
fn the_audit_log_names_each_key_by_id_with_its_end() {
    let mut c = client("w", by_cn("w", TEST_CA));
    assert_eq!(keys::describe_keys(&c, 1000), "no key");
    c.api_keys = vec![
        key(1, 0, None),
        replaced(key(2, 0, Some(4600)), 1000),
        replaced(key(3, 0, Some(900)), 500),
    ];
    assert_eq!(
        keys::describe_keys(&c, 1000),
        format!(
            "key {}, key {} (until 4600), key {} (expired)",
            hash(1).id(),
            hash(2).id(),
            hash(3).id()
        )
    );
    // Expiring exactly now is expired.
    c.api_keys = vec![key(1, 0, Some(1000))];
    assert_eq!(
        keys::describe_keys(&c, 1000),
        format!("key {} (expired)", hash(1).id())
    );
}

#[tokio::test]
async fn a_rotation_with_overlap_is_stored_and_read_back_current_first_even_within_one_second() {
    let (_dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    let (first, second) = (generate_api_key(), generate_api_key());
    let mut w = client("w", by_cn("w", TEST_CA));
    w.api_keys = vec![ApiKey::new(ApiKeyHash::of(&first), write::now())];
    assert!(registry.register(&w, None, &issuers).await.unwrap());
    let name = ClientName::parse("w").unwrap();
    let change = Change {
        actor: "op",
        reason: "test",
        operator: None,
        tryout: None,
    };
    let rotation = Rotation {
        key: ApiKeyHash::of(&second),
        overlap_secs: 3600,
        expires_in_secs: Some(86_400),
    };
    registry
        .rotate_api_key(&name, rotation, change)
        .await
        .unwrap();
    // Read back from the database, not from the snapshot the write left.
    let stored = super::read::read_client(registry.pool(), &name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.api_keys.len(), 2);
    let (current, old) = (stored.api_keys[0], stored.api_keys[1]);
    assert!(current.hash.matches(&ApiKeyHash::of(&second)));
    assert_eq!(current.replaced_at, None);
    assert_eq!(current.expires_at, Some(current.created_at + 86_400));
    assert!(old.hash.matches(&ApiKeyHash::of(&first)));
    assert_eq!(old.replaced_at, Some(current.created_at));
    assert_eq!(old.expires_at, Some(current.created_at + 3600));
    let snapshot = registry.snapshot();
    let (owner, key) = snapshot.client_for_key(&ApiKeyHash::of(&first)).unwrap();
    assert_eq!(owner.name, name);
    assert_eq!(key, old);
}

/// `w` (dual; in api_key mode with the `admin` scope if `admin`) registered beside `keeper`, an
/// operator.
async fn guarded_registry(admin: bool) -> (tempfile::TempDir, Registry, ClientName) {
    let (dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    let mut w = client("w", by_cn("w", TEST_CA));
    if admin {
        w.scopes = BTreeSet::from([Scope::PlansSubmit, Scope::Admin]);
        w.mode = MigrationMode::ApiKey;
    }
    assert!(registry.register(&w, None, &issuers).await.unwrap());
    let mut keeper = client("keeper", by_cn("keeper", TEST_CA));
    keeper.scopes = BTreeSet::from([Scope::Admin]);
    assert!(registry.register(&keeper, None, &issuers).await.unwrap());
    (dir, registry, ClientName::parse("w").unwrap())
}

fn operator_change() -> Change<'static> {
    Change {
        actor: "op",
        reason: "test",
        operator: None,
        tryout: None,
    }
}

async fn guard_of(registry: &Registry, client: &str) -> GuardView {
    registry
        .guards()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.client == client)
        .expect("a guard row")
}

/// `n` refusals of `method` from `network` at `at`, as one replica's tally holds them.
fn tallied(n: i64, method: AuthMethod, network: &str, at: i64) -> Tallied {
    let reason = match method {
        AuthMethod::ApiKey => "key_retired",
        AuthMethod::Certificate => "method_not_allowed",
    };
    let mut tallied = Tallied::default();
    tallied.seen.insert(
        RefusalAt {
            reason,
            method,
            network: network.to_owned(),
            at,
        },
        n,
    );
    tallied
}

async fn audit_reasons(registry: &Registry) -> Vec<String> {
    let crate::storage::Backend::Sqlite(pool) = registry.pool() else {
        unreachable!("the unit tests run on SQLite")
    };
    sqlx::query_scalar("SELECT reason FROM audit_events ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// `client` used `method` from `network` at `at`, as the recorder writes it.
async fn used_from(registry: &Registry, client: &str, method: AuthMethod, network: &str, at: i64) {
    let crate::storage::Backend::Sqlite(pool) = registry.pool() else {
        unreachable!("the unit tests run on SQLite")
    };
    sqlx::query(
        "INSERT INTO credential_networks (client, method, network, last_seen) VALUES ($1, $2, $3, $4)",
    )
    .bind(client)
    .bind(method.as_str())
    .bind(network)
    .bind(at)
    .execute(pool)
    .await
    .unwrap();
}

/// `w`'s mode set to `mode`, with `guard`.
async fn flip_w(registry: &Registry, mode: MigrationMode, guard: Option<FlipGuard>) {
    let name = ClientName::parse("w").unwrap();
    registry
        .set_mode(
            &name,
            mode,
            guard.map(|guard| GuardStart {
                guard,
                evidence_window_secs: 86_400,
            }),
            operator_change(),
        )
        .await
        .unwrap();
}

/// `n` key refusals of `client` from `network`, now, added as one replica's tick would.
async fn refuse(registry: &Registry, client: &str, n: i64, network: &str) -> GuardTick {
    registry
        .add_flip_refusals(
            client,
            &tallied(n, AuthMethod::ApiKey, network, write::now()),
        )
        .await
        .unwrap()
}

const GUARD: FlipGuard = FlipGuard {
    watch_secs: 600,
    max_refusals: 3,
};

#[tokio::test]
async fn a_guard_reaching_its_threshold_from_known_networks_reopens_the_key_for_those_networks_only()
 {
    let (_dir, registry, name) = guarded_registry(false).await;
    let before = write::now() - 60;
    used_from(&registry, "w", AuthMethod::ApiKey, "10.0.0.0/24", before).await;
    used_from(&registry, "w", AuthMethod::ApiKey, "10.9.0.0/24", before).await;
    // Certificates from elsewhere, and a key use past the evidence window, are not the key's
    // known networks.
    used_from(
        &registry,
        "w",
        AuthMethod::Certificate,
        "10.5.0.0/24",
        before,
    )
    .await;
    used_from(
        &registry,
        "w",
        AuthMethod::ApiKey,
        "10.7.0.0/24",
        before - 90_000,
    )
    .await;
    flip_w(&registry, MigrationMode::Mtls, Some(GUARD)).await;
    let first = refuse(&registry, "w", 2, "10.0.0.0/24").await;
    assert_eq!(first, GuardTick::default());
    let watching = guard_of(&registry, "w").await;
    assert_eq!(
        (watching.state.as_str(), watching.refusals),
        ("watching", 2)
    );
    assert_eq!(
        (watching.from.as_str(), watching.to.as_str()),
        ("dual", "mtls")
    );
    assert_eq!(watching.retired_method, Some(AuthMethod::ApiKey));
    assert_eq!(
        watching.known_networks,
        BTreeSet::from(["10.0.0.0/24".to_owned(), "10.9.0.0/24".to_owned()])
    );
    assert_eq!(watching.watch_until - watching.started_at, 600);
    assert_eq!(watching.max_refusals, 3);
    // The request path's copy of the guard, from the mode change on: what a refusal is judged
    // against as it comes.
    let in_memory = registry.watch("w").expect("the watching guard in memory");
    assert_eq!(in_memory.retired, Some(AuthMethod::ApiKey));
    assert_eq!(in_memory.known_networks, watching.known_networks);
    assert_eq!(
        (in_memory.started_at, in_memory.watch_until),
        (watching.started_at, watching.watch_until)
    );
    assert!(registry.watch("keeper").is_none());
    let end = refuse(&registry, "w", 1, "10.9.0.0/24").await.end;
    let reopened = Reopening {
        method: AuthMethod::ApiKey,
        networks: BTreeSet::from(["10.0.0.0/24".to_owned(), "10.9.0.0/24".to_owned()]),
        until: watching.watch_until + super::guard::REOPEN_GRACE_SECS,
    };
    assert_eq!(
        end,
        Some(GuardEnd::Reverted {
            client: "w".into(),
            because: "3 refusals (key_retired 3) from 10.0.0.0/24, 10.9.0.0/24".into(),
            reopened: reopened.clone(),
        })
    );
    // The operator's mode stands; the key is re-admitted from those networks only.
    assert_eq!(
        registry.snapshot().client(&name).unwrap().mode,
        MigrationMode::Mtls
    );
    assert_eq!(registry.reopening("w"), Some(reopened.clone()));
    assert!(registry.watch("w").is_none(), "no longer watching");
    // A reload of the client (a change made elsewhere) sets it aside until the next reread
    // finds it still stored.
    registry.reload_client(&name).await.unwrap();
    assert_eq!(registry.reopening("w"), None);
    registry.refresh_guards_in_force().await.unwrap();
    assert_eq!(registry.reopening("w"), Some(reopened.clone()));
    let reverted = guard_of(&registry, "w").await;
    assert_eq!(
        (reverted.state.as_str(), reverted.refusals),
        ("reverted", 3)
    );
    assert_eq!(reverted.reopened, Some(reopened));
    assert!(reverted.ended_at.is_some());
    assert_eq!(reverted.evidence.total(), 3);
    // Once ended, more refusals change nothing.
    assert_eq!(refuse(&registry, "w", 5, "10.0.0.0/24").await.end, None);
    let reasons = audit_reasons(&registry).await;
    assert_eq!(reasons.iter().filter(|r| *r == "mode_reverted").count(), 1);
    // Refusals of a client without a guard, or of no client at all, are dropped.
    assert_eq!(
        refuse(&registry, "keeper", 9, "x").await,
        GuardTick::default()
    );
    assert_eq!(
        refuse(&registry, "not a name!", 9, "x").await,
        GuardTick::default()
    );
    // A manual mode change ends the reopening (the operator decided).
    flip_w(&registry, MigrationMode::Mtls, None).await;
    registry.refresh_guards_in_force().await.unwrap();
    assert_eq!(registry.reopening("w"), None);
}

#[tokio::test]
async fn the_retired_key_from_a_network_that_never_used_it_never_counts_and_is_an_alert() {
    let (_dir, registry, name) = guarded_registry(false).await;
    used_from(
        &registry,
        "w",
        AuthMethod::ApiKey,
        "10.0.0.0/24",
        write::now() - 60,
    )
    .await;
    flip_w(&registry, MigrationMode::Mtls, Some(GUARD)).await;
    let tick = refuse(&registry, "w", 50, "203.0.113.0/24").await;
    assert_eq!(tick.end, None);
    assert_eq!(tick.unknown_sources, [("203.0.113.0/24".to_owned(), 50)]);
    let guard = guard_of(&registry, "w").await;
    assert_eq!((guard.state.as_str(), guard.refusals), ("watching", 0));
    assert_eq!(
        registry.snapshot().client(&name).unwrap().mode,
        MigrationMode::Mtls
    );
    assert_eq!(registry.reopening("w"), None);
}

#[tokio::test]
async fn refusals_from_before_the_flip_or_of_a_method_it_did_not_retire_never_count() {
    let (_dir, registry, _name) = guarded_registry(false).await;
    let before = write::now() - 60;
    used_from(&registry, "w", AuthMethod::ApiKey, "10.0.0.0/24", before).await;
    used_from(
        &registry,
        "w",
        AuthMethod::Certificate,
        "10.0.0.0/24",
        before,
    )
    .await;
    flip_w(&registry, MigrationMode::Mtls, Some(GUARD)).await;
    let started = guard_of(&registry, "w").await.started_at;
    let early = tallied(9, AuthMethod::ApiKey, "10.0.0.0/24", started - 1);
    assert_eq!(
        registry.add_flip_refusals("w", &early).await.unwrap(),
        GuardTick::default()
    );
    let other = tallied(9, AuthMethod::Certificate, "10.0.0.0/24", started);
    assert_eq!(
        registry.add_flip_refusals("w", &other).await.unwrap(),
        GuardTick::default()
    );
    assert_eq!(guard_of(&registry, "w").await.refusals, 0);
    // A flip that retires nothing (mtls -> dual) counts nothing, whatever comes.
    flip_w(&registry, MigrationMode::Dual, Some(GUARD)).await;
    let fresh = guard_of(&registry, "w").await;
    assert_eq!(fresh.retired_method, None);
    assert!(fresh.known_networks.is_empty());
    let now = write::now();
    for method in [AuthMethod::ApiKey, AuthMethod::Certificate] {
        let tick = registry
            .add_flip_refusals("w", &tallied(9, method, "10.0.0.0/24", now))
            .await
            .unwrap();
        assert_eq!(tick, GuardTick::default());
    }
    assert_eq!(guard_of(&registry, "w").await.refusals, 0);
}

#[tokio::test]
async fn a_flip_to_api_key_counts_certificates_from_their_known_networks_only() {
    let (_dir, registry, name) = guarded_registry(false).await;
    used_from(
        &registry,
        "w",
        AuthMethod::Certificate,
        "10.0.0.0/24",
        write::now() - 60,
    )
    .await;
    flip_w(&registry, MigrationMode::ApiKey, Some(GUARD)).await;
    let now = write::now();
    // A stolen certificate sent from another network: an alert, never a revert.
    let stolen = tallied(9, AuthMethod::Certificate, "203.0.113.0/24", now);
    let tick = registry.add_flip_refusals("w", &stolen).await.unwrap();
    assert_eq!((tick.end, tick.unknown_sources.len()), (None, 1));
    let known = tallied(3, AuthMethod::Certificate, "10.0.0.0/24", now);
    let end = registry.add_flip_refusals("w", &known).await.unwrap().end;
    assert!(
        matches!(&end, Some(GuardEnd::Reverted { reopened, .. })
            if reopened.method == AuthMethod::Certificate
                && reopened.networks == BTreeSet::from(["10.0.0.0/24".to_owned()])),
        "{end:?}"
    );
    assert_eq!(
        registry.snapshot().client(&name).unwrap().mode,
        MigrationMode::ApiKey
    );
}

#[tokio::test]
async fn a_guard_whose_watch_is_over_is_confirmed_once_after_late_ticks_had_time_to_land() {
    let (_dir, registry, name) = guarded_registry(false).await;
    used_from(
        &registry,
        "w",
        AuthMethod::ApiKey,
        "10.0.0.0/24",
        write::now() - 60,
    )
    .await;
    let start = |ago: i64| {
        let registry = &registry;
        let name = &name;
        async move {
            let mut tx = registry.pool().begin().await.unwrap();
            super::guard_start::replace_guard(
                &mut tx,
                name,
                (MigrationMode::Dual, MigrationMode::Mtls),
                Some(GuardStart {
                    guard: FlipGuard {
                        watch_secs: 1,
                        max_refusals: 3,
                    },
                    evidence_window_secs: 86_400,
                }),
                write::now() - ago,
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }
    };
    // A guard that watched for one second, from two seconds ago: its watch is over, but a
    // replica's tick may still bring refusals from within it.
    start(2).await;
    assert_eq!(registry.end_due_guards().await.unwrap(), []);
    let started = guard_of(&registry, "w").await.started_at;
    let late = tallied(1, AuthMethod::ApiKey, "10.0.0.0/24", started);
    registry.add_flip_refusals("w", &late).await.unwrap();
    assert_eq!(guard_of(&registry, "w").await.refusals, 1);
    // One started ten seconds ago is confirmed, once; refusals after its watch do not count.
    start(10).await;
    assert_eq!(
        refuse(&registry, "w", 3, "10.0.0.0/24").await,
        GuardTick::default()
    );
    assert_eq!(
        registry.end_due_guards().await.unwrap(),
        [GuardEnd::Confirmed { client: "w".into() }]
    );
    assert_eq!(registry.end_due_guards().await.unwrap(), []);
    let confirmed = guard_of(&registry, "w").await;
    assert_eq!(
        (confirmed.state.as_str(), confirmed.refusals),
        ("confirmed", 0)
    );
    assert!(
        audit_reasons(&registry)
            .await
            .contains(&"mode_confirmed".to_owned())
    );
}

#[tokio::test]
async fn a_manual_mode_change_cancels_the_running_guard_and_a_new_guard_starts_afresh() {
    let (_dir, registry, name) = guarded_registry(false).await;
    used_from(
        &registry,
        "w",
        AuthMethod::ApiKey,
        "10.0.0.0/24",
        write::now() - 60,
    )
    .await;
    flip_w(&registry, MigrationMode::Mtls, Some(GUARD)).await;
    refuse(&registry, "w", 2, "10.0.0.0/24").await;
    flip_w(&registry, MigrationMode::Mtls, None).await;
    let cancelled = guard_of(&registry, "w").await;
    assert_eq!(cancelled.state, "cancelled");
    assert!(cancelled.ended_at.is_some());
    assert_eq!(
        refuse(&registry, "w", 3, "10.0.0.0/24").await,
        GuardTick::default()
    );
    assert_eq!(
        registry.snapshot().client(&name).unwrap().mode,
        MigrationMode::Mtls
    );
    // A new guarded flip watches from zero.
    flip_w(&registry, MigrationMode::Dual, Some(GUARD)).await;
    let fresh = guard_of(&registry, "w").await;
    assert_eq!((fresh.state.as_str(), fresh.refusals), ("watching", 0));
    assert_eq!((fresh.from.as_str(), fresh.to.as_str()), ("mtls", "dual"));
    assert_eq!(fresh.evidence, FlipEvidence::default());
}

#[test]
fn ending_one_key_expires_it_now_and_leaves_the_other_as_it_was() {
    // Hashes whose ids (their first 12 hex digits) differ, as real keys' do.
    let hash = |n: u8| ApiKeyHash::parse_hex(&format!("{n:02x}{}", "0".repeat(62))).unwrap();
    let mut c = client("w", by_cn("w", TEST_CA));
    let current = ApiKey::new(hash(2), 900);
    let old = ApiKey {
        expires_at: Some(5000),
        replaced_at: Some(900),
        ..ApiKey::new(hash(1), 100)
    };
    c.api_keys = vec![current, old];
    // The key in its overlap (a leak of the old key): the current one stays current.
    assert_eq!(keys::end_key(&mut c, &hash(1).id(), 1000).unwrap(), hash(1));
    assert_eq!(c.api_keys[0], current);
    assert_eq!(
        (c.api_keys[1].expires_at, c.api_keys[1].replaced_at),
        (Some(1000), Some(900))
    );
    assert!(c.api_keys[1].expired(1000));
    // Ended already, or no such key: not found, nothing changes.
    for id in [hash(1).id(), "000000000000".to_owned()] {
        let before = c.api_keys.clone();
        assert!(matches!(
            keys::end_key(&mut c, &id, 1001),
            Err(RegistryError::KeyNotFound { .. })
        ));
        assert_eq!(c.api_keys, before);
    }
    // The current key: ended now, and no longer current.
    assert_eq!(keys::end_key(&mut c, &hash(2).id(), 1002).unwrap(), hash(2));
    assert_eq!(
        (c.api_keys[0].expires_at, c.api_keys[0].replaced_at),
        (Some(1002), Some(1002))
    );
    assert_eq!(c.current_key(), None);
    assert!(!c.has_live_key(1002));
}

#[tokio::test]
async fn an_ended_key_is_stored_as_expired_and_the_other_key_still_authenticates() {
    let (_dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    let (first, second) = (generate_api_key(), generate_api_key());
    let mut w = client("w", by_cn("w", TEST_CA));
    w.api_keys = vec![ApiKey::new(ApiKeyHash::of(&first), write::now())];
    assert!(registry.register(&w, None, &issuers).await.unwrap());
    let name = ClientName::parse("w").unwrap();
    let rotation = Rotation {
        key: ApiKeyHash::of(&second),
        overlap_secs: 3600,
        expires_in_secs: None,
    };
    registry
        .rotate_api_key(&name, rotation, operator_change())
        .await
        .unwrap();
    let leaked = ApiKeyHash::of(&first);
    registry
        .end_api_key(&name, &leaked.id(), operator_change())
        .await
        .unwrap();
    let stored = super::read::read_client(registry.pool(), &name)
        .await
        .unwrap()
        .unwrap();
    let now = write::now();
    let (current, old) = (stored.api_keys[0], stored.api_keys[1]);
    assert!(old.hash.matches(&leaked) && old.expired(now));
    assert!(current.hash.matches(&ApiKeyHash::of(&second)) && !current.expired(now));
    let snapshot = registry.snapshot();
    let (_, in_snapshot) = snapshot.client_for_key(&leaked).unwrap();
    assert!(in_snapshot.expired(now));
    assert!(
        matches!(
            registry
                .end_api_key(&name, &leaked.id(), operator_change())
                .await,
            Err(RegistryError::KeyNotFound { .. })
        ),
        "a key ends once"
    );
    assert!(
        audit_reasons(&registry)
            .await
            .contains(&"api_key_ended".to_owned())
    );
}

#[tokio::test]
async fn the_database_holds_at_most_one_current_key_per_client() {
    let (_dir, registry) = registry().await;
    let issuers = trust(&[&CA], &[]).issuers().clone();
    let mut w = client("w", by_cn("w", TEST_CA));
    w.api_keys = vec![ApiKey::new(hash(1), 0)];
    assert!(registry.register(&w, None, &issuers).await.unwrap());
    let crate::storage::Backend::Sqlite(pool) = registry.pool() else {
        unreachable!("the unit tests run on SQLite")
    };
    let insert = |hash: ApiKeyHash, replaced_at: Option<i64>| {
        sqlx::query(
            "INSERT INTO api_keys (client, key_sha256, created_at, replaced_at) VALUES ('w', $1, 0, $2)",
        )
        .bind(hash.to_hex())
        .bind(replaced_at)
        .execute(pool)
    };
    // A second current key (a rotation racing another on a second replica) is refused ...
    assert!(insert(hash(2), None).await.is_err());
    // ... a replaced one beside the current one is not.
    assert!(insert(hash(3), Some(10)).await.is_ok());
}

#[tokio::test]
async fn a_whole_read_skips_rows_that_do_not_parse_keeps_the_rest_in_order_and_shares_each_issuer()
{
    let dir = tempfile::tempdir().unwrap();
    let pool = pool_in(dir.path()).await;
    let crate::storage::Backend::Sqlite(sqlite) = &pool else {
        unreachable!("the unit tests run on SQLite")
    };
    for statement in [
        "INSERT INTO clients (name, mode, scopes, disabled, created_at, updated_at) VALUES \
         ('good', 'dual', 'plans:submit', 0, 0, 0), ('bad', 'dual', 'teleport', 0, 0, 0), \
         ('zed', 'mtls', 'plans:submit admin', 1, 0, 0)",
        "INSERT INTO cert_bindings (client, issuer, subject_cn, fingerprints) VALUES \
         ('good', 'CN=Test CA, O=Test', 'good-1', ''), ('bad', 'CN=Test CA, O=Test', 'bad', ''), \
         ('good', 'not a name', 'good-broken', ''), ('zed', 'CN=Test CA, O=Test', 'zed', ''), \
         ('good', 'CN=Test CA, O=Test', 'good-2', '')",
        "INSERT INTO api_keys (client, key_sha256, created_at, replaced_at) VALUES \
         ('good', 'not hex', 5, 4)",
    ] {
        sqlx::query(statement).execute(sqlite).await.unwrap();
    }
    let insert_key = |hash: ApiKeyHash, created_at: i64, replaced_at: Option<i64>| {
        sqlx::query(
            "INSERT INTO api_keys (client, key_sha256, created_at, replaced_at) VALUES ('good', $1, $2, $3)",
        )
        .bind(hash.to_hex())
        .bind(created_at)
        .bind(replaced_at)
        .execute(sqlite)
    };
    insert_key(hash(1), 1, Some(3)).await.unwrap();
    insert_key(hash(2), 3, None).await.unwrap();

    let registry = Registry::load(pool).await.unwrap();
    let snapshot = registry.snapshot();
    let mut names: Vec<&str> = snapshot.clients().map(|c| c.name.as_str()).collect();
    names.sort();
    assert_eq!(
        names,
        ["good", "zed"],
        "the client whose scope does not parse is skipped"
    );
    let good = snapshot
        .client(&ClientName::parse("good").unwrap())
        .unwrap();
    let cns: Vec<_> = good
        .bindings
        .iter()
        .map(|b| b.name(Kind::SubjectCn).unwrap())
        .collect();
    assert_eq!(
        cns,
        ["good-1", "good-2"],
        "the binding whose issuer does not parse is skipped"
    );
    let keys: Vec<_> = good.api_keys.iter().map(|k| k.hash).collect();
    assert_eq!(
        keys,
        [hash(2), hash(1)],
        "the current key first; the unreadable hash skipped"
    );
    let zed = snapshot.client(&ClientName::parse("zed").unwrap()).unwrap();
    assert!(zed.disabled && zed.scopes.contains(&Scope::Admin));
    let issuer = |c: &Client, i: usize| c.bindings[i].issuer.clone().unwrap();
    assert!(std::sync::Arc::ptr_eq(&issuer(good, 0), &issuer(good, 1)));
    assert!(std::sync::Arc::ptr_eq(&issuer(good, 0), &issuer(zed, 0)));
    assert!(snapshot.client_for_key(&hash(1)).is_some());
}

#[tokio::test]
async fn a_client_with_many_bindings_and_keys_is_read_whole_in_order_into_lists_that_fit() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool_in(dir.path()).await;
    let crate::storage::Backend::Sqlite(sqlite) = &pool else {
        unreachable!("the unit tests run on SQLite")
    };
    sqlx::query(
        "INSERT INTO clients (name, mode, scopes, disabled, created_at, updated_at) VALUES \
         ('many', 'dual', 'plans:submit', 0, 0, 0)",
    )
    .execute(sqlite)
    .await
    .unwrap();
    for n in 1..=5 {
        sqlx::query(
            "INSERT INTO cert_bindings (client, issuer, subject_cn, fingerprints) \
             VALUES ('many', 'CN=Test CA', $1, '')",
        )
        .bind(format!("many-{n}"))
        .execute(sqlite)
        .await
        .unwrap();
    }
    for n in 1..=3u8 {
        sqlx::query(
            "INSERT INTO api_keys (client, key_sha256, created_at, replaced_at) VALUES ('many', $1, $2, $3)",
        )
        .bind(hash(n).to_hex())
        .bind(i64::from(n))
        .bind((n < 3).then_some(i64::from(n) + 1))
        .execute(sqlite)
        .await
        .unwrap();
    }
    let registry = Registry::load(pool).await.unwrap();
    let snapshot = registry.snapshot();
    let many = snapshot
        .client(&ClientName::parse("many").unwrap())
        .unwrap();
    let cns: Vec<_> = many
        .bindings
        .iter()
        .map(|b| b.name(Kind::SubjectCn).unwrap())
        .collect();
    assert_eq!(cns, ["many-1", "many-2", "many-3", "many-4", "many-5"]);
    let keys: Vec<_> = many.api_keys.iter().map(|k| k.hash).collect();
    assert_eq!(keys, [hash(3), hash(2), hash(1)]);
    // Grown by doubling past two, then trimmed: no room left over in a registry of a million.
    assert_eq!(many.bindings.capacity(), 5);
    assert_eq!(many.api_keys.capacity(), 3);
}

#[tokio::test]
async fn the_presented_chains_are_every_stored_chain_whenever_it_was_last_seen() {
    let (_dir, registry) = registry().await;
    let crate::storage::Backend::Sqlite(pool) = registry.pool() else {
        unreachable!("the unit tests run on SQLite")
    };
    // A chain of two certificates seen long ago and already expired, and one of one seen now:
    // the keyCompromise sweep looks at both (a revoked certificate need not be valid).
    for (client, chain, last_seen, not_after) in [
        ("old", "0a0b 0c", 1_i64, Some(2_i64)),
        ("new", "0d", 4_000_000_000, None),
    ] {
        sqlx::query(
            "INSERT INTO presented_certificates (client, fingerprint, chain, last_seen, not_after) \
             VALUES ($1, $1, $2, $3, $4)",
        )
        .bind(client)
        .bind(chain)
        .bind(last_seen)
        .bind(not_after)
        .execute(pool)
        .await
        .unwrap();
    }
    let mut chains = registry.presented_chains().await.unwrap();
    chains.sort();
    assert_eq!(
        chains,
        [vec![vec![0x0a, 0x0b], vec![0x0c]], vec![vec![0x0d]]]
    );
}

#[tokio::test]
async fn a_binding_with_every_field_is_stored_and_read_back_whole_by_both_readers() {
    let dir = tempfile::tempdir().unwrap();
    let pool = pool_in(dir.path()).await;
    let registry = Registry::load(pool.clone()).await.unwrap();
    let issuers = trust(&[&CA], &[]).issuers().clone();
    let whole = client(
        "whole",
        CertBindingSpec {
            issuer: Some(TEST_CA.into()),
            issuer_spki_sha256: Some("ab".repeat(32)),
            subject_cn: Some("whole".into()),
            spiffe_id: Some("spiffe://d/whole".into()),
            dns_name: Some("whole.dispatch.internal".into()),
            fingerprints: vec!["cd".repeat(32), "ef".repeat(32)],
        },
    );
    assert_eq!(
        registry
            .register_all(std::slice::from_ref(&whole), None, &issuers)
            .await
            .unwrap(),
        1
    );
    // The whole read at start (on SQLite, over a connection of its own on the file).
    let reread = Registry::load(pool.clone()).await.unwrap();
    let snapshot = reread.snapshot();
    assert_eq!(
        snapshot.client(&whole.name).unwrap().bindings,
        whole.bindings
    );
    // One client, through sqlx.
    let one = read::read_client(&pool, &whole.name)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.bindings, whole.bindings);
}

/// A leaf of the test CA with this CN and these dNSName SANs, verified.
fn cert_with_dns(cn: &str, dns_names: &[&str]) -> VerifiedCertificate {
    let mut spec = devpki::LeafSpec::workload(cn, time::Duration::hours(1));
    spec.dns_names = dns_names.iter().map(|n| (*n).to_owned()).collect();
    let issued = CA.issue(&spec).unwrap();
    (*verified(&trust(&[&CA, &OTHER], &[]), &issued, &[]).unwrap()).clone()
}

fn by_dns(name: &str) -> CertBindingSpec {
    CertBindingSpec {
        issuer: Some(TEST_CA.into()),
        dns_name: Some(name.into()),
        ..Default::default()
    }
}

#[test]
fn a_dns_name_binding_matches_a_leaf_carrying_that_name_among_others_whatever_its_case() {
    let snap = RegistrySnapshot::new(
        vec![client("worker", by_dns("Worker.Dispatch.Internal"))],
        HashSet::new(),
    );
    let table: [(&[&str], Result<&str, CertMatchFailure>); 6] = [
        (&["worker.dispatch.internal"], Ok("worker")),
        // Several names are how an ACME certificate names its workload: not ambiguous.
        (
            &["api.dispatch.internal", "worker.dispatch.internal"],
            Ok("worker"),
        ),
        (&["WORKER.dispatch.INTERNAL"], Ok("worker")),
        (
            &["worker.dispatch.internal.evil"],
            Err(CertMatchFailure::Unmapped),
        ),
        (
            &["other.dispatch.internal"],
            Err(CertMatchFailure::Unmapped),
        ),
        // The CN is not a DNS name: a DNS binding asks for the SAN.
        (&[], Err(CertMatchFailure::Unmapped)),
    ];
    for (names, expected) in table {
        let leaf = cert_with_dns("worker.dispatch.internal", names);
        let answer = snap
            .client_for_certificate(&leaf, &issuers())
            .map(|client| client.name.as_str());
        assert_eq!(answer, expected, "{names:?}");
    }
    // Through a change since the base was built, too (the snapshot's own index).
    let changed = snap.with_client(
        &ClientName::parse("second").unwrap(),
        Some(client("second", by_dns("second.dispatch.internal"))),
    );
    let leaf = cert_with_dns("x", &["Second.Dispatch.Internal"]);
    let answer = changed.client_for_certificate(&leaf, &issuers());
    assert_eq!(answer.map(|c| c.name.as_str()), Ok("second"));
}

#[test]
fn dns_name_bindings_of_one_name_and_issuer_overlap_whatever_their_case() {
    let a = CertBinding::parse(&by_dns("worker.dispatch.internal")).unwrap();
    let b = CertBinding::parse(&by_dns("WORKER.dispatch.internal.")).unwrap();
    let other = CertBinding::parse(&by_dns("other.dispatch.internal")).unwrap();
    let cn = CertBinding::parse(&by_cn("worker.dispatch.internal", TEST_CA)).unwrap();
    assert!(a.overlaps(&b));
    assert!(!a.overlaps(&other));
    // A CN and a DNS name of the same text name different things until a certificate carries
    // both: the tryout sees that, not the overlap check.
    assert!(!a.overlaps(&cn));
    let snap = RegistrySnapshot::new(
        vec![client("worker", by_dns("worker.dispatch.internal"))],
        HashSet::new(),
    );
    assert_eq!(
        snap.overlapping(&ClientName::parse("copy").unwrap(), &b)
            .map(ClientName::as_str),
        Some("worker")
    );
}
