//! What every connection task shares: the services' [`Context`] and what only connections
//! need beside it (TLS, admission, the pool and placement for fencing and login routing,
//! the shutdown signal). Its own type so connections never reach up to the composition root.

use std::sync::Arc;

use tokio::sync::watch;

use crate::auth::FailureLimiter;
use crate::context::Context;
use crate::pool::placement::Placement;
use crate::pool::Pool;

pub struct Frontend {
    /// What the RFC 6121 core shares (config, store, sessions, plugins).
    pub ctx: Arc<Context>,
    pub auth_limiter: FailureLimiter,
    pub tls: crate::tls::TlsSetup,
    /// This node's place in a pool; `None` for a single server.
    pub pool: Option<Arc<Pool>>,
    /// Home nodes and redirects: on pool nodes, and alone in the stand-alone redirector.
    pub placement: Option<Arc<Placement>>,
    /// Admission control: one permit per login in progress (`limits.concurrent_logins`).
    pub logins: Arc<tokio::sync::Semaphore>,
    /// Connections not yet authenticated, per address (`limits.unauthenticated_per_ip`).
    pub unauthenticated: crate::limits::AddressCap,
    /// Flips to `true` once when the node shuts down; connection tasks watch it.
    pub shutdown: watch::Receiver<bool>,
    /// The group of tasks serving clients (accept loops, connections, the admin socket):
    /// the daemon waits for all of them to end after raising `shutdown`, their signal.
    pub tasks: crate::tasks::Tasks,
    /// Sessions a client may resume (XEP-0198), with or without a connection.
    pub resumptions: super::resumption::Resumptions,
}

impl Frontend {
    /// The admission limits come from `ctx.config.limits`.
    pub fn new(
        ctx: Arc<Context>,
        tls: crate::tls::TlsSetup,
        pool: Option<Arc<Pool>>,
        placement: Option<Arc<Placement>>,
        tasks: crate::tasks::Tasks,
    ) -> Arc<Frontend> {
        let limits = &ctx.config.limits;
        let auth_limiter = FailureLimiter::new(limits.auth_failures_per_minute);
        let logins = Arc::new(tokio::sync::Semaphore::new(limits.concurrent_logins.max(1)));
        let unauthenticated = crate::limits::AddressCap::new(limits.unauthenticated_per_ip, ctx.unthrottled.clone());
        Arc::new(Frontend {
            ctx,
            auth_limiter,
            tls,
            pool,
            placement,
            logins,
            unauthenticated,
            shutdown: tasks.receiver(),
            tasks,
            resumptions: Default::default(),
        })
    }

    /// Does this node take new clients? Not while fenced out of its pool.
    pub fn accepting(&self) -> bool {
        self.pool.as_ref().is_none_or(|p| p.epoch().is_some())
    }

    /// Is this domain served here?
    pub fn hosts(&self, domain: &str) -> bool {
        self.ctx.hosts(domain)
    }
}
