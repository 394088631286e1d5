//! The log's side of witnessing: after new checkpoints (at most once per
//! interval) it sends `add-checkpoint` (C2SP tlog-witness v1.0.0) to every
//! configured witness at once, with a consistency proof from the size each
//! witness last cosigned, and keeps the newest checkpoint whose
//! cosignatures meet the quorum.
//!
//! A witness that is down, slow or refusing never blocks appends: this
//! runs beside the sequencer, each request has a timeout, and appends only
//! ever wait for the log's own signature.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use crate::log::sequencer::{Head, Sequencer};
use crate::store::LogStore;
use crate::sys::follow::{Backoff, Follower, Follows, Role};
use sealog_verify::policy::{Policy, Witness};
use sealog_verify::tree;

/// A checkpoint with enough cosignatures.
#[derive(Clone, Debug)]
pub struct Cosigned {
    /// Tree size of the checkpoint.
    pub size: u64,
    /// Its root hash.
    pub root: tree::Hash,
    /// The log's checkpoint note followed by the cosignature lines.
    pub note: String,
    /// Names of the witnesses (policy `witness` lines) whose cosignatures
    /// it carries: at least the quorum.
    pub witnesses: BTreeSet<String>,
}

/// Witnessing state shared with the HTTP routes.
pub struct Witnessing {
    policy: Policy,
    interval: Duration,
    latest: RwLock<Option<Arc<Cosigned>>>,
    /// The size each witness last cosigned, as far as we know.
    known: Mutex<HashMap<String, u64>>,
    client: reqwest::Client,
}

impl Witnessing {
    /// `client` (HTTPS-capable, `crate::net::tls::client`) should time out
    /// requests: a slow witness must not hold a round for long.
    pub fn new(policy: Policy, interval: Duration, client: reqwest::Client) -> Self {
        Witnessing {
            policy,
            interval,
            latest: RwLock::new(None),
            known: Mutex::new(HashMap::new()),
            client,
        }
    }

    /// The newest checkpoint that met the quorum.
    pub fn latest(&self) -> Option<Arc<Cosigned>> {
        self.latest.read().expect("not poisoned").clone()
    }

    /// Runs rounds until the log stops: call from a spawned task. At most
    /// one round an interval, for the newest checkpoint beyond the last
    /// one witnessed. It follows checkpoints, not leaves, through the same
    /// `Follower` as the log's other followers (`Follows::Checkpoints`):
    /// a round that fails is tried again for the same head after a wait
    /// that doubles from the interval up to `MAX_BACKOFF` (a witness down,
    /// or refusing for good, is asked less and less often), unless a newer
    /// head comes first: that one is tried at once.
    pub async fn run(self: Arc<Self>, sequencer: Arc<Sequencer>, store: Arc<dyn LogStore>) {
        const MAX_BACKOFF: Duration = Duration::from_secs(300);
        let backoff = Backoff::new(self.interval, MAX_BACKOFF.max(self.interval));
        let mut follower = Follower::new(
            Role::Witnessing,
            Follows::Checkpoints,
            0,
            sequencer.watch_size(),
        )
        .with_backoff(backoff);
        loop {
            tokio::time::sleep(self.interval).await;
            if follower.next().await.is_none() {
                return;
            }
            // The head is signed before its size is published: it covers
            // at least what the follower saw.
            let head = sequencer.head();
            if self.round(&head, &store).await {
                follower.advance_to(head.size);
            } else {
                follower.failed();
            }
        }
    }

    /// Asks every witness to cosign `head`; returns whether the quorum met.
    pub async fn round(&self, head: &Head, store: &dyn LogStore) -> bool {
        let asks = self
            .policy
            .witnesses
            .iter()
            .filter(|w| w.url.is_some())
            .map(|w| self.ask(w, head, store));
        let answers = futures_util::future::join_all(asks).await;
        let mut lines = String::new();
        let mut names = BTreeSet::new();
        for (w, a) in self
            .policy
            .witnesses
            .iter()
            .filter(|w| w.url.is_some())
            .zip(answers)
        {
            if let Some(line) = a {
                lines.push_str(&line);
                names.insert(w.name.clone());
            }
        }
        if !self.policy.quorum_met(&names) {
            tracing::warn!(size = head.size, cosigned = ?names, "witness quorum not met");
            return false;
        }
        let c = Cosigned {
            size: head.size,
            root: head.root,
            note: format!("{}{lines}", head.checkpoint),
            witnesses: names,
        };
        let mut latest = self.latest.write().expect("not poisoned");
        if latest.as_ref().is_none_or(|l| l.size < c.size) {
            *latest = Some(Arc::new(c));
        }
        true
    }

