//! Start-up and shutdown of a node: open the store, load TLS, bind listeners, serve until
//! SIGINT/SIGTERM, then close every stream with `<system-shutdown/>`.
//!
//! Shutdown knows its tasks ([`crate::tasks`]): every task is spawned into one of two
//! groups, the clients' (listeners, connections, admin socket, plugin watcher) and the
//! pool's background loops. On the signal the clients' group is drained first, then the
//! background group, each within a grace period after which what is left is named in the
//! log; then the lease is given back and the store closed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::Config;
use crate::pool::placement::Placement;
use crate::server::Server;
use crate::store::Store;
use crate::tasks::Tasks;

/// Database connections per node: enough for bursts of logins, bounded so a pool of
/// nodes stays inside PostgreSQL's connection limit.
const DB_CONNECTIONS: u32 = 16;

/// How long connections get after the signal to send `<system-shutdown/>`, their
/// unavailable presence and what was queued (a stalled client is cut at its send timeout).
const CLIENTS_GRACE: Duration = Duration::from_secs(5);
/// How long the pool's loops get to finish the directory updates the sessions' ends queued
/// and flush the links.
const BACKGROUND_GRACE: Duration = Duration::from_secs(2);

pub async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.store, &config.data_dir, DB_CONNECTIONS)
        .await
        .with_context(|| format!("opening the store {:?}", config.store))
}

/// Every client is a file descriptor: take the hard limit, not the (often 1,024) soft one.
pub fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit with a valid, zero-initialised struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::warn!("could not raise the open-file limit");
            }
        }
    }
}

/// What this process is in the deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A node: serves users (a single server, or one node of a pool).
    Node,
    /// The stand-alone redirector: authenticates users and sends each to their home node
    /// with `<see-other-host/>`; serves no one and is not a member of the pool.
    Redirector,
}

pub async fn serve(config: Config, role: Role) -> anyhow::Result<()> {
    raise_open_file_limit();
    let store = open_store(&config).await?;
    let tls = crate::tls::server_config(&config).context("loading TLS certificates")?;
    // Two groups, drained in order: the clients' tasks first (their goodbyes still need
    // the pool's links and directory), then the pool's background loops.
    let (clients, clients_drain) = Tasks::new();
    let (background, background_drain) = Tasks::new();
    let domains = config.domains.iter().map(|d| d.name.to_ascii_lowercase()).collect();
    let plugins = Arc::new(
        crate::plugins::Plugins::new(
            config.plugins_dir(),
            domains,
            config.limits.plugin_stanza_bytes,
            // Sessions may still call plugins while they close: instances end after them.
            background.clone(),
        )
        .context("starting the plugin runtime")?,
    );
    let (pool, link_events, placement) = match (role, &config.pool) {
        (Role::Node, Some(_)) => {
            let (pool, events) = crate::pool::Pool::start(&config, &background)
                .await
                .context("joining the pool")?;
            // Its own connections: a burst of logins must not starve lease renewals.
            let db = crate::pool::connect_coordination(&config.store).await?;
            let placement = Placement::new(
                db,
                Some(pool.node_id().to_string()),
                config.placement.clone(),
                plugins.clone(),
            );
            (Some(pool), Some(events), Some(placement))
        }
        (Role::Node, None) => (None, None, None),
        (Role::Redirector, _) => {
            let db = crate::pool::connect_coordination(&config.store)
                .await
                .context("the redirector needs the pool's PostgreSQL store")?;
            (
                None,
                None,
                Some(Placement::new(db, None, config.placement.clone(), plugins.clone())),
            )
        }
    };
    let ctx = Arc::new(crate::context::Context::new(config, store, plugins.clone()));
    // Plugins get their host capabilities once the context they reach through exists.
    let ownership = pool.clone().map(|p| p as Arc<dyn crate::plugins::Ownership>);
    plugins.attach(Arc::downgrade(&ctx), ownership);
    let server = Server::new(ctx, tls, pool.clone(), placement, clients.clone());
    if let (Some(pool), Some(events)) = (&pool, link_events) {
        server.ctx.sessions.attach_peers(pool.links.clone());
        let (directory_tx, directory_rx) = tokio::sync::mpsc::unbounded_channel();
        server.ctx.sessions.attach_directory(directory_tx);
        // The directory finishes what the sessions' ends queued; the rest are loops that
        // may stop between any two steps.
        background.spawn(
            "pool directory",
            pool.clone().run_directory(directory_rx, background.signalled()),
        );
        background.spawn_until_signal(
            "pool events",
            crate::pool::node::run_events(server.ctx.clone(), pool.clone(), events),
        );
        let weak = Arc::downgrade(&server);
        background.spawn_until_signal(
            "pool lease",
            pool.clone()
                .run_lease(move || weak.upgrade().map_or(0, |s| s.ctx.sessions.count())),
        );
        background.spawn_until_signal("pool reaper", pool.clone().run_reaper());
        background.spawn_until_signal(
            "fencing watch",
            close_sessions_when_fenced(server.clone(), pool.subscribe()),
        );
        if let Some(placement) = &server.placement {
            background.spawn_until_signal(
                "placement drain",
                crate::pool::placement::drain::run(server.ctx.clone(), pool.clone(), placement.clone()),
            );
        }
    }
    if server.ctx.config.plugins.enabled {
        for e in plugins.sync_dir().await {
            tracing::error!(error = %e, "plugin not loaded");
        }
        if server.ctx.config.plugins.watch {
            crate::plugins::watch::spawn_watcher(plugins.clone(), &clients);
        }
    }
    // The mesh tells the features which nodes joined: it starts once the plugins in the
    // directory are loaded, so none of them misses the nodes already in the pool.
    if let Some(pool) = &pool {
        background.spawn_until_signal(
            "pool mesh",
            crate::pool::node::run_mesh(server.ctx.clone(), pool.clone()),
        );
    }
    let admin = crate::plugins::watch::admin_socket_path(&server.ctx.config.data_dir);
    let weak = Arc::downgrade(&server);
    let stats: crate::plugins::watch::StatsFn = Arc::new(move || node_stats(&weak));
    let weak = Arc::downgrade(&server);
    let remove_account: crate::plugins::watch::RemoveAccountFn = Arc::new(move |jid| {
        let weak = weak.clone();
        Box::pin(async move {
            let server = weak.upgrade().ok_or("the server is shutting down")?;
            crate::account::remove(&server.ctx, &jid, || {})
                .await
                .map_err(|e| e.to_string())
        })
    });
    if let Err(e) =
        crate::plugins::watch::spawn_admin_socket(plugins.clone(), admin.clone(), stats, remove_account, &clients)
    {
        tracing::warn!(path = %admin.display(), error = %e, "admin socket unavailable");
    }
    let listeners = crate::listener::bind_all(&server.front).await?;
    let domains: Vec<_> = server.ctx.config.domains.iter().map(|d| d.name.as_str()).collect();
    tracing::info!(?domains, ?role, store = ?server.ctx.store.backend(), "poolxmpp {} serving", env!("CARGO_PKG_VERSION"));
    for (listener, direct) in listeners {
        clients.spawn(
            "listener",
            crate::listener::accept_loop(server.front.clone(), listener, direct),
        );
    }
    wait_for_signal().await;
    tracing::info!(sessions = server.ctx.sessions.count(), "shutting down");
    // Every connection ends its stream with <system-shutdown/> and its unavailable presence.
    if let Err(unfinished) = clients_drain.wait(CLIENTS_GRACE).await {
        tracing::warn!(%unfinished, "client tasks did not finish within {CLIENTS_GRACE:?}; exiting without them");
    }
    // Lease and mesh stop before the lease is given back, so nothing renews it after.
    if let Err(unfinished) = background_drain.wait(BACKGROUND_GRACE).await {
        tracing::warn!(%unfinished, "background tasks did not finish within {BACKGROUND_GRACE:?}; exiting without them");
    }
    if let Some(pool) = &server.pool {
        pool.leave().await;
    }
    server.ctx.store.close().await;
    Ok(())
}

