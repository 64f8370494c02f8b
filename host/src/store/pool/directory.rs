//! `pool_sessions`: the shared session directory, which node serves each bound resource.
//!
//! Each node writes only its own rows, tagged with its epoch, so the rows of an earlier
//! life of a node (a crash) are told apart from its current ones and cleared when it
//! joins again, and a dead node's rows by the survivor that declared it dead. Routing
//! reads the in-memory mirror; this table is the durable, inspectable record.

use super::PoolDb;
use crate::store::Result;

/// One resource of a user as the directory records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryEntry {
    pub resource: String,
    pub node_id: String,
    pub epoch: i64,
}

impl PoolDb {
    /// Remove `node`'s rows written under epochs before `epoch` (its earlier lives).
    pub async fn clear_earlier_sessions(&self, node: &str, epoch: i64) -> Result<()> {
        sqlx::query("DELETE FROM pool_sessions WHERE node_id = $1 AND epoch < $2")
            .bind(node)
            .bind(epoch)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Record `bare/resource` as bound on `node` under `epoch`, replacing any earlier row.
    pub async fn session_bound(&self, bare: &str, resource: &str, node: &str, epoch: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO pool_sessions (bare, resource, node_id, epoch) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (bare, resource) DO UPDATE SET node_id = EXCLUDED.node_id, \
             epoch = EXCLUDED.epoch, bound_at = now()",
        )
        .bind(bare)
        .bind(resource)
        .bind(node)
        .bind(epoch)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Remove `bare/resource` if `node` holds it (another node may have taken it since).
    pub async fn session_unbound(&self, bare: &str, resource: &str, node: &str) -> Result<()> {
        sqlx::query("DELETE FROM pool_sessions WHERE bare = $1 AND resource = $2 AND node_id = $3")
            .bind(bare)
            .bind(resource)
            .bind(node)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Remove a dead node's rows up to and including `epoch`; returns how many.
    pub async fn forget_node_sessions(&self, node: &str, epoch: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM pool_sessions WHERE node_id = $1 AND epoch <= $2")
            .bind(node)
            .bind(epoch)
            .execute(&self.db)
            .await?;
        Ok(done.rows_affected())
    }

    /// Where `bare`'s resources are bound, by resource (`pool where`).
    pub async fn sessions_of(&self, bare: &str) -> Result<Vec<DirectoryEntry>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT resource, node_id, epoch FROM pool_sessions WHERE bare = $1 ORDER BY resource")
                .bind(bare)
                .fetch_all(&self.db)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(resource, node_id, epoch)| DirectoryEntry {
                resource,
                node_id,
                epoch,
            })
            .collect())
    }
}
