//! `mfa_fatigue`: a successful push logon after at least `mfa_denials` (5)
//! denied push challenges of the user within `mfa_window_ms` (10 min)
//! before it. A denied push is an Authentication (3002) with status
//! Failure (2) and a Push Notification factor (factor_type_id 5); the
//! success, one with status Success (1) and a push factor. Critical (4),
//! score 85; a credential attack on the user (for
//! `privilege_after_attack`).

use super::{window_start, Event, Finding, Rules, Window};

/// The rule's name, in its findings.
pub(crate) const RULE: &str = "mfa_fatigue";
/// OCSF risk level: Critical.
const LEVEL: i64 = 4;
/// What a finding adds to the user's risk score.
const SCORE: i64 = 85;

/// A denied push challenge of `ev.user`, added to the user's window of
/// them (`denials`). Denials evicted past the cap are counted in `evicted`.
pub(crate) fn denied(denials: &mut Window, ev: &Event, r: &Rules, evicted: &mut u64) {
    denials.trim(window_start(ev.time, r.mfa_window_ms));
    denials.push(ev.time, ev.index, r.max_window_events, evicted);
}

/// A successful Authentication of `ev.user` (`push`: with a push factor):
/// after the threshold of denials in the window, the finding, with the
/// denials and this success as evidence, and the window starts over.
pub(crate) fn succeeded(
    denials: &mut Window,
    push: bool,
    ev: &Event,
    r: &Rules,
) -> Option<Finding> {
    denials.trim(window_start(ev.time, r.mfa_window_ms));
    if !push || denials.len() < r.mfa_denials {
        return None;
    }
    let mut evidence = denials.drain();
    evidence.push(ev.index);
    Some(ev.finding(RULE, evidence, LEVEL, SCORE))
}

#[cfg(test)]
mod tests {
    use crate::detect::engine::testing::{auth, run};
    use crate::detect::engine::Engine;
    use crate::detect::rules::{Rules, MIN};
    use serde_json::{json, Value};

    const T: u64 = 1_000_000_000;

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

    fn push(status: i64, time: u64) -> Value {
        auth(
            "carol",
            status,
            time,
            json!({"auth_factors": [{"factor_type_id": 5}]}),
        )
    }

    /// `n` denied pushes, the first at `T`, the others a minute later, then
    /// a successful push at `T + gap`.
    fn fatigue(n: u64, gap: u64) -> Vec<Value> {
        let mut evs: Vec<Value> = (0..n)
            .map(|i| push(2, if i == 0 { T } else { T + MIN }))
            .collect();
        evs.push(push(1, T + gap));
        evs
    }

    #[test]
    fn mfa_fatigue_fires_at_exactly_the_denied_push_threshold_and_not_one_below() {
        assert!(run(&mut Engine::default(), &fatigue(4, 2 * MIN)).is_empty());
        assert_eq!(
            run(&mut Engine::default(), &fatigue(5, 2 * MIN)),
            vec![(5, "mfa_fatigue")]
        );
        let rules = Rules {
            mfa_denials: 2,
            ..Rules::default()
        };
        assert!(run(&mut Engine::new(rules), &fatigue(1, 2 * MIN)).is_empty());
        assert_eq!(
            run(&mut Engine::new(rules), &fatigue(2, 2 * MIN)),
            vec![(2, "mfa_fatigue")]
        );
    }

    #[test]
    fn a_denial_exactly_ten_minutes_before_the_success_counts_and_one_ms_more_does_not() {
        // The window is counted back from the success, its start included.
        for (gap, fires) in [
            (10 * MIN - 1, true),
            (10 * MIN, true),
            (10 * MIN + 1, false),
        ] {
            let f = run(&mut Engine::default(), &fatigue(5, gap));
            assert_eq!(f.len(), usize::from(fires), "gap {gap} ms: {f:?}");
        }
        let rules = Rules {
            mfa_denials: 1,
            mfa_window_ms: 100,
            ..Rules::default()
        };
        for (gap, fires) in [(99, true), (100, true), (101, false)] {
            let f = run(&mut Engine::new(rules), &fatigue(1, gap));
            assert_eq!(f.len(), usize::from(fires), "gap {gap} ms: {f:?}");
        }
    }

    #[test]
    fn only_a_push_success_after_push_denials_is_fatigue() {
        let rules = Rules {
            mfa_denials: 1,
            ..Rules::default()
        };
        // A denial without a push factor is a failed logon, not a denied push.
        let f = run(
            &mut Engine::new(rules),
            &[auth("carol", 2, T, json!({})), push(1, T + 1)],
        );
        assert!(f.is_empty(), "{f:?}");
        // A success without a push neither fires nor uses the denials up.
        let mut e = Engine::new(rules);
        let f = run(&mut e, &[push(2, T), auth("carol", 1, T + 1, json!({}))]);
        assert!(f.is_empty(), "{f:?}");
        assert_eq!(e.observe(2, &push(1, T + 2))[0].evidence, vec![0, 2]);
    }
}
