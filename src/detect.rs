//! Detections over the log, evaluated in index order as events commit.
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
//! indices of the evidence events. Times are the events' own `time`.
//! State is bounded: entries older than the longest window are pruned.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::Deserialize;
use serde_json::Value;

const MIN: u64 = 60_000;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;
/// OCSF factor_type_id 5: Push Notification.
const PUSH: i64 = 5;

/// Rule thresholds (config file section `[detections]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rules {
    pub brute_force_failures: usize,
    pub brute_force_window_ms: u64,
    pub spray_users: usize,
    pub spray_window_ms: u64,
    pub mfa_denials: usize,
    pub mfa_window_ms: u64,
    pub travel_kmh: f64,
    pub privilege_window_ms: u64,
    pub new_device_window_ms: u64,
    /// How long a finding keeps a user's risk raised.
    pub risk_window_ms: u64,
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
        }
    }
}

/// A rule that fired.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub rule: &'static str,
    /// The user (uid or name) or source IP the finding is about.
    pub subject: String,
    pub evidence: Vec<u64>,
    /// OCSF risk_level_id: 2 Medium, 3 High, 4 Critical.
    pub risk_level_id: i64,
    pub risk_score: i64,
    pub time: u64,
}

#[derive(Default)]
struct User {
    failures: VecDeque<(u64, u64)>,
    push_denials: VecDeque<(u64, u64)>,
    last_success: Option<(u64, u64, Option<(f64, f64)>)>,
    devices: HashMap<String, u64>,
    /// Credential attacks on this user: (time, evidence).
    attacks: VecDeque<(u64, Vec<u64>)>,
    /// Findings raising this user's risk: (time, rule, level, score, evidence).
    active: Vec<(u64, &'static str, i64, i64, Vec<u64>)>,
    last_mfa: Option<(u64, u64)>,
    last_seen: u64,
}

/// A user's current risk, for step-up decisions.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Risk {
    pub user: String,
    pub risk_level_id: i64,
    pub risk_score: i64,
    pub reasons: Vec<serde_json::Value>,
    /// The last successful MFA authentication: its index and time.
    pub last_mfa: Option<serde_json::Value>,
}

/// The rules' state.
#[derive(Default)]
pub struct Engine {
    pub rules: Rules,
    users: HashMap<String, User>,
    /// Per source IP: failures (time, (user, index)).
    ips: HashMap<String, VecDeque<(u64, (String, u64))>>,
    /// The newest event time seen, for pruning.
    now: u64,
    seen: u64,
}

