//! The data directory: where the log keeps its key, its admin token and
//! its database, and the file-permission rules that protect them.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
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

    /// The event keys (spec/storage.md, "Event keys and erasure").
    pub fn keys(&self) -> PathBuf {
        self.0.join("sealog.keys")
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

/// Opens a new file for writing with `mode`, never following a symlink
/// (`create_new` is O_CREAT|O_EXCL: a link planted at `path`, even a
/// dangling one, makes it fail rather than write where the link points).
fn create_file(path: &Path, mode: u32) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Creates a new, empty secret file (0600) without following symlinks.
/// For files that another library fills in (redb databases): it creates
/// nothing then, it opens what is there.
pub fn create_secret(path: &Path) -> io::Result<fs::File> {
    create_file(path, 0o600)
}

/// Writes a new secret file with mode 0600; refuses to overwrite.
pub fn write_secret(path: &Path, contents: &str) -> io::Result<()> {
    let mut f = create_file(path, 0o600)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Writes a new public file; refuses to overwrite.
pub fn write_public(path: &Path, contents: &str) -> io::Result<()> {
    let mut f = create_file(path, 0o644)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

/// Replaces `path` with a new secret file holding `contents`: the old
/// file (or a symlink put in its place) is removed, never written through.
pub fn replace_secret(path: &Path, contents: &str) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    write_secret(path, contents)
}

/// The effective user id of this process: the runner.
pub fn euid() -> u32 {
    // SAFETY: geteuid reads no memory of ours and cannot fail.
    unsafe { libc::geteuid() }
}

fn denied(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

/// Checks an opened file's metadata: a regular file, owned by the user
/// running sealog, and no permission bit in `forbidden` set.
fn check_file(path: &Path, m: &fs::Metadata, forbidden: u32) -> io::Result<()> {
    let mode = m.permissions().mode() & 0o7777;
    if !m.file_type().is_file() {
        return Err(denied(format!("{} is not a regular file", path.display())));
    }
    if m.uid() != euid() {
        return Err(denied(format!(
            "{} is owned by uid {}, not by uid {} which runs sealog: chown it, or run sealog as its owner",
            path.display(),
            m.uid(),
            euid()
        )));
    }
    if mode & forbidden != 0 {
        return Err(denied(format!(
            "{} has mode {:o}; it must be readable and writable by its owner only (chmod 600 {})",
            path.display(),
            mode,
            path.display()
        )));
    }
    Ok(())
}

/// Opens `path` for reading without following a symlink (O_NOFOLLOW: a
/// link there is refused, ELOOP).
fn open_nofollow(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                denied(format!(
                    "{} is a symlink; sealog does not follow links to its secrets: put the file itself there",
                    path.display()
                ))
            } else {
                io::Error::new(e.kind(), format!("{}: {e}", path.display()))
            }
        })
}

/// Reads a secret file, refusing a symlink, a file of another user, and
/// one that group or others may read: a key anyone on the machine can read
/// is a key anyone can sign with. The checks are on the opened file, so
/// the file read is the file checked.
pub fn read_secret(path: &Path) -> io::Result<String> {
    let mut f = open_nofollow(path)?;
    check_file(path, &f.metadata()?, 0o077)?;
    let mut s = String::new();
    io::Read::read_to_string(&mut f, &mut s)?;
    Ok(s)
}

/// Reads a file whose contents decide where a secret is sent (the running
/// log's address in `serve.addr`): refused unless it and its directory
/// belong to the user running sealog and no one else may write them, so
/// another local user cannot redirect the admin token to a listener of
/// theirs.
pub fn read_trusted(path: &Path) -> io::Result<String> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = parent.unwrap_or(Path::new("."));
    let dm = fs::metadata(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    if dm.uid() != euid() || dm.permissions().mode() & 0o022 != 0 {
        return Err(denied(format!(
            "{} is owned by uid {} with mode {:o}: another user could have written {} (it must be the runner's own and not group- or world-writable: chmod 700)",
            dir.display(),
            dm.uid(),
            dm.permissions().mode() & 0o7777,
            path.display()
        )));
    }
    let mut f = open_nofollow(path)?;
    check_file(path, &f.metadata()?, 0o022)?;
    let mut s = String::new();
    io::Read::read_to_string(&mut f, &mut s)?;
    Ok(s)
}

