//! The pool as a placement strategy sees it, read from the shared store in one query so
//! pool nodes and the stand-alone redirector (which holds no links) see the same thing.

use sqlx::postgres::PgPool;
use sqlx::Row;

use crate::plugins::types;

/// Homes chosen this recently whose user has not bound a session yet count as load on
/// their node: a burst of logins would otherwise all see the same, stale counts.
const IN_FLIGHT_SECS: i64 = 30;

/// One live node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNode {
    pub id: String,
    /// The node's epoch: a home is recorded under it, so it ends when the node dies.
    pub epoch: i64,
    /// `host:port` of its first client listener (IPv6 in brackets).
    pub address: String,
    /// Bound sessions plus users sent there in the last moments and not yet bound.
    pub sessions: u32,
    /// How many of the user's contacts are online there.
    pub contacts_here: u32,
    /// False while the node is being drained.
    pub accepting: bool,
}

/// The live nodes, with `user`'s online contacts counted per node.
pub async fn load(db: &PgPool, user: &str) -> Result<Vec<LiveNode>, sqlx::Error> {
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
    .bind(IN_FLIGHT_SECS)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let addrs: String = r.try_get("client_addrs")?;
            Ok(LiveNode {
                id: r.try_get("node_id")?,
                epoch: r.try_get("epoch")?,
                address: first_client_addr(&addrs),
                sessions: clamp(r.try_get("sessions")?),
                contacts_here: clamp(r.try_get("contacts_here")?),
                accepting: r.try_get("accepting")?,
            })
        })
        .collect()
}

/// Where clients are sent: the first of a node's published listeners (`pool_nodes.client_addrs`).
pub fn first_client_addr(client_addrs: &str) -> String {
    client_addrs.split(',').next().unwrap_or_default().to_string()
}

fn clamp(n: i64) -> u32 {
    n.clamp(0, u32::MAX as i64) as u32
}

/// The view handed to a strategy plugin.
pub fn to_wit(nodes: &[LiveNode]) -> types::PoolView {
    types::PoolView {
        nodes: nodes
            .iter()
            .map(|n| types::NodeView {
                id: n.id.clone(),
                address: n.address.clone(),
                sessions: n.sessions,
                contacts_here: n.contacts_here,
                accepting: n.accepting,
            })
            .collect(),
    }
}
