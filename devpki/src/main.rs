//! `devpki`: writes the development PKI. See `devpki --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use devpki::{InitOptions, write_dev_pki};
use time::Duration;

/// Development PKI for dispatch-api and route-worker: a CA, server, route-worker and operator
/// certificates, and route-worker's API key. For local runs, tests and the compose demo only;
/// production certificates come from the team's CA (step-ca, SPIRE, cert-manager).
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the CA, the leaf certificates and the API key.
    Init {
        /// Directory to write into.
        #[arg(long, default_value = ".dev-pki")]
        dir: PathBuf,
        /// Lifetime of the leaf certificates in days.
        #[arg(long, default_value_t = 30)]
        days: i64,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
        /// Succeed without writing anything when the directory already holds a CA.
        #[arg(long)]
        if_absent: bool,
    },
    /// Reissue the leaf certificates from the existing CA (for rotation demos).
    Reissue {
        #[arg(long, default_value = ".dev-pki")]
        dir: PathBuf,
        /// Lifetime in days.
        #[arg(long, default_value_t = 30, conflicts_with = "minutes")]
        days: i64,
        /// Lifetime in minutes (short-lived certificates).
        #[arg(long)]
        minutes: Option<i64>,
    },
}

fn main() -> ExitCode {
    let (dir, options, reissue) = match Cli::parse().command {
        Command::Init {
            dir,
            days,
            force,
            if_absent,
        } => {
            if if_absent && dir.join("ca.pem").exists() {
                println!("{} already holds a CA; nothing written", dir.display());
                return ExitCode::SUCCESS;
            }
            (
                dir,
                InitOptions {
                    lifetime: Duration::days(days),
                    ca_lifetime: Duration::days(days.max(365)),
                    overwrite: force,
                },
                false,
            )
        }
        Command::Reissue { dir, days, minutes } => {
            let lifetime = minutes
                .map(Duration::minutes)
                .unwrap_or(Duration::days(days));
            (
                dir,
                InitOptions {
                    lifetime,
                    ca_lifetime: lifetime,
                    overwrite: true,
                },
                true,
            )
        }
    };
    match write_dev_pki(&dir, &options, reissue) {
        Ok(files) => {
            for file in files {
                println!("wrote {}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("devpki: {error}");
            ExitCode::from(2)
        }
    }
}
