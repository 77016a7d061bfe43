//! A 3-node cluster on lamplog, over an in-process network (openraft's
//! router pattern): ops written through the leader, the leader killed and
//! restarted from its lamplog directory, a partitioned leader whose
//! unreplicated entries a follower must truncate, a lagging node brought up
//! to date by a snapshot, and the whole cluster restarted; after each, every
//! acknowledged op is on every node.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lamplog_raft::kv::{self, KvConfig, KvRaft, Op};
use lamplog_raft::LogReader;
use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::storage::RaftLogReader;
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{BasicNode, Config, ServerState, SnapshotPolicy};

const NODES: [u64; 3] = [1, 2, 3];
const WAIT: Duration = Duration::from_secs(20);

/// The running nodes, and which of them are cut off from the others.
#[derive(Clone, Default)]
struct Router {
    inner: Arc<Mutex<Links>>,
}

#[derive(Default)]
struct Links {
    nodes: BTreeMap<u64, KvRaft>,
    isolated: BTreeSet<u64>,
}

impl Router {
    fn links(&self) -> std::sync::MutexGuard<'_, Links> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Node `to`, if a message from `from` can reach it.
    fn reach(&self, from: u64, to: u64) -> Result<KvRaft, Unreachable<KvConfig>> {
        let links = self.links();
        if links.isolated.contains(&from) || links.isolated.contains(&to) {
            return Err(Unreachable::from_string(format!("{from} -/-> {to}")));
        }
        links
            .nodes
            .get(&to)
            .cloned()
            .ok_or_else(|| Unreachable::from_string(format!("node {to} is down")))
    }
}

/// What node `from` sends through.
struct Factory {
    from: u64,
    router: Router,
}

struct Client {
    from: u64,
    to: u64,
    router: Router,
}

impl RaftNetworkFactory<KvConfig> for Factory {
    type Network = Client;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Client {
        Client {
            from: self.from,
            to: target,
            router: self.router.clone(),
        }
    }
}

impl RaftNetworkV2<KvConfig> for Client {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<KvConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<KvConfig>, RPCError<KvConfig>> {
        let raft = self.router.reach(self.from, self.to)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<KvConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<KvConfig>, RPCError<KvConfig>> {
        let raft = self.router.reach(self.from, self.to)?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<KvConfig>,
        snapshot: SnapshotOf<KvConfig, Vec<u8>>,
        _cancel: impl std::future::Future<Output = ReplicationClosed> + Send + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<KvConfig>, StreamingError<KvConfig>> {
        let raft = self.router.reach(self.from, self.to)?;
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))
    }
}

/// The cluster, its nodes' directories and every op it acknowledged.
struct Cluster {
    router: Router,
    dir: tempfile::TempDir,
    config: Arc<Config>,
    readers: BTreeMap<u64, LogReader<KvConfig>>,
    acked: BTreeMap<String, String>,
    written: usize,
}

impl Cluster {
    async fn new() -> Cluster {
        let config = Config {
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            // Snapshots often, and no log kept behind them, so that a node
            // that falls behind needs one.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(100),
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            ..Config::default()
        };
        let mut cluster = Cluster {
            router: Router::default(),
            dir: tempfile::tempdir().expect("a temporary directory"),
            config: Arc::new(config.validate().expect("a valid config")),
            readers: BTreeMap::new(),
            acked: BTreeMap::new(),
            written: 0,
        };
        for id in NODES {
            cluster.start(id).await;
        }
        let members: BTreeMap<u64, BasicNode> = NODES
            .iter()
            .map(|&id| (id, BasicNode::new(format!("node-{id}"))))
            .collect();
        cluster
            .raft(1)
            .initialize(members)
            .await
            .expect("the cluster initializes");
        cluster
    }

    fn raft(&self, id: u64) -> KvRaft {
        self.router.links().nodes[&id].clone()
    }

    fn up(&self) -> Vec<u64> {
        self.router.links().nodes.keys().copied().collect()
    }

    /// Starts node `id` from its directory.
    async fn start(&mut self, id: u64) {
        let factory = Factory {
            from: id,
            router: self.router.clone(),
        };
        let dir = self.dir.path().join(format!("node-{id}"));
        let (raft, reader) = kv::start(id, &dir, self.config.clone(), factory)
            .await
            .expect("the node starts");
        self.readers.insert(id, reader);
        self.router.links().nodes.insert(id, raft);
    }

    /// Stops node `id` without warning to the others.
    async fn kill(&mut self, id: u64) {
        let raft = self.router.links().nodes.remove(&id).expect("node is up");
        self.readers.remove(&id);
        raft.shutdown().await.expect("the node shuts down");
    }

