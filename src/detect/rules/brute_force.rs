//! `brute_force`: the `brute_force_failures`-th (10) failed logon of one
//! user within `brute_force_window_ms` (10 min). A failed logon is an
//! Authentication (3002) Logon (activity 1) with status Failure (2) and no
//! push factor (a denied push is `mfa_fatigue`'s). High (3), score 70; a
//! credential attack on the user (for `privilege_after_attack`).

use super::{window_start, Event, Finding, Rules, Window};

/// The rule's name, in its findings.
pub(crate) const RULE: &str = "brute_force";
/// OCSF risk level: High.
const LEVEL: i64 = 3;
/// What a finding adds to the user's risk score.
const SCORE: i64 = 70;

/// A failed logon of `ev.user`, whose window of failures is `failures`:
/// at the threshold, the finding, with the window's failures as evidence,
/// and the window starts over. Window events evicted past the cap are
/// counted in `evicted`.
pub(crate) fn failed_logon(
    failures: &mut Window,
    ev: &Event,
    r: &Rules,
    evicted: &mut u64,
) -> Option<Finding> {
    failures.trim(window_start(ev.time, r.brute_force_window_ms));
    failures.push(ev.time, ev.index, r.max_window_events, evicted);
    if failures.len() < r.brute_force_failures {
        return None;
    }
    Some(ev.finding(RULE, failures.drain(), LEVEL, SCORE))
}

#[cfg(test)]
mod tests {
    use crate::detect::engine::testing::{auth, run};
    use crate::detect::engine::Engine;
    use crate::detect::rules::{Rules, MIN};
    use serde_json::{json, Value};

    /// A time well clear of 0, so that no window is cut short by it.
    const T: u64 = 1_000_000_000;

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

    /// `n` failures of one user: the first at `T`, the others `gap` ms
    /// later.
    fn failures(n: u64, gap: u64) -> Vec<Value> {
        (0..n)
            .map(|i| auth("alice", 2, if i == 0 { T } else { T + gap }, json!({})))
            .collect()
    }

    #[test]
    fn brute_force_fires_at_exactly_the_threshold_and_not_one_below() {
        // The defaults: 9 failures are nothing, the 10th fires.
        let f = run(&mut Engine::default(), &failures(9, MIN));
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(
            run(&mut Engine::default(), &failures(10, MIN)),
            vec![(9, "brute_force")]
        );
        // A threshold of 3.
        let rules = Rules {
            brute_force_failures: 3,
            ..Rules::default()
        };
        assert!(run(&mut Engine::new(rules), &failures(2, MIN)).is_empty());
        assert_eq!(
            run(&mut Engine::new(rules), &failures(3, MIN)),
            vec![(2, "brute_force")]
        );
    }

    #[test]
    fn a_failure_exactly_ten_minutes_before_the_tenth_counts_and_one_ms_more_does_not() {
        // The window includes its start: the first failure at exactly
        // 10 min before the 10th is in it.
        for (gap, fires) in [
            (10 * MIN - 1, true),
            (10 * MIN, true),
            (10 * MIN + 1, false),
        ] {
            let f = run(&mut Engine::default(), &failures(10, gap));
            assert_eq!(f.len(), usize::from(fires), "gap {gap} ms: {f:?}");
        }
        // A window of 100 ms and a threshold of 2: the same bound.
        let rules = Rules {
            brute_force_failures: 2,
            brute_force_window_ms: 100,
            ..Rules::default()
        };
        for (gap, fires) in [(99, true), (100, true), (101, false)] {
            let f = run(&mut Engine::new(rules), &failures(2, gap));
            assert_eq!(f.len(), usize::from(fires), "gap {gap} ms: {f:?}");
        }
    }

    #[test]
    fn brute_force_fires_once_and_its_window_starts_over() {
        let rules = Rules {
            brute_force_failures: 3,
            ..Rules::default()
        };
        let mut e = Engine::new(rules);
        let evs: Vec<Value> = (0..7).map(|i| auth("alice", 2, T + i, json!({}))).collect();
        assert_eq!(
            run(&mut e, &evs),
            vec![(2, "brute_force"), (5, "brute_force")]
        );
        assert!(e.observe(7, &auth("alice", 2, T + 7, json!({}))).is_empty());
        let f = e.observe(8, &auth("alice", 2, T + 8, json!({})));
        assert_eq!(
            f[0].evidence,
            vec![6, 7, 8],
            "only the failures since it fired"
        );
    }

    #[test]
    fn only_failed_logons_without_a_push_count() {
        let rules = Rules {
            brute_force_failures: 2,
            ..Rules::default()
        };
        let push = json!({"auth_factors": [{"factor_type_id": 5}]});
        let not_failures = [
            auth("alice", 1, T, json!({})),                  // a success
            auth("alice", 2, T, json!({"activity_id": 2})),  // a failed logoff
            auth("alice", 2, T, push),                       // a denied push
            auth("alice", 2, T, json!({"class_uid": 3005})), // not Authentication
        ];
        for v in &not_failures {
            let mut e = Engine::new(rules);
            let f = run(&mut e, &[v.clone(), auth("alice", 2, T, json!({}))]);
            assert!(f.is_empty(), "{v}: {f:?}");
        }
    }
}
