//! Compiles `proto/*.proto` with protox (pure Rust: no `protoc` needed) and generates the tonic
//! clients and servers.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [root.join("raft.proto"), root.join("controller.proto")];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let fds = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_transport(true)
        .compile_fds(fds)?;
    Ok(())
}
