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

pub(super) fn item_from_row(row: &AnyRow) -> Result<RosterItem> {
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

    pub async fn roster_version(&self, owner: &str) -> Result<i64> {
        let row = sqlx::query("SELECT version FROM roster_version WHERE owner = $1")
            .bind(owner)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| col(&r, "version")).transpose().map(|v| v.unwrap_or(0))
    }

    /// Insert or replace an item; returns the new roster version. A new item is refused with
    /// [`StoreError::RosterFull`] when the owner already has `max_items`; an existing one is
    /// always updated. The version bump comes first: it locks the owner's version row
    /// (PostgreSQL) or takes the write lock (SQLite), so concurrent additions are
    /// serialised and the count cannot be overshot.
    pub async fn put_roster_item(&self, owner: &str, item: &RosterItem, max_items: i64) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let version = bump_version(&mut tx, owner).await?;
        if !write_item(&mut tx, owner, item, max_items).await? {
            // Dropping the transaction rolls the version bump back.
            return Err(StoreError::RosterFull);
        }
        tx.commit().await?;
        Ok(version)
    }

    /// Read-modify-write of one roster item, atomic against every other change to the
    /// owner's roster: `change` sees the item as stored now (`None`: no item) and returns
    /// the item to store, or `None` to leave it as it is. The subscription state machine
    /// changes an item from two sides at once (the user's outbound half and the contact's
    /// inbound half, possibly on two nodes); a plain read then write lost one of the two
    /// (a simultaneous handshake ending as `to` or `from` instead of `both`).
    ///
    /// The version bump comes first and serialises the owner's roster changes: it locks
    /// the owner's version row on PostgreSQL (a later statement in the transaction reads
    /// what the previous holder committed) and takes the write lock on SQLite. A change
    /// that writes nothing rolls the bump back. A new item beyond `max_items` is refused
    /// with [`StoreError::RosterFull`], as in [`Store::put_roster_item`].
    pub async fn update_roster_item<F>(
        &self,
        owner: &str,
        contact: &str,
        max_items: i64,
        change: F,
    ) -> Result<ItemUpdate>
    where
        F: FnOnce(Option<&RosterItem>) -> Option<RosterItem> + Send,
    {
        let mut tx = self.pool.begin().await?;
        let version = bump_version(&mut tx, owner).await?;
        let row = sqlx::query("SELECT * FROM roster WHERE owner = $1 AND contact = $2")
            .bind(owner)
            .bind(contact)
            .fetch_optional(&mut *tx)
            .await?;
        let before = row.as_ref().map(item_from_row).transpose()?;
        let Some(after) = change(before.as_ref()) else {
            // Dropping the transaction rolls the version bump back.
            return Ok(ItemUpdate { before, written: None });
        };
        if !write_item(&mut tx, owner, &after, max_items).await? {
            return Err(StoreError::RosterFull);
        }
        tx.commit().await?;
        Ok(ItemUpdate {
            before,
            written: Some((after, version)),
        })
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

    /// Store (or replace) `contact`'s subscription request to `owner`. A request from a new
    /// contact is refused with [`StoreError::PendingFull`] when `owner` already has
    /// `max_pending` waiting, so strangers cannot store unbounded rows against one user.
    /// The no-op update of the owner's account row serialises concurrent requests (a row
    /// lock on PostgreSQL, the write lock on SQLite), so the count cannot be overshot.
    pub async fn add_pending_in(&self, owner: &str, contact: &str, stanza: &str, max_pending: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE accounts SET jid = jid WHERE jid = $1")
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        let written = sqlx::query(
            "INSERT INTO pending_in (owner, contact, stanza)
             SELECT $1, $2, $3
             WHERE (SELECT COUNT(*) FROM pending_in WHERE owner = $4) < $5
                OR EXISTS (SELECT 1 FROM pending_in WHERE owner = $6 AND contact = $7)
             ON CONFLICT (owner, contact) DO UPDATE SET stanza = excluded.stanza",
        )
        .bind(owner)
        .bind(contact)
        .bind(stanza)
        .bind(owner)
        .bind(max_pending)
        .bind(owner)
        .bind(contact)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if written == 0 {
            return Err(StoreError::PendingFull);
        }
        tx.commit().await?;
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

/// What [`Store::update_roster_item`] found and wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemUpdate {
    /// The item as it was (`None`: there was none).
    pub before: Option<RosterItem>,
    /// The item as stored now and the roster version of the change, if it changed.
    pub written: Option<(RosterItem, i64)>,
}

/// Insert or replace `item` within a transaction; `false` when it is a new item and the
/// owner already has `max_items`.
async fn write_item(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    owner: &str,
    item: &RosterItem,
    max_items: i64,
) -> Result<bool> {
    let written = sqlx::query(
        "INSERT INTO roster (owner, contact, name, subscription, ask, approved, groups)
         SELECT $1, $2, $3, $4, $5, $6, $7
         WHERE (SELECT COUNT(*) FROM roster WHERE owner = $8) < $9
            OR EXISTS (SELECT 1 FROM roster WHERE owner = $10 AND contact = $11)
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
    .bind(owner)
    .bind(max_items)
    .bind(owner)
    .bind(&item.contact)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(written > 0)
}

pub(super) async fn bump_version(tx: &mut sqlx::Transaction<'_, sqlx::Any>, owner: &str) -> Result<i64> {
    let row = sqlx::query(
        "INSERT INTO roster_version (owner, version) VALUES ($1, 1)
         ON CONFLICT (owner) DO UPDATE SET version = roster_version.version + 1 RETURNING version",
    )
    .bind(owner)
    .fetch_one(&mut **tx)
    .await?;
    col(&row, "version")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &tempfile::TempDir) -> Store {
        Store::open("sqlite", dir.path(), 8).await.expect("open store")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_additions_never_overshoot_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .put_roster_item("o@x", &RosterItem::new(&format!("c{i}@x")), 5)
                        .await
                })
            })
            .collect();
        let mut stored = 0;
        for t in tasks {
            match t.await.expect("task") {
                Ok(_) => stored += 1,
                Err(StoreError::RosterFull) => {}
                Err(e) => panic!("unexpected store error: {e}"),
            }
        }
        assert_eq!(stored, 5);
        assert_eq!(store.roster("o@x").await.expect("roster").len(), 5);
        // A full roster still updates its existing items.
        let mut item = store.roster("o@x").await.expect("roster").remove(0);
        item.name = Some("renamed".into());
        store.put_roster_item("o@x", &item, 5).await.expect("update at the cap");
    }

    /// Twenty changes to one item at once, each adding its own group: none is lost, and
    /// a change that writes nothing leaves the version alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_changes_to_one_item_are_not_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .update_roster_item("o@x", "c@x", 10, |item| {
                            let mut item = item.cloned().unwrap_or_else(|| RosterItem::new("c@x"));
                            item.groups.push(format!("g{i}"));
                            Some(item)
                        })
                        .await
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task").expect("update");
        }
        let item = store.roster_item("o@x", "c@x").await.expect("read").expect("item");
        assert_eq!(item.groups.len(), 20, "lost updates: {:?}", item.groups);
        let version = store.roster_version("o@x").await.expect("version");
        assert_eq!(version, 20);
        let unchanged = store
            .update_roster_item("o@x", "c@x", 10, |_| None)
            .await
            .expect("no-op");
        assert_eq!(unchanged.before.as_ref(), Some(&item));
        assert!(unchanged.written.is_none());
        assert_eq!(store.roster_version("o@x").await.expect("version"), version);
    }

    #[tokio::test]
    async fn pending_requests_are_capped_per_owner() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store(&dir).await;
        for i in 0..3 {
            store
                .add_pending_in("o@x", &format!("s{i}@x"), "<presence/>", 3)
                .await
                .expect("stored");
        }
        assert!(matches!(
            store.add_pending_in("o@x", "s9@x", "<presence/>", 3).await,
            Err(StoreError::PendingFull)
        ));
        // A repeated request replaces its row rather than adding one.
        store
            .add_pending_in("o@x", "s0@x", "<presence id='2'/>", 3)
            .await
            .expect("replaced");
        assert_eq!(store.pending_in("o@x").await.expect("pending").len(), 3);
    }
}
