//! Events the log writes about itself, so that what operators do to the
//! log is on the record with proofs like any other event: redactions,
//! token creation and revocation. Each is an OCSF Entity Management (3004)
//! event and passes the same validation as events from producers.

use serde_json::{json, Value};

/// OCSF Entity Management activities used here (from the schema's enum).
const CREATE: u32 = 1;
const DELETE: u32 = 4;
const DISABLE: u32 = 9;

fn entity_management(
    activity_id: u32,
    time: u64,
    by: &str,
    entity: Value,
    message: String,
    detail: Value,
) -> Value {
    json!({
        "class_uid": 3004,
        "activity_id": activity_id,
        "severity_id": 1,
        "time": time,
        "message": message,
        "entity": entity,
        "actor": {"user": {"name": by}},
        "metadata": {
            "version": crate::events::ocsf::schema().version,
            "product": {"name": "sealog", "vendor_name": "sealog", "version": env!("CARGO_PKG_VERSION")},
            "labels": ["sealog"]
        },
        "unmapped": {"sealog": detail}
    })
}

/// Whether `event` is one of the log's own records (token changes,
/// redactions, detection findings): its last `metadata.loggers` entry is
/// the server's with `log_name` "records" (`events::prepare`). An event
/// from before the server recorded loggers counts as one when it says
/// it is sealog's (product and label), as the records always did: then a
/// look-alike a token holder posted is protected too, the safe side.
pub fn is_own_record(event: &Value) -> bool {
    let metadata = &event["metadata"];
    match metadata["loggers"].as_array().and_then(|l| l.last()) {
        Some(l) if l["name"] == crate::events::LOGGER_NAME => l["log_name"] == "records",
        _ => {
            metadata["product"]["name"] == "sealog"
                && (metadata["labels"].as_array()).is_some_and(|l| l.iter().any(|x| x == "sealog"))
        }
    }
}

/// The record of redacting the event at `index`, done by token `by`.
pub fn redaction(index: u64, reason: &str, by: &str, time: u64) -> Value {
    entity_management(
        DELETE,
        time,
        by,
        json!({"uid": index.to_string(), "name": format!("event {index}"), "type": "sealog.event"}),
        format!("event {index} redacted: {reason}"),
        json!({"redacted_index": index, "reason": reason}),
    )
}

/// The record of creating token `name` with `scopes`, done by `by`.
pub fn token_created(name: &str, scopes: &[impl serde::Serialize], by: &str, time: u64) -> Value {
    entity_management(
        CREATE,
        time,
        by,
        json!({"name": name, "type": "sealog.token"}),
        format!("token {name} created"),
        json!({"token": name, "scopes": scopes}),
    )
}

/// The record of revoking token `name`, done by `by`.
pub fn token_revoked(name: &str, by: &str, time: u64) -> Value {
    entity_management(
        DISABLE,
        time,
        by,
        json!({"name": name, "type": "sealog.token"}),
        format!("token {name} revoked"),
        json!({"token": name}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events;

    #[test]
    fn the_logs_own_records_are_valid_ocsf() {
        for v in [
            redaction(7, "GDPR erasure request 42", "admin", 1),
            token_created("ci", &["append"], "admin", 1),
            token_revoked("ci", "admin", 1),
        ] {
            let c = events::prepare(v, 2, events::Appender::Log).expect("valid");
            assert_eq!(c.facets.class_uid, 3004);
            assert_eq!(c.facets.actors, ["admin"]);
        }
    }
}
