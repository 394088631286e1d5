//! A witness: C2SP tlog-witness v1.0.0 `POST /add-checkpoint`.
//!
//! For each trusted log (origin + vkey, from a file of tlog-policy `log`
//! lines) the witness keeps the latest checkpoint it cosigned, and cosigns
//! a new one only if it is consistent with that. What must stay true: the
//! check against the stored checkpoint and the store of the new one are one
//! atomic step (a mutex around a durable write of `store::WitnessState`), so concurrent
//! requests can never roll the witness back (tlog-witness §add-checkpoint);
//! and the new checkpoint is durable before the cosignature leaves.
//!
//! Same size, different root: v1.0.0 answers 409 Conflict; the draft after
//! it moves that case to 422. sealog follows v1.0.0 (spec/witness.md), and
//! that 409 is plain text, not the `text/x.tlog.size` body v1.0.0 requires
//! only for an old-size mismatch: a client must see a fork, not a size to
//! retry from.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use signed_note::{Note, StandardVerifier, Verifier, VerifierList};

use crate::store::{StoreError, WitnessState};
use crate::sys::clock;
use sealog_verify::cosign::Cosigner;
use sealog_verify::receipt::parse_hash;
use sealog_verify::tree::{self, Hash};

/// Most consistency proof lines a request may carry (tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest request body.
pub const MAX_BODY: usize = 64 << 10;

/// Why a checkpoint was not cosigned; each maps to the spec's status.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum AddError {
    /// The body is not an add-checkpoint request (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The checkpoint's origin is no log this witness trusts (404).
    #[error("unknown log origin")]
    UnknownOrigin,
    /// The checkpoint carries no valid signature of the log's key (403).
    #[error("no valid signature from a trusted key of this log")]
    Forbidden,
    /// The old size is not the latest cosigned size, given here.
    #[error("old size is not {0}, the latest cosigned size")]
    Conflict(u64),
    /// Same size as the latest cosigned, another root.
    #[error("same size as the latest cosigned checkpoint, different root")]
    RootConflict(u64),
    /// The proof does not show the checkpoint extends the latest cosigned
    /// one (422): cosigning it would vouch for a fork.
    #[error("consistency proof does not verify: {0}")]
    BadProof(String),
    /// The witness state could not be read or made durable (503): nothing
    /// is cosigned unless the new checkpoint is stored first.
    #[error("storage: {0}")]
    Storage(String),
}

impl IntoResponse for AddError {
    fn into_response(self) -> Response {
        let status = match &self {
            AddError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AddError::UnknownOrigin => StatusCode::NOT_FOUND,
            AddError::Forbidden => StatusCode::FORBIDDEN,
            // Only the old-size mismatch carries the size body: a client
            // (Tessera) reads `text/x.tlog.size` as "retry from this size",
            // and for a fork that retry can never succeed.
            AddError::Conflict(size) => {
                return (
                    StatusCode::CONFLICT,
                    [(header::CONTENT_TYPE, "text/x.tlog.size")],
                    format!("{size}\n"),
                )
                    .into_response()
            }
            AddError::RootConflict(_) => StatusCode::CONFLICT,
            AddError::BadProof(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AddError::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{self}\n"),
        )
            .into_response()
    }
}

/// An add-checkpoint request body, parsed.
#[derive(Debug)]
pub struct AddRequest<'a> {
    /// The size the client believes the witness last cosigned (`old`).
    pub old: u64,
    /// Consistency proof from `old` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note to cosign, as sent.
    pub checkpoint: &'a [u8],
}

