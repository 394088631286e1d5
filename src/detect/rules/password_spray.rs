//! `password_spray`: the `spray_users`-th (5) distinct user with a failed
//! logon from one source IP (`src_endpoint.ip`) within `spray_window_ms`
//! (60 min). Its subject is the IP: it raises no user's risk, and is a
//! credential attack on each of its users (for `privilege_after_attack`).
//! High (3), score 60.

use std::collections::{HashMap, VecDeque};

use super::{finding, window_start, Event, Finding, Identity, Rules};

/// The rule's name, in its findings.
pub(crate) const RULE: &str = "password_spray";
/// OCSF risk level: High.
const LEVEL: i64 = 3;
/// The finding's risk score.
const SCORE: i64 = 60;

/// A source IP's failed logons in the spray window: (time, user, index),
/// the user as a keyed hash (24 bytes an entry, whatever the uid's
/// length); and each user in the window with how many entries it has, so
/// the distinct users are counted in O(1). Fewer than `spray_users` users
/// are ever in the window: at that many the rule fires and empties it.
#[derive(Default)]
pub(crate) struct Ip {
    /// The failures in the window, oldest first: (time, user's hash, index).
    pub(crate) failures: VecDeque<(u64, u64, u64)>,
    /// The users in the window by hash: who, and how many failures.
    pub(crate) users: HashMap<u64, (Identity, u32)>,
}

impl Ip {
    /// Drops the oldest failure, and its user when it was that user's last.
    fn pop_front(&mut self) {
        if let Some((_, user, _)) = self.failures.pop_front() {
            if let Some(n) = self.users.get_mut(&user) {
                n.1 -= 1;
                if n.1 == 0 {
                    self.users.remove(&user);
                }
            }
        }
    }

    /// The time of its newest failure (none when its window is empty).
    pub(crate) fn last_failure(&self) -> Option<u64> {
        self.failures.back().map(|f| f.0)
    }
}

/// A failed logon of `ev.user` (keyed as `user_key`) from `ip`, whose
/// window is `q`: at the threshold, the finding on the IP, with the
/// window's failures as evidence, and the users in it (each now under a
/// credential attack); the window starts over. Failures evicted past the
/// cap are counted in `evicted`.
pub(crate) fn failed_logon(
    q: &mut Ip,
    user_key: u64,
    ev: &Event,
    ip: &str,
    r: &Rules,
    evicted: &mut u64,
) -> Option<(Finding, Vec<Identity>)> {
    let from = window_start(ev.time, r.spray_window_ms);
    while q.failures.front().is_some_and(|f| f.0 < from) {
        q.pop_front();
    }
    q.failures.push_back((ev.time, user_key, ev.index));
    (q.users.entry(user_key))
        .or_insert_with(|| (ev.user.clone(), 0))
        .1 += 1;
    while q.failures.len() > r.max_window_events {
        q.pop_front();
        *evicted += 1;
    }
    if q.users.len() < r.spray_users {
        return None;
    }
    let evidence: Vec<u64> = q.failures.drain(..).map(|(_, _, i)| i).collect();
    let victims: Vec<Identity> = q.users.drain().map(|(_, (u, _))| u).collect();
    let mut f = finding(RULE, None, evidence, LEVEL, SCORE, ev.time);
    f.subject = ip.to_string();
    Some((f, victims))
}

#[cfg(test)]
mod tests {
    use crate::detect::engine::testing::{auth, run};
    use crate::detect::engine::Engine;
    use crate::detect::rules::{Rules, MIN};
    use serde_json::{json, Value};

    const T: u64 = 1_000_000_000;

    fn from_ip(user: &str, time: u64) -> Value {
        auth(
            user,
            2,
            time,
            json!({"src_endpoint": {"ip": "198.51.100.9"}}),
        )
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

    /// Failures of `users` distinct users from one IP: the first at `T`,
    /// the others `gap` ms later.
    fn spray(users: usize, gap: u64) -> Vec<Value> {
        (0..users)
            .map(|i| from_ip(&format!("u{i}"), if i == 0 { T } else { T + gap }))
            .collect()
    }

    #[test]
    fn password_spray_fires_at_exactly_the_distinct_user_threshold_and_not_one_below() {
        assert!(run(&mut Engine::default(), &spray(4, MIN)).is_empty());
        assert_eq!(
            run(&mut Engine::default(), &spray(5, MIN)),
            vec![(4, "password_spray")]
        );
        // Four users failing many times each are still four.
        let mut evs = Vec::new();
        for round in 0..3 {
            for u in 0..4 {
                evs.push(from_ip(&format!("u{u}"), T + round));
            }
        }
        assert!(run(&mut Engine::default(), &evs).is_empty());
        // A threshold of 2.
        let rules = Rules {
            spray_users: 2,
            ..Rules::default()
        };
        assert!(run(&mut Engine::new(rules), &spray(1, MIN)).is_empty());
        assert_eq!(
            run(&mut Engine::new(rules), &spray(2, MIN)),
            vec![(1, "password_spray")]
        );
    }

    #[test]
    fn a_user_failing_exactly_sixty_minutes_before_the_fifth_counts_and_one_ms_more_does_not() {
        for (gap, fires) in [
            (60 * MIN - 1, true),
            (60 * MIN, true),
            (60 * MIN + 1, false),
        ] {
            let f = run(&mut Engine::default(), &spray(5, gap));
            assert_eq!(f.len(), usize::from(fires), "gap {gap} ms: {f:?}");
        }
        // A window of 100 ms and a threshold of 2: the same bound.
        let rules = Rules {
            spray_users: 2,
            spray_window_ms: 100,
            ..Rules::default()
        };
        for (gap, fires) in [(99, true), (100, true), (101, false)] {
            let f = run(&mut Engine::new(rules), &spray(2, gap));
            assert_eq!(f.len(), usize::from(fires), "gap {gap} ms: {f:?}");
        }
    }

    #[test]
    fn users_failing_from_another_ip_or_with_no_ip_are_not_counted() {
        let rules = Rules {
            spray_users: 2,
            ..Rules::default()
        };
        let other = auth("u1", 2, T, json!({"src_endpoint": {"ip": "198.51.100.10"}}));
        let none = auth("u1", 2, T, json!({}));
        for second in [other, none] {
            let f = run(&mut Engine::new(rules), &[from_ip("u0", T), second]);
            assert!(f.is_empty(), "{f:?}");
        }
    }
}
