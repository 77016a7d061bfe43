//! The cluster's wire: one request and one reply per frame (a 4-byte
//! big-endian length, then JSON), over TCP. Nodes use it between each
//! other for Raft's messages, and the controller to write and read ops.

use std::io;

use lamplog_raft::kv::{KvConfig, Op};
use openraft::raft::{AppendEntriesRequest, VoteRequest};
use openraft::type_config::alias::{SnapshotMetaOf, VoteOf};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest frame either side accepts.
const FRAME_MAX: usize = 256 << 20;

/// What a node is asked.
#[derive(Serialize, Deserialize)]
pub enum Request {
    /// Raft: append entries (or a heartbeat).
    Append(AppendEntriesRequest<KvConfig>),
    /// Raft: a vote request.
    Vote(VoteRequest<KvConfig>),
    /// Raft: install a whole snapshot.
    Snapshot {
        vote: VoteOf<KvConfig>,
        meta: SnapshotMetaOf<KvConfig>,
        data: String,
    },
    /// Make the cluster of every node (once; later calls do nothing).
    Init,
    /// Write an op through the leader (forwarded there by a follower);
    /// answered once it is committed and applied.
    Write(Op),
    /// The value of a key in this node's state machine.
    Get(String),
    /// Every key and value in this node's state machine.
    Dump,
    /// The node's role and progress.
    Status,
}

/// A node's progress, as `status` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub id: u64,
    /// The node's directory, which tells one cluster's node from another's.
    pub dir: std::path::PathBuf,
    pub state: String,
    pub term: u64,
    pub leader: Option<u64>,
    pub last_log: Option<u64>,
    pub applied: Option<u64>,
    pub snapshot: Option<u64>,
}

/// Where a written op landed.
#[derive(Debug, Serialize, Deserialize)]
pub struct Written {
    pub index: u64,
    pub leader: u64,
}

/// A reply: the answer as JSON, or what went wrong.
pub type Reply = Result<serde_json::Value, String>;

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The node could not be reached, or the connection broke.
    Unreachable(io::Error),
    /// The node answered with an error.
    Refused(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unreachable(e) => write!(f, "unreachable: {e}"),
            CallError::Refused(e) => write!(f, "refused: {e}"),
        }
    }
}

impl std::error::Error for CallError {}

pub async fn write_frame(stream: &mut TcpStream, value: &impl Serialize) -> io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(io::Error::other)?;
    let len = u32::try_from(bytes.len())
        .ok()
        .filter(|&len| len as usize <= FRAME_MAX)
        .ok_or_else(|| io::Error::other(format!("a frame of {} bytes", bytes.len())))?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(&bytes).await
}

/// The next frame, or `None` at a clean end of the stream.
pub async fn read_frame<T: DeserializeOwned>(stream: &mut TcpStream) -> io::Result<Option<T>> {
    let mut len = [0; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes"),
        ));
    }
    let mut bytes = vec![0; len];
    stream.read_exact(&mut bytes).await?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A connection to one node, made when first needed and again after it
/// breaks.
pub struct Connection {
    addr: String,
    stream: Option<TcpStream>,
}

impl Connection {
    pub fn new(addr: impl Into<String>) -> Connection {
        Connection {
            addr: addr.into(),
            stream: None,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` and decodes the answer as a `T`.
    pub async fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, CallError> {
        let reply = self.exchange(request).await.map_err(|e| {
            self.stream = None;
            CallError::Unreachable(e)
        })?;
        let value = reply.map_err(CallError::Refused)?;
        serde_json::from_value(value).map_err(|e| CallError::Refused(e.to_string()))
    }

    async fn exchange(&mut self, request: &Request) -> io::Result<Reply> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr).await?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        write_frame(stream, request).await?;
        read_frame(stream).await?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the node closed the connection",
            )
        })
    }
}
