//! proxy: being written for issue 2.
