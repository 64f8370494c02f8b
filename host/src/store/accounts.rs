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

/// What removing an account changed in other users' data.
#[derive(Debug, Default)]
pub struct RemovedAccount {
    /// Items that named the account in other users' rosters, as they were, now deleted.
    pub contacts: Vec<RemovedContact>,
    /// Users who had an unanswered subscription request from the account, now deleted.
    pub requested: Vec<String>,
}

/// One roster item naming a removed account: whose roster, the item as it was, and the
/// roster version after its deletion (for the push).
#[derive(Debug)]
pub struct RemovedContact {
    pub owner: String,
    pub item: super::RosterItem,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCredentials {
    pub sha1: ScramKeys,
    pub sha256: ScramKeys,
}

/// Plugin records belonging to one user: by convention (the bundled vCard plugin follows
/// it) a plugin keys a user's record as `PREFIX/BARE-JID`, so a key ending in `/` and the
/// bare JID is that user's and goes with the account. Compared by suffix, not `LIKE`, so a
/// `%` or `_` in the JID is not a wildcard.
async fn delete_user_plugin_data(tx: &mut sqlx::Transaction<'_, sqlx::Any>, jid: &str) -> Result<()> {
    let suffix = format!("/{jid}");
    sqlx::query(
        "DELETE FROM plugin_kv WHERE length(key) > $1 AND substr(key, length(key) - CAST($2 AS INTEGER) + 1) = $3",
    )
    .bind(suffix.chars().count() as i64)
    .bind(suffix.chars().count() as i64)
    .bind(&suffix)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM plugin_interest WHERE user_jid = $1")
        .bind(jid)
        .execute(&mut **tx)
        .await?;
    Ok(())
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

    /// Delete an account, everything that belongs to it, and every trace of it in other
    /// users' data, in one transaction: its roster, roster version, pending requests to it,
    /// offline messages and plugin records keyed by it (see `delete_user_plugin_data`),
    /// plus the items naming it in other rosters (each such roster's version is bumped) and
    /// its requests waiting in other users' `pending_in`. Returns what changed for others, so a
    /// running server can tell them; with nobody online the store is already consistent.
    pub async fn remove_account(&self, jid: &str) -> Result<RemovedAccount> {
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
        delete_user_plugin_data(&mut tx, jid).await?;
        let rows = sqlx::query("DELETE FROM roster WHERE contact = $1 RETURNING *")
            .bind(jid)
            .fetch_all(&mut *tx)
            .await?;
        let mut contacts = Vec::with_capacity(rows.len());
        for row in &rows {
            let owner: String = col(row, "owner")?;
            let item = super::roster::item_from_row(row)?;
            let version = super::roster::bump_version(&mut tx, &owner).await?;
            contacts.push(RemovedContact { owner, item, version });
        }
        let requested = sqlx::query("DELETE FROM pending_in WHERE contact = $1 RETURNING owner")
            .bind(jid)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| col(r, "owner"))
            .collect::<Result<Vec<String>>>()?;
        tx.commit().await?;
        Ok(RemovedAccount { contacts, requested })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RosterItem, Subscription};

    #[tokio::test]
    async fn removal_takes_every_trace_of_the_account() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open("sqlite", dir.path(), 4).await.expect("open store");
        let creds = crate::auth::derive_credentials("pw").expect("credentials");
        for jid in ["u@x", "c@x", "d@x"] {
            store.create_account(jid, "x", &creds).await.expect("account");
        }
        let mut both = RosterItem::new("u@x");
        both.subscription = Subscription::Both;
        store.put_roster_item("c@x", &both, 10).await.expect("c's item");
        store
            .put_roster_item("u@x", &RosterItem::new("c@x"), 10)
            .await
            .expect("u's item");
        store
            .add_pending_in("d@x", "u@x", "<presence/>", 10)
            .await
            .expect("u asked d");
        store
            .add_pending_in("u@x", "d@x", "<presence/>", 10)
            .await
            .expect("d asked u");
        store.kv_put("vcard", "vcard/u@x", b"mine").await.expect("vcard");
        store.kv_put("vcard", "vcard/uu@x", b"not mine").await.expect("vcard");

        let removed = store.remove_account("u@x").await.expect("removed");
        assert_eq!(removed.contacts.len(), 1);
        assert_eq!(removed.contacts[0].owner, "c@x");
        assert_eq!(removed.contacts[0].item.subscription, Subscription::Both);
        assert_eq!(removed.requested, vec!["d@x".to_string()]);
        assert!(store.roster("c@x").await.expect("roster").is_empty());
        assert!(store.roster("u@x").await.expect("roster").is_empty());
        assert!(store.pending_in("d@x").await.expect("pending").is_empty());
        assert!(store.pending_in("u@x").await.expect("pending").is_empty());
        assert_eq!(store.kv_get("vcard", "vcard/u@x").await.expect("kv"), None);
        assert!(store.kv_get("vcard", "vcard/uu@x").await.expect("kv").is_some());
        assert!(!store.account_exists("u@x").await.expect("exists"));
        assert!(matches!(
            store.remove_account("u@x").await,
            Err(StoreError::NoSuchAccount)
        ));
    }
}
