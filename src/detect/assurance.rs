//! Step-up evidence: for a sensitive action, the MFA authentication that
//! covers it — the same user (and session, when the action names one),
//! successful, multi-factor, within a window before the action.
//!
//! What must stay true: only a step-up by the same identity counts — the
//! same `user.uid`, or the same name for users without a uid (`Identity`):
//! the user index finds events by uid and by name alike, so a user whose
//! name is the actor's uid (or name) is among the candidates and must be
//! refused here. And only a real step-up (`engine::is_step_up`): a
//! successful logon with a second factor of a known type.

use serde_json::Value;

use crate::detect::engine::{self, Identity};
use crate::log::{stored_event, Log, LogError};
use crate::query::index::{IndexError, IndexKey, View};
use crate::store::{EventRow, Snapshot, StoreError};
use sealog_verify::receipt::Receipt;

/// Candidates examined at most (newest first) for one answer.
pub const MAX_SCAN: usize = 10_000;

/// The user (`user`, else `actor.user`) and session an event is about.
pub fn subject(v: &Value) -> (Option<Identity>, Option<String>) {
    let who = v
        .get("user")
        .and_then(Identity::of_user)
        .or_else(|| v["actor"].get("user").and_then(Identity::of_user));
    let session = v["session"]["uid"]
        .as_str()
        .or_else(|| v["actor"]["session"]["uid"].as_str())
        .map(String::from);
    (who, session)
}

/// Whether `v` is a successful multi-factor logon.
pub fn is_step_up(v: &Value) -> bool {
    let factors = v["auth_factors"].as_array().into_iter().flatten();
    engine::is_step_up(
        v["class_uid"].as_u64().unwrap_or(0),
        v["activity_id"].as_i64(),
        v["status_id"].as_i64(),
        v["is_mfa"].as_bool(),
        factors.map(|f| f["factor_type_id"].as_i64()),
    )
}

/// The newest step-up before `index` by `user` (in `session` if given)
/// whose time lies in [time - window, time].
pub fn find(
    view: &View,
    snap: &dyn Snapshot,
    index: u64,
    user: &Identity,
    session: Option<&str>,
    time: u64,
    window: u64,
) -> Result<Option<u64>, IndexError> {
    let from = time.saturating_sub(window);
    for (n, key) in view
        .scan(
            &IndexKey::User(user.as_str().to_string()),
            true,
            Some((0, index)),
        )?
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
        let (who, their_session) = subject(&v);
        if who.as_ref() != Some(user) {
            continue;
        }
        if session.is_some() && their_session.as_deref() != session {
            continue;
        }
        return Ok(Some(i));
    }
    Ok(None)
}

/// The step-up evidence for one action, as `step_up` finds it.
pub struct StepUp {
    /// The action's receipt.
    pub action: Receipt,
    /// The step-up's receipt, against the same checkpoint, if one is found.
    pub step_up: Option<Receipt>,
    /// The user searched for.
    pub user: Identity,
    /// The session searched in, when the action names one.
    pub session: Option<String>,
    /// The action's `time`: the window is `[time - window, time]`.
    pub time: u64,
    /// The window searched, in milliseconds.
    pub window: u64,
}

/// The step-up covering the action at `index` (below the latest
/// checkpoint): the newest one by the same user (in the same session
/// when the action names one) within `window` ms before it, with both
/// receipts proven against the latest checkpoint. `BadArgument` (field
/// `index`) if the action names no user.
pub async fn step_up(log: &Log, index: u64, window: u64) -> Result<StepUp, LogError> {
    let head = log.head();
    let (view, snap) = log.view(head.size).await?;
    let action = stored_event(&snap, index, head.size)?;
    let v: Value =
        serde_json::from_slice(&action.jcs).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let (user, session) = subject(&v);
    let user = user.ok_or_else(|| LogError::BadArgument {
        field: "index",
        message: "the event names no user or actor.user".into(),
    })?;
    let time = v["time"].as_u64().unwrap_or(0);
    let found = find(&view, &snap, index, &user, session.as_deref(), time, window)?;
    let indexes: Vec<u64> = std::iter::once(index).chain(found).collect();
    let mut receipts = log.receipts(&snap, &indexes, &head)?.into_iter();
    Ok(StepUp {
        action: receipts.next().expect("the action's receipt"),
        step_up: receipts.next(),
        user,
        session,
        time,
        window,
    })
}