impl<'a> AddRequest<'a> {
    /// `old <size>\n`, up to 63 base64 hash lines, an empty line, then the
    /// signed checkpoint.
    pub fn parse(body: &'a [u8]) -> Result<Self, AddError> {
        let bad = |m: &str| AddError::BadRequest(m.to_string());
        let mut rest = body;
        let old = next_line(&mut rest)?
            .strip_prefix("old ")
            .filter(|n| {
                !n.is_empty()
                    && n.bytes().all(|b| b.is_ascii_digit())
                    && (*n == "0" || !n.starts_with('0'))
            })
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or_else(|| bad("first line must be old <size>"))?;
        let mut proof = Vec::new();
        loop {
            let l = next_line(&mut rest)?;
            if l.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad("more than 63 proof lines"));
            }
            proof.push(parse_hash(l).ok_or_else(|| bad("a proof line is not a base64 hash"))?);
        }
        Ok(AddRequest {
            old,
            proof,
            checkpoint: rest,
        })
    }
}

/// The next newline-terminated line of `rest`, without its newline.
fn next_line<'a>(rest: &mut &'a [u8]) -> Result<&'a str, AddError> {
    let bad = |m: &str| AddError::BadRequest(m.to_string());
    let end = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| bad("a line does not end in a newline"))?;
    let l = std::str::from_utf8(&rest[..end]).map_err(|_| bad("not UTF-8"))?;
    *rest = &rest[end + 1..];
    Ok(l)
}

/// A running witness.
pub struct Witness {
    cosigner: Cosigner,
    logs: HashMap<String, Vec<StandardVerifier>>,
    /// The latest cosigned checkpoint of each log (`store::WitnessState`).
    state: Box<dyn WitnessState>,
    /// Serializes check-and-update (see the module comment).
    lock: Mutex<()>,
}

/// The latest checkpoint a witness cosigned for one log.
#[derive(Clone, Debug, PartialEq)]
pub struct Latest {
    /// Tree size of that checkpoint.
    pub size: u64,
    /// Its root hash: another root at this size is a fork.
    pub root: Hash,
    /// The checkpoint note as the log signed it.
    pub note: Vec<u8>,
}

impl Latest {
    fn encode(&self) -> Vec<u8> {
        let mut v = self.size.to_be_bytes().to_vec();
        v.extend_from_slice(&self.root.0);
        v.extend_from_slice(&self.note);
        v
    }

    fn decode(v: &[u8]) -> Option<Self> {
        Some(Latest {
            size: u64::from_be_bytes(v.get(..8)?.try_into().ok()?),
            root: Hash(v.get(8..40)?.try_into().ok()?),
            note: v.get(40..)?.to_vec(),
        })
    }
}

/// Parses a file of `log <vkey> [<url>]` lines (tlog-policy syntax;
/// comments and blank lines allowed) into verifiers by origin.
pub fn parse_logs(text: &str) -> Result<HashMap<String, Vec<StandardVerifier>>, String> {
    let mut logs: HashMap<String, Vec<StandardVerifier>> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split([' ', '\t']).filter(|s| !s.is_empty()).collect();
        match f.as_slice() {
            [] => {}
            [c, ..] if c.starts_with('#') => {}
            ["log", vkey] | ["log", vkey, _] => {
                let v = StandardVerifier::new(vkey)
                    .map_err(|_| format!("line {}: not a log vkey", i + 1))?;
                logs.entry(v.name().to_string()).or_default().push(v);
            }
            _ => return Err(format!("line {}: expected log <vkey> [<url>]", i + 1)),
        }
    }
    Ok(logs)
}

impl Witness {
    /// Opens the witness's state in `db` with its key and trusted logs.
    pub fn open(
        db: &Path,
        cosigner: Cosigner,
        logs: HashMap<String, Vec<StandardVerifier>>,
    ) -> Result<Self, StoreError> {
        Ok(Witness {
            cosigner,
            logs,
            state: crate::store::engine::driver().open_witness(db)?,
            lock: Mutex::new(()),
        })
    }

    /// The latest checkpoint cosigned for `origin`.
    pub fn latest(&self, origin: &str) -> Result<Option<Latest>, AddError> {
        let v = self
            .state
            .latest(origin)
            .map_err(|e| AddError::Storage(e.to_string()))?;
        Ok(v.and_then(|v| Latest::decode(&v)))
    }

