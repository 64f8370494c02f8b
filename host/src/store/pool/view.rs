//! The pool as placement sees it: every live node with its load and one user's online
//! contacts there, in one query over `pool_nodes`, `pool_drains`, `pool_sessions`,
//! `pool_homes` and `roster`, so pool nodes and the stand-alone redirector (which holds
//! no links) see the same thing.

use std::time::Duration;

use super::{col, PoolDb};
use crate::store::Result;

/// One live node with what placement weighs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLoad {
    pub node_id: String,
    pub epoch: i64,
    /// `pool_nodes.client_addrs`: the node's client listeners, comma-separated.
    pub client_addrs: String,
    /// False while the node is being drained.
    pub accepting: bool,
    /// Bound sessions plus homes chosen there recently whose user has not bound yet.
    pub sessions: i64,
    /// How many of the user's contacts are online there.
    pub contacts_here: i64,
}

impl PoolDb {
    /// The live nodes by id, with `user`'s online contacts counted per node; homes chosen
    /// within `in_flight` whose user has no session yet count as sessions.
    pub async fn node_loads(&self, user: &str, in_flight: Duration) -> Result<Vec<NodeLoad>> {
        let rows = sqlx::query(
            "SELECT n.node_id, n.epoch, n.client_addrs, \
               NOT EXISTS (SELECT 1 FROM pool_drains d WHERE d.node_id = n.node_id) AS accepting, \
               (SELECT count(*) FROM pool_sessions s WHERE s.node_id = n.node_id AND s.epoch = n.epoch) \
               + (SELECT count(*) FROM pool_homes h WHERE h.node_id = n.node_id AND h.epoch = n.epoch \
                    AND h.chosen_at > now() - $2 * interval '1 second' \
                    AND NOT EXISTS (SELECT 1 FROM pool_sessions s WHERE s.bare = h.bare)) AS sessions, \
               (SELECT count(DISTINCT s.bare) FROM roster r JOIN pool_sessions s ON s.bare = r.contact \
                    WHERE r.owner = $1 AND s.node_id = n.node_id AND s.epoch = n.epoch) AS contacts_here \
             FROM pool_nodes n WHERE n.state = 'live' AND n.lease_until > now() ORDER BY n.node_id",
        )
        .bind(user)
        .bind(in_flight.as_secs() as i64)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeLoad {
                    node_id: col(r, "node_id")?,
                    epoch: col(r, "epoch")?,
                    client_addrs: col(r, "client_addrs")?,
                    accepting: col(r, "accepting")?,
                    sessions: col(r, "sessions")?,
                    contacts_here: col(r, "contacts_here")?,
                })
            })
            .collect()
    }
}
