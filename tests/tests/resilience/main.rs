//! How dispatch-api fails: crashes, storage faults, shutdown, hostile connections, and an
//! exhaustive walk of who may reach which route.

mod authorization;
mod crash;
mod limits;
mod secrets;
mod storage_faults;

use std::path::{Path, PathBuf};

/// A dev PKI and a server config dir using the shipped clients file (route-worker: api_key).
pub fn process_setup(dir: &Path) -> (PathBuf, PathBuf) {
    let pki = dir.join("pki");
    let options = e2e::devpki::InitOptions {
        lifetime: time::Duration::days(1),
        ca_lifetime: time::Duration::days(2),
        overwrite: false,
    };
    e2e::devpki::write_dev_pki(&pki, &options, false).unwrap();
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/clients.toml");
    let config = e2e::process::write_server_config(dir, &pki, &clients);
    (pki, config)
}

/// A pool on the server's database file, for checks a client cannot make.
pub async fn open_database(path: &Path) -> sqlx::SqlitePool {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(path)
                .busy_timeout(std::time::Duration::from_secs(5)),
        )
        .await
        .expect("open the database")
}
