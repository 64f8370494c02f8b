//! `pool_nodes`: one row per node id, holding its current epoch and lease.
//!
//! Every time comparison is PostgreSQL's `now()`. A join takes the row with `epoch + 1`
//! only while no other live lease holds it; a renewal extends the lease of one epoch and
//! one process only, so a node whose epoch was declared dead learns it is fenced; declaring
//! the dead is one conditional `UPDATE … RETURNING`, so exactly one caller wins each epoch.

use sqlx::postgres::PgRow;

use super::{col, PoolDb};
use crate::store::{Result, StoreError};

/// Where a node stands in `pool_nodes.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberState {
    /// Joined; serving while its lease is valid.
    Live,
    /// Its lease expired and a survivor ran its failover.
    Dead,
    /// It gave its lease back on a clean shutdown.
    Left,
}

impl MemberState {
    /// The value stored in `pool_nodes.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Live => "live",
            MemberState::Dead => "dead",
            MemberState::Left => "left",
        }
    }

    fn parse(s: &str) -> Result<MemberState> {
        match s {
            "live" => Ok(MemberState::Live),
            "dead" => Ok(MemberState::Dead),
            "left" => Ok(MemberState::Left),
            other => Err(StoreError::Corrupt(format!("pool_nodes.state {other:?}"))),
        }
    }
}

/// One node as the directory sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    pub node_id: String,
    pub epoch: i64,
    pub link_addr: String,
    pub client_addrs: String,
    pub state: MemberState,
    /// Milliseconds since the last renewal, by the database clock.
    pub lease_age_ms: i64,
    /// Whether the lease is still valid now.
    pub lease_valid: bool,
    pub sessions: i64,
    pub load: f64,
}

/// A node id under one epoch: one life of a node.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeEpoch {
    pub node_id: String,
    pub epoch: i64,
}

/// The process holding (or asking for) a node id's lease: the id, and the random
/// instance that tells a restarted node from an impostor under the same id.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub node_id: &'a str,
    pub instance: &'a str,
}

const NODE_COLUMNS: &str = "node_id, epoch, link_addr, client_addrs, state, sessions, load, \
     (EXTRACT(EPOCH FROM (now() - heartbeat_at)) * 1000)::BIGINT AS lease_age_ms, \
     (lease_until > now()) AS lease_valid";

fn node_info(row: &PgRow) -> Result<NodeInfo> {
    Ok(NodeInfo {
        node_id: col(row, "node_id")?,
        epoch: col(row, "epoch")?,
        link_addr: col(row, "link_addr")?,
        client_addrs: col(row, "client_addrs")?,
        state: MemberState::parse(&col::<String>(row, "state")?)?,
        lease_age_ms: col(row, "lease_age_ms")?,
        lease_valid: col(row, "lease_valid")?,
        sessions: col(row, "sessions")?,
        load: col(row, "load")?,
    })
}

impl PoolDb {
    /// Take `holder`'s row with a fresh epoch and a lease of `lease_ms`, publishing its
    /// addresses. `None` while another process holds a live lease under the id.
    pub async fn join_node(
        &self,
        holder: Holder<'_>,
        link_addr: &str,
        client_addrs: &str,
        lease_ms: i64,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO pool_nodes (node_id, epoch, instance, link_addr, client_addrs, state, joined_at, \
             heartbeat_at, lease_until) \
             VALUES ($1, 1, $2, $3, $4, 'live', now(), now(), now() + $5 * interval '1 millisecond') \
             ON CONFLICT (node_id) DO UPDATE SET epoch = pool_nodes.epoch + 1, instance = EXCLUDED.instance, \
             link_addr = EXCLUDED.link_addr, client_addrs = EXCLUDED.client_addrs, state = 'live', \
             joined_at = now(), heartbeat_at = now(), lease_until = EXCLUDED.lease_until, sessions = 0, load = 0 \
             WHERE pool_nodes.lease_until < now() OR pool_nodes.state <> 'live' \
             RETURNING epoch",
        )
        .bind(holder.node_id)
        .bind(holder.instance)
        .bind(link_addr)
        .bind(client_addrs)
        .bind(lease_ms)
        .fetch_optional(&self.db)
        .await?;
        row.map(|r| col(&r, "epoch")).transpose()
    }

    /// The link address published under `node_id`, to name the holder of a taken id.
    pub async fn link_addr_of(&self, node_id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT link_addr FROM pool_nodes WHERE node_id = $1")
                .bind(node_id)
                .fetch_optional(&self.db)
                .await?,
        )
    }

    /// Extend `holder`'s lease under `epoch` by `lease_ms` and publish its load. `false`:
    /// that epoch is no longer live (declared dead, or replaced), so the node is fenced.
    pub async fn renew_lease(
        &self,
        holder: Holder<'_>,
        epoch: i64,
        lease_ms: i64,
        sessions: i64,
        load: f64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE pool_nodes SET heartbeat_at = now(), lease_until = now() + $1 * interval '1 millisecond', \
             sessions = $2, load = $3 \
             WHERE node_id = $4 AND epoch = $5 AND instance = $6 AND state = 'live' AND lease_until > now()",
        )
        .bind(lease_ms)
        .bind(sessions)
        .bind(load)
        .bind(holder.node_id)
        .bind(epoch)
        .bind(holder.instance)
        .execute(&self.db)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Give `holder`'s lease under `epoch` back (a clean shutdown).
    pub async fn leave_pool(&self, holder: Holder<'_>, epoch: i64) -> Result<()> {
        sqlx::query(
            "UPDATE pool_nodes SET state = 'left', lease_until = now() \
             WHERE node_id = $1 AND epoch = $2 AND instance = $3",
        )
        .bind(holder.node_id)
        .bind(epoch)
        .bind(holder.instance)
        .execute(&self.db)
        .await?;
        Ok(())
    }

    /// Mark every node but `except` whose lease has expired as dead, returning the lives
    /// this call won. Concurrent callers never both win one.
    pub async fn claim_expired(&self, except: &str) -> Result<Vec<NodeEpoch>> {
        let rows = sqlx::query(
            "UPDATE pool_nodes SET state = 'dead' \
             WHERE state = 'live' AND lease_until < now() AND node_id <> $1 \
             RETURNING node_id, epoch",
        )
        .bind(except)
        .fetch_all(&self.db)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeEpoch {
                    node_id: col(r, "node_id")?,
                    epoch: col(r, "epoch")?,
                })
            })
            .collect()
    }

    /// Every node ever registered, newest state, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        let rows = sqlx::query(&format!("SELECT {NODE_COLUMNS} FROM pool_nodes ORDER BY node_id"))
            .fetch_all(&self.db)
            .await?;
        rows.iter().map(node_info).collect()
    }

    /// Does `node` hold a valid lease under `epoch` right now?
    pub async fn is_live(&self, node: &str, epoch: i64) -> Result<bool> {
        let live: Option<bool> = sqlx::query_scalar(
            "SELECT true FROM pool_nodes WHERE node_id = $1 AND epoch = $2 AND state = 'live' AND lease_until > now()",
        )
        .bind(node)
        .bind(epoch)
        .fetch_optional(&self.db)
        .await?;
        Ok(live.is_some())
    }
}
