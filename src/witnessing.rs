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

use crate::policy::{Policy, Witness};
use crate::sequencer::{Head, Sequencer};
use crate::store::Store;
use crate::tree;

/// A checkpoint with enough cosignatures.
#[derive(Clone, Debug)]
pub struct Cosigned {
    pub size: u64,
    pub root: tree::Hash,
    /// The log's checkpoint note followed by the cosignature lines.
    pub note: String,
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
    /// `client` (HTTPS-capable, `crate::tls::client`) should time out
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

    /// Runs rounds for ever: call from a spawned task.
    pub async fn run(self: Arc<Self>, sequencer: Arc<Sequencer>, store: Arc<Store>) {
        let mut done = None;
        loop {
            tokio::time::sleep(self.interval).await;
            let head = sequencer.head();
            if done == Some(head.size) || head.size == 0 {
                continue;
            }
            if self.round(&head, &store).await {
                done = Some(head.size);
            }
        }
    }

    /// Asks every witness to cosign `head`; returns whether the quorum met.
    pub async fn round(&self, head: &Head, store: &Store) -> bool {
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
    /// tells the size it has: retry once from there.
    async fn ask(&self, w: &Witness, head: &Head, store: &Store) -> Option<String> {
        let url = format!("{}/add-checkpoint", w.url.as_deref()?.trim_end_matches('/'));
        for _ in 0..2 {
            let old = *self
                .known
                .lock()
                .expect("not poisoned")
                .get(&w.name)
                .unwrap_or(&0);
            if old > head.size {
                tracing::error!(witness = %w.name, old, size = head.size, "witness has a larger tree than the log");
                return None;
            }
            let proof = if old == 0 || old == head.size {
                Vec::new()
            } else {
                let snap = store.snapshot().ok()?;
                tree::prove_consistency(old, head.size, &snap).ok()?
            };
            let mut body = format!("old {old}\n");
            for h in &proof {
                body.push_str(&format!("{h}\n"));
            }
            body.push('\n');
            body.push_str(&head.checkpoint);
            let resp = match self.client.post(&url).body(body).send().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(witness = %w.name, error = %e, "witness unreachable");
                    return None;
                }
            };
            let status = resp.status().as_u16();
            let text = resp.text().await.ok()?;
            match status {
                200 => {
                    let body_text = head.checkpoint.split("\n\n").next()?.to_string() + "\n";
                    let line = text
                        .lines()
                        .find_map(|l| cosignature_of(w, l, body_text.as_bytes()))?;
                    self.known
                        .lock()
                        .expect("not poisoned")
                        .insert(w.name.clone(), head.size);
                    return Some(line);
                }
                409 => {
                    let size = text.trim().parse::<u64>().ok()?;
                    self.known
                        .lock()
                        .expect("not poisoned")
                        .insert(w.name.clone(), size);
                }
                _ => {
                    tracing::warn!(witness = %w.name, status, answer = %text.trim(), "witness refused");
                    return None;
                }
            }
        }
        None
    }
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
