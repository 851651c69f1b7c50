//! config: being written for issue 2.
