//! The store under a real openraft 0.9 `Raft` of one voter: it elects itself, commits and
//! applies metadata, and after a restart from the same directory still knows what it applied.
//! There is no network (a single voter never sends an RPC); multi-node tests come with gRPC.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode, Config, Raft, ServerState};
use runnel_controller::records::{Record, TopicRecord};
use runnel_controller::store::{self, MetadataRequest, TypeConfig};
use runnel_controller::ApplyError;
use uuid::Uuid;

type Rpc<T, E = RaftError<u64>> = Result<T, RPCError<u64, BasicNode, E>>;

struct NoNetwork;

fn unreachable<E: std::error::Error>() -> RPCError<u64, BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&AnyError::error("single-node test")))
}

impl RaftNetwork<TypeConfig> for NoNetwork {
    async fn append_entries(
        &mut self,
        _rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<u64>> {
        Err(unreachable())
    }

    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>> {
        Err(unreachable())
    }

    async fn vote(&mut self, _rpc: VoteRequest<u64>, _option: RPCOption) -> Rpc<VoteResponse<u64>> {
        Err(unreachable())
    }
}

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoNetwork;

    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> NoNetwork {
        NoNetwork
    }
}

async fn start(dir: &Path) -> Raft<TypeConfig> {
    let config = Config {
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        ..Default::default()
    }
    .validate()
    .unwrap();
    // After `shutdown` openraft's state-machine task lets go of the store a moment later; the
    // directory lock is free only then.
    let mut attempts = 0;
    let (log, sm) = loop {
        match store::open(dir) {
            Ok(halves) => break halves,
            Err(_) if attempts < 250 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("store still locked after 5 s: {e}"),
        }
    };
    if attempts > 0 {
        eprintln!("store reopened after {attempts} retries");
    }
    Raft::new(1, Arc::new(config), NoNetwork, log, sm)
        .await
        .unwrap()
}

async fn lead(raft: &Raft<TypeConfig>) {
    raft.wait(Some(Duration::from_secs(10)))
        .state(ServerState::Leader, "single voter elects itself")
        .await
        .unwrap();
}

fn create(name: &str, id: u128) -> MetadataRequest {
    MetadataRequest {
        records: vec![Record::Topic(TopicRecord {
            name: name.into(),
            topic_id: Uuid::from_u128(id),
        })],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_voter_commits_and_remembers_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let raft = start(dir.path()).await;
        let members = BTreeMap::from([(1, BasicNode::new("127.0.0.1:0"))]);
        raft.initialize(members).await.unwrap();
        lead(&raft).await;
        let written = raft.client_write(create("orders", 1)).await.unwrap();
        assert!(written.data.rejected.is_empty());
        raft.trigger().snapshot().await.unwrap();
        raft.wait(Some(Duration::from_secs(10)))
            .snapshot(written.log_id, "snapshot of the write")
            .await
            .unwrap();
        raft.shutdown().await.unwrap();
    }

    let raft = start(dir.path()).await;
    assert!(raft.is_initialized().await.unwrap());
    lead(&raft).await;
    // The image survived: the same name is refused, a new one is taken.
    let again = raft.client_write(create("orders", 2)).await.unwrap();
    assert_eq!(again.data.rejected.len(), 1);
    assert_eq!(
        again.data.rejected[0].error,
        ApplyError::TopicNameExists("orders".into())
    );
    let other = raft.client_write(create("payments", 3)).await.unwrap();
    assert!(other.data.rejected.is_empty());
    raft.shutdown().await.unwrap();
}
