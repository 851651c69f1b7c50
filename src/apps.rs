//! apps: filled in by its issue.
