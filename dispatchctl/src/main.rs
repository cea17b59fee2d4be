//! dispatchctl: status, registration, the migration switches, keys, bindings, revocations, the
//! audit log and a preflight check, over dispatch-api's admin API with the operator's certificate.
//!
//! Exit codes: 0 done, 1 `check` found a failing check, 2 configuration, 3 refused by the
//! server (the problem's type and detail are printed), 4 the server could not be reached.

use std::process::ExitCode;

use clap::Parser;
use dispatchctl::cli::Cli;

#[actix_rt::main]
async fn main() -> ExitCode {
    match Cli::parse().run().await {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("dispatchctl: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
