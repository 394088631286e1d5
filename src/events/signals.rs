//! The few members of an event the detection rules read, taken once
//! when the event is prepared and handed along with it, so that the
//! detection runner does not parse the stored event again.

use serde::Deserialize;
use serde_json::Value;

/// The members of an event the rules read, and nothing else: parsing only
/// these skips the rest of the event (metadata, endpoints' other members)
/// instead of building a `Value` of all of it, which cost the detection
/// follower ~10 % of the server's CPU under load.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Signals {
    pub(crate) class_uid: u64,
    pub(crate) time: u64,
    pub(crate) status_id: Option<i64>,
    pub(crate) activity_id: Option<i64>,
    pub(crate) is_mfa: Option<bool>,
    pub(crate) auth_factors: Vec<Factor>,
    pub(crate) src_endpoint: Endpoint,
    pub(crate) device: Device,
    pub(crate) http_request: HttpRequest,
    pub(crate) group: Named,
    pub(crate) user: Named,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct Factor {
    pub(crate) factor_type_id: Option<i64>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct Endpoint {
    pub(crate) ip: Option<String>,
    pub(crate) location: Location,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct Location {
    pub(crate) lat: Option<f64>,
    pub(crate) long: Option<f64>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct Device {
    pub(crate) uid: Option<String>,
    pub(crate) hostname: Option<String>,
}

#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct HttpRequest {
    pub(crate) user_agent: Option<String>,
}

/// A user (uid, name) or a group (name).
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(crate) struct Named {
    pub(crate) uid: Option<String>,
    pub(crate) name: Option<String>,
}

impl Signals {
    /// The signals of an event's JSON; None if a member the rules read
    /// has the wrong type (validated events never do).
    pub fn parse(json: &[u8]) -> Option<Self> {
        serde_json::from_slice(json).ok()
    }

    /// The signals of an event already parsed as `map`, whose canonical
    /// JSON is `jcs`: taken from the map (no second parse of the text),
    /// or, where the map's numbers are not of the type a signal wants
    /// (say 1.0 where the text `1` parses as an integer), from `jcs`, so
    /// that the answer is always `parse(jcs)`'s.
    pub fn of_event(map: &serde_json::Map<String, Value>, jcs: &[u8]) -> Option<Self> {
        Signals::deserialize(map)
            .ok()
            .or_else(|| Signals::parse(jcs))
    }
}
