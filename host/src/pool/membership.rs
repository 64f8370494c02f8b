//! Who is in the pool: heartbeat leases with epochs in PostgreSQL (table `pool_nodes`,
//! queried through [`crate::store::pool::nodes`]).
//!
//! Every time comparison uses the database's clock, so nodes never need synchronised
//! clocks. A node *joins* by taking its row with a new epoch, which is refused while
//! another process holds a live lease under the same id. It *renews* only its own epoch:
//! once survivors have declared it dead, renewal fails and the node knows it is fenced.
//! Declaring a node dead is a conditional update, so exactly one survivor wins it and
//! runs the failover for that epoch.

use std::net::SocketAddr;
use std::time::Duration;

use crate::store::pool::{Holder, MemberState, PoolDb};
pub use crate::store::pool::{NodeEpoch, NodeInfo};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error(transparent)]
    Db(#[from] StoreError),
    #[error("node id {node_id:?} is in use by a live node (link address {link_addr}); each node needs its own id")]
    NodeIdInUse { node_id: String, link_addr: String },
}

/// This node's handle on the membership table.
#[derive(Clone)]
pub struct Membership {
    db: PoolDb,
    node_id: String,
    /// Random per process: a restarted node and an impostor look alike otherwise.
    instance: String,
    lease: Duration,
}

impl Membership {
    pub fn new(db: PoolDb, node_id: &str, lease: Duration) -> Membership {
        Membership {
            db,
            node_id: node_id.to_string(),
            instance: uuid::Uuid::new_v4().to_string(),
            lease,
        }
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    fn holder(&self) -> Holder<'_> {
        Holder {
            node_id: &self.node_id,
            instance: &self.instance,
        }
    }

    fn lease_ms(&self) -> i64 {
        self.lease.as_millis() as i64
    }

    /// Take our row with a fresh epoch. Refused while a live lease under our id belongs
    /// to another process: after a crash that lease runs out by itself, so retry for up
    /// to `wait` (a restart right after a crash), then report the id as taken.
    pub async fn join(
        &self,
        link_addr: SocketAddr,
        client_addrs: &str,
        wait: Duration,
    ) -> Result<i64, MembershipError> {
        let deadline = tokio::time::Instant::now() + wait;
        let link_addr = link_addr.to_string();
        loop {
            let joined = self
                .db
                .join_node(self.holder(), &link_addr, client_addrs, self.lease_ms())
                .await?;
            if let Some(epoch) = joined {
                return Ok(epoch);
            }
            if tokio::time::Instant::now() >= deadline {
                let holder = self.db.link_addr_of(&self.node_id).await?;
                return Err(MembershipError::NodeIdInUse {
                    node_id: self.node_id.clone(),
                    link_addr: holder.unwrap_or_default(),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Extend our lease and publish our load. `Ok(false)`: our epoch is no longer the
    /// pool's (declared dead, or replaced): we are fenced.
    pub async fn renew(&self, epoch: i64, sessions: i64, load: f64) -> Result<bool, StoreError> {
        self.db
            .renew_lease(self.holder(), epoch, self.lease_ms(), sessions, load)
            .await
    }

    /// A clean shutdown: give the lease back so the pool need not wait for it to expire.
    pub async fn leave(&self, epoch: i64) -> Result<(), StoreError> {
        self.db.leave_pool(self.holder(), epoch).await
    }

    /// Mark every node whose lease has expired as dead, returning the lives this call
    /// won: the caller runs their failover. Concurrent callers never both win.
    pub async fn claim_expired(&self) -> Result<Vec<NodeEpoch>, StoreError> {
        self.db.claim_expired(&self.node_id).await
    }

    /// The nodes that hold a valid lease now.
    pub async fn live_nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        Ok(self
            .db
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.state == MemberState::Live && n.lease_valid)
            .collect())
    }
}
