//! The command line: every command and its flags (clap), and the settings they override.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::clients::BindingFlags;
use crate::configuration::Settings;
use crate::error::CtlError;

#[derive(Parser)]
#[command(version, about = "The operator's command line for dispatch-api")]
pub struct Cli {
    /// Settings file (TOML); default: ./dispatchctl.toml if present. Then DISPATCHCTL_* env.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// dispatch-api's URL (server.url).
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// The internal CA bundle (tls.ca_file).
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// The operator's certificate (tls.cert_file).
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// The operator's key (tls.key_file).
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
        #[arg(long, value_parser = crate::duration::parse_secs)]
        overlap: Option<u64>,
        /// The new key's own lifetime (same forms); default: until it is replaced.
        #[arg(long, value_parser = crate::duration::parse_secs)]
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

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KeyAction {
    List,
    Rotate,
    Revoke,
    Delete,
}

impl Cli {
    /// The settings: the file and `DISPATCHCTL_*`, then this command line's flags.
    pub fn settings(&self) -> Result<Settings, CtlError> {
        let mut settings = Settings::load(self.config.as_deref())?;
        if let Some(url) = &self.url {
            settings.server.url = url.clone();
        }
        if let Some(ca) = &self.ca {
            settings.tls.ca_file = ca.clone();
        }
        if let Some(cert) = &self.cert {
            settings.tls.cert_file = Some(cert.clone());
        }
        if let Some(key) = &self.key {
            settings.tls.key_file = Some(key.clone());
        }
        Ok(settings)
    }
}
