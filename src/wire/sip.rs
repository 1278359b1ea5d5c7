//! Placeholder: filled in by the sip codec work.
