//! The auditor: follows a log, checks every new checkpoint against the
//! last one it stored, and on `--replay` rebuilds the whole tree from the
//! entry bundles (and, with a `read` token, every commitment from its
//! event and salt).
//!
//! What it promises: it stores a checkpoint only after proving it
//! consistent with the one before, so its stored checkpoint is always on
//! the one history it has seen; and when the log shows two histories it
//! writes an evidence file with both signed checkpoints and the failed
//! proof, which anyone holding the log's key can check.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use sealog_verify::note::Checkpoint;
use sealog_verify::policy::Policy;
use sealog_verify::receipt::ConsistencyProof;
use sealog_verify::tiles::TileRef;
use sealog_verify::tree::{self, Hash, MemoryHashes};
use sealog_verify::verify;

/// What an audit run found.
#[derive(Debug)]
pub enum Finding {
    /// The log's checkpoint is consistent with what the auditor held.
    Consistent {
        /// The size of the checkpoint the auditor now holds (its own, if
        /// the log served an older one).
        size: u64,
        /// What the replay checked, when one was asked for.
        replayed: Option<Replay>,
    },
    /// The log showed an inconsistent history; evidence was written.
    Misbehaviour {
        /// The evidence file: both signed checkpoints and the proof that
        /// failed, for anyone holding the log's key to check.
        evidence: PathBuf,
        /// What is wrong, in words.
        reason: String,
    },
}

/// What a replay checked.
#[derive(Debug, Default)]
pub struct Replay {
    /// Leaves this run added to the rebuilt tree (earlier runs' are kept).
    pub leaves: u64,
    /// Hash tiles compared byte for byte with the ones the entries give.
    pub tiles: u64,
    /// Events whose commitment was recomputed from their salt and
    /// canonical form and matched (with a `read` token only).
    pub events_checked: u64,
    /// Events the log answered as redacted (410): their leaves are
    /// checked, their content cannot be.
    pub events_redacted: u64,
}

/// Why an audit could not run (not misbehaviour: network, bad input).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuditError(pub String);

fn err(m: impl std::fmt::Display) -> AuditError {
    AuditError(m.to_string())
}

/// An auditor of one log.
pub struct Auditor {
    /// The log's base URL, without a trailing `/`.
    pub url: String,
    /// What a checkpoint must satisfy (C2SP tlog-policy: the log's key,
    /// the witnesses' quorum).
    pub policy: Policy,
    /// The auditor's directory: the checkpoint it holds, the replay's
    /// hashes, evidence files.
    pub state: PathBuf,
    /// A `read` token: replay then also checks every event.
    pub token: Option<String>,
    client: reqwest::Client,
}

impl Auditor {
    /// An auditor of the log at `url`, keeping its state under `state`
    /// (created if missing); requests time out after 60 s.
    pub fn new(
        url: &str,
        policy: Policy,
        state: &Path,
        token: Option<String>,
    ) -> Result<Self, AuditError> {
        std::fs::create_dir_all(state.join("replay"))
            .map_err(|e| err(format!("{}: {e}", state.display())))?;
        Ok(Auditor {
            url: url.trim_end_matches('/').to_string(),
            policy,
            state: state.to_path_buf(),
            token,
            client: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .build()
                .map_err(err)?,
        })
    }

    /// Uses `client` for the log's requests (HTTPS with an extra CA:
    /// `crate::net::tls::client`).
    pub fn with_client(mut self, client: reqwest::Client) -> Self {
        self.client = client;
        self
    }

    async fn get(&self, path: &str) -> Result<reqwest::Response, AuditError> {
        let mut r = self.client.get(format!("{}{path}", self.url));
        if let Some(t) = &self.token {
            r = r.bearer_auth(t);
        }
        r.send().await.map_err(|e| err(format!("GET {path}: {e}")))
    }

    async fn get_ok(&self, path: &str) -> Result<Vec<u8>, AuditError> {
        let r = self.get(path).await?;
        if !r.status().is_success() {
            return Err(err(format!("GET {path}: {}", r.status())));
        }
        Ok(r.bytes()
            .await
            .map_err(|e| err(format!("GET {path}: {e}")))?
            .to_vec())
    }

