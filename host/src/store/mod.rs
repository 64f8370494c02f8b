//! Persistent state behind one async API, on SQLite (the default) or PostgreSQL.
//!
//! Both backends go through sqlx's `Any` driver with the same SQL, so every query is
//! written once and the same tests run on both. Portable SQL only: `$n` placeholders in
//! first-use order (SQLite binds them positionally), `BIGINT`/`TEXT` columns, `ON CONFLICT`
//! upserts and `RETURNING`. Schema changes are migrations, one directory per backend.
//!
//! The pool's coordination tables are PostgreSQL-only and reached through their own
//! handle, [`pool::PoolDb`] (see there for why).

mod accounts;
mod caps;
mod offline;
mod plugin_interest;
mod plugin_kv;
mod plugin_timers;
pub mod pool;
mod roster;

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor};

pub use accounts::{RemovedAccount, RemovedContact, ScramKeys, StoredCredentials};
pub use plugin_kv::Fence;
pub use plugin_timers::StoredTimer;
pub use roster::{ItemUpdate, RosterItem, Subscription};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("account already exists")]
    AccountExists,
    #[error("no such account")]
    NoSuchAccount,
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A new roster item would exceed `limits.roster_max_items`.
    #[error("the roster is full")]
    RosterFull,
    /// A new subscription request would exceed `limits.pending_subscriptions_max`.
    #[error("too many subscription requests are waiting")]
    PendingFull,
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Open (creating and migrating if needed) the store named by the config's `store` field.
    pub async fn open(spec: &str, data_dir: &Path, max_connections: u32) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (url, backend) = if spec == "sqlite" {
            std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Io {
                path: data_dir.display().to_string(),
                source,
            })?;
            let path = data_dir.join("poolxmpp.db");
            (format!("sqlite://{}?mode=rwc", path.display()), Backend::Sqlite)
        } else if spec.starts_with("sqlite:") {
            let url = if spec.contains('?') {
                spec.to_string()
            } else {
                format!("{spec}?mode=rwc")
            };
            (url, Backend::Sqlite)
        } else {
            (spec.to_string(), Backend::Postgres)
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; the busy timeout turns writer
                    // contention into a short wait instead of an error.
                    conn.execute("PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        let store = Store { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await?,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn col<T>(row: &AnyRow, name: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row;
    row.try_get(name).map_err(StoreError::from)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
