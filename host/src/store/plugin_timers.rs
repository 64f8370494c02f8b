//! Plugin timers in the store: one row per (plugin, name), fired by the node in `node`.
//! Setting a name again replaces the row (and its token); a firing deletes the row only
//! if the token is still the one it armed, so a timer set again meanwhile survives, and
//! of two nodes that both armed one setting (an adoption race) only one fires it.

use super::{col, Result, Store};

/// One stored timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTimer {
    pub plugin: String,
    pub name: String,
    pub due_ms: i64,
    pub token: i64,
    pub payload: Vec<u8>,
}

impl Store {
    pub async fn timer_set(&self, node: &str, timer: &StoredTimer) -> Result<()> {
        sqlx::query(
            "INSERT INTO plugin_timers (plugin, name, node, due_ms, token, payload) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (plugin, name) DO UPDATE SET node = excluded.node, due_ms = excluded.due_ms,
             token = excluded.token, payload = excluded.payload",
        )
        .bind(&timer.plugin)
        .bind(&timer.name)
        .bind(node)
        .bind(timer.due_ms)
        .bind(timer.token)
        .bind(&timer.payload)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Remove a timer; returns whether it was set.
    pub async fn timer_cancel(&self, plugin: &str, name: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM plugin_timers WHERE plugin = $1 AND name = $2")
            .bind(plugin)
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// Claim a due timer for firing: true if this setting was still there (and is gone now).
    pub async fn timer_take(&self, plugin: &str, name: &str, token: i64) -> Result<bool> {
        let n = sqlx::query("DELETE FROM plugin_timers WHERE plugin = $1 AND name = $2 AND token = $3")
            .bind(plugin)
            .bind(name)
            .bind(token)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    /// The timers `node` fires.
    pub async fn timers_of(&self, node: &str) -> Result<Vec<StoredTimer>> {
        let rows = sqlx::query("SELECT plugin, name, due_ms, token, payload FROM plugin_timers WHERE node = $1")
            .bind(node)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredTimer {
                    plugin: col(r, "plugin")?,
                    name: col(r, "name")?,
                    due_ms: col(r, "due_ms")?,
                    token: col(r, "token")?,
                    payload: col(r, "payload")?,
                })
            })
            .collect()
    }

    /// Take over the timers of a node that left the pool; returns how many moved.
    pub async fn timers_adopt(&self, from: &str, to: &str) -> Result<u64> {
        let n = sqlx::query("UPDATE plugin_timers SET node = $1 WHERE node = $2")
            .bind(to)
            .bind(from)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n)
    }
}
