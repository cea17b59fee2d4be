//! The real binaries as processes: dispatch-api with its logs captured, route-worker runs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A workspace binary, built by `cargo build --workspace --bins` (scripts/test does that; a
/// workspace test run builds both binaries because their packages have integration tests).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Lines a child process wrote to stderr, collected as they arrive.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<String>>);

impl Logs {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    fn follow(&self, stream: impl std::io::Read + Send + 'static) {
        let logs = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let mut text = logs.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        });
    }
}

/// dispatch-api running as a process; killed on drop.
pub struct ServerProcess {
    child: Child,
    pub https_port: u16,
    pub ops_port: u16,
    pub logs: Logs,
}

impl ServerProcess {
    /// Starts dispatch-api with `DISPATCH_CONFIG_DIR=config_dir`, JSON logs and `env`, and waits
    /// for its "listening" line to learn the ports the OS picked.
    pub fn start(config_dir: &Path, env: &[(&str, String)]) -> Self {
        Self::start_command(Command::new(binary("dispatch-api")), config_dir, env)
    }

    /// Starts the server through `wrapper`, a command line that ends by running the program
    /// named in its last argument (`unshare ... sh -c '...; exec "$0"'`, say).
    pub fn start_wrapped(wrapper: &[&str], config_dir: &Path, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(wrapper[0]);
        command.args(&wrapper[1..]).arg(binary("dispatch-api"));
        Self::start_command(command, config_dir, env)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn start_command(mut command: Command, config_dir: &Path, env: &[(&str, String)]) -> Self {
        command
            .env("DISPATCH_CONFIG_DIR", config_dir)
            .env("DISPATCH_ENV", "test")
            .env("DISPATCH_TELEMETRY__FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start dispatch-api");
        let logs = Logs::default();
        logs.follow(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = logs.text();
            if let Some(line) = text.lines().find(|l| l.contains("dispatch-api listening")) {
                let json: serde_json::Value = serde_json::from_str(line).expect("JSON log line");
                let port = |key: &str| json[key].as_u64().expect("port in log") as u16;
                return Self {
                    https_port: port("https_port"),
                    ops_port: port("ops_port"),
                    child,
                    logs,
                };
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("dispatch-api exited with {status}:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "dispatch-api did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Waits (up to 15 s) for a log line containing `text`.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.logs.text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no log line with `{text}`:\n{}",
                self.logs.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the process gets no chance to flush or finish anything.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return self.child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a dispatch-api config dir (`base.toml`) for a dev PKI directory.
pub fn write_server_config(dir: &Path, pki: &Path, clients_file: &Path) -> PathBuf {
    let config = dir.join("server-config");
    std::fs::create_dir_all(&config).unwrap();
    let text = format!(
        r#"[server]
host = "127.0.0.1"
port = 0
ops_host = "127.0.0.1"
ops_port = 0
shutdown_grace_secs = 2

[tls]
cert_file = "{pki}/dispatch-api.pem"
key_file = "{pki}/dispatch-api.key"
client_ca_file = "{pki}/ca.pem"
client_auth = "optional"

[database]
path = "{dir}/dispatch.db"

[bootstrap]
clients_file = "{clients}"
secrets_dir = "{pki}"

[telemetry]
format = "json"
filter = "debug"
"#,
        pki = pki.display(),
        dir = dir.display(),
        clients = clients_file.display()
    );
    std::fs::write(config.join("base.toml"), text).unwrap();
    config
}

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
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let config = dir.join(format!(
            "worker-config-{}",
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
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
            "\n[input]\ndir = \"{}\"\npoll_interval_secs = 1\ndays_ahead = 1\n\n[retry]\nmax_attempts = {}\ninitial_backoff_ms = 50\nmax_backoff_ms = {}\n\n[telemetry]\njson = true\nfilter = \"debug\"\n",
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
        while !self.logs.text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no log line with `{text}`:\n{}",
                self.logs.text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then the exit code (bounded wait).
    pub fn stop(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
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

/// A dev PKI (devpki) in `dir/pki` and a server config using the shipped clients file, in which
/// route-worker starts in `api_key` mode. Returns (PKI dir, config dir).
pub fn dev_pki_server(dir: &Path) -> (PathBuf, PathBuf) {
    let pki = dir.join("pki");
    let options = devpki::InitOptions {
        lifetime: time::Duration::days(1),
        ca_lifetime: time::Duration::days(2),
        overwrite: false,
    };
    devpki::write_dev_pki(&pki, &options, false).unwrap();
    let config = write_server_config(dir, &pki, &shipped_clients_file());
    (pki, config)
}

/// The checked-in bootstrap file, as the product ships it.
pub fn shipped_clients_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/clients.toml")
}
