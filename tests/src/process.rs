//! The real binaries as processes: dispatch-api with its logs captured and its config dir; the
//! pieces route-worker shares with it (see [`crate::worker`]).

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

/// Sends a signal (`HUP`, `TERM`, `INT` or `KILL`) to process `pid`. By the system call, not
/// kill(1): a slim Debian (a container, say) has no procps, and the suite must not need it.
pub(crate) fn send_signal(pid: u32, name: &str) -> std::io::Result<()> {
    use rustix::process::{Pid, Signal, kill_process};
    let signal = match name {
        "HUP" => Signal::HUP,
        "TERM" => Signal::TERM,
        "INT" => Signal::INT,
        "KILL" => Signal::KILL,
        "STOP" => Signal::STOP,
        "CONT" => Signal::CONT,
        other => panic!("send_signal: no signal `{other}` here"),
    };
    let pid = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::other(format!("not a process id: {pid}")))?;
    kill_process(pid, signal).map_err(std::io::Error::from)
}

/// Lines a child process wrote to stderr, collected as they arrive.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<String>>);

impl Logs {
    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }

    /// Whether a line containing `text` has arrived; panics with the logs once `deadline` has
    /// passed without one.
    pub(crate) fn arrived_before(&self, text: &str, deadline: Instant) -> bool {
        let logs = self.text();
        if logs.contains(text) {
            return true;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with `{text}`:\n{logs}"
        );
        false
    }

    pub(crate) fn follow(&self, stream: impl std::io::Read + Send + 'static) {
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
            .env("DISPATCH_ENV", "local")
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
        send_signal(self.child.id(), name).unwrap_or_else(|e| panic!("signal {name}: {e}"));
    }

    /// Waits (up to 15 s) for a log line containing `text`.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.logs.arrived_before(text, deadline) {
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
        let _ = send_signal(self.child.id(), "TERM");
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

[migration]
# A flip to mtls needs the client's key unused this long (3600 s by default): short here.
quiet_period_secs = 1

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

/// Asserts that every acknowledged plan, given as (id, number of stops), is stored whole: read
/// back through the server on `port` with `key`.
pub async fn assert_acknowledged_plans_stored(
    port: u16,
    ca: &Path,
    key: &str,
    acknowledged: &[(String, usize)],
) {
    for (id, stops) in acknowledged {
        let request = crate::http::Request::get(&format!("/api/dispatch-plans/{id}")).api_key(key);
        let response = crate::http::connect(port, ca, None, "localhost")
            .await
            .unwrap()
            .send(request)
            .await
            .unwrap();
        assert_eq!(response.status, 200, "acknowledged plan {id} is missing");
        assert_eq!(
            response.json()["plan"]["stops"].as_array().map(Vec::len),
            Some(*stops),
            "plan {id} is intact"
        );
    }
}
