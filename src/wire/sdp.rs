//! Placeholder: filled in by the sdp codec work.
