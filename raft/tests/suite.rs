//! openraft's own conformance suite for log stores, on lamplog with the
//! key-value state machine.

use lamplog_raft::kv::{KvConfig, KvStateMachine};
use lamplog_raft::LogStore;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;

struct Builder;

impl StoreBuilder<KvConfig, LogStore<KvConfig>, KvStateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore<KvConfig>, KvStateMachine), StorageError<KvConfig>>
    {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = LogStore::open(dir.path()).expect("a log store opens");
        Ok((dir, store, KvStateMachine::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite_passes() {
    Suite::test_all(Builder)
        .await
        .expect("every test of the suite passes");
}
