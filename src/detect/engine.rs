//! The detection engine: the state the rules keep per user and per source
//! IP, its bounds, which rules an event goes to, and each user's risk.
//! The rules themselves, and what they see and return, are in
//! `detect::rules` (one file each); their thresholds are `Rules`.
//!
//! Times are the events' own `time`, but never later than the log's clock
//! plus `max_future_skew_ms`: one event dated far ahead must not age every
//! window out.
//!
//! Users are identified by `user.uid` when it is present, by `user.name`
//! only when there is none (`Identity`): a uid and a name that happen to be
//! the same text are two users.
//!
//! What must stay true (an attacker controls how many events, users, IPs
//! and devices there are): every event costs O(1) amortized, and all state
//! is bounded by `Rules`' `max_*` caps. Beyond a cap the least recently
//! seen entry is evicted and counted (`Stats`, exported on `/metrics`).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;

use serde_json::Value;

use crate::detect::lru::Lru;
use crate::detect::rules::impossible_travel::{self, LastLogon};
use crate::detect::rules::new_device::{self, Devices};
use crate::detect::rules::password_spray::{self, Ip};
use crate::detect::rules::privilege_after_attack::{self, Attack};
use crate::detect::rules::{brute_force, mfa_fatigue, Event, Window, DAY, PUSH};
use crate::events::signals::Signals;

pub use crate::detect::rules::{Finding, Identity, Rules};

/// The default `max_future_skew_ms`: how far past the log's clock an
/// event's time may lie.
pub const DEFAULT_MAX_FUTURE_SKEW_MS: u64 = DAY;
/// Users with one name that a risk query by that name finds, at most; a
/// further one evicts the one named longest ago (ask by uid to be exact).
pub const MAX_UIDS_PER_NAME: usize = 16;
/// Reasons a risk answer lists at most (newest first); the rest are counted
/// in `reasons_omitted`.
pub const MAX_REASONS: usize = 20;
/// Evidence indices a risk reason lists at most (the first ones); the rest
/// are counted in `evidence_omitted`. The finding in the log has them all;
/// the engine keeps only these (a user's findings are most of its state).
pub const MAX_REASON_EVIDENCE: usize = 32;

/// Whether an OCSF factor_type_id is a real second factor: a known type
/// (1 SMS … 10 WebAuthn), not 0 Unknown, 11 Password or 99 Other.
pub fn is_second_factor(factor_type_id: Option<i64>) -> bool {
    matches!(factor_type_id, Some(1..=10))
}

/// Whether a successful Authentication shows a second factor: one of its
/// `auth_factors` is of a second-factor type; or it lists none and says
/// `is_mfa: true`. An explicit `is_mfa: false` is never multi-factor.
pub fn is_multi_factor(
    is_mfa: Option<bool>,
    factors: impl IntoIterator<Item = Option<i64>>,
) -> bool {
    if is_mfa == Some(false) {
        return false;
    }
    let mut factors = factors.into_iter().peekable();
    if factors.peek().is_none() {
        return is_mfa == Some(true);
    }
    factors.any(is_second_factor)
}

/// Whether an event is a step-up: a successful (status 1) Logon
/// (activity 1) Authentication (3002) with a second factor. Logoffs,
/// failures and factors of unknown type are not.
pub fn is_step_up(
    class_uid: u64,
    activity_id: Option<i64>,
    status_id: Option<i64>,
    is_mfa: Option<bool>,
    factors: impl IntoIterator<Item = Option<i64>>,
) -> bool {
    class_uid == 3002
        && activity_id == Some(1)
        && status_id == Some(1)
        && is_multi_factor(is_mfa, factors)
}

/// Counts of what the engine did beyond the rules: every eviction and
/// every clamped time (exported on `/metrics` by the runner).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Users evicted beyond `max_users`.
    pub evicted_users: u64,
    /// Source IPs evicted beyond `max_ips`.
    pub evicted_ips: u64,
    /// Events evicted from a window beyond `max_window_events`.
    pub evicted_window_events: u64,
    /// Devices evicted beyond `max_devices_per_user`.
    pub evicted_devices: u64,
    /// Findings evicted beyond `max_findings_per_user`.
    pub evicted_findings: u64,
    /// Users dropped from a name's list beyond `MAX_UIDS_PER_NAME`.
    pub evicted_name_uids: u64,
    /// Events dated past the log's clock + skew, taken as dated at that bound.
    pub future_events: u64,
    /// Users with state now.
    pub users: u64,
    /// Source IPs with state now.
    pub ips: u64,
}

