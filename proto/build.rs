//! Generates Rust from the .proto files with protox (no system protoc).
//! agent.proto is plain prost; ca.proto gets tonic services under the `grpc` feature.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let agent = protox::compile(["agent.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(agent)?;

    if std::env::var_os("CARGO_FEATURE_GRPC").is_some() {
        let ca = protox::compile(["ca.proto"], ["proto"])?;
        tonic_prost_build::configure()
            .build_server(true)
            .build_client(true)
            .compile_fds(ca)?;
    }
    Ok(())
}
