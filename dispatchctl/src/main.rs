//! dispatchctl: status, registration, the migration switches, keys, bindings, revocations, the
//! audit log and a preflight check, over dispatch-api's admin API with the operator's certificate.
//!
//! Exit codes: 0 done, 1 `check` found a failing check, 2 configuration, 3 refused by the
//! server (the problem's type and detail are printed), 4 the server could not be reached.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use dispatchctl::api::{self, Admin};
use dispatchctl::check::{self, Observed};
use dispatchctl::clients::{self, BindingFlags};
use dispatchctl::configuration::Settings;
use dispatchctl::error::CtlError;
use dispatchctl::status::{self, Paint};
use serde_json::{Value, json};

#[derive(Parser)]
#[command(version, about = "The operator's command line for dispatch-api")]
struct Cli {
    /// Settings file (TOML); default: ./dispatchctl.toml if present. Then DISPATCHCTL_* env.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// dispatch-api's URL (server.url).
    #[arg(long, global = true)]
    url: Option<String>,
    /// The internal CA bundle (tls.ca_file).
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    /// The operator's certificate (tls.cert_file).
    #[arg(long, global = true)]
    cert: Option<PathBuf>,
    /// The operator's key (tls.key_file).
    #[arg(long, global = true)]
    key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        #[arg(long, value_parser = dispatchctl::duration::parse_secs, requires = "max_refusals")]
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
    /// List a client's API keys (id, state, expiry, use), rotate (a new key, printed once; the
    /// old one stays valid for the overlap), revoke one at once by its id (a leaked key; the
    /// other stays), or delete them all.
    Key {
        action: KeyAction,
        client: String,
        /// With `revoke`: the id of the key to end (the ID column of `key list`).
        key_id: Option<String>,
        /// Required to rotate, revoke or delete: it goes into the audit log.
        #[arg(long)]
        reason: Option<String>,
        /// How long the replaced key stays valid, e.g. `15m`, `12h`, `1d`, or seconds; `0`: it
        /// goes at once. Default: the server's `migration.key_overlap_secs`.
        #[arg(long, value_parser = dispatchctl::duration::parse_secs)]
        overlap: Option<u64>,
        /// The new key's own lifetime (same forms); default: until it is replaced.
        #[arg(long, value_parser = dispatchctl::duration::parse_secs)]
        expires_in: Option<u64>,
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
    /// The certificate deny list, as a table (`--json` for scripts).
    Revocations {
        #[arg(long)]
        json: bool,
    },
    /// A completion script for the shell, to stdout:
    /// `dispatchctl completions bash > /etc/bash_completion.d/dispatchctl`.
    Completions { shell: clap_complete::Shell },
    /// Put a certificate (SHA-256 fingerprint) on the deny list; effective on the next request.
    Revoke {
        fingerprint: String,
        #[arg(long)]
        reason: String,
    },
    /// Put a key on the deny list (SHA-256 of its SubjectPublicKeyInfo: `openssl x509 -noout
    /// -pubkey | openssl pkey -pubin -outform der | sha256sum`): every certificate of that key
    /// is refused from the next request on, renewals that reused it included (a stolen key).
    DenyKey {
        spki_sha256: String,
        #[arg(long)]
        reason: String,
    },
    /// The audit log, newest last; `--follow` keeps printing new events.
    Audit {
        #[arg(long)]
        client: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        #[arg(long)]
        follow: bool,
    },
    /// A preflight of the live service: ✓/✗ per check, exit 0 only when all pass.
    Check {
        /// Also require the migration to be complete (before switching to client_auth = required).
        #[arg(long)]
        required: bool,
        /// Certificates expiring within this many days fail (check.warning_days).
        #[arg(long)]
        warning_days: Option<u64>,
    },
}

#[derive(Subcommand)]
enum ClientsAction {
    /// Register a client.
    Add(Registration),
}

#[derive(clap::Args)]
struct Registration {
    name: String,
    /// api_key, dual or mtls.
    #[arg(long, default_value = "api_key")]
    mode: String,
    /// A scope, repeated: plans:submit, admin.
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// One binding spelled with flags.
    #[command(flatten)]
    binding: BindingFlags,
    /// A certificate binding as JSON, repeated: '{"issuer": "CN=Dev CA, O=Dev", "subject_cn": "worker"}'.
    #[arg(long = "binding")]
    bindings: Vec<String>,
    /// Issue an API key now (printed once; only its SHA-256 is stored).
    #[arg(long)]
    issue_key: bool,
    #[arg(long)]
    reason: String,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum KeyAction {
    List,
    Rotate,
    Revoke,
    Delete,
}

#[actix_rt::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("dispatchctl: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

fn settings(cli: &Cli) -> Result<Settings, CtlError> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(url) = &cli.url {
        settings.server.url = url.clone();
    }
    if let Some(ca) = &cli.ca {
        settings.tls.ca_file = ca.clone();
    }
    if let Some(cert) = &cli.cert {
        settings.tls.cert_file = Some(cert.clone());
    }
    if let Some(key) = &cli.key {
        settings.tls.key_file = Some(key.clone());
    }
    Ok(settings)
}

fn print(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn paint() -> Paint {
    Paint(std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none())
}

async fn run(cli: Cli) -> Result<u8, CtlError> {
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
    let mut settings = settings(&cli)?;
    let admin = Admin::new(&settings)?;
    match cli.command {
        Command::Status { json } => {
            let clients = admin.get("/admin/clients").await?;
            let migration = admin.get("/admin/migration").await?;
            let rows = status::rows(&clients, &migration);
            if json {
                print(&json!({ "clients": rows, "migration": migration }));
            } else {
                print!("{}", status::table(&rows, &migration, paint()));
            }
        }
        Command::Mode {
            client,
            mode,
            reason,
            force,
            guard,
            max_refusals,
        } => {
            let mut body = json!({"mode": mode, "reason": reason, "force": force});
            if let (Some(watch_secs), Some(max_refusals)) = (guard, max_refusals) {
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
        }
        command @ (Command::Disable { .. } | Command::Enable { .. }) => {
            let disabled = matches!(command, Command::Disable { .. });
            let (Command::Disable { client, reason } | Command::Enable { client, reason }) =
                command
            else {
                unreachable!("matched above")
            };
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
        }
        Command::Key {
            action,
            client,
            key_id,
            reason,
            overlap,
            expires_in,
        } => {
            let path = format!("/admin/clients/{client}/api-key");
            let reason = || {
                reason.clone().ok_or_else(|| {
                    CtlError::Config("--reason is required: it goes into the audit log".into())
                })
            };
            match action {
                KeyAction::List => {
                    let answer = admin.get(&format!("/admin/clients/{client}")).await?;
                    print!("{}", dispatchctl::status::keys_table(&answer["api_keys"]));
                }
                KeyAction::Rotate => {
                    let mut body = json!({"reason": reason()?});
                    if let Some(secs) = overlap {
                        body["overlap_secs"] = json!(secs);
                    }
                    if let Some(secs) = expires_in {
                        body["expires_in_secs"] = json!(secs);
                    }
                    let answer = admin.post(&path, body).await?;
                    // The key itself goes to stdout alone, for `> file`; the rest to stderr.
                    eprintln!(
                        "{client}: new API key {} (shown once; only its SHA-256 is stored):",
                        answer["api_key_id"].as_str().unwrap_or_default()
                    );
                    eprint!("{}", dispatchctl::status::keys_table(&answer["api_keys"]));
                    println!("{}", answer["api_key"].as_str().unwrap_or_default());
                }
                KeyAction::Revoke => {
                    let key_id = key_id.ok_or_else(|| {
                        CtlError::Config(
                            "key revoke needs the key's id (the ID column of `key list`)".into(),
                        )
                    })?;
                    let answer = admin
                        .delete(
                            &format!("/admin/clients/{client}/api-keys/{key_id}"),
                            json!({"reason": reason()?}),
                        )
                        .await?;
                    println!("{client}: API key {key_id} ended now (its use is key_expired)");
                    print!("{}", dispatchctl::status::keys_table(&answer["api_keys"]));
                }
                KeyAction::Delete => {
                    admin.delete(&path, json!({"reason": reason()?})).await?;
                    println!("{client}: API keys removed");
                }
            }
        }
        Command::Bindings {
            client,
            set,
            reason,
            force,
        } => {
            let path = format!("/admin/clients/{client}");
            let answer = match set {
                None => admin.get(&path).await?,
                Some(text) => {
                    let bindings: Value = serde_json::from_str(&text).map_err(|e| {
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
        }
        Command::Revoke {
            fingerprint,
            reason,
        } => {
            let answer = admin
                .post(
                    "/admin/revocations",
                    json!({"fingerprint": fingerprint, "reason": reason}),
                )
                .await?;
            print(&answer);
        }
        Command::DenyKey {
            spki_sha256,
            reason,
        } => {
            let answer = admin
                .post(
                    "/admin/revocations",
                    json!({"spki_sha256": spki_sha256, "reason": reason}),
                )
                .await?;
            print(&answer);
        }
        Command::Register(registration)
        | Command::Clients {
            action: ClientsAction::Add(registration),
        } => register(&admin, registration).await?,
        Command::Revocations { json } => {
            let answer = admin.get("/admin/revocations").await?;
            if json {
                print(&answer);
            } else {
                print!("{}", status::revocations_table(&answer["revocations"]));
            }
        }
        Command::Completions { .. } => unreachable!("answered before the settings are read"),
        Command::Audit {
            client,
            limit,
            follow,
        } => audit(&admin, client.as_deref(), limit, follow).await?,
        Command::Check {
            required,
            warning_days,
        } => {
            if let Some(days) = warning_days {
                settings.check.warning_days = days;
            }
            return check(&admin, &settings, required).await;
        }
    }
    Ok(0)
}

async fn register(admin: &Admin, registration: Registration) -> Result<(), CtlError> {
    let bindings = clients::bindings(&registration.bindings, &registration.binding)?;
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

fn audit_line(event: &Value) -> String {
    let field = |key: &str| event[key].as_str().unwrap_or("-").to_owned();
    let mut line = format!(
        "{} {:13} {:28} client={} actor={}",
        field("at"),
        field("kind"),
        field("reason"),
        field("client"),
        field("actor")
    );
    if event["before"].is_string() || event["after"].is_string() {
        line += &format!(" {} -> {}", field("before"), field("after"));
    }
    if let Some(note) = event["detail"]["note"].as_str() {
        line += &format!(" note={note:?}");
    }
    line
}

async fn audit(
    admin: &Admin,
    client: Option<&str>,
    limit: u32,
    follow: bool,
) -> Result<(), CtlError> {
    let path = |limit: u32| match client {
        Some(c) => format!("/admin/audit?client={c}&limit={limit}"),
        None => format!("/admin/audit?limit={limit}"),
    };
    let mut last_id = i64::MIN;
    let mut limit = limit;
    loop {
        let answer = admin.get(&path(limit)).await?;
        let mut events: Vec<&Value> = answer["events"].as_array().into_iter().flatten().collect();
        events.reverse();
        for event in events {
            let id = event["id"].as_i64().unwrap_or(i64::MIN);
            if id > last_id {
                println!("{}", audit_line(event));
                last_id = id;
            }
        }
        if !follow {
            return Ok(());
        }
        limit = 1000;
        actix_rt::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn check(admin: &Admin, settings: &Settings, required: bool) -> Result<u8, CtlError> {
    let clients = admin.get("/admin/clients").await?;
    let migration = admin.get("/admin/migration").await?;
    let chain = api::server_chain(settings).await?;
    let cas = api::ca_certificates(settings)?;
    let metrics = match &settings.server.ops_url {
        Some(url) => Some(ops_metrics(url).await?),
        None => None,
    };
    let described = |certs: &[rustls_pki_types::CertificateDer<'static>]| {
        certs
            .iter()
            .filter_map(|c| api::not_after(c))
            .map(|(not_after, subject)| (subject, not_after))
            .collect::<Vec<_>>()
    };
    let seen = Observed {
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
        warning_days: settings.check.warning_days,
        server_chain: described(&chain),
        cas: described(&cas),
        clients: &clients,
        migration: &migration,
        metrics: metrics.as_deref(),
        required,
    };
    let paint = paint();
    let results = check::checks(&seen);
    for result in &results {
        let mark = match result.ok {
            Some(true) => paint.green("✓"),
            Some(false) => paint.red("✗"),
            None => "•".to_owned(),
        };
        println!("{mark} {}", result.text);
    }
    let failed = results.iter().filter(|c| c.ok == Some(false)).count();
    if failed > 0 {
        println!("{failed} check(s) failed");
        return Ok(1);
    }
    println!("all checks passed");
    Ok(0)
}

/// `/metrics` of the operations listener (plain HTTP on a trusted network, like Prometheus).
async fn ops_metrics(url: &str) -> Result<String, CtlError> {
    let client = awc::Client::builder()
        .disable_redirects()
        .timeout(Duration::from_secs(10))
        .finish();
    let target = format!("{}/metrics", url.trim_end_matches('/'));
    let mut response = client
        .get(&target)
        .send()
        .await
        .map_err(|e| CtlError::Unreachable(format!("{target}: {e}")))?;
    if !response.status().is_success() {
        return Err(CtlError::Unreachable(format!(
            "{target}: answered {}",
            response.status()
        )));
    }
    let body = response
        .body()
        .limit(8 * 1024 * 1024)
        .await
        .map_err(|e| CtlError::Unreachable(format!("{target}: {e}")))?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}
