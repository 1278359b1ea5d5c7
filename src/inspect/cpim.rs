//! JSON rendering of a parsed `message/cpim` body for `cpm-iwf inspect cpim`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{InspectError, body_json, text_value};
use crate::wire::cpim::{Cpim, Layout};

fn texts<'a>(items: impl IntoIterator<Item = &'a Bytes>) -> Value {
    Value::Array(items.into_iter().map(|b| text_value(b)).collect())
}

/// Parse `input` and render it: CPIM headers in order with the namespace URI each resolves to,
/// the typed fields, the content headers and the content (decoded when its type is known).
pub fn render(input: Bytes) -> Result<Value, InspectError> {
    let c = Cpim::parse(input.clone()).map_err(|e| InspectError::from_wire(&e, &input))?;
    let headers: Vec<Value> = c
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let mut full = Vec::with_capacity(h.name.len() + 8);
            if let Some(p) = &h.prefix {
                full.extend_from_slice(p);
                full.push(b'.');
            }
            full.extend_from_slice(&h.name);
            let mut v = json!({
                "name": text_value(&full),
                "value": text_value(&h.value),
                "namespace": c.namespace_of(i).as_deref().map(text_value),
            });
            if !h.params.is_empty() {
                v["params"] = text_value(&h.params);
            }
            v
        })
        .collect();
    let content_headers: Vec<Value> = c
        .content_headers
        .iter()
        .map(|(n, v)| json!({ "name": text_value(n), "value": text_value(v) }))
        .collect();
    let subjects: Vec<Value> = c
        .subject()
        .iter()
        .map(|s| json!({ "lang": s.lang.as_deref().map(text_value), "text": text_value(&s.text) }))
        .collect();
    Ok(json!({
        "format": "cpim",
        "layout": match c.layout {
            Layout::Rfc3862 => "rfc3862",
            Layout::Errata3013 => "errata3013",
        },
        "headers": headers,
        "from": c.from().map(|v| text_value(v)),
        "to": texts(c.to()),
        "cc": texts(c.cc()),
        "datetime": c.datetime().map(|v| text_value(v)),
        "subject": subjects,
        "require": texts(&c.require()),
        "imdn": {
            "message_id": c.imdn_message_id().map(|v| text_value(v)),
            "disposition_notification": texts(&c.imdn_disposition_notification()),
        },
        "cpm_payload_type": c.cpm_payload_type().map(|v| text_value(v)),
        "content_headers": content_headers,
        "body": body_json(c.content_type().map(|b| &b[..]), c.body.clone()),
    }))
}
