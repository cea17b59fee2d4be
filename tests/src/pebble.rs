//! Let's Encrypt's test CA as the tests' ACME server: Debian's `pebble`, with
//! `pebble-challtestsrv` as its DNS (every name resolves to 127.0.0.1), both on ports the OS
//! picked. Validation is real: pebble fetches each http-01 token from the port the worker
//! answers on (no `PEBBLE_VA_ALWAYS_VALID`). Its root and intermediate are new at each start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::devpki::{CertificateAuthority, LeafSpec};
use crate::http::free_port;
use crate::process::{Logs, send_signal};

pub struct Pebble {
    /// `https://localhost:{port}/dir`.
    pub directory_url: String,
    /// The root pebble's own TLS certificate chains to: a worker's `tls.acme.ca_file`.
    pub tls_root: PathBuf,
    /// Where pebble connects for http-01: the worker's `tls.acme.http01_listen` is
    /// `127.0.0.1:{http01_port}`.
    pub http01_port: u16,
    management_port: u16,
    pebble: Child,
    challtestsrv: Child,
    pub logs: Logs,
}

impl Pebble {
    /// Starts both, issuing certificates valid for `validity_secs`, and waits until the
    /// directory answers. Ports are picked free (see [`free_port`]), then bound by pebble: when
    /// another process took one in between, pebble exits, and both start again on other ports.
    pub fn start(dir: &Path, validity_secs: u64) -> Self {
        for _ in 0..3 {
            if let Some(started) = Self::try_start(dir, validity_secs) {
                return started;
            }
        }
        panic!("pebble could not listen on free ports three times");
    }

    fn try_start(dir: &Path, validity_secs: u64) -> Option<Self> {
        let ca = CertificateAuthority::new("Pebble TLS Root", "Tests", time::Duration::days(1))
            .expect("pebble's TLS root");
        let server = ca
            .issue(&LeafSpec::server(time::Duration::days(1)))
            .expect("pebble's TLS certificate");
        let tls_root = dir.join("pebble-tls-root.pem");
        let (cert, key) = (dir.join("pebble-tls.pem"), dir.join("pebble-tls.key"));
        std::fs::write(&tls_root, &ca.cert_pem).unwrap();
        std::fs::write(&cert, &server.cert_pem).unwrap();
        std::fs::write(&key, &server.key_pem).unwrap();
        let (acme_port, management_port, http01_port, tls_port, dns_port, challtest_port) = (
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
            free_port(),
        );
        let config = dir.join("pebble-config.json");
        let settings = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": cert, "privateKey": key,
            "httpPort": http01_port, "tlsPort": tls_port,
            "ocspResponderURL": "", "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
        }});
        std::fs::write(&config, settings.to_string()).unwrap();
        let logs = Logs::default();
        let mut challtestsrv = Command::new("pebble-challtestsrv")
            .args(["-management", &format!("127.0.0.1:{challtest_port}")])
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            // The worker answers http-01 itself; pebble's own challenge servers stay off.
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            // A records only: the worker listens on 127.0.0.1.
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pebble-challtestsrv (Debian's `pebble` package; scripts/prerequisites)");
        logs.follow(challtestsrv.stdout.take().unwrap());
        logs.follow(challtestsrv.stderr.take().unwrap());
        let mut pebble = Command::new("pebble")
            .arg("-config")
            .arg(&config)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            // Validation at once, not after pebble's random sleep of up to 15 s.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start pebble (Debian's `pebble` package; scripts/prerequisites)");
        logs.follow(pebble.stdout.take().unwrap());
        logs.follow(pebble.stderr.take().unwrap());
        let mut started = Self {
            directory_url: format!("https://localhost:{acme_port}/dir"),
            tls_root,
            http01_port,
            management_port,
            pebble,
            challtestsrv,
            logs,
        };
        // Pebble logs its addresses before it listens on them: wait until each accepts.
        let deadline = Instant::now() + Duration::from_secs(15);
        let exited = |child: &mut Child| !matches!(child.try_wait(), Ok(None));
        for port in [acme_port, management_port, dns_port] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if exited(&mut started.pebble) || exited(&mut started.challtestsrv) {
                    return None;
                }
                assert!(
                    Instant::now() < deadline,
                    "pebble did not start listening on {port}:\n{}",
                    started.logs.text()
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // What accepts may be another process on a port taken in between: then ours has exited.
        std::thread::sleep(Duration::from_millis(300));
        if exited(&mut started.pebble) || exited(&mut started.challtestsrv) {
            return None;
        }
        Some(started)
    }

    /// The root and the intermediate pebble issues under (PEM), from its management API.
    pub fn issuer_chain(&self) -> (String, String) {
        let get = |path: &str| {
            let output = Command::new("curl")
                .args(["--silent", "--show-error", "--fail", "--cacert"])
                .arg(&self.tls_root)
                .arg(format!("https://localhost:{}{path}", self.management_port))
                .output()
                .expect("curl");
            assert!(
                output.status.success(),
                "{path}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8(output.stdout).unwrap()
        };
        (get("/roots/0"), get("/intermediates/0"))
    }

    /// The intermediate's subject, as a binding's `issuer` names it.
    pub fn issuer_name(&self) -> String {
        let (_, intermediate) = self.issuer_chain();
        let output = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child
                    .stdin
                    .take()
                    .unwrap()
                    .write_all(intermediate.as_bytes())?;
                child.wait_with_output()
            })
            .expect("openssl");
        String::from_utf8(output.stdout)
            .unwrap()
            .trim()
            .trim_start_matches("subject=")
            .to_owned()
    }

    /// Stops answering (SIGSTOP): connections are accepted by the kernel and never served, as
    /// a CA that hangs.
    pub fn pause(&self) {
        let _ = send_signal(self.pebble.id(), "STOP");
    }

    pub fn resume(&self) {
        let _ = send_signal(self.pebble.id(), "CONT");
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.resume();
        for child in [&mut self.pebble, &mut self.challtestsrv] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
