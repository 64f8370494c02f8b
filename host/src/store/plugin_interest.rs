//! Filters' interest sets (`plugin_interest`): the users a filter plugin has rules for.
//! The store is the set's truth, shared by the pool; nodes keep it in memory.

use super::{Result, Store};

impl Store {
    /// Put `user` in `plugin`'s set, or take it out.
    pub async fn interest_set(&self, plugin: &str, user: &str, has_rules: bool) -> Result<()> {
        let query = match has_rules {
            true => "INSERT INTO plugin_interest (plugin, user_jid) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            false => "DELETE FROM plugin_interest WHERE plugin = $1 AND user_jid = $2",
        };
        sqlx::query(query).bind(plugin).bind(user).execute(&self.pool).await?;
        Ok(())
    }

    /// Every user in `plugin`'s set.
    pub async fn interest_of(&self, plugin: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT user_jid FROM plugin_interest WHERE plugin = $1")
                .bind(plugin)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}
