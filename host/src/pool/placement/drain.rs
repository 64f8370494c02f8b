//! Draining a node for maintenance (`poolxmpp pool drain NODE`): the node takes no new
//! users (their homes are chosen among the other nodes) and moves its own away, each
//! session ended with `<see-other-host/>` naming the user's new home, at
//! `[placement] drain_per_second` — so a node empties without a reconnect storm.
//! `pool undrain` reverses it; sessions already moved stay where they are.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPool;

use crate::server::Server;
use crate::stream::StreamError;

/// Mark `node` as draining (or not). Returns whether anything changed.
pub async fn set(db: &PgPool, node: &str, draining: bool) -> Result<bool, sqlx::Error> {
    let done = if draining {
        sqlx::query("INSERT INTO pool_drains (node_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(node)
            .execute(db)
            .await?
    } else {
        sqlx::query("DELETE FROM pool_drains WHERE node_id = $1")
            .bind(node)
            .execute(db)
            .await?
    };
    Ok(done.rows_affected() > 0)
}

async fn is_drained(db: &PgPool, node: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pool_drains WHERE node_id = $1)")
        .bind(node)
        .fetch_one(db)
        .await
}

/// Watch this node's drain flag every heartbeat; while it is set, move local users away.
pub async fn run(server: Arc<Server>) {
    let (Some(pool), Some(placement)) = (server.pool.clone(), server.placement.clone()) else {
        return;
    };
    let heartbeat = Duration::from_millis(pool.config.heartbeat_ms);
    let gap = Duration::from_secs(1) / placement.config.drain_per_second.max(1);
    let mut busy = false;
    loop {
        // While users are being moved the paced gaps are the wait; otherwise a heartbeat.
        if !busy {
            tokio::time::sleep(heartbeat).await;
        }
        busy = false;
        let draining = match is_drained(&pool.db, pool.node_id()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the drain flag");
                continue;
            }
        };
        if draining != placement.draining.swap(draining, Relaxed) {
            tracing::info!(node = %pool.node_id(), draining, "drain flag changed");
        }
        if !draining || pool.epoch().is_none() {
            continue;
        }
        // One user at a time, paced; the flag is read again before each heartbeat's worth.
        let users: BTreeSet<String> = server
            .sessions
            .all()
            .into_iter()
            .filter(|r| r.is_local())
            .map(|r| r.bare.to_string())
            .collect();
        let per_round = (placement.config.drain_per_second as u64 * pool.config.heartbeat_ms / 1000).max(1) as usize;
        for bare in users.into_iter().take(per_round) {
            busy = true;
            match placement.home_of(&bare).await {
                Ok(Some(home)) if home.node_id != pool.node_id() => {
                    let err = StreamError::see_other_host(home.client_addr.clone(), "this node is being drained");
                    for r in server.sessions.resources(&bare).into_iter().filter(|r| r.is_local()) {
                        if server.sessions.hand_off(&r, err.clone()) {
                            placement.stats.drained.fetch_add(1, Relaxed);
                            tracing::info!(user = %bare, resource = %r.resource, to = %home.node_id, "moved for the drain");
                        }
                    }
                }
                Ok(_) => {
                    tracing::warn!(node = %pool.node_id(), "draining, but no other node takes users");
                    busy = false;
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot choose a new home while draining");
                    busy = false;
                    break;
                }
            }
            tokio::time::sleep(gap).await;
        }
    }
}
