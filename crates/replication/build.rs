//! Compiles `proto/replication.proto` with protox (no `protoc` needed) into tonic code.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let file = root.join("replication.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    let fds = protox::compile([&file], [&root])?;
    tonic_prost_build::configure()
        .bytes(".")
        .build_transport(true)
        .compile_fds(fds)?;
    Ok(())
}
