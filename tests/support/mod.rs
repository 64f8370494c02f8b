//! Harness for the end-to-end tests: runs the REAL `poolxmpp` binary on free loopback
//! ports with a config in a temp dir, against SQLite or a throwaway PostgreSQL, and
//! drives it with slixmpp scenario scripts (tests/py) or raw sockets ([`raw`]).
//!
//! Environment knobs:
//! - `POOLXMPP_TEST_LOG`: `RUST_LOG` for the server (default `info,poolxmpp=debug`).
//! - `POOLXMPP_KEEP_TMP=1`: keep each test's temp dir (config, data, server.log).
//! - `POOLXMPP_PYTHON`, `POOLXMPP_BASE_PYTHON`: see [`python`].
//! - `POOLXMPP_PG_BIN`: directory with initdb/pg_ctl, see [`postgres`].
#![allow(dead_code)]

pub mod plugins;
pub mod pool;
pub mod postgres;
pub mod proxy;
pub mod python;
pub mod raw;
pub mod witness;
pub mod xml;

use std::fmt::Write as _;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub use postgres::PostgresInstance;

pub const DOMAIN: &str = "localhost";
pub const DOMAIN2: &str = "example.test";

/// Accounts every test server starts with: (local part, domain, password).
/// `eve` has a non-ASCII password to exercise SASLprep.
pub const ACCOUNTS: &[(&str, &str, &str)] = &[
    ("alice", DOMAIN, "alice-pw-123"),
    ("bob", DOMAIN, "bob-pw-123"),
    ("carol", DOMAIN, "carol-pw-123"),
    ("eve", DOMAIN, "pässwörd ☃ 42"),
    ("dave", DOMAIN2, "dave-pw-123"),
];

/// An XEP-0191 `<block/>` of one JID (the payload of an IQ set).
pub fn block(jid: &str) -> String {
    format!("<block xmlns='urn:xmpp:blocking'><item jid='{jid}'/></block>")
}

pub fn password(local: &str) -> &'static str {
    ACCOUNTS
        .iter()
        .find(|(l, _, _)| *l == local)
        .map(|(_, _, p)| *p)
        .unwrap_or_else(|| panic!("no test account {local}"))
}

/// How long a scenario script may run before it is considered hung.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(150);
/// How long the server may take to accept connections after spawning (it compiles its
/// plugins first; a CPython component takes a while in a debug build).
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub store: Store,
    pub domains: Vec<String>,
    /// (bare JID, password) created with `poolxmpp user add` before the first start.
    pub accounts: Vec<(String, String)>,
    pub max_stanza_bytes: usize,
    pub max_stanza_bytes_unauthenticated: Option<usize>,
    pub idle_timeout_secs: u64,
    pub auth_failures_per_minute: u32,
    pub offline_quota: i64,
    pub registration: bool,
    /// `[plugins] dir`; `None` leaves the default (an empty `data_dir/plugins`).
    pub plugins_dir: Option<PathBuf>,
    /// The loopback address the client listeners bind (pool tests give each node its own).
    pub ip: std::net::IpAddr,
    /// Use this PostgreSQL URL (shared by the nodes of a pool) instead of starting one.
    pub shared_store: Option<String>,
    /// Create `accounts` before the first start (the first node of a pool does it for all).
    pub create_accounts: bool,
    /// `[pool]` for a pool node.
    pub pool: Option<PoolNode>,
    /// Run `poolxmpp redirect` (the stand-alone redirector) instead of `serve`.
    pub redirector: bool,
    /// `[placement]` settings, as TOML lines (`strategy = "..."`).
    pub placement: Vec<String>,
    /// More `[limits]` lines (`roster_max_groups = 3`), for limits without a field above.
    pub extra_limits: Vec<String>,
    /// More `[features]` lines, likewise.
    pub extra_features: Vec<String>,
    /// `[log] level`, used instead of the harness's `RUST_LOG` (see [`log_filter`]).
    pub log_level: Option<String>,
}

/// The `[pool]` section of one test node.
#[derive(Debug, Clone)]
pub struct PoolNode {
    pub node_id: String,
    pub link: SocketAddr,
    /// The link address peers dial, if not `link` (a proxy in partition tests).
    pub advertise: Option<SocketAddr>,
    pub tls_dir: PathBuf,
    pub lease_ms: u64,
    pub heartbeat_ms: u64,
    /// `[pool] redirect`: send users to their home node with `<see-other-host/>`.
    pub redirect: bool,
}

