//! dispatchctl: the operator's side of dispatch-api, over the admin API with the operator's
//! certificate (admin never takes a key) and the internal CA (the server is always verified).
//!
//! - [`cli`]: the command line (clap) and the settings its flags override.
//! - [`commands`]: each command, one module per thing the operator acts on.
//! - [`error`]: what went wrong, with its exit code.
//! - [`configuration`]: the file and `DISPATCHCTL_*` settings.
//! - [`api`]: the admin API client.
//! - [`status`]: the tables (clients, keys, revocations; and `--json`).
//! - [`clients`]: a registration's request, from flags.
//! - [`check`]: the preflight checks, as pure functions of what the service reports.
//! - [`duration`]: `15m`, `1d` and the like, as seconds.

pub mod api;
pub mod check;
pub mod cli;
pub mod clients;
pub mod commands;
pub mod configuration;
pub mod duration;
pub mod error;
pub mod status;
