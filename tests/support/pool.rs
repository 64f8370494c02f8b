//! A pool of real `poolxmpp serve` processes on distinct loopback addresses sharing one
//! PostgreSQL started by the harness, and the helpers the pool tests share.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use super::{free_port_on, PoolNode, PostgresInstance, ServerOptions, Store, TestServer};

pub const LEASE_MS: u64 = 3_000;
pub const HEARTBEAT_MS: u64 = 500;

/// A pool of test nodes n1..nN on 127.0.0.(1+i), with their CA in `dir`.
pub struct TestPool {
    pub nodes: Vec<TestServer>,
    pub pg: PostgresInstance,
    pub dir: tempfile::TempDir,
}

pub fn node_options(dir: &Path, pg: &PostgresInstance, i: usize) -> Result<ServerOptions> {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i as u8));
    let mut opts = ServerOptions::new(Store::Postgres);
    opts.ip = ip;
    opts.shared_store = Some(pg.url());
    opts.create_accounts = i == 0;
    opts.pool = Some(PoolNode {
        node_id: format!("n{}", i + 1),
        link: SocketAddr::new(ip, free_port_on(ip)?),
        advertise: None,
        tls_dir: dir.join("pool-tls"),
        lease_ms: LEASE_MS,
        heartbeat_ms: HEARTBEAT_MS,
        redirect: false,
    });
    Ok(opts)
}

/// Adjusts node `i`'s options before it starts (the PostgreSQL instance is given).
pub type Customize<'a> = &'a dyn Fn(usize, &mut ServerOptions, &PostgresInstance) -> Result<()>;

impl TestPool {
    pub fn start(n: usize) -> Result<TestPool> {
        Self::start_with(n, &|_, _, _| Ok(()))
    }

