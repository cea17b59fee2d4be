//! Any bytes as a plan body: parsing and validation never panic.
#![no_main]
use dispatch_api::plans::{Plan, PlanLimits, PlanRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<PlanRequest>(data) {
        let _ = Plan::parse(request, PlanLimits { max_stops: 500 });
    }
});
