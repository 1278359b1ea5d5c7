//! JSON rendering of a parsed SIP message for `cpm-iwf inspect sip`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{InspectError, body_json, text_value};
use crate::wire::sip::{self, Limits, StartLine};

/// Parse `input` as one SIP message (datagram rules: the body is the rest of the input, cut to
/// Content-Length) and render start line, headers in order, the fields the gateway keys on, and
/// the body (decoded when its Content-Type names a format we know).
pub fn render(input: Bytes) -> Result<Value, InspectError> {
    let msg = sip::parse_datagram(input.clone(), &Limits::default())
        .map_err(|e| InspectError::from_wire(&e, &input))?;
    let mut out = match msg.start_line() {
        StartLine::Request { method, uri } => json!({
            "kind": "request",
            "request_line": {
                "method": sip::method_name(method),
                "uri": text_value(uri),
            },
        }),
        StartLine::Response { code, reason } => json!({
            "kind": "response",
            "status_line": { "code": code, "reason": text_value(reason) },
        }),
    };
    out["headers"] = msg
        .headers()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    out["call_id"] = json!(msg.call_id());
    out["cseq"] = match msg.cseq() {
        Some(c) => json!({ "seq": c.seq, "method": c.method }),
        None => Value::Null,
    };
    out["from_tag"] = json!(msg.from_tag());
    out["to_tag"] = json!(msg.to_tag());
    out["via_branch"] = json!(msg.top_via_branch());
    out["body"] = body_json(msg.content_type().map(str::as_bytes), msg.body().clone());
    Ok(out)
}
