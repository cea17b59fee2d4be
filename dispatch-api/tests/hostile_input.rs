//! Property tests: hostile input to the parsers at the boundary never panics and always gets a
//! clear error.

use std::collections::HashSet;

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use dispatch_api::auth::ReasonCode;
use dispatch_api::auth::authenticate;
use dispatch_api::identity::{ConnectionIdentity, PeerCertificate};
use dispatch_api::plans::{Plan, PlanLimits, PlanRequest};
use dispatch_api::registry::RegistrySnapshot;
use dispatch_api::tls::Trust;
use proptest::prelude::*;

const LIMITS: PlanLimits = PlanLimits { max_stops: 20 };

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
            .map(serde_json::Value::Number)
            .unwrap_or_default()),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,80}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(serde_json::Value::Array),
            prop::collection::hash_map("[a-z_]{1,12}", inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn plan_like() -> impl Strategy<Value = serde_json::Value> {
    let stop = (".{0,70}", any::<f64>(), -200.0f64..200.0, prop::option::of(("[0-9:]{0,6}", "[0-9:]{0,6}"))).prop_map(
        |(id, lat, lon, window)| {
            let mut stop = serde_json::json!({ "id": id, "latitude": if lat.is_finite() { lat } else { 0.0 }, "longitude": lon });
            if let Some((start, end)) = window {
                stop["time_window"] = serde_json::json!({ "start": start, "end": end });
            }
            stop
        },
    );
    (".{0,70}", ".{0,70}", ".{0,12}", prop::collection::vec(stop, 0..30)).prop_map(|(route, team, date, stops)| {
        serde_json::json!({ "route_id": route, "team": team, "planned_date": date, "stops": stops })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_never_panics_the_plan_parser(value in json_value()) {
        if let Ok(request) = serde_json::from_value::<PlanRequest>(value) {
            let _ = Plan::parse(request, LIMITS);
        }
    }

    #[test]
    fn accepted_plans_respect_every_bound(value in plan_like()) {
        let Ok(request) = serde_json::from_value::<PlanRequest>(value) else { return Ok(()) };
        match Plan::parse(request, LIMITS) {
            Ok(plan) => {
                prop_assert!(!plan.stops.is_empty() && plan.stops.len() <= LIMITS.max_stops);
                let mut ids = HashSet::new();
                for stop in &plan.stops {
                    prop_assert!((-90.0..=90.0).contains(&stop.latitude));
                    prop_assert!((-180.0..=180.0).contains(&stop.longitude));
                    prop_assert!(ids.insert(stop.id.as_str().to_owned()), "duplicate stop ids");
                }
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty(), "a refusal says why");
                prop_assert!(errors.iter().all(|e| e.pointer.starts_with('/') && !e.detail.is_empty()));
            }
        }
    }

    #[test]
    fn arbitrary_der_never_panics_identity_extraction(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = PeerCertificate::from_der(&bytes);
    }

    #[test]
    fn odd_subjects_and_long_san_lists_are_read_faithfully(
        common_names in prop::collection::vec("\\PC{0,40}", 0..4),
        uris in prop::collection::vec("[a-z]{1,10}", 0..150),
    ) {
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new(); // no default CN
        for cn in &common_names {
            params.distinguished_name.push(rcgen::DnType::CommonName, cn.as_str());
        }
        params.subject_alt_names = uris
            .iter()
            .map(|u| rcgen::SanType::URI(format!("spiffe://td/{u}").try_into().unwrap()))
            .collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let parsed = PeerCertificate::from_der(cert.der()).unwrap();
        // rcgen keeps one value per attribute type: the last CN pushed is the subject's CN.
        prop_assert_eq!(parsed.common_names.len(), usize::from(!common_names.is_empty()));
        prop_assert_eq!(parsed.spiffe_ids.len(), uris.len());
    }

    #[test]
    fn any_api_key_header_is_refused_cleanly_by_an_empty_registry(
        values in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..400), 0..3),
    ) {
        let mut headers = HeaderMap::new();
        for value in &values {
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.append(HeaderName::from_static("x-api-key"), value);
            }
        }
        let refusal = authenticate(&RegistrySnapshot::default(), &Trust::empty(), &ConnectionIdentity::Anonymous, &headers, time::OffsetDateTime::now_utc()).unwrap_err();
        prop_assert!(matches!(refusal.reason, ReasonCode::NoCredentials | ReasonCode::KeyInvalid));
    }

    #[test]
    fn arbitrary_settings_text_is_an_error_not_a_panic(text in "\\PC{0,300}") {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("base.toml"), &text).unwrap();
        let _ = dispatch_api::configuration::Settings::load(dir.path(), "local");
    }

    #[test]
    fn arbitrary_clients_files_are_an_error_not_a_panic(text in "\\PC{0,300}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.toml");
        std::fs::write(&path, &text).unwrap();
        let _ = dispatch_api::registry::BootstrapFile::read(&path);
    }
}

#[test]
fn settings_debug_output_holds_paths_not_secrets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("base.toml"),
        "[server]\nhost='127.0.0.1'\nport=0\n[tls]\npkcs12_file='/run/secrets/server.pfx'\npkcs12_password_file='/run/secrets/pfx-password'\nclient_ca_file='ca.pem'\nclient_auth='optional'\n[database]\npath='x.db'\n",
    )
    .unwrap();
    let settings = dispatch_api::configuration::Settings::load(dir.path(), "local").unwrap();
    let shown = format!("{settings:?}");
    assert!(shown.contains("pfx-password"), "the password FILE is named");
    // No secret value can be in the settings at all: keys and passwords are only read from
    // files into `secrecy` wrappers.
    let secret = secrecy::SecretString::from("hunter2-very-secret".to_owned());
    assert!(!format!("{secret:?}").contains("hunter2"));
}
