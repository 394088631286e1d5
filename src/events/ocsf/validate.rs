//! Validating an event against the OCSF schema.
//!
//! Every event gets base validation: a known `class_uid`, an `activity_id`
//! of that class, `type_uid` (= class_uid * 100 + activity_id; filled in
//! when absent), `category_uid` (likewise), `time` in epoch milliseconds,
//! `severity_id`, `metadata.version` and `metadata.product.name`, and the
//! types and enumerations of base_event's attributes. The classes people
//! send most (`DEEP`) are validated in depth: every attribute present, at
//! any depth, must have its schema type and enumeration, required
//! attributes must be present, and `at_least_one` / `just_one` constraints
//! hold. Unknown fields are kept and not checked.

use serde_json::{Map, Value};

use super::{schema, Attr, Kind, Shape};

/// Classes validated in depth: Account Change, Authentication, Authorize
/// Session, Entity Management, User Access Management, Group Management,
/// API Activity, Detection Finding.
pub const DEEP: [u32; 8] = [3001, 3002, 3003, 3004, 3005, 3006, 6003, 2004];

/// A rule an event breaks, at a field path like `auth_factors[0].factor_type_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    /// The path of the field, empty for the event itself.
    pub field: String,
    /// The rule it broke, in words a producer can act on.
    pub message: String,
}

fn violation(field: &str, message: impl Into<String>) -> Violation {
    Violation {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Where a value sits in the event, spelled out only for a violation:
/// building each field's path as a string cost an allocation per attribute
/// checked, ~1/3 of validation's time.
#[derive(Clone, Copy)]
enum At<'a> {
    Root,
    Member(&'a At<'a>, &'a str),
    Item(&'a At<'a>, usize),
}

impl At<'_> {
    fn path(&self) -> String {
        match self {
            At::Root => String::new(),
            At::Member(At::Root, name) => name.to_string(),
            At::Member(up, name) => format!("{}.{name}", up.path()),
            At::Item(up, i) => format!("{}[{i}]", up.path()),
        }
    }
}

/// Whose constraints a shape states, for a violation's message.
#[derive(Clone, Copy)]
enum Whose<'a> {
    Class(&'a str, u32),
    Object(&'a str),
}

impl std::fmt::Display for Whose<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Whose::Class(caption, uid) => write!(f, "{caption} ({uid})"),
            Whose::Object(name) => write!(f, "OCSF object {name}"),
        }
    }
}

fn present(v: Option<&Value>) -> bool {
    !matches!(v, None | Some(Value::Null))
}

/// Validates `event` and fills in `type_uid` and `category_uid` when
/// absent. Returns the class uid.
pub fn validate(event: &mut Map<String, Value>) -> Result<u32, Violation> {
    let s = schema();
    let class_uid = integer(event, "class_uid")?;
    let class = u32::try_from(class_uid)
        .ok()
        .and_then(|u| s.classes.get(&u))
        .ok_or_else(|| {
            violation(
                "class_uid",
                format!("{class_uid} is not an OCSF 1.8.0 event class"),
            )
        })?;
    let activity_id = integer(event, "activity_id")?;
    check_enum(
        &class.shape.attrs["activity_id"],
        activity_id,
        &At::Member(&At::Root, "activity_id"),
    )?;
    let type_uid = class_uid * 100 + activity_id;
    derived(event, "type_uid", type_uid, "class_uid * 100 + activity_id")?;
    derived(
        event,
        "category_uid",
        i64::from(class.category_uid),
        "the class's category",
    )?;
    if integer(event, "time")? < 0 {
        return Err(violation(
            "time",
            "must be epoch milliseconds, not negative",
        ));
    }
    integer(event, "severity_id")?;
    let metadata = event
        .get("metadata")
        .and_then(Value::as_object)
        .ok_or_else(|| violation("metadata", "required object is missing"))?;
    if !metadata.get("version").is_some_and(Value::is_string) {
        return Err(violation("metadata.version", "required string is missing"));
    }
    let product_name = metadata.get("product").and_then(|p| p.get("name"));
    if product_name
        .and_then(Value::as_str)
        .is_none_or(|n| n.is_empty())
    {
        return Err(violation(
            "metadata.product.name",
            "required non-empty string is missing",
        ));
    }
    let deep = DEEP.contains(&class.uid);
    let shape = if deep { &class.shape } else { &class.base };
    check_shape(
        shape,
        event,
        &At::Root,
        deep,
        Whose::Class(&class.caption, class.uid),
    )?;
    Ok(class.uid)
}

