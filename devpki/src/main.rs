//! `devpki`: writes the development PKI. See `devpki --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use devpki::{InitOptions, PkiError, reissue_leaves, write_dev_pki, write_next_ca};
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
    /// Reissue the leaf certificates from an existing CA (rotation demos, short lifetimes).
    Reissue {
        #[arg(long, default_value = ".dev-pki")]
        dir: PathBuf,
        /// Lifetime in days.
        #[arg(long, default_value_t = 30, conflicts_with = "minutes")]
        days: i64,
        /// Lifetime in minutes (short-lived certificates).
        #[arg(long)]
        minutes: Option<i64>,
        /// Issue from this CA of the directory: `ca`, or `ca-next` after `next-ca`.
        #[arg(long, default_value = "ca")]
        ca: String,
    },
    /// Write a CRL signed by the dev CA: revoking the given certificates and/or N random serials
    /// (for tests and benchmarks of large CRLs).
    Crl {
        #[arg(long, default_value = ".dev-pki")]
        dir: PathBuf,
        /// PEM certificates to revoke.
        #[arg(long)]
        revoke: Vec<PathBuf>,
        /// How many random serials to add.
        #[arg(long, default_value_t = 0)]
        random: usize,
        #[arg(long, default_value_t = 7)]
        days: i64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Create the next CA for a rollover (`ca-next.pem`/`.key`): a new key and a name of its own
    /// (dated). Add a binding naming it to each client, put both CAs in the client CA bundle,
    /// reissue leaves with `reissue --ca ca-next`, then drop the old CA.
    NextCa {
        #[arg(long, default_value = ".dev-pki")]
        dir: PathBuf,
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
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
            let options = InitOptions {
                lifetime: Duration::days(days),
                ca_lifetime: Duration::days(days.max(365)),
                overwrite: force,
            };
            write_dev_pki(&dir, &options, false)
        }
        Command::Reissue {
            dir,
            days,
            minutes,
            ca,
        } => {
            let lifetime = minutes
                .map(Duration::minutes)
                .unwrap_or(Duration::days(days));
            reissue_leaves(
                &dir,
                &ca,
                &InitOptions {
                    lifetime,
                    ca_lifetime: lifetime,
                    overwrite: true,
                },
            )
        }
        Command::NextCa { dir, days } => write_next_ca(&dir, Duration::days(days)),
        Command::Crl {
            dir,
            revoke,
            random,
            days,
            out,
        } => {
            devpki::write_crl(&dir, &revoke, random, Duration::days(days), &out).map(|()| vec![out])
        }
    };
    report(result)
}

fn report(result: Result<Vec<PathBuf>, PkiError>) -> ExitCode {
    match result {
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
