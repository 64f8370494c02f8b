//! Moving live sessions, which only the operator starts, at `[placement] drain_per_second`
//! so a node empties without a reconnect storm:
//!
//! - **Drain** (`poolxmpp pool drain NODE`): the node takes no new users (their homes are
//!   chosen among the other nodes) and ends each of its sessions with `<see-other-host/>`
//!   naming the user's new home. `pool undrain` reverses it; moved sessions stay moved.
//! - **Rebalance** (`poolxmpp pool rebalance`): every node above the mean load forgets the
//!   homes of as many of its users as it has sessions above the mean, lets the strategy
//!   choose again, and moves those it chose elsewhere. Otherwise live sessions are never
//!   moved: a node joining the pool only takes new logins.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use super::{view, Placement};
use crate::context::Context;
use crate::pool::Pool;
use crate::store::pool::PoolDb;
use crate::store::StoreError;
use crate::stream::StreamError;

/// Watch for drain and rebalance requests every heartbeat and carry them out.
pub async fn run(ctx: Arc<Context>, pool: Arc<Pool>, placement: Arc<Placement>) {
    let heartbeat = Duration::from_millis(pool.config.heartbeat_ms);
    let per_heartbeat = (placement.config.drain_per_second as u64 * pool.config.heartbeat_ms / 1000).max(1) as usize;
    // Requests from before this node started are not for it.
    let mut rebalanced = pool.db.requests(pool.node_id()).await.map_or(0, |r| r.rebalance_at_ms);
    let mut busy = false;
    loop {
        // While users are being moved the paced gaps are the wait; otherwise a heartbeat.
        if !busy {
            tokio::time::sleep(heartbeat).await;
        }
        busy = false;
        let (draining, rebalance) = match pool.db.requests(pool.node_id()).await {
            Ok(r) => (r.draining, r.rebalance_at_ms),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read drain and rebalance requests");
                continue;
            }
        };
        if draining != placement.draining.swap(draining, Relaxed) {
            tracing::info!(node = %pool.node_id(), draining, "drain flag changed");
        }
        if pool.epoch().is_none() {
            continue;
        }
        if draining {
            let users = local_users(&ctx);
            busy = move_users(&ctx, &placement, pool.node_id(), users, per_heartbeat, false).await > 0;
        } else if rebalance > rebalanced {
            rebalanced = rebalance;
            match excess_sessions(&pool.db, pool.node_id()).await {
                Ok(0) => tracing::info!("rebalance requested; this node is not above the mean"),
                Ok(excess) => {
                    tracing::info!(excess, "rebalance requested; moving users above the mean");
                    let users = local_users(&ctx);
                    move_users(&ctx, &placement, pool.node_id(), users, excess, true).await;
                }
                Err(e) => tracing::warn!(error = %e, "cannot read the pool's load for a rebalance"),
            }
        }
    }
}

fn local_users(ctx: &Context) -> BTreeSet<String> {
    ctx.sessions
        .all()
        .into_iter()
        .filter(|r| r.is_local())
        .map(|r| r.bare.to_string())
        .collect()
}

/// How many sessions this node has above the mean of the accepting nodes.
async fn excess_sessions(db: &PoolDb, me: &str) -> Result<usize, StoreError> {
    let nodes = view::load(db, "").await?;
    let accepting: Vec<_> = nodes.iter().filter(|n| n.accepting).collect();
    let Some(mine) = accepting.iter().find(|n| n.id == me) else {
        return Ok(0);
    };
    let total: u64 = accepting.iter().map(|n| u64::from(n.sessions)).sum();
    let mean = total.div_ceil(accepting.len() as u64);
    Ok(u64::from(mine.sessions).saturating_sub(mean) as usize)
}

/// Move up to `limit` of `users` to their homes elsewhere, one every paced gap; with
/// `rechoose`, forget each one's home here first so the strategy chooses again. Returns
/// how many users were moved.
async fn move_users(
    ctx: &Context,
    placement: &Placement,
    me: &str,
    users: BTreeSet<String>,
    limit: usize,
    rechoose: bool,
) -> usize {
    let gap = Duration::from_secs(1) / placement.config.drain_per_second.max(1);
    let mut moved = 0;
    for bare in users {
        if moved >= limit {
            break;
        }
        if rechoose {
            if let Err(e) = placement.forget_home(&bare, me).await {
                tracing::warn!(error = %e, "cannot forget a home for the rebalance");
                break;
            }
        }
        let home = match placement.home_of(&bare).await {
            Ok(Some(home)) if home.node_id != me => home,
            Ok(Some(_)) => continue, // the strategy keeps them here
            Ok(None) => {
                tracing::warn!(node = %me, "no other node takes users; nothing to move to");
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot choose a new home");
                break;
            }
        };
        let err = StreamError::see_other_host(home.client_addr.clone(), "moving you to another node of this pool");
        for r in ctx.sessions.resources(&bare).into_iter().filter(|r| r.is_local()) {
            if ctx.sessions.hand_off(&r, err.clone()) {
                placement.stats.moved.fetch_add(1, Relaxed);
                tracing::info!(user = %bare, resource = %r.resource, to = %home.node_id, "session moved");
            }
        }
        moved += 1;
        tokio::time::sleep(gap).await;
    }
    moved
}
