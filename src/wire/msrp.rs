//! Placeholder: filled in by the msrp codec work.
