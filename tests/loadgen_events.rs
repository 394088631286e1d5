//! The load generator writes its OCSF events as text, without serde: check
//! that what it sends is what the benchmarks claim, valid OCSF 1.8 events of
//! 400-800 bytes with unique uids, a tenth of them Account Changes.

#[path = "../benches/events.rs"]
mod events;

use std::collections::HashSet;

#[test]
fn load_generator_events_are_valid_realistic_and_unique() {
    let run = 1_763_800_000_123_456_789;
    let body = events::request_body(run, 1000, 100);
    let batch: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("a JSON array");
    assert_eq!(batch.len(), 100);
    let mut uids = HashSet::new();
    let mut classes = [0; 2];
    for (i, event) in batch.into_iter().enumerate() {
        let n = 1000 + i as u64;
        let size = serde_json::to_vec(&event).unwrap().len();
        assert!((400..=800).contains(&size), "event {n}: {size} bytes");
        let committed = sealog::events::prepare(
            event,
            1_763_900_000_000,
            sealog::events::Appender::Token("test"),
        )
        .unwrap_or_else(|e| panic!("event {n} is not valid OCSF: {e:?}"));
        let f = &committed.facets;
        assert_eq!(f.uid, events::event_uid(run, n), "event {n}");
        assert!(f.users.contains(&format!("u-{:06}", n % 5000)), "{n}");
        assert_eq!(
            f.src_ip.as_deref(),
            Some(&*format!("10.{}.{}.{}", n % 7, n % 251, n % 253))
        );
        match f.class_uid {
            3001 => classes[0] += 1,
            3002 => classes[1] += 1,
            other => panic!("event {n}: class {other}"),
        }
        assert!(uids.insert(f.uid.clone()), "event {n}: uid repeats");
    }
    assert_eq!(classes, [10, 90]);
    // Another run never repeats this one's uids.
    assert!(!uids.contains(&events::event_uid(run + 1, 1000)));

    // A batch of one is the event itself, not an array.
    let single: serde_json::Value =
        serde_json::from_slice(&events::request_body(run, 7, 1)).unwrap();
    assert_eq!(single["metadata"]["uid"], events::event_uid(run, 7));
}
