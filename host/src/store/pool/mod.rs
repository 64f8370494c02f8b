//! The pool's shared tables, on PostgreSQL only (DESIGN §4).
//!
//! Coordination needs what the portable `Any` store cannot give: the database's own clock
//! (`now()`, so node clocks need not agree), interval arithmetic and conditional upserts
//! whose `WHERE` decides who wins a race. So the pool reaches PostgreSQL through its own
//! small connection pool, [`PoolDb`], and every query it runs lives in this module, one
//! submodule per table group:
//!
//! - [`nodes`]: `pool_nodes`, the leases and epochs that fence a node.
//! - [`directory`]: `pool_sessions`, which node serves which resource.
//! - [`ownership`]: `pool_ownership`, keyed owners with fencing tokens.
//! - [`homes`]: `pool_homes`, each user's home node.
//! - [`view`]: the pool as placement sees it (live nodes, their load, a user's contacts).
//! - [`drains`]: `pool_drains` and `pool_rebalance`, the operator's requests.
//!
//! The SQL is the fencing: each query's conditions (epoch and lease checks, `RETURNING`
//! what a conditional update won) are what make a decision safe, so callers never compose
//! SQL of their own. Tables are created by the PostgreSQL migrations of [`crate::store`].

pub mod directory;
pub mod drains;
pub mod homes;
pub mod nodes;
pub mod ownership;
pub mod view;

use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};

pub use directory::DirectoryEntry;
pub use drains::Requests;
pub use homes::{LiveHome, NewHome, UserHome};
pub use nodes::{Holder, MemberState, NodeEpoch, NodeInfo};
pub use ownership::Owner;
pub use view::NodeLoad;

use super::{Result, StoreError};

/// A handle on the pool's PostgreSQL tables; cheap to clone (one connection pool).
#[derive(Clone)]
pub struct PoolDb {
    db: PgPool,
}

impl PoolDb {
    /// Connect to the pool's PostgreSQL store with at most `max_connections` connections,
    /// waiting at most `acquire_timeout` for one. Does not migrate: the schema is the
    /// [`crate::store::Store`]'s, opened first by whoever starts the node or the command.
    pub async fn connect(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<PoolDb> {
        let db = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect(url)
            .await?;
        Ok(PoolDb { db })
    }
}

/// One column of a PostgreSQL row, its decoding failure as a [`StoreError`].
fn col<T>(row: &PgRow, name: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    use sqlx::Row;
    row.try_get(name).map_err(StoreError::from)
}
