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
    #[error("malformed JSON: {0}")]
    Json(serde_json::Error),
    /// An event would take more memory than the budget once parsed.
    #[error("event {index} would take over {budget} bytes of memory once parsed")]
    TooComplex { index: usize, budget: usize },
    /// What `each` refused.
    #[error("{0}")]
    Refused(E),
}

/// Parses `bytes`, a JSON object or an array of them, calling `each` on
/// every element in order as soon as it is parsed (then dropping it), so
/// that at most one event is held as a `Value` at a time; each may cost
/// at most `budget` bytes as a `Value` (estimated: `Cost`). Returns
/// whether the body was a single value rather than an array. Duplicate
/// keys are refused as in `parse`.
pub fn for_each_event<E>(
    bytes: &[u8],
    budget: usize,
    mut each: impl FnMut(usize, Value) -> Result<(), E>,
) -> Result<bool, EventsError<E>> {
    let left = Cell::new(budget);
    let refused = RefCell::new(None);
    let over = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let top = Top {
        left: &left,
        budget,
        over: &over,
        refused: &refused,
        each: &mut each,
    };
    let r = top.deserialize(&mut de).and_then(|single| {
        de.end()?;
        Ok(single)
    });
    if let Some(e) = refused.into_inner() {
        return Err(EventsError::Refused(e));
    }
    if let Some(index) = over.get() {
        return Err(EventsError::TooComplex { index, budget });
    }
    r.map_err(EventsError::Json)
}

/// The top of an append body: an array whose elements go to `each` one
/// by one, or a single value that does.
struct Top<'a, E, F> {
    left: &'a Cell<usize>,
    budget: usize,
    /// The index of the event that went over budget.
    over: &'a Cell<Option<usize>>,
    refused: &'a RefCell<Option<E>>,
    each: &'a mut F,
}

impl<'de, E, F: FnMut(usize, Value) -> Result<(), E>> DeserializeSeed<'de> for Top<'_, E, F> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<E, F> Top<'_, E, F> {
    fn strict(&self) -> Strict<'_> {
        Strict {
            left: Some(self.left),
        }
    }

    fn one<Er: de::Error>(&mut self, index: usize, v: Value) -> Result<(), Er>
    where
        F: FnMut(usize, Value) -> Result<(), E>,
    {
        self.left.set(self.budget);
        (self.each)(index, v).map_err(|e| {
            *self.refused.borrow_mut() = Some(e);
            Er::custom("refused")
        })
    }
}

impl<'de, E, F: FnMut(usize, Value) -> Result<(), E>> Visitor<'de> for Top<'_, E, F> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event or an array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<bool, A::Error> {
        let mut i = 0;
        loop {
            let next = seq.next_element_seed(self.strict()).inspect_err(|_| {
                if self.left.get() == 0 {
                    self.over.set(Some(i));
                }
            })?;
            let Some(v) = next else { break };
            self.one(i, v)?;
            i += 1;
        }
        // The body was an array (an empty one is for `each`'s caller).
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(mut self, map: A) -> Result<bool, A::Error> {
        let v = self.strict().visit_map(map).inspect_err(|_| {
            if self.left.get() == 0 {
                self.over.set(Some(0));
            }
        })?;
        self.one(0, v)?;
        Ok(true)
    }
    // Anything else is one value, for `each` to refuse.
    fn visit_bool<Er: de::Error>(mut self, v: bool) -> Result<bool, Er> {
        self.one(0, Value::Bool(v)).map(|_| true)
    }
    fn visit_i64<Er: de::Error>(mut self, v: i64) -> Result<bool, Er> {
        self.one(0, Value::from(v)).map(|_| true)
    }
    fn visit_u64<Er: de::Error>(mut self, v: u64) -> Result<bool, Er> {
        self.one(0, Value::from(v)).map(|_| true)
    }
    fn visit_f64<Er: de::Error>(mut self, v: f64) -> Result<bool, Er> {
        self.one(0, Value::from(v)).map(|_| true)
    }
    fn visit_str<Er: de::Error>(mut self, v: &str) -> Result<bool, Er> {
        self.one(0, Value::from(v)).map(|_| true)
    }
    fn visit_unit<Er: de::Error>(mut self) -> Result<bool, Er> {
        self.one(0, Value::Null).map(|_| true)
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
}
