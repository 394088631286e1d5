//! The detection rules, one file each, and what they share: what a rule
//! sees of an event (`Event`, the thresholds in `Rules`), what it returns
//! (`Finding`), who an event is about (`Identity`), and the window of a
//! user's recent events (`Window`) that two of them count in.
//!
//! Rules (thresholds in `Rules`, from common practice):
//! - `brute_force`: ≥ 10 failed logons of one user in 10 min;
//! - `password_spray`: ≥ 5 distinct users failing from one source IP in 60 min;
//! - `mfa_fatigue`: ≥ 5 denied push challenges of one user in 10 min, then a success;
//! - `impossible_travel`: consecutive successful logons of one user whose
//!   locations imply more than 800 km/h;
//! - `privilege_after_attack`: privileges or admin group granted to a user
//!   within 3 h after a credential attack (the three rules above) on them;
//! - `new_device`: a successful logon from a device or user agent the user
//!   has not been seen with in 14 days (users with no history excepted).
//!
//! A rule fires once when its threshold is reached (its window then starts
//! over), producing a `Finding` that names the rule, the subject and the
//! indices of the evidence events. A window of `w` ms seen from an event
//! at `t` holds the events dated `t - w` up to `t`, both ends included
//! (`window_start`).
//!
//! A rule works on its own piece of one user's or one IP's state, handed
//! to it by the engine (`detect::engine`), which owns that state, bounds
//! it, and decides which rules an event goes to. What must stay true: a
//! rule costs O(1) amortized per event and never grows its state past the
//! `max_*` cap it is given. This module never names its children: the
//! engine calls each rule, and each rule uses only what is here.

pub(crate) mod brute_force;
pub(crate) mod impossible_travel;
pub(crate) mod mfa_fatigue;
pub(crate) mod new_device;
pub(crate) mod password_spray;
pub(crate) mod privilege_after_attack;

use std::collections::VecDeque;

use serde::Deserialize;
use serde_json::Value;

/// A minute, in ms.
pub(crate) const MIN: u64 = 60_000;
/// An hour, in ms.
pub(crate) const HOUR: u64 = 60 * MIN;
/// A day, in ms.
pub(crate) const DAY: u64 = 24 * HOUR;
/// OCSF factor_type_id 5: Push Notification.
pub(crate) const PUSH: i64 = 5;

/// Rule thresholds and state bounds (config file section `[detections]`).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    /// Failed logons of one user that make a `brute_force` (10).
    pub brute_force_failures: usize,
    /// The window `brute_force` counts them in (10 min).
    pub brute_force_window_ms: u64,
    /// Distinct users failing from one IP that make a `password_spray` (5).
    pub spray_users: usize,
    /// The window `password_spray` counts them in (60 min).
    pub spray_window_ms: u64,
    /// Denied push challenges before a success that make an `mfa_fatigue` (5).
    pub mfa_denials: usize,
    /// The window `mfa_fatigue` counts them in, back from the success (10 min).
    pub mfa_window_ms: u64,
    /// The speed between two successful logons above which
    /// `impossible_travel` fires, in km/h (800).
    pub travel_kmh: f64,
    /// How long after a credential attack a grant is a
    /// `privilege_after_attack` (3 h).
    pub privilege_window_ms: u64,
    /// How long a user's device is remembered by `new_device` (14 days).
    pub new_device_window_ms: u64,
    /// How long a finding keeps a user's risk raised.
    pub risk_window_ms: u64,
    /// Users with state at most (least recently seen evicted).
    pub max_users: usize,
    /// Source IPs with state at most (least recently seen evicted).
    pub max_ips: usize,
    /// Events one user or IP keeps in one rule's window (failures, denied
    /// pushes) at most (oldest evicted); also bounds a finding's evidence.
    pub max_window_events: usize,
    /// Devices remembered per user at most (least recently used evicted).
    pub max_devices_per_user: usize,
    /// Findings raising one user's risk at most (the lowest level, oldest
    /// first, evicted).
    pub max_findings_per_user: usize,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            brute_force_failures: 10,
            brute_force_window_ms: 10 * MIN,
            spray_users: 5,
            spray_window_ms: 60 * MIN,
            mfa_denials: 5,
            mfa_window_ms: 10 * MIN,
            travel_kmh: 800.0,
            privilege_window_ms: 3 * HOUR,
            new_device_window_ms: 14 * DAY,
            risk_window_ms: DAY,
            max_users: 100_000,
            max_ips: 50_000,
            max_window_events: 256,
            max_devices_per_user: 32,
            max_findings_per_user: 32,
        }
    }
}

