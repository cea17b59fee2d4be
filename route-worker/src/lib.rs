//! route-worker: calculates routes and submits plans to dispatch-api with an awc client that
//! presents its own certificate (and, during the `dual` phase, may still send its API key) and
//! verifies the server's certificate against the internal CA only.
#![forbid(unsafe_code)]

pub mod acme;
pub mod client;
pub mod configuration;
pub mod error;
pub mod routing;
pub mod tls;
pub mod worker;