    /// The leader that every reachable, running node agrees on.
    async fn leader(&self) -> u64 {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let isolated = self.router.links().isolated.clone();
            let reachable: Vec<u64> = self
                .up()
                .into_iter()
                .filter(|id| !isolated.contains(id))
                .collect();
            for &id in &reachable {
                let metrics = self.raft(id).metrics().borrow_watched().clone();
                if metrics.state == ServerState::Leader && reachable.len() >= 2 {
                    return id;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no leader among {reachable:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Writes `n` ops through the leader, retrying those a leader change
    /// refused, and remembers each once acknowledged.
    async fn write(&mut self, n: usize) {
        for _ in 0..n {
            self.written += 1;
            let op = Op {
                key: format!("op \"{}\"", self.written),
                value: Some(format!("value\n{}\\ é", self.written)),
            };
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let leader = self.leader().await;
                match self.raft(leader).client_write(op.clone()).await {
                    Ok(_) => break,
                    Err(e) => {
                        assert!(tokio::time::Instant::now() < deadline, "write fails: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            self.acked
                .insert(op.key, op.value.expect("ops set a value"));
        }
    }

    /// Waits until every running node has applied the leader's whole log,
    /// then checks that each holds every acknowledged op and that their
    /// logs agree wherever two of them hold the same index.
    async fn converge(&self, step: &str) {
        let leader = self.leader().await;
        let last = self.raft(leader).metrics().borrow_watched().last_log_index;
        for id in self.up() {
            self.raft(id)
                .wait(Some(WAIT))
                .applied_index_at_least(last, format!("{step}: node {id} catches up"))
                .await
                .expect("the node catches up");
            let data = self.data(id).await;
            for (key, value) in &self.acked {
                assert_eq!(
                    data.get(key),
                    Some(value),
                    "{step}: node {id} lacks acknowledged op {key:?}"
                );
            }
        }
        let mut logs = Vec::new();
        for (&id, reader) in &self.readers {
            let entries = reader
                .clone()
                .try_get_log_entries(0..)
                .await
                .expect("entries");
            logs.push((id, entries));
        }
        let mut by_index = BTreeMap::new();
        for (id, entries) in &logs {
            for entry in entries {
                let first = by_index.entry(entry.log_id.index).or_insert((id, entry));
                assert_eq!(
                    first.1, entry,
                    "{step}: nodes {} and {id} disagree at index {}",
                    first.0, entry.log_id.index
                );
            }
        }
    }

    /// The keys and values on node `id`.
    async fn data(&self, id: u64) -> BTreeMap<String, String> {
        self.raft(id)
            .with_state_machine(|sm: &mut kv::KvStateMachine| {
                let data = sm.data().clone();
                Box::pin(async move { data })
            })
            .await
            .expect("the state machine answers")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_keep_every_acknowledged_op() {
    let mut cluster = Cluster::new().await;
    cluster.write(50).await;
    cluster.converge("first writes").await;

    // The leader dies; the others elect a new one and go on; it comes back
    // from its directory and catches up.
    let old = cluster.leader().await;
    cluster.kill(old).await;
    cluster.write(50).await;
    cluster.start(old).await;
    cluster.write(10).await;
    cluster.converge("leader killed and restarted").await;

    // The leader is cut off and takes writes it cannot replicate; the
    // others elect a new leader whose entries take those indexes. Healed,
    // the old leader must truncate its entries and take the new ones.
    let cut = cluster.leader().await;
    cluster.router.links().isolated.insert(cut);
    let stray = cluster.raft(cut);
    let before = stray.metrics().borrow_watched().last_log_index;
    let strays: Vec<_> = (0..5)
        .map(|i| {
            let stray = stray.clone();
            tokio::spawn(async move {
                let op = Op {
                    key: format!("stray {i}"),
                    value: Some("never acknowledged".into()),
                };
                tokio::time::timeout(WAIT, stray.client_write(op)).await
            })
        })
        .collect();
    let cut_last = cut_log_grows(&stray, before).await;
    cluster.write(20).await;
    cluster.router.links().isolated.clear();
    for stray in strays {
        if let Ok(Ok(Ok(_))) = stray.await {
            panic!("a write to a cut-off leader was acknowledged");
        }
    }
    cluster.converge("partitioned leader healed").await;
    let data = cluster.data(cut).await;
    assert!(
        data.keys().all(|k| !k.starts_with("stray")),
        "the cut-off leader kept entries it should have truncated \
         (its log reached {cut_last:?})"
    );

    // A follower is down while the others write past a snapshot and purge
    // the log behind it: it can only catch up from a snapshot.
    let leader = cluster.leader().await;
    let lagging = *NODES.iter().find(|&&id| id != leader).expect("a follower");
    let lagging_last = cluster
        .raft(lagging)
        .metrics()
        .borrow_watched()
        .last_log_index
        .expect("the follower has a log");
    cluster.kill(lagging).await;
    cluster.write(250).await;
    cluster
        .raft(leader)
        .wait(Some(WAIT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > lagging_last),
            "the leader purges past the lagging node's log",
        )
        .await
        .expect("the leader purges");
    cluster.start(lagging).await;
    cluster.converge("lagging node after a snapshot").await;
    let snapshot = cluster.raft(lagging).metrics().borrow_watched().snapshot;
    assert!(
        snapshot.is_some_and(|s| s.index > lagging_last),
        "the lagging node has no snapshot past its old log: {snapshot:?}"
    );

    // Every node restarts from its directory: snapshot plus log.
    for id in NODES {
        cluster.kill(id).await;
    }
    for id in NODES {
        cluster.start(id).await;
    }
    cluster.write(5).await;
    cluster.converge("whole cluster restarted").await;
    for id in NODES {
        cluster.kill(id).await;
    }
}

/// Waits until the cut-off leader has appended the stray writes locally
/// (its log was at `before` when they were made), and returns its last log
/// index.
async fn cut_log_grows(stray: &KvRaft, before: Option<u64>) -> Option<u64> {
    let grown = stray
        .wait(Some(WAIT))
        .metrics(
            |m| m.last_log_index >= before.map(|i| i + 5),
            "the cut-off leader appends its writes",
        )
        .await
        .expect("the cut-off leader appends");
    grown.last_log_index
}
