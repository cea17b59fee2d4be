//! The preflight of the live service: what it reports, judged by `crate::check`.

use std::time::Duration;

use clap::Subcommand;
use dispatch_types::{ClientList, MigrationReport};

use super::paint;
use crate::api::{self, Admin};
use crate::check::{self, Observed};
use crate::configuration::Settings;
use crate::error::CtlError;

/// The preflight's command.
#[derive(Subcommand)]
pub enum CheckCommand {
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

impl CheckCommand {
    pub async fn run(self, admin: &Admin, mut settings: Settings) -> Result<u8, CtlError> {
        let Self::Check {
            required,
            warning_days,
        } = self;
        if let Some(days) = warning_days {
            settings.check.warning_days = days;
        }
        check(admin, &settings, required).await
    }
}

async fn check(admin: &Admin, settings: &Settings, required: bool) -> Result<u8, CtlError> {
    let clients: ClientList = admin.get("/admin/clients").await?;
    let migration: MigrationReport = admin.get("/admin/migration").await?;
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
