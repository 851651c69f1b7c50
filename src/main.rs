//! The `gatehouse` command line (SPEC §1).

fn main() {}
