//! Roster grouping: place a user on the node that hosts most of their contacts, so their
//! messages and presence stay inside one node instead of crossing pool links, while a
//! per-node load cap keeps one big community from swamping a node.
//!
//! For each accepting node under the cap ([`load_cap`] with `load_factor`), the score is
//! the view's `contacts-here` (online contacts there) plus the user's contacts whose
//! recorded home ([`homes`]) is that node, so offline contacts count too and placement
//! survives restarts. An online contact is counted both ways, which is intended: where
//! people are now matters more than where they were put.
//!
//! - The highest score wins; ties go to the least-loaded node under the cap (ties by
//!   rendezvous weight).
//! - Cold start (no contact placed or online): the recorded homes of the contacts'
//!   contacts decide instead ([`homes::second_degree`]), so a community whose first members
//!   do not know each other directly is still seeded on one node; if those are unplaced
//!   too, the least-loaded node under the cap, and the next members follow.
//! - If no node is under the cap, hashing with bounded load decides. With the
//!   `load_factor` >= 1 that `init` enforces the least-loaded node always has room, so this
//!   only keeps the rule total.
//! - Every decision is recorded under `home/<bare jid>`.
//!
//! Config: `load_factor` (default 1.25), `max_contacts` (default 500: contacts looked at
//! per decision), `lookup_budget_ms` (default 50: time spent reading recorded homes),
//! `second_degree_budget_ms` (default 100: time for the cold-start look; 0 skips it).

pub mod homes;

use poolxmpp_sdk::placement::{
    self, hash_with_bounded_load, least_loaded_key, load_cap, NodeView, Placement, PoolView,
};
use poolxmpp_sdk::{jid, Config};

use homes::Lookup;

/// Contacts looked at per decision when `max_contacts` is unset.
pub const DEFAULT_MAX_CONTACTS: usize = 500;
/// Time spent reading recorded homes per decision when `lookup_budget_ms` is unset: well
/// inside the manifest's call timeout, so a slow store degrades grouping, not logins.
pub const DEFAULT_LOOKUP_BUDGET_MS: u64 = 50;
/// Time for the second-degree look at a cold start when `second_degree_budget_ms` is unset.
pub const DEFAULT_SECOND_DEGREE_BUDGET_MS: u64 = 100;

pub struct RosterGrouping {
    load_factor: f64,
    lookup: Lookup,
}

impl Placement for RosterGrouping {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(RosterGrouping {
            load_factor: placement::load_factor(config)?,
            lookup: Lookup {
                max_contacts: config.parse("max_contacts")?.unwrap_or(DEFAULT_MAX_CONTACTS),
                budget_ms: config.parse("lookup_budget_ms")?.unwrap_or(DEFAULT_LOOKUP_BUDGET_MS),
                second_degree_budget_ms: config
                    .parse("second_degree_budget_ms")?
                    .unwrap_or(DEFAULT_SECOND_DEGREE_BUDGET_MS),
            },
        })
    }

    fn choose_node(&mut self, user: &str, view: &PoolView) -> Option<String> {
        let user = jid::normalize_bare(user);
        match self.choose(&user, view) {
            Some((node, why)) => {
                homes::record(&user, &node);
                poolxmpp_sdk::debug!("placing {user} on {node} ({why})");
                Some(node)
            }
            None => {
                poolxmpp_sdk::debug!("no accepting node for {user}; leaving it to the host");
                None
            }
        }
    }
}

impl RosterGrouping {
    /// The chosen node and why, for the log; `None` when no node accepts.
    fn choose(&self, user: &str, view: &PoolView) -> Option<(String, String)> {
        let cap = load_cap(view, self.load_factor);
        let roomy: Vec<&NodeView> = view.accepting().filter(|n| n.has_room(cap)).collect();
        if roomy.is_empty() {
            let node = hash_with_bounded_load(user, view, self.load_factor)?;
            return Some((node, format!("every node at the cap of {cap}: hashing")));
        }
        let recorded = homes::contacts_by_home(user, view, self.lookup);
        let score = |n: &NodeView| {
            n.contacts_here
                .saturating_add(recorded.get(n.id.as_str()).copied().unwrap_or(0))
        };
        let best = roomy
            .iter()
            .copied()
            .max_by_key(|n| (score(n), least_loaded_key(user, n)))?;
        if score(best) > 0 {
            return Some((
                best.id.clone(),
                format!("{} contacts there, under the cap of {cap}", score(best)),
            ));
        }
        let second = homes::second_degree(user, view, self.lookup);
        let second_score = |n: &NodeView| second.get(n.id.as_str()).copied().unwrap_or(0);
        let best = roomy
            .into_iter()
            .max_by_key(|n| (second_score(n), least_loaded_key(user, n)))?;
        let why = match second_score(best) {
            0 => format!("no placed contacts: least loaded under the cap of {cap}"),
            s => format!("no placed contacts; {s} contacts of contacts there, under the cap of {cap}"),
        };
        Some((best.id.clone(), why))
    }
}

poolxmpp_sdk::export_placement!(RosterGrouping);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
