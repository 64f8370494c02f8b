//! The pool as a placement strategy sees it, read from the shared store in one query
//! ([`crate::store::pool::view`]) so pool nodes and the stand-alone redirector (which
//! holds no links) see the same thing.

use std::time::Duration;

use crate::plugins::types;
use crate::store::pool::{NodeLoad, PoolDb};
use crate::store::StoreError;

/// Homes chosen this recently whose user has not bound a session yet count as load on
/// their node: a burst of logins would otherwise all see the same, stale counts.
const IN_FLIGHT: Duration = Duration::from_secs(30);

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
pub async fn load(db: &PoolDb, user: &str) -> Result<Vec<LiveNode>, StoreError> {
    Ok(db
        .node_loads(user, IN_FLIGHT)
        .await?
        .into_iter()
        .map(live_node)
        .collect())
}

fn live_node(n: NodeLoad) -> LiveNode {
    LiveNode {
        address: first_client_addr(&n.client_addrs),
        id: n.node_id,
        epoch: n.epoch,
        sessions: clamp(n.sessions),
        contacts_here: clamp(n.contacts_here),
        accepting: n.accepting,
    }
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
