//! auth: filled in by its issue.
