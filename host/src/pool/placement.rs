//! Home nodes and redirects (DESIGN §4): every user has a home node, kept in the shared
//! store (`pool_homes`) and sticky while that node lives under the epoch it had when it
//! was chosen. When a node with `[pool] redirect = true` authenticates a user whose home
//! is elsewhere, it ends the stream with `<see-other-host/>` naming the home's client
//! address — only after TLS and SASL, so placement is never shown to a stranger.
//!
//! The choice for a user without a live home is rendezvous hashing over the live nodes
//! (the same as key ownership), which is the consistent-hashing strategy; pluggable
//! strategies (the `placement` world) replace this choice.

use sqlx::Row;

use super::{ownership, Pool};
use crate::server::Server;

/// Where a user should be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    pub node_id: String,
    /// `host:port` of the node's first client listener (IPv6 in brackets).
    pub client_addr: String,
}

/// The user's live home, if one is recorded.
async fn live_home(pool: &Pool, bare: &str) -> Result<Option<Home>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT h.node_id, n.client_addrs FROM pool_homes h JOIN pool_nodes n \
         ON n.node_id = h.node_id AND n.epoch = h.epoch \
         WHERE h.bare = $1 AND n.state = 'live' AND n.lease_until > now()",
    )
    .bind(bare)
    .fetch_optional(&pool.db)
    .await?;
    row.map(|r| {
        let addrs: String = r.try_get("client_addrs")?;
        Ok(Home {
            node_id: r.try_get("node_id")?,
            client_addr: addrs.split(',').next().unwrap_or_default().to_string(),
        })
    })
    .transpose()
}

/// The user's home node: the recorded one while it lives, otherwise a new choice among
/// the live nodes, recorded unless another node recorded a live one first.
pub async fn home_of(pool: &Pool, bare: &str) -> Result<Option<Home>, sqlx::Error> {
    if let Some(home) = live_home(pool, bare).await? {
        return Ok(Some(home));
    }
    let live = pool.live_nodes();
    let Some(chosen) = ownership::preferred_owner(bare, live.iter().map(|(n, _)| n.as_str())) else {
        return Ok(None);
    };
    let epoch = live
        .iter()
        .find(|(n, _)| n == chosen)
        .map(|(_, e)| *e)
        .unwrap_or_default();
    sqlx::query(
        "INSERT INTO pool_homes (bare, node_id, epoch, strategy) VALUES ($1, $2, $3, 'rendezvous') \
         ON CONFLICT (bare) DO UPDATE SET node_id = EXCLUDED.node_id, epoch = EXCLUDED.epoch, \
         strategy = EXCLUDED.strategy, chosen_at = now() \
         WHERE NOT EXISTS (SELECT 1 FROM pool_nodes n WHERE n.node_id = pool_homes.node_id \
             AND n.epoch = pool_homes.epoch AND n.state = 'live' AND n.lease_until > now())",
    )
    .bind(bare)
    .bind(chosen)
    .bind(epoch)
    .execute(&pool.db)
    .await?;
    live_home(pool, bare).await
}

/// Where to send an authenticated user instead of serving them here, if anywhere.
/// Any failure means "serve here": a redirect is an optimisation, never a requirement.
pub async fn redirect_target(server: &Server, bare: &str) -> Option<String> {
    let pool = server.pool.as_ref()?;
    if !pool.config.redirect || pool.epoch().is_none() {
        return None;
    }
    match home_of(pool, bare).await {
        // Never to ourselves, and never to a node without a client address.
        Ok(Some(home)) if home.node_id != pool.node_id() && !home.client_addr.is_empty() => Some(home.client_addr),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(%bare, error = %e, "cannot look up the home node; serving here");
            None
        }
    }
}
