//! A placement strategy that sends every new user to the node named by `[config] node`
//! while that node accepts users, and otherwise hashes with bounded load like the host.
//!
//! It exists for tests: reloading it with another `node` proves that a hot-reloaded
//! strategy changes where new logins go (and that existing homes stay where they are).

use poolxmpp_sdk::placement::{self, hash_with_bounded_load, Placement, PoolView};
use poolxmpp_sdk::Config;

pub struct Pin {
    node: String,
    load_factor: f64,
}

impl Placement for Pin {
    fn init(config: &Config) -> Result<Self, String> {
        let node = config
            .get("node")
            .filter(|n| !n.is_empty())
            .ok_or("config node: required")?;
        Ok(Pin {
            node: node.to_string(),
            load_factor: placement::load_factor(config)?,
        })
    }

    fn choose_node(&mut self, user: &str, view: &PoolView) -> Option<String> {
        if view.accepts(&self.node) {
            poolxmpp_sdk::debug!("placing {user} on {} (pinned)", self.node);
            return Some(self.node.clone());
        }
        let hashed = hash_with_bounded_load(user, view, self.load_factor);
        poolxmpp_sdk::debug!("{} is not accepting: placing {user} on {hashed:?} (hashing)", self.node);
        hashed
    }
}

poolxmpp_sdk::export_placement!(Pin);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use poolxmpp_sdk::placement::NodeView;
    use poolxmpp_sdk::testing::{self, node, view};

    fn pin(to: &str) -> Pin {
        Pin::init(&Config::from([("node", to)])).unwrap()
    }

    #[test]
    fn pins_while_the_node_accepts() {
        testing::reset();
        let v = view([node("n1", 0), node("n2", 100)]);
        assert_eq!(pin("n2").choose_node("a@l", &v).unwrap_or_default(), "n2");
        assert_eq!(pin("n1").choose_node("a@l", &v).unwrap_or_default(), "n1");
    }

    #[test]
    fn hashes_when_the_pinned_node_is_draining_or_gone() {
        testing::reset();
        let v = view([
            node("n1", 0),
            NodeView {
                accepting: false,
                ..node("n2", 0)
            },
        ]);
        assert_eq!(pin("n2").choose_node("a@l", &v).unwrap_or_default(), "n1");
        assert_eq!(pin("n9").choose_node("a@l", &v).unwrap_or_default(), "n1");
        assert_eq!(pin("n9").choose_node("a@l", &view([])).unwrap_or_default(), "");
    }

    #[test]
    fn node_is_required() {
        assert!(Pin::init(&Config::default()).is_err());
        assert!(Pin::init(&Config::from([("node", "")])).is_err());
    }
}
