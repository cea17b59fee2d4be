//! The end-to-end harness: a generated PKI written to a temp dir (so the real file-loading path
//! runs), dispatch-api built with `Application::build` on port 0 with SQLite in a temp file, and
//! a small HTTP/1.1 client over rustls that controls exactly which connection each request uses.
//! No test disables certificate verification: clients trust the generated CA.
//!
//! - [`pki`]: the CAs, issued identities, PEM and PKCS#12 files.
//! - [`app`]: dispatch-api in process ([`TestApp`], [`PreparedApp`]) and what tests ask of it.
//! - [`http`]: requests, responses and connections (TLS and plain).
//! - [`pebble`]: Let's Encrypt's test CA (pebble, pebble-challtestsrv) as an ACME server.
//! - [`postgres`]: a throwaway PostgreSQL server (initdb in a temp dir, a free port).
//! - [`process`]: the dispatch-api binary as a process, with its logs and config dir.
//! - [`stock`]: curl and Python's httpx (HTTP/2 and HTTP/1.1) driving a running app.
//! - [`worker`]: the route-worker binary: its config, runs and a long-running process.

pub use devpki;

pub mod app;
pub mod http;
pub mod pebble;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod stock;
pub mod worker;

pub use app::{
    CLIENTS, KEYED_CLIENTS, PreparedApp, TestApp, migration_row, plan, spawn_app, spawn_app_with,
    submit, test_settings,
};
pub use http::{
    Connection, Request, Response, client_config, connect, connect_with, free_port, ops_get,
};
pub use pki::{
    Identity, TestPki, identity_from_files, identity_from_pem, replace_file, server_tls,
    write_pkcs12,
};
