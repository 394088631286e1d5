//! `new_device`: a successful logon (Authentication 3002, Logon, status 1)
//! of a user from a device the user has not logged on from within
//! `new_device_window_ms` (14 days), when the user has logged on from
//! another device within it (a user with no recent history has nothing to
//! compare with: the first device is not new). The device is the event's
//! `device.uid`, else its `device.hostname`, else its
//! `http_request.user_agent`. Medium (2), score 30.

use std::collections::{BTreeSet, HashMap};

use super::{window_start, Event, Finding, Rules};
use crate::events::signals::Signals;

/// The rule's name, in its findings.
pub(crate) const RULE: &str = "new_device";
/// OCSF risk level: Medium.
const LEVEL: i64 = 2;
/// What a finding adds to the user's risk score.
const SCORE: i64 = 30;

/// A user's devices (keyed by a hash of the device's text) and when each
/// was last used, also ordered by that time: expiry and eviction take the
/// oldest in O(log n), n ≤ `max_devices_per_user`.
#[derive(Default)]
pub(crate) struct Devices {
    /// Each device's last logon.
    pub(crate) last: HashMap<u64, u64>,
    /// The same, as (time, device), oldest first.
    pub(crate) by_time: BTreeSet<(u64, u64)>,
}

impl Devices {
    /// Records a logon from `device` at `time`; whether the device is new
    /// for a user with recent history. Devices not used within `window`
    /// before `time` are forgotten first; beyond `cap`, the least recently
    /// used is evicted (counted in `evicted`).
    fn logon(
        &mut self,
        device: u64,
        time: u64,
        window: u64,
        cap: usize,
        evicted: &mut u64,
    ) -> bool {
        let since = window_start(time, window);
        while let Some(&(t, d)) = self.by_time.first() {
            if t >= since {
                break;
            }
            self.by_time.pop_first();
            self.last.remove(&d);
        }
        let history = !self.last.is_empty();
        match self.last.get(&device).copied() {
            Some(t0) => {
                if time > t0 {
                    self.by_time.remove(&(t0, device));
                    self.by_time.insert((time, device));
                    self.last.insert(device, time);
                }
                false
            }
            None => {
                self.last.insert(device, time);
                self.by_time.insert((time, device));
                while self.last.len() > cap {
                    let (_, d) = self.by_time.pop_first().expect("as many as last");
                    self.last.remove(&d);
                    *evicted += 1;
                }
                history
            }
        }
    }
}

/// The text naming an event's device: `device.uid`, else
/// `device.hostname`, else `http_request.user_agent`.
pub(crate) fn device(v: &Signals) -> Option<&str> {
    (v.device.uid.as_deref())
        .or(v.device.hostname.as_deref())
        .or(v.http_request.user_agent.as_deref())
}

/// A successful logon of `ev.user` from the device keyed `device`, the
/// user's devices being `devices`: the finding when the device is new,
/// with this logon as evidence. Devices evicted past the cap are counted
/// in `evicted`.
pub(crate) fn logon(
    devices: &mut Devices,
    device: u64,
    ev: &Event,
    r: &Rules,
    evicted: &mut u64,
) -> Option<Finding> {
    let new = devices.logon(
        device,
        ev.time,
        r.new_device_window_ms,
        r.max_devices_per_user,
        evicted,
    );
    new.then(|| ev.finding(RULE, vec![ev.index], LEVEL, SCORE))
}

#[cfg(test)]
mod tests {
    use crate::detect::engine::testing::{auth, run};
    use crate::detect::engine::Engine;
    use crate::detect::rules::{Rules, DAY, HOUR};
    use serde_json::{json, Value};

    const T: u64 = 1_000_000_000;

    fn dev(d: &str) -> Value {
        json!({"device": {"uid": d}})
    }

    #[test]
    fn new_device_needs_history_and_a_device_unseen_for_14_days() {
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

    /// The laptop at `T`, the phone a day later (new), then the laptop
    /// again `gap` ms after its last use: what fires.
    fn laptop_again(rules: Rules, gap: u64) -> Vec<(u64, &'static str)> {
        let phone = (gap / 2).min(DAY);
        run(
            &mut Engine::new(rules),
            &[
                auth("gus", 1, T, dev("laptop")),
                auth("gus", 1, T + phone, dev("phone")),
                auth("gus", 1, T + gap, dev("laptop")),
            ],
        )
    }

    #[test]
    fn a_device_used_exactly_14_days_ago_is_known_and_one_ms_earlier_is_new() {
        let phone_only = vec![(1, "new_device")];
        let both = vec![(1, "new_device"), (2, "new_device")];
        for (gap, expect) in [
            (14 * DAY - 1, &phone_only),
            (14 * DAY, &phone_only),
            (14 * DAY + 1, &both),
        ] {
            assert_eq!(&laptop_again(Rules::default(), gap), expect, "gap {gap} ms");
        }
        let rules = Rules {
            new_device_window_ms: 100,
            ..Rules::default()
        };
        for (gap, expect) in [(99, &phone_only), (100, &phone_only), (101, &both)] {
            assert_eq!(&laptop_again(rules, gap), expect, "gap {gap} ms");
        }
    }

    #[test]
    fn with_no_device_in_the_last_14_days_the_user_has_no_history_and_nothing_is_new() {
        // The laptop at T, the phone `gap` ms later: new while the laptop
        // is history, not once it is forgotten.
        for (gap, fires) in [
            (14 * DAY - 1, true),
            (14 * DAY, true),
            (14 * DAY + 1, false),
        ] {
            let f = run(
                &mut Engine::default(),
                &[
                    auth("gus", 1, T, dev("laptop")),
                    auth("gus", 1, T + gap, dev("phone")),
                ],
            );
            assert_eq!(f.len(), usize::from(fires), "gap {gap} ms: {f:?}");
        }
        // Logons with no device, and failures from a device, are no history.
        let f = run(
            &mut Engine::default(),
            &[
                auth("gus", 1, T, json!({})),
                auth("gus", 2, T + 1, dev("laptop")),
                auth("gus", 1, T + 2, dev("phone")),
                auth("gus", 1, T + 3, dev("laptop")),
            ],
        );
        assert_eq!(f, vec![(3, "new_device")], "only the phone was history");
    }

    #[test]
    fn a_device_is_its_uid_else_its_hostname_else_the_user_agent() {
        let uid = json!({"device": {"uid": "d-1", "hostname": "laptop"}, "http_request": {"user_agent": "curl"}});
        let host =
            json!({"device": {"hostname": "laptop"}, "http_request": {"user_agent": "curl"}});
        let agent = json!({"http_request": {"user_agent": "curl"}});
        for (first, second, new) in [
            (&uid, &uid, false),
            (&uid, &host, true),
            (&host, &host, false),
            (&host, &agent, true),
            (&agent, &agent, false),
            (&agent, &json!({"device": {"uid": "curl"}}), false),
        ] {
            let f = run(
                &mut Engine::default(),
                &[
                    auth("gus", 1, T, first.clone()),
                    auth("gus", 1, T + 1, second.clone()),
                ],
            );
            assert_eq!(f.len(), usize::from(new), "{first} then {second}: {f:?}");
        }
    }
}
