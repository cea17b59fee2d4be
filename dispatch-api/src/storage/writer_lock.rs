//! One dispatch-api per SQLite file. Two processes on one file (a rolling update with overlap,
//! `--scale 2` on one volume) would each serve from their own registry snapshot and never hear
//! of the other's changes: a revocation made through one would not be enforced by the other.
//! So the first one holds an exclusive lock on `<file>.lock` for as long as it runs, and a
//! second is refused at start-up, naming the file and the process that holds it.
//!
//! An advisory lock (flock) on a file of its own, not on the database: SQLite locks the
//! database with POSIX record locks, which a process drops when it closes ANY descriptor of the
//! file, so the database file is left to SQLite. The kernel releases the lock when the process
//! ends, however it ends: a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::OpenError;

/// Held while the process serves from the file; dropping it releases the file.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
}

/// The lock file of a database file: `<file>.lock` beside it.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the database file for this process, or says who has it.
pub fn claim(database: &Path) -> Result<WriterLock, OpenError> {
    let path = lock_path(database);
    let io_error = |source| OpenError::Lock {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error)?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for the next one's error message.
            file.set_len(0).map_err(io_error)?;
            file.rewind().map_err(io_error)?;
            writeln!(file, "{}", std::process::id()).map_err(io_error)?;
            Ok(WriterLock { _file: file })
        }
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            Err(OpenError::InUse {
                database: database.to_owned(),
                holder: text.trim().parse().ok(),
            })
        }
        Err(TryLockError::Error(source)) => Err(io_error(source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_on_one_file_is_refused_naming_the_holder_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("dispatch.db");
        let first = claim(&database).unwrap();
        assert_eq!(
            std::fs::read_to_string(lock_path(&database))
                .unwrap()
                .trim(),
            std::process::id().to_string()
        );
        let Err(OpenError::InUse {
            database: named,
            holder,
        }) = claim(&database)
        else {
            panic!("a second claim is refused");
        };
        assert_eq!(named, database);
        assert_eq!(holder, Some(std::process::id()));
        // Another file is another lock.
        assert!(claim(&dir.path().join("other.db")).is_ok());
        drop(first);
        assert!(claim(&database).is_ok(), "released with the first");
    }

    #[test]
    fn the_lock_file_sits_beside_the_database() {
        assert_eq!(
            lock_path(Path::new("data/dispatch.db")),
            Path::new("data/dispatch.db.lock")
        );
    }
}
