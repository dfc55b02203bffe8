//! Level 26: a data directory belongs to one node of one cluster (`meta.properties`), and the
//! metadata log's name is not a topic.
//!
//! A server refuses to start on another node's directory, on a directory of another cluster,
//! or on one whose metadata log is gone (a fresh quorum would not know the topics and the
//! broker would delete every partition as a stray); each refusal exits non-zero with a clear
//! message and leaves every partition directory in place.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{create_topic, run_with_timeout, CResult, Server};

/// Runs `runnel server` on `data_dir` and expects it to refuse to start.
fn refused(data_dir: &std::path::Path, node_id: i32) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_runnel"));
    cmd.arg("server")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", common::free_port()))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--node-id")
        .arg(node_id.to_string())
        .env("RUST_LOG", "info");
    let (ok, out) = run_with_timeout(&mut cmd, Duration::from_secs(30));
    assert!(!ok, "the server must refuse to start:\n{out}");
    assert!(
        out.contains("[exit: "),
        "the server must exit by itself:\n{out}"
    );
    out
}

#[test]
fn a_data_directory_is_tied_to_its_node_and_cluster() -> CResult<()> {
    let mut server = Server::start();
    let err = create_topic(server.socket_addr(), "__cluster_metadata", 1)
        .expect_err("the metadata log's name is reserved");
    assert!(err.to_string().contains("error_code: 17"), "{err}");
    create_topic(server.socket_addr(), "keep", 2)?;
    let data = server.data_dir();
    let props = std::fs::read_to_string(data.join("meta.properties"))?;
    assert!(props.contains("version=1"), "{props}");
    assert!(props.contains("node.id=1"), "{props}");
    let cluster = props
        .lines()
        .find_map(|l| l.strip_prefix("cluster.id="))
        .expect("cluster.id")
        .to_string();
    server.sigkill();

    let out = refused(&data, 2);
    assert!(
        out.contains("node.id 1") && out.contains("node.id 2"),
        "{out}"
    );

    std::fs::write(
        data.join("meta.properties"),
        "version=1\nnode.id=1\ncluster.id=AnotherClusterXXXXXXXX\n",
    )?;
    let out = refused(&data, 1);
    assert!(
        out.contains("AnotherClusterXXXXXXXX") && out.contains(&cluster),
        "{out}"
    );
    assert!(data.join("keep-0/partition.metadata").exists());
    assert!(data.join("keep-1/partition.metadata").exists());

    std::fs::write(
        data.join("meta.properties"),
        format!("version=1\nnode.id=1\ncluster.id={cluster}\n"),
    )?;
    std::fs::remove_dir_all(data.join("__cluster_metadata-0"))?;
    let out = refused(&data, 1);
    assert!(out.contains("the metadata log is missing"), "{out}");
    assert!(data.join("keep-0/partition.metadata").exists());
    assert!(data.join("keep-1/partition.metadata").exists());
    Ok(())
}
