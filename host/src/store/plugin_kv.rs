//! Plugin key/value storage: each plugin sees only its own keys. Compare-and-swap is one
//! conditional statement per case, so it is atomic on both backends without locks.

use super::{col, Result, Store};

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
}
