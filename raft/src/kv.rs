//! A small key-value state machine over JSON ops, for the conformance
//! suite, the cluster test and the example: the ops a host's log would
//! carry, applied in log order.
//!
//! The applied state lives in memory; its snapshots are kept in a file
//! (when opened on one) so that a restarted node starts from its last
//! snapshot and re-applies the log after it: openraft purges the log only
//! behind a snapshot, so a node that lost its snapshot would lose those
//! entries.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures_util::{Stream, TryStreamExt};
use openraft::entry::RaftEntry;
use openraft::network::{NetSnapshot, RaftNetworkFactory};
use openraft::storage::RaftLogStorage;
use openraft::storage::{EntryResponder, RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::type_config::alias::SnapshotOf;
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, StoredMembershipOf};
use openraft::{Config, EntryPayload};
use serde::{Deserialize, Serialize};

use crate::{LogReader, LogStore};

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

/// A Raft node of the key-value op log.
pub type KvRaft = openraft::Raft<KvConfig, KvStateMachine>;

/// Starts node `id` on its storage in `dir`, made if missing: the lamplog
/// store in `dir/log` and the snapshot in `dir/snapshot.json`. Also returns
/// a reader of its log, for inspection. Call it within a tokio runtime.
pub async fn start<N>(
    id: u64,
    dir: &Path,
    config: Arc<Config>,
    network: N,
) -> io::Result<(KvRaft, LogReader<KvConfig>)>
where
    N: RaftNetworkFactory<KvConfig, Network: NetSnapshot<KvConfig, SnapshotData = Vec<u8>>>,
{
    std::fs::create_dir_all(dir)?;
    let mut log = LogStore::<KvConfig>::open(dir.join("log"))?;
    let reader = log.get_log_reader().await;
    let machine = KvStateMachine::open(dir.join("snapshot.json"))?;
    let raft = KvRaft::new(id, config, network, log, machine)
        .await
        .map_err(io::Error::other)?;
    Ok((raft, reader))
}

/// The applied state, which a snapshot carries whole.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogIdOf<KvConfig>>,
    membership: StoredMembershipOf<KvConfig>,
    data: BTreeMap<String, String>,
}

/// A snapshot: its meta and its bytes (an [`Applied`] as JSON).
type Current = Option<(SnapshotMetaOf<KvConfig>, Vec<u8>)>;

/// A snapshot as its file holds it.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMetaOf<KvConfig>,
    data: String,
}

/// The key-value state machine, in memory. Its snapshot builder is a copy
/// of it that shares where the current snapshot is kept.
#[derive(Debug, Clone, Default)]
pub struct KvStateMachine {
    applied: Applied,
    snapshot: Arc<Mutex<Current>>,
    /// The file snapshots are kept in; none keeps them in memory only.
    file: Option<Arc<PathBuf>>,
}

impl KvStateMachine {
    /// A state machine whose snapshots are kept in the file `path`
    /// (written whole, synced, and renamed over the old one): it starts
    /// from the snapshot found there, if any.
    pub fn open(path: impl AsRef<Path>) -> io::Result<KvStateMachine> {
        let path = path.as_ref().to_path_buf();
        let current: Current = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("snapshot {}: {e}", path.display()),
                    )
                })?;
                Some((file.meta, file.data.into_bytes()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let applied = match &current {
            Some((_, data)) => serde_json::from_slice(data).map_err(io::Error::other)?,
            None => Applied::default(),
        };
        Ok(KvStateMachine {
            applied,
            snapshot: Arc::new(Mutex::new(current)),
            file: Some(Arc::new(path)),
        })
    }

    /// Keeps `meta` and `data` as the current snapshot: in its file first,
    /// durably, when there is one.
    fn keep(&self, meta: &SnapshotMetaOf<KvConfig>, data: &[u8]) -> io::Result<()> {
        if let Some(path) = &self.file {
            let file = SnapshotFile {
                meta: meta.clone(),
                data: String::from_utf8(data.to_vec()).map_err(io::Error::other)?,
            };
            write_durably(path, &serde_json::to_vec(&file).map_err(io::Error::other)?)?;
        }
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((meta.clone(), data.to_vec()));
        Ok(())
    }

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
        self.keep(&meta, &data)?;
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
        let applied = serde_json::from_slice(&snapshot).map_err(io::Error::other)?;
        self.keep(meta, &snapshot)?;
        self.applied = applied;
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

/// Replaces the file at `path` with `bytes`, so that a crash leaves the old
/// file or the new one, whole: a temporary file, synced, renamed over it,
/// and the directory synced.
fn write_durably(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)?;
    std::fs::File::open(dir)?.sync_all()
}