/// What `poolxmpp stats` shows about this node.
fn node_stats(server: &std::sync::Weak<Server>) -> serde_json::Value {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(server) = server.upgrade() else {
        return serde_json::Value::Null;
    };
    serde_json::json!({
        "node": server.pool.as_ref().map(|p| p.node_id().to_string()),
        "epoch": server.pool.as_ref().and_then(|p| p.epoch()),
        "sessions": server.ctx.sessions.count(),
        "mirrored_sessions": server.ctx.sessions.mirrored(),
        "links": server.pool.as_ref().map(|p| p.links.connected().len()).unwrap_or(0),
        "stanzas_to_local_sessions": crate::sessions::LOCAL_SENDS.load(Relaxed),
        "stanzas_forwarded": crate::sessions::FORWARDS.load(Relaxed),
        "uptime_s": server.ctx.started.elapsed().as_secs(),
        "placement": server.placement.as_ref().map(|p| p.stats_json()),
    })
}

/// A fenced node must not keep serving on state the pool no longer trusts: close every
/// client stream (the clients reconnect to a live node) and tell the features it owns no
/// key any more, each time the node is fenced.
async fn close_sessions_when_fenced(
    server: Arc<Server>,
    mut state: tokio::sync::watch::Receiver<crate::pool::NodeState>,
) {
    use crate::stream::{StreamError, StreamErrorCondition};
    while state.changed().await.is_ok() {
        let crate::pool::NodeState::Fenced { reason } = state.borrow_and_update().clone() else {
            continue;
        };
        server.ctx.features.notify(crate::features::Event::Fenced);
        let err = StreamError::new(StreamErrorCondition::SystemShutdown, format!("node fenced: {reason}"));
        for r in server.ctx.sessions.all() {
            r.close(err.clone());
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Keep the compiler honest about the server type being shareable.
#[allow(dead_code)]
fn assert_send_sync(s: Arc<Server>) -> impl Send + Sync {
    s
}
