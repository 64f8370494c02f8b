//! Least-loaded placement: a user without a live home goes to the accepting node with the
//! fewest sessions; equally loaded nodes are ranked by rendezvous weight, so a quiet pool
//! still spreads users deterministically instead of filling the first node listed.
//!
//! It evens out load fastest (a node that just joined takes every new user until it has
//! caught up) at the price of ignoring who talks to whom. No configuration.

use poolxmpp_sdk::placement::{least_loaded, Placement, PoolView};
use poolxmpp_sdk::Config;

pub struct LeastLoaded;

impl Placement for LeastLoaded {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(LeastLoaded)
    }

    fn choose_node(&mut self, user: &str, view: &PoolView) -> Option<String> {
        match least_loaded(user, &view.nodes) {
            Some(node) => {
                poolxmpp_sdk::debug!(
                    "placing {user} on {} (least loaded: {} sessions)",
                    node.id,
                    node.sessions
                );
                Some(node.id.clone())
            }
            None => {
                poolxmpp_sdk::debug!("no accepting node for {user}; leaving it to the host");
                None
            }
        }
    }
}

poolxmpp_sdk::export_placement!(LeastLoaded);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use poolxmpp_sdk::placement::{rendezvous_weight, NodeView};
    use poolxmpp_sdk::testing::{self, node, view};

    fn choose(user: &str, v: &PoolView) -> String {
        LeastLoaded::init(&Config::default())
            .unwrap()
            .choose_node(user, v)
            .unwrap_or_default()
    }

    #[test]
    fn picks_the_fewest_sessions() {
        testing::reset();
        let v = view([node("n1", 9), node("n2", 3), node("n3", 4)]);
        assert_eq!(choose("a@l", &v), "n2");
        assert!(testing::logs()
            .iter()
            .any(|(_, line)| line == "placing a@l on n2 (least loaded: 3 sessions)"));
    }

    #[test]
    fn ties_go_to_the_higher_weight() {
        testing::reset();
        let v = view([node("n1", 2), node("n2", 2), node("n3", 5)]);
        for user in ["a@l", "b@l", "c@l", "d@l", "e@l"] {
            let heavier = if rendezvous_weight(user, "n1") > rendezvous_weight(user, "n2") {
                "n1"
            } else {
                "n2"
            };
            assert_eq!(choose(user, &v), heavier, "{user}");
        }
    }

    #[test]
    fn draining_nodes_are_never_chosen() {
        testing::reset();
        let v = view([
            NodeView {
                accepting: false,
                ..node("n1", 0)
            },
            node("n2", 50),
        ]);
        assert_eq!(choose("a@l", &v), "n2");
        let none = view([NodeView {
            accepting: false,
            ..node("n1", 0)
        }]);
        assert_eq!(choose("a@l", &none), "");
        assert_eq!(choose("a@l", &view([])), "");
    }
}
