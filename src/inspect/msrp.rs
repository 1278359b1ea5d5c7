//! JSON rendering of a parsed msrp message for `cpm-iwf inspect msrp`.

use bytes::Bytes;
use serde_json::Value;

use super::InspectError;

/// Parse `input` and render it. Placeholder until the msrp codec lands.
pub fn render(input: Bytes) -> Result<Value, InspectError> {
    let _ = input;
    Err(InspectError("msrp: codec not built yet".into()))
}
