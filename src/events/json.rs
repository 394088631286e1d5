//! Strict JSON parsing for request bodies: RFC 8259 JSON, as serde_json
//! reads it, except that an object with a repeated key is refused. JSON
//! leaves duplicate keys' meaning open (RFC 8259 §4); parsers keep the
//! first or the last, so one body could canonicalize, and so commit, two
//! ways. Nesting is bounded by serde_json's recursion limit (128).
//!
//! An append body is parsed one event at a time (`for_each_event`), each
//! within a memory budget: a `Value` costs several times its text (32
//! bytes a node, more in maps), and a body of one-digit numbers would
//! otherwise cost over 30 times its size.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Parses `bytes` as one JSON value, refusing duplicate object keys.
pub fn parse(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = Strict { left: None }.deserialize(&mut de)?;
    de.end()?;
    Ok(v)
}

/// Why an append body was not parsed into events.
#[derive(Debug, thiserror::Error)]
pub enum EventsError<E> {
    /// Not JSON, or an object with a repeated key.
    #[error("malformed JSON: {0}")]
    Json(serde_json::Error),
    /// An event would take more memory than the budget once parsed.
    #[error("event {index} would take over {budget} bytes of memory once parsed")]
    TooComplex {
        /// The event's position in the body, from 0.
        index: usize,
        /// The bytes one parsed event may take.
        budget: usize,
    },
    /// More than `max` events.
    #[error("over {max} events in one request")]
    TooMany {
        /// The most events one request may carry.
        max: usize,
    },
    /// What `each` refused.
    #[error("{0}")]
    Refused(E),
}

/// Parses `bytes`, a JSON object or an array of them, calling `each` on
/// every element in order as soon as it is parsed (then dropping it), so
/// that at most one event is held as a `Value` at a time; each may cost
/// at most `budget` bytes as a `Value` (estimated: `Cost`), and there may
/// be at most `max`. Returns whether the body was a single value rather
/// than an array. Duplicate keys are refused as in `parse`. What is wrong
/// with the body as a whole wins over what `each` refused: malformed JSON
/// (or an event over budget), then too many events, then `each`'s first
/// refusal (after which `each` is called no more).
pub fn for_each_event<E>(
    bytes: &[u8],
    budget: usize,
    max: usize,
    mut each: impl FnMut(usize, Value) -> Result<(), E>,
) -> Result<bool, EventsError<E>> {
    let left = Cell::new(budget);
    let refused = RefCell::new(None);
    let over = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let top = Top {
        left: &left,
        budget,
        max,
        over: &over,
        refused: &refused,
        each: &mut each,
    };
    let single = top.deserialize(&mut de).and_then(|single| {
        de.end()?;
        Ok(single)
    });
    if let Some(index) = over.get() {
        return Err(EventsError::TooComplex { index, budget });
    }
    let single = match single {
        Err(e) if e.to_string().starts_with(TOO_MANY) => return Err(EventsError::TooMany { max }),
        r => r.map_err(EventsError::Json)?,
    };
    // A single value goes to `each` only once the body is known whole.
    if let Some(v) = single {
        each(0, v).map_err(EventsError::Refused)?;
        return Ok(true);
    }
    match refused.into_inner() {
        Some(e) => Err(EventsError::Refused(e)),
        None => Ok(false),
    }
}

/// The message of the error that stops a body with too many events.
const TOO_MANY: &str = "too many events";

/// The top of an append body: an array whose elements go to `each` one
/// by one, or a single value that does.
struct Top<'a, E, F> {
    left: &'a Cell<usize>,
    budget: usize,
    max: usize,
    /// The index of the event that went over budget.
    over: &'a Cell<Option<usize>>,
    refused: &'a RefCell<Option<E>>,
    each: &'a mut F,
}

impl<'de, E, F: FnMut(usize, Value) -> Result<(), E>> DeserializeSeed<'de> for Top<'_, E, F> {
    /// The single value, if the body was not an array.
    type Value = Option<Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<Value>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<E, F> Top<'_, E, F> {
    fn strict(&self) -> Strict<'_> {
        Strict {
            left: Some(self.left),
        }
    }

    /// Hands element `index` to `each`, unless an earlier one was refused.
    fn one(&mut self, index: usize, v: Value)
    where
        F: FnMut(usize, Value) -> Result<(), E>,
    {
        if self.refused.borrow().is_none() {
            if let Err(e) = (self.each)(index, v) {
                *self.refused.borrow_mut() = Some(e);
            }
        }
    }
}

impl<'de, E, F: FnMut(usize, Value) -> Result<(), E>> Visitor<'de> for Top<'_, E, F> {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event or an array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Option<Value>, A::Error> {
        let mut i = 0;
        loop {
            self.left.set(self.budget);
            let next = seq.next_element_seed(self.strict()).inspect_err(|_| {
                if self.left.get() == 0 {
                    self.over.set(Some(i));
                }
            })?;
            let Some(v) = next else { break };
            if i == self.max {
                return Err(de::Error::custom(TOO_MANY));
            }
            self.one(i, v);
            i += 1;
        }
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<Value>, A::Error> {
        self.left.set(self.budget);
        let v = self.strict().visit_map(map).inspect_err(|_| {
            if self.left.get() == 0 {
                self.over.set(Some(0));
            }
        })?;
        Ok(Some(v))
    }
    // Anything else is one value, for `each` to refuse.
    fn visit_bool<Er: de::Error>(self, v: bool) -> Result<Option<Value>, Er> {
        Ok(Some(Value::Bool(v)))
    }
    fn visit_i64<Er: de::Error>(self, v: i64) -> Result<Option<Value>, Er> {
        Ok(Some(Value::from(v)))
    }
    fn visit_u64<Er: de::Error>(self, v: u64) -> Result<Option<Value>, Er> {
        Ok(Some(Value::from(v)))
    }
    fn visit_f64<Er: de::Error>(self, v: f64) -> Result<Option<Value>, Er> {
        Ok(Some(Value::from(v)))
    }
    fn visit_str<Er: de::Error>(self, v: &str) -> Result<Option<Value>, Er> {
        Ok(Some(Value::from(v)))
    }
    fn visit_unit<Er: de::Error>(self) -> Result<Option<Value>, Er> {
        Ok(Some(Value::Null))
    }
}

