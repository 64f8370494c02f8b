//! Shared plumbing for the scenarios: turning CLI connection options into a
//! [`ClientOpts`], bounded-concurrency execution, the optional XEP-0077
//! registration pre-phase, "log in N sessions and keep them", and the two halves
//! of a windowed exchange on a session: sending under a window of permits
//! ([`send_windowed`]) and reading what comes back ([`read_stanzas`]).
//!
//! Every loop here is bounded both in count (`n`) and in time (the global
//! deadline derived from `--timeout-secs`), so the tool always terminates.

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};

use crate::sasl::ScramCache;
use crate::stats::{ErrorTally, Latencies};
use crate::xml::Element;
use crate::xmpp::{self, ClientOpts, Registered, Session, SessionReader, SessionWriter, TlsMode};
use crate::ConnectArgs;

/// How many distinct error reasons a report lists.
pub const MAX_REASONS: usize = 5;

/// Resolved connection settings plus the global deadline.
pub struct Env {
    pub opts: Arc<ClientOpts>,
    pub args: ConnectArgs,
    pub deadline: Instant,
}

impl Env {
    pub fn new(args: &ConnectArgs, deadline: Instant) -> Result<Self> {
        let addr = resolve_loopback(&args.host, args.port)?;
        let tls = if args.no_tls {
            TlsMode::None
        } else if args.direct_tls {
            TlsMode::Direct
        } else {
            TlsMode::StartTls
        };
        let spread = args
            .spread
            .iter()
            .map(|a| {
                let (host, port) = a
                    .rsplit_once(':')
                    .with_context(|| format!("--spread expects HOST:PORT, got {a}"))?;
                resolve_loopback(host, port.parse().with_context(|| format!("bad port in {a}"))?)
            })
            .collect::<Result<Vec<_>>>()?;
        let opts = ClientOpts {
            addr,
            spread,
            domain: args.domain.clone(),
            password: args.password.clone(),
            tls,
            connector: crate::tls::connector(tls == TlsMode::Direct, args.tls_resume)?,
            mechanism: args.mechanism.to_uppercase(),
            op_timeout: Duration::from_secs(args.op_timeout_secs),
            deadline,
            scram: Arc::new(ScramCache::new(!args.no_scram_cache)),
        };
        Ok(Self {
            opts: Arc::new(opts),
            args: args.clone(),
            deadline,
        })
    }

    /// Localpart of the user for connection index `i`.
    pub fn user(&self, i: usize) -> String {
        let idx = match self.args.user_count {
            Some(u) if u > 0 => i % u,
            _ => i,
        };
        format!("{}{}", self.args.users_prefix, idx)
    }

    /// Resource for connection `i`: unique per connection so that reusing a user
    /// (`--user-count`) never triggers resource conflicts.
    pub fn resource(&self, i: usize) -> String {
        format!("{}{}", self.args.resource, i)
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Bound for waiting on a polite stream close.
    pub fn close_wait(&self) -> Duration {
        Duration::from_secs(5).min(self.remaining())
    }

    pub fn target(&self) -> Value {
        json!({
            "addr": self.opts.addr.to_string(),
            "spread": self.opts.spread.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "domain": self.opts.domain,
            "tls": format!("{:?}", self.opts.tls),
            "mechanism": self.opts.mechanism,
        })
    }
}

/// This tool only ever talks to servers on this machine.
fn resolve_loopback(host: &str, port: u16) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host}"))?
        .collect();
    match addrs.iter().find(|a| a.ip().is_loopback()) {
        Some(a) => Ok(*a),
        None => bail!("{host} is not a loopback address; this load tool only targets loopback"),
    }
}

