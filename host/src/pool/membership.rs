//! Who is in the pool: heartbeat leases with epochs in PostgreSQL (table `pool_nodes`).
//!
//! Every time comparison uses the database's clock, so nodes never need synchronised
//! clocks. A node *joins* by taking its row with a new epoch, which is refused while
//! another process holds a live lease under the same id. It *renews* only its own epoch:
//! once survivors have declared it dead, renewal fails and the node knows it is fenced.
//! Declaring a node dead is a conditional update, so exactly one survivor wins it and
//! runs the failover for that epoch.

use std::net::SocketAddr;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("node id {node_id:?} is in use by a live node (link address {link_addr}); each node needs its own id")]
    NodeIdInUse { node_id: String, link_addr: String },
}

/// One node as the directory sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    pub node_id: String,
    pub epoch: i64,
    pub link_addr: String,
    pub client_addrs: String,
    /// `live`, `dead` (lease expired, failover done) or `left` (clean shutdown).
    pub state: String,
    /// Milliseconds since the last renewal, by the database clock.
    pub lease_age_ms: i64,
    /// Whether the lease is still valid now.
    pub lease_valid: bool,
    pub sessions: i64,
    pub load: f64,
}

const NODE_COLUMNS: &str = "node_id, epoch, link_addr, client_addrs, state, sessions, load, \
     (EXTRACT(EPOCH FROM (now() - heartbeat_at)) * 1000)::BIGINT AS lease_age_ms, \
     (lease_until > now()) AS lease_valid";

fn node_info(row: &PgRow) -> Result<NodeInfo, sqlx::Error> {
    Ok(NodeInfo {
        node_id: row.try_get("node_id")?,
        epoch: row.try_get("epoch")?,
        link_addr: row.try_get("link_addr")?,
        client_addrs: row.try_get("client_addrs")?,
        state: row.try_get("state")?,
        lease_age_ms: row.try_get("lease_age_ms")?,
        lease_valid: row.try_get("lease_valid")?,
        sessions: row.try_get("sessions")?,
        load: row.try_get("load")?,
    })
}

/// This node's handle on the membership table.
#[derive(Clone)]
pub struct Membership {
    db: PgPool,
    node_id: String,
    /// Random per process: a restarted node and an impostor look alike otherwise.
    instance: String,
    lease: Duration,
}

impl Membership {
    pub fn new(db: PgPool, node_id: &str, lease: Duration) -> Membership {
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
        loop {
            let row = sqlx::query(
                "INSERT INTO pool_nodes (node_id, epoch, instance, link_addr, client_addrs, state, joined_at, \
                 heartbeat_at, lease_until) \
                 VALUES ($1, 1, $2, $3, $4, 'live', now(), now(), now() + $5 * interval '1 millisecond') \
                 ON CONFLICT (node_id) DO UPDATE SET epoch = pool_nodes.epoch + 1, instance = EXCLUDED.instance, \
                 link_addr = EXCLUDED.link_addr, client_addrs = EXCLUDED.client_addrs, state = 'live', \
                 joined_at = now(), heartbeat_at = now(), lease_until = EXCLUDED.lease_until, sessions = 0, load = 0 \
                 WHERE pool_nodes.lease_until < now() OR pool_nodes.state <> 'live' \
                 RETURNING epoch",
            )
            .bind(&self.node_id)
            .bind(&self.instance)
            .bind(link_addr.to_string())
            .bind(client_addrs)
            .bind(self.lease_ms())
            .fetch_optional(&self.db)
            .await?;
            if let Some(row) = row {
                return Ok(row.try_get("epoch")?);
            }
            if tokio::time::Instant::now() >= deadline {
                let holder: Option<String> = sqlx::query_scalar("SELECT link_addr FROM pool_nodes WHERE node_id = $1")
                    .bind(&self.node_id)
                    .fetch_optional(&self.db)
                    .await?;
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
    pub async fn renew(&self, epoch: i64, sessions: i64, load: f64) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE pool_nodes SET heartbeat_at = now(), lease_until = now() + $1 * interval '1 millisecond', \
             sessions = $2, load = $3 \
             WHERE node_id = $4 AND epoch = $5 AND instance = $6 AND state = 'live' AND lease_until > now()",
        )
        .bind(self.lease_ms())
        .bind(sessions)
        .bind(load)
        .bind(&self.node_id)
        .bind(epoch)
        .bind(&self.instance)
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A clean shutdown: give the lease back so the pool need not wait for it to expire.
    pub async fn leave(&self, epoch: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE pool_nodes SET state = 'left', lease_until = now() \
             WHERE node_id = $1 AND epoch = $2 AND instance = $3",
        )
        .bind(&self.node_id)
        .bind(epoch)
        .bind(&self.instance)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Mark every node whose lease has expired as dead, returning the ones this call won
    /// (node id, epoch): the caller runs their failover. Concurrent callers never both win.
    pub async fn claim_expired(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        let rows = sqlx::query(
            "UPDATE pool_nodes SET state = 'dead' \
             WHERE state = 'live' AND lease_until < now() AND node_id <> $1 \
             RETURNING node_id, epoch",
        )
        .bind(&self.node_id)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("node_id")?, r.try_get("epoch")?)))
            .collect()
    }

    /// Every node ever registered, newest state.
    pub async fn nodes(db: &PgPool) -> Result<Vec<NodeInfo>, sqlx::Error> {
        let rows = sqlx::query(&format!("SELECT {NODE_COLUMNS} FROM pool_nodes ORDER BY node_id"))
            .fetch_all(db)
            .await?;
        rows.iter().map(node_info).collect()
    }

    /// Does `node` hold a valid lease under `epoch` right now?
    pub async fn is_live(db: &PgPool, node: &str, epoch: i64) -> Result<bool, sqlx::Error> {
        let live: Option<bool> = sqlx::query_scalar(
            "SELECT true FROM pool_nodes WHERE node_id = $1 AND epoch = $2 AND state = 'live' AND lease_until > now()",
        )
        .bind(node)
        .bind(epoch)
        .fetch_optional(db)
        .await?;
        Ok(live.is_some())
    }

    /// The nodes that hold a valid lease now.
    pub async fn live_nodes(&self) -> Result<Vec<NodeInfo>, sqlx::Error> {
        Ok(Self::nodes(&self.db)
            .await?
            .into_iter()
            .filter(|n| n.state == "live" && n.lease_valid)
            .collect())
    }
}
