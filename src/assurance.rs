//! Step-up evidence: for a sensitive action, the MFA authentication that
//! covers it — the same user (and session, when the action names one),
//! successful, multi-factor, within a window before the action.

use serde_json::Value;

use crate::index::{IndexError, IndexKey, View};
use crate::store::{EventRow, Snapshot};

/// Candidates examined at most (newest first) for one answer.
pub const MAX_SCAN: usize = 10_000;

/// The user and session an event is about.
pub fn subject(v: &Value) -> (Option<String>, Option<String>) {
    let user = |u: &Value| {
        u.get("uid")
            .or_else(|| u.get("name"))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let who = v
        .get("user")
        .and_then(user)
        .or_else(|| v.get("actor").and_then(|a| a.get("user")).and_then(user));
    let session = v["session"]["uid"]
        .as_str()
        .or_else(|| v["actor"]["session"]["uid"].as_str())
        .map(String::from);
    (who, session)
}

/// Whether `v` is a successful multi-factor authentication.
pub fn is_step_up(v: &Value) -> bool {
    v["class_uid"] == 3002
        && v["status_id"] == 1
        && (v["is_mfa"] == true
            || v["auth_factors"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f["factor_type_id"].as_i64() != Some(11))))
}

/// The newest step-up before `index` for `user` (in `session` if given)
/// whose time lies in [time - window, time].
pub fn find(
    view: &View,
    snap: &Snapshot,
    index: u64,
    user: &str,
    session: Option<&str>,
    time: u64,
    window: u64,
) -> Result<Option<u64>, IndexError> {
    let from = time.saturating_sub(window);
    for (n, key) in view
        .scan(&IndexKey::User(user.to_string()), true, Some((0, index)))?
        .enumerate()
    {
        if n == MAX_SCAN {
            break;
        }
        let i = key?.1;
        let EventRow::Present(e) = snap.event(i)? else {
            continue;
        };
        let Ok(v) = serde_json::from_slice::<Value>(&e.jcs) else {
            continue;
        };
        let t = v["time"].as_u64().unwrap_or(0);
        if !is_step_up(&v) || t > time || t < from {
            continue;
        }
        if let Some(s) = session {
            if subject(&v).1.as_deref() != Some(s) {
                continue;
            }
        }
        return Ok(Some(i));
    }
    Ok(None)
}
