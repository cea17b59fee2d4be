//! Recovery from file-system faults without a restart.
//!
//! When the database's file system fails (an I/O error, the kernel remounting it read-only, the
//! file gone), an open connection keeps its file descriptors on the failed file system for good:
//! even after an operator repairs and remounts it, such a connection would go on failing, or
//! read a stale copy. So every such error is noted here, and the pool closes each connection
//! opened before the last fault when it is next acquired; its replacement opens the file as it
//! is now. Process-wide: the service has one database.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
/// Nanoseconds after `EPOCH` of the last fault, plus one; 0: none yet.
static LAST_FAULT: AtomicU64 = AtomicU64::new(0);

/// SQLite's primary result codes that mean the file, not the statement, is at fault.
const SQLITE_READONLY: i32 = 8;
const SQLITE_IOERR: i32 = 10;
const SQLITE_CANTOPEN: i32 = 14;

fn now() -> u64 {
    EPOCH.elapsed().as_nanos() as u64
}

/// Notes `error` if it is a file-system fault.
pub fn note(error: &sqlx::Error) {
    match error {
        sqlx::Error::Io(_) => {
            LAST_FAULT.store(now() + 1, Ordering::Relaxed);
        }
        sqlx::Error::Database(error) => {
            note_code(error.code().and_then(|code| code.parse().ok()));
        }
        _ => {}
    }
}

/// Notes a fault if SQLite's (extended) result `code` is one; returns whether it was.
pub fn note_code(code: Option<i32>) -> bool {
    let fault = code.is_some_and(|code| {
        matches!(
            code & 0xff,
            SQLITE_READONLY | SQLITE_IOERR | SQLITE_CANTOPEN
        )
    });
    if fault {
        LAST_FAULT.store(now() + 1, Ordering::Relaxed);
    }
    fault
}

/// Whether a connection of this age was opened before the last fault.
pub fn opened_before_last(age: Duration) -> bool {
    let fault = LAST_FAULT.load(Ordering::Relaxed);
    fault != 0 && now().saturating_sub(age.as_nanos() as u64) < fault
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_readonly_and_cantopen_are_file_faults_that_recycle_older_connections() {
        // Extended codes: SQLITE_IOERR_FSYNC (1034), SQLITE_READONLY_DBMOVED (1032).
        for code in [10, 1034, 8, 1032, 14] {
            assert!(note_code(Some(code)), "{code}");
        }
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_FULL, SQLITE_CONSTRAINT_UNIQUE, none.
        for code in [Some(5), Some(6), Some(13), Some(2067), None] {
            assert!(!note_code(code), "{code:?}");
        }
        // Connections opened before the last fault are recycled, later ones kept.
        note_code(Some(10));
        std::thread::sleep(Duration::from_millis(5));
        assert!(opened_before_last(Duration::from_secs(3600)));
        assert!(!opened_before_last(Duration::from_millis(1)));
    }
}
