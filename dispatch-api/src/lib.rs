//! dispatch-api: accepts route plans over one HTTPS listener that serves legacy API-key clients
//! and mTLS clients side by side, while each client is moved, one by one, onto its certificate.
#![forbid(unsafe_code)]

pub mod auth;
pub mod configuration;
pub mod error;
pub mod identity;
pub mod plans;
pub mod policy;
pub mod registry;
pub mod routes;
pub mod startup;
pub mod storage;
pub mod telemetry;
pub mod tls;
