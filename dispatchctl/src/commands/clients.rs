//! The clients: the status table, registration, the migration mode, the disabled flag and the
//! certificate bindings.

use serde_json::{Value, json};

use super::{paint, print};
use crate::api::Admin;
use crate::cli::Registration;
use crate::error::CtlError;
use crate::status;

/// Every client: mode, scopes, key and certificate use, readiness (and why not).
pub async fn status(admin: &Admin, json: bool) -> Result<(), CtlError> {
    let clients = admin.get("/admin/clients").await?;
    let migration = admin.get("/admin/migration").await?;
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
    let mut body = json!({"mode": mode, "reason": reason, "force": force});
    if let Some((watch_secs, max_refusals)) = guard {
        body["guard"] = json!({"watch_secs": watch_secs, "max_refusals": max_refusals});
    }
    let answer = admin
        .put(&format!("/admin/clients/{client}/mode"), body)
        .await?;
    println!(
        "{client}: {} -> {}",
        answer["before"].as_str().unwrap_or("?"),
        answer["after"].as_str().unwrap_or("?")
    );
    if let Some(guard) = answer["guard"].as_object() {
        println!(
            "guarded: at {} refusals it causes within {} s from networks that used the retired method before, that method is re-admitted from those networks only (dispatchctl status shows the guard)",
            guard["max_refusals"], guard["watch_secs"]
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
    admin
        .put(
            &format!("/admin/clients/{client}/disabled"),
            json!({"disabled": disabled, "reason": reason}),
        )
        .await?;
    println!(
        "{client}: {}",
        if disabled { "disabled" } else { "enabled" }
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
    let answer = match set {
        None => admin.get(&path).await?,
        Some(text) => {
            let bindings: Value = serde_json::from_str(text).map_err(|e| {
                CtlError::Config(format!("--set must be a JSON array of bindings: {e}"))
            })?;
            admin
                .put(
                    &format!("{path}/bindings"),
                    json!({"bindings": bindings, "reason": reason, "force": force}),
                )
                .await?
        }
    };
    print(&answer["bindings"]);
    Ok(())
}

pub async fn register(admin: &Admin, registration: Registration) -> Result<(), CtlError> {
    let bindings = crate::clients::bindings(&registration.bindings, &registration.binding)?;
    let answer = admin
        .post(
            "/admin/clients",
            json!({"name": registration.name, "mode": registration.mode,
                   "scopes": registration.scopes, "bindings": bindings,
                   "issue_api_key": registration.issue_key, "reason": registration.reason}),
        )
        .await?;
    print(&answer);
    Ok(())
}
