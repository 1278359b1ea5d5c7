//! Placeholder: filled in by the iscomposing codec work.
