//! Each command, run against the admin API: one module per thing the operator acts on, each
//! defining its commands (their flags, clap's `Subcommand`) and running them; `cli` says which
//! module a command line is for.

pub mod audit;
pub mod check;
pub mod clients;
pub mod keys;
pub mod revocations;

use std::io::IsTerminal;

use crate::status::Paint;

pub(crate) fn print(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

pub(crate) fn paint() -> Paint {
    Paint(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
}
