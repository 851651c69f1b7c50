//! error: being written for issue 2.
