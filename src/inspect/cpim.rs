//! JSON rendering of a parsed cpim message for `cpm-iwf inspect cpim`.

use bytes::Bytes;
use serde_json::Value;

use super::InspectError;

/// Parse `input` and render it. Placeholder until the cpim codec lands.
pub fn render(input: Bytes) -> Result<Value, InspectError> {
    let _ = input;
    Err(InspectError("cpim: codec not built yet".into()))
}
