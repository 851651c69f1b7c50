//! ui: filled in by its issue.
