//! `pool_drains` and `pool_rebalance`: what the operator asked the pool to do. A node in
//! `pool_drains` takes no new users and moves its sessions away; `pool_rebalance` holds
//! one row, the time of the last rebalance request. Nodes poll both every heartbeat.

use super::PoolDb;
use crate::store::Result;

/// The requests one node polls for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requests {
    /// Whether the node is asked to drain.
    pub draining: bool,
    /// When a rebalance was last requested, ms since the Unix epoch (0: never).
    pub rebalance_at_ms: i64,
}

impl PoolDb {
    /// Mark `node` as draining (or not). Returns whether anything changed.
    pub async fn set_draining(&self, node: &str, draining: bool) -> Result<bool> {
        let done = if draining {
            sqlx::query("INSERT INTO pool_drains (node_id) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(node)
                .execute(&self.db)
                .await?
        } else {
            sqlx::query("DELETE FROM pool_drains WHERE node_id = $1")
                .bind(node)
                .execute(&self.db)
                .await?
        };
        Ok(done.rows_affected() > 0)
    }

    /// The nodes being drained, by id.
    pub async fn draining_nodes(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("SELECT node_id FROM pool_drains ORDER BY node_id")
            .fetch_all(&self.db)
            .await?)
    }

    /// Ask every node to rebalance: record now as the time of the latest request.
    pub async fn request_rebalance(&self) -> Result<()> {
        sqlx::query(
            "INSERT INTO pool_rebalance (id, requested_at) VALUES (1, now()) \
             ON CONFLICT (id) DO UPDATE SET requested_at = now()",
        )
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// `node`'s drain flag and the time of the last rebalance request.
    pub async fn requests(&self, node: &str) -> Result<Requests> {
        let (draining, rebalance_at_ms): (bool, i64) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM pool_drains WHERE node_id = $1), \
             COALESCE((SELECT (EXTRACT(EPOCH FROM requested_at) * 1000)::BIGINT FROM pool_rebalance), 0)",
        )
        .bind(node)
        .fetch_one(&self.db)
        .await?;
        Ok(Requests {
            draining,
            rebalance_at_ms,
        })
    }
}
