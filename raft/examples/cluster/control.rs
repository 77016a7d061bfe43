//! The controller: starts the node processes, kills them (kill -9) and
//! restarts them, and writes and reads ops through them, keeping every op
//! the cluster acknowledged so that `check` can look for each on every
//! node.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lamplog_raft::kv::Op;

use crate::node::NodeSpec;
use crate::wire::{CallError, Connection, Request, Status, Written};

/// How long a command keeps retrying (an election, a node starting).
const PATIENCE: Duration = Duration::from_secs(15);

/// The most concurrent clients of `bench` (a connection each).
const CLIENTS_MAX: usize = 4096;

/// How to run this program as a node: its path, the arguments that make it
/// one, and the environment variable that carries the node's spec.
pub struct Launcher {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: &'static str,
}

pub struct Cluster {
    dir: PathBuf,
    addrs: BTreeMap<u64, String>,
    launcher: Launcher,
    running: BTreeMap<u64, Child>,
    /// Every op the cluster acknowledged: key, value.
    acked: BTreeMap<String, String>,
    /// Which node the next write goes through.
    turn: usize,
    /// Bench runs so far: each writes keys of its own.
    benches: usize,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.running.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub const HELP: &str = "\
commands:
  put KEY VALUE...       write an op through the next node in turn
  put@N KEY VALUE...     write an op through node N (a follower forwards it)
  get KEY                the key's value on every running node
  status                 each node's role, term, last log index, applied index
  kill N | kill leader   kill -9 a node process
  start N                restart a node from its lamplog directory
  check                  wait until every running node holds every acknowledged op
  bench N [C]            N writes from C concurrent clients through the leader
  help, quit";

impl Cluster {
    /// Starts one process per address, with directories under `dir`, and
    /// makes them a cluster (a cluster already made just restarts).
    pub async fn launch(
        dir: PathBuf,
        addrs: BTreeMap<u64, String>,
        launcher: Launcher,
    ) -> Result<Cluster, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut cluster = Cluster {
            dir,
            addrs,
            launcher,
            running: BTreeMap::new(),
            acked: BTreeMap::new(),
            turn: 0,
            benches: 0,
        };
        let ids: Vec<u64> = cluster.addrs.keys().copied().collect();
        for &id in &ids {
            cluster.start(id).await?;
        }
        cluster.retry::<()>(ids[0], &Request::Init).await?;
        Ok(cluster)
    }

