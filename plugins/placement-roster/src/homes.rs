//! The homes this strategy recorded, in the plugin's storage (shared by every node of the
//! pool, kept across reloads and restarts): `home/<bare jid>` → node id.
//!
//! The view's `contacts-here` only sees contacts who are online right now, so on its own a
//! community that logs in one by one would never find each other. Recording every decision
//! lets offline contacts pull a newcomer to where their community was placed.

use std::collections::HashMap;

use poolxmpp_sdk::placement::PoolView;
use poolxmpp_sdk::{host, jid, now_ms, storage};

/// How much of a roster one decision may look at: a user with thousands of contacts must
/// not turn a login into thousands of storage reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lookup {
    /// Contacts looked at, in roster order.
    pub max_contacts: usize,
    /// Stop reading recorded homes after this long and decide with what was read; 0 ignores
    /// recorded homes altogether (only online contacts count).
    pub budget_ms: u64,
    /// Time for the second-degree look at a cold start (see [`second_degree`]); 0 skips it.
    pub second_degree_budget_ms: u64,
}

/// Contacts of each contact looked at in the second-degree pass.
const SECOND_DEGREE_PER_CONTACT: usize = 50;

/// The storage key of `bare`'s recorded home.
pub fn key(bare: &str) -> String {
    format!("home/{}", jid::normalize_bare(bare))
}

/// Remember that `user` was placed on `node`. A failure only weakens later grouping, so it
/// is logged, not fatal.
pub fn record(user: &str, node: &str) {
    if let Err(e) = storage::put_string(&key(user), node) {
        poolxmpp_sdk::warn!("could not record the home of {user}: {e}");
    }
}

/// How many of `user`'s roster contacts have each node of `view` as their recorded home,
/// keyed by node id. Homes on nodes missing from the view (dead, or gone for good) do not
/// count: those contacts will be placed afresh when they return.
pub fn contacts_by_home<'v>(user: &str, view: &'v PoolView, lookup: Lookup) -> HashMap<&'v str, u32> {
    let started = now_ms();
    let mut counts: HashMap<&str, u32> = HashMap::new();
    let roster = host::roster_items(user);
    for (looked, item) in roster.iter().take(lookup.max_contacts).enumerate() {
        if now_ms().saturating_sub(started) >= lookup.budget_ms {
            poolxmpp_sdk::debug!("read the homes of {looked} of {}'s contacts within the budget", user);
            break;
        }
        if jid::same_bare(&item.jid, user) {
            continue;
        }
        if let Err(e) = count_home(&item.jid, view, &mut counts) {
            // The store is failing: more reads would only spend the call's time budget.
            poolxmpp_sdk::warn!("reading recorded homes for {user}: {e}");
            break;
        }
    }
    counts
}

/// Cold start: none of `user`'s contacts is placed yet. Count the recorded homes of their
/// contacts' contacts instead, so two members of a community who do not know each other
/// directly still land together — without it, the first members of a large community to
/// log in are each seeded on a different node and the community stays split.
///
/// Only reached for users with no placed contact (a small share of logins), and bounded
/// by `second_degree_budget_ms`; each second-degree contact is read once.
pub fn second_degree<'v>(user: &str, view: &'v PoolView, lookup: Lookup) -> HashMap<&'v str, u32> {
    let started = now_ms();
    let mut counts: HashMap<&str, u32> = HashMap::new();
    if lookup.second_degree_budget_ms == 0 {
        return counts;
    }
    let mut seen = std::collections::HashSet::new();
    seen.insert(jid::normalize_bare(user));
    let direct = host::roster_items(user);
    for contact in direct.iter().take(lookup.max_contacts) {
        seen.insert(jid::normalize_bare(&contact.jid));
    }
    'contacts: for contact in direct.iter().take(lookup.max_contacts) {
        for item in host::roster_items(&contact.jid).iter().take(SECOND_DEGREE_PER_CONTACT) {
            if now_ms().saturating_sub(started) >= lookup.second_degree_budget_ms {
                break 'contacts;
            }
            if !seen.insert(jid::normalize_bare(&item.jid)) {
                continue;
            }
            if let Err(e) = count_home(&item.jid, view, &mut counts) {
                poolxmpp_sdk::warn!("reading second-degree homes for {user}: {e}");
                break 'contacts;
            }
        }
    }
    counts
}

/// Add one to the count of `contact`'s recorded home, if it has one on a node of `view`.
fn count_home<'v>(contact: &str, view: &'v PoolView, counts: &mut HashMap<&'v str, u32>) -> storage::Result<()> {
    if let Some(home) = storage::get_string(&key(contact))? {
        if let Some(node) = view.node(&home) {
            *counts.entry(node.id.as_str()).or_default() += 1;
        }
    }
    Ok(())
}