/// Run `f(i)` for `i` in `0..n` with at most `concurrency` futures in flight.
/// No new item is started after `deadline`; skipped items are simply absent
/// from the returned `(index, output)` list.
pub async fn run_bounded<T, F, Fut>(n: usize, concurrency: usize, deadline: Instant, f: F) -> Vec<(usize, T)>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let f = Arc::new(f);
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..concurrency.clamp(1, n.max(1)))
        .map(|_| {
            let (f, next) = (f.clone(), next.clone());
            tokio::spawn(async move {
                let mut out = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || Instant::now() >= deadline {
                        break;
                    }
                    out.push((i, f(i).await));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::with_capacity(n);
    for w in workers {
        if let Ok(mut out) = w.await {
            all.append(&mut out);
        }
    }
    all.sort_unstable_by_key(|(i, _)| *i);
    all
}

/// Resolves once the flag in `rx` is set (or its sender is gone). Returns `()`
/// rather than watch's non-`Send` guard so it can sit in `select!` in spawned tasks.
pub async fn until_set(rx: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// XEP-0077 pre-phase (`--register`): make sure the first `distinct` users exist.
pub async fn register_users(env: &Env, distinct: usize) -> Value {
    let started = Instant::now();
    let opts = env.opts.clone();
    let prefix = env.args.users_prefix.clone();
    let results = run_bounded(distinct, env.args.concurrency, env.deadline, move |i| {
        let opts = opts.clone();
        let user = format!("{prefix}{i}");
        async move { xmpp::register(&opts, &user).await }
    })
    .await;
    let (mut created, mut existing) = (0, 0);
    let mut errors = ErrorTally::default();
    for (_, r) in &results {
        match r {
            Ok(Registered::Created) => created += 1,
            Ok(Registered::AlreadyExists) => existing += 1,
            Err(e) => errors.add(e),
        }
    }
    json!({
        "users": distinct,
        "created": created,
        "already_existed": existing,
        "failed": errors.total(),
        "not_attempted": distinct - results.len(),
        "elapsed_s": crate::stats::round3(started.elapsed().as_secs_f64()),
        "errors": errors.report(MAX_REASONS),
    })
}

/// Number of distinct accounts used by `connections` logins.
pub fn distinct_users(env: &Env, connections: usize) -> usize {
    match env.args.user_count {
        Some(u) if u > 0 => u.min(connections),
        _ => connections,
    }
}

/// Result of logging in many sessions that are kept open.
pub struct LoggedIn {
    /// Indexed by connection number; `None` for failed or skipped logins.
    pub sessions: Vec<Option<Session>>,
    pub latency: Latencies,
    pub errors: ErrorTally,
    pub elapsed: Duration,
}

impl LoggedIn {
    pub fn established(&self) -> usize {
        self.sessions.iter().filter(|s| s.is_some()).count()
    }

    pub fn report(&mut self) -> Value {
        let n = self.sessions.len();
        let ok = self.established();
        json!({
            "requested": n,
            "established": ok,
            "failed": self.errors.total(),
            "not_attempted": n as u64 - ok as u64 - self.errors.total(),
            "elapsed_s": crate::stats::round3(self.elapsed.as_secs_f64()),
            "latency": self.latency.summary(),
            "errors": self.errors.report(MAX_REASONS),
        })
    }
}

/// Log in `n` sessions (bounded concurrency) and keep them open.
pub async fn login_many(env: &Env, n: usize) -> LoggedIn {
    login_as(env, (0..n).map(|i| (env.user(i), env.resource(i))).collect()).await
}

/// [`login_many`] for explicit (user, resource) pairs, for scenarios whose peers
/// address sessions by a full JID they choose (e.g. `fanout`'s `/r0`).
pub async fn login_as(env: &Env, users: Vec<(String, String)>) -> LoggedIn {
    let started = Instant::now();
    let opts = env.opts.clone();
    let n = users.len();
    let users = Arc::new(users);
    let results = run_bounded(n, env.args.concurrency, env.deadline, move |i| {
        let (opts, users) = (opts.clone(), users.clone());
        async move {
            let (user, resource) = &users[i];
            xmpp::login(&opts, user, resource).await
        }
    })
    .await;
    let elapsed = started.elapsed();
    let mut sessions: Vec<Option<Session>> = (0..n).map(|_| None).collect();
    let mut latency = Latencies::default();
    let mut errors = ErrorTally::default();
    for (i, r) in results {
        match r {
            Ok(s) => {
                latency.record(s.timings.total);
                sessions[i] = Some(s);
            }
            Err(e) => errors.add(&e),
        }
    }
    LoggedIn {
        sessions,
        latency,
        errors,
        elapsed,
    }
}

/// Read a logged-in session's stanzas and hand each to `on_stanza` until it says
/// `Break` (`Ok(true)`), or nothing arrived for `quiet` or the run's deadline passed
/// (`Ok(false)`: the caller counts what is missing), or the stream ended (`Err`, named
/// after `what`). Server IQ gets (pings) are answered on `writer` when there is one,
/// so a session that only receives is not taken for dead.
pub async fn read_stanzas(
    reader: &mut SessionReader,
    mut writer: Option<&mut SessionWriter>,
    quiet: Duration,
    deadline: Instant,
    what: &str,
    mut on_stanza: impl FnMut(Element) -> ControlFlow<()>,
) -> Result<bool> {
    loop {
        let wait = quiet.min(deadline.saturating_duration_since(Instant::now()));
        let el = match tokio::time::timeout(wait, reader.next_element()).await {
            Err(_) => return Ok(false),
            Ok(Ok(Some(el))) => el,
            Ok(Ok(None)) => return Err(anyhow!("{what} stream closed by server")),
            Ok(Err(e)) => return Err(e.context(format!("{what} read"))),
        };
        if let Some(reply) = xmpp::iq_reply(&el) {
            if let Some(w) = writer.as_deref_mut() {
                let _ = xmpp::send(w, &reply).await;
            }
            continue;
        }
        if on_stanza(el).is_break() {
            return Ok(true);
        }
    }
}

/// [`read_stanzas`] until `on_stanza`, which returns how many it has counted so far,
/// reaches `want` (at once for none); `Ok(false)` if nothing came for `quiet` first.
pub async fn read_counted(
    reader: &mut SessionReader,
    writer: Option<&mut SessionWriter>,
    want: usize,
    (quiet, deadline): (Duration, Instant),
    what: &str,
    mut on_stanza: impl FnMut(Element) -> usize,
) -> Result<bool> {
    if want == 0 {
        return Ok(true);
    }
    read_stanzas(reader, writer, quiet, deadline, what, |el| {
        match on_stanza(el) >= want {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        }
    })
    .await
}

/// What [`send_windowed`] did.
#[derive(Default)]
pub struct SendStats {
    pub sent: u64,
    /// Permits not granted within the loss timeout: sent anyway (something was lost).
    pub stalls: u64,
    pub errors: ErrorTally,
}

/// Once `start` is set, send `m` stanzas on `writer`, the `seq`-th written by
/// `stanza(buf, seq)`, each after taking one of `window`'s permits. The reading side
/// gives a permit back per answer, so at most the window's size is unanswered: the
/// server is under sustained but not unbounded pressure. A permit not granted within
/// `loss_timeout` counts as a stall and the stanza goes anyway (rather than deadlock on
/// a lost answer); a closed window (the reader gave up) ends the run.
pub async fn send_windowed(
    mut writer: SessionWriter,
    m: usize,
    window: Arc<Semaphore>,
    loss_timeout: Duration,
    deadline: Instant,
    mut start: watch::Receiver<bool>,
    mut stanza: impl FnMut(&mut String, usize) -> std::fmt::Result,
) -> (SendStats, SessionWriter) {
    let mut st = SendStats::default();
    until_set(&mut start).await;
    let mut buf = String::with_capacity(256);
    for seq in 0..m {
        if Instant::now() >= deadline {
            st.errors.add_msg("global timeout while sending".into());
            break;
        }
        match tokio::time::timeout(loss_timeout, window.acquire()).await {
            Ok(Ok(permit)) => permit.forget(),
            Ok(Err(_)) => break,
            Err(_) => st.stalls += 1,
        }
        buf.clear();
        let _ = stanza(&mut buf, seq);
        if let Err(e) = xmpp::send(&mut writer, &buf).await {
            st.errors.add(&e.context("send"));
            break;
        }
        st.sent += 1;
    }
    (st, writer)
}
