//! The node's shared state: configuration, store, TLS, the session table and limits.
//! One `Arc<Server>` is handed to every connection task.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::auth::FailureLimiter;
use crate::config::Config;
use crate::sessions::Sessions;
use crate::store::Store;

pub struct Server {
    pub config: Config,
    pub store: Store,
    pub sessions: Sessions,
    pub auth_limiter: FailureLimiter,
    pub tls: crate::tls::TlsSetup,
    pub plugins: Arc<crate::plugins::Plugins>,
    /// This node's place in a pool; `None` for a single server.
    pub pool: Option<Arc<crate::pool::Pool>>,
    /// Home nodes and redirects: on pool nodes, and alone in the stand-alone redirector.
    pub placement: Option<Arc<crate::pool::placement::Placement>>,
    pub started: Instant,
    /// Accounts whose offline messages are being delivered on this node, and whether
    /// another delivery was asked for meanwhile (see `presence::deliver_offline`).
    pub offline_delivery: std::sync::Mutex<std::collections::HashMap<String, bool>>,
    /// Admission control: one permit per login in progress (`limits.concurrent_logins`).
    pub logins: Arc<tokio::sync::Semaphore>,
    /// Connections not yet authenticated, per address (`limits.unauthenticated_per_ip`).
    pub unauthenticated: crate::limits::AddressCap,
    /// XEP-0077 registration and password-change rates (`limits.registrations_per_ip`, …).
    pub register_throttle: crate::iq::register_throttle::RegisterThrottle,
    /// Flips to `true` once when the node shuts down; connection tasks watch it.
    pub shutdown: watch::Receiver<bool>,
    /// The group of tasks serving clients (accept loops, connections, the admin socket):
    /// the daemon waits for all of them to end after raising `shutdown`, their signal.
    pub tasks: crate::tasks::Tasks,
}

impl Server {
    pub fn new(
        config: Config,
        store: Store,
        tls: crate::tls::TlsSetup,
        plugins: Arc<crate::plugins::Plugins>,
        pool: Option<Arc<crate::pool::Pool>>,
        placement: Option<Arc<crate::pool::placement::Placement>>,
        tasks: crate::tasks::Tasks,
    ) -> Arc<Server> {
        let auth_limiter = FailureLimiter::new(config.limits.auth_failures_per_minute);
        let logins = Arc::new(tokio::sync::Semaphore::new(config.limits.concurrent_logins.max(1)));
        let unthrottled = crate::limits::Unthrottled::new(&config.limits.unthrottled_addresses);
        let unauthenticated = crate::limits::AddressCap::new(config.limits.unauthenticated_per_ip, unthrottled.clone());
        let register_throttle = crate::iq::register_throttle::RegisterThrottle::new(&config.limits, unthrottled);
        let server = Arc::new(Server {
            config,
            store,
            sessions: Sessions::default(),
            auth_limiter,
            tls,
            plugins,
            pool,
            placement,
            started: Instant::now(),
            offline_delivery: Default::default(),
            logins,
            unauthenticated,
            register_throttle,
            shutdown: tasks.receiver(),
            tasks,
        });
        server.plugins.attach(Arc::downgrade(&server));
        server
    }

    /// Does this node take new clients? Not while fenced out of its pool.
    pub fn accepting(&self) -> bool {
        self.pool.as_ref().is_none_or(|p| p.epoch().is_some())
    }

    /// Is this domain served here?
    pub fn hosts(&self, domain: &str) -> bool {
        self.config.is_hosted(domain)
    }
}

/// Resolves once the node starts shutting down.
pub async fn until_shutdown(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
