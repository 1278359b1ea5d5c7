//! JSON rendering of a parsed imdn message for `cpm-iwf inspect imdn`.

use bytes::Bytes;
use serde_json::Value;

use super::InspectError;

/// Parse `input` and render it. Placeholder until the imdn codec lands.
pub fn render(input: Bytes) -> Result<Value, InspectError> {
    let _ = input;
    Err(InspectError("imdn: codec not built yet".into()))
}