    /// Handles an add-checkpoint body; returns the cosignature lines.
    pub fn add_checkpoint(&self, body: &[u8]) -> Result<String, AddError> {
        let req = AddRequest::parse(body)?;
        let note = Note::from_bytes(req.checkpoint)
            .map_err(|_| AddError::BadRequest("malformed signed note".into()))?;
        let cp = tlog_tiles::Checkpoint::from_bytes(note.text())
            .map_err(|_| AddError::BadRequest("malformed checkpoint".into()))?;
        let trusted = self.logs.get(cp.origin()).ok_or(AddError::UnknownOrigin)?;
        let verifiers: Vec<Box<dyn Verifier>> = trusted
            .iter()
            .map(|v| Box::new(v.clone()) as Box<dyn Verifier>)
            .collect();
        note.verify(&VerifierList::new(verifiers))
            .map_err(|_| AddError::Forbidden)?;
        let (size, root) = (cp.size(), *cp.hash());
        if req.old > size {
            return Err(AddError::BadRequest(format!(
                "old size {} is above the checkpoint size {size}",
                req.old
            )));
        }

        let _guard = self.lock.lock().expect("not poisoned");
        let latest = self.latest(cp.origin())?;
        let (have_size, have_root) = latest
            .as_ref()
            .map_or((0, None), |l| (l.size, Some(l.root)));
        if req.old != have_size {
            return Err(AddError::Conflict(have_size));
        }
        if req.old == 0 {
            // From size 0 (never cosigned, or a size-0 checkpoint) there is
            // nothing to prove consistent with: the proof must be empty.
            if !req.proof.is_empty() {
                return Err(AddError::BadProof(
                    "a proof from size 0 must be empty".into(),
                ));
            }
        } else if let Some(r) = have_root {
            if req.old == size {
                if r != root {
                    return Err(AddError::RootConflict(have_size));
                }
                if !req.proof.is_empty() {
                    return Err(AddError::BadProof(
                        "a proof between equal sizes must be empty".into(),
                    ));
                }
            } else {
                tree::check_consistency(&req.proof, req.old, r, size, root)
                    .map_err(|e| AddError::BadProof(e.to_string()))?;
            }
        }
        let new = Latest {
            size,
            root,
            note: req.checkpoint.to_vec(),
        };
        self.state
            .set_latest(cp.origin(), &new.encode())
            .map_err(|e| AddError::Storage(e.to_string()))?;
        // Durable: now the cosignature may leave.
        Ok(self.cosigner.cosign(note.text(), clock::now_ms() / 1000))
    }
}

/// The witness's routes. `body_timeout` bounds the time a client has to
/// send a request body (408 after it), as on the log server.
pub fn router(w: Arc<Witness>, body_timeout: Duration) -> Router {
    Router::new()
        .route("/add-checkpoint", post(add_checkpoint))
        .with_state((w, body_timeout))
}

fn plain(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

async fn add_checkpoint(
    State((w, body_timeout)): State<(Arc<Witness>, Duration)>,
    body: Body,
) -> Response {
    let read = tokio::time::timeout(body_timeout, axum::body::to_bytes(body, MAX_BODY));
    let body: Bytes = match read.await {
        Err(_) => {
            return plain(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            )
        }
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return if too_large {
                plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
            } else {
                plain(StatusCode::BAD_REQUEST, "cannot read the request body")
            };
        }
        Ok(Ok(b)) => b,
    };
    let w2 = w.clone();
    match tokio::task::spawn_blocking(move || w2.add_checkpoint(&body)).await {
        Ok(Ok(lines)) => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], lines).into_response()
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e, "add-checkpoint refused");
            e.into_response()
        }
        Err(_) => AddError::Storage("worker failed".into()).into_response(),
    }
}

