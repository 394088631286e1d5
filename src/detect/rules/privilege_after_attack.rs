//! `privilege_after_attack`: privileges or an admin group granted to a
//! user within `privilege_window_ms` (3 h) after a credential attack on
//! that user (a `brute_force`, `password_spray` or `mfa_fatigue` finding).
//! A grant is a User Access Management (3005) Assign Privileges
//! (activity 1), or a Group Management (3006) Assign Privileges (1) or Add
//! User (3) to a group whose name contains "admin" (any case). Critical
//! (4), score 90.

use super::{window_start, Event, Finding, Rules};
use crate::events::signals::Signals;

/// The rule's name, in its findings.
pub(crate) const RULE: &str = "privilege_after_attack";
/// OCSF risk level: Critical.
const LEVEL: i64 = 4;
/// What a finding adds to the user's risk score.
const SCORE: i64 = 90;

/// The newest credential attack on a user.
#[derive(Clone, Debug)]
pub(crate) struct Attack {
    /// The time of the event that completed it.
    pub(crate) time: u64,
    /// The attack finding's evidence.
    pub(crate) evidence: Vec<u64>,
}

impl Attack {
    /// The attack a credential-attack finding records.
    pub(crate) fn of(f: &Finding) -> Attack {
        Attack {
            time: f.time,
            evidence: f.evidence.clone(),
        }
    }
}

/// Whether an event grants privileges or an admin group (of a User Access
/// or Group Management class; any other class is not a grant).
pub(crate) fn is_grant(v: &Signals) -> bool {
    let activity = v.activity_id;
    match v.class_uid {
        3005 => activity == Some(1),
        3006 => {
            activity == Some(1)
                || (activity == Some(3)
                    && (v.group.name.as_deref())
                        .is_some_and(|g| g.to_lowercase().contains("admin")))
        }
        _ => false,
    }
}

/// A grant to `ev.user`, the newest attack on whom is `attack`: the
/// finding when that attack is within the window before it, with the
/// attack's evidence and the grant as evidence.
pub(crate) fn granted(attack: Option<&Attack>, ev: &Event, r: &Rules) -> Option<Finding> {
    let a = attack?;
    if a.time < window_start(ev.time, r.privilege_window_ms) {
        return None;
    }
    let mut evidence = a.evidence.clone();
    evidence.push(ev.index);
    Some(ev.finding(RULE, evidence, LEVEL, SCORE))
}

#[cfg(test)]
mod tests {
    use crate::detect::engine::testing::{auth, run};
    use crate::detect::engine::Engine;
    use crate::detect::rules::{Rules, HOUR};
    use serde_json::{json, Value};

    const T: u64 = 1_000_000_000;

    fn grant(user: &str, time: u64) -> Value {
        json!({"class_uid": 3005, "activity_id": 1, "time": time, "user": {"uid": user}, "privileges": ["admin"]})
    }

    #[test]
    fn privilege_grant_after_a_credential_attack_fires_within_three_hours() {
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

    /// A brute force on erin completed at `T`, then a grant `gap` ms later:
    /// what fires after the attack.
    fn after_attack(rules: Rules, gap: u64) -> Vec<(u64, &'static str)> {
        let mut evs: Vec<Value> = (0..rules.brute_force_failures as u64)
            .map(|i| auth("erin", 2, T - i, json!({})))
            .rev()
            .collect();
        evs.push(grant("erin", T + gap));
        let f = run(&mut Engine::new(rules), &evs);
        assert_eq!(f[0].1, "brute_force", "{f:?}");
        f[1..].to_vec()
    }

    #[test]
    fn a_grant_exactly_three_hours_after_the_attack_fires_and_one_ms_later_does_not() {
        for (gap, fires) in [
            (3 * HOUR - 1, true),
            (3 * HOUR, true),
            (3 * HOUR + 1, false),
        ] {
            let f = after_attack(Rules::default(), gap);
            assert_eq!(f.len(), usize::from(fires), "gap {gap} ms: {f:?}");
        }
        let rules = Rules {
            brute_force_failures: 1,
            privilege_window_ms: 100,
            ..Rules::default()
        };
        for (gap, fires) in [(0, true), (100, true), (101, false)] {
            let f = after_attack(rules, gap);
            assert_eq!(f.len(), usize::from(fires), "gap {gap} ms: {f:?}");
        }
    }

    #[test]
    fn each_credential_attack_counts_and_its_evidence_leads_the_finding() {
        let rules = Rules {
            brute_force_failures: 2,
            spray_users: 2,
            mfa_denials: 1,
            ..Rules::default()
        };
        let push = json!({"auth_factors": [{"factor_type_id": 5}]});
        let ip = json!({"src_endpoint": {"ip": "198.51.100.9"}});
        let attacks: [(&str, Vec<Value>); 3] = [
            (
                "brute_force",
                vec![auth("erin", 2, T, json!({})), auth("erin", 2, T, json!({}))],
            ),
            (
                "mfa_fatigue",
                vec![auth("erin", 2, T, push.clone()), auth("erin", 1, T, push)],
            ),
            (
                "password_spray",
                vec![auth("erin", 2, T, ip.clone()), auth("finn", 2, T, ip)],
            ),
        ];
        for (rule, mut evs) in attacks {
            evs.push(grant("erin", T + HOUR));
            let mut e = Engine::new(rules);
            let fired: Vec<_> = (evs.iter().enumerate())
                .flat_map(|(i, v)| e.observe(i as u64, v))
                .collect();
            assert_eq!(fired.len(), 2, "{rule}: {fired:?}");
            assert_eq!(
                (fired[0].rule, fired[1].rule),
                (rule, "privilege_after_attack")
            );
            assert_eq!(fired[1].evidence, vec![0, 1, 2], "{rule}");
        }
    }

    #[test]
    fn only_grants_of_privileges_or_an_admin_group_count() {
        let rules = Rules {
            brute_force_failures: 1,
            ..Rules::default()
        };
        let group = |activity: i64, name: &str| json!({"class_uid": 3006, "activity_id": activity, "time": T + 1, "user": {"uid": "erin"}, "group": {"name": name}});
        let mut other_class = grant("erin", T + 1);
        other_class["class_uid"] = json!(3001);
        let mut revoke = grant("erin", T + 1);
        revoke["activity_id"] = json!(2);
        for (what, v, fires) in [
            ("assign privileges", grant("erin", T + 1), true),
            ("group: assign privileges", group(1, "staff"), true),
            (
                "group: add user to an admin group",
                group(3, "Domain Admins"),
                true,
            ),
            ("group: add user to another group", group(3, "staff"), false),
            (
                "group: remove user from an admin group",
                group(4, "admins"),
                false,
            ),
            ("revoke privileges", revoke, false),
            ("another class", other_class, false),
        ] {
            let f = run(&mut Engine::new(rules), &[auth("erin", 2, T, json!({})), v]);
            assert_eq!(f.len(), 1 + usize::from(fires), "{what}: {f:?}");
        }
    }
}
