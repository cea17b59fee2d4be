//! The clients: the status table, registration, the migration mode, the disabled flag and the
//! certificate bindings.

use clap::Subcommand;
use dispatch_types::{
    ClientList, ClientView, DisabledChanged, FlipGuard, MigrationMode, MigrationReport,
    ModeChanged, RegisterClient, Registered, Scope, SetBindings, SetDisabled, SetMode,
};
use serde_json::json;

use super::{paint, print};
use crate::api::Admin;
use crate::clients::BindingFlags;
use crate::error::CtlError;
use crate::status;

/// The commands on clients.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Every client: mode, scopes, key and certificate use, readiness (and why not).
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Move a client to api_key, dual or mtls.
    Mode {
        client: String,
        mode: String,
        #[arg(long)]
        reason: String,
        /// Move to mtls without the evidence (the server says what is missing otherwise).
        #[arg(long)]
        force: bool,
        /// Watch the change this long (`15m`, `1h`, ...): at --max-refusals refusals it causes
        /// from networks that used the retired method before the change, that method is
        /// re-admitted from those networks only, for the rest of the watch and an hour (the
        /// mode stays; the same credential from anywhere else is an alert, never counted).
        /// Default: the server's migration.default_guard, if set.
        #[arg(long, value_parser = crate::duration::parse_secs, requires = "max_refusals")]
        guard: Option<u64>,
        /// With --guard: how many refusals the change may cause before it is reverted.
        #[arg(long, requires = "guard")]
        max_refusals: Option<u32>,
    },
    /// Disable a client: every request of it is refused.
    Disable {
        client: String,
        #[arg(long)]
        reason: String,
    },
    /// Enable a disabled client.
    Enable {
        client: String,
        #[arg(long)]
        reason: String,
    },
    /// Show a client's certificate bindings, or replace them with `--set` (a JSON array).
    Bindings {
        client: String,
        /// e.g. '[{"issuer": "CN=Dev CA, O=Dev", "subject_cn": "worker"}]'
        #[arg(long, requires = "reason")]
        set: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        /// Replace them even though a certificate the client presented recently would no
        /// longer match (it is about to get a new one); never lets a binding capture another
        /// client's.
        #[arg(long, requires = "set")]
        force: bool,
    },
    /// Register a client (refused with the reason when a binding overlaps another client's or
    /// would capture a certificate in use). An issued key is printed once. Also `clients add`.
    Register(Registration),
    /// Clients: `clients add NAME ...` registers one (as `register`).
    Clients {
        #[command(subcommand)]
        action: ClientsAction,
    },
}

#[derive(Subcommand)]
pub enum ClientsAction {
    /// Register a client.
    Add(Registration),
}

#[derive(clap::Args)]
pub struct Registration {
    pub name: String,
    /// api_key, dual or mtls.
    #[arg(long, default_value = "api_key")]
    pub mode: String,
    /// A scope, repeated: plans:submit, admin.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// One binding spelled with flags.
    #[command(flatten)]
    pub binding: BindingFlags,
    /// A certificate binding as JSON, repeated: '{"issuer": "CN=Dev CA, O=Dev", "subject_cn": "worker"}'.
    #[arg(long = "binding")]
    pub bindings: Vec<String>,
    /// Issue an API key now (printed once; only its SHA-256 is stored).
    #[arg(long)]
    pub issue_key: bool,
    #[arg(long)]
    pub reason: String,
}

impl ClientCommand {
    pub async fn run(self, admin: &Admin) -> Result<u8, CtlError> {
        match self {
            Self::Status { json } => status(admin, json).await?,
            Self::Mode {
                client,
                mode: to,
                reason,
                force,
                guard,
                max_refusals,
            } => {
                let guard = guard.zip(max_refusals);
                mode(admin, &client, &to, &reason, force, guard).await?;
            }
            Self::Disable { client, reason } => {
                set_disabled(admin, &client, &reason, true).await?;
            }
            Self::Enable { client, reason } => {
                set_disabled(admin, &client, &reason, false).await?;
            }
            Self::Bindings {
                client,
                set,
                reason,
                force,
            } => bindings(admin, &client, set.as_deref(), reason, force).await?,
            Self::Register(registration)
            | Self::Clients {
                action: ClientsAction::Add(registration),
            } => register(admin, registration).await?,
        }
        Ok(0)
    }
}

/// Every client: mode, scopes, key and certificate use, readiness (and why not).
async fn status(admin: &Admin, json: bool) -> Result<(), CtlError> {
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
async fn mode(
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

async fn set_disabled(
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
async fn bindings(
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

async fn register(admin: &Admin, registration: Registration) -> Result<(), CtlError> {
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