/// `sealog witness keygen`: writes `witness.key` (0600) and
/// `witness.vkey` in `dir`; returns the vkey.
pub fn keygen(dir: &Path, name: &str) -> Result<String, String> {
    let (skey, vkey) = Cosigner::generate(name).map_err(|e| e.to_string())?;
    crate::sys::datadir::DataDir(dir.to_path_buf())
        .create()
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    crate::sys::datadir::write_secret(&dir.join("witness.key"), &format!("{skey}\n"))
        .map_err(|e| format!("writing witness.key: {e}"))?;
    crate::sys::datadir::write_public(&dir.join("witness.vkey"), &format!("{vkey}\n"))
        .map_err(|e| format!("writing witness.vkey: {e}"))?;
    Ok(vkey)
}

/// `sealog witness serve`: runs a witness with the key in `data` (made on
/// first start if missing), trusting the logs in `logs`, until SIGTERM.
pub async fn serve(
    data: &Path,
    listen: &str,
    logs: &Path,
    name: Option<&str>,
    tls: Option<(&Path, &Path)>,
    net: crate::net::listener::NetLimits,
    body_timeout: Duration,
) -> Result<(), String> {
    // Like the log's: the directory its owner's only, the key and the
    // database 0600, no symlinks (datadir::check_private_files).
    crate::sys::datadir::DataDir(data.to_path_buf())
        .create()
        .map_err(|e| format!("creating {}: {e}", data.display()))?;
    let db = data.join("witness.redb");
    crate::sys::datadir::check_private_files(data, &[data.join("witness.key"), db.clone()])
        .map_err(|e| e.to_string())?;
    if let Err(e) = crate::sys::datadir::create_secret(&db) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(format!("creating {}: {e}", db.display()));
        }
    }
    if !data.join("witness.key").exists() {
        let name = name.ok_or("no witness.key in the data directory; give --name to create one")?;
        keygen(data, name)?;
    }
    let skey = crate::sys::datadir::read_secret(&data.join("witness.key"))
        .map_err(|e| format!("witness.key: {e}"))?;
    let cosigner = Cosigner::new(&skey).map_err(|e| format!("witness.key: {e}"))?;
    let text = std::fs::read_to_string(logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    let logs = parse_logs(&text).map_err(|e| format!("{}: {e}", logs.display()))?;
    let vkey = cosigner.vkey();
    let w = Arc::new(Witness::open(&db, cosigner, logs).map_err(|e| e.to_string())?);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("listening on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tracing::info!(vkey = %vkey, "witness key");
    let tls = match tls {
        None => None,
        Some((cert, key)) => {
            let t = crate::net::tls::ServerTls::load(cert, key)?;
            t.clone().reload_on_sighup()?;
            Some(t.acceptor())
        }
    };
    let stop = crate::net::listener::shutdown_signal();
    if tls.is_some() {
        tracing::info!("TLS on: the listener speaks HTTPS only");
    }
    // Tests and scripts read the address from this line's end.
    tracing::info!(%addr, "serving");
    // The log server's accept loop: the same connection cap, header
    // deadline, header bound and idle-connection handling.
    crate::net::listener::serve(listener, router(w, body_timeout), net, tls, stop).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_strictly() {
        let h = Hash::default();
        let ok = format!("old 5\n{h}\n{h}\n\nrest");
        let r = AddRequest::parse(ok.as_bytes()).unwrap();
        assert_eq!((r.old, r.proof.len(), r.checkpoint), (5, 2, &b"rest"[..]));
        for bad in [
            "old 05\n\nx".to_string(),
            "old -1\n\nx".into(),
            "old \n\nx".into(),
            "new 5\n\nx".into(),
            "old 5\nnot-a-hash\n\nx".into(),
            "old 5".into(),
            format!("old 5\n{}\nx", format!("{h}\n").repeat(64)),
        ] {
            assert!(
                matches!(
                    AddRequest::parse(bad.as_bytes()),
                    Err(AddError::BadRequest(_))
                ),
                "{bad:?}"
            );
        }
    }
}
