//! A throwaway PostgreSQL server for the tests: Debian's `postgresql` binaries, `initdb` in a
//! temp dir, run as a non-root user, on 127.0.0.1 and a port picked free, stopped and removed
//! when dropped.
//!
//! Never a silent skip: where no server can be started, the test that asked for one fails with
//! a message that says so (CI installs the `postgresql` package and must run these tests).

use std::path::PathBuf;
use std::process::{Command, Output};

/// A running server, with a database `dispatch` owned by the superuser `dispatch`.
pub struct TestPostgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    /// As whom the server runs, when these tests run as root (initdb refuses root).
    run_as: Option<&'static str>,
    /// `dispatch`'s password, when the server asks for one (given to the tools as PGPASSWORD).
    password: Option<String>,
    _dir: tempfile::TempDir,
}

/// The user that runs the server when the tests run as root: Debian's `postgres`.
const SERVER_USER: &str = "postgres";

impl TestPostgres {
    /// A server that trusts every local connection.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// With `Some(password)`, a server that asks `dispatch` for that password (scram-sha-256)
    /// on every connection.
    pub fn start_with(password: Option<&str>) -> Self {
        let bin = binaries().unwrap_or_else(|| {
            panic!(
                "PostgreSQL SKIPPED: no initdb/pg_ctl found (Debian: apt-get install postgresql); \
                 these tests must run, so this is a failure"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("dispatch-pg-")
            .tempdir()
            .unwrap();
        let run_as = is_root().then_some(SERVER_USER);
        if let Some(user) = run_as {
            let status = Command::new("chown")
                .arg(format!("{user}:"))
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(
                status.success(),
                "PostgreSQL SKIPPED: cannot chown its dir to {user}"
            );
        }
        let data = dir.path().join("data");
        let port = crate::free_port();
        let server = Self {
            port,
            bin,
            data,
            run_as,
            password: password.map(str::to_owned),
            _dir: dir,
        };
        let password_file = server._dir.path().join("initdb-password");
        let auth = match password {
            Some(password) => {
                std::fs::write(&password_file, password).unwrap();
                if let Some(user) = run_as {
                    Command::new("chown")
                        .arg(user)
                        .arg(&password_file)
                        .status()
                        .unwrap();
                }
                vec![
                    "--auth",
                    "scram-sha-256",
                    "--pwfile",
                    password_file.to_str().unwrap(),
                ]
            }
            None => vec!["--auth", "trust"],
        };
        let mut initdb = vec![
            "--pgdata",
            server.data.to_str().unwrap(),
            "--username",
            "dispatch",
            "--encoding",
            "UTF8",
            "--no-sync",
        ];
        initdb.extend(auth);
        server.run("initdb", &initdb);
        server.start_again();
        server.run(
            "createdb",
            &[
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--username",
                "dispatch",
                "dispatch",
            ],
        );
        server
    }

    /// Starts the server (again, after [`Self::stop`]) on the same port and data.
    pub fn start_again(&self) {
        let options = format!(
            "-h 127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=100",
            self.port,
            self._dir.path().display()
        );
        let log = self._dir.path().join("server.log");
        let started = self.try_run(
            "pg_ctl",
            &[
                "--pgdata",
                self.data.to_str().unwrap(),
                "--log",
                log.to_str().unwrap(),
                "--options",
                &options,
                "--wait",
                "--timeout",
                "60",
                "start",
            ],
        );
        assert!(
            started.status.success(),
            "PostgreSQL SKIPPED: the server did not start ({}): {}",
            String::from_utf8_lossy(&started.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast: open connections are cut), as an outage would.
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "--pgdata",
                self.data.to_str().unwrap(),
                "--mode",
                "fast",
                "--wait",
                "stop",
            ],
        );
    }

    /// `postgres://` URL of the `dispatch` database.
    pub fn url(&self) -> String {
        format!("postgres://dispatch@127.0.0.1:{}/dispatch", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let output = self.try_run(tool, args);
        assert!(
            output.status.success(),
            "PostgreSQL SKIPPED: {tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn try_run(&self, tool: &str, args: &[&str]) -> Output {
        let program = self.bin.join(tool);
        let mut command = match self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password);
        }
        command
            .args(args)
            .current_dir(self._dir.path())
            .output()
            .unwrap_or_else(|e| panic!("PostgreSQL SKIPPED: cannot run {}: {e}", program.display()))
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let _ = self.try_run(
            "pg_ctl",
            &[
                "--pgdata",
                self.data.to_str().unwrap(),
                "--mode",
                "immediate",
                "stop",
            ],
        );
    }
}

/// The newest installed server's binaries: Debian keeps them in /usr/lib/postgresql/N/bin.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}