/// A finding raising a user's risk.
struct Active {
    time: u64,
    rule: &'static str,
    level: i64,
    score: i64,
    /// The first `MAX_REASON_EVIDENCE` evidence indices, of `evidence_total`.
    evidence: Vec<u64>,
    evidence_total: usize,
}

/// What the engine keeps of one user: each rule's piece, and the user's
/// risk.
#[derive(Default)]
struct User {
    /// A uid user's latest name (for the name index).
    name: Option<String>,
    /// `brute_force`'s window of failed logons.
    failures: Window,
    /// `mfa_fatigue`'s window of denied pushes.
    push_denials: Window,
    /// The last successful logon (`impossible_travel`).
    last_success: Option<LastLogon>,
    /// `new_device`'s devices.
    devices: Devices,
    /// The newest credential attack on this user (`privilege_after_attack`).
    attack: Option<Attack>,
    /// Findings raising this user's risk, oldest first.
    active: VecDeque<Active>,
    /// The last step-up: (time, index).
    last_mfa: Option<(u64, u64)>,
    /// The newest time of an event about the user.
    last_seen: u64,
}

/// A user's current risk, for step-up decisions.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Risk {
    /// The uid or name asked about.
    pub user: String,
    /// The users it found: the one with that uid, the one with that name
    /// and no uid, and those with a uid whose name it is.
    pub matched: Vec<Value>,
    /// The highest OCSF risk_level_id of their findings (0 for none).
    pub risk_level_id: i64,
    /// The sum of their findings' risk scores, at most 100.
    pub risk_score: i64,
    /// The newest `MAX_REASONS` findings; `reasons_omitted` more.
    pub reasons: Vec<Value>,
    /// How many findings `reasons` leaves out.
    pub reasons_omitted: usize,
    /// The last successful MFA authentication: its index and time.
    pub last_mfa: Option<Value>,
}

/// The rules' state.
pub struct Engine {
    /// The thresholds and caps (the caps at least 1, the window cap at
    /// least each count threshold).
    pub rules: Rules,
    /// How far past the log's clock an event's time is believed.
    pub max_future_skew_ms: u64,
    clock: fn() -> u64,
    users: Lru<Identity, User>,
    /// uid users by name: name → uids (at most `MAX_UIDS_PER_NAME`, the
    /// most recently named last).
    names: HashMap<String, Vec<String>>,
    ips: Lru<String, Ip>,
    /// Device texts, and users in IP windows, are kept as keyed hashes
    /// (the key is this process's, so collisions cannot be aimed).
    hash: RandomState,
    /// The newest event time seen (never past the clock + skew).
    now: u64,
    /// The clock + skew when last read.
    bound: u64,
    stats: Stats,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(Rules::default())
    }
}

impl Signals {
    /// Who the event is about (`Identity`).
    fn identity(&self) -> Option<Identity> {
        Identity::of(self.user.uid.as_deref(), self.user.name.as_deref())
    }

    /// Whether the event is a step-up (`is_step_up`).
    fn step_up(&self) -> bool {
        is_step_up(
            self.class_uid,
            self.activity_id,
            self.status_id,
            self.is_mfa,
            self.auth_factors.iter().map(|f| f.factor_type_id),
        )
    }
}

impl Engine {
    /// An engine with no state, its rules `rules` (caps raised to what
    /// the rules need), its clock the log's.
    pub fn new(mut rules: Rules) -> Self {
        // A cap of 0 would hold nothing the rules need; 1 is the least.
        for cap in [
            &mut rules.max_users,
            &mut rules.max_ips,
            &mut rules.max_window_events,
            &mut rules.max_devices_per_user,
            &mut rules.max_findings_per_user,
        ] {
            *cap = (*cap).max(1);
        }
        // A window must hold a threshold's worth of events, or its rule
        // could never fire.
        rules.max_window_events = (rules.max_window_events)
            .max(rules.brute_force_failures)
            .max(rules.mfa_denials)
            .max(rules.spray_users);
        Engine {
            rules,
            max_future_skew_ms: DEFAULT_MAX_FUTURE_SKEW_MS,
            clock: crate::sys::clock::now_ms,
            users: Lru::default(),
            names: HashMap::new(),
            ips: Lru::default(),
            hash: RandomState::new(),
            now: 0,
            bound: 0,
            stats: Stats::default(),
        }
    }

