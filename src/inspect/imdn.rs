//! JSON rendering of a parsed IMDN body for `cpm-iwf inspect imdn`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{InspectError, text_value};
use crate::wire::imdn;

fn opt(v: &Option<Bytes>) -> Value {
    v.as_deref().map_or(Value::Null, text_value)
}

fn raws(v: &[Bytes]) -> Value {
    Value::Array(v.iter().map(|b| text_value(b)).collect())
}

/// Parse `input` as `message/imdn+xml` and render it: the root and its namespace, the typed
/// fields, the notification (element, status, the disposition it answers) and every extension
/// element as its raw XML string.
pub fn render(input: Bytes) -> Result<Value, InspectError> {
    let parsed = imdn::parse(input.clone()).map_err(|e| InspectError::from_wire(&e, &input))?;
    Ok(json!({
        "root": "imdn",
        "namespace": imdn::NAMESPACE,
        "message_id": text_value(&parsed.message_id),
        "datetime": text_value(&parsed.datetime),
        "recipient_uri": opt(&parsed.recipient_uri),
        "original_recipient_uri": opt(&parsed.original_recipient_uri),
        "subject": opt(&parsed.subject),
        "notification": {
            "element": parsed.notification.element(),
            "status": parsed.notification.status(),
            "disposition": parsed.notification.disposition(),
        },
        "status_extensions": raws(&parsed.status_extensions),
        "notification_extensions": raws(&parsed.notification_extensions),
        "extensions": raws(&parsed.extensions),
    }))
}
