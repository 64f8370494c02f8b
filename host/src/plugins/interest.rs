//! Filters' interest sets in memory (manifest `interest = "declared"`): which users each
//! such filter has rules for, so the router consults a filter only for stanzas of those
//! users. The store (`plugin_interest`) is the truth, shared by the pool: a set is read
//! from it when its plugin is first loaded and again whenever a pool link comes up (what
//! a node missed while cut off); changes are written there first, then applied here and
//! announced to the other nodes, which apply them to their memory.
//!
//! Sets are kept by plugin name, so they survive reloads of the plugin; a loaded plugin's
//! handle holds its [`InterestSet`], so both filter points of every routed stanza, read
//! from every worker thread at once, cost one lookup that takes no lock and writes no
//! shared cache line ([`papaya`] for the users, [`arc_swap`] for replacing them whole).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::store::{Store, StoreError};

type Users = papaya::HashSet<Box<str>, foldhash::fast::RandomState>;

/// One filter's interest set.
#[derive(Default)]
pub struct InterestSet {
    users: ArcSwap<Users>,
    /// Read from the store at least once.
    loaded: AtomicBool,
    /// Bumped by every change, so a read of the store that raced one is done again.
    changes: AtomicU64,
}

impl InterestSet {
    /// Whether the filter has rules for `user` (a normalised bare JID).
    pub fn has(&self, user: &str) -> bool {
        self.users.load().pin().contains(user)
    }

    fn apply(&self, user: &str, has_rules: bool) {
        self.changes.fetch_add(1, SeqCst);
        let users = self.users.load();
        match has_rules {
            true => users.pin().insert(user.into()),
            false => users.pin().remove(user),
        };
    }
}

/// Every filter's set, by plugin name.
#[derive(Default)]
pub struct InterestSets {
    sets: Mutex<HashMap<String, Arc<InterestSet>>>,
}

/// How often a read of the store is retried when changes keep racing it.
const LOAD_ATTEMPTS: usize = 3;

impl InterestSets {
    /// `plugin`'s set, made empty (and not loaded) if it has none yet.
    pub fn set(&self, plugin: &str) -> Arc<InterestSet> {
        let mut sets = self.sets.lock().expect("interest lock");
        sets.entry(plugin.to_string()).or_default().clone()
    }

    /// Whether `plugin` has rules for `user` (a bare JID).
    pub fn has(&self, plugin: &str, user: &str) -> bool {
        let set = self.sets.lock().expect("interest lock").get(plugin).cloned();
        set.is_some_and(|set| set.has(user))
    }

    /// Whether `plugin`'s set was read from the store already.
    pub fn loaded(&self, plugin: &str) -> bool {
        let sets = self.sets.lock().expect("interest lock");
        sets.get(plugin).is_some_and(|set| set.loaded.load(SeqCst))
    }

    /// Read `plugin`'s set from the store, replacing what memory had. A change applied
    /// while the store was read may be missing from what was read: then read again.
    pub async fn load(&self, store: &Store, plugin: &str) -> Result<usize, StoreError> {
        let set = self.set(plugin);
        for attempt in 1.. {
            let before = set.changes.load(SeqCst);
            let read = store.interest_of(plugin).await?;
            let users = Users::with_capacity_and_hasher(read.len(), Default::default());
            {
                let pinned = users.pin();
                for user in read {
                    pinned.insert(user.into_boxed_str()); // a set: duplicates collapse
                }
            }
            let n = users.len();
            if set.changes.load(SeqCst) != before && attempt < LOAD_ATTEMPTS {
                continue;
            }
            set.users.store(Arc::new(users));
            set.loaded.store(true, SeqCst);
            return Ok(n);
        }
        unreachable!("the last attempt returns")
    }

    /// Apply a change (made here, or announced by another node) to memory.
    pub fn apply(&self, plugin: &str, user: &str, has_rules: bool) {
        self.set(plugin).apply(user, has_rules);
    }

    /// The plugins whose sets memory holds.
    pub fn plugins(&self) -> Vec<String> {
        self.sets.lock().expect("interest lock").keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_per_plugin_and_user_and_reach_a_held_set() {
        let sets = InterestSets::default();
        let held = sets.set("blocklist");
        assert!(!sets.loaded("blocklist"));
        sets.apply("blocklist", "alice@localhost", true);
        assert!(held.has("alice@localhost"));
        assert!(sets.has("blocklist", "alice@localhost"));
        assert!(!sets.has("blocklist", "bob@localhost"));
        assert!(!sets.has("privacy", "alice@localhost"));
        sets.apply("blocklist", "alice@localhost", false);
        assert!(!held.has("alice@localhost"));
        assert_eq!(sets.plugins(), vec!["blocklist".to_string()]);
    }
}
