//! The worker's jobs: plan and submit one stops file, or watch an input directory until stopped.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::{Accepted, DispatchClient};
use crate::configuration::InputSettings;
use crate::error::WorkerError;
use crate::routing::{plan_routes, read_stops};

/// The date plans are made for: `days_ahead` days from today (UTC).
pub fn planned_date(days_ahead: i64) -> String {
    let date = time::OffsetDateTime::now_utc().date() + time::Duration::days(days_ahead);
    date.to_string()
}

/// Reads a stops file, orders each team's stops and submits one plan per team.
pub async fn submit_file(
    client: &DispatchClient,
    path: &Path,
    input: &InputSettings,
) -> Result<Vec<Accepted>, WorkerError> {
    let stops = read_stops(path)?;
    let date = planned_date(input.days_ahead);
    let mut accepted = Vec::new();
    for plan in plan_routes(&stops, &date) {
        let result = client.submit(&plan).await?;
        tracing::info!(
            team = plan.team,
            stops = plan.stops.len(),
            plan_id = result.id,
            replayed = result.replayed,
            "plan accepted"
        );
        accepted.push(result);
    }
    Ok(accepted)
}

/// Watches `input.dir` for `*.json` / `*.csv` files until SIGTERM or SIGINT. A file whose plans
/// were accepted moves to `done/`; one the server refused (or that is invalid) to `failed/`; one
/// that hit a transient failure stays for the next poll (its idempotency keys make that safe).
pub async fn run(client: &DispatchClient, input: &InputSettings) -> Result<(), WorkerError> {
    let done = input.dir.join("done");
    let failed = input.dir.join("failed");
    for dir in [&input.dir, &done, &failed] {
        std::fs::create_dir_all(dir)
            .map_err(|e| WorkerError::Config(format!("cannot create `{}`: {e}", dir.display())))?;
    }
    let mut shutdown = std::pin::pin!(shutdown_signal());
    tracing::info!(dir = %input.dir.display(), "watching for stop files");
    loop {
        for file in pending_files(&input.dir) {
            match submit_file(client, &file, input).await {
                Ok(_) => move_into(&file, &done),
                Err(error) if error.is_transient() => {
                    tracing::warn!(file = %file.display(), error = %error, "will try again on the next poll");
                    break;
                }
                Err(error) => {
                    tracing::error!(file = %file.display(), error = %error, "file refused; moved to failed/");
                    move_into(&file, &failed);
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => {
                tracing::info!("stopping on signal");
                return Ok(());
            }
            _ = actix_rt::time::sleep(Duration::from_secs(input.poll_interval_secs.max(1))) => {}
        }
    }
}

/// The stop files waiting in `dir`: `*.json` and `*.csv`, never a hidden one (`.name.json`), the
/// name a writer gives a file it is still writing before it renames it into place.
fn pending_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| p.is_file() && is_stop_file(p))
        .collect();
    files.sort();
    files
}

fn is_stop_file(path: &Path) -> bool {
    let visible = path
        .file_name()
        .is_some_and(|name| name.as_encoded_bytes().first() != Some(&b'.'));
    visible && path.extension().is_some_and(|e| e == "json" || e == "csv")
}

fn move_into(file: &Path, dir: &Path) {
    if let Some(name) = file.file_name()
        && let Err(error) = std::fs::rename(file, dir.join(name))
    {
        tracing::error!(file = %file.display(), error = %error, "cannot move the file");
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_files_are_visible_json_or_csv_files_never_one_still_being_written_under_a_hidden_name()
    {
        for (name, taken) in [
            ("plan.json", true),
            ("stops.csv", true),
            (".plan.json", false),
            (".stops.csv", false),
            ("plan.json.tmp", false),
            ("notes.txt", false),
            ("json", false),
        ] {
            assert_eq!(
                is_stop_file(Path::new("inbox").join(name).as_path()),
                taken,
                "{name}"
            );
        }
    }
}
