//! Backups: a consistent snapshot of a log, taken while appends go on,
//! and bringing one back.
//!
//! A backup file is a redb database with the log's tables as of one
//! committed state, an `event_keys` table with the keys of its unredacted
//! events (`LogStore::backup_to`), plus a `backup` table holding the log's
//! key files (`log.key`, `log.vkey`, `admin.token`): it must be kept as
//! secret as the key (written 0600). A running log takes the snapshot
//! itself (`POST /v1/admin/backup` writes it under `DIR/backups/`, which
//! only the owner can read); a stopped log is read directly. Restoring
//! copies it row by row into a fresh database and its event keys into
//! the new log's key file (`store::Driver::restore`): a copy of the file
//! would keep the keys in redb, where no later redaction could erase
//! them.

use std::path::Path;

use crate::store::engine::driver;
use crate::store::{LogStore, StoreError, TreeState};
use crate::sys::datadir::DataDir;

const KEY_FILES: [&str; 3] = ["log.key", "log.vkey", "admin.token"];

fn e(x: impl std::fmt::Display) -> String {
    x.to_string()
}

/// `sealog backup --data DIR --out FILE`: returns the snapshot's state.
/// `ca_file`: an extra CA for a log serving HTTPS itself.
pub async fn backup(data: &Path, out: &Path, ca_file: Option<&Path>) -> Result<TreeState, String> {
    let dir = DataDir(data.to_path_buf());
    if out.exists() {
        return Err(format!("{} exists", out.display()));
    }
    let state = match driver().open(&dir.db()) {
        Ok(store) => store.backup_to(out).map_err(e)?,
        Err(StoreError::AlreadyOpen(_)) => {
            // The log is running: ask it for the snapshot. The admin token
            // goes to the address in serve.addr, so that file must be one
            // only this user could have written.
            let addr = crate::sys::datadir::read_trusted(&data.join("serve.addr"))
                .map_err(|x| format!("the log is running but serve.addr is not usable: {x}"))?;
            let addr = addr.trim();
            let base = if addr.starts_with("http://") || addr.starts_with("https://") {
                addr.to_string()
            } else {
                format!("http://{addr}")
            };
            let token = crate::sys::datadir::read_secret(&dir.admin_token()).map_err(e)?;
            let r = crate::net::tls::client(ca_file, None)?
                .post(format!("{base}/v1/admin/backup"))
                .bearer_auth(token.trim())
                .send()
                .await
                .map_err(e)?;
            let status = r.status();
            let v: serde_json::Value =
                serde_json::from_slice(&r.bytes().await.map_err(e)?).map_err(e)?;
            if !status.is_success() {
                return Err(format!("the log refused the backup: {v}"));
            }
            let file = v["file"].as_str().ok_or("no file in the answer")?;
            std::fs::rename(data.join("backups").join(file), out).map_err(e)?;
            let store = driver().open(out).map_err(e)?;
            store.tree_state().map_err(e)?
        }
        Err(x) => return Err(x.to_string()),
    };
    // The key files travel with the snapshot.
    let files: Vec<(&str, String)> = KEY_FILES
        .iter()
        .filter_map(|f| Some((*f, std::fs::read_to_string(data.join(f)).ok()?)))
        .collect();
    driver().put_backup_files(out, &files).map_err(e)?;
    set_private(out)?;
    Ok(state)
}

fn set_private(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).map_err(e)
}

/// Evidence from outside a backup of the newest tree its log signed.
pub enum Evidence {
    /// A checkpoint (from a file) cosigned by the witness quorum of
    /// `policy`: witnesses cosign only what they saw the log publish, and
    /// never a smaller tree after a larger one.
    Cosigned {
        /// The cosigned checkpoint note.
        note: Vec<u8>,
        /// The witnesses and quorum it must meet.
        policy: sealog_verify::policy::Policy,
        /// Where the note came from, for messages (the file name).
        source: String,
    },
    /// The newest checkpoint of the live log, fetched from it.
    Live {
        /// The checkpoint note the log served.
        note: Vec<u8>,
        /// The log it was fetched from, for messages.
        url: String,
    },
}

/// What `restore` made.
pub struct Restored {
    /// Size and root of the restored tree.
    pub state: TreeState,
    /// Whether the restored log appends (else it is read-only).
    pub writable: bool,
}

/// `sealog restore --from FILE --data DIR [evidence]`: a new data
/// directory from a backup, checked (root re-derived, key matching the
/// tree) before use.
///
/// What must stay true: a restored log appends only when evidence from
/// outside the backup shows the backup holds every leaf its key ever
/// signed. Otherwise the original may have signed sizes past the
/// snapshot, and a restored log appending under the same key would sign
/// other roots for them — two histories, a fork witnesses and auditors
/// flag. The backup's own checkpoint proves nothing of the kind (the
/// original signed it, and maybe more after), so the evidence is a
/// checkpoint cosigned by the witness quorum, or the live log's own. It
/// must be signed by the backup's key and equal the backup's tree: a
/// larger one means signed leaves are missing, and that is refused. With
/// no evidence the log is read-only, unless `accept_fork_risk`, which is
/// logged here and recorded in the store (every start warns of it).
pub fn restore(
    from: &Path,
    data: &Path,
    evidence: Option<Evidence>,
    accept_fork_risk: bool,
) -> Result<Restored, String> {
    let dir = DataDir(data.to_path_buf());
    if std::fs::symlink_metadata(dir.db()).is_ok() {
        return Err(format!(
            "{} exists: restore into a new directory",
            dir.db().display()
        ));
    }
    let created = std::fs::symlink_metadata(data).is_err();
    let mut written = Vec::new();
    let r = restore_into(&dir, from, evidence, accept_fork_risk, &mut written);
    if r.is_err() {
        // Leave nothing half-made that a later `serve` would open.
        for p in written.iter().rev() {
            let _ = std::fs::remove_file(p);
        }
        if created {
            let _ = std::fs::remove_dir(data);
        }
    }
    r
}

