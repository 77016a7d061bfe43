//! What the adapter's scenario tests share: entries with JSON that needs
//! escaping, and an append that waits for its callback.

use std::io;

use lamplog_raft::kv::{KvConfig, Op};
use lamplog_raft::LogStore;
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::testing::log_id;
use openraft::type_config::alias::EntryOf;
use openraft::type_config::TypeConfigExt;
use openraft::EntryPayload;

/// Entry `index` of `term`: an op whose value needs escaping, or a removal.
pub fn entry(term: u64, index: u64) -> EntryOf<KvConfig> {
    EntryOf::<KvConfig> {
        log_id: log_id::<KvConfig>(term, 1, index),
        payload: EntryPayload::Normal(Op {
            key: format!("k{}", index % 7),
            value: (!index.is_multiple_of(5)).then(|| format!("v{index}-\"quoted\"-{term}")),
        }),
    }
}

/// Appends `entries` and waits until openraft's callback says they are
/// durable.
pub async fn append(
    store: &mut LogStore<KvConfig>,
    entries: Vec<EntryOf<KvConfig>>,
) -> io::Result<()> {
    let (tx, rx) = KvConfig::oneshot();
    store.append(entries, IOFlushed::signal(tx)).await?;
    rx.await.expect("the callback fires")
}
