//! openraft's storage conformance suite (`openraft::testing::Suite`) against the sled store.
//! Every case gets a fresh database in its own temporary directory.

use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageError, StorageIOError};
use runnel_controller::store::{self, LogStore, StateMachine, StoreError, TypeConfig};
use tempfile::TempDir;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for SledBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let (log, sm) = store::open(dir.path()).map_err(|e| match e {
            StoreError::Storage(e) => *e,
            StoreError::Io(e) => StorageIOError::write(AnyError::new(&e)).into(),
        })?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    // The suite builds its own runtime per case, so this test must not run inside one.
    if let Err(e) = Suite::test_all(SledBuilder) {
        panic!("openraft storage suite failed: {e}");
    }
}
