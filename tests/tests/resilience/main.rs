//! How dispatch-api fails: crashes, storage faults, shutdown, hostile connections, and an
//! exhaustive walk of who may reach which route.

mod authorization;
mod crash;
mod flood;
mod http2;
mod limits;
mod logs;
mod precedence;
mod read_only;
mod secrets;
mod storage_faults;

use std::path::Path;

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
