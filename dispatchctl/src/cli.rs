//! The command line: the global flags and the settings they override, which module runs each
//! command (its flags are its module's), and the run itself.

use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

use crate::api::Admin;
use crate::commands::{audit, check, clients, keys, revocations};
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

/// The commands, each group defined, and run, by its module of `commands`: a new command of a
/// group is a variant and its arm there, and nothing here.
#[derive(Subcommand)]
pub enum Command {
    #[command(flatten)]
    Clients(clients::ClientCommand),
    #[command(flatten)]
    Keys(keys::KeyCommand),
    #[command(flatten)]
    Revocations(revocations::RevocationCommand),
    #[command(flatten)]
    Audit(audit::AuditCommand),
    #[command(flatten)]
    Check(check::CheckCommand),
    /// A completion script for the shell, to stdout:
    /// `dispatchctl completions bash > /etc/bash_completion.d/dispatchctl`.
    Completions { shell: clap_complete::Shell },
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

impl Cli {
    /// Runs the command; the exit code it ends with when nothing failed.
    pub async fn run(self) -> Result<u8, CtlError> {
        if let Command::Completions { shell } = self.command {
            // Needs no settings and no server: it describes the command line itself.
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "dispatchctl",
                &mut std::io::stdout(),
            );
            return Ok(0);
        }
        let settings = self.settings()?;
        let admin = Admin::new(&settings)?;
        match self.command {
            Command::Clients(command) => command.run(&admin).await,
            Command::Keys(command) => command.run(&admin).await,
            Command::Revocations(command) => command.run(&admin).await,
            Command::Audit(command) => command.run(&admin).await,
            Command::Check(command) => command.run(&admin, settings).await,
            Command::Completions { .. } => unreachable!("answered before the settings are read"),
        }
    }
}