/// What a parsed node costs in memory, estimated: a `Value` is 32 bytes;
/// an array's element may have as much again unused behind it (a `Vec`
/// grows by doubling); a map member holds its key's `String` (24 bytes
/// and its text) in a B-tree node; strings hold their text.
struct Cost;

impl Cost {
    const VALUE: usize = 32;
    const ELEMENT: usize = 32;
    const MEMBER: usize = 56;
}

/// The strict value parser; with `left`, each node it makes is charged
/// to that budget, and it fails once the budget is spent.
struct Strict<'a> {
    left: Option<&'a Cell<usize>>,
}

impl Strict<'_> {
    fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let Some(left) = self.left else { return Ok(()) };
        match left.get().checked_sub(bytes) {
            Some(l) => {
                left.set(l);
                Ok(())
            }
            None => {
                left.set(0);
                Err(E::custom("over the memory budget"))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("not a finite number"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.charge(v.len())?;
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.charge(v.len())?;
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        loop {
            self.charge(Cost::VALUE + Cost::ELEMENT)?;
            let Some(x) = seq.next_element_seed(Strict { left: self.left })? else {
                break;
            };
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            self.charge(Cost::VALUE + Cost::MEMBER + k.len())?;
            // One search of the map per key, not two.
            match m.entry(k) {
                Entry::Vacant(slot) => {
                    slot.insert(map.next_value_seed(Strict { left: self.left })?);
                }
                Entry::Occupied(taken) => {
                    let k = taken.key();
                    return Err(de::Error::custom(format!("duplicate key {k:?}")));
                }
            }
        }
        Ok(Value::Object(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        assert!(parse(br#"{"a":1,"b":{"c":2}}"#).is_ok());
        for bad in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"x":[{"k":1,"k":1}]}"#,
            br#"{"a":1,"\u0061":2}"#,
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("duplicate key"), "{e}");
        }
    }

    #[test]
    fn it_reads_what_serde_json_reads() {
        for ok in [
            &b"1"[..],
            b"-0.5e3",
            b"\"\\u00e9\"",
            b"[true,null,{}]",
            b"123456789012345678901234567890",
            br#"{"a":{"b":[1,2.5]}}"#,
        ] {
            let strict = parse(ok).unwrap();
            let plain: Value = serde_json::from_slice(ok).unwrap();
            assert_eq!(strict, plain);
        }
        for bad in [&b"{} x"[..], b"[1,]", b"{\"a\"}", b"\"\\ud800\"", b""] {
            assert!(parse(bad).is_err());
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(parse(deep.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("recursion limit"));
    }

    /// `for_each_event` with a closure refusing objects that have "bad".
    fn events(body: &str, budget: usize, max: usize) -> Result<(bool, Vec<Value>), String> {
        let mut got = Vec::new();
        let single = for_each_event(body.as_bytes(), budget, max, |i, v| {
            assert_eq!(i, got.len(), "in order");
            if v.get("bad").is_some() {
                return Err(format!("refused {i}"));
            }
            got.push(v);
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok((single, got))
    }

    #[test]
    fn events_come_one_by_one_and_the_body_as_a_whole_is_judged_first() {
        let (single, got) = events(r#"[{"a":1},{"b":[2]}]"#, 1 << 20, 10).unwrap();
        assert!(!single);
        assert_eq!(got, [json!({"a": 1}), json!({"b": [2]})]);
        assert_eq!(
            events(r#" {"a":1} "#, 1 << 20, 10).unwrap(),
            (true, vec![json!({"a": 1})])
        );
        // Malformed anywhere wins over a refused event before it; so does
        // too many; a refusal stops the calls.
        assert!(events(r#"[{"bad":1},{"a":1,"a":2}]"#, 1 << 20, 10)
            .unwrap_err()
            .contains("duplicate key"));
        assert!(events(r#"{"bad":1} x"#, 1 << 20, 10)
            .unwrap_err()
            .contains("trailing"));
        assert!(events(r#"[{"bad":1},{},{}]"#, 1 << 20, 2)
            .unwrap_err()
            .contains("over 2 events"));
        assert_eq!(
            events(r#"[{"a":1},{"bad":1},{"c":1}]"#, 1 << 20, 10).unwrap_err(),
            "refused 1"
        );
        assert_eq!(events("[]", 1 << 20, 10).unwrap(), (false, vec![]));
    }

    #[test]
    fn each_event_is_held_to_its_memory_budget_not_the_body() {
        let dense = format!("[{}]", vec!["0"; 1000].join(","));
        let one = format!(r#"{{"x":{dense}}}"#);
        // 1,000 elements at 64 bytes each: over a 32 KiB budget, within 128 KiB.
        let e = events(&one, 32 << 10, 10).unwrap_err();
        assert!(e.contains("event 0 would take over"), "{e}");
        assert!(events(&one, 128 << 10, 10).is_ok());
        // The budget is per event: many events each within it pass.
        let many = format!("[{}]", [one.as_str(); 8].join(","));
        assert_eq!(events(&many, 128 << 10, 10).unwrap().1.len(), 8);
        let e = events(&format!("[{{}},{one}]"), 32 << 10, 10).unwrap_err();
        assert!(e.contains("event 1 would take over"), "{e}");
    }
}