    /// One step: fetch the checkpoint, check it, prove it consistent with
    /// the stored one, store it; then replay if asked.
    pub async fn step(&self, replay: bool) -> Result<Finding, AuditError> {
        let note = self.get_ok("/checkpoint").await?;
        let (new, _) = self
            .policy
            .check(&note)
            .map_err(|e| err(format!("checkpoint: {e}")))?;
        let stored = self.state.join("checkpoint");
        if let Ok(old_note) = std::fs::read(&stored) {
            let (old, _) = self
                .policy
                .check(&old_note)
                .map_err(|e| err(format!("the stored checkpoint no longer verifies: {e}")))?;
            if let Some(f) = self.compare(&old, &old_note, &new, &note).await? {
                return Ok(f);
            }
            if new.size < old.size {
                tracing::warn!(
                    old = old.size,
                    new = new.size,
                    "the log served an older checkpoint; keeping ours"
                );
                return Ok(Finding::Consistent {
                    size: old.size,
                    replayed: None,
                });
            }
        }
        write_atomic(&stored, &note)?;
        let replayed = if replay {
            Some(self.replay(&new).await?)
        } else {
            None
        };
        Ok(Finding::Consistent {
            size: new.size,
            replayed,
        })
    }

    /// Misbehaviour between the stored and the new checkpoint, if any.
    async fn compare(
        &self,
        old: &Checkpoint,
        old_note: &[u8],
        new: &Checkpoint,
        new_note: &[u8],
    ) -> Result<Option<Finding>, AuditError> {
        if old.origin != new.origin {
            return Err(err("the checkpoint's origin changed"));
        }
        if new.size == old.size && new.root != old.root {
            let reason = format!("two checkpoints of size {} with different roots", new.size);
            return Ok(Some(self.evidence(old_note, new_note, None, &reason)?));
        }
        if new.size <= old.size {
            return Ok(None);
        }
        let path = format!("/v1/proof/consistency?from={}&to={}", old.size, new.size);
        let body = self.get_ok(&path).await?;
        let outcome = serde_json::from_slice::<ConsistencyProof>(&body)
            .map_err(|e| e.to_string())
            .and_then(|p| verify::verify_consistency(&p, old, new).map_err(|e| e.to_string()));
        match outcome {
            Ok(()) => Ok(None),
            Err(e) => {
                let proof: Value = serde_json::from_slice(&body)
                    .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
                let reason = format!(
                    "checkpoint {} is not consistent with {}: {e}",
                    new.size, old.size
                );
                Ok(Some(self.evidence(
                    old_note,
                    new_note,
                    Some(proof),
                    &reason,
                )?))
            }
        }
    }

    fn evidence(
        &self,
        old: &[u8],
        new: &[u8],
        proof: Option<Value>,
        reason: &str,
    ) -> Result<Finding, AuditError> {
        let path = self
            .state
            .join(format!("evidence-{}.json", crate::sys::clock::now_ms()));
        let doc = json!({
            "reason": reason,
            "log": self.url,
            "old_checkpoint": String::from_utf8_lossy(old),
            "new_checkpoint": String::from_utf8_lossy(new),
            "consistency_proof": proof,
        });
        write_atomic(
            &path,
            serde_json::to_string_pretty(&doc).expect("JSON").as_bytes(),
        )?;
        tracing::error!(evidence = %path.display(), reason, "log misbehaviour");
        Ok(Finding::Misbehaviour {
            evidence: path,
            reason: reason.to_string(),
        })
    }

