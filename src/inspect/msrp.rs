//! JSON rendering of a parsed MSRP message for `cpm-iwf inspect msrp`.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{InspectError, body_json, text_value};
use crate::wire::msrp::{
    self, Continuation, Limits, Message, MsrpUri, ReportRequest, StartLine, UriList,
};

/// Parse `input` as one MSRP message (RFC 4975) and render it: start line, header fields in
/// order, typed fields, continuation and body (decoded when its Content-Type is a format we
/// know).
pub fn render(input: Bytes) -> Result<Value, InspectError> {
    let m = msrp::parse(input.clone(), &Limits::default())
        .map_err(|e| InspectError::from_wire(&e, &input))?;
    Ok(message_json(&m))
}

fn uri_json(u: &MsrpUri) -> Value {
    json!({
        "uri": u.to_string(),
        "secure": u.secure,
        "userinfo": u.userinfo.as_deref().map(text_value),
        "host": text_value(&u.host),
        "port": u.port,
        "session_id": u.session_id.as_deref().map(text_value),
        "transport": text_value(&u.transport),
        "params": if u.params.is_empty() { Value::Null } else { text_value(&u.params) },
    })
}

fn path_json(list: UriList) -> Value {
    Value::Array(
        list.map(|u| match u {
            Ok(u) => uri_json(&u),
            Err(e) => json!({ "error": e.to_string() }),
        })
        .collect(),
    )
}

fn report_str(r: ReportRequest) -> &'static str {
    match r {
        ReportRequest::Yes => "yes",
        ReportRequest::No => "no",
        ReportRequest::Partial => "partial",
    }
}

/// The JSON form of a message (also used by other inspectors that carry MSRP).
pub fn message_json(m: &Message) -> Value {
    let mut out = Map::new();
    out.insert("transaction_id".into(), text_value(&m.transaction_id));
    match &m.start {
        StartLine::Request { method } => {
            out.insert("kind".into(), json!("request"));
            out.insert("method".into(), text_value(method.as_bytes()));
        }
        StartLine::Response { code, comment } => {
            out.insert("kind".into(), json!("response"));
            out.insert("status_code".into(), json!(code));
            out.insert(
                "comment".into(),
                comment.as_deref().map_or(Value::Null, text_value),
            );
        }
    }
    out.insert(
        "headers".into(),
        Value::Array(
            m.headers
                .iter()
                .map(|h| json!({ "name": text_value(&h.name), "value": text_value(&h.value) }))
                .collect(),
        ),
    );
    out.insert("to_path".into(), path_json(m.to_path_uris()));
    out.insert("from_path".into(), path_json(m.from_path_uris()));
    if let Some(v) = m.header("Use-Path") {
        out.insert("use_path".into(), path_json(UriList::new(v.clone(), 0)));
    }
    if let Some(id) = m.message_id() {
        out.insert("message_id".into(), text_value(id));
    }
    if let Ok(Some(r)) = m.byte_range() {
        out.insert(
            "byte_range".into(),
            json!({ "start": r.start, "end": r.end, "total": r.total }),
        );
        out.insert(
            "byte_range_check".into(),
            match m.check_byte_range() {
                Ok(()) => json!("ok"),
                Err(e) => Value::String(e.to_string()),
            },
        );
    }
    if m.method().is_some() {
        if let Ok(r) = m.success_report() {
            out.insert("success_report".into(), json!(report_str(r)));
        }
        if let Ok(r) = m.failure_report() {
            out.insert("failure_report".into(), json!(report_str(r)));
        }
    }
    if let Ok(Some(s)) = m.status() {
        out.insert(
            "status".into(),
            json!({
                "namespace": s.namespace,
                "code": s.code,
                "comment": s.comment.as_deref().map(text_value),
            }),
        );
    }
    for (key, v) in [
        ("expires", m.expires()),
        ("min_expires", m.min_expires()),
        ("max_expires", m.max_expires()),
    ] {
        if let Ok(Some(n)) = v {
            out.insert(key.into(), json!(n));
        }
    }
    if let Some(ct) = m.content_type() {
        out.insert("content_type".into(), text_value(ct));
    }
    out.insert(
        "continuation".into(),
        json!(match m.continuation {
            Continuation::Complete => "complete",
            Continuation::More => "more",
            Continuation::Aborted => "aborted",
        }),
    );
    out.insert(
        "body".into(),
        match &m.body {
            Some(b) => body_json(m.content_type().map(|c| &c[..]), b.clone()),
            None => Value::Null,
        },
    );
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_send() {
        let input = Bytes::from_static(
            b"MSRP a786hjs2 SEND\r\nTo-Path: msrp://b.example.com:12763/k;tcp\r\nFrom-Path: msrp://a.example.com:7654/j;tcp\r\nMessage-ID: 87652491\r\nByte-Range: 1-2/2\r\nContent-Type: text/plain\r\n\r\nhi\r\n-------a786hjs2$\r\n",
        );
        let v = render(input).unwrap();
        assert_eq!(v["method"], "SEND");
        assert_eq!(v["to_path"][0]["port"], 12763);
        assert_eq!(v["byte_range"]["total"], 2);
        assert_eq!(v["byte_range_check"], "ok");
        assert_eq!(v["body"]["length"], 2);
        assert_eq!(v["continuation"], "complete");
        assert_eq!(v["headers"][3]["name"], "Byte-Range");
    }

    #[test]
    fn reports_errors_with_position() {
        let e = render(Bytes::from_static(
            b"MSRP abcd SEND\r\nTo-Path: x\r\n-------abcd$\r\n",
        ))
        .unwrap_err();
        assert!(e.0.contains("line 2"), "{e}");
    }
}
