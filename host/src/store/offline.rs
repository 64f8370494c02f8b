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
    ///
    /// Concurrent senders must not overshoot the quota, so the count and the insert are one
    /// conditional statement, serialized per owner by first taking the owner's account row
    /// (a no-op update: a row lock in PostgreSQL, the write lock in SQLite). On PostgreSQL
    /// the statement after the lock sees every insert committed before it got the lock, which
    /// the conditional insert alone would not under READ COMMITTED.
    pub async fn store_offline(&self, owner: &str, stanza: &str, quota: i64) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE accounts SET created_at = created_at WHERE jid = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO offline (owner, stanza, stamp) SELECT $1, $2, $3 \
             WHERE (SELECT COUNT(*) FROM offline WHERE owner = $4) < $5",
        )
        .bind(owner)
        .bind(stanza)
        .bind(now_unix())
        .bind(owner)
        .bind(quota)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(inserted == 1)
    }

    /// Read up to `limit` of the owner's stored stanzas with ids after `after_id`, in arrival
    /// order (with their unix timestamps), without deleting them: the caller deletes with
    /// [`Store::delete_offline`] once they are queued for delivery, so a crash in between
    /// re-delivers rather than loses.
    pub async fn offline_messages(&self, owner: &str, after_id: i64, limit: i64) -> Result<Vec<(i64, String, i64)>> {
        let rows =
            sqlx::query("SELECT id, stanza, stamp FROM offline WHERE owner = $1 AND id > $2 ORDER BY id LIMIT $3")
                .bind(owner)
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((col(r, "id")?, col(r, "stanza")?, col(r, "stamp")?)))
            .collect()
    }

    /// Delete delivered messages with ids from `first_id` to `last_id`, inclusive.
    pub async fn delete_offline(&self, owner: &str, first_id: i64, last_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM offline WHERE owner = $1 AND id >= $2 AND id <= $3")
            .bind(owner)
            .bind(first_id)
            .bind(last_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
