//! route-worker as a process: its config file, one-shot runs (`submit`, `whoami`) and a
//! long-running `run` with its logs captured.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::process::{Logs, binary, send_signal};

/// route-worker settings for a test.
#[derive(Clone)]
pub struct WorkerConfig {
    pub url: String,
    pub ca_file: PathBuf,
    pub cert: Option<(PathBuf, PathBuf)>,
    pub api_key_file: Option<PathBuf>,
    pub input_dir: PathBuf,
    pub max_attempts: u32,
    pub max_backoff_ms: u64,
    /// Extra lines for the `[tls]` section (reload interval, PKCS#12, ...).
    pub tls_extra: String,
    pub keep_alive_secs: u64,
}

impl WorkerConfig {
    pub fn new(url: String, ca_file: &Path, input_dir: &Path) -> Self {
        Self {
            url,
            ca_file: ca_file.to_owned(),
            cert: None,
            api_key_file: None,
            input_dir: input_dir.to_owned(),
            max_attempts: 4,
            max_backoff_ms: 200,
            tls_extra: String::new(),
            keep_alive_secs: 15,
        }
    }

    /// Writes `route-worker.toml` into a fresh directory under `dir` and returns it.
    pub fn write(&self, dir: &Path) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let config = dir.join(format!(
            "worker-config-{}",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&config).unwrap();
        let mut text = format!(
            "[server]\nurl = \"{}\"\nrequest_timeout_secs = 5\nkeep_alive_secs = {}\n\n[tls]\nca_file = \"{}\"\n{}\n",
            self.url,
            self.keep_alive_secs,
            self.ca_file.display(),
            self.tls_extra
        );
        if let Some((cert, key)) = &self.cert {
            text.push_str(&format!(
                "cert_file = \"{}\"\nkey_file = \"{}\"\n",
                cert.display(),
                key.display()
            ));
        }
        text.push_str("\n[auth]\n");
        if let Some(key) = &self.api_key_file {
            text.push_str(&format!("api_key_file = \"{}\"\n", key.display()));
        }
        text.push_str(&format!(
            "\n[input]\ndir = \"{}\"\npoll_interval_secs = 1\ndays_ahead = 1\n\n[retry]\nmax_attempts = {}\ninitial_backoff_ms = 50\nmax_backoff_ms = {}\n\n[telemetry]\nformat = \"json\"\nfilter = \"debug\"\n",
            self.input_dir.display(),
            self.max_attempts,
            self.max_backoff_ms
        ));
        std::fs::write(config.join("route-worker.toml"), text).unwrap();
        config
    }
}

/// What a finished route-worker run printed and returned.
#[derive(Debug)]
pub struct WorkerRun {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs route-worker with `args` to completion (bounded by its own retry settings).
pub fn run_worker(config_dir: &Path, args: &[&str]) -> WorkerRun {
    let output = Command::new(binary("route-worker"))
        .arg("--config-dir")
        .arg(config_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run route-worker");
    WorkerRun {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A stops file for two teams.
pub fn write_stops(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        "id,team,latitude,longitude,window_start,window_end\n\
         n1,north,52.37,4.89,08:00,10:00\nn2,north,52.09,5.12,,\nn3,north,52.16,4.49,,\n\
         s1,south,51.92,4.48,,\ns2,south,51.44,5.47,09:00,12:00\n",
    )
    .unwrap();
    path
}

/// A stops file of one team (one plan) dropped into the inbox `dir` as `name`: written beside,
/// then moved in, so the worker never reads a half-written file.
pub fn stops_file(dir: &Path, name: &str, latitude: f64) {
    let json = format!(
        r#"[{{"id":"a","team":"north","latitude":{latitude},"longitude":4.0}},{{"id":"b","team":"north","latitude":52.1,"longitude":4.1}}]"#
    );
    let staging = dir.join(format!(".{name}"));
    std::fs::write(&staging, json).unwrap();
    std::fs::rename(staging, dir.join(name)).unwrap();
}

/// [`run_worker`] without blocking the async runtime (in-process servers share it).
pub async fn run_worker_async(config_dir: &Path, args: &[&str]) -> WorkerRun {
    let config_dir = config_dir.to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_worker(&config_dir, &args)
    })
    .await
    .expect("worker thread")
}

/// route-worker running as a process (`run`), with its logs captured; killed on drop.
pub struct WorkerProcess {
    child: Child,
    pub logs: Logs,
}

impl WorkerProcess {
    pub fn start(config_dir: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(binary("route-worker"))
            .arg("--config-dir")
            .arg(config_dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start route-worker");
        let logs = Logs::default();
        logs.follow(child.stderr.take().unwrap());
        Self { child, logs }
    }

    /// Waits (up to 15 s) for a log line containing `text`.
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.logs.arrived_before(text, deadline) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then the exit code (bounded wait).
    pub fn stop(mut self) -> Option<i32> {
        let _ = send_signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (bounded) until `path` exists.
pub async fn wait_for_file(path: &Path, logs: &Logs) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear; worker logs:\n{}",
            path.display(),
            logs.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
