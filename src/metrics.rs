//! metrics: being written for issue 2.
