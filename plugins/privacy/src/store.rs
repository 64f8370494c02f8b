//! One record per user in the plugin's storage (`user/{bare}`, JSON): every named list
//! and which one is the default. Both XEP-0016 and XEP-0191 read and write it; the
//! blocklist is a view over its default list (`blocking.rs`).

use std::collections::{BTreeMap, HashMap};

use poolxmpp_sdk::storage::{self, StorageError};
use serde::{Deserialize, Serialize};

use crate::list::Item;

/// Users whose records are cached at most; past it the cache starts again.
const MAX_CACHED: usize = 10_000;

/// What one user has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Named lists, each ascending by order.
    #[serde(default)]
    pub lists: BTreeMap<String, Vec<Item>>,
    /// The default list's name (it is in `lists`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

impl Record {
    /// Whether anything is to be judged: some list has an item. This is the user's place
    /// in the filter's interest set.
    pub fn has_rules(&self) -> bool {
        self.lists.values().any(|l| !l.is_empty())
    }

    /// The default list's items (empty without one).
    pub fn default_items(&self) -> &[Item] {
        self.default
            .as_deref()
            .and_then(|d| self.lists.get(d))
            .map_or(&[], Vec::as_slice)
    }

    /// The JIDs the default list blocks (XEP-0191's view), in the list's order.
    pub fn blocked(&self) -> Vec<String> {
        self.default_items()
            .iter()
            .filter_map(|i| i.blocked_jid().map(str::to_string))
            .collect()
    }
}

fn key(user: &str) -> String {
    format!("user/{user}")
}

fn write(user: &str, record: &Record) -> Result<(), StorageError> {
    match record == &Record::default() {
        true => storage::delete(&key(user)).map(|_| ()),
        false => storage::put_json(&key(user), record),
    }
}

/// The records, read through an in-memory cache.
#[derive(Default)]
pub struct Store {
    cache: HashMap<String, Record>,
}

impl Store {
    /// `user`'s record (empty if they have none).
    pub fn get(&mut self, user: &str) -> Result<&Record, StorageError> {
        if !self.cache.contains_key(user) {
            let record = storage::get_json::<Record>(&key(user))?.unwrap_or_default();
            self.remember(user, record);
        }
        Ok(&self.cache[user])
    }

    fn remember(&mut self, user: &str, record: Record) {
        if self.cache.len() >= MAX_CACHED && !self.cache.contains_key(user) {
            self.cache.clear();
        }
        self.cache.insert(user.to_string(), record);
    }

    /// Replace `user`'s record: written first, then the interest set, then the cache,
    /// so a failed write changes nothing (the cached record is dropped if the interest
    /// set could not follow, so the next read sees the store).
    pub fn put(&mut self, user: &str, record: Record) -> Result<(), StorageError> {
        write(user, &record)?;
        if let Err(e) = poolxmpp_sdk::interest::set(user, record.has_rules()) {
            // Put the previous record back, so the store and the interest set agree.
            if let Some(old) = self.cache.remove(user) {
                if let Err(undo) = write(user, &old) {
                    poolxmpp_sdk::log::error(&format!("privacy: {user}: cannot restore the record: {undo}"));
                }
            }
            return Err(e);
        }
        self.remember(user, record);
        Ok(())
    }

    /// Forget `user`'s cached record (another node changed it).
    pub fn forget(&mut self, user: &str) {
        self.cache.remove(user);
    }

    /// Forget every cached record.
    pub fn forget_all(&mut self) {
        self.cache.clear();
    }

    #[cfg(all(test, not(target_arch = "wasm32")))]
    pub fn cached(&self, user: &str) -> bool {
        self.cache.contains_key(user)
    }
}
