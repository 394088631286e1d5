//! OCSF validation, table-driven: valid and invalid events for every class
//! validated in depth, base validation for the others, and what the log
//! fills in.

use sealog::events::prepare;
use serde_json::{json, Value};

fn metadata() -> Value {
    json!({"version": "1.8.0", "product": {"name": "Example IdP", "vendor_name": "Example"}})
}

/// A minimal valid event of each deeply validated class.
fn valid(class: u32) -> Value {
    let base = |class_uid: u32, activity_id: u32, extra: Value| {
        let mut v = json!({
            "class_uid": class_uid, "activity_id": activity_id, "time": 1763800000000u64,
            "severity_id": 1, "metadata": metadata()
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    match class {
        3001 => base(
            3001,
            9,
            json!({"user": {"uid": "u-1", "name": "alice"}, "status_id": 1}),
        ),
        3002 => base(
            3002,
            1,
            json!({
                "user": {"uid": "u-1", "name": "alice"}, "status_id": 1, "auth_protocol_id": 2,
                "is_mfa": true, "auth_factors": [{"factor_type_id": 3}], "dst_endpoint": {"hostname": "sso.example.com"},
                "src_endpoint": {"ip": "203.0.113.7"}
            }),
        ),
        3003 => base(
            3003,
            1,
            json!({"user": {"uid": "u-1"}, "privileges": ["SeDebugPrivilege"]}),
        ),
        3004 => base(
            3004,
            3,
            json!({"entity": {"name": "mfa-policy", "type": "policy"}, "actor": {"user": {"name": "bob"}}}),
        ),
        3005 => base(
            3005,
            1,
            json!({"user": {"uid": "u-1"}, "privileges": ["admin"]}),
        ),
        3006 => base(
            3006,
            3,
            json!({"group": {"name": "admins"}, "user": {"uid": "u-1"}}),
        ),
        6003 => base(
            6003,
            2,
            json!({
                "actor": {"user": {"uid": "u-1"}}, "api": {"operation": "GetSecret"}, "src_endpoint": {"ip": "198.51.100.4"},
                "action_id": 2, "disposition_id": 2
            }),
        ),
        2004 => base(
            2004,
            1,
            json!({"finding_info": {"uid": "f-1", "title": "Brute force"}}),
        ),
        _ => unreachable!(),
    }
}

fn with(mut v: Value, path: &str, x: Value) -> Value {
    let mut cur = &mut v;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = match p.parse::<usize>() {
            Ok(i) => &mut cur[i],
            Err(_) => &mut cur[*p],
        };
    }
    let last = parts[parts.len() - 1];
    if x.is_null() {
        cur.as_object_mut().unwrap().remove(last);
    } else {
        cur[last] = x;
    }
    v
}

#[test]
fn valid_events_of_every_deep_class_pass() {
    for class in [3001, 3002, 3003, 3004, 3005, 3006, 6003, 2004] {
        let c = prepare(valid(class), 1, sealog::events::Appender::Token("test"))
            .unwrap_or_else(|e| panic!("{class}: {e}"));
        assert_eq!(c.facets.class_uid, class);
    }
    // Step-up and risk-based decisions: Challenge disposition, risk, policy.
    let stepup = with(valid(3002), "disposition_id", json!(23));
    let stepup = with(stepup, "action_id", json!(1));
    let stepup = with(stepup, "risk_level_id", json!(3));
    let stepup = with(stepup, "risk_score", json!(82));
    let stepup = with(
        stepup,
        "policy",
        json!({"name": "step-up for admin console", "uid": "p-7"}),
    );
    prepare(stepup, 1, sealog::events::Appender::Token("test")).unwrap();
    // Every Account Change activity the schema lists: lock, unlock, MFA
    // factor enable/disable, disable, delete...
    for a in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 99] {
        prepare(
            with(valid(3001), "activity_id", json!(a)),
            1,
            sealog::events::Appender::Token("test"),
        )
        .unwrap_or_else(|e| panic!("3001/{a}: {e}"));
    }
    for s in [0, 1, 2, 99] {
        prepare(
            with(valid(3002), "status_id", json!(s)),
            1,
            sealog::events::Appender::Token("test"),
        )
        .unwrap();
    }
    // Unknown fields are kept.
    let c = prepare(
        with(valid(3002), "x_vendor", json!({"k": [1, 2]})),
        1,
        sealog::events::Appender::Token("test"),
    )
    .unwrap();
    assert!(String::from_utf8(c.jcs)
        .unwrap()
        .contains("\"x_vendor\":{\"k\":[1,2]}"));
}

#[test]
fn invalid_events_name_the_field_and_rule() {
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "no class",
            with(valid(3002), "class_uid", Value::Null),
            "class_uid",
            "required",
        ),
        (
            "unknown class",
            with(valid(3002), "class_uid", json!(9999)),
            "class_uid",
            "not an OCSF",
        ),
        (
            "class as string",
            with(valid(3002), "class_uid", json!("3002")),
            "class_uid",
            "integer",
        ),
        (
            "no activity",
            with(valid(3002), "activity_id", Value::Null),
            "activity_id",
            "required",
        ),
        (
            "auth activity 42",
            with(valid(3002), "activity_id", json!(42)),
            "activity_id",
            "not one of",
        ),
        (
            "account change activity 13",
            with(valid(3001), "activity_id", json!(13)),
            "activity_id",
            "not one of",
        ),
        (
            "api activity 5",
            with(valid(6003), "activity_id", json!(5)),
            "activity_id",
            "not one of",
        ),
        (
            "wrong type_uid",
            with(valid(3002), "type_uid", json!(300202)),
            "type_uid",
            "300201",
        ),
        (
            "wrong category",
            with(valid(3002), "category_uid", json!(4)),
            "category_uid",
            "must be 3",
        ),
        (
            "no time",
            with(valid(3002), "time", Value::Null),
            "time",
            "required",
        ),
        (
            "time as string",
            with(valid(3002), "time", json!("2025-11-22")),
            "time",
            "integer",
        ),
        (
            "negative time",
            with(valid(3002), "time", json!(-5)),
            "time",
            "negative",
        ),
        (
            "no severity",
            with(valid(3002), "severity_id", Value::Null),
            "severity_id",
            "required",
        ),
        (
            "severity 7",
            with(valid(3002), "severity_id", json!(7)),
            "severity_id",
            "not one of",
        ),
        (
            "no metadata",
            with(valid(3002), "metadata", Value::Null),
            "metadata",
            "required",
        ),
        (
            "metadata not object",
            with(valid(3002), "metadata", json!("x")),
            "metadata",
            "required",
        ),
        (
            "no metadata.version",
            with(valid(3002), "metadata.version", Value::Null),
            "metadata.version",
            "required",
        ),
        (
            "no product name",
            with(valid(3002), "metadata.product.name", Value::Null),
            "metadata.product.name",
            "required",
        ),
        (
            "empty product name",
            with(valid(3002), "metadata.product.name", json!("")),
            "metadata.product.name",
            "required",
        ),
        (
            "auth without user",
            with(valid(3002), "user", Value::Null),
            "user",
            "required",
        ),
        (
            "user with no name or uid",
            with(valid(3002), "user", json!({"type_id": 1})),
            "user",
            "at least one",
        ),
        (
            "user not an object",
            with(valid(3002), "user", json!("alice")),
            "user",
            "object",
        ),
        (
            "factor type 42",
            with(
                valid(3002),
                "auth_factors",
                json!([{"factor_type_id": 3}, {"factor_type_id": 42}]),
            ),
            "auth_factors[1].factor_type_id",
            "not one of",
        ),
        (
            "factor without type",
            with(valid(3002), "auth_factors", json!([{"provider": "duo"}])),
            "auth_factors[0].factor_type_id",
            "required",
        ),
        (
            "factors not an array",
            with(valid(3002), "auth_factors", json!({"factor_type_id": 3})),
            "auth_factors",
            "array",
        ),
        (
            "is_mfa as string",
            with(valid(3002), "is_mfa", json!("yes")),
            "is_mfa",
            "true or false",
        ),
        (
            "status 3",
            with(valid(3002), "status_id", json!(3)),
            "status_id",
            "not one of",
        ),
        (
            "auth protocol 42",
            with(valid(3002), "auth_protocol_id", json!(42)),
            "auth_protocol_id",
            "not one of",
        ),
        (
            "auth without service or dst_endpoint",
            with(valid(3002), "dst_endpoint", Value::Null),
            "",
            "at least one",
        ),
        (
            "src ip as number",
            with(valid(3002), "src_endpoint.ip", json!(7)),
            "src_endpoint.ip",
            "string",
        ),
        (
            "account change without user",
            with(valid(3001), "user", Value::Null),
            "user",
            "required",
        ),
        (
            "authorize session with privileges and group",
            with(valid(3003), "group", json!({"name": "g"})),
            "",
            "exactly one",
        ),
        (
            "authorize session with neither",
            with(valid(3003), "privileges", Value::Null),
            "",
            "exactly one",
        ),
        (
            "entity management without entity",
            with(valid(3004), "entity", Value::Null),
            "entity",
            "required",
        ),
        (
            "user access without privileges",
            with(valid(3005), "privileges", Value::Null),
            "privileges",
            "required",
        ),
        (
            "privileges not strings",
            with(valid(3005), "privileges", json!([1])),
            "privileges[0]",
            "string",
        ),
        (
            "group management without group",
            with(valid(3006), "group", Value::Null),
            "group",
            "required",
        ),
        (
            "api activity without api",
            with(valid(6003), "api", Value::Null),
            "api",
            "required",
        ),
        (
            "api without operation",
            with(valid(6003), "api", json!({"version": "1"})),
            "api.operation",
            "required",
        ),
        (
            "api activity without actor",
            with(valid(6003), "actor", Value::Null),
            "actor",
            "required",
        ),
        (
            "action 5",
            with(valid(6003), "action_id", json!(5)),
            "action_id",
            "not one of",
        ),
        (
            "disposition 28",
            with(valid(6003), "disposition_id", json!(28)),
            "disposition_id",
            "not one of",
        ),
        (
            "risk level 9",
            with(valid(3002), "risk_level_id", json!(9)),
            "risk_level_id",
            "not one of",
        ),
        (
            "risk score as string",
            with(valid(3002), "risk_score", json!("high")),
            "risk_score",
            "integer",
        ),
        (
            "policy not an object",
            with(valid(3002), "policy", json!("p")),
            "policy",
            "object",
        ),
        (
            "finding without finding_info",
            with(valid(2004), "finding_info", Value::Null),
            "finding_info",
            "required",
        ),
        (
            "finding_info without uid",
            with(valid(2004), "finding_info", json!({"title": "t"})),
            "finding_info.uid",
            "required",
        ),
        (
            "uid not a string",
            with(valid(3002), "metadata.uid", json!(5)),
            "metadata.uid",
            "string",
        ),
        (
            "uid too long",
            with(valid(3002), "metadata.uid", json!("u".repeat(257))),
            "metadata.uid",
            "string",
        ),
        ("not an object", json!([1]), "", "object"),
        (
            "huge integer",
            with(valid(3002), "risk_score", json!(1u64 << 60)),
            "risk_score",
            "safe range",
        ),
    ];
    assert!(cases.len() >= 50);
    for (what, event, field, rule) in cases {
        let e = prepare(event, 1, sealog::events::Appender::Token("test")).expect_err(what);
        assert_eq!(e.field, field, "{what}: {e}");
        assert!(
            e.message.contains(rule),
            "{what}: {:?} lacks {rule:?}",
            e.message
        );
    }
}