    pub fn start_with(n: usize, customize: Customize) -> Result<TestPool> {
        let dir = tempfile::Builder::new().prefix("poolxmpp-pool-").tempdir()?;
        let pg = PostgresInstance::start()?;
        let ids: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
        let out = std::process::Command::new(super::server_binary())
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
            let mut opts = node_options(dir.path(), &pg, i)?;
            customize(i, &mut opts, &pg)?;
            nodes.push(TestServer::start(opts).with_context(|| format!("node n{}", i + 1))?);
        }
        Ok(TestPool { nodes, pg, dir })
    }

    pub fn status(&self) -> Result<serde_json::Value> {
        let out = self.nodes[0].cli_ok(&["pool", "status", "--json"])?;
        serde_json::from_str(&out).with_context(|| format!("pool status output: {out}"))
    }

    pub fn node_state(&self, node: &str) -> Result<(String, i64)> {
        let status = self.status()?;
        let n = status["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["node_id"] == node))
            .with_context(|| format!("{node} missing from pool status: {status}"))?;
        Ok((
            n["state"].as_str().unwrap_or_default().to_string(),
            n["epoch"].as_i64().unwrap_or(0),
        ))
    }

    pub fn wait_state(&self, node: &str, want: &str, within: Duration) -> Result<Duration> {
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

/// Run a test body; an error fails the test with its whole context chain.
pub fn must(body: impl FnOnce() -> Result<()>) {
    if let Err(e) = body() {
        panic!("{e:#}");
    }
}

/// Every message in `sent` is among `received` exactly once (none lost, none doubled).
pub fn each_arrived_once(sent: &[String], received: &[String]) -> Result<()> {
    let mut counts = std::collections::HashMap::new();
    for body in received.iter().filter(|b| sent.contains(b)) {
        *counts.entry(body.as_str()).or_insert(0) += 1;
    }
    let lost: Vec<_> = sent.iter().filter(|b| !counts.contains_key(b.as_str())).collect();
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    eprintln!(
        "sent {}, received {} distinct, lost {}, duplicated {}",
        sent.len(),
        counts.len(),
        lost.len(),
        duplicated.len()
    );
    ensure!(lost.is_empty(), "lost messages: {lost:?}");
    ensure!(duplicated.is_empty(), "duplicated messages: {duplicated:?}");
    Ok(())
}

pub fn jid(local: &str) -> String {
    format!("{local}@{}", super::DOMAIN)
}

pub async fn login(node: &TestServer, local: &str) -> Result<super::raw::RawConn> {
    super::raw::RawConn::login(node.starttls, super::DOMAIN, local, super::password(local), "raw").await
}

/// Authenticate at `addr` and restart the stream: the connection, and the
/// `<see-other-host/>` target if the node redirects (`None` if it offers binding).
async fn authenticate(addr: SocketAddr, local: &str, password: &str) -> Result<(super::raw::RawConn, Option<String>)> {
    let (mut c, _) = super::raw::RawConn::connect_tls(addr, super::DOMAIN).await?;
    match c.auth_plain(local, password).await? {
        super::raw::SaslOutcome::Success => {}
        super::raw::SaslOutcome::Failure(cond, e) => bail!("login of {local} failed: <{cond}/> {e}"),
    }
    c.open_stream(super::DOMAIN).await?;
    let first = c
        .next_element(Duration::from_secs(10), "features or a stream error")
        .await?;
    if first.local == "features" {
        return Ok((c, None));
    }
    ensure!(first.local == "error", "unexpected {first}");
    let target = first
        .elements()
        .find(|e| e.local == "see-other-host")
        .with_context(|| format!("a stream error other than see-other-host: {first}"))?;
    Ok((c, Some(target.text())))
}

/// Log in up to the restarted stream after SASL; returns the `<see-other-host/>` target if
/// the node redirects, or `None` if it offers binding.
pub async fn login_or_redirect(addr: SocketAddr, local: &str) -> Result<Option<String>> {
    Ok(authenticate(addr, local, super::password(local)).await?.1)
}

/// The address of the stand-alone redirector in tests (below the nodes' 127.0.0.2+).
pub const REDIRECTOR_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 40);

impl TestPool {
    /// Start `poolxmpp redirect` for this pool, with `[placement]` lines and a plugins dir.
    pub fn redirector(&self, placement: &[&str], plugins_dir: Option<&Path>) -> Result<TestServer> {
        let mut opts = ServerOptions::new(Store::Postgres);
        opts.ip = IpAddr::V4(REDIRECTOR_IP);
        opts.shared_store = Some(self.pg.url());
        opts.create_accounts = false;
        opts.redirector = true;
        opts.placement = placement.iter().map(|l| l.to_string()).collect();
        opts.plugins_dir = plugins_dir.map(Path::to_path_buf);
        TestServer::start(opts).context("the redirector")
    }

    /// The id of the node whose STARTTLS listener is `addr` (`host:port`).
    pub fn node_at(&self, addr: &str) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| n.starttls.to_string() == addr)
            .and_then(|n| n.opts.pool.as_ref())
            .map(|p| p.node_id.clone())
    }

    /// Each user's home as `pool status --users` shows it: (user, node, strategy, reason).
    pub fn homes(&self) -> Result<Vec<(String, String, String, String)>> {
        let out = self.nodes[0].cli_ok(&["pool", "status", "--users", "--json"])?;
        let status: serde_json::Value = serde_json::from_str(&out).with_context(|| format!("pool status: {out}"))?;
        let users = status["users"].as_array().context("no users in pool status")?;
        Ok(users
            .iter()
            .map(|u| {
                let s = |k: &str| u[k].as_str().unwrap_or_default().to_string();
                (s("user"), s("home"), s("strategy"), s("reason"))
            })
            .collect())
    }
}

/// Follow redirects by hand: log in as `jid` at `addr`; if sent elsewhere, log in there.
/// Returns the bound connection (initial presence sent) and the address it ended on.
pub async fn login_following(addr: SocketAddr, jid: &str, password: &str) -> Result<(super::raw::RawConn, SocketAddr)> {
    let local = jid.split('@').next().unwrap_or_default();
    let mut at = addr;
    for _ in 0..3 {
        let (mut c, target) = authenticate(at, local, password).await?;
        let Some(target) = target else {
            c.send("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>raw</resource></bind></iq>")
                .await?;
            let reply = c
                .wait_for(Duration::from_secs(10), "bind result", |e| {
                    e.local == "iq" && e.attr("id") == Some("bind1")
                })
                .await?;
            ensure!(reply.attr("type") == Some("result"), "bind failed: {reply}");
            c.send("<presence/>").await?;
            return Ok((c, at));
        };
        at = target.parse().with_context(|| format!("see-other-host {target:?}"))?;
    }
    bail!("{local}: more than 3 redirects")
}
