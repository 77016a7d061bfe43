//! Three lamplog-raft nodes, each its own process on 127.0.0.1, and a
//! prompt to write ops through any of them, kill -9 the leader, restart it,
//! and check that no acknowledged op was lost:
//!
//! ```text
//! cargo run --release -p lamplog-raft --example cluster
//! ```
//!
//! Options: `--dir DIR` (the nodes' directories, `.lamplog-raft-cluster` by
//! default; a cluster found there restarts with its log), `--fresh` (remove
//! it first), `--port P` (nodes listen on P+1, P+2, P+3; 21000 by default).
//! Commands come from stdin, so a script can be piped in:
//!
//! ```text
//! printf 'put a 1\nkill leader\nput b 2\ncheck\n' | cargo run --release -p lamplog-raft --example cluster -- --fresh
//! ```

mod control;
mod node;
mod wire;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use tokio::io::AsyncBufReadExt;

use control::{Cluster, Launcher, HELP};

/// The environment variable that makes this program a node: its spec, as
/// JSON.
const NODE_ENV: &str = "LAMPLOG_RAFT_CLUSTER_NODE";

const USAGE: &str = "usage: cluster [--dir DIR] [--fresh] [--port P]";

fn main() -> ExitCode {
    if let Ok(spec) = std::env::var(NODE_ENV) {
        return run_node(&spec);
    }
    let mut dir = PathBuf::from(".lamplog-raft-cluster");
    let mut fresh = false;
    let mut port: u16 = 21000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let parsed = match arg.as_str() {
            "--dir" => args
                .next()
                .map(|d| dir = d.into())
                .ok_or("--dir needs a path"),
            "--fresh" => {
                fresh = true;
                Ok(())
            }
            "--port" => args
                .next()
                .and_then(|p| p.parse().ok())
                .filter(|&p: &u16| p <= u16::MAX - 3)
                .map(|p| port = p)
                .ok_or("--port needs a number below 65533"),
            "--help" | "-h" => {
                println!("{USAGE}\n\n{HELP}");
                return ExitCode::SUCCESS;
            }
            _ => Err("unknown option"),
        };
        if let Err(e) = parsed {
            eprintln!("{arg}: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    if fresh {
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("{}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let addrs = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", port + id as u16)))
        .collect();
    let launcher = match std::env::current_exe() {
        Ok(program) => Launcher {
            program,
            args: Vec::new(),
            env: NODE_ENV,
        },
        Err(e) => {
            eprintln!("cannot find this program to start nodes: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime().block_on(prompt(dir, addrs, launcher))
}

/// Launches the cluster and runs the commands of stdin.
async fn prompt(dir: PathBuf, addrs: BTreeMap<u64, String>, launcher: Launcher) -> ExitCode {
    println!("starting 3 nodes in {} ...", dir.display());
    let mut cluster = match Cluster::launch(dir.clone(), addrs, launcher).await {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!(
                "error: {e} (the nodes' output is in {}/node-*.out)",
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let interactive = std::io::stdin().is_terminal();
    if interactive {
        println!("{HELP}");
    }
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let mut failed = false;
    loop {
        if interactive {
            print!("> ");
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            _ => break,
        };
        if !interactive {
            println!("> {line}");
        }
        if matches!(line.trim(), "quit" | "exit") {
            break;
        }
        if let Err(e) = cluster.execute(&line).await {
            println!("error: {e}");
            failed = true;
        }
    }
    if failed && !interactive {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn run_node(spec: &str) -> ExitCode {
    let spec: node::NodeSpec = match serde_json::from_str(spec) {
        Ok(spec) => spec,
        Err(e) => {
            eprintln!("{NODE_ENV}: {e}");
            return ExitCode::from(2);
        }
    };
    let id = spec.id;
    match runtime().block_on(node::run(spec)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("node {id}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node processes of the test below: this test binary, told by the
    /// environment to be a node (and a no-op otherwise).
    #[test]
    fn node_process_entry() {
        if let Ok(spec) = std::env::var(NODE_ENV) {
            std::process::exit(match run_node(&spec) {
                ExitCode::SUCCESS => 0,
                _ => 1,
            });
        }
    }

    /// Free ports on 127.0.0.1, for three nodes.
    fn free_addrs() -> BTreeMap<u64, String> {
        let listeners: Vec<_> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
            .collect();
        (1..=3)
            .zip(&listeners)
            .map(|(id, l)| (id, l.local_addr().expect("an address").to_string()))
            .collect()
    }

    /// Kill -9 of node processes, the leader first, against the model of
    /// every acknowledged op: each must be on every node afterwards.
    #[test]
    fn killed_node_processes_lose_no_acknowledged_op() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let launcher = Launcher {
            program: std::env::current_exe().expect("this test binary"),
            args: [
                "tests::node_process_entry",
                "--exact",
                "--nocapture",
                "--quiet",
            ]
            .map(String::from)
            .to_vec(),
            env: NODE_ENV,
        };
        let script = [
            "put a 1",
            "put@2 \"quoted\" key value with spaces",
            "put@3 é ünïcode\\",
            "bench 300 16",
            "check",
            "kill leader",
            "put b 2",
            "bench 200 16",
            "start 1",
            "start 2",
            "start 3",
            "kill 2",
            "put c 3",
            "start 2",
            "check",
        ];
        runtime().block_on(async {
            let mut cluster = Cluster::launch(dir.path().to_path_buf(), free_addrs(), launcher)
                .await
                .expect("the cluster starts");
            for line in script {
                let result = cluster.execute(line).await;
                // `start` of a node that was not killed is refused.
                if !(line.starts_with("start") && result.is_err()) {
                    result.unwrap_or_else(|e| panic!("{line}: {e}"));
                }
            }
        });
    }
}
