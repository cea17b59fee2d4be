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
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::OpenError;

/// Held while the process serves from the file; dropping it releases the file.
#[derive(Debug)]
pub struct WriterLock {
    path: PathBuf,
    database: PathBuf,
    file: Mutex<File>,
    lost: LockLost,
}

/// Whether the lock was lost: its file replaced and taken by another process meanwhile. Then
/// two processes serve from one file, and `/readyz` says so (the application state keeps this
/// flag, not the lock, so that the lock goes with the app).
#[derive(Debug, Clone, Default)]
pub struct LockLost(Arc<AtomicBool>);

impl LockLost {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
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
    Ok(WriterLock {
        file: Mutex::new(lock(database, &path)?),
        path,
        database: database.to_owned(),
        lost: LockLost::default(),
    })
}

fn lock(database: &Path, path: &Path) -> Result<File, OpenError> {
    let io_error = |source| OpenError::Lock {
        path: path.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_error)?;
    match file.try_lock() {
        Ok(()) => {
            // Who holds it, for the next one's error message.
            file.set_len(0).map_err(io_error)?;
            file.rewind().map_err(io_error)?;
            writeln!(file, "{}", std::process::id()).map_err(io_error)?;
            Ok(file)
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

impl WriterLock {
    /// Whether the lock file at the path is still the one this process holds. It is not after
    /// the file system under it was detached and mounted again (the repair of a file system
    /// that went read-only), or after the file was removed: the lock would then guard a file
    /// nobody else can see, on a file system this process should let go of.
    pub fn in_place(&self) -> bool {
        let held = self
            .file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .metadata();
        match (held, std::fs::metadata(&self.path)) {
            (Ok(held), Ok(there)) => held.dev() == there.dev() && held.ino() == there.ino(),
            _ => false,
        }
    }

    /// Takes the lock again on the file now at the path, and lets the old one go. When another
    /// process holds the new file, the lock is lost (see [`LockLost`]) until it can be taken.
    pub fn renew(&self) -> Result<(), OpenError> {
        let file = lock(&self.database, &self.path).inspect_err(|_| {
            self.lost.0.store(true, Ordering::Relaxed);
        })?;
        *self.file.lock().unwrap_or_else(|e| e.into_inner()) = file;
        self.lost.0.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// The flag that says whether this lock was lost, for the readiness check.
    pub fn lost(&self) -> LockLost {
        self.lost.clone()
    }

    /// Keeps the lock on the file at the path, looking every `every`: after a remount it is
    /// taken again on the new file system. Ends when the lock is dropped (it holds no claim of
    /// its own, so an app dropped without running releases the file).
    pub async fn follow(lock: std::sync::Weak<Self>, every: std::time::Duration) {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            let Some(this) = lock.upgrade() else {
                return;
            };
            this.keep_in_place();
        }
    }

    fn keep_in_place(&self) {
        if self.in_place() {
            return;
        }
        match self.renew() {
            Ok(()) => tracing::info!(
                file = %self.path.display(),
                "the database's lock file was replaced (a remount?); this process holds the new one"
            ),
            Err(error) => tracing::error!(
                error = %error,
                "the database's lock file was replaced and cannot be taken again"
            ),
        }
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
    fn a_lock_file_replaced_under_the_holder_is_taken_again() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("dispatch.db");
        let held = claim(&database).unwrap();
        assert!(held.in_place());
        // What a remount looks like from here: another file at the path.
        std::fs::remove_file(lock_path(&database)).unwrap();
        assert!(!held.in_place());
        assert!(claim(&database).is_ok(), "the new file is nobody's yet");
        held.renew().unwrap();
        assert!(held.in_place());
        assert!(matches!(claim(&database), Err(OpenError::InUse { .. })));
    }

    #[test]
    fn a_lock_file_taken_by_another_process_meanwhile_is_lost_until_it_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("dispatch.db");
        let held = claim(&database).unwrap();
        let lost = held.lost();
        std::fs::remove_file(lock_path(&database)).unwrap();
        let other = claim(&database).unwrap();
        held.keep_in_place();
        assert!(lost.get(), "another process holds the file at the path");
        assert!(!held.in_place());
        drop(other);
        held.keep_in_place();
        assert!(!lost.get(), "taken again once free");
        assert!(held.in_place());
    }

    #[test]
    fn the_lock_file_sits_beside_the_database() {
        assert_eq!(
            lock_path(Path::new("data/dispatch.db")),
            Path::new("data/dispatch.db.lock")
        );
    }
}
