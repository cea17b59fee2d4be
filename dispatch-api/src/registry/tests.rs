//! Binding and snapshot rules, without a database.

use std::collections::HashSet;

use super::*;

fn cert(cn: &str, issuer: &str, spiffe: Option<&str>) -> PeerCertificate {
    PeerCertificate {
        fingerprint: Fingerprint::of_der(format!("{cn}{issuer}").as_bytes()),
        subject: DistinguishedName::parse(&format!("CN={cn}")).unwrap(),
        issuer: DistinguishedName::parse(issuer).unwrap(),
        common_names: vec![cn.to_owned()],
        spiffe_ids: spiffe
            .map(|s| SpiffeId::parse(s).unwrap())
            .into_iter()
            .collect(),
        dns_names: vec![],
        serial: "01".into(),
        not_after: time::OffsetDateTime::now_utc(),
    }
}

fn client(name: &str, binding: CertBindingSpec) -> Client {
    Client {
        name: ClientName::parse(name).unwrap(),
        mode: MigrationMode::Dual,
        scopes: BTreeSet::from([Scope::PlansSubmit]),
        disabled: false,
        bindings: vec![CertBinding::parse(&binding).unwrap()],
        api_key: None,
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
        issuer: Some("CN=CA".into()),
        spiffe_id: Some("spiffe://d/w".into()),
        ..Default::default()
    };
    let snap = RegistrySnapshot::new(vec![client("w", spec)], HashSet::new());
    let found = snap.client_for_certificate(&cert("other-cn", "CN=CA", Some("spiffe://d/w")));
    assert_eq!(found.unwrap().name.as_str(), "w");
    let missing = snap.client_for_certificate(&cert("other-cn", "CN=CA", Some("spiffe://d/x")));
    assert_eq!(missing.unwrap_err(), CertMatchFailure::Unmapped);
}

#[test]
fn same_name_from_another_issuer_is_issuer_not_allowed() {
    let snap = RegistrySnapshot::new(vec![client("w", by_cn("w", "CN=CA"))], HashSet::new());
    let err = snap
        .client_for_certificate(&cert("w", "CN=Other CA", None))
        .unwrap_err();
    assert_eq!(err, CertMatchFailure::IssuerNotAllowed);
}

#[test]
fn pinned_fingerprints_exclude_other_certificates_with_the_same_name() {
    let good = cert("w", "CN=CA", None);
    let mut spec = by_cn("w", "CN=CA");
    spec.fingerprints = vec![good.fingerprint.to_string()];
    let snap = RegistrySnapshot::new(vec![client("w", spec)], HashSet::new());
    assert!(snap.client_for_certificate(&good).is_ok());
    let mut renewed = cert("w", "CN=CA", None);
    renewed.fingerprint = Fingerprint::of_der(b"another");
    assert_eq!(
        snap.client_for_certificate(&renewed).unwrap_err(),
        CertMatchFailure::Unmapped
    );
}

#[test]
fn revoked_fingerprint_wins_over_a_matching_binding() {
    let c = cert("w", "CN=CA", None);
    let snap = RegistrySnapshot::new(
        vec![client("w", by_cn("w", "CN=CA"))],
        HashSet::from([c.fingerprint]),
    );
    assert_eq!(
        snap.client_for_certificate(&c).unwrap_err(),
        CertMatchFailure::Revoked
    );
}

#[test]
fn api_keys_are_found_by_hash() {
    let key = generate_api_key();
    let mut c = client("w", by_cn("w", "CN=CA"));
    c.api_key = Some(ApiKeyHash::of(&key));
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
            client("a", by_cn("a", "CN=CA")),
            client("b", by_cn("b", "CN=CA")),
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
        subject_cn: Some("w".into()),
        spiffe_id: Some("spiffe://d/w".into()),
        fingerprints: vec!["ab".repeat(32)],
    };
    let back = CertBinding::parse(&spec).unwrap().to_spec();
    assert_eq!(back.issuer, spec.issuer);
    assert_eq!(back.subject_cn, spec.subject_cn);
    assert_eq!(back.spiffe_id, spec.spiffe_id);
    assert_eq!(back.fingerprints, spec.fingerprints);
}

#[test]
fn a_binding_names_a_certificate_only_by_what_it_binds() {
    // Two bindings of one client: a pinned CN under "CN=CA", a SPIFFE ID under "CN=Other CA".
    let presented = cert("b", "CN=CA", Some("spiffe://d/w"));
    let pinned = CertBindingSpec {
        issuer: Some("CN=CA".into()),
        subject_cn: Some("a".into()),
        fingerprints: vec![presented.fingerprint.to_string()],
        ..Default::default()
    };
    let by_spiffe = CertBindingSpec {
        issuer: Some("CN=Other CA".into()),
        spiffe_id: Some("spiffe://d/w".into()),
        ..Default::default()
    };
    let mut two = client("w", pinned);
    two.bindings.push(CertBinding::parse(&by_spiffe).unwrap());
    let snap = RegistrySnapshot::new(vec![two], HashSet::new());
    // Found through its SPIFFE ID, whose binding expects another issuer; the pinned binding
    // names CN=a, not this certificate (CN=b), whatever its pins say.
    assert_eq!(
        snap.client_for_certificate(&presented).unwrap_err(),
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