impl ServerOptions {
    pub fn new(store: Store) -> Self {
        ServerOptions {
            store,
            domains: vec![DOMAIN.to_string(), DOMAIN2.to_string()],
            accounts: ACCOUNTS
                .iter()
                .map(|(l, d, p)| (format!("{l}@{d}"), p.to_string()))
                .collect(),
            max_stanza_bytes: 262_144,
            max_stanza_bytes_unauthenticated: None,
            idle_timeout_secs: 600,
            auth_failures_per_minute: 5,
            offline_quota: 1000,
            registration: false,
            plugins_dir: None,
            ip: std::net::Ipv4Addr::LOCALHOST.into(),
            shared_store: None,
            create_accounts: true,
            pool: None,
            redirector: false,
            placement: Vec::new(),
            extra_limits: Vec::new(),
            extra_features: Vec::new(),
            log_level: None,
        }
    }

    fn to_toml(&self, data_dir: &Path, store_url: &str, starttls: SocketAddr, direct_tls: SocketAddr) -> String {
        let mut t = String::new();
        let _ = writeln!(t, "data_dir = {:?}", data_dir.display().to_string());
        let _ = writeln!(t, "store = {store_url:?}");
        for d in &self.domains {
            let _ = writeln!(t, "\n[[domain]]\nname = {d:?}");
        }
        let _ = writeln!(
            t,
            "\n[listen]\nstarttls = [\"{starttls}\"]\ndirect_tls = [\"{direct_tls}\"]"
        );
        let _ = writeln!(t, "\n[limits]");
        let _ = writeln!(t, "max_stanza_bytes = {}", self.max_stanza_bytes);
        if let Some(n) = self.max_stanza_bytes_unauthenticated {
            let _ = writeln!(t, "max_stanza_bytes_unauthenticated = {n}");
        }
        let _ = writeln!(t, "idle_timeout_secs = {}", self.idle_timeout_secs);
        let _ = writeln!(t, "auth_failures_per_minute = {}", self.auth_failures_per_minute);
        let _ = writeln!(t, "offline_quota = {}", self.offline_quota);
        for line in &self.extra_limits {
            let _ = writeln!(t, "{line}");
        }
        let _ = writeln!(t, "\n[features]\nregistration = {}", self.registration);
        for line in &self.extra_features {
            let _ = writeln!(t, "{line}");
        }
        if let Some(dir) = &self.plugins_dir {
            let _ = writeln!(t, "\n[plugins]\ndir = {:?}", dir.display().to_string());
        }
        if let Some(p) = &self.pool {
            let _ = writeln!(t, "\n[pool]\nnode_id = {:?}\nlisten = \"{}\"", p.node_id, p.link);
            if let Some(a) = p.advertise {
                let _ = writeln!(t, "advertise = \"{a}\"");
            }
            let _ = writeln!(t, "tls_dir = {:?}", p.tls_dir.display().to_string());
            let _ = writeln!(t, "lease_ms = {}\nheartbeat_ms = {}", p.lease_ms, p.heartbeat_ms);
            let _ = writeln!(t, "redirect = {}", p.redirect);
        }
        if !self.placement.is_empty() {
            let _ = writeln!(t, "\n[placement]\n{}", self.placement.join("\n"));
        }
        if let Some(level) = &self.log_level {
            let _ = writeln!(t, "\n[log]\nlevel = {level:?}");
        }
        t
    }
}

/// A port a server can listen on at 127.0.0.1 (see [`free_port_on`]).
pub fn free_port() -> Result<u16> {
    free_port_on(std::net::Ipv4Addr::LOCALHOST.into())
}

