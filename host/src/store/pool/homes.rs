//! `pool_homes`: each user's home node, recorded with the epoch it had when chosen and
//! the strategy and reason that chose it.
//!
//! A home is *live* while its node holds a valid lease under that epoch and is not being
//! drained (`pool_drains`). Recording a new home replaces only a home that is not live,
//! inside one upsert, so two processes choosing at once keep the first live choice.

use super::{col, PoolDb};
use crate::store::Result;

/// A user's live home: the node and the client addresses it publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveHome {
    pub node_id: String,
    /// `pool_nodes.client_addrs`: the node's client listeners, comma-separated.
    pub client_addrs: String,
}

/// A home to record: the chosen node under its current epoch, and why.
#[derive(Debug, Clone, Copy)]
pub struct NewHome<'a> {
    pub bare: &'a str,
    pub node_id: &'a str,
    pub epoch: i64,
    /// The strategy that chose it (a plugin's name, or the built-in one).
    pub strategy: &'a str,
    pub reason: &'a str,
}

/// One user's recorded home, for `pool status --users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserHome {
    pub bare: String,
    pub node_id: String,
    /// Whether the home node is live under the epoch it was chosen at.
    pub home_live: bool,
    pub strategy: String,
    pub reason: String,
    /// The nodes the user's sessions are on (`pool_sessions`).
    pub connected_at: Vec<String>,
}

impl PoolDb {
    /// `bare`'s home, if one is recorded on a node that is live and takes users.
    pub async fn live_home(&self, bare: &str) -> Result<Option<LiveHome>> {
        let row = sqlx::query(
            "SELECT h.node_id, n.client_addrs FROM pool_homes h JOIN pool_nodes n \
             ON n.node_id = h.node_id AND n.epoch = h.epoch \
             WHERE h.bare = $1 AND n.state = 'live' AND n.lease_until > now() \
             AND NOT EXISTS (SELECT 1 FROM pool_drains d WHERE d.node_id = h.node_id)",
        )
        .bind(bare)
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| {
            Ok(LiveHome {
                node_id: col(&r, "node_id")?,
                client_addrs: col(&r, "client_addrs")?,
            })
        })
        .transpose()
    }

    /// Record `home`, unless the user already has a live home (another process chose
    /// first): only a home whose node is gone, replaced or draining is overwritten.
    pub async fn record_home(&self, home: NewHome<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO pool_homes (bare, node_id, epoch, strategy, reason) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (bare) DO UPDATE SET node_id = EXCLUDED.node_id, epoch = EXCLUDED.epoch, \
             strategy = EXCLUDED.strategy, reason = EXCLUDED.reason, chosen_at = now() \
             WHERE NOT EXISTS (SELECT 1 FROM pool_nodes n WHERE n.node_id = pool_homes.node_id \
                 AND n.epoch = pool_homes.epoch AND n.state = 'live' AND n.lease_until > now()) \
             OR EXISTS (SELECT 1 FROM pool_drains d WHERE d.node_id = pool_homes.node_id)",
        )
        .bind(home.bare)
        .bind(home.node_id)
        .bind(home.epoch)
        .bind(home.strategy)
        .bind(home.reason)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Forget `bare`'s home if it is `node`, so it is chosen again (rebalance).
    pub async fn forget_home(&self, bare: &str, node: &str) -> Result<()> {
        sqlx::query("DELETE FROM pool_homes WHERE bare = $1 AND node_id = $2")
            .bind(bare)
            .bind(node)
            .execute(&self.db)
            .await?;
        Ok(())
    }

    /// Every recorded home, by user, with where the user's sessions are.
    pub async fn user_homes(&self) -> Result<Vec<UserHome>> {
        let rows: Vec<(String, String, bool, String, String, Option<String>)> = sqlx::query_as(
            "SELECT h.bare, h.node_id, EXISTS (SELECT 1 FROM pool_nodes n WHERE n.node_id = h.node_id \
                 AND n.epoch = h.epoch AND n.state = 'live' AND n.lease_until > now()), h.strategy, h.reason, \
                 (SELECT string_agg(DISTINCT s.node_id, ',') FROM pool_sessions s WHERE s.bare = h.bare) \
             FROM pool_homes h ORDER BY h.bare",
        )
        .fetch_all(&self.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(bare, node_id, home_live, strategy, reason, at)| UserHome {
                bare,
                node_id,
                home_live,
                strategy,
                reason,
                connected_at: at
                    .map(|a| a.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
            })
            .collect())
    }
}
