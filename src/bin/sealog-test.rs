//! `sealog-test`: the `sealog` program with its test hooks honoured
//! (`SEALOG_CLOCK_SKEW_MS`, `--bench-floor`). Built only with the
//! `test-hooks` feature, which `cargo test` and `cargo bench` turn on and
//! release builds do not: never ship it.

#[path = "../main.rs"]
mod program;

fn main() -> std::process::ExitCode {
    program::main()
}
