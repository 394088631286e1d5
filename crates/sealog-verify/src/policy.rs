//! Trust policies in the C2SP tlog-policy text form: known logs, known
//! witnesses (with optional URLs), groups and the quorum; and checking a
//! checkpoint against one. Depends on nothing server-side.
//!
//! ```text
//! log <vkey> [<url>]
//! witness <name> <vkey> [<url>]
//! group <name> all|any|<k> <name>...
//! quorum <name>|none
//! ```

use std::collections::{BTreeSet, HashMap};

use signed_note::{Note, StandardVerifier, Verifier, VerifierList};

use crate::cosign::CosignatureVerifier;
use crate::note::{Checkpoint, NoteError};

/// A witness a policy knows.
#[derive(Clone)]
pub struct Witness {
    /// The witness's name, also its key's name.
    pub name: String,
    /// The witness's cosigner vkey (c2sp.org/tlog-cosignature).
    pub vkey: String,
    /// Where the witness is asked to cosign (c2sp.org/tlog-witness), if given.
    pub url: Option<String>,
    /// Checks the witness's cosignatures.
    pub verifier: CosignatureVerifier,
}

/// A known log.
#[derive(Clone)]
pub struct Log {
    /// The log's verifier key.
    pub vkey: String,
    /// Where the log serves its checkpoints, if given.
    pub url: Option<String>,
    /// Checks the log's checkpoint signatures.
    pub verifier: StandardVerifier,
}

/// A parsed policy.
#[derive(Clone)]
pub struct Policy {
    /// The logs the policy lists.
    pub logs: Vec<Log>,
    /// The witnesses the policy lists.
    pub witnesses: Vec<Witness>,
    /// Group name → (threshold, members).
    groups: HashMap<String, (usize, Vec<String>)>,
    /// The quorum's witness or group name, or None for `quorum none`.
    quorum: Option<String>,
}

/// Why a policy does not parse, with its line number.
#[derive(Debug, thiserror::Error)]
#[error("policy line {line}: {message}")]
pub struct PolicyError {
    /// The 1-based line the error is on.
    pub line: usize,
    /// What is wrong with it.
    pub message: String,
}

/// Why a checkpoint does not satisfy a policy.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The checkpoint's own signature does not check out.
    #[error("{0}")]
    Note(#[from] NoteError),
    /// No log of the policy signed the checkpoint.
    #[error("no known log signed this checkpoint")]
    UnknownLog,
    /// The witnesses who cosigned do not make the quorum; lists them.
    #[error("witness quorum not met: cosigned by {0:?}")]
    Quorum(Vec<String>),
}

impl Policy {
    /// A policy of one log and k-of-n witnesses (for the command line).
    pub fn simple(log_vkey: &str, witness_vkeys: &[String], k: usize) -> Result<Self, PolicyError> {
        let mut text = format!("log {log_vkey}\n");
        let mut names = Vec::new();
        for (i, w) in witness_vkeys.iter().enumerate() {
            text.push_str(&format!("witness w{i} {w}\n"));
            names.push(format!("w{i}"));
        }
        if witness_vkeys.is_empty() || k == 0 {
            text.push_str("quorum none\n");
        } else {
            text.push_str(&format!("group q {k} {}\nquorum q\n", names.join(" ")));
        }
        Policy::parse(&text)
    }

