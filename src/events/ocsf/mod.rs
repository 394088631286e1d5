//! The OCSF 1.8.0 schema, vendored in `src/events/ocsf/schema` and embedded by
//! `build.rs`, resolved into the shapes events are validated against.
//!
//! Resolution follows the schema's own rules: a class or object extends
//! its parent (`extends`), includes profiles (`$include`, whose attributes
//! are never required), and takes each attribute's type, array-ness and
//! enumeration from `dictionary.json`, merged with the class's own
//! enumeration. Class ids are `category_uid * 1000 + uid`.

pub mod validate;

use std::collections::{BTreeSet, HashMap};
use std::sync::LazyLock;

use serde_json::{Map, Value};

mod files {
    include!(concat!(env!("OUT_DIR"), "/ocsf_files.rs"));
}

/// What kind of JSON value an attribute holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// `integer_t`, `long_t` and the types built on them (`port_t`,
    /// `timestamp_t`): an integer, checked against the attribute's
    /// enumeration if it has one.
    Integer,
    /// `float_t`: any JSON number.
    Float,
    /// `boolean_t`.
    Bool,
    /// `string_t` and the types built on it (`ip_t`, `uuid_t`,
    /// `datetime_t`...).
    String,
    /// Any JSON value (`json_t`).
    Json,
    /// An OCSF object, by name.
    Object(String),
}

/// A resolved attribute of a class or object.
#[derive(Clone, Debug)]
pub struct Attr {
    /// Its type, followed down to a JSON kind.
    pub kind: Kind,
    /// Whether the value is an array of `kind` (`is_array`).
    pub array: bool,
    /// Whether the schema requires it (`"requirement": "required"`);
    /// never for attributes a profile brings in.
    pub required: bool,
    /// The allowed integer values, when the attribute is an enumeration.
    pub values: Option<BTreeSet<i64>>,
}

/// The attributes and constraints of a class or object.
#[derive(Clone, Debug)]
pub struct Shape {
    /// By name. A hash map, not a B-tree: validation looks up every member
    /// of every event here, and a B-tree of ~100 names took ~15 string
    /// comparisons a lookup (3.5 % of the server's CPU under batches).
    pub attrs: HashMap<String, Attr>,
    /// The names of the required attributes, sorted: what a deep check
    /// walks, instead of all of `attrs` (derived from them by `new`).
    required: Vec<String>,
    /// Each list: at least one of these attributes must be present.
    pub at_least_one: Vec<Vec<String>>,
    /// Each list: exactly one of these attributes must be present.
    pub just_one: Vec<Vec<String>>,
}

impl Shape {
    fn new(
        attrs: HashMap<String, Attr>,
        at_least_one: Vec<Vec<String>>,
        just_one: Vec<Vec<String>>,
    ) -> Self {
        let mut required: Vec<String> = (attrs
            .iter()
            .filter(|(_, a)| a.required)
            .map(|(n, _)| n.clone()))
        .collect();
        required.sort();
        Shape {
            attrs,
            required,
            at_least_one,
            just_one,
        }
    }
}

/// A resolved event class.
#[derive(Clone, Debug)]
pub struct Class {
    /// The class id an event carries as `class_uid`:
    /// `category_uid * 1000` plus the class's own uid.
    pub uid: u32,
    /// Its category's uid (`categories.json`).
    pub category_uid: u32,
    /// Its schema name, e.g. `authentication`.
    pub name: String,
    /// Its display name, e.g. `Authentication`.
    pub caption: String,
    /// All its attributes, its parents' and profiles' included: what deep
    /// validation checks.
    pub shape: Shape,
    /// base_event's attributes as this class defines them (its own
    /// activity enumeration, say): what base validation checks.
    pub base: Shape,
}

/// The resolved schema.
pub struct Schema {
    /// The vendored schema's version (`version.json`).
    pub version: String,
    /// The event classes, by class id.
    pub classes: HashMap<u32, Class>,
    /// The objects attributes may hold (`Kind::Object`), by name.
    pub objects: HashMap<String, Shape>,
}

/// The embedded schema, resolved on first use.
pub fn schema() -> &'static Schema {
    static SCHEMA: LazyLock<Schema> = LazyLock::new(|| {
        Loader::new()
            .load()
            .expect("the embedded OCSF schema resolves")
    });
    &SCHEMA
}

struct Loader {
    files: HashMap<&'static str, Value>,
    /// Dictionary attributes: name → definition.
    dict: Map<String, Value>,
    /// Dictionary types: name → definition.
    types: Map<String, Value>,
    /// Event definitions by name (classes and their category bases).
    events: HashMap<String, &'static str>,
    /// Object definitions by name.
    objects: HashMap<String, &'static str>,
}