fn integer(event: &Map<String, Value>, name: &str) -> Result<i64, Violation> {
    match event.get(name) {
        None | Some(Value::Null) => Err(violation(name, "required integer is missing")),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| violation(name, "must be an integer")),
    }
}

/// A field derived from others: checked when present, filled in when not.
fn derived(
    event: &mut Map<String, Value>,
    name: &str,
    want: i64,
    rule: &str,
) -> Result<(), Violation> {
    match event.get(name) {
        None | Some(Value::Null) => {
            event.insert(name.to_string(), Value::from(want));
            Ok(())
        }
        Some(v) if v.as_i64() == Some(want) => Ok(()),
        Some(v) => Err(violation(name, format!("is {v}, must be {want} ({rule})"))),
    }
}

/// Checks an object against a shape. With `deep`, required attributes and
/// constraints are enforced too; without, only present attributes' types
/// and enumerations.
fn check_shape(
    shape: &Shape,
    obj: &Map<String, Value>,
    at: &At,
    deep: bool,
    what: Whose,
) -> Result<(), Violation> {
    if deep {
        for name in &shape.required {
            if !present(obj.get(name)) {
                let field = At::Member(at, name).path();
                return Err(violation(&field, format!("required by {what}")));
            }
        }
        for group in &shape.at_least_one {
            if !group.iter().any(|n| present(obj.get(n))) {
                return Err(violation(
                    &at.path(),
                    format!("{what} needs at least one of {group:?}"),
                ));
            }
        }
        for group in &shape.just_one {
            if group
                .iter()
                .filter(|n| present(obj.get(n.as_str())))
                .count()
                != 1
            {
                return Err(violation(
                    &at.path(),
                    format!("{what} needs exactly one of {group:?}"),
                ));
            }
        }
    }
    for (name, value) in obj {
        if value.is_null() {
            continue;
        }
        let Some(a) = shape.attrs.get(name) else {
            continue;
        };
        let field = At::Member(at, name);
        if a.array {
            let items = value
                .as_array()
                .ok_or_else(|| violation(&field.path(), "must be an array"))?;
            for (i, item) in items.iter().enumerate() {
                check_value(a, item, &At::Item(&field, i), deep)?;
            }
        } else {
            check_value(a, value, &field, deep)?;
        }
    }
    Ok(())
}

fn check_value(a: &Attr, v: &Value, at: &At, deep: bool) -> Result<(), Violation> {
    let wrong = |message| Err(violation(&at.path(), message));
    match &a.kind {
        Kind::Integer => match v.as_i64() {
            Some(n) => check_enum(a, n, at),
            None => wrong("must be an integer"),
        },
        Kind::Float if v.is_number() => Ok(()),
        Kind::Float => wrong("must be a number"),
        Kind::Bool if v.is_boolean() => Ok(()),
        Kind::Bool => wrong("must be true or false"),
        Kind::String if v.is_string() => Ok(()),
        Kind::String => wrong("must be a string"),
        Kind::Json => Ok(()),
        Kind::Object(name) => {
            let Some(obj) = v.as_object() else {
                return wrong("must be an object");
            };
            match schema().objects.get(name) {
                Some(shape) => check_shape(shape, obj, at, deep, Whose::Object(name)),
                None => Ok(()), // the root type "object": anything goes
            }
        }
    }
}

fn check_enum(a: &Attr, n: i64, at: &At) -> Result<(), Violation> {
    match &a.values {
        Some(values) if !values.contains(&n) => Err(violation(
            &at.path(),
            format!("{n} is not one of the schema's values {values:?}"),
        )),
        _ => Ok(()),
    }
}
