//! The data directory: where the log keeps its key, its admin token and
//! its database, and the file-permission rules that protect them.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Paths inside a data directory.
#[derive(Clone, Debug)]
pub struct DataDir(pub PathBuf);

impl DataDir {
    /// The log's private signing key (signed-note private key text).
    pub fn key(&self) -> PathBuf {
        self.0.join("log.key")
    }
    /// The log's verifier key line.
    pub fn vkey(&self) -> PathBuf {
        self.0.join("log.vkey")
    }
    /// The admin bearer token created with the log.
    pub fn admin_token(&self) -> PathBuf {
        self.0.join("admin.token")
    }
    /// The redb database.
    pub fn db(&self) -> PathBuf {
        self.0.join("sealog.redb")
    }

    /// The lookup indexes: derived from the log, rebuilt when missing.
    pub fn index(&self) -> PathBuf {
        self.0.join("index.redb")
    }

    /// Creates the directory, readable by its owner only, if missing.
    pub fn create(&self) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.0)
    }
}

/// Writes a new secret file with mode 0600; refuses to overwrite.
pub fn write_secret(path: &Path, contents: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Writes a new public file; refuses to overwrite.
pub fn write_public(path: &Path, contents: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Reads a secret file, refusing one that group or others may read: a
/// key anyone on the machine can read is a key anyone can sign with.
pub fn read_secret(path: &Path) -> io::Result<String> {
    let mode = fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} has mode {:o}; it must be readable by its owner only (chmod 600)",
                path.display(),
                mode & 0o777
            ),
        ));
    }
    fs::read_to_string(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        write_secret(&p, "x").unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_secret(&p).unwrap(), "x");
        assert!(write_secret(&p, "y").is_err());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(read_secret(&p).is_err());
    }
}