    /// The clock event times are bounded by (the log's, by default).
    pub fn set_clock(&mut self, clock: fn() -> u64) {
        self.clock = clock;
    }

    /// What the engine counted, and its state's size now.
    pub fn stats(&self) -> Stats {
        Stats {
            users: self.users.len() as u64,
            ips: self.ips.len() as u64,
            ..self.stats
        }
    }

    /// The newest event time seen.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// `observe_signals` on a whole event, for the tests.
    #[cfg(test)]
    pub fn observe(&mut self, index: u64, v: &Value) -> Vec<Finding> {
        use serde::Deserialize;
        match Signals::deserialize(v) {
            Ok(s) => self.observe_signals(index, &s),
            Err(_) => Vec::new(),
        }
    }

    /// Feeds the committed event at `index` (the members the rules read);
    /// returns the findings it fires.
    pub fn observe_signals(&mut self, index: u64, v: &Signals) -> Vec<Finding> {
        // The clock only moves forward: a time within the bound last read
        // is within the clock's bound now, so the clock is read only for
        // an event later than that.
        if v.time > self.bound {
            self.bound = (self.clock)().saturating_add(self.max_future_skew_ms);
        }
        let time = if v.time > self.bound {
            self.stats.future_events += 1;
            self.bound
        } else {
            v.time
        };
        self.now = self.now.max(time);
        let mut out = Vec::new();
        match v.class_uid {
            3002 => self.authentication(index, time, v, &mut out),
            3005 | 3006 => self.grant(index, time, v, &mut out),
            _ => {}
        }
        for f in &out {
            if let Some(u) = f.identity.as_ref().and_then(|id| self.users.get_mut(id)) {
                let active = Active {
                    time: f.time,
                    rule: f.rule,
                    level: f.risk_level_id,
                    score: f.risk_score,
                    evidence: f.evidence[..f.evidence.len().min(MAX_REASON_EVIDENCE)].to_vec(),
                    evidence_total: f.evidence.len(),
                };
                let since = self.now.saturating_sub(self.rules.risk_window_ms);
                add_active(
                    u,
                    active,
                    since,
                    self.rules.max_findings_per_user,
                    &mut self.stats,
                );
            }
        }
        self.bound_state();
        out
    }

    /// The user entry of `id`, now the most recently seen, with its name
    /// indexed.
    fn touch_user(&mut self, id: &Identity, name: Option<&str>, time: u64) -> &mut User {
        let u = self.users.touch(id, User::default);
        u.last_seen = u.last_seen.max(time);
        if let (Identity::Uid(uid), Some(name)) = (id, name) {
            if !name.is_empty() && u.name.as_deref() != Some(name) {
                let old = u.name.replace(name.to_string());
                unindex_name(&mut self.names, old.as_deref(), uid);
                let uids = self.names.entry(name.to_string()).or_default();
                uids.push(uid.clone());
                if uids.len() > MAX_UIDS_PER_NAME {
                    uids.remove(0);
                    self.stats.evicted_name_uids += 1;
                }
            }
        }
        u
    }

