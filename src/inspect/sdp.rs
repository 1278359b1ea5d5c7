//! JSON rendering of a parsed sdp message for `cpm-iwf inspect sdp`.

use bytes::Bytes;
use serde_json::Value;

use super::InspectError;

/// Parse `input` and render it. Placeholder until the sdp codec lands.
pub fn render(input: Bytes) -> Result<Value, InspectError> {
    let _ = input;
    Err(InspectError("sdp: codec not built yet".into()))
}