/// The members of an event the rules read, and nothing else: parsing only
/// these skips the rest of the event (metadata, endpoints' other members)
/// instead of building a `Value` of all of it, which cost the detection
/// follower ~10 % of the server's CPU under load.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Signals {
    pub(crate) class_uid: u64,
    time: u64,
    status_id: Option<i64>,
    activity_id: Option<i64>,
    is_mfa: Option<bool>,
    auth_factors: Vec<Factor>,
    src_endpoint: Endpoint,
    device: Device,
    http_request: HttpRequest,
    group: Named,
    user: Named,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Factor {
    factor_type_id: Option<i64>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Endpoint {
    ip: Option<String>,
    location: Location,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Location {
    lat: Option<f64>,
    long: Option<f64>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Device {
    uid: Option<String>,
    hostname: Option<String>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct HttpRequest {
    user_agent: Option<String>,
}

/// A user (uid, name) or a group (name).
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
struct Named {
    uid: Option<String>,
    name: Option<String>,
}

impl Signals {
    /// The signals of an event's JSON; None if a member the rules read
    /// has the wrong type (validated events never do).
    pub fn parse(json: &[u8]) -> Option<Self> {
        serde_json::from_slice(json).ok()
    }

    /// The signals of an event already parsed as `map`, whose canonical
    /// JSON is `jcs`: taken from the map (no second parse of the text),
    /// or, where the map's numbers are not of the type a signal wants
    /// (say 1.0 where the text `1` parses as an integer), from `jcs`, so
    /// that the answer is always `parse(jcs)`'s.
    pub fn of_event(map: &serde_json::Map<String, Value>, jcs: &[u8]) -> Option<Self> {
        Signals::deserialize(map)
            .ok()
            .or_else(|| Signals::parse(jcs))
    }

    fn user_key(&self) -> Option<String> {
        self.user.uid.clone().or_else(|| self.user.name.clone())
    }
}

fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6371.0 * h.sqrt().asin()
}

fn trim<T>(q: &mut VecDeque<(u64, T)>, from: u64) {
    while q.front().is_some_and(|(t, _)| *t < from) {
        q.pop_front();
    }
}

impl Engine {
    pub fn new(rules: Rules) -> Self {
        Engine {
            rules,
            ..Default::default()
        }
    }

    /// `observe_signals` on a whole event, for the tests.
    #[cfg(test)]
    pub fn observe(&mut self, index: u64, v: &Value) -> Vec<Finding> {
        match Signals::deserialize(v) {
            Ok(s) => self.observe_signals(index, &s),
            Err(_) => Vec::new(),
        }
    }

    /// Feeds the committed event at `index` (the members the rules read);
    /// returns the findings it fires.
    pub fn observe_signals(&mut self, index: u64, v: &Signals) -> Vec<Finding> {
        let (class, time) = (v.class_uid, v.time);
        self.now = self.now.max(time);
        self.seen += 1;
        if self.seen % 10_000 == 0 {
            self.prune();
        }
        let mut out = Vec::new();
        match class {
            3002 => self.authentication(index, time, v, &mut out),
            3005 | 3006 => self.grant(index, time, v, &mut out),
            _ => {}
        }
        for f in &out {
            if let Some(u) = self.users.get_mut(&f.subject) {
                u.active.push((
                    f.time,
                    f.rule,
                    f.risk_level_id,
                    f.risk_score,
                    f.evidence.clone(),
                ));
            }
        }
        out
    }

    fn authentication(&mut self, index: u64, time: u64, v: &Signals, out: &mut Vec<Finding>) {
        let Some(user) = v.user_key() else { return };
        let r = self.rules.clone();
        let status = v.status_id;
        let logon = v.activity_id == Some(1);
        let push = v
            .auth_factors
            .iter()
            .any(|f| f.factor_type_id == Some(PUSH));
        let ip = v.src_endpoint.ip.clone();
        let u = self.users.entry(user.clone()).or_default();
        u.last_seen = time;
        if status == Some(2) && push {
            u.push_denials.push_back((time, index));
            trim(&mut u.push_denials, time.saturating_sub(r.mfa_window_ms));
        }
        if status == Some(2) && logon && !push {
            u.failures.push_back((time, index));
            trim(
                &mut u.failures,
                time.saturating_sub(r.brute_force_window_ms),
            );
            if u.failures.len() >= r.brute_force_failures {
                let evidence: Vec<u64> = u.failures.drain(..).map(|(_, i)| i).collect();
                u.attacks.push_back((time, evidence.clone()));
                out.push(finding("brute_force", &user, evidence, 3, 70, time));
            }
            if let Some(ip) = &ip {
                let q = self.ips.entry(ip.clone()).or_default();
                q.push_back((time, (user.clone(), index)));
                trim(q, time.saturating_sub(r.spray_window_ms));
                let users: HashSet<&String> = q.iter().map(|(_, (u, _))| u).collect();
                if users.len() >= r.spray_users {
                    let hit: Vec<(String, u64)> = q.drain(..).map(|(_, x)| x).collect();
                    let evidence: Vec<u64> = hit.iter().map(|(_, i)| *i).collect();
                    for (victim, _) in &hit {
                        self.users
                            .entry(victim.clone())
                            .or_default()
                            .attacks
                            .push_back((time, evidence.clone()));
                    }
                    out.push(finding("password_spray", ip, evidence, 3, 60, time));
                }
            }
        }
        let u = self.users.get_mut(&user).expect("inserted above");
        if status == Some(1) {
            trim(&mut u.push_denials, time.saturating_sub(r.mfa_window_ms));
            if push && u.push_denials.len() >= r.mfa_denials {
                let mut evidence: Vec<u64> = u.push_denials.drain(..).map(|(_, i)| i).collect();
                evidence.push(index);
                u.attacks.push_back((time, evidence.clone()));
                out.push(finding("mfa_fatigue", &user, evidence, 4, 85, time));
            }
            let mfa = v.is_mfa == Some(true)
                || v.auth_factors.iter().any(|f| f.factor_type_id != Some(11));
            if mfa {
                u.last_mfa = Some((time, index));
            }
            let at = &v.src_endpoint.location;
            let geo = at.lat.zip(at.long);
            if let (Some((t0, i0, Some(g0))), Some(g1)) = (u.last_success, geo) {
                let hours = (time.saturating_sub(t0)) as f64 / HOUR as f64;
                let km = haversine_km(g0, g1);
                if km > 1.0 && (hours == 0.0 || km / hours > r.travel_kmh) {
                    out.push(finding(
                        "impossible_travel",
                        &user,
                        vec![i0, index],
                        3,
                        65,
                        time,
                    ));
                }
            }
            if logon {
                u.last_success = Some((time, index, geo));
                let device = (v.device.uid.as_deref())
                    .or(v.device.hostname.as_deref())
                    .or(v.http_request.user_agent.as_deref());
                if let Some(d) = device {
                    let since = time.saturating_sub(r.new_device_window_ms);
                    u.devices.retain(|_, t| *t >= since);
                    let known = u.devices.contains_key(d);
                    if !known && !u.devices.is_empty() {
                        out.push(finding("new_device", &user, vec![index], 2, 30, time));
                    }
                    u.devices.insert(d.to_string(), time);
                }
            }
        }
    }

    /// Privileges or an admin group granted: after a credential attack on
    /// the user within the window, a finding.
    fn grant(&mut self, index: u64, time: u64, v: &Signals, out: &mut Vec<Finding>) {
        let activity = v.activity_id;
        let granted = match v.class_uid {
            3005 => activity == Some(1),
            // Group Management: Assign Privileges (1) or Add User (3) to a
            // group whose name says admin.
            _ => {
                activity == Some(1)
                    || (activity == Some(3)
                        && (v.group.name.as_deref())
                            .is_some_and(|g| g.to_lowercase().contains("admin")))
            }
        };
        let Some(user) = v.user_key() else { return };
        if !granted {
            return;
        }
        let window = self.rules.privilege_window_ms;
        let u = self.users.entry(user.clone()).or_default();
        trim(&mut u.attacks, time.saturating_sub(window));
        if let Some((_, ev)) = u.attacks.back() {
            let mut evidence = ev.clone();
            evidence.push(index);
            out.push(finding(
                "privilege_after_attack",
                &user,
                evidence,
                4,
                90,
                time,
            ));
        }
    }

    /// Drops state older than every window.
    fn prune(&mut self) {
        let r = &self.rules;
        let keep = [
            r.brute_force_window_ms,
            r.spray_window_ms,
            r.mfa_window_ms,
            r.privilege_window_ms,
            r.new_device_window_ms,
            r.risk_window_ms,
        ]
        .into_iter()
        .max()
        .unwrap_or(DAY);
        let since = self.now.saturating_sub(keep);
        self.users
            .retain(|_, u| u.last_seen >= since || u.active.iter().any(|a| a.0 >= since));
        self.ips
            .retain(|_, q| q.back().is_some_and(|(t, _)| *t >= since));
    }

    /// The user's risk now (as of the newest event time seen).
    pub fn risk(&self, user: &str) -> Risk {
        let since = self.now.saturating_sub(self.rules.risk_window_ms);
        let u = self.users.get(user);
        let active: Vec<_> = u
            .map(|u| u.active.iter().filter(|a| a.0 >= since).collect())
            .unwrap_or_default();
        Risk {
            user: user.to_string(),
            risk_level_id: active.iter().map(|a| a.2).max().unwrap_or(0),
            risk_score: active.iter().map(|a| a.3).sum::<i64>().min(100),
            reasons: active
                .iter()
                .map(|a| serde_json::json!({"rule": a.1, "time": a.0, "evidence": a.4}))
                .collect(),
            last_mfa: u
                .and_then(|u| u.last_mfa)
                .map(|(t, i)| serde_json::json!({"index": i, "time": t})),
        }
    }
}

fn finding(
    rule: &'static str,
    subject: &str,
    evidence: Vec<u64>,
    level: i64,
    score: i64,
    time: u64,
) -> Finding {
    Finding {
        rule,
        subject: subject.to_string(),
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
        use sha2::{Digest, Sha256};
        let key = format!("{}|{}|{:?}", self.rule, self.subject, self.evidence);
        let uid: String = Sha256::digest(key.as_bytes())[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
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
                "version": crate::ocsf::schema().version,
                "product": {"name": "sealog", "vendor_name": "sealog"},
                "uid": format!("sealog-finding-{uid}"),
                "labels": ["sealog", "detection"],
            },
            "unmapped": {"sealog": {"rule": self.rule, "subject": self.subject, "evidence": self.evidence}},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn auth(user: &str, status: i64, time: u64, extra: Value) -> Value {
        let mut v = json!({"class_uid": 3002, "activity_id": 1, "status_id": status, "time": time, "user": {"uid": user}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    /// Feeds events from index 0; returns (index, rule) of each finding.
    fn run(e: &mut Engine, events: &[Value]) -> Vec<(u64, &'static str)> {
        let mut out = Vec::new();
        for (i, v) in events.iter().enumerate() {
            out.extend(
                e.observe(i as u64, v)
                    .into_iter()
                    .map(|f| (i as u64, f.rule)),
            );
        }
        out
    }

    #[test]
    fn signals_of_a_parsed_event_are_those_its_canonical_text_gives() {
        let located =
            json!({"src_endpoint": {"ip": "10.0.0.9", "location": {"lat": 48.85, "long": 2}}});
        let events = [
            auth("zoe", 1, 42, located),
            auth(
                "ann",
                2,
                43,
                json!({"auth_factors": [{"factor_type_id": PUSH}, {}], "is_mfa": true}),
            ),
            auth(
                "bob",
                1,
                44,
                json!({"device": {"uid": "d-1", "hostname": "laptop"}, "http_request": {"user_agent": "curl"}}),
            ),
            json!({"class_uid": 3005, "activity_id": 1, "time": 45, "user": {"name": "eve"}, "group": {"name": "admins"}}),
            json!({"class_uid": 2004, "activity_id": 1, "time": 46, "finding_info": {"uid": "f"}}),
            // A float where the rules want an integer: the map refuses it,
            // its canonical text ("1") does not; the text's answer wins.
            auth("cat", 1, 47, json!({"status_id": 1.0})),
            // A member of the wrong type: neither gives signals.
            json!({"class_uid": 3002, "time": "soon"}),
        ];
        for v in &events {
            let jcs = crate::jcs::to_vec(v);
            let parsed = Signals::parse(&jcs);
            assert_eq!(
                Signals::of_event(v.as_object().unwrap(), &jcs),
                parsed,
                "{v}"
            );
        }
        assert!(Signals::parse(&crate::jcs::to_vec(&events[5])).is_some());
        assert!(
            Signals::deserialize(&events[5]).is_err(),
            "the map alone refuses 1.0"
        );
    }

    #[test]
    fn signals_read_from_stored_json_skip_every_other_member() {
        // Members the rules do not read may hold anything; the ones they
        // read come through from the event's bytes.
        let extra = json!({
            "metadata": {"uid": 7, "product": ["x"]}, "message": {"a": [1, 2]},
            "src_endpoint": {"ip": "10.0.0.9", "hostname": 5, "location": {"lat": 48.8, "long": 2.3}},
            "device": {"hostname": "laptop", "os": null},
            "auth_factors": [{"factor_type_id": 5, "device": {"type_id": 5}}],
        });
        let bytes = serde_json::to_vec(&auth("zoe", 1, 42, extra)).unwrap();
        let s = Signals::parse(&bytes).expect("parsed");
        assert_eq!((s.class_uid, s.time, s.status_id), (3002, 42, Some(1)));
        assert_eq!(s.user_key().as_deref(), Some("zoe"));
        assert_eq!(s.src_endpoint.ip.as_deref(), Some("10.0.0.9"));
        assert_eq!(
            s.src_endpoint
                .location
                .lat
                .zip(s.src_endpoint.location.long),
            Some((48.8, 2.3))
        );
        assert_eq!(s.device.hostname.as_deref(), Some("laptop"));
        assert_eq!(s.auth_factors[0].factor_type_id, Some(PUSH));
        // A member the rules read with the wrong type: not observed.
        assert!(Signals::parse(br#"{"class_uid": 3002, "time": "soon"}"#).is_none());
    }

    #[test]
    fn brute_force_fires_at_the_tenth_failure_in_ten_minutes() {
        let mut e = Engine::default();
        let fails: Vec<Value> = (0..9)
            .map(|i| auth("alice", 2, i * MIN, json!({})))
            .collect();
        assert!(
            run(&mut e, &fails).is_empty(),
            "not one event before the threshold"
        );
        let f = e.observe(9, &auth("alice", 2, 9 * MIN, json!({})));
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].rule, f[0].subject.as_str(), f[0].evidence.len()),
            ("brute_force", "alice", 10)
        );
        // Spread over more than 10 minutes: nothing.
        let mut e = Engine::default();
        let slow: Vec<Value> = (0..20)
            .map(|i| auth("bob", 2, i * 2 * MIN, json!({})))
            .collect();
        assert!(run(&mut e, &slow).is_empty());
    }

    #[test]
    fn password_spray_fires_at_the_fifth_distinct_user_from_one_ip() {
        let mut e = Engine::default();
        let ip = json!({"src_endpoint": {"ip": "198.51.100.9"}});
        let mut evs: Vec<Value> = (0..4)
            .map(|i| auth(&format!("u{i}"), 2, i * MIN, ip.clone()))
            .collect();
        evs.push(auth("u0", 2, 5 * MIN, ip.clone())); // the same user again
        assert!(run(&mut e, &evs).is_empty());
        let f = e.observe(5, &auth("u4", 2, 6 * MIN, ip.clone()));
        assert_eq!(
            (f[0].rule, f[0].subject.as_str()),
            ("password_spray", "198.51.100.9")
        );
    }

    #[test]
    fn mfa_fatigue_fires_on_the_success_after_five_denied_pushes() {
        let push = json!({"auth_factors": [{"factor_type_id": 5}]});
        let mut e = Engine::default();
        let mut evs: Vec<Value> = (0..4)
            .map(|i| auth("carol", 2, i * MIN, push.clone()))
            .collect();
        evs.push(auth("carol", 1, 5 * MIN, push.clone()));
        assert!(
            run(&mut e, &evs).is_empty(),
            "four denials then a success is not fatigue"
        );
        let mut e = Engine::default();
        let mut evs: Vec<Value> = (0..5)
            .map(|i| auth("carol", 2, i * MIN, push.clone()))
            .collect();
        assert!(run(&mut e, &evs).is_empty(), "denials alone do not fire");
        evs.push(auth("carol", 1, 6 * MIN, push.clone()));
        let f = e.observe(5, &evs[5]);
        assert_eq!(f[0].rule, "mfa_fatigue");
        assert_eq!(f[0].evidence, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn impossible_travel_compares_consecutive_successes() {
        let at =
            |lat: f64, long: f64| json!({"src_endpoint": {"location": {"lat": lat, "long": long}}});
        let mut e = Engine::default();
        // Paris then Lyon (≈ 390 km) in 1 h: 390 km/h, fine.
        let f = run(
            &mut e,
            &[
                auth("dan", 1, 0, at(48.85, 2.35)),
                auth("dan", 1, HOUR, at(45.76, 4.84)),
            ],
        );
        assert!(f.is_empty());
        // Then New York (≈ 6,000 km) 2 h later: far beyond 800 km/h.
        let f = e.observe(2, &auth("dan", 1, 3 * HOUR, at(40.71, -74.0)));
        assert_eq!(
            (f[0].rule, f[0].evidence.clone()),
            ("impossible_travel", vec![1, 2])
        );
    }

    #[test]
    fn privilege_grant_after_a_credential_attack_fires_within_three_hours() {
        let grant = |user: &str, time: u64| json!({"class_uid": 3005, "activity_id": 1, "time": time, "user": {"uid": user}, "privileges": ["admin"]});
        let mut e = Engine::default();
        let fails: Vec<Value> = (0..10)
            .map(|i| auth("erin", 2, i * 1000, json!({})))
            .collect();
        assert_eq!(run(&mut e, &fails).len(), 1);
        let f = e.observe(10, &grant("erin", 2 * HOUR));
        assert_eq!(f[0].rule, "privilege_after_attack");
        assert!(
            e.observe(11, &grant("frank", 2 * HOUR)).is_empty(),
            "no attack on frank"
        );
        let f = e.observe(12, &grant("erin", 10 * HOUR));
        assert!(f.is_empty(), "past the 3 h window");
    }

    #[test]
    fn new_device_needs_history_and_a_device_unseen_for_14_days() {
        let dev = |d: &str| json!({"device": {"uid": d}});
        let mut e = Engine::default();
        let f = run(
            &mut e,
            &[
                auth("gus", 1, 0, dev("laptop")),
                auth("gus", 1, HOUR, dev("laptop")),
            ],
        );
        assert!(f.is_empty(), "the first device ever is not new");
        assert_eq!(
            e.observe(2, &auth("gus", 1, 2 * HOUR, dev("phone")))[0].rule,
            "new_device"
        );
        assert!(e
            .observe(3, &auth("gus", 1, 3 * HOUR, dev("phone")))
            .is_empty());
        // The laptop unseen for 15 days while the phone is in use: new again.
        assert!(e
            .observe(4, &auth("gus", 1, 10 * DAY, dev("phone")))
            .is_empty());
        assert_eq!(
            e.observe(5, &auth("gus", 1, 15 * DAY + 4 * HOUR, dev("laptop")))[0].rule,
            "new_device"
        );
    }

    #[test]
    fn risk_reflects_active_findings_and_the_last_mfa() {
        let mut e = Engine::default();
        e.observe(0, &auth("hal", 1, 0, json!({"is_mfa": true})));
        let fails: Vec<Value> = (1..11)
            .map(|i| auth("hal", 2, i * 1000, json!({})))
            .collect();
        for (i, v) in fails.iter().enumerate() {
            e.observe(i as u64 + 1, v);
        }
        let r = e.risk("hal");
        assert_eq!((r.risk_level_id, r.risk_score, r.reasons.len()), (3, 70, 1));
        assert_eq!(r.last_mfa.unwrap()["index"], 0);
        assert_eq!(e.risk("nobody").risk_level_id, 0);
        // A day later the finding no longer raises the risk.
        e.observe(20, &auth("other", 1, 2 * DAY, json!({})));
        assert_eq!(e.risk("hal").risk_level_id, 0);
    }

    #[test]
    fn findings_are_valid_ocsf_with_a_stable_uid() {
        let f = finding("brute_force", "alice", vec![1, 2, 3], 3, 70, 5);
        let a = crate::event::prepare(f.event(), 9, crate::event::Appender::Log).unwrap();
        let b = crate::event::prepare(f.event(), 10, crate::event::Appender::Log).unwrap();
        assert_eq!(a.facets.uid, b.facets.uid);
        assert_eq!(a.facets.class_uid, 2004);
    }
}
