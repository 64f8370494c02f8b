//! Verified entity capabilities (XEP-0115) shared by the pool: `hash:ver` → features.
//! Rows are only written for answers that hashed to their `ver`, so every node may
//! believe them.

use super::{col, Result, Store};

impl Store {
    /// The features (newline-separated) of a verified `hash:ver`.
    pub async fn caps_get(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT features FROM caps WHERE ver = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| col(&r, "features")).transpose()
    }

    pub async fn caps_put(&self, key: &str, features: &str) -> Result<()> {
        sqlx::query("INSERT INTO caps (ver, features) VALUES ($1, $2) ON CONFLICT (ver) DO NOTHING")
            .bind(key)
            .bind(features)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