    /// Runs one command line, printing what it finds.
    pub async fn execute(&mut self, line: &str) -> Result<(), String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => Ok(()),
            ["help"] => {
                println!("{HELP}");
                Ok(())
            }
            [put, key, value @ ..] if put.starts_with("put") && !value.is_empty() => {
                let via = match put.strip_prefix("put@") {
                    Some(n) => Some(self.node_id(n)?),
                    None if *put == "put" => None,
                    None => return Err(format!("unknown command {put:?}")),
                };
                let op = Op {
                    key: key.to_string(),
                    value: Some(value.join(" ")),
                };
                let written = self.put(op, via).await?;
                println!(
                    "ok: {key} at index {} (leader {})",
                    written.index, written.leader
                );
                Ok(())
            }
            ["get", key] => {
                for id in self.up() {
                    let value: Result<Option<String>, _> =
                        self.connect(id).call(&Request::Get(key.to_string())).await;
                    match value {
                        Ok(value) => println!("node {id}: {value:?}"),
                        Err(e) => println!("node {id}: {e}"),
                    }
                }
                Ok(())
            }
            ["status"] => {
                for id in self.addrs.keys().copied() {
                    if !self.running.contains_key(&id) {
                        println!("node {id}: killed");
                        continue;
                    }
                    match self.connect(id).call::<Status>(&Request::Status).await {
                        Ok(s) => println!(
                            "node {id}: {}, term {}, leader {:?}, last log {:?}, applied {:?}, snapshot {:?}",
                            s.state, s.term, s.leader, s.last_log, s.applied, s.snapshot
                        ),
                        Err(e) => println!("node {id}: {e}"),
                    }
                }
                Ok(())
            }
            ["kill", "leader"] => {
                let leader = self.leader().await?;
                self.kill(leader)
            }
            ["kill", n] => {
                let id = self.node_id(n)?;
                self.kill(id)
            }
            ["start", n] => {
                let id = self.node_id(n)?;
                self.start(id).await
            }
            ["check"] => self.check().await,
            ["bench", n] => self.bench(parse(n)?, 64).await,
            ["bench", n, c] => self.bench(parse(n)?, parse(c)?).await,
            _ => Err(format!("unknown command {line:?} (try help)")),
        }
    }

    fn node_id(&self, n: &str) -> Result<u64, String> {
        parse(n).and_then(|id| {
            self.addrs
                .contains_key(&id)
                .then_some(id)
                .ok_or_else(|| format!("no node {id}"))
        })
    }

    fn up(&self) -> Vec<u64> {
        self.running.keys().copied().collect()
    }

    fn connect(&self, id: u64) -> Connection {
        Connection::new(&self.addrs[&id])
    }

    /// Starts node `id`'s process and waits until it answers.
    async fn start(&mut self, id: u64) -> Result<(), String> {
        if self.running.contains_key(&id) {
            return Err(format!("node {id} is running"));
        }
        let spec_dir = self.dir.join(format!("node-{id}"));
        let spec = NodeSpec {
            id,
            dir: spec_dir.clone(),
            addrs: self.addrs.clone(),
        };
        let log = self.dir.join(format!("node-{id}.out"));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(&self.launcher.program)
            .args(&self.launcher.args)
            .env(
                self.launcher.env,
                serde_json::to_string(&spec).map_err(|e| e.to_string())?,
            )
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting node {id}: {e}"))?;
        self.running.insert(id, child);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let exited = self
                .running
                .get_mut(&id)
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.running.remove(&id);
                return Err(format!(
                    "node {id} exited ({status}): see {}",
                    log.display()
                ));
            }
            match self.connect(id).call::<Status>(&Request::Status).await {
                // A node of another cluster on the port is not this node.
                Ok(status) if status.dir != spec_dir => {
                    return Err(format!(
                        "{} answers as the node in {}: is another cluster running?",
                        self.addrs[&id],
                        status.dir.display()
                    ))
                }
                Ok(_) => break,
                Err(e) if Instant::now() > deadline => return Err(format!("node {id}: {e}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        println!("node {id} is up (pid {})", self.running[&id].id());
        Ok(())
    }

    fn kill(&mut self, id: u64) -> Result<(), String> {
        let mut child = self
            .running
            .remove(&id)
            .ok_or_else(|| format!("node {id} is not running"))?;
        child.kill().map_err(|e| e.to_string())?;
        child.wait().map_err(|e| e.to_string())?;
        println!("node {id} killed (kill -9)");
        Ok(())
    }

    /// Calls node `id` until it answers or patience runs out.
    async fn retry<T: serde::de::DeserializeOwned>(
        &self,
        id: u64,
        request: &Request,
    ) -> Result<T, String> {
        let deadline = Instant::now() + PATIENCE;
        let mut connection = self.connect(id);
        loop {
            match connection.call(request).await {
                Ok(answer) => return Ok(answer),
                Err(e) if Instant::now() > deadline => return Err(format!("node {id}: {e}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// The leader, as a running node reports it.
    async fn leader(&self) -> Result<u64, String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            for id in self.up() {
                if let Ok(status) = self.connect(id).call::<Status>(&Request::Status).await {
                    if let Some(leader) = status.leader.filter(|l| self.running.contains_key(l)) {
                        return Ok(leader);
                    }
                }
            }
            if Instant::now() > deadline {
                return Err("no leader among the running nodes".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes `op` through node `via` (or the next in turn), retrying
    /// through the others while there is no leader.
    async fn put(&mut self, op: Op, via: Option<u64>) -> Result<Written, String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let up = self.up();
            if up.is_empty() {
                return Err("no node is running".into());
            }
            let id = via.unwrap_or_else(|| {
                self.turn += 1;
                up[self.turn % up.len()]
            });
            match self
                .connect(id)
                .call::<Written>(&Request::Write(op.clone()))
                .await
            {
                Ok(written) => {
                    let value = op.value.clone().unwrap_or_default();
                    self.acked.insert(op.key, value);
                    return Ok(written);
                }
                Err(e) if Instant::now() > deadline => return Err(format!("node {id}: {e}")),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Waits until every running node holds every acknowledged op.
    async fn check(&self) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut missing = Vec::new();
            for id in self.up() {
                let data: Result<BTreeMap<String, String>, CallError> =
                    self.connect(id).call(&Request::Dump).await;
                let lacks = match data {
                    Ok(data) => self
                        .acked
                        .iter()
                        .filter(|(k, v)| data.get(*k) != Some(*v))
                        .count(),
                    Err(_) => self.acked.len(),
                };
                if lacks > 0 {
                    missing.push(format!("node {id} lacks {lacks}"));
                }
            }
            if missing.is_empty() {
                println!(
                    "every acknowledged op ({}) is on every running node {:?}",
                    self.acked.len(),
                    self.up()
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "of {} acknowledged ops: {}",
                    self.acked.len(),
                    missing.join(", ")
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `n` writes from `clients` concurrent clients through the leader.
    async fn bench(&mut self, n: usize, clients: usize) -> Result<(), String> {
        if n == 0 || !(1..=CLIENTS_MAX).contains(&clients) {
            return Err(format!(
                "bench needs at least one write, and 1 to {CLIENTS_MAX} clients"
            ));
        }
        let leader = self.leader().await?;
        let addr = self.addrs[&leader].clone();
        self.benches += 1;
        let run = self.benches;
        let started = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let mut connection = Connection::new(&addr);
                let count = n / clients + usize::from(c < n % clients);
                tokio::spawn(async move {
                    let mut done = Vec::with_capacity(count);
                    for i in 0..count {
                        let op = Op {
                            key: format!("bench{run}-{c}-{i}"),
                            value: Some(format!("{}", started.elapsed().as_nanos())),
                        };
                        let sent = Instant::now();
                        connection
                            .call::<Written>(&Request::Write(op.clone()))
                            .await
                            .map_err(|e| e.to_string())?;
                        done.push((op, sent.elapsed()));
                    }
                    Ok::<_, String>(done)
                })
            })
            .collect();
        let mut latencies = Vec::with_capacity(n);
        let mut failed = None;
        for task in tasks {
            match task.await.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(done) => {
                    for (op, latency) in done {
                        self.acked.insert(op.key, op.value.unwrap_or_default());
                        latencies.push(latency);
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        let elapsed = started.elapsed();
        latencies.sort();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        if !latencies.is_empty() {
            println!(
                "{} durable writes through leader {leader} from {clients} clients in {:.2} s: \
                 {:.0} ops/s, latency p50 {:.2} ms, p99 {:.2} ms",
                latencies.len(),
                elapsed.as_secs_f64(),
                latencies.len() as f64 / elapsed.as_secs_f64(),
                at(0.5).as_secs_f64() * 1e3,
                at(0.99).as_secs_f64() * 1e3,
            );
        }
        match failed {
            Some(e) => Err(format!("a client failed: {e}")),
            None => Ok(()),
        }
    }
}

fn parse<T: std::str::FromStr>(word: &str) -> Result<T, String> {
    word.parse()
        .map_err(|_| format!("{word:?} is not a number"))
}