/// Who an event is about: `user.uid`, or `user.name` when it has no uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A user identified by `user.uid`.
    Uid(String),
    /// A user with no uid, identified by `user.name`.
    Name(String),
}

impl Identity {
    /// The identity of an OCSF user with these members: the uid when
    /// present and not empty, else the name, else none.
    pub fn of(uid: Option<&str>, name: Option<&str>) -> Option<Identity> {
        match (uid, name) {
            (Some(u), _) if !u.is_empty() => Some(Identity::Uid(u.to_string())),
            (_, Some(n)) if !n.is_empty() => Some(Identity::Name(n.to_string())),
            _ => None,
        }
    }

    /// The identity of an OCSF user object.
    pub fn of_user(user: &Value) -> Option<Identity> {
        Identity::of(user["uid"].as_str(), user["name"].as_str())
    }

    /// The uid or name.
    pub fn as_str(&self) -> &str {
        match self {
            Identity::Uid(s) | Identity::Name(s) => s,
        }
    }

    /// Which member identifies the user: `uid` or `name`.
    pub fn member(&self) -> &'static str {
        match self {
            Identity::Uid(_) => "uid",
            Identity::Name(_) => "name",
        }
    }

    /// The identity as the OCSF user object it came from: `{"uid": …}` or
    /// `{"name": …}`.
    pub(crate) fn json(&self) -> Value {
        serde_json::json!({ self.member(): self.as_str() })
    }
}

/// What a rule is shown of an event besides the members it reads: where
/// it is in the log, when it happened (its `time`, never past the log's
/// clock plus the skew), and who it is about.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Event<'a> {
    /// The event's index in the log.
    pub(crate) index: u64,
    /// The event's time, as the rules believe it.
    pub(crate) time: u64,
    /// The user the event is about.
    pub(crate) user: &'a Identity,
}

impl Event<'_> {
    /// A finding of `rule` on this event's user, dated at this event.
    pub(crate) fn finding(
        &self,
        rule: &'static str,
        evidence: Vec<u64>,
        level: i64,
        score: i64,
    ) -> Finding {
        finding(rule, Some(self.user), evidence, level, score, self.time)
    }
}

/// The oldest time a window of `window` ms seen from an event at `time`
/// holds: an event dated exactly then still counts, one a millisecond
/// earlier does not.
pub(crate) fn window_start(time: u64, window: u64) -> u64 {
    time.saturating_sub(window)
}

/// One user's events in one rule's window (failed logons, denied pushes):
/// (time, index), in the order they came, at most `max_window_events`.
#[derive(Debug, Default)]
pub(crate) struct Window(VecDeque<(u64, u64)>);

impl Window {
    /// Drops the events at its front dated before `from` (`window_start`).
    pub(crate) fn trim(&mut self, from: u64) {
        while self.0.front().is_some_and(|(t, _)| *t < from) {
            self.0.pop_front();
        }
    }

    /// Adds an event, evicting the oldest beyond `cap` (each counted in
    /// `evicted`).
    pub(crate) fn push(&mut self, time: u64, index: u64, cap: usize, evicted: &mut u64) {
        self.0.push_back((time, index));
        while self.0.len() > cap {
            self.0.pop_front();
            *evicted += 1;
        }
    }

    /// How many events it holds.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The indices of its events, oldest first; the window is left empty
    /// (it starts over when its rule fires).
    pub(crate) fn drain(&mut self) -> Vec<u64> {
        self.0.drain(..).map(|(_, i)| i).collect()
    }
}

/// A rule that fired.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    /// The rule's name (`brute_force`, …).
    pub rule: &'static str,
    /// The user (uid or name) or source IP the finding is about.
    pub subject: String,
    /// The user, when the subject is one (not for `password_spray`).
    pub identity: Option<Identity>,
    /// The indices of the events that set it off, in the order seen.
    pub evidence: Vec<u64>,
    /// OCSF risk_level_id: 2 Medium, 3 High, 4 Critical.
    pub risk_level_id: i64,
    /// OCSF risk_score: what the finding adds to its user's risk.
    pub risk_score: i64,
    /// The time of the event that set it off.
    pub time: u64,
}

/// A finding of `rule` on `identity` (none: the caller sets the subject).
pub(crate) fn finding(
    rule: &'static str,
    identity: Option<&Identity>,
    evidence: Vec<u64>,
    level: i64,
    score: i64,
    time: u64,
) -> Finding {
    Finding {
        rule,
        subject: identity.map(|i| i.as_str().to_string()).unwrap_or_default(),
        identity: identity.cloned(),
        evidence,
        risk_level_id: level,
        risk_score: score,
        time,
    }
}