    /// Downloads every entry bundle and tile past what earlier replays
    /// did, rebuilds the tree, and checks its root against `cp`. With a
    /// token, also checks every event's commitment. Resumes where it
    /// stopped: the stored hashes live in `state/replay/hashes`.
    pub async fn replay(&self, cp: &Checkpoint) -> Result<Replay, AuditError> {
        let hashes_path = self.state.join("replay/hashes");
        let mut mem = load_hashes(&hashes_path)?;
        let start = mem.size();
        if start > cp.size {
            return Err(err("the stored replay is longer than the checkpoint"));
        }
        let mut report = Replay::default();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&hashes_path)
            .map_err(err)?;
        let mut n = start;
        // In chunks of 64 bundles: a chunk's hashes are kept (and a later
        // run resumes after them) only once its tiles and events checked.
        while n < cp.size {
            let chunk_end = cp.size.min((n / 256 + 64) * 256);
            let kept = mem.0.len();
            let mut leaves: Vec<(u64, Hash)> = Vec::new();
            while n < chunk_end {
                let tile = n / 256;
                let width = (cp.size - tile * 256).min(256) as u32;
                let t = TileRef {
                    level: None,
                    index: tile,
                    width,
                };
                let bundle = self.get_ok(&format!("/{t}")).await?;
                if bundle.len() != width as usize * 34 {
                    return Err(err(format!(
                        "{t}: {} bytes, want {}",
                        bundle.len(),
                        width as usize * 34
                    )));
                }
                for (i, e) in bundle.chunks(34).enumerate() {
                    let index = tile * 256 + i as u64;
                    if index < n {
                        continue;
                    }
                    if e[..2] != [0, 32] {
                        return Err(err(format!("{t}: entry {i} is not 32 bytes")));
                    }
                    let commitment = Hash(e[2..].try_into().expect("32 bytes"));
                    mem.append(tree::leaf_hash(&commitment.0));
                    leaves.push((index, commitment));
                }
                n = tile * 256 + u64::from(width);
            }
            // Every hash tile this chunk completed or grew, byte for byte.
            for t in tlog_tiles::Tile::new_tiles(sealog_verify::tiles::HEIGHT, leaves[0].0, n) {
                let ours = t.read_data(&mem).map_err(err)?;
                let r = TileRef {
                    level: Some(t.level()),
                    index: t.level_index(),
                    width: t.width(),
                };
                let theirs = self.get_ok(&format!("/{r}")).await?;
                if theirs[..] != ours[..] {
                    return Err(err(format!("{r} differs from the tile the entries give")));
                }
                report.tiles += 1;
            }
            if self.token.is_some() {
                self.check_events(&leaves, &mut report).await?;
            }
            for h in &mem.0[kept..] {
                file.write_all(&h.0).map_err(err)?;
            }
            file.sync_data().map_err(err)?;
            if cp.size > 10_000 {
                eprintln!("replay: {n}/{} leaves ({}%)", cp.size, n * 100 / cp.size);
            }
        }
        report.leaves = cp.size - start;
        let root = tree::root(cp.size, &mem).map_err(err)?;
        if root != cp.root {
            return Err(err(format!(
                "the entries give root {root}, the checkpoint says {}",
                cp.root
            )));
        }
        Ok(report)
    }

    /// Each event's commitment recomputed from its salt and content.
    async fn check_events(
        &self,
        leaves: &[(u64, Hash)],
        report: &mut Replay,
    ) -> Result<(), AuditError> {
        for (index, commitment) in leaves {
            let r = self.get(&format!("/v1/events/{index}")).await?;
            match r.status().as_u16() {
                200 => {
                    let v: Value =
                        serde_json::from_slice(&r.bytes().await.map_err(err)?).map_err(err)?;
                    let jcs = sealog_verify::commitment::canonical(&v["event"]).map_err(err)?;
                    let salt = base64::Engine::decode(
                        &base64::prelude::BASE64_STANDARD,
                        v["salt"].as_str().unwrap_or_default(),
                    )
                    .map_err(err)?;
                    if sealog_verify::commitment::commitment(&salt, &jcs) != *commitment {
                        return Err(err(format!(
                            "event {index} does not match its commitment: the private store was edited"
                        )));
                    }
                    report.events_checked += 1;
                }
                410 => report.events_redacted += 1,
                s => return Err(err(format!("GET /v1/events/{index}: {s}"))),
            }
        }
        Ok(())
    }
}

fn load_hashes(path: &Path) -> Result<MemoryHashes, AuditError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(err(e)),
    };
    let mut mem = MemoryHashes(
        bytes
            .chunks_exact(32)
            .map(|c| Hash(c.try_into().expect("32")))
            .collect(),
    );
    // A crash mid-write leaves a partial leaf's hashes: drop back to the
    // last whole leaf.
    let size = mem.size();
    mem.0.truncate(tree::stored_hash_count(size) as usize);
    std::fs::write(path, mem.0.iter().flat_map(|h| h.0).collect::<Vec<u8>>()).map_err(err)?;
    Ok(mem)
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), AuditError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