/// A port free on `ip`, taken from below the kernel's ephemeral range (32768-60999): a port
/// the kernel hands out (bind to port 0) can become some connection's source port before
/// the server binds it — a pool node then failed to start with "Address already in use".
/// Each test process starts at its own offset and never hands out a port twice.
pub fn free_port_on(ip: std::net::IpAddr) -> Result<u16> {
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let offset = std::process::id() % 480 * 25;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) as u32;
        let port = (FIRST + (offset + n) % SPAN) as u16;
        if TcpListener::bind((ip, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port on {ip} in {FIRST}..{}", FIRST + SPAN)
}

pub fn unique_suffix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn tail_file(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            all[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

pub fn server_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_poolxmpp"))
}

/// A running `poolxmpp serve` with its own temp dir, ports and store.
pub struct TestServer {
    pub opts: ServerOptions,
    pub starttls: SocketAddr,
    pub direct_tls: SocketAddr,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    pub store_url: String,
    child: Option<Child>,
    starts: u32,
    // Declared last: dropped after the server process is stopped in Drop.
    pg: Option<PostgresInstance>,
    dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// Write the config, create the accounts, start the server and wait until it
    /// accepts connections.
    pub fn start(opts: ServerOptions) -> Result<TestServer> {
        let dir = tempfile::Builder::new()
            .prefix("poolxmpp-test-")
            .tempdir()
            .context("create temp dir")?;
        let pg = match (opts.store, &opts.shared_store) {
            (Store::Postgres, None) => Some(PostgresInstance::start()?),
            _ => None,
        };
        let store_url = match (&pg, &opts.shared_store) {
            (Some(pg), _) => pg.url(),
            (None, Some(shared)) => shared.clone(),
            (None, None) => "sqlite".to_string(),
        };
        let data_dir = dir.path().join("data");
        let starttls = SocketAddr::new(opts.ip, free_port_on(opts.ip)?);
        let mut direct_tls = SocketAddr::new(opts.ip, free_port_on(opts.ip)?);
        while direct_tls == starttls {
            direct_tls = SocketAddr::new(opts.ip, free_port_on(opts.ip)?);
        }
        let config_path = dir.path().join("poolxmpp.toml");
        fs::write(&config_path, opts.to_toml(&data_dir, &store_url, starttls, direct_tls))?;
        let log_path = dir.path().join("server.log");
        let mut srv = TestServer {
            opts,
            starttls,
            direct_tls,
            config_path,
            data_dir,
            log_path,
            store_url,
            child: None,
            starts: 0,
            pg,
            dir: Some(dir),
        };
        let accounts = if srv.opts.create_accounts {
            srv.opts.accounts.clone()
        } else {
            Vec::new()
        };
        for (jid, pw) in &accounts {
            srv.cli_ok(&["user", "add", jid, pw])
                .with_context(|| format!("creating account {jid}"))?;
        }
        srv.spawn()?;
        Ok(srv)
    }

    pub fn domain(&self) -> &str {
        &self.opts.domains[0]
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }

    /// Run `poolxmpp --config FILE <args>` to completion.
    pub fn cli(&self, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = Command::new(server_binary());
        cmd.arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env("RUST_LOG", log_filter())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let out = wait_output(child, Duration::from_secs(60)).with_context(|| format!("poolxmpp {args:?}"))?;
        Ok(out)
    }

    /// Like [`cli`](Self::cli) but fails unless the command succeeds; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!(
                "`poolxmpp --config {} {}` failed ({}):\nstdout: {}\nstderr: {}",
                self.config_path.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn spawn(&mut self) -> Result<()> {
        self.starts += 1;
        let mut log = fs::OpenOptions::new().create(true).append(true).open(&self.log_path)?;
        {
            use std::io::Write;
            writeln!(log, "==== [harness] start #{} of poolxmpp ====", self.starts)?;
        }
        let role = if self.opts.redirector { "redirect" } else { "serve" };
        let mut cmd = Command::new(server_binary());
        match self.opts.log_level {
            Some(_) => cmd.env_remove("RUST_LOG"),
            None => cmd.env("RUST_LOG", log_filter()),
        };
        let child = cmd
            .arg(role)
            .arg("--config")
            .arg(&self.config_path)
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn poolxmpp serve")?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let start = Instant::now();
        let mut pending = vec![self.starttls, self.direct_tls];
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!(
                        "poolxmpp serve exited during startup ({status}); log:\n{}",
                        self.log_tail(60)
                    );
                }
            }
            pending.retain(|addr| TcpStream::connect_timeout(addr, Duration::from_millis(200)).is_err());
            if pending.is_empty() {
                return Ok(());
            }
            if start.elapsed() > READY_TIMEOUT {
                bail!(
                    "poolxmpp serve did not accept connections on {pending:?} within {READY_TIMEOUT:?}; log:\n{}",
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then SIGKILL after 10 s. Returns whether it exited on SIGTERM.
    pub fn stop(&mut self) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        eprintln!("[harness] poolxmpp did not exit within 10 s of SIGTERM; killing it");
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGKILL: the node dies without a word to anyone (failover tests).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again after [`stop`](Self::stop) or [`kill`](Self::kill).
    pub fn start_again(&mut self) -> Result<()> {
        if self.child.is_some() {
            bail!("the server is still running");
        }
        self.spawn()
    }

    /// Stop and start again with the same config, data dir and database.
    pub fn restart(&mut self) -> Result<()> {
        if !self.stop() {
            bail!(
                "poolxmpp did not shut down within 10 s of SIGTERM; log:\n{}",
                self.log_tail(40)
            );
        }
        self.spawn()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The server's process id while it runs (to read `/proc/PID/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail_file(&self.log_path, lines)
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Wait until the log has gained a line containing `needle` after its first `from`
    /// bytes (0: anywhere); fails with the log's tail after `timeout`.
    pub fn wait_log(&self, from: usize, needle: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if self.log().get(from..).is_some_and(|new| new.contains(needle)) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!(
                    "no log line with {needle:?} within {timeout:?}; log tail:\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Arguments for tests/py/scenarios.py describing this server and its accounts.
    pub fn scenario_args(&self, scenario: &str) -> Vec<String> {
        self.scenario_args_for(scenario, &self.opts.accounts)
    }

    /// Arguments for tests/py/scenarios.py describing this server, with only `accounts`.
    pub fn scenario_args_for(&self, scenario: &str, accounts: &[(String, String)]) -> Vec<String> {
        let mut a = vec![
            scenario.to_string(),
            "--host".into(),
            self.starttls.ip().to_string(),
            "--port".into(),
            self.starttls.port().to_string(),
            "--tls-port".into(),
            self.direct_tls.port().to_string(),
            "--domain".into(),
            self.opts.domains[0].clone(),
        ];
        if let Some(d2) = self.opts.domains.get(1) {
            a.push("--domain2".into());
            a.push(d2.clone());
        }
        for (jid, pw) in accounts {
            a.push("--account".into());
            a.push(format!("{jid}={pw}"));
        }
        a
    }

    /// Run a slixmpp scenario against this server (optionally with `--phase N`).
    pub fn scenario(&mut self, scenario: &str, phase: Option<u32>) -> Result<String> {
        let mut args = self.scenario_args(scenario);
        if let Some(p) = phase {
            args.push("--phase".into());
            args.push(p.to_string());
        }
        let res = python::run_scenario(&args, self.dir(), SCENARIO_TIMEOUT);
        let alive = self.is_running();
        match res {
            Ok(out) if alive => Ok(out),
            Ok(out) => bail!("scenario {scenario} passed but the server is no longer running; output:\n{out}"),
            Err(e) if !alive => Err(e.context(format!("the server process DIED during scenario {scenario}"))),
            Err(e) => Err(e),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        let crashed = self.child.is_some() && !self.is_running();
        self.stop();
        if panicking || crashed {
            eprintln!(
                "\n===== poolxmpp server log ({}), last 150 lines =====\n{}\n===== end of server log =====",
                self.log_path.display(),
                self.log_tail(150)
            );
            if let Some(pg) = &self.pg {
                eprintln!("===== PostgreSQL log (last 20 lines) =====\n{}", pg.log_tail(20));
            }
        }
        if let Some(mut pg) = self.pg.take() {
            pg.stop();
        }
        if std::env::var_os("POOLXMPP_KEEP_TMP").is_some() {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("[harness] kept {}", kept.display());
            }
        }
    }
}

fn log_filter() -> String {
    std::env::var("POOLXMPP_TEST_LOG").unwrap_or_else(|_| "info,poolxmpp=debug".to_string())
}

fn wait_output(mut child: Child, timeout: Duration) -> Result<std::process::Output> {
    use std::io::Read;
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let out_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let err_thread = std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_end(&mut buf);
        }
        buf
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("command did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok(std::process::Output {
        status,
        stdout: out_thread.join().unwrap_or_default(),
        stderr: err_thread.join().unwrap_or_default(),
    })
}

/// Start a server with `opts` and run `body`; on error, fail the test with the error
/// (the server log tail is printed by `TestServer`'s Drop while panicking).
pub fn with_server(opts: ServerOptions, body: impl FnOnce(&mut TestServer) -> Result<()>) {
    let mut srv = match TestServer::start(opts) {
        Ok(s) => s,
        Err(e) => panic!("test server failed to start: {e:#}"),
    };
    if let Err(e) = body(&mut srv) {
        panic!("{e:#}");
    }
}

/// A current-thread tokio runtime for the raw-socket tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