fn restore_into(
    dir: &DataDir,
    from: &Path,
    evidence: Option<Evidence>,
    accept_fork_risk: bool,
    written: &mut Vec<std::path::PathBuf>,
) -> Result<Restored, String> {
    dir.create().map_err(e)?;
    crate::sys::datadir::check_private(dir).map_err(e)?;
    // Row by row into a fresh file, the events' keys into the key file
    // (`store::Driver::restore`); the key files beside it.
    written.push(dir.db());
    written.push(crate::store::keys::path_of(&dir.db()));
    driver().restore(from, &dir.db()).map_err(e)?;
    let files = driver().backup_files(from).map_err(e)?;
    for f in KEY_FILES {
        if let Some((_, text)) = files.iter().find(|(name, _)| name == f) {
            let path = dir.0.join(f);
            let _ = std::fs::remove_file(&path);
            written.push(path.clone());
            if f == "log.vkey" {
                crate::sys::datadir::write_public(&path, text).map_err(e)?;
            } else {
                crate::sys::datadir::write_secret(&path, text).map_err(e)?;
            }
        }
    }
    let store = driver().open(&dir.db()).map_err(e)?;
    let state = store.tree_state().map_err(e)?;
    let skey = crate::sys::datadir::read_secret(&dir.key())
        .map_err(|x| format!("the backup holds no usable log.key: {x}"))?;
    let signer = sealog_verify::note::LogSigner::new(&skey).map_err(e)?;
    store
        .bind_identity(signer.origin(), &signer.vkey())
        .map_err(e)?;
    let writable = match evidence {
        Some(ev) => {
            check_evidence(&ev, &signer.vkey(), &state)?;
            true
        }
        None if accept_fork_risk => {
            let why = format!(
                "restored writable from a snapshot of size {} root {} with --i-accept-fork-risk: no outside evidence that it holds every leaf its key signed",
                state.size, state.root
            );
            tracing::warn!(size = state.size, root = %state.root, "FORK RISK: {why}");
            store.set_fork_risk(&why).map_err(e)?;
            true
        }
        None => false,
    };
    if !writable {
        store
            .set_read_only(&format!(
                "restored from a snapshot of size {} without evidence that it holds all the original signed; appending could fork the original log",
                state.size
            ))
            .map_err(e)?;
    }
    Ok(Restored { state, writable })
}

/// Checks outside evidence against the backup's tree: signed by the
/// log's key (and the quorum, for a cosigned file), and the same tree.
fn check_evidence(ev: &Evidence, vkey: &str, state: &TreeState) -> Result<(), String> {
    let (note, source) = match ev {
        Evidence::Cosigned {
            note,
            policy,
            source,
        } => {
            if !policy.has_quorum() {
                return Err(String::from(
                    "the policy has no witness quorum: a checkpoint signed by the log alone may be the backup's own, which cannot show that the log signed nothing after it; give a policy with witnesses, or --log"
                ));
            }
            policy.check(note).map_err(|x| format!("{source}: {x}"))?;
            (note, source.as_str())
        }
        Evidence::Live { note, url } => (note, url.as_str()),
    };
    let cp = sealog_verify::note::verify_checkpoint(note, vkey)
        .map_err(|x| format!("{source}: not a checkpoint of this backup's log key: {x}"))?;
    if cp.size > state.size {
        return Err(format!(
            "refused: {source} shows the log signed a tree of size {}, the backup holds only {}: it is missing signed leaves, and appending to it would fork the log. Restore without evidence for a read-only log, and start a new log (new key) for new events",
            cp.size, state.size
        ));
    }
    if cp.size < state.size {
        return Err(format!(
            "refused: {source} is of size {}, older than the backup (size {}): it cannot show that the backup holds everything; give the newest checkpoint",
            cp.size, state.size
        ));
    }
    if cp.root != state.root {
        return Err(format!(
            "refused: {source} has another root than the backup at size {}: the backup is not this log's history",
            cp.size
        ));
    }
    Ok(())
}

/// The running log's side of `POST /v1/admin/backup`: writes a consistent
/// snapshot of `store` to `DIR/backups/backup-<ms>.redb` (0600, in a
/// directory only the owner can read) while appends go on, and returns
/// its file name and the tree state it holds. Blocking: call it off the
/// request threads.
pub fn snapshot_under(
    store: &dyn LogStore,
    data: &Path,
) -> Result<(String, TreeState), StoreError> {
    let dir = data.join("backups");
    let file = format!("backup-{}.redb", crate::sys::clock::now_ms());
    let path = dir.join(&file);
    DataDir(dir)
        .create()
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let state = store.backup_to(&path)?;
    set_private(&path).map_err(StoreError::Corrupt)?;
    Ok((file, state))
}