    /// An Authentication: a failed logon goes to `brute_force` and (with
    /// a source IP) `password_spray`, a denied push to `mfa_fatigue`; a
    /// success to `mfa_fatigue` and `impossible_travel`, and, a logon, to
    /// `new_device`. The credential attacks are noted for
    /// `privilege_after_attack`.
    fn authentication(&mut self, index: u64, time: u64, v: &Signals, out: &mut Vec<Finding>) {
        let Some(id) = v.identity() else { return };
        let ev = Event {
            index,
            time,
            user: &id,
        };
        let r = self.rules;
        let status = v.status_id;
        let logon = v.activity_id == Some(1);
        let push = v
            .auth_factors
            .iter()
            .any(|f| f.factor_type_id == Some(PUSH));
        let mut evicted = 0;
        let u = self.touch_user(&id, v.user.name.as_deref(), time);
        if status == Some(2) && push {
            mfa_fatigue::denied(&mut u.push_denials, &ev, &r, &mut evicted);
        }
        let failure = status == Some(2) && logon && !push;
        if failure {
            if let Some(f) = brute_force::failed_logon(&mut u.failures, &ev, &r, &mut evicted) {
                u.attack = Some(Attack::of(&f));
                out.push(f);
            }
        }
        self.stats.evicted_window_events += evicted;
        if let (true, Some(ip)) = (failure, &v.src_endpoint.ip) {
            self.spray(ip, &ev, out);
        }
        let Some(u) = self.users.get_mut(&id) else {
            return;
        };
        if status == Some(1) {
            if let Some(f) = mfa_fatigue::succeeded(&mut u.push_denials, push, &ev, &r) {
                u.attack = Some(Attack::of(&f));
                out.push(f);
            }
            if v.step_up() {
                u.last_mfa = Some((time, index));
            }
            let at = impossible_travel::location(v);
            out.extend(impossible_travel::succeeded(
                u.last_success.as_ref(),
                at,
                &ev,
                &r,
            ));
            if logon {
                u.last_success = Some(LastLogon { time, index, at });
                if let Some(d) = new_device::device(v) {
                    let key = self.hash.hash_one(d);
                    out.extend(new_device::logon(
                        &mut u.devices,
                        key,
                        &ev,
                        &r,
                        &mut self.stats.evicted_devices,
                    ));
                }
            }
        }
    }

    /// A failed logon from `ip` for `password_spray`; when it fires, a
    /// credential attack on each of the users it names.
    fn spray(&mut self, ip: &str, ev: &Event, out: &mut Vec<Finding>) {
        let key = self.hash.hash_one(ev.user);
        let q = self.ips.touch(ip, Ip::default);
        let fired = password_spray::failed_logon(
            q,
            key,
            ev,
            ip,
            &self.rules,
            &mut self.stats.evicted_window_events,
        );
        let Some((f, victims)) = fired else { return };
        for victim in &victims {
            let u = self.users.touch(victim, User::default);
            u.attack = Some(Attack::of(&f));
        }
        out.push(f);
    }

    /// A User Access or Group Management event: a grant goes to
    /// `privilege_after_attack`.
    fn grant(&mut self, index: u64, time: u64, v: &Signals, out: &mut Vec<Finding>) {
        if !privilege_after_attack::is_grant(v) {
            return;
        }
        let Some(id) = v.identity() else { return };
        let r = self.rules;
        let u = self.touch_user(&id, v.user.name.as_deref(), time);
        let ev = Event {
            index,
            time,
            user: &id,
        };
        out.extend(privilege_after_attack::granted(u.attack.as_ref(), &ev, &r));
    }

    /// Drops users and IPs idle for longer than every window (oldest
    /// first, while the oldest is idle), then evicts the least recently
    /// seen beyond the caps. O(1) amortized: each entry is dropped once.
    fn bound_state(&mut self) {
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
        let idle = |u: &User| u.last_seen < since && u.active.back().is_none_or(|a| a.time < since);
        while let Some((id, u)) = self.users.pop_oldest_if(idle) {
            self.forget_name(&id, u);
        }
        while self
            .ips
            .pop_oldest_if(|q| q.last_failure().is_none_or(|t| t < since))
            .is_some()
        {}
        while self.users.len() > self.rules.max_users {
            match self.users.pop_oldest_if(|_| true) {
                Some((id, u)) => {
                    self.stats.evicted_users += 1;
                    self.forget_name(&id, u);
                }
                None => break,
            }
        }
        while self.ips.len() > self.rules.max_ips {
            if self.ips.pop_oldest_if(|_| true).is_none() {
                break;
            }
            self.stats.evicted_ips += 1;
        }
    }

    /// Removes a user dropped from the state from the name index.
    fn forget_name(&mut self, id: &Identity, u: User) {
        if let Identity::Uid(uid) = id {
            unindex_name(&mut self.names, u.name.as_deref(), uid);
        }
    }