impl Finding {
    /// The OCSF Detection Finding (2004) that puts this on the record. Its
    /// `metadata.uid` is derived from rule, subject and evidence, so the
    /// same finding re-derived after a restart is an idempotent retry.
    pub fn event(&self) -> Value {
        self.event_as(0)
    }

    /// The finding's event under its `attempt`-th `metadata.uid`: 0 is the
    /// derived uid; a later attempt (when another event holds that uid)
    /// appends `-<attempt>` to it, still derived, so that a restart's
    /// replay meets its own record again.
    pub fn event_as(&self, attempt: u32) -> Value {
        use sha2::{Digest, Sha256};
        let key = format!("{}|{}|{:?}", self.rule, self.subject, self.evidence);
        let uid: String = Sha256::digest(key.as_bytes())[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let metadata_uid = match attempt {
            0 => format!("sealog-finding-{uid}"),
            n => format!("sealog-finding-{uid}-{n}"),
        };
        serde_json::json!({
            "class_uid": 2004,
            "activity_id": 1,
            "severity_id": self.risk_level_id + 1,
            "time": self.time.max(1),
            "message": format!("{} on {}", self.rule, self.subject),
            "risk_level_id": self.risk_level_id,
            "risk_score": self.risk_score,
            "finding_info": {
                "uid": format!("sealog-{uid}"),
                "title": self.rule,
                "types": [self.rule],
                "desc": format!("{} for {} from events {:?}", self.rule, self.subject, self.evidence),
            },
            "metadata": {
                "version": crate::events::ocsf::schema().version,
                "product": {"name": "sealog", "vendor_name": "sealog"},
                "uid": metadata_uid,
                "labels": ["sealog", "detection"],
            },
            "unmapped": {"sealog": {"rule": self.rule, "subject": self.subject, "evidence": self.evidence}},
        })
    }

    /// Whether the stored event `v` records this finding (whatever uid
    /// and format it was written with): the log's own Detection Finding
    /// with the same rule, subject and evidence.
    pub fn is_recorded_by(&self, v: &Value) -> bool {
        let s = &v["unmapped"]["sealog"];
        v["class_uid"] == 2004
            && v["metadata"]["product"]["name"] == "sealog"
            && s["rule"] == self.rule
            && s["subject"] == self.subject.as_str()
            && s["evidence"] == serde_json::json!(self.evidence)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn findings_are_valid_ocsf_with_a_stable_uid() {
        let alice = Identity::Uid("alice".into());
        let f = finding("brute_force", Some(&alice), vec![1, 2, 3], 3, 70, 5);
        let a = crate::events::prepare(f.event(), 9, crate::events::Appender::Log).unwrap();
        let b = crate::events::prepare(f.event(), 10, crate::events::Appender::Log).unwrap();
        assert_eq!(a.facets.uid, b.facets.uid);
        assert_eq!(a.facets.class_uid, 2004);
        // The alternate uid, for when another event holds the first: also
        // stable, and different.
        let c = crate::events::prepare(f.event_as(1), 9, crate::events::Appender::Log).unwrap();
        assert_eq!(c.facets.uid, format!("{}-1", a.facets.uid));
        assert_eq!(
            c.facets.uid,
            crate::events::prepare(f.event_as(1), 11, crate::events::Appender::Log)
                .unwrap()
                .facets
                .uid
        );
        // Either is recognised as this finding's record; another is not.
        let stored: Value = serde_json::from_slice(&c.jcs).unwrap();
        assert!(f.is_recorded_by(&stored));
        let other = finding("brute_force", Some(&alice), vec![1, 2, 4], 3, 70, 5);
        assert!(!other.is_recorded_by(&stored));
        let mut imitation = stored.clone();
        imitation["metadata"]["product"]["name"] = json!("Example IdP");
        assert!(
            !f.is_recorded_by(&imitation),
            "a producer's event is not the log's record"
        );
    }

    #[test]
    fn a_window_holds_its_start_and_drops_what_is_a_millisecond_older() {
        let mut w = Window::default();
        let mut evicted = 0;
        for (i, t) in [999, 1000, 1001].into_iter().enumerate() {
            w.push(t, i as u64, 10, &mut evicted);
        }
        assert_eq!(window_start(1100, 100), 1000);
        w.trim(window_start(1100, 100));
        assert_eq!(w.drain(), vec![1, 2], "1000 stays, 999 goes");
        assert_eq!(w.len(), 0, "drained: it starts over");
        // Near time 0 a window starts at 0 instead of wrapping.
        assert_eq!(window_start(5, 100), 0);
        // Beyond its cap the oldest is evicted and counted.
        for i in 0..5 {
            w.push(i, i, 3, &mut evicted);
        }
        assert_eq!((w.drain(), evicted), (vec![2, 3, 4], 2));
    }
}
