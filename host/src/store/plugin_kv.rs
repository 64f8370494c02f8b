//! Plugin key/value storage: each plugin sees only its own keys. Compare-and-swap is one
//! conditional statement per case, so it is atomic on both backends without locks.
//! Fenced writes (a pool's keyed plugins) are conditional on the pool's ownership record in
//! the same statement, which locks that record, so a change of hands and a deposed owner's
//! write are ordered: the write lands before the new owner took the key (which then reads
//! it), or it fails.

use super::{col, Result, Store};

/// What a fenced write is conditional on: `node`, still live under `epoch`, holds `key`
/// under the fencing token `token` (`pool_ownership`).
#[derive(Debug, Clone)]
pub struct Fence {
    pub key: String,
    pub node: String,
    pub epoch: i64,
    pub token: i64,
}

/// The rows of `pool_ownership` that make a fence hold, locked against a concurrent change
/// of hands; its key, node, epoch and token are the parameters from `$first` on.
fn fence_holds(first: usize) -> String {
    let [key, node, epoch, token] = [first, first + 1, first + 2, first + 3];
    format!(
        "SELECT 1 FROM pool_ownership o JOIN pool_nodes n ON n.node_id = o.node_id AND n.epoch = o.node_epoch \
         WHERE o.key = ${key} AND o.node_id = ${node} AND o.node_epoch = ${epoch} AND o.fence = ${token} \
           AND n.state = 'live' AND n.lease_until > now() \
         FOR SHARE OF o"
    )
}

impl Store {
    pub async fn kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT value FROM plugin_kv WHERE plugin = $1 AND key = $2")
            .bind(plugin)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| col(&r, "value")).transpose()
    }

    pub async fn kv_put(&self, plugin: &str, key: &str, value: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO plugin_kv (plugin, key, value) VALUES ($1, $2, $3)
             ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
        )
        .bind(plugin)
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn kv_delete(&self, plugin: &str, key: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2")
            .bind(plugin)
            .bind(key)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Up to `limit` entries whose key starts with `prefix`, in key order, after
    /// `start_after`. Keys compare bytewise (SQLite's default, `COLLATE "C"` on PostgreSQL),
    /// so the prefix range is contiguous and no LIKE escaping is needed.
    pub async fn kv_scan(
        &self,
        plugin: &str,
        prefix: &str,
        start_after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let limit = i64::from(limit.min(10_000));
        let query = match start_after.filter(|s| *s >= prefix) {
            Some(after) => {
                sqlx::query("SELECT key, value FROM plugin_kv WHERE plugin = $1 AND key > $2 ORDER BY key LIMIT $3")
                    .bind(plugin)
                    .bind(after)
            }
            None => {
                sqlx::query("SELECT key, value FROM plugin_kv WHERE plugin = $1 AND key >= $2 ORDER BY key LIMIT $3")
                    .bind(plugin)
                    .bind(prefix)
            }
        };
        let rows = query.bind(limit).fetch_all(&self.pool).await?;
        let mut out = Vec::new();
        for r in rows {
            let key: String = col(&r, "key")?;
            if !key.starts_with(prefix) {
                break;
            }
            out.push((key, col(&r, "value")?));
        }
        Ok(out)
    }

    pub async fn kv_compare_and_swap(
        &self,
        plugin: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        let affected = match (expected, new) {
            (None, Some(new)) => sqlx::query(
                "INSERT INTO plugin_kv (plugin, key, value) VALUES ($1, $2, $3) ON CONFLICT (plugin, key) DO NOTHING",
            )
            .bind(plugin)
            .bind(key)
            .bind(new)
            .execute(&self.pool)
            .await?
            .rows_affected(),
            (Some(old), Some(new)) => {
                sqlx::query("UPDATE plugin_kv SET value = $1 WHERE plugin = $2 AND key = $3 AND value = $4")
                    .bind(new)
                    .bind(plugin)
                    .bind(key)
                    .bind(old)
                    .execute(&self.pool)
                    .await?
                    .rows_affected()
            }
            (Some(old), None) => sqlx::query("DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2 AND value = $3")
                .bind(plugin)
                .bind(key)
                .bind(old)
                .execute(&self.pool)
                .await?
                .rows_affected(),
            (None, None) => return Ok(self.kv_get(plugin, key).await?.is_none()),
        };
        Ok(affected == 1)
    }

    /// `kv_put` if `fence` holds (PostgreSQL: the pool's store); whether it was written.
    pub async fn kv_put_fenced(&self, plugin: &str, key: &str, value: &[u8], fence: &Fence) -> Result<bool> {
        let written = sqlx::query(&format!(
            "INSERT INTO plugin_kv (plugin, key, value) SELECT $1, $2, $3 WHERE EXISTS ({}) \
             ON CONFLICT (plugin, key) DO UPDATE SET value = excluded.value",
            fence_holds(4)
        ))
        .bind(plugin)
        .bind(key)
        .bind(value)
        .bind(&fence.key)
        .bind(&fence.node)
        .bind(fence.epoch)
        .bind(fence.token)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(written == 1)
    }

    /// `kv_delete` if `fence` holds: whether the key existed, or `None` when the fence
    /// did not hold (nothing was deleted).
    pub async fn kv_delete_fenced(&self, plugin: &str, key: &str, fence: &Fence) -> Result<Option<bool>> {
        let row = sqlx::query(&format!(
            "WITH held AS ({}), \
                  gone AS (DELETE FROM plugin_kv WHERE plugin = $1 AND key = $2 \
                           AND EXISTS (SELECT 1 FROM held) RETURNING 1) \
             SELECT (SELECT count(*) FROM held) AS held, (SELECT count(*) FROM gone) AS gone",
            fence_holds(3)
        ))
        .bind(plugin)
        .bind(key)
        .bind(&fence.key)
        .bind(&fence.node)
        .bind(fence.epoch)
        .bind(fence.token)
        .fetch_one(&self.pool)
        .await?;
        let held: i64 = col(&row, "held")?;
        let gone: i64 = col(&row, "gone")?;
        Ok((held > 0).then_some(gone > 0))
    }
}
