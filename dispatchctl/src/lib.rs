//! dispatchctl: the operator's side of dispatch-api, over the admin API with the operator's
//! certificate (admin never takes a key) and the internal CA (the server is always verified).
//!
//! - [`configuration`]: the file and `DISPATCHCTL_*` settings.
//! - [`api`]: the admin API client and its errors.
//! - [`status`]: the table of clients (and `--json`).
//! - [`check`]: the preflight checks, as pure functions of what the service reports.
//! - [`duration`]: `15m`, `1d` and the like, as seconds.

pub mod api;
pub mod check;
pub mod configuration;
pub mod duration;
pub mod status;
