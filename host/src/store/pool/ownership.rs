//! `pool_ownership`: the recorded owner of a key (a MUC room, a pubsub node) with the
//! owner's epoch and a fencing token that grows whenever the key changes hands.
//!
//! A claim succeeds only when the record is absent, already the claimant's, or held by an
//! epoch that is no longer live in `pool_nodes` — decided inside one upsert, so two nodes
//! can never both take a key.

use super::{col, PoolDb};
use crate::store::Result;

/// A key's owner as recorded in the shared store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub node_id: String,
    pub epoch: i64,
    /// Grows every time the key changes hands.
    pub fence: i64,
}

impl PoolDb {
    /// The owner recorded for `key`, live or not.
    pub async fn recorded_owner(&self, key: &str) -> Result<Option<Owner>> {
        let row = sqlx::query("SELECT node_id, node_epoch, fence FROM pool_ownership WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.db)
            .await?;
        row.map(|row| owner(&row)).transpose()
    }

    /// The keys recorded for `node` under `epoch` (a dead node's, for the survivors to
    /// take over), at most `limit`.
    pub async fn keys_of(&self, node: &str, epoch: i64, limit: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT key FROM pool_ownership WHERE node_id = $1 AND node_epoch = $2 ORDER BY key LIMIT $3",
        )
        .bind(node)
        .bind(epoch)
        .bind(limit)
        .fetch_all(&self.db)
        .await?)
    }

    /// Record `node`/`epoch` as the owner of `key` unless a live node holds it. Returns the
    /// owner afterwards: the claimant (with its fencing token), or the live holder.
    pub async fn claim_key(&self, key: &str, node: &str, epoch: i64) -> Result<Owner> {
        let claimed = sqlx::query(
            "INSERT INTO pool_ownership (key, node_id, node_epoch, fence) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (key) DO UPDATE SET node_id = EXCLUDED.node_id, node_epoch = EXCLUDED.node_epoch, \
             fence = pool_ownership.fence + CASE WHEN pool_ownership.node_id = EXCLUDED.node_id \
                 AND pool_ownership.node_epoch = EXCLUDED.node_epoch THEN 0 ELSE 1 END \
             WHERE (pool_ownership.node_id = EXCLUDED.node_id AND pool_ownership.node_epoch = EXCLUDED.node_epoch) \
                OR NOT EXISTS (SELECT 1 FROM pool_nodes n WHERE n.node_id = pool_ownership.node_id \
                     AND n.epoch = pool_ownership.node_epoch AND n.state = 'live' AND n.lease_until > now()) \
             RETURNING node_id, node_epoch, fence",
        )
        .bind(key)
        .bind(node)
        .bind(epoch)
        .fetch_optional(&self.db)
        .await?;
        let row = match claimed {
            Some(row) => row,
            None => {
                sqlx::query("SELECT node_id, node_epoch, fence FROM pool_ownership WHERE key = $1")
                    .bind(key)
                    .fetch_one(&self.db)
                    .await?
            }
        };
        owner(&row)
    }

    /// Is `fence` still the current token of `key` for `node` under `epoch`?
    pub async fn still_owner(&self, key: &str, node: &str, epoch: i64, fence: i64) -> Result<bool> {
        let found: Option<i64> =
            sqlx::query_scalar("SELECT fence FROM pool_ownership WHERE key = $1 AND node_id = $2 AND node_epoch = $3")
                .bind(key)
                .bind(node)
                .bind(epoch)
                .fetch_optional(&self.db)
                .await?;
        Ok(found == Some(fence))
    }
}

fn owner(row: &sqlx::postgres::PgRow) -> Result<Owner> {
    Ok(Owner {
        node_id: col(row, "node_id")?,
        epoch: col(row, "node_epoch")?,
        fence: col(row, "fence")?,
    })
}
