//! Roster items, roster versions and pending inbound subscription requests (RFC 6121 §2–3).

use sqlx::any::AnyRow;

use super::{col, Result, Store, StoreError};

/// The `subscription` attribute of a roster item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscription {
    None,
    To,
    From,
    Both,
}

impl Subscription {
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Subscription::None,
            "to" => Subscription::To,
            "from" => Subscription::From,
            "both" => Subscription::Both,
            _ => return None,
        })
    }

    /// The user receives the contact's presence.
    pub fn has_to(self) -> bool {
        matches!(self, Subscription::To | Subscription::Both)
    }

    /// The contact receives the user's presence.
    pub fn has_from(self) -> bool {
        matches!(self, Subscription::From | Subscription::Both)
    }

    pub fn with_to(self, on: bool) -> Self {
        Self::from_flags(on, self.has_from())
    }

    pub fn with_from(self, on: bool) -> Self {
        Self::from_flags(self.has_to(), on)
    }

    fn from_flags(to: bool, from: bool) -> Self {
        match (to, from) {
            (false, false) => Subscription::None,
            (true, false) => Subscription::To,
            (false, true) => Subscription::From,
            (true, true) => Subscription::Both,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterItem {
    pub contact: String,
    pub name: Option<String>,
    pub subscription: Subscription,
    /// Pending-out: we sent a subscribe the contact has not answered.
    pub ask: bool,
    /// Pre-approved inbound subscription (RFC 6121 §3.4).
    pub approved: bool,
    pub groups: Vec<String>,
}

impl RosterItem {
    pub fn new(contact: &str) -> Self {
        RosterItem {
            contact: contact.to_string(),
            name: None,
            subscription: Subscription::None,
            ask: false,
            approved: false,
            groups: Vec::new(),
        }
    }
}

fn item_from_row(row: &AnyRow) -> Result<RosterItem> {
    let sub: String = col(row, "subscription")?;
    let groups: String = col(row, "groups")?;
    Ok(RosterItem {
        contact: col(row, "contact")?,
        name: col(row, "name")?,
        subscription: Subscription::parse(&sub).ok_or_else(|| StoreError::Corrupt(format!("subscription {sub}")))?,
        ask: col::<i64>(row, "ask")? != 0,
        approved: col::<i64>(row, "approved")? != 0,
        groups: serde_json::from_str(&groups).map_err(|e| StoreError::Corrupt(format!("groups: {e}")))?,
    })
}

impl Store {
    pub async fn roster(&self, owner: &str) -> Result<Vec<RosterItem>> {
        let rows = sqlx::query("SELECT * FROM roster WHERE owner = $1 ORDER BY contact")
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(item_from_row).collect()
    }

    pub async fn roster_item(&self, owner: &str, contact: &str) -> Result<Option<RosterItem>> {
        let row = sqlx::query("SELECT * FROM roster WHERE owner = $1 AND contact = $2")
            .bind(owner)
            .bind(contact)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(item_from_row).transpose()
    }

    pub async fn roster_len(&self, owner: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM roster WHERE owner = $1")
            .bind(owner)
            .fetch_one(&self.pool)
            .await?;
        col(&row, "n")
    }

    pub async fn roster_version(&self, owner: &str) -> Result<i64> {
        let row = sqlx::query("SELECT version FROM roster_version WHERE owner = $1")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| col(&r, "version")).transpose().map(|v| v.unwrap_or(0))
    }

    /// Insert or replace an item; returns the new roster version.
    pub async fn put_roster_item(&self, owner: &str, item: &RosterItem) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO roster (owner, contact, name, subscription, ask, approved, groups)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (owner, contact) DO UPDATE SET name = excluded.name, subscription = excluded.subscription,
                ask = excluded.ask, approved = excluded.approved, groups = excluded.groups",
        )
        .bind(owner)
        .bind(&item.contact)
        .bind(item.name.as_deref())
        .bind(item.subscription.as_str())
        .bind(item.ask as i64)
        .bind(item.approved as i64)
        .bind(serde_json::to_string(&item.groups).expect("strings serialize"))
        .execute(&mut *tx)
        .await?;
        let version = bump_version(&mut tx, owner).await?;
        tx.commit().await?;
        Ok(version)
    }

    /// Remove an item; returns the new roster version, or `None` if there was no item.
    pub async fn delete_roster_item(&self, owner: &str, contact: &str) -> Result<Option<i64>> {
        let mut tx = self.pool.begin().await?;
        let deleted = sqlx::query("DELETE FROM roster WHERE owner = $1 AND contact = $2")
            .bind(owner)
            .bind(contact)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(None);
        }
        let version = bump_version(&mut tx, owner).await?;
        tx.commit().await?;
        Ok(Some(version))
    }

    pub async fn pending_in(&self, owner: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT contact, stanza FROM pending_in WHERE owner = $1 ORDER BY contact")
            .bind(owner)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((col(r, "contact")?, col(r, "stanza")?)))
            .collect()
    }

    pub async fn has_pending_in(&self, owner: &str, contact: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM pending_in WHERE owner = $1 AND contact = $2")
            .bind(owner)
            .bind(contact)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    pub async fn add_pending_in(&self, owner: &str, contact: &str, stanza: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO pending_in (owner, contact, stanza) VALUES ($1, $2, $3)
             ON CONFLICT (owner, contact) DO UPDATE SET stanza = excluded.stanza",
        )
        .bind(owner)
        .bind(contact)
        .bind(stanza)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Returns whether a request was pending.
    pub async fn remove_pending_in(&self, owner: &str, contact: &str) -> Result<bool> {
        let n = sqlx::query("DELETE FROM pending_in WHERE owner = $1 AND contact = $2")
            .bind(owner)
            .bind(contact)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(n > 0)
    }
}

async fn bump_version(tx: &mut sqlx::Transaction<'_, sqlx::Any>, owner: &str) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO roster_version (owner, version) VALUES ($1, 1)
         ON CONFLICT (owner) DO UPDATE SET version = roster_version.version + 1 RETURNING version",
    )
    .bind(owner)
    .fetch_one(&mut **tx)
    .await?;
    col(&row, "version")
}
