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
    /// pebble's own TLS certificate and key (for `localhost`), which the renewal-information
    /// server presents too.
    tls_files: (PathBuf, PathBuf),
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
            tls_files: (cert.clone(), key.clone()),
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

    /// A renewal-information server (RFC 9773) in front of pebble, which offers none: its
    /// directory is pebble's with `renewalInfo` added, pointing at itself (every other URL
    /// stays pebble's), and it suggests `first_window` for the first certificate asked about
    /// and, for any other, a window an hour on.
    pub async fn with_renewal_info(
        &self,
        first_window: (time::OffsetDateTime, time::OffsetDateTime),
    ) -> RenewalInfo {
        let config = crate::pki::server_tls(&self.tls_files.0, &self.tls_files.1);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let directory = Command::new("curl")
            .args(["--silent", "--show-error", "--fail", "--cacert"])
            .arg(&self.tls_root)
            .arg(&self.directory_url)
            .output()
            .expect("curl");
        let mut directory: serde_json::Value = serde_json::from_slice(&directory.stdout).unwrap();
        directory["renewalInfo"] = format!("https://localhost:{port}/renewal-info").into();
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let state = (directory.to_string(), first_window, asked.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, state) = (acceptor.clone(), state.clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        answer_renewal_info(tls, &state.0, state.1, &state.2).await;
                    }
                });
            }
        });
        RenewalInfo {
            directory_url: format!("https://localhost:{port}/dir"),
            asked,
        }
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

/// The renewal-information server of [`Pebble::with_renewal_info`].
pub struct RenewalInfo {
    /// The directory a worker is given instead of pebble's.
    pub directory_url: String,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl RenewalInfo {
    /// The certificate identifiers asked about (`{authority key id}.{serial}`, RFC 9773 §4.1).
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

/// One request of the renewal-information server: the directory, or a certificate's window.
async fn answer_renewal_info(
    mut tls: tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    directory: &str,
    first_window: (time::OffsetDateTime, time::OffsetDateTime),
    asked: &std::sync::Mutex<Vec<String>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).await.unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or_default();
    let (status, body) = if path == "/dir" {
        ("200 OK", directory.to_owned())
    } else if let Some(id) = path.strip_prefix("/renewal-info/") {
        let (start, end) = {
            let mut asked = asked.lock().unwrap();
            if !asked.contains(&id.to_owned()) {
                asked.push(id.to_owned());
            }
            if asked[0] == id {
                first_window
            } else {
                let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
                (later, later + time::Duration::minutes(5))
            }
        };
        let format = &time::format_description::well_known::Rfc3339;
        let window = serde_json::json!({"suggestedWindow": {
            "start": start.format(format).unwrap(), "end": end.format(format).unwrap(),
        }});
        ("200 OK", window.to_string())
    } else {
        ("404 Not Found", String::new())
    };
    let answer = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nRetry-After: 60\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tls.write_all(answer.as_bytes()).await;
    let _ = tls.shutdown().await;
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
