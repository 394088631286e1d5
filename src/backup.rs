//! Backups: a consistent snapshot of a log, taken while appends go on,
//! and bringing one back.
//!
//! A backup file is a redb database with the log's tables as of one
//! committed state, an `event_keys` table with the keys of its unredacted
//! events (`Store::backup_to`), plus a `backup` table holding the log's
//! key files (`log.key`, `log.vkey`, `admin.token`): it must be kept as
//! secret as the key (written 0600). A running log takes the snapshot
//! itself (`POST /v1/admin/backup` writes it under `DIR/backups/`, which
//! only the owner can read); a stopped log is read directly. Restoring
//! copies it row by row into a fresh database and its event keys into
//! the new log's key file (`store::restore_into`): a copy of the file
//! would keep the keys in redb, where no later redaction could erase
//! them.

use std::path::Path;

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::datadir::DataDir;
use crate::store::{Store, StoreError, TreeState};

const BACKUP: TableDefinition<&str, &str> = TableDefinition::new("backup");
const KEY_FILES: [&str; 3] = ["log.key", "log.vkey", "admin.token"];

fn e(x: impl std::fmt::Display) -> String {
    x.to_string()
}

/// `sealog backup --data DIR --out FILE`: returns the snapshot's state.
pub async fn backup(data: &Path, out: &Path) -> Result<TreeState, String> {
    let dir = DataDir(data.to_path_buf());
    if out.exists() {
        return Err(format!("{} exists", out.display()));
    }
    let state = match Store::open(&dir.db()) {
        Ok(store) => store.backup_to(out).map_err(e)?,
        Err(StoreError::Redb(redb::Error::DatabaseAlreadyOpen)) => {
            // The log is running: ask it for the snapshot.
            let addr = std::fs::read_to_string(data.join("serve.addr"))
                .map_err(|x| format!("the log is running but serve.addr is unreadable: {x}"))?;
            let token = crate::datadir::read_secret(&dir.admin_token()).map_err(e)?;
            let r = reqwest::Client::new()
                .post(format!("http://{}/v1/admin/backup", addr.trim()))
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
            let store = Store::open(out).map_err(e)?;
            store.tree_state().map_err(e)?
        }
        Err(x) => return Err(x.to_string()),
    };
    // The key files travel with the snapshot.
    let db = Database::open(out).map_err(e)?;
    let tx = db.begin_write().map_err(e)?;
    {
        let mut t = tx.open_table(BACKUP).map_err(e)?;
        for f in KEY_FILES {
            if let Ok(text) = std::fs::read_to_string(data.join(f)) {
                t.insert(f, text.as_str()).map_err(e)?;
            }
        }
    }
    tx.commit().map_err(e)?;
    drop(db);
    set_private(out)?;
    Ok(state)
}

fn set_private(p: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).map_err(e)
}

/// `sealog restore --from FILE --data DIR [--checkpoint CP]`: a new data
/// directory from a backup, checked (root re-derived, key matching the
/// tree) before use.
///
/// The restored log is read-only (it serves reads and proofs, refuses
/// appends): the original may have signed sizes past the snapshot, and a
/// restored log appending under the same key would sign other roots for
/// them — two histories. Give `checkpoint`, the newest checkpoint the
/// original published (from its witnesses, say), to show the snapshot has
/// everything it ever signed; the restored log then appends.
pub fn restore(from: &Path, data: &Path, checkpoint: Option<&Path>) -> Result<TreeState, String> {
    let dir = DataDir(data.to_path_buf());
    if dir.db().exists() {
        return Err(format!(
            "{} exists: restore into a new directory",
            dir.db().display()
        ));
    }
    dir.create().map_err(e)?;
    // Row by row into a fresh file, the events' keys into the key file
    // (`store::restore_into`); the key files beside it.
    crate::store::restore_into(from, &dir.db()).map_err(e)?;
    let db = redb::ReadOnlyDatabase::open(from).map_err(e)?;
    let tx = db.begin_read().map_err(e)?;
    {
        let t = match tx.open_table(BACKUP) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(x) => return Err(e(x)),
        };
        for f in KEY_FILES {
            let Some(t) = &t else { break };
            if let Some(text) = t.get(f).map_err(e)? {
                let path = data.join(f);
                let text = text.value().to_string();
                let _ = std::fs::remove_file(&path);
                if f == "log.vkey" {
                    crate::datadir::write_public(&path, &text).map_err(e)?;
                } else {
                    crate::datadir::write_secret(&path, &text).map_err(e)?;
                }
            }
        }
    }
    drop(tx);
    drop(db);
    let store = Store::open(&dir.db()).map_err(e)?;
    let state = store.tree_state().map_err(e)?;
    let skey = crate::datadir::read_secret(&dir.key())
        .map_err(|x| format!("the backup holds no usable log.key: {x}"))?;
    let signer = crate::note::LogSigner::new(&skey).map_err(e)?;
    store
        .bind_identity(signer.origin(), &signer.vkey())
        .map_err(e)?;
    let complete = match checkpoint {
        None => false,
        Some(p) => {
            let note = std::fs::read(p).map_err(|x| format!("{}: {x}", p.display()))?;
            let cp = crate::note::verify_checkpoint(&note, &signer.vkey())
                .map_err(|x| format!("{}: {x}", p.display()))?;
            if (cp.size, cp.root) != (state.size, state.root) {
                return Err(format!(
                    "the checkpoint is of size {}, the snapshot of size {}: the snapshot lacks what the log signed; restore without --checkpoint for a read-only log",
                    cp.size, state.size
                ));
            }
            true
        }
    };
    if !complete {
        store
            .set_read_only(&format!(
                "restored from a snapshot of size {}; appending could fork the original log",
                state.size
            ))
            .map_err(e)?;
    }
    Ok(state)
}
