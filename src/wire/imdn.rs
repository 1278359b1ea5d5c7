//! Placeholder: filled in by the imdn codec work.
