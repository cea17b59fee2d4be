use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use route_worker::acme::Acme;
use route_worker::client::DispatchClient;
use route_worker::configuration::{LogFormat, WorkerSettings};
use route_worker::error::WorkerError;
use route_worker::worker;

/// Calculates routes and submits them to dispatch-api.
///
/// Exit codes: 0 accepted, 2 configuration or input error, 3 refused by the server (or its TLS
/// handshake), 4 transient failure after all retries.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Directory holding route-worker.toml (env ROUTE_WORKER_CONFIG_DIR).
    #[arg(long, env = "ROUTE_WORKER_CONFIG_DIR", default_value = "config")]
    config_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch the input directory and submit plans until SIGTERM.
    Run,
    /// Plan and submit one stops file (JSON or CSV), then exit.
    Submit { file: PathBuf },
    /// Show how the server sees this worker: the first thing to run after deploying a certificate.
    Whoami,
}

#[actix_rt::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, "route-worker failed");
            eprintln!("route-worker: {error}");
            error.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<(), WorkerError> {
    let settings = WorkerSettings::load(&cli.config_dir)?;
    init_tracing(&settings);
    // With [tls.acme], a certificate first: the client presents it from its first connection.
    let acme = match &settings.tls.acme {
        Some(acme) => Some(Acme::start(acme.clone()).await?),
        None => None,
    };
    let client = DispatchClient::new(&settings)?;
    match cli.command {
        Command::Run => {
            if let Some(acme) = acme {
                actix_rt::spawn(acme.renew_forever());
            }
            worker::run(&client, &settings.input).await
        }
        Command::Submit { file } => {
            for accepted in worker::submit_file(&client, &file, &settings.input).await? {
                println!("accepted {} {}", accepted.id, accepted.location);
            }
            Ok(())
        }
        Command::Whoami => {
            let mut me = client.whoami().await?;
            // What this worker presents, as it sees it: after a renewal, the server's view and
            // this one agree once a new connection is made.
            if let Some((fingerprint, not_after)) = client.presenting() {
                me["presenting"] = serde_json::json!({
                    "fingerprint_sha256": fingerprint,
                    "not_after": not_after,
                });
            }
            println!("{}", serde_json::to_string_pretty(&me).unwrap_or_default());
            Ok(())
        }
    }
}

fn init_tracing(settings: &WorkerSettings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.telemetry.filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match settings.telemetry.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Pretty => builder.init(),
    }
}