    /// One witness's cosignature line for `head`, if it gives one. A 409
    /// with a size (`text/x.tlog.size`) tells the size it has: retry once
    /// from there. Anything else that is not a cosignature (a 409 without a
    /// size: the witness holds another tree of the same size, a fork; any
    /// other status; an answer that does not parse or verify) is logged,
    /// counted in `sealog_witness_errors_total`, and ends this ask: the
    /// round goes on with the other witnesses.
    async fn ask(&self, w: &Witness, head: &Head, store: &dyn LogStore) -> Option<String> {
        let r = self.ask_inner(w, head, store).await;
        if let Err(e) = &r {
            crate::sys::metrics::METRICS
                .witness_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match e {
                AskError::Fork => {
                    crate::sys::metrics::METRICS
                        .witness_forks
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::error!(
                    witness = %w.name,
                    size = head.size,
                    "witness holds another checkpoint of this size: the log was forked"
                    )
                }
                e => {
                    tracing::warn!(witness = %w.name, size = head.size, error = %e, "no cosignature")
                }
            }
        }
        r.ok()
    }

    async fn ask_inner(
        &self,
        w: &Witness,
        head: &Head,
        store: &dyn LogStore,
    ) -> Result<String, AskError> {
        let Some(base) = w.url.as_deref() else {
            return Err(AskError::Other("no URL".into()));
        };
        let url = format!("{}/add-checkpoint", base.trim_end_matches('/'));
        for _ in 0..2 {
            let old = *self
                .known
                .lock()
                .expect("not poisoned")
                .get(&w.name)
                .unwrap_or(&0);
            if old > head.size {
                // Forget it: the next ask starts from 0 and learns the
                // witness's size afresh, rather than never asking again.
                self.known.lock().expect("not poisoned").remove(&w.name);
                return Err(AskError::Other(format!(
                    "the witness has cosigned size {old}, above the log's {}",
                    head.size
                )));
            }
            let proof = if old == 0 || old == head.size {
                Vec::new()
            } else {
                let snap = store
                    .snapshot()
                    .map_err(|e| AskError::Other(format!("store: {e}")))?;
                tree::prove_consistency(old, head.size, &snap)
                    .map_err(|e| AskError::Other(format!("proof from {old}: {e}")))?
            };
            let mut body = format!("old {old}\n");
            for h in &proof {
                body.push_str(&format!("{h}\n"));
            }
            body.push('\n');
            body.push_str(&head.checkpoint);
            let resp = self
                .client
                .post(&url)
                .body(body)
                .send()
                .await
                .map_err(|e| AskError::Other(format!("unreachable: {e}")))?;
            let status = resp.status().as_u16();
            let size_body = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/x.tlog.size"));
            let text = read_limited(resp, MAX_ANSWER).await?;
            match status {
                200 => {
                    let body_text = head
                        .checkpoint
                        .split("\n\n")
                        .next()
                        .unwrap_or_default()
                        .to_string()
                        + "\n";
                    let line = text
                        .lines()
                        .find_map(|l| cosignature_of(w, l, body_text.as_bytes()))
                        .ok_or_else(|| {
                            AskError::Other("200 without a valid cosignature line".into())
                        })?;
                    self.known
                        .lock()
                        .expect("not poisoned")
                        .insert(w.name.clone(), head.size);
                    return Ok(line);
                }
                409 if size_body => {
                    let size = text
                        .strip_suffix('\n')
                        .and_then(|t| t.parse::<u64>().ok())
                        .ok_or_else(|| AskError::Other("409 with a malformed size".into()))?;
                    if size == old {
                        // Its size is the one we sent, yet it conflicts:
                        // only a root conflict (a fork) answers so, from
                        // witnesses that still send the size body for it.
                        return Err(AskError::Fork);
                    }
                    self.known
                        .lock()
                        .expect("not poisoned")
                        .insert(w.name.clone(), size);
                }
                // tlog-witness v1.0.0: same size, another root.
                409 => return Err(AskError::Fork),
                _ => {
                    let answer: String = text.trim().chars().take(200).collect();
                    return Err(AskError::Other(format!("refused: {status} {answer}")));
                }
            }
        }
        Err(AskError::Other(
            "still a size conflict after a retry".into(),
        ))
    }
}

/// Most bytes read of a witness's answer: cosignature lines or a size
/// are short, and a witness must not be able to fill the log's memory.
const MAX_ANSWER: usize = 64 << 10;

/// The answer's body as text, refused beyond `limit` bytes.
async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<String, AskError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| AskError::Other(format!("reading the answer: {e}")))?
    {
        if body.len() + chunk.len() > limit {
            return Err(AskError::Other(format!("an answer over {limit} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| AskError::Other("an answer that is not UTF-8".into()))
}

/// Why a witness gave no cosignature.
#[derive(Debug, thiserror::Error)]
enum AskError {
    #[error("the witness holds another checkpoint of this size")]
    Fork,
    #[error("{0}")]
    Other(String),
}

/// `line` if it is `w`'s valid cosignature of checkpoint `body`.
fn cosignature_of(w: &Witness, line: &str, body: &[u8]) -> Option<String> {
    use base64::prelude::{Engine, BASE64_STANDARD};
    use signed_note::Verifier;
    let rest = line.strip_prefix("\u{2014} ")?;
    let (name, b64) = rest.split_once(' ')?;
    let raw = BASE64_STANDARD.decode(b64).ok()?;
    let ok = name == w.verifier.name()
        && raw.len() > 4
        && u32::from_be_bytes(raw[..4].try_into().ok()?) == w.verifier.key_id()
        && w.verifier.timestamp(body, &raw[4..]).is_some();
    ok.then(|| format!("{line}\n"))
}
