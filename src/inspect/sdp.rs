//! JSON rendering of a parsed SDP body for `cpm-iwf inspect sdp`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{InspectError, text_value};
use crate::wire::sdp::{AttrKind, Connection, LineKind, Sdp};

fn texts(items: &[Bytes]) -> Value {
    Value::Array(items.iter().map(|b| text_value(b)).collect())
}

fn connection(c: &Connection) -> Value {
    json!({
        "nettype": text_value(&c.nettype),
        "addrtype": text_value(&c.addrtype),
        "address": text_value(&c.address),
    })
}

/// Parse `input` and render it: every line in order (type, value, what it is), the origin, the
/// media lines and the typed MSRP media stream.
pub fn render(input: Bytes) -> Result<Value, InspectError> {
    let sdp = Sdp::parse(input.clone()).map_err(|e| InspectError::from_wire(&e, &input))?;
    let lines: Vec<Value> = sdp
        .lines()
        .iter()
        .map(|l| {
            let kind = match l.kind() {
                LineKind::Version => "version",
                LineKind::Origin(_) => "origin",
                LineKind::SessionName => "session-name",
                LineKind::Connection(_) => "connection",
                LineKind::Timing => "timing",
                LineKind::Media(_) => "media",
                LineKind::Attribute(a) => match a.kind {
                    AttrKind::Path => "path",
                    AttrKind::AcceptTypes => "accept-types",
                    AttrKind::AcceptWrappedTypes => "accept-wrapped-types",
                    AttrKind::MaxSize(_) => "max-size",
                    AttrKind::Setup(_) => "setup",
                    AttrKind::MsrpCema => "msrp-cema",
                    AttrKind::Direction(_) => "direction",
                    AttrKind::Other => "attribute",
                },
                LineKind::Other => "other",
                LineKind::Blank => "blank",
            };
            json!({
                "type": l.type_char().map(|c| char::from(c).to_string()),
                "value": text_value(l.value()),
                "kind": kind,
            })
        })
        .collect();
    let media: Vec<Value> = sdp
        .media_sections()
        .into_iter()
        .filter_map(|r| match sdp.lines().get(r.start)?.kind() {
            LineKind::Media(m) => Some(json!({
                "line": r.start + 1,
                "media": text_value(&m.media),
                "port": m.port,
                "port_count": m.port_count,
                "proto": text_value(&m.proto),
                "fmts": text_value(&m.fmts),
            })),
            _ => None,
        })
        .collect();
    let origin = sdp.origin().map(|o| {
        json!({
            "username": text_value(&o.username),
            "sess_id": text_value(&o.sess_id),
            "sess_version": o.sess_version,
            "nettype": text_value(&o.nettype),
            "addrtype": text_value(&o.addrtype),
            "address": text_value(&o.address),
        })
    });
    let msrp = sdp.msrp_media().map(|m| {
        json!({
            "line": m.index + 1,
            "port": m.port,
            "protocol": m.protocol.as_str(),
            "connection": m.connection.as_ref().map(connection),
            "path": texts(&m.path),
            "accept_types": texts(&m.accept_types),
            "accept_wrapped_types": texts(&m.accept_wrapped_types),
            "max_size": m.max_size,
            "setup": m.setup.map(|s| s.as_str()),
            "msrp_cema": m.msrp_cema,
            "direction": m.direction.as_str(),
        })
    });
    Ok(json!({
        "format": "sdp",
        "length": input.len(),
        "lines": lines,
        "origin": origin,
        "media": media,
        "msrp": msrp,
        "msrp_usable": sdp.require_msrp().err().map_or(Value::Bool(true), |e| Value::String(e.to_string())),
    }))
}
