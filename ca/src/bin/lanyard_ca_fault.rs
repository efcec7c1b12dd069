//! `lanyard-ca-fault`: `lanyard-ca` itself (the same `main`) built with the
//! `fault-injection` feature, for the crash harness only; never packaged.

#[path = "../main.rs"]
mod lanyard_ca;

fn main() -> std::process::ExitCode {
    lanyard_ca::main()
}