    /// Parses the tlog-policy text form.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let mut p = Policy {
            logs: Vec::new(),
            witnesses: Vec::new(),
            groups: HashMap::new(),
            quorum: None,
        };
        let mut quorum_seen = false;
        let mut publics = BTreeSet::new();
        for (i, raw) in text.lines().enumerate() {
            let err = |m: &str| PolicyError {
                line: i + 1,
                message: m.to_string(),
            };
            let line = raw.trim_matches(|c| c == ' ' || c == '\t');
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let f: Vec<&str> = line.split([' ', '\t']).filter(|s| !s.is_empty()).collect();
            match f[0] {
                "log" if f.len() == 2 || f.len() == 3 => {
                    let verifier =
                        StandardVerifier::new(f[1]).map_err(|_| err("not an Ed25519 log vkey"))?;
                    if !publics.insert(public_key(f[1])) {
                        return Err(err("duplicate key"));
                    }
                    p.logs.push(Log {
                        vkey: f[1].to_string(),
                        url: f.get(2).map(|s| s.to_string()),
                        verifier,
                    });
                }
                "witness" if f.len() == 3 || f.len() == 4 => {
                    if p.is_name(f[1]) || f[1] == "none" {
                        return Err(err("name already defined"));
                    }
                    let verifier = CosignatureVerifier::new(f[2])
                        .map_err(|_| err("not a cosignature (0x04) vkey"))?;
                    if !publics.insert(public_key(f[2])) {
                        return Err(err("duplicate key"));
                    }
                    p.witnesses.push(Witness {
                        name: f[1].to_string(),
                        vkey: f[2].to_string(),
                        url: f.get(3).map(|s| s.to_string()),
                        verifier,
                    });
                }
                "group" if f.len() >= 4 => {
                    if p.is_name(f[1]) || f[1] == "none" {
                        return Err(err("name already defined"));
                    }
                    let members: Vec<String> = f[3..].iter().map(|s| s.to_string()).collect();
                    if members.iter().any(|m| !p.is_name(m)) {
                        return Err(err("a member is not defined on an earlier line"));
                    }
                    if members.iter().collect::<BTreeSet<_>>().len() != members.len() {
                        return Err(err("a member is listed twice"));
                    }
                    let n = members.len();
                    let k = match f[2] {
                        "all" => n,
                        "any" => 1,
                        k => k
                            .parse::<usize>()
                            .ok()
                            .filter(|k| (1..=n).contains(k) && !f[2].starts_with('0'))
                            .ok_or_else(|| err("threshold must be all, any or 1..=n"))?,
                    };
                    p.groups.insert(f[1].to_string(), (k, members));
                }
                "quorum" if f.len() == 2 => {
                    if quorum_seen {
                        return Err(err("more than one quorum line"));
                    }
                    quorum_seen = true;
                    if f[1] != "none" {
                        if !p.is_name(f[1]) {
                            return Err(err("quorum names nothing defined earlier"));
                        }
                        p.quorum = Some(f[1].to_string());
                    }
                }
                _ => return Err(err("not a log, witness, group or quorum line")),
            }
        }
        if !quorum_seen {
            return Err(PolicyError {
                line: 0,
                message: "no quorum line".into(),
            });
        }
        Ok(p)
    }

    fn is_name(&self, n: &str) -> bool {
        self.groups.contains_key(n) || self.witnesses.iter().any(|w| w.name == n)
    }

    /// Whether the policy asks for witnesses at all (not `quorum none`).
    pub fn has_quorum(&self) -> bool {
        self.quorum.is_some()
    }

    /// Whether witnesses named in `cosigned` meet the quorum.
    pub fn quorum_met(&self, cosigned: &BTreeSet<String>) -> bool {
        match &self.quorum {
            None => true,
            Some(q) => self.witnessed(q, cosigned),
        }
    }

    fn witnessed(&self, name: &str, cosigned: &BTreeSet<String>) -> bool {
        match self.groups.get(name) {
            Some((k, members)) => {
                members
                    .iter()
                    .filter(|m| self.witnessed(m, cosigned))
                    .count()
                    >= *k
            }
            None => cosigned.contains(name),
        }
    }

    /// Checks a signed checkpoint: signed by a known log whose key name is
    /// the origin, every known witness's cosignature valid, and the quorum
    /// met. Returns the checkpoint and the witnesses that cosigned.
    pub fn check(&self, note: &[u8]) -> Result<(Checkpoint, BTreeSet<String>), CheckError> {
        let mut verifiers: Vec<Box<dyn Verifier>> = Vec::new();
        for l in &self.logs {
            verifiers.push(Box::new(l.verifier.clone()));
        }
        for w in &self.witnesses {
            verifiers.push(Box::new(w.verifier.clone()));
        }
        let n = Note::from_bytes(note).map_err(NoteError::from)?;
        let (verified, _) = n
            .verify(&VerifierList::new(verifiers))
            .map_err(NoteError::from)?;
        let c = Checkpoint::parse(n.text())?;
        let by_log = verified.iter().any(|s| {
            self.logs.iter().any(|l| {
                l.verifier.name() == s.name()
                    && l.verifier.key_id() == s.id()
                    && s.name() == c.origin
            })
        });
        if !by_log {
            return Err(CheckError::UnknownLog);
        }
        let cosigned: BTreeSet<String> = self
            .witnesses
            .iter()
            .filter(|w| {
                verified
                    .iter()
                    .any(|s| s.name() == w.verifier.name() && s.id() == w.verifier.key_id())
            })
            .map(|w| w.name.clone())
            .collect();
        if !self.quorum_met(&cosigned) {
            return Err(CheckError::Quorum(cosigned.into_iter().collect()));
        }
        Ok((c, cosigned))
    }
}

