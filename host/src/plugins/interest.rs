//! Filters' interest sets in memory (manifest `interest = "declared"`): which users each
//! such filter has rules for, so the router consults a filter only for stanzas of those
//! users. The store (`plugin_interest`) is the truth, shared by the pool: a set is read
//! from it when its plugin is first loaded and again whenever a pool link comes up (what
//! a node missed while cut off); changes are written there first, then applied here and
//! announced to the other nodes, which apply them to their memory.
//!
//! Sets are kept by plugin name, so they survive reloads of the plugin.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use crate::store::{Store, StoreError};

#[derive(Default)]
pub struct InterestSets {
    sets: RwLock<HashMap<String, HashSet<String>>>,
}

impl InterestSets {
    /// Whether `plugin` has rules for `user` (a bare JID).
    pub fn has(&self, plugin: &str, user: &str) -> bool {
        self.sets
            .read()
            .expect("interest lock")
            .get(plugin)
            .is_some_and(|set| set.contains(user))
    }

    /// Whether `plugin`'s set was read from the store already.
    pub fn loaded(&self, plugin: &str) -> bool {
        self.sets.read().expect("interest lock").contains_key(plugin)
    }

    /// Read `plugin`'s set from the store, replacing what memory had.
    pub async fn load(&self, store: &Store, plugin: &str) -> Result<usize, StoreError> {
        let users: HashSet<String> = store.interest_of(plugin).await?.into_iter().collect();
        let n = users.len();
        self.sets
            .write()
            .expect("interest lock")
            .insert(plugin.to_string(), users);
        Ok(n)
    }

    /// Apply a change (made here, or announced by another node) to memory.
    pub fn apply(&self, plugin: &str, user: &str, has_rules: bool) {
        let mut sets = self.sets.write().expect("interest lock");
        let set = sets.entry(plugin.to_string()).or_default();
        match has_rules {
            true => set.insert(user.to_string()),
            false => set.remove(user),
        };
    }

    /// The plugins whose sets memory holds.
    pub fn plugins(&self) -> Vec<String> {
        self.sets.read().expect("interest lock").keys().cloned().collect()
    }
}
