//! Any bytes as X-Api-Key headers: authentication refuses cleanly, never panics.
#![no_main]
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use dispatch_api::auth::authenticate;
use dispatch_api::identity::ConnectionIdentity;
use dispatch_api::registry::RegistrySnapshot;
use dispatch_api::tls::Trust;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for part in data.split(|b| *b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(part) {
            headers.append(HeaderName::from_static("x-api-key"), value);
        }
    }
    assert!(authenticate(&RegistrySnapshot::default(), &Trust::empty(), &ConnectionIdentity::Anonymous, &headers, time::OffsetDateTime::now_utc()).is_err());
});
