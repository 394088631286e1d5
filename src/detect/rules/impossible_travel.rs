//! `impossible_travel`: a successful Authentication (3002, status 1) of a
//! user whose `src_endpoint.location` is more than 1 km from that of the
//! user's last successful logon, at a speed above `travel_kmh` (800 km/h)
//! — or at the same time. Both events need a location. High (3), score 65.

use super::{Event, Finding, Rules, HOUR};
use crate::events::signals::Signals;

/// The rule's name, in its findings.
pub(crate) const RULE: &str = "impossible_travel";
/// OCSF risk level: High.
const LEVEL: i64 = 3;
/// What a finding adds to the user's risk score.
const SCORE: i64 = 65;

/// A user's last successful logon.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LastLogon {
    /// Its time.
    pub(crate) time: u64,
    /// Its index in the log.
    pub(crate) index: u64,
    /// Where it came from: (lat, long), if the event said.
    pub(crate) at: Option<(f64, f64)>,
}

/// An event's `src_endpoint.location`: (lat, long), when it has both.
pub(crate) fn location(v: &Signals) -> Option<(f64, f64)> {
    let at = &v.src_endpoint.location;
    at.lat.zip(at.long)
}

/// The great-circle distance in km between two (lat, long) in degrees
/// (haversine, on a sphere of the Earth's mean radius).
pub(crate) fn haversine_km(a: (f64, f64), b: (f64, f64)) -> f64 {
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

/// A successful Authentication of `ev.user` from `at`, the user's last
/// successful logon being `last`: the finding when getting from there to
/// here is impossible, with both events as evidence.
pub(crate) fn succeeded(
    last: Option<&LastLogon>,
    at: Option<(f64, f64)>,
    ev: &Event,
    r: &Rules,
) -> Option<Finding> {
    let (Some(last), Some(here)) = (last, at) else {
        return None;
    };
    let there = last.at?;
    let hours = (ev.time.saturating_sub(last.time)) as f64 / HOUR as f64;
    let km = haversine_km(there, here);
    if km > 1.0 && (hours == 0.0 || km / hours > r.travel_kmh) {
        return Some(ev.finding(RULE, vec![last.index, ev.index], LEVEL, SCORE));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::haversine_km;
    use crate::detect::engine::testing::{auth, run};
    use crate::detect::engine::Engine;
    use crate::detect::rules::{Rules, HOUR};
    use serde_json::{json, Value};

    const T: u64 = 1_000_000_000;

    fn at(lat: f64, long: f64) -> Value {
        json!({"src_endpoint": {"location": {"lat": lat, "long": long}}})
    }

    #[test]
    fn impossible_travel_compares_consecutive_successes() {
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

    /// A logon at (0, 0), then one at (0, 10) `ms` later: what fires.
    fn trip(rules: Rules, ms: u64) -> Vec<(u64, &'static str)> {
        run(
            &mut Engine::new(rules),
            &[
                auth("dan", 1, T, at(0.0, 0.0)),
                auth("dan", 1, T + ms, at(0.0, 10.0)),
            ],
        )
    }

    #[test]
    fn just_above_800_kmh_fires_and_just_below_does_not() {
        let km = haversine_km((0.0, 0.0), (0.0, 10.0));
        assert!((km - 1112.0).abs() < 1.0, "{km}");
        // The trip at exactly 800 km/h takes this many ms; not a whole
        // number, so a ms less is above 800 km/h and a ms more below.
        let exact = km / 800.0 * HOUR as f64;
        assert!(exact.fract() > 0.0, "{exact}");
        let (fast, slow) = (exact.floor() as u64, exact.ceil() as u64);
        assert!(km / (fast as f64 / HOUR as f64) > 800.0);
        assert!(km / (slow as f64 / HOUR as f64) < 800.0);
        assert_eq!(trip(Rules::default(), fast), vec![(1, "impossible_travel")]);
        assert!(trip(Rules::default(), slow).is_empty());
    }

    #[test]
    fn exactly_the_speed_limit_is_possible() {
        // An hour apart: the speed is the distance. At a limit of exactly
        // that speed nothing fires; at the next float below it, the rule does.
        let km = haversine_km((0.0, 0.0), (0.0, 10.0));
        let at_limit = Rules {
            travel_kmh: km,
            ..Rules::default()
        };
        assert!(trip(at_limit, HOUR).is_empty());
        let below = Rules {
            travel_kmh: f64::from_bits(km.to_bits() - 1),
            ..Rules::default()
        };
        assert_eq!(trip(below, HOUR), vec![(1, "impossible_travel")]);
    }

    #[test]
    fn two_places_at_once_more_than_a_km_apart_fire_and_closer_ones_do_not() {
        // At the same time any distance is too fast, but within 1 km it is
        // the same place (a location's precision).
        let near = haversine_km((0.0, 0.0), (0.0, 0.0089));
        let far = haversine_km((0.0, 0.0), (0.0, 0.0091));
        assert!(near < 1.0 && far > 1.0, "{near} {far}");
        for (long, fires) in [(0.0089, false), (0.0091, true)] {
            let f = run(
                &mut Engine::default(),
                &[
                    auth("dan", 1, T, at(0.0, 0.0)),
                    auth("dan", 1, T, at(0.0, long)),
                ],
            );
            assert_eq!(f.len(), usize::from(fires), "{long}: {f:?}");
        }
    }

    #[test]
    fn a_logon_without_a_location_or_a_failure_between_is_not_compared() {
        // A failure from far away is not a logon of the user.
        let f = run(
            &mut Engine::default(),
            &[
                auth("dan", 1, T, at(0.0, 0.0)),
                auth("dan", 2, T + 1, at(0.0, 90.0)),
                auth("dan", 1, T + HOUR, at(0.0, 5.0)),
            ],
        );
        assert!(f.is_empty(), "{f:?}");
        // A logon with no location breaks the chain: the next one has
        // nothing to be compared with.
        let f = run(
            &mut Engine::default(),
            &[
                auth("dan", 1, T, at(0.0, 0.0)),
                auth("dan", 1, T + 1, json!({})),
                auth("dan", 1, T + 2, at(0.0, 90.0)),
            ],
        );
        assert!(f.is_empty(), "{f:?}");
    }
}