    /// The risk of the user whose uid or name is `user`, now (as of the
    /// newest event time seen). By name it finds every user so named (up
    /// to `MAX_UIDS_PER_NAME` with a uid) and answers the highest risk of
    /// them: a name shared by two users never hides the riskier one.
    pub fn risk(&self, user: &str) -> Risk {
        let since = self.now.saturating_sub(self.rules.risk_window_ms);
        let mut ids = vec![
            Identity::Uid(user.to_string()),
            Identity::Name(user.to_string()),
        ];
        for uid in self.names.get(user).into_iter().flatten() {
            if uid != user {
                ids.push(Identity::Uid(uid.clone()));
            }
        }
        let found: Vec<(&Identity, &User)> = ids
            .iter()
            .filter_map(|id| self.users.get(id).map(|u| (id, u)))
            .collect();
        let mut active: Vec<(&Identity, &Active)> = found
            .iter()
            .flat_map(|(id, u)| u.active.iter().map(move |a| (*id, a)))
            .filter(|(_, a)| a.time >= since)
            .collect();
        active.sort_by_key(|a| std::cmp::Reverse(a.1.time));
        let reasons = active
            .iter()
            .take(MAX_REASONS)
            .map(|(id, a)| {
                let shown = a.evidence.len();
                serde_json::json!({
                    "rule": a.rule,
                    "time": a.time,
                    "user": id.json(),
                    "evidence": &a.evidence[..shown],
                    "evidence_omitted": a.evidence_total - shown,
                })
            })
            .collect();
        let last_mfa = found
            .iter()
            .filter_map(|(id, u)| u.last_mfa.map(|m| (*id, m)))
            .max_by_key(|(_, (t, i))| (*t, *i))
            .map(|(id, (t, i))| serde_json::json!({"index": i, "time": t, "user": id.json()}));
        Risk {
            user: user.to_string(),
            matched: found
                .iter()
                .map(|(id, u)| {
                    let mut m = id.json();
                    if let Some(n) = &u.name {
                        m["name"] = Value::from(n.as_str());
                    }
                    m
                })
                .collect(),
            risk_level_id: active.iter().map(|a| a.1.level).max().unwrap_or(0),
            risk_score: active.iter().map(|a| a.1.score).sum::<i64>().min(100),
            reasons_omitted: active.len().saturating_sub(MAX_REASONS),
            reasons,
            last_mfa,
        }
    }
}

/// Adds a finding to a user's active ones: drops those older than `since`
/// and, beyond `cap`, evicts the oldest of the lowest level (so a flood of
/// minor findings cannot push a critical one out).
fn add_active(u: &mut User, a: Active, since: u64, cap: usize, stats: &mut Stats) {
    while u.active.front().is_some_and(|x| x.time < since) {
        u.active.pop_front();
    }
    if u.active.len() >= cap {
        let lowest = (u.active.iter().enumerate())
            .min_by_key(|(i, x)| (x.level, *i))
            .map(|(i, _)| i);
        if let Some(i) = lowest {
            u.active.remove(i);
            stats.evicted_findings += 1;
        }
    }
    u.active.push_back(a);
}

/// Removes `uid` from the users named `name`.
fn unindex_name(names: &mut HashMap<String, Vec<String>>, name: Option<&str>, uid: &str) {
    let Some(name) = name else { return };
    if let Some(uids) = names.get_mut(name) {
        uids.retain(|u| u != uid);
        if uids.is_empty() {
            names.remove(name);
        }
    }
}

/// What the rules' unit tests share: an Authentication event, and the
/// engine fed a run of events.
#[cfg(test)]
pub(crate) mod testing {
    use crate::detect::engine::Engine;
    use serde_json::{json, Value};

