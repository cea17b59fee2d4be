//! dispatch-api: accepts route plans over one HTTPS listener that serves legacy API-key clients
//! and mTLS clients side by side, while each client is moved, one by one, onto its certificate.
//!
//! The modules are listed bottom-up: each uses only those listed before it, so dependencies run
//! one way (`tests/layout.rs` checks it). Blank lines keep rustfmt from sorting them.
#![forbid(unsafe_code)]

/// Typed settings, layered; every default in one place.
pub mod configuration;

/// Logs and metrics only.
pub mod telemetry;

/// What a peer proved: names as encoded, key hashes, the verified path (as data).
pub mod identity;

/// The database: pool, migrations, storage errors and file-system faults, the batched recorder.
pub mod storage;

/// Clients, their mode, bindings and key hashes; the in-memory snapshot.
pub mod registry;

/// The plan domain types, validation, and the durable group-commit writer.
pub mod plans;

/// The listener's TLS: material, trust (verified paths, CRLs), resumption, reload.
pub mod tls;

/// Connection + headers + snapshot + trust + time → `Principal` or `Refusal` (pure, table-tested).
pub mod auth;

/// `ApiError` → `application/problem+json`: the web layer's mapping of every domain error.
pub mod error;

/// Permissions as extractor types; a denial is a `Refusal`.
pub mod policy;

/// What is remembered of each request: evidence, refusals, alerts, metrics, the log line.
pub mod audit;

/// The bounded share of requests that proved nothing: rates, waits and connection caps.
pub mod precedence;

/// `AppState`, what every handler can reach.
pub mod state;

/// Handlers (one file per resource), middleware, the routing table.
pub mod routes;

/// The HTTPS listener: TLS, then HTTP/2 or HTTP/1.1, connections drained at their max age.
pub mod listener;

/// `Application::build`: the listeners and their scopes; `StartupError`.
pub mod startup;
