//! Offline message storage (RFC 6121 §8.5.2.2.1 leaves the policy to us): a per-user FIFO
//! with a quota, emptied when the user sends initial presence.

use super::{col, now_unix, Result, Store};

impl Store {
    pub async fn offline_count(&self, owner: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM offline WHERE owner = $1")
            .bind(owner)
            .fetch_one(&self.pool)
            .await?;
        col(&row, "n")
    }

    /// Store a stanza unless the owner's quota is full; returns whether it was stored.
    pub async fn store_offline(&self, owner: &str, stanza: &str, quota: i64) -> Result<bool> {
        if self.offline_count(owner).await? >= quota {
            return Ok(false);
        }
        sqlx::query("INSERT INTO offline (owner, stanza, stamp) VALUES ($1, $2, $3)")
            .bind(owner)
            .bind(stanza)
            .bind(now_unix())
            .execute(&self.pool)
            .await?;
        Ok(true)
    }

    /// Read the owner's stored stanzas in arrival order (with their unix timestamps), without
    /// deleting them: the caller deletes with [`Store::delete_offline`] once they are queued
    /// for delivery, so a crash in between re-delivers rather than loses.
    pub async fn offline_messages(&self, owner: &str) -> Result<Vec<(i64, String, i64)>> {
        let rows = sqlx::query("SELECT id, stanza, stamp FROM offline WHERE owner = $1 ORDER BY id")
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((col(r, "id")?, col(r, "stanza")?, col(r, "stamp")?)))
            .collect()
    }

    /// Delete delivered messages up to and including `last_id`.
    pub async fn delete_offline(&self, owner: &str, last_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM offline WHERE owner = $1 AND id <= $2")
            .bind(owner)
            .bind(last_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
