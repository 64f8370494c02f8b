//! The composition root of a node: the services' [`Context`], the pool and placement, and
//! the [`Frontend`] the connections share. Built by the daemon only, which hands the
//! frontend to the listeners and the pool's parts to the pool's loops.

use std::sync::Arc;

use crate::c2s::Frontend;
use crate::context::Context;
use crate::pool::placement::Placement;
use crate::pool::Pool;

pub struct Server {
    /// What the RFC 6121 core shares (config, store, sessions, features).
    pub ctx: Arc<Context>,
    /// This node's place in a pool; `None` for a single server.
    pub pool: Option<Arc<Pool>>,
    /// Home nodes and redirects: on pool nodes, and alone in the stand-alone redirector.
    pub placement: Option<Arc<Placement>>,
    /// What every connection task shares.
    pub front: Arc<Frontend>,
}

impl Server {
    /// `tasks` is the clients' group: the connections' tasks spawn into it.
    pub fn new(
        ctx: Arc<Context>,
        tls: crate::tls::TlsSetup,
        pool: Option<Arc<Pool>>,
        placement: Option<Arc<Placement>>,
        tasks: crate::tasks::Tasks,
    ) -> Arc<Server> {
        let front = Frontend::new(ctx.clone(), tls, pool.clone(), placement.clone(), tasks);
        Arc::new(Server {
            ctx,
            pool,
            placement,
            front,
        })
    }
}
