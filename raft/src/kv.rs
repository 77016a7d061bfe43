//! A small key-value state machine over JSON ops, for the conformance
//! suite, the cluster test and the example: the ops a host's log would
//! carry, applied in log order.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use futures_util::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::type_config::alias::SnapshotOf;
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, StoredMembershipOf};
use openraft::EntryPayload;
use serde::{Deserialize, Serialize};

/// An op: set `key` to `value`, or remove it when `value` is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    pub key: String,
    pub value: Option<String>,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.value {
            Some(value) => write!(f, "set {}={}", self.key, value),
            None => write!(f, "remove {}", self.key),
        }
    }
}

/// What applying an op found: the key's value before it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub previous: Option<String>,
}

openraft::declare_raft_types!(
    /// The type config of a key-value op log replicated with openraft.
    pub KvConfig:
        D = Op,
        R = Reply,
);

/// The applied state, which a snapshot carries whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogIdOf<KvConfig>>,
    membership: StoredMembershipOf<KvConfig>,
    data: BTreeMap<String, String>,
}

/// The last snapshot built or installed: its meta and its bytes.
type Current = Arc<Mutex<Option<(SnapshotMetaOf<KvConfig>, Vec<u8>)>>>;

/// The key-value state machine, in memory. Its snapshot builder is a copy
/// of it that shares where the current snapshot is kept.
#[derive(Debug, Clone, Default)]
pub struct KvStateMachine {
    applied: Applied,
    snapshot: Current,
}

impl KvStateMachine {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.applied.data.get(key).map(String::as_str)
    }

    /// Every key and value.
    pub fn data(&self) -> &BTreeMap<String, String> {
        &self.applied.data
    }
}

impl RaftSnapshotBuilder<KvConfig> for KvStateMachine {
    type SnapshotData = Vec<u8>;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<KvConfig, Vec<u8>>, io::Error> {
        let data = serde_json::to_vec(&self.applied).map_err(io::Error::other)?;
        let meta = SnapshotMetaOf::<KvConfig> {
            last_log_id: self.applied.last_applied,
            last_membership: self.applied.membership.clone(),
        };
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((meta.clone(), data.clone()));
        Ok(Snapshot {
            meta,
            snapshot: data,
        })
    }
}

impl RaftStateMachine<KvConfig> for KvStateMachine {
    type SnapshotData = Vec<u8>;
    type SnapshotBuilder = KvStateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogIdOf<KvConfig>>, StoredMembershipOf<KvConfig>), io::Error> {
        Ok((self.applied.last_applied, self.applied.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder<KvConfig>, io::Error>> + Unpin + Send,
    {
        while let Some((entry, responder)) = entries.try_next().await? {
            self.applied.last_applied = Some(entry.log_id());
            let reply = match entry.payload {
                EntryPayload::Blank => Reply::default(),
                EntryPayload::Normal(op) => Reply {
                    previous: match op.value {
                        Some(value) => self.applied.data.insert(op.key, value),
                        None => self.applied.data.remove(&op.key),
                    },
                },
                EntryPayload::Membership(membership) => {
                    self.applied.membership =
                        StoredMembershipOf::<KvConfig>::new(Some(entry.log_id), membership);
                    Reply::default()
                }
            };
            if let Some(responder) = responder {
                responder.send(reply);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<KvConfig>,
        snapshot: Vec<u8>,
    ) -> Result<(), io::Error> {
        self.applied = serde_json::from_slice(&snapshot).map_err(io::Error::other)?;
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = Some((meta.clone(), snapshot));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<KvConfig, Vec<u8>>>, io::Error> {
        let current = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        Ok(current.clone().map(|(meta, data)| Snapshot {
            meta,
            snapshot: data,
        }))
    }
}
