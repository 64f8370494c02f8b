//! Choosing a home node: the configured strategy plugin when it answers sensibly,
//! otherwise the built-in consistent hashing with bounded load — so a broken, slow or
//! missing strategy never keeps anyone out.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::view::{self, LiveNode};
use super::Placement;
use crate::plugins::manifest::World;
use crate::plugins::Fault;

/// The name recorded for decisions of the built-in strategy.
pub const BUILT_IN: &str = "hashing";

/// A decision, with what made it and why, for `pool status --users`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub node: LiveNode,
    pub strategy: String,
    pub reason: String,
}

/// The node that should serve `user`, among the accepting nodes of `nodes`; `None` when
/// no node accepts new users.
pub async fn choose(placement: &Placement, user: &str, nodes: &[LiveNode]) -> Option<Choice> {
    if !nodes.iter().any(|n| n.accepting) {
        return None;
    }
    let Some(name) = placement.config.strategy.as_deref() else {
        return fallback(
            user,
            nodes,
            placement.config.load_factor,
            "no strategy configured".into(),
        );
    };
    let reason = match ask_plugin(placement, name, user, nodes).await {
        Ok(None) => {
            // No preference for this user: a legitimate answer, not a failure.
            placement.stats.fallbacks.fetch_add(1, Relaxed);
            return fallback(
                user,
                nodes,
                placement.config.load_factor,
                format!("strategy {name} made no choice"),
            );
        }
        Ok(Some(id)) => match nodes.iter().find(|n| n.id == id && n.accepting) {
            Some(node) => {
                placement.stats.plugin_decisions.fetch_add(1, Relaxed);
                return Some(Choice {
                    node: node.clone(),
                    strategy: name.to_string(),
                    reason: format!("{} contacts online there", node.contacts_here),
                });
            }
            None => format!("strategy {name} named {id:?}, not an accepting node"),
        },
        Err(reason) => reason,
    };
    placement.stats.fallbacks.fetch_add(1, Relaxed);
    tracing::warn!(%user, %reason, "placement strategy failed; falling back to hashing");
    fallback(user, nodes, placement.config.load_factor, reason)
}

/// Ask the strategy plugin, within its own time budget plus a margin (calls queued
/// behind a looping one must not hold logins longer than that).
async fn ask_plugin(
    placement: &Placement,
    name: &str,
    user: &str,
    nodes: &[LiveNode],
) -> Result<Option<String>, String> {
    let active = placement.plugins.active();
    let plugin = active
        .by_name
        .get(name)
        .filter(|p| p.manifest.world == World::Placement)
        .ok_or_else(|| format!("strategy plugin {name} is not loaded"))?;
    placement.tell_pool_change(plugin, nodes);
    let budget = Duration::from_millis(plugin.manifest.limits.timeout_ms) + Duration::from_millis(100);
    match plugin.choose_node(user, view::to_wit(nodes), budget).await {
        Ok(id) => Ok(id),
        Err(Fault::Disabled(why)) => Err(format!("strategy {name} is switched off: {why}")),
        Err(Fault::Timeout) => Err(format!("strategy {name} did not answer within {budget:?}")),
        Err(fault) => Err(format!("strategy {name}: {fault}")),
    }
}

fn fallback(user: &str, nodes: &[LiveNode], load_factor: f64, reason: String) -> Option<Choice> {
    let node = hash_with_bounded_load(user, nodes, load_factor)?;
    Some(Choice {
        node: node.clone(),
        strategy: BUILT_IN.to_string(),
        reason,
    })
}

/// Rendezvous hashing with bounded load: the accepting node with the highest
/// `weight(user, node)` whose load stays within `load_factor` × the mean after taking
/// this user; if every node is that full, the highest-weight accepting node. The same
/// weights as key ownership, so the choice is stable as nodes come and go.
pub fn hash_with_bounded_load<'a>(user: &str, nodes: &'a [LiveNode], load_factor: f64) -> Option<&'a LiveNode> {
    let mut accepting: Vec<&LiveNode> = nodes.iter().filter(|n| n.accepting).collect();
    if accepting.is_empty() {
        return None;
    }
    accepting.sort_by_key(|n| std::cmp::Reverse(crate::pool::ownership::weight(user, &n.id)));
    let cap = load_cap(&accepting, load_factor);
    accepting
        .iter()
        .find(|n| u64::from(n.sessions) < cap)
        .or(accepting.first())
        .copied()
}

/// The most sessions a node may have before taking one more user:
/// ceil(factor × (total + 1) / nodes).
fn load_cap(accepting: &[&LiveNode], load_factor: f64) -> u64 {
    let total: u64 = accepting.iter().map(|n| u64::from(n.sessions)).sum();
    (load_factor * (total + 1) as f64 / accepting.len() as f64).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, sessions: u32, accepting: bool) -> LiveNode {
        LiveNode {
            id: id.into(),
            epoch: 1,
            address: format!("{id}:5222"),
            sessions,
            contacts_here: 0,
            accepting,
        }
    }

    #[test]
    fn hashing_is_stable_and_skips_draining_nodes() {
        let nodes = [node("a", 0, true), node("b", 0, true), node("c", 0, true)];
        let first = hash_with_bounded_load("alice@x", &nodes, 1.25).unwrap().id.clone();
        assert_eq!(hash_with_bounded_load("alice@x", &nodes, 1.25).unwrap().id, first);
        let drained: Vec<_> = nodes.iter().map(|n| node(&n.id, 0, n.id != first)).collect();
        assert_ne!(hash_with_bounded_load("alice@x", &drained, 1.25).unwrap().id, first);
        assert!(hash_with_bounded_load("alice@x", &[node("a", 0, false)], 1.25).is_none());
    }

    #[test]
    fn bounded_load_moves_users_off_a_full_node() {
        // Whatever alice's first choice is, make it far above the mean: she goes elsewhere.
        let even = [node("a", 10, true), node("b", 10, true), node("c", 10, true)];
        let preferred = hash_with_bounded_load("alice@x", &even, 1.25).unwrap().id.clone();
        let skewed: Vec<_> = even
            .iter()
            .map(|n| node(&n.id, if n.id == preferred { 40 } else { 10 }, true))
            .collect();
        assert_ne!(hash_with_bounded_load("alice@x", &skewed, 1.25).unwrap().id, preferred);
    }
}
