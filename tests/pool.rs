//! The server pool (issue 4): several real `poolxmpp serve` processes on distinct loopback
//! addresses sharing one PostgreSQL started by the harness.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use support::{free_port, PoolNode, PostgresInstance, ServerOptions, Store, TestServer};

const LEASE_MS: u64 = 3_000;
const HEARTBEAT_MS: u64 = 500;

/// A pool of test nodes n1..nN on 127.0.0.(1+i), with their CA in `dir`.
struct TestPool {
    nodes: Vec<TestServer>,
    pg: PostgresInstance,
    _dir: tempfile::TempDir,
}

fn node_options(dir: &Path, pg: &PostgresInstance, i: usize) -> Result<ServerOptions> {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8));
    let mut opts = ServerOptions::new(Store::Postgres);
    opts.ip = ip;
    opts.shared_store = Some(pg.url());
    opts.create_accounts = i == 0;
    opts.pool = Some(PoolNode {
        node_id: format!("n{}", i + 1),
        link: SocketAddr::new(ip, free_port()?),
        tls_dir: dir.join("pool-tls"),
        lease_ms: LEASE_MS,
        heartbeat_ms: HEARTBEAT_MS,
    });
    Ok(opts)
}

impl TestPool {
    fn start(n: usize) -> Result<TestPool> {
        let dir = tempfile::Builder::new().prefix("poolxmpp-pool-").tempdir()?;
        let pg = PostgresInstance::start()?;
        let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let out = std::process::Command::new(support::server_binary())
            .args(["pool", "init", "--dir"])
            .arg(dir.path().join("pool-tls"))
            .arg("--nodes")
            .arg(ids.join(","))
            .output()?;
        ensure!(
            out.status.success(),
            "pool init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut nodes = Vec::new();
        for i in 0..n {
            nodes.push(
                TestServer::start(node_options(dir.path(), &pg, i)?).with_context(|| format!("node n{}", i + 1))?,
            );
        }
        Ok(TestPool { nodes, pg, _dir: dir })
    }

    fn status(&self) -> Result<serde_json::Value> {
        let out = self.nodes[0].cli_ok(&["pool", "status", "--json"])?;
        serde_json::from_str(&out).with_context(|| format!("pool status output: {out}"))
    }

    fn node_state(&self, node: &str) -> Result<(String, i64)> {
        let status = self.status()?;
        let n = status
            .as_array()
            .and_then(|a| a.iter().find(|n| n["node_id"] == node))
            .with_context(|| format!("{node} missing from pool status: {status}"))?;
        Ok((
            n["state"].as_str().unwrap_or_default().to_string(),
            n["epoch"].as_i64().unwrap_or(0),
        ))
    }

    fn wait_state(&self, node: &str, want: &str, within: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            let (state, _) = self.node_state(node)?;
            if state == want {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                bail!("{node} is {state}, not {want}, after {within:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Membership: three nodes join and show as live; a second process claiming a live node's
/// id is refused with a clear error; a node killed with SIGKILL is declared dead once its
/// lease expires; restarted, it rejoins under a new epoch.
#[test]
fn membership_leases_and_rejoin() {
    let run = || -> Result<()> {
        let mut pool = TestPool::start(3)?;
        for node in ["n1", "n2", "n3"] {
            let (state, epoch) = pool.node_state(node)?;
            ensure!(state == "live" && epoch == 1, "{node}: {state} epoch {epoch}");
        }

        // An impostor: n1's id and credentials, another address. It must give up.
        let dir = pool.nodes[0]
            .opts
            .pool
            .as_ref()
            .unwrap()
            .tls_dir
            .parent()
            .unwrap()
            .to_path_buf();
        let mut dup = node_options(&dir, &pool.pg, 3)?;
        dup.pool.as_mut().unwrap().node_id = "n1".into();
        let err = match TestServer::start(dup) {
            Ok(_) => bail!("a second process with node id n1 was allowed to start"),
            Err(e) => format!("{e:#}"),
        };
        ensure!(err.contains("in use by a live node"), "unexpected refusal: {err}");

        pool.nodes[2].kill();
        let took = pool.wait_state("n3", "dead", Duration::from_millis(LEASE_MS + 5_000))?;
        eprintln!("n3 declared dead {took:?} after SIGKILL (lease {LEASE_MS} ms)");
        ensure!(pool.node_state("n1")?.0 == "live" && pool.node_state("n2")?.0 == "live");

        pool.nodes[2].start_again()?;
        let (state, epoch) = pool.node_state("n3")?;
        ensure!(state == "live" && epoch == 2, "restarted n3: {state} epoch {epoch}");
        Ok(())
    };
    if let Err(e) = run() {
        panic!("{e:#}");
    }
}