    /// An Authentication Logon of the user with uid `user`, its status
    /// `status` (1 success, 2 failure), with the members of `extra` set.
    pub(crate) fn auth(user: &str, status: i64, time: u64, extra: Value) -> Value {
        let mut v = json!({"class_uid": 3002, "activity_id": 1, "status_id": status, "time": time, "user": {"uid": user}});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    /// Feeds events from index 0; returns (index, rule) of each finding.
    pub(crate) fn run(e: &mut Engine, events: &[Value]) -> Vec<(u64, &'static str)> {
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
}

#[cfg(test)]
mod tests {
    use super::testing::{auth, run};
    use super::*;
    use crate::detect::rules::{HOUR, PUSH};
    use serde::Deserialize;
    use serde_json::json;

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
            let jcs = sealog_verify::jcs::to_vec(v);
            let parsed = Signals::parse(&jcs);
            assert_eq!(
                Signals::of_event(v.as_object().unwrap(), &jcs),
                parsed,
                "{v}"
            );
        }
        assert!(Signals::parse(&sealog_verify::jcs::to_vec(&events[5])).is_some());
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
        assert_eq!(s.identity(), Some(Identity::Uid("zoe".into())));
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

    const T0: u64 = 1_800_000_000_000;

    fn fixed_clock() -> u64 {
        T0
    }

    fn at_t0(rules: Rules) -> Engine {
        let mut e = Engine::new(rules);
        e.set_clock(fixed_clock);
        e
    }

    #[test]
    fn an_event_dated_past_the_clock_and_skew_cannot_move_now_past_them() {
        let mut e = at_t0(Rules::default());
        e.max_future_skew_ms = HOUR;
        let fails: Vec<Value> = (0..10)
            .map(|i| auth("hal", 2, T0 - 60_000 + i, json!({})))
            .collect();
        assert_eq!(run(&mut e, &fails).len(), 1);
        assert_eq!(e.risk("hal").risk_level_id, 3);
        // One event dated 100 days ahead: taken as dated at clock + skew
        // (1 h here), counted; the day-long risk window still holds hal's
        // finding (before, `now` jumped 100 days and aged it out).
        e.observe(10, &auth("zed", 1, T0 + 100 * DAY, json!({})));
        assert_eq!(e.now(), T0 + HOUR);
        assert_eq!(e.stats().future_events, 1);
        assert_eq!(e.risk("hal").risk_level_id, 3);
        // Within the skew: believed.
        e.observe(11, &auth("zed", 1, T0 + HOUR - 1, json!({})));
        assert_eq!(e.stats().future_events, 1);
        // A backfilled event (long past) is observed as dated.
        let old: Vec<Value> = (0..10)
            .map(|i| auth("ivy", 2, T0 - 30 * DAY + i, json!({})))
            .collect();
        let f: Vec<Finding> = (old.iter().enumerate())
            .flat_map(|(i, v)| e.observe(20 + i as u64, v))
            .collect();
        assert_eq!((f.len(), f[0].time), (1, T0 - 30 * DAY + 9));
    }

    #[test]
    fn a_uid_and_a_name_of_the_same_text_are_two_users() {
        let mut e = Engine::default();
        let mut evs = Vec::new();
        for i in 0..5 {
            evs.push(auth("bob", 2, i * 1000, json!({})));
            let mut by_name = auth("x", 2, i * 1000 + 1, json!({}));
            by_name["user"] = json!({"name": "bob"});
            evs.push(by_name);
        }
        assert!(
            run(&mut e, &evs).is_empty(),
            "five failures each, not ten of one"
        );
        // A user with a uid and a name is found by either; the name only
        // identifies a user that has no uid.
        let mut e = Engine::default();
        let evs: Vec<Value> = (0..10)
            .map(|i| {
                let mut v = auth("u-1", 2, i * 1000, json!({}));
                v["user"]["name"] = json!("alice");
                v
            })
            .collect();
        let f = run(&mut e, &evs);
        assert_eq!(f, vec![(9, "brute_force")]);
        for q in ["u-1", "alice"] {
            let r = e.risk(q);
            assert_eq!(r.risk_level_id, 3, "{q}");
            assert_eq!(r.matched, vec![json!({"uid": "u-1", "name": "alice"})]);
        }
        assert_eq!(e.risk("u-2").risk_level_id, 0);
        // A second user named alice: asking by the name answers the
        // riskier of them, never the calmer alone.
        let mut calm = auth("u-2", 1, 20_000, json!({}));
        calm["user"]["name"] = json!("alice");
        e.observe(20, &calm);
        let r = e.risk("alice");
        assert_eq!((r.risk_level_id, r.matched.len()), (3, 2));
        assert_eq!(e.risk("u-2").risk_level_id, 0);
    }

    #[test]
    fn a_step_up_is_a_successful_logon_with_a_real_second_factor() {
        let f = |ids: &[i64]| ids.iter().map(|&i| Some(i)).collect::<Vec<_>>();
        assert!(is_step_up(3002, Some(1), Some(1), None, f(&[10])));
        assert!(is_step_up(3002, Some(1), Some(1), Some(true), []));
        assert!(is_step_up(3002, Some(1), Some(1), None, f(&[11, 7])));
        for (what, ok) in [
            (
                "logoff",
                is_step_up(3002, Some(2), Some(1), Some(true), f(&[10])),
            ),
            (
                "failure",
                is_step_up(3002, Some(1), Some(2), Some(true), f(&[10])),
            ),
            (
                "unknown factor",
                is_step_up(3002, Some(1), Some(1), Some(true), f(&[0])),
            ),
            (
                "other factor",
                is_step_up(3002, Some(1), Some(1), Some(true), f(&[99])),
            ),
            (
                "untyped factor",
                is_step_up(3002, Some(1), Some(1), Some(true), [None]),
            ),
            (
                "password only",
                is_step_up(3002, Some(1), Some(1), Some(true), f(&[11])),
            ),
            (
                "is_mfa false",
                is_step_up(3002, Some(1), Some(1), Some(false), f(&[10])),
            ),
            ("no claim", is_step_up(3002, Some(1), Some(1), None, [])),
            (
                "not authentication",
                is_step_up(3005, Some(1), Some(1), Some(true), f(&[10])),
            ),
        ] {
            assert!(!ok, "{what}");
        }
        // The risk answer's last MFA follows the same rule.
        let mut e = Engine::default();
        e.observe(
            0,
            &auth(
                "kim",
                1,
                0,
                json!({"is_mfa": true, "auth_factors": [{"factor_type_id": 0}]}),
            ),
        );
        e.observe(
            1,
            &auth("kim", 1, 1, json!({"activity_id": 2, "is_mfa": true})),
        );
        assert!(e.risk("kim").last_mfa.is_none());
        e.observe(
            2,
            &auth(
                "kim",
                1,
                2,
                json!({"auth_factors": [{"factor_type_id": 4}]}),
            ),
        );
        assert_eq!(e.risk("kim").last_mfa.unwrap()["index"], 2);
    }

    fn spray_burst(e: &mut Engine, users: u64, n: u64) -> Vec<Finding> {
        let ip = json!({"src_endpoint": {"ip": "203.0.113.9"}});
        (0..n)
            .flat_map(|i| e.observe(i, &auth(&format!("u{}", i % users), 2, i, ip.clone())))
            .collect()
    }

    #[test]
    fn a_burst_from_one_ip_over_a_few_users_keeps_a_bounded_window() {
        let rules = Rules {
            max_window_events: 50,
            ..Rules::default()
        };
        let mut e = Engine::new(rules);
        let f = spray_burst(&mut e, 4, 20_000);
        // Four users: never a spray; each user's brute force fires every
        // 10 of their failures; the IP's window holds the newest 50.
        assert!(f.iter().all(|f| f.rule == "brute_force"));
        assert_eq!(f.len(), 20_000 / 10);
        let ip = e.ips.get(&"203.0.113.9".to_string()).unwrap();
        assert_eq!(ip.failures.len(), 50);
        assert_eq!(ip.users.values().map(|n| n.1 as usize).sum::<usize>(), 50);
        assert_eq!(e.stats().evicted_window_events, 20_000 - 50);
        // A fifth user: the spray fires with at most the window as evidence.
        let f = e.observe(
            20_000,
            &auth(
                "u9",
                2,
                20_000,
                json!({"src_endpoint": {"ip": "203.0.113.9"}}),
            ),
        );
        assert_eq!(f[0].rule, "password_spray");
        assert_eq!(f[0].evidence.len(), 50);
        assert_eq!(e.stats().ips, 0, "its emptied window is dropped");
    }

    #[test]
    fn a_burst_from_one_ip_over_many_users_evicts_the_least_recent_users() {
        let rules = Rules {
            max_users: 100,
            ..Rules::default()
        };
        let mut e = Engine::new(rules);
        let f = spray_burst(&mut e, 20_000, 20_000);
        assert_eq!(f.len(), 20_000 / 5, "a spray per five users");
        assert!(f
            .iter()
            .all(|f| f.rule == "password_spray" && f.evidence.len() == 5));
        let s = e.stats();
        assert_eq!(s.users, 100);
        assert_eq!(s.evicted_users, 20_000 - 100);
        // The newest users are the ones kept, with their attack.
        assert!(e
            .users
            .get(&Identity::Uid("u19999".into()))
            .unwrap()
            .attack
            .is_some());
        assert!(e.users.get(&Identity::Uid("u0".into())).is_none());
        // IPs likewise.
        let mut e = Engine::new(Rules {
            max_ips: 10,
            ..Rules::default()
        });
        for i in 0..1000u64 {
            let ip = json!({"src_endpoint": {"ip": format!("10.0.{}.{}", i / 256, i % 256)}});
            e.observe(i, &auth("amy", 2, i, ip));
        }
        assert_eq!((e.stats().ips, e.stats().evicted_ips), (10, 990));
    }

    #[test]
    fn idle_users_and_ips_are_dropped_as_time_moves_on() {
        let mut e = at_t0(Rules::default());
        let ip = json!({"src_endpoint": {"ip": "203.0.113.9"}});
        // 48 users: the spray fires at each fifth, three stay in the window.
        for i in 0..48 {
            e.observe(i, &auth(&format!("u{i}"), 2, T0 - 20 * DAY, ip.clone()));
        }
        assert_eq!((e.stats().users, e.stats().ips), (48, 1));
        e.observe(50, &auth("now", 1, T0, json!({})));
        assert_eq!((e.stats().users, e.stats().ips), (1, 0));
        assert_eq!(e.stats().evicted_users, 0, "expiry is not eviction");
    }

    #[test]
    fn devices_and_findings_per_user_are_capped() {
        let rules = Rules {
            max_devices_per_user: 8,
            max_findings_per_user: 5,
            ..Rules::default()
        };
        let mut e = Engine::new(rules);
        // A critical finding first (mfa fatigue), then a flood of new
        // devices: each a Medium finding.
        let push = json!({"auth_factors": [{"factor_type_id": 5}]});
        for i in 0..5 {
            e.observe(i, &auth("lee", 2, i, push.clone()));
        }
        assert_eq!(
            e.observe(5, &auth("lee", 1, 5, push.clone()))[0].rule,
            "mfa_fatigue"
        );
        let mut fired = 0;
        for i in 0..1000u64 {
            let dev = json!({"device": {"uid": format!("d{i}")}});
            fired += e.observe(10 + i, &auth("lee", 1, 10 + i, dev)).len();
        }
        assert_eq!(fired, 999, "every device after the first is new");
        let u = e.users.get(&Identity::Uid("lee".into())).unwrap();
        assert_eq!(u.devices.last.len(), 8);
        assert_eq!(u.devices.by_time.len(), 8);
        let s = e.stats();
        assert_eq!(s.evicted_devices, 1000 - 8);
        assert_eq!(s.evicted_findings, 1 + 999 - 5);
        // The critical finding outlived the minor ones.
        let r = e.risk("lee");
        assert_eq!(r.risk_level_id, 4);
        assert_eq!(r.reasons.len() + r.reasons_omitted, 5);
        // A device evicted for room is new again; a kept one is not.
        assert!(e
            .observe(
                2000,
                &auth("lee", 1, 2000, json!({"device": {"uid": "d999"}}))
            )
            .is_empty());
        assert_eq!(
            e.observe(
                2001,
                &auth("lee", 1, 2001, json!({"device": {"uid": "d0"}}))
            )[0]
            .rule,
            "new_device"
        );
    }

    #[test]
    fn a_risk_answer_lists_at_most_max_reasons_newest_first() {
        let mut e = Engine::default();
        for i in 0..300u64 {
            e.observe(i, &auth("max", 2, i * 10, json!({})));
        }
        let r = e.risk("max");
        assert_eq!(
            (r.reasons.len(), r.reasons_omitted),
            (MAX_REASONS, 30 - MAX_REASONS)
        );
        assert_eq!(r.reasons[0]["time"], 2990);
        assert_eq!(r.reasons[0]["user"], json!({"uid": "max"}));
        // Evidence beyond MAX_REASON_EVIDENCE is counted, not listed.
        let mut e = Engine::new(Rules {
            brute_force_failures: 150,
            ..Rules::default()
        });
        for i in 0..150u64 {
            e.observe(i, &auth("max", 2, i, json!({})));
        }
        let r = e.risk("max");
        assert_eq!(
            r.reasons[0]["evidence"].as_array().unwrap().len(),
            MAX_REASON_EVIDENCE
        );
        assert_eq!(r.reasons[0]["evidence_omitted"], 150 - MAX_REASON_EVIDENCE);
    }
}
