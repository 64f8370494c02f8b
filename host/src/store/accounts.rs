//! Accounts and their SCRAM credentials.

use sqlx::Row;

use super::{col, now_unix, Result, Store, StoreError};

/// SCRAM salted keys for one hash function (RFC 5802 §3): enough to verify a client
/// without ever knowing its password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| StoreError::Corrupt(format!("credential encoding: {e}")))
}

fn keys_from_row(row: &sqlx::any::AnyRow, prefix: &str) -> Result<ScramKeys> {
    let iterations: i64 = col(row, &format!("{prefix}_iterations"))?;
    Ok(ScramKeys {
        salt: unb64(&col::<String>(row, &format!("{prefix}_salt"))?)?,
        iterations: u32::try_from(iterations).map_err(|_| StoreError::Corrupt("iterations".into()))?,
        stored_key: unb64(&col::<String>(row, &format!("{prefix}_stored_key"))?)?,
        server_key: unb64(&col::<String>(row, &format!("{prefix}_server_key"))?)?,
    })
}

impl Store {
    pub async fn create_account(&self, jid: &str, domain: &str, creds: &StoredCredentials) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO accounts (jid, domain, sha1_salt, sha1_iterations, sha1_stored_key, sha1_server_key,
                sha256_salt, sha256_iterations, sha256_stored_key, sha256_server_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (jid) DO NOTHING",
        )
        .bind(jid)
        .bind(domain)
        .bind(b64(&creds.sha1.salt))
        .bind(creds.sha1.iterations as i64)
        .bind(b64(&creds.sha1.stored_key))
        .bind(b64(&creds.sha1.server_key))
        .bind(b64(&creds.sha256.salt))
        .bind(creds.sha256.iterations as i64)
        .bind(b64(&creds.sha256.stored_key))
        .bind(b64(&creds.sha256.server_key))
        .bind(now_unix())
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::AccountExists);
        }
        Ok(())
    }

    pub async fn set_credentials(&self, jid: &str, creds: &StoredCredentials) -> Result<()> {
        let result = sqlx::query(
            "UPDATE accounts SET sha1_salt = $1, sha1_iterations = $2, sha1_stored_key = $3, sha1_server_key = $4,
                sha256_salt = $5, sha256_iterations = $6, sha256_stored_key = $7, sha256_server_key = $8
             WHERE jid = $9",
        )
        .bind(b64(&creds.sha1.salt))
        .bind(creds.sha1.iterations as i64)
        .bind(b64(&creds.sha1.stored_key))
        .bind(b64(&creds.sha1.server_key))
        .bind(b64(&creds.sha256.salt))
        .bind(creds.sha256.iterations as i64)
        .bind(b64(&creds.sha256.stored_key))
        .bind(b64(&creds.sha256.server_key))
        .bind(jid)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NoSuchAccount);
        }
        Ok(())
    }

    /// Delete an account and everything that belongs to it.
    pub async fn delete_account(&self, jid: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM accounts WHERE jid = $1")
            .bind(jid)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NoSuchAccount);
        }
        for table in ["roster", "roster_version", "pending_in", "offline"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE owner = $1"))
                .bind(jid)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn credentials(&self, jid: &str) -> Result<Option<StoredCredentials>> {
        let row = sqlx::query("SELECT * FROM accounts WHERE jid = $1")
            .bind(jid)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(StoredCredentials {
                sha1: keys_from_row(&row, "sha1")?,
                sha256: keys_from_row(&row, "sha256")?,
            })
        })
        .transpose()
    }

    pub async fn account_exists(&self, jid: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM accounts WHERE jid = $1")
            .bind(jid)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub async fn list_accounts(&self, domain: Option<&str>) -> Result<Vec<String>> {
        let rows = match domain {
            Some(d) => {
                sqlx::query("SELECT jid FROM accounts WHERE domain = $1 ORDER BY jid")
                    .bind(d)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT jid FROM accounts ORDER BY jid")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|r| r.try_get::<String, _>("jid").map_err(StoreError::from))
            .collect()
    }
}