impl Loader {
    fn new() -> Self {
        let files: HashMap<&'static str, Value> = files::FILES
            .iter()
            .map(|(p, text)| {
                (
                    *p,
                    serde_json::from_str(text).unwrap_or_else(|e| panic!("{p}: {e}")),
                )
            })
            .collect();
        let dictionary = &files["dictionary.json"];
        let dict = dictionary["attributes"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let types = dictionary["types"]["attributes"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut events = HashMap::new();
        let mut objects = HashMap::new();
        for (path, v) in &files {
            let Some(name) = v["name"].as_str() else {
                continue;
            };
            if path.starts_with("events/") {
                events.insert(name.to_string(), *path);
            } else if path.starts_with("objects/") {
                objects.insert(name.to_string(), *path);
            }
        }
        Loader {
            files,
            dict,
            types,
            events,
            objects,
        }
    }

    fn load(&self) -> Result<Schema, String> {
        let categories = &self.files["categories.json"]["attributes"];
        let mut classes = HashMap::new();
        for path in self.events.values() {
            let def = &self.files[path];
            let Some(uid) = def["uid"].as_u64() else {
                continue;
            };
            let category = self.inherited(def, "category", &self.events)?;
            let category_uid = categories[&category]["uid"]
                .as_u64()
                .ok_or(format!("{path}: unknown category {category}"))?;
            let uid = (category_uid * 1000 + uid) as u32;
            let shape = self.shape(def, &self.events)?;
            let base = self.shape(&self.files[self.events["base_event"]], &self.events)?;
            let attrs = (base.attrs.into_iter())
                .map(|(k, a)| {
                    let own = shape.attrs.get(&k).cloned().unwrap_or(a);
                    (k, own)
                })
                .collect();
            let base = Shape::new(attrs, vec![], vec![]);
            classes.insert(
                uid,
                Class {
                    uid,
                    category_uid: category_uid as u32,
                    name: def["name"].as_str().unwrap_or_default().to_string(),
                    caption: def["caption"].as_str().unwrap_or_default().to_string(),
                    shape,
                    base,
                },
            );
        }
        let mut objects = HashMap::new();
        for (name, path) in &self.objects {
            objects.insert(name.clone(), self.shape(&self.files[path], &self.objects)?);
        }
        Ok(Schema {
            version: self.files["version.json"]["version"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            classes,
            objects,
        })
    }

    /// A field of `def` or of the nearest ancestor that has it.
    fn inherited(
        &self,
        def: &Value,
        field: &str,
        ns: &HashMap<String, &'static str>,
    ) -> Result<String, String> {
        if let Some(v) = def[field].as_str() {
            return Ok(v.to_string());
        }
        let parent = def["extends"]
            .as_str()
            .ok_or(format!("{} has no {field}", def["name"]))?;
        let p = ns.get(parent).ok_or(format!("unknown parent {parent}"))?;
        self.inherited(&self.files[p], field, ns)
    }

    /// The raw attribute map of `def` with its ancestors' and profiles'
    /// merged in; profile attributes are marked not required.
    fn raw_attrs(
        &self,
        def: &Value,
        ns: &HashMap<String, &'static str>,
    ) -> Result<Map<String, Value>, String> {
        let mut out = match def["extends"].as_str() {
            Some(parent) if ns.contains_key(parent) => {
                self.raw_attrs(&self.files[ns[parent]], ns)?
            }
            _ => Map::new(),
        };
        let own = def["attributes"].as_object().cloned().unwrap_or_default();
        if let Some(inc) = own.get("$include") {
            let paths: Vec<&str> = match inc {
                Value::String(s) => vec![s.as_str()],
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            for p in paths {
                let f = self.files.get(p).ok_or(format!("missing include {p}"))?;
                for (k, v) in f["attributes"].as_object().into_iter().flatten() {
                    let mut v = v.clone();
                    v["requirement"] = Value::from("optional");
                    merge_attr(&mut out, k, &v);
                }
            }
        }
        for (k, v) in &own {
            if k != "$include" {
                merge_attr(&mut out, k, v);
            }
        }
        Ok(out)
    }

    fn constraints(
        &self,
        def: &Value,
        ns: &HashMap<String, &'static str>,
        key: &str,
    ) -> Vec<Vec<String>> {
        match def["constraints"][key].as_array() {
            Some(a) => vec![a
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()],
            None if def["constraints"].is_object() => vec![],
            None => match def["extends"].as_str().and_then(|p| ns.get(p)) {
                Some(p) => self.constraints(&self.files[p], ns, key),
                None => vec![],
            },
        }
    }

    fn shape(&self, def: &Value, ns: &HashMap<String, &'static str>) -> Result<Shape, String> {
        let raw = self.raw_attrs(def, ns)?;
        let mut attrs = HashMap::new();
        for (name, a) in &raw {
            let d = self.dict.get(name);
            let ty = a["type"]
                .as_str()
                .or_else(|| d.and_then(|d| d["type"].as_str()))
                .ok_or(format!("{}.{name}: no type in the dictionary", def["name"]))?;
            // Integer enumerations (the `_id` attributes) are closed sets;
            // string ones (e.g. http_method) list common values only.
            let mut values: BTreeSet<i64> = BTreeSet::new();
            let mut closed = true;
            for e in [d.map(|d| &d["enum"]), Some(&a["enum"])]
                .into_iter()
                .flatten()
            {
                for k in e.as_object().into_iter().flatten().map(|(k, _)| k) {
                    match k.parse() {
                        Ok(v) => {
                            values.insert(v);
                        }
                        Err(_) => closed = false,
                    }
                }
            }
            // The schema compiler, not the files, enumerates class, category
            // and type ids; `validate` derives and checks them instead.
            if !closed || ["class_uid", "category_uid", "type_uid"].contains(&name.as_str()) {
                values.clear();
            }
            attrs.insert(
                name.clone(),
                Attr {
                    kind: self.kind(ty)?,
                    array: a["is_array"]
                        .as_bool()
                        .or_else(|| d.and_then(|d| d["is_array"].as_bool()))
                        .unwrap_or(false),
                    required: a["requirement"] == "required",
                    values: (!values.is_empty()).then_some(values),
                },
            );
        }
        Ok(Shape::new(
            attrs,
            self.constraints(def, ns, "at_least_one"),
            self.constraints(def, ns, "just_one"),
        ))
    }

    /// The JSON kind of a dictionary type, following `type` to a base type.
    fn kind(&self, ty: &str) -> Result<Kind, String> {
        Ok(match ty {
            "integer_t" | "long_t" => Kind::Integer,
            "float_t" => Kind::Float,
            "boolean_t" => Kind::Bool,
            "string_t" => Kind::String,
            "json_t" => Kind::Json,
            t if self.types.contains_key(t) => {
                let base = self.types[t]["type"]
                    .as_str()
                    .ok_or(format!("type {t} has no base"))?;
                self.kind(base)?
            }
            t if self.objects.contains_key(t) || t == "object" => Kind::Object(t.to_string()),
            t => return Err(format!("unknown type {t}")),
        })
    }
}

/// Overlays attribute `k`'s definition `v` on what `out` has, merging the
/// enumerations (a class adds its activities to the base's 0 and 99).
fn merge_attr(out: &mut Map<String, Value>, k: &str, v: &Value) {
    let merged = out
        .entry(k.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    for (field, value) in v.as_object().into_iter().flatten() {
        match (field.as_str(), merged.get_mut("enum")) {
            ("enum", Some(Value::Object(have))) => {
                for (ek, ev) in value.as_object().into_iter().flatten() {
                    have.insert(ek.clone(), ev.clone());
                }
            }
            _ => {
                merged[field] = value.clone();
            }
        }
    }
}

/// The schema's own words: every member name of its files (attribute,
/// object and class names among them) and every caption. Text an event
/// shares with these is the schema's, not the event's
/// (`store::redb::event_codec` trains its dictionary on nothing else).
pub fn vocabulary() -> &'static std::collections::HashSet<String> {
    static WORDS: LazyLock<std::collections::HashSet<String>> = LazyLock::new(|| {
        fn walk(v: &Value, out: &mut std::collections::HashSet<String>) {
            match v {
                Value::Object(m) => {
                    for (k, v) in m {
                        out.insert(k.clone());
                        match v {
                            Value::String(s) if k == "caption" => {
                                out.insert(s.clone());
                            }
                            _ => walk(v, out),
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let mut out = std::collections::HashSet::new();
        for (path, text) in files::FILES {
            if let Ok(v) = serde_json::from_str::<Value>(text) {
                walk(&v, &mut out);
            } else {
                debug_assert!(!path.ends_with(".json"), "{path} parses");
            }
        }
        out
    });
    &WORDS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_resolves_with_the_classes_we_validate() {
        let s = schema();
        assert_eq!(s.version, "1.8.0");
        for (uid, name) in [
            (3001, "account_change"),
            (3002, "authentication"),
            (3003, "authorize_session"),
            (3004, "entity_management"),
            (3005, "user_access"),
            (3006, "group_management"),
            (6003, "api_activity"),
            (2004, "detection_finding"),
        ] {
            assert_eq!(s.classes[&uid].name, name);
        }
        let auth = &s.classes[&3002].shape;
        assert!(auth.attrs["user"].required);
        assert_eq!(auth.attrs["user"].kind, Kind::Object("user".into()));
        // The class's activities merged with base_event's 0 and 99.
        let acts: Vec<i64> = auth.attrs["activity_id"]
            .values
            .clone()
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(acts, [0, 1, 2, 3, 4, 5, 6, 7, 99]);
        assert_eq!(
            auth.attrs["auth_factors"].kind,
            Kind::Object("auth_factor".into())
        );
        assert!(auth.attrs["auth_factors"].array);
        // Profile attributes are known but never required.
        assert!(auth.attrs["disposition_id"]
            .values
            .as_ref()
            .unwrap()
            .contains(&23));
        assert!(!auth.attrs["disposition_id"].required);
        assert_eq!(auth.attrs["time"].kind, Kind::Integer);
        assert!(s.objects["auth_factor"].attrs["factor_type_id"].required);
        // Constraints are inherited: product extends _entity.
        assert_eq!(
            s.objects["product"].at_least_one,
            vec![vec!["name".to_string(), "uid".to_string()]]
        );
    }
}
