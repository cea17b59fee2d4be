//! Each command, run against the admin API: one module per thing the operator acts on, this
//! file only choosing which.

mod audit;
mod check;
mod clients;
mod keys;
mod revocations;

use std::io::IsTerminal;

use clap::CommandFactory;
use dispatch_types::Revoke;

use crate::api::Admin;
use crate::cli::{Cli, ClientsAction, Command};
use crate::error::CtlError;
use crate::status::Paint;

/// Runs the command of `cli`; the exit code it ends with when nothing failed.
pub async fn run(cli: Cli) -> Result<u8, CtlError> {
    if let Command::Completions { shell } = cli.command {
        // Needs no settings and no server: it describes the command line itself.
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "dispatchctl",
            &mut std::io::stdout(),
        );
        return Ok(0);
    }
    let mut settings = cli.settings()?;
    let admin = Admin::new(&settings)?;
    match cli.command {
        Command::Status { json } => clients::status(&admin, json).await?,
        Command::Mode {
            client,
            mode,
            reason,
            force,
            guard,
            max_refusals,
        } => {
            let guard = guard.zip(max_refusals);
            clients::mode(&admin, &client, &mode, &reason, force, guard).await?;
        }
        Command::Disable { client, reason } => {
            clients::set_disabled(&admin, &client, &reason, true).await?;
        }
        Command::Enable { client, reason } => {
            clients::set_disabled(&admin, &client, &reason, false).await?;
        }
        Command::Key {
            action,
            client,
            key_id,
            reason,
            overlap,
            expires_in,
        } => {
            let change = keys::KeyFlags {
                reason,
                overlap,
                expires_in,
            };
            keys::run(&admin, action, &client, key_id, change).await?;
        }
        Command::Bindings {
            client,
            set,
            reason,
            force,
        } => clients::bindings(&admin, &client, set.as_deref(), reason, force).await?,
        Command::Revoke {
            fingerprint,
            reason,
        } => {
            let request = Revoke {
                fingerprint: Some(fingerprint),
                spki_sha256: None,
                reason,
            };
            revocations::add(&admin, request).await?;
        }
        Command::DenyKey {
            spki_sha256,
            reason,
        } => {
            let request = Revoke {
                fingerprint: None,
                spki_sha256: Some(spki_sha256),
                reason,
            };
            revocations::add(&admin, request).await?;
        }
        Command::Register(registration)
        | Command::Clients {
            action: ClientsAction::Add(registration),
        } => clients::register(&admin, registration).await?,
        Command::Revocations { json } => revocations::list(&admin, json).await?,
        Command::Completions { .. } => unreachable!("answered before the settings are read"),
        Command::Audit {
            client,
            limit,
            follow,
        } => audit::audit(&admin, client.as_deref(), limit, follow).await?,
        Command::Check {
            required,
            warning_days,
        } => {
            if let Some(days) = warning_days {
                settings.check.warning_days = days;
            }
            return check::check(&admin, &settings, required).await;
        }
    }
    Ok(0)
}

pub(crate) fn print(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

pub(crate) fn paint() -> Paint {
    Paint(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
}