#[test]
fn other_classes_get_base_validation_only() {
    // File System Activity (1001): its own required fields are not checked...
    let file = json!({"class_uid": 1001, "activity_id": 1, "time": 1, "severity_id": 1, "metadata": metadata(), "file": 7});
    prepare(file.clone(), 1, sealog::events::Appender::Token("test")).unwrap();
    // ...but the base fields are.
    let e = prepare(
        with(file.clone(), "severity_id", json!(8)),
        1,
        sealog::events::Appender::Token("test"),
    )
    .unwrap_err();
    assert_eq!(e.field, "severity_id");
    let e = prepare(
        with(file.clone(), "activity_id", json!(77)),
        1,
        sealog::events::Appender::Token("test"),
    )
    .unwrap_err();
    assert_eq!(e.field, "activity_id");
    let e = prepare(
        with(file, "status_id", json!(5)),
        1,
        sealog::events::Appender::Token("test"),
    )
    .unwrap_err();
    assert_eq!(e.field, "status_id");
}

#[test]
fn the_log_fills_in_what_it_owns() {
    let c = prepare(
        valid(3002),
        1_763_800_000_123,
        sealog::events::Appender::Token("test"),
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&c.jcs).unwrap();
    assert_eq!(v["type_uid"], 300201);
    assert_eq!(v["category_uid"], 3);
    assert_eq!(v["metadata"]["logged_time"], 1_763_800_000_123u64);
    let uid = v["metadata"]["uid"].as_str().unwrap();
    assert_eq!(uid.len(), 36);
    assert_eq!(&uid[14..15], "4", "a version 4 UUID");
    assert_eq!(c.facets.uid, uid);
    assert_eq!(c.facets.users, ["u-1", "alice"]);
    assert_eq!(c.facets.src_ip.as_deref(), Some("203.0.113.7"));
    // A producer's uid and a logged_time it claims: the uid stays, the
    // time is the log's.
    let ev = with(valid(3002), "metadata.uid", json!("producer-42"));
    let ev = with(ev, "metadata.logged_time", json!(5));
    let c = prepare(ev, 99, sealog::events::Appender::Token("test")).unwrap();
    let v: Value = serde_json::from_slice(&c.jcs).unwrap();
    assert_eq!(
        (
            v["metadata"]["uid"].as_str(),
            v["metadata"]["logged_time"].as_u64()
        ),
        (Some("producer-42"), Some(99))
    );
}