/// The key material of a vkey, for duplicate detection.
fn public_key(vkey: &str) -> Vec<u8> {
    use base64::prelude::{Engine, BASE64_STANDARD};
    let b64 = vkey.splitn(3, '+').nth(2).unwrap_or_default();
    BASE64_STANDARD
        .decode(b64)
        .ok()
        .and_then(|k| k.get(1..).map(<[u8]>::to_vec))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosign::Cosigner;
    use crate::note::{self, LogSigner};

    fn witness(name: &str) -> (Cosigner, String) {
        let (skey, vkey) = Cosigner::generate(name).unwrap();
        (Cosigner::new(&skey).unwrap(), vkey)
    }

    #[test]
    fn the_spec_example_quorum_of_groups() {
        let ws: Vec<(Cosigner, String)> = ["x1", "x2", "x3", "y1", "y2", "y3"]
            .iter()
            .map(|n| witness(n))
            .collect();
        let (_, log_vkey) = note::generate_key("example.com/log").unwrap();
        let text = format!(
            "# comment\nlog {log_vkey}\n\nwitness X1 {}\nwitness X2 {}\nwitness X3 {}\ngroup X-witnesses 2 X1 X2 X3\n\
             \twitness Y1 {} https://y1.example/\nwitness Y2 {}\nwitness Y3 {}\ngroup Y-witnesses any Y1 Y2 Y3\n\
             group X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n",
            ws[0].1, ws[1].1, ws[2].1, ws[3].1, ws[4].1, ws[5].1
        );
        let p = Policy::parse(&text).unwrap();
        let set = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert!(p.quorum_met(&set(&["X1", "X3", "Y2"])));
        assert!(!p.quorum_met(&set(&["X1", "Y1", "Y2", "Y3"])));
        assert!(!p.quorum_met(&set(&["X1", "X2", "X3"])));
        assert_eq!(p.witnesses[3].url.as_deref(), Some("https://y1.example/"));
    }

    #[test]
    fn bad_policies_are_refused_with_their_line() {
        let (_, vk) = witness("w");
        let (_, lk) = note::generate_key("l").unwrap();
        for (text, line) in [
            (format!("witness A {vk}\n"), 0),
            (format!("witness A {vk}\nquorum B\n"), 2),
            (format!("witness A {vk}\ngroup G 2 A\nquorum G\n"), 2),
            (format!("witness A {vk}\ngroup G 0 A\nquorum G\n"), 2),
            (format!("witness A {vk}\nwitness B {vk}\nquorum A\n"), 2),
            (format!("witness A {vk}\nwitness A {lk}\nquorum A\n"), 2),
            (format!("log {vk}\nquorum none\n"), 1),
            (format!("witness A {lk}\nquorum none\n"), 1),
            ("quorum none\nquorum none\n".to_string(), 2),
            ("frobnicate\nquorum none\n".to_string(), 1),
            (format!("group G any A\nwitness A {vk}\nquorum G\n"), 1),
            (format!("witness A {vk}\ngroup G 2 A A\nquorum G\n"), 2),
        ] {
            let e = Policy::parse(&text)
                .err()
                .unwrap_or_else(|| panic!("accepted {text:?}"));
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    #[test]
    fn checkpoints_are_checked_against_signatures_and_quorum() {
        let (skey, log_vkey) = note::generate_key("example.com/log").unwrap();
        let log = LogSigner::new(&skey).unwrap();
        let (w1, v1) = witness("w1.example");
        let (w2, v2) = witness("w2.example");
        let (_, v3) = witness("w3.example");
        let p = Policy::simple(&log_vkey, &[v1, v2, v3], 2).unwrap();
        let cp = log.sign(10, crate::tree::leaf_hash(b"r"));
        let body = cp.split("\n\n").next().unwrap().to_string() + "\n";
        assert!(matches!(p.check(cp.as_bytes()), Err(CheckError::Quorum(_))));
        let one = format!("{cp}{}", w1.cosign(body.as_bytes(), 100));
        assert!(matches!(p.check(one.as_bytes()), Err(CheckError::Quorum(v)) if v == ["w0"]));
        let two = format!("{one}{}", w2.cosign(body.as_bytes(), 101));
        let (c, who) = p.check(two.as_bytes()).unwrap();
        assert_eq!((c.size, who.len()), (10, 2));
        // A cosignature over another checkpoint body fails the whole note.
        let bad = format!("{one}{}", w2.cosign(b"example.com/log\n11\nAAAA\n", 101));
        assert!(p.check(bad.as_bytes()).is_err());
        // A note not signed by the log, however many cosignatures, fails.
        let (other, _) = note::generate_key("example.com/log").unwrap();
        let forged = LogSigner::new(&other)
            .unwrap()
            .sign(10, crate::tree::leaf_hash(b"r"));
        let forged = format!(
            "{forged}{}{}",
            w1.cosign(body.as_bytes(), 1),
            w2.cosign(body.as_bytes(), 1)
        );
        assert!(p.check(forged.as_bytes()).is_err());
    }
}
