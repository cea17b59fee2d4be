//! Any bytes as a client certificate: identity extraction never panics.
#![no_main]
use dispatch_api::identity::PeerCertificate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = PeerCertificate::from_der(data);
});
