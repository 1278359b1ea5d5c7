//! Placeholder: filled in by the cpim codec work.
