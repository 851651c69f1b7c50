//! The `gatehouse` binary: everything is in the library's `cli` module (SPEC §1).

fn main() -> std::process::ExitCode {
    gatehouse::cli::main()
}
