//! `lanyardd-fault`: `lanyardd` itself (the same `main`) built with the
//! `fault-injection` feature, for the crash harness only; never packaged.

#[path = "lanyardd.rs"]
mod lanyardd;

fn main() -> std::process::ExitCode {
    lanyardd::main()
}
