//! The clients: the status table, registration, the migration mode, the disabled flag and the
//! certificate bindings.

use dispatch_types::{
    ClientList, ClientView, DisabledChanged, FlipGuard, MigrationMode, MigrationReport,
    ModeChanged, RegisterClient, Registered, Scope, SetBindings, SetDisabled, SetMode,
};
use serde_json::json;

use super::{paint, print};
use crate::api::Admin;
use crate::cli::Registration;
use crate::error::CtlError;
use crate::status;

/// Every client: mode, scopes, key and certificate use, readiness (and why not).
pub async fn status(admin: &Admin, json: bool) -> Result<(), CtlError> {
    let clients: ClientList = admin.get("/admin/clients").await?;
    let migration: MigrationReport = admin.get("/admin/migration").await?;
    let rows = status::rows(&clients, &migration);
    if json {
        print(&json!({ "clients": rows, "migration": migration }));
    } else {
        print!("{}", status::table(&rows, &migration, paint()));
    }
    Ok(())
}

/// Moves `client` to `mode`, guarded for `guard` (its watch in seconds, its refusals) if given.
pub async fn mode(
    admin: &Admin,
    client: &str,
    mode: &str,
    reason: &str,
    force: bool,
    guard: Option<(u64, u32)>,
) -> Result<(), CtlError> {
    let request = SetMode {
        mode: MigrationMode::parse(mode).map_err(CtlError::Config)?,
        reason: reason.to_owned(),
        force,
        guard: guard.map(|(watch_secs, max_refusals)| FlipGuard {
            watch_secs,
            max_refusals,
        }),
    };
    let path = format!("/admin/clients/{client}/mode");
    let answer: ModeChanged = admin.put(&path, &request).await?;
    println!(
        "{client}: {} -> {}",
        answer.before.as_str(),
        answer.after.as_str()
    );
    if let Some(guard) = answer.guard {
        println!(
            "guarded: at {} refusals it causes within {} s from networks that used the retired method before, that method is re-admitted from those networks only (dispatchctl status shows the guard)",
            guard.max_refusals, guard.watch_secs
        );
    }
    Ok(())
}

pub async fn set_disabled(
    admin: &Admin,
    client: &str,
    reason: &str,
    disabled: bool,
) -> Result<(), CtlError> {
    let request = SetDisabled {
        disabled,
        reason: reason.to_owned(),
    };
    let path = format!("/admin/clients/{client}/disabled");
    let answer: DisabledChanged = admin.put(&path, &request).await?;
    println!(
        "{client}: {}",
        if answer.disabled {
            "disabled"
        } else {
            "enabled"
        }
    );
    Ok(())
}

/// Shows `client`'s bindings, or replaces them with `set` (a JSON array).
pub async fn bindings(
    admin: &Admin,
    client: &str,
    set: Option<&str>,
    reason: Option<String>,
    force: bool,
) -> Result<(), CtlError> {
    let path = format!("/admin/clients/{client}");
    let answer: ClientView = match set {
        None => admin.get(&path).await?,
        Some(text) => {
            let bindings = serde_json::from_str(text).map_err(|e| {
                CtlError::Config(format!("--set must be a JSON array of bindings: {e}"))
            })?;
            let request = SetBindings {
                bindings,
                reason: reason.unwrap_or_default(),
                force,
            };
            admin.put(&format!("{path}/bindings"), &request).await?
        }
    };
    print(&answer.bindings);
    Ok(())
}

pub async fn register(admin: &Admin, registration: Registration) -> Result<(), CtlError> {
    let bindings = crate::clients::bindings(&registration.bindings, &registration.binding)?;
    let request = RegisterClient {
        name: registration.name,
        mode: MigrationMode::parse(&registration.mode).map_err(CtlError::Config)?,
        scopes: registration
            .scopes
            .iter()
            .map(|scope| Scope::parse(scope))
            .collect::<Result<_, _>>()
            .map_err(CtlError::Config)?,
        bindings,
        issue_api_key: registration.issue_key,
        api_key_expires_in_secs: None,
        reason: registration.reason,
    };
    let answer: Registered = admin.post("/admin/clients", &request).await?;
    print(&answer);
    Ok(())
}
