//! One node process: a Raft node on its lamplog directory, serving the
//! wire on its address, talking to its peers over TCP.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lamplog_raft::kv::{self, KvConfig, KvRaft, KvStateMachine, Op};
use openraft::async_runtime::watch::WatchReceiver;
use openraft::errors::{
    InitializeError, NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};
use openraft::{BasicNode, Config, RPCTypes, Snapshot, SnapshotPolicy};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};

use crate::wire::{
    read_frame, write_frame, CallError, Connection, Reply, Request, Status, Written,
};

/// What a node process is told to be (in an environment variable, as JSON).
#[derive(Clone, Serialize, Deserialize)]
pub struct NodeSpec {
    pub id: u64,
    pub dir: PathBuf,
    /// Every node's address, this one's included.
    pub addrs: BTreeMap<u64, String>,
}

/// Runs node `spec` until the process is killed.
pub async fn run(spec: NodeSpec) -> io::Result<()> {
    let config = Config {
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(20_000),
        max_in_snapshot_log_to_keep: 1_000,
        ..Config::default()
    }
    .validate()
    .map_err(io::Error::other)?;
    // Bound first: a port in use fails the node before it opens its log.
    let listener = TcpListener::bind(&spec.addrs[&spec.id]).await?;
    let (raft, _) = kv::start(
        spec.id,
        &spec.dir,
        Arc::new(config),
        Peers { from: spec.id },
    )
    .await?;
    eprintln!("node {} listens on {}", spec.id, spec.addrs[&spec.id]);
    // The controller holds this process's stdin: when it goes, so does
    // the node (a kill -9 of the node is the controller's to make).
    tokio::spawn(async {
        let mut sink = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink).await;
        std::process::exit(0);
    });
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(serve(stream, raft.clone(), spec.clone()));
    }
}

/// Answers the requests of one connection, in turn.
async fn serve(mut stream: TcpStream, raft: KvRaft, spec: NodeSpec) {
    while let Ok(Some(request)) = read_frame::<Request>(&mut stream).await {
        let reply = answer(&raft, &spec, request).await;
        if write_frame(&mut stream, &reply).await.is_err() {
            return;
        }
    }
}

fn json(value: impl Serialize) -> Reply {
    serde_json::to_value(value).map_err(|e| e.to_string())
}

async fn answer(raft: &KvRaft, spec: &NodeSpec, request: Request) -> Reply {
    match request {
        Request::Append(rpc) => json(raft.append_entries(rpc).await.map_err(|e| e.to_string())?),
        Request::Vote(rpc) => json(raft.vote(rpc).await.map_err(|e| e.to_string())?),
        Request::Snapshot { vote, meta, data } => {
            let snapshot = Snapshot {
                meta,
                snapshot: data.into_bytes(),
            };
            json(
                raft.install_full_snapshot(vote, snapshot)
                    .await
                    .map_err(|e| e.to_string())?,
            )
        }
        Request::Init => {
            let members: BTreeMap<u64, BasicNode> = spec
                .addrs
                .iter()
                .map(|(&id, addr)| (id, BasicNode::new(addr)))
                .collect();
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => json(()),
                Err(e) => Err(e.to_string()),
            }
        }
        Request::Write(op) => write(raft, spec, op).await,
        Request::Get(key) => json(
            machine(raft, move |sm| sm.get(&key).map(str::to_owned))
                .await
                .map_err(|e| e.to_string())?,
        ),
        Request::Dump => json(
            machine(raft, |sm| sm.data().clone())
                .await
                .map_err(|e| e.to_string())?,
        ),
        Request::Status => {
            let m = raft.metrics().borrow_watched().clone();
            json(Status {
                id: m.id,
                dir: spec.dir.clone(),
                state: format!("{:?}", m.state),
                term: m.current_term,
                leader: m.current_leader,
                last_log: m.last_log_index,
                applied: m.last_applied.map(|l| l.index),
                snapshot: m.snapshot.map(|l| l.index),
            })
        }
    }
}

/// Writes `op` if this node leads, or forwards it to the leader.
async fn write(raft: &KvRaft, spec: &NodeSpec, op: Op) -> Reply {
    match raft.client_write(op.clone()).await {
        Ok(written) => json(Written {
            index: written.log_id.index,
            leader: spec.id,
        }),
        Err(e) => match e.forward_to_leader() {
            Some(forward) => match (&forward.leader_id, &forward.leader_node) {
                (Some(leader), Some(node)) if *leader != spec.id => json(
                    Connection::new(&node.addr)
                        .call::<Written>(&Request::Write(op))
                        .await
                        .map_err(|e| format!("forwarded to node {leader}: {e}"))?,
                ),
                _ => Err(format!(
                    "no leader: a majority of the nodes must be up to elect one ({e})"
                )),
            },
            None => Err(e.to_string()),
        },
    }
}

/// `f` of the state machine.
async fn machine<V: Send + 'static>(
    raft: &KvRaft,
    f: impl FnOnce(&KvStateMachine) -> V + Send + 'static,
) -> Result<V, openraft::errors::Fatal<KvConfig>> {
    raft.with_state_machine(move |sm: &mut KvStateMachine| {
        let value = f(sm);
        Box::pin(async move { value })
    })
    .await
}

/// The node's side of its peers: a TCP client per peer.
struct Peers {
    from: u64,
}

struct Peer {
    from: u64,
    target: u64,
    connection: Connection,
}

impl RaftNetworkFactory<KvConfig> for Peers {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            from: self.from,
            target,
            connection: Connection::new(&node.addr),
        }
    }
}

impl Peer {
    /// Sends `request` within `ttl`; a call that outlives it drops the
    /// connection.
    async fn call<T: serde::de::DeserializeOwned>(
        &mut self,
        request: Request,
        ttl: Duration,
        action: RPCTypes,
    ) -> Result<T, RPCError<KvConfig>> {
        match tokio::time::timeout(ttl, self.connection.call(&request)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e @ CallError::Unreachable(_))) => Err(Unreachable::new(&e).into()),
            Ok(Err(e @ CallError::Refused(_))) => Err(NetworkError::new(&e).into()),
            Err(_) => {
                self.connection = Connection::new(self.connection.addr());
                Err(Timeout {
                    action,
                    id: self.from,
                    target: self.target,
                    timeout: ttl,
                }
                .into())
            }
        }
    }
}

impl RaftNetworkV2<KvConfig> for Peer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<KvConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<KvConfig>, RPCError<KvConfig>> {
        self.call(
            Request::Append(rpc),
            option.hard_ttl(),
            RPCTypes::AppendEntries,
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<KvConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<KvConfig>, RPCError<KvConfig>> {
        self.call(Request::Vote(rpc), option.hard_ttl(), RPCTypes::Vote)
            .await
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<KvConfig>,
        snapshot: SnapshotOf<KvConfig, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<KvConfig>, StreamingError<KvConfig>> {
        let data = String::from_utf8(snapshot.snapshot)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let request = Request::Snapshot {
            vote,
            meta: snapshot.meta,
            data,
        };
        match self
            .call(request, option.hard_ttl(), RPCTypes::InstallSnapshot)
            .await
        {
            Ok(answer) => Ok(answer),
            Err(RPCError::Timeout(e)) => Err(e.into()),
            Err(RPCError::Unreachable(e)) => Err(e.into()),
            Err(RPCError::Network(e)) => Err(e.into()),
            Err(RPCError::RemoteError(e)) => Err(NetworkError::new(&e).into()),
        }
    }
}
