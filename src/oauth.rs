//! oauth: filled in by its issue.