/// Checks a data directory before the log serves from it: the directory
/// is its runner's and no one else's (0700), and each secret-bearing file
/// in it (key, admin token, databases, backups, serve.addr) is a regular
/// file, not a symlink, of the same owner, mode 0600. Files not there yet
/// are fine: they are created private.
pub fn check_private(dir: &DataDir) -> io::Result<()> {
    let backups = dir.0.join("backups");
    let mut files = vec![
        dir.key(),
        dir.admin_token(),
        dir.db(),
        dir.keys(),
        dir.index(),
        dir.0.join("serve.addr"),
    ];
    match fs::symlink_metadata(&backups) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
        Ok(b) => {
            let mode = b.permissions().mode() & 0o7777;
            if !b.is_dir() || b.uid() != euid() || mode & 0o077 != 0 {
                return Err(denied(format!(
                    "{} must be a directory (not a symlink) of the runner's, mode 700 (it is {:o})",
                    backups.display(),
                    mode
                )));
            }
            for e in fs::read_dir(&backups)? {
                files.push(e?.path());
            }
        }
    }
    check_private_files(&dir.0, &files)
}

/// Checks that `dir` is its runner's only (no group or other bits) and
/// that each of `files` that exists is a regular file, not a symlink, of
/// the runner's, mode 0600 or tighter. For the log's and the witness's
/// data directories.
pub fn check_private_files(dir: &Path, files: &[PathBuf]) -> io::Result<()> {
    let m = fs::metadata(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    let mode = m.permissions().mode() & 0o7777;
    if !m.is_dir() {
        return Err(denied(format!("{} is not a directory", dir.display())));
    }
    if m.uid() != euid() {
        return Err(denied(format!(
            "the data directory {} is owned by uid {}, not by uid {} which runs sealog: chown it",
            dir.display(),
            m.uid(),
            euid()
        )));
    }
    if mode & 0o077 != 0 {
        return Err(denied(format!(
            "the data directory {} has mode {:o}; it holds a signing key and private data, so it must be its owner's only (chmod 700 {})",
            dir.display(),
            mode,
            dir.display()
        )));
    }
    for f in files {
        match fs::symlink_metadata(f) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", f.display()))),
            Ok(m) if m.file_type().is_symlink() => {
                return Err(denied(format!(
                    "{} is a symlink; sealog does not follow links to its secrets: put the file itself there",
                    f.display()
                )))
            }
            Ok(m) => check_file(f, &m, 0o077)?,
        }
    }
    Ok(())
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
        // A symlink is neither written through nor read through.
        let target = dir.path().join("target");
        write_secret(&target, "t").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write_secret(&link, "y").is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "t");
        let e = read_secret(&link).unwrap_err().to_string();
        assert!(e.contains("symlink"), "{e}");
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(write_secret(&dangling, "y").is_err());
        assert!(!dir.path().join("nowhere").exists());
    }

    #[test]
    fn a_data_directory_must_be_private() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DataDir(tmp.path().join("d"));
        d.create().unwrap();
        check_private(&d).unwrap();
        write_secret(&d.key(), "k").unwrap();
        check_private(&d).unwrap();
        fs::set_permissions(&d.0, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check_private(&d)
            .unwrap_err()
            .to_string()
            .contains("chmod 700"));
        fs::set_permissions(&d.0, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(d.key(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_private(&d)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
        fs::remove_file(d.key()).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("elsewhere"), d.db()).unwrap();
        assert!(check_private(&d)
            .unwrap_err()
            .to_string()
            .contains("symlink"));
    }

    #[test]
    fn trusted_files_must_be_the_runners_and_not_writable_by_others() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("serve.addr");
        replace_secret(&p, "127.0.0.1:1\n").unwrap();
        replace_secret(&p, "127.0.0.1:2\n").unwrap();
        assert_eq!(read_trusted(&p).unwrap(), "127.0.0.1:2\n");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).unwrap();
        assert!(read_trusted(&p).is_err());
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o777)).unwrap();
        assert!(read_trusted(&p).is_err());
    }
}
