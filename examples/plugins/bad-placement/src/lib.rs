//! Deliberately broken placement strategies, for testing the host's fall-back: each
//! `choose-node` traps, loops until the deadline stops it, or names a node that does not
//! exist. In every case the host must place the user by its own hashing with bounded
//! load, log why, and let the login go on.
//!
//! One component, three manifests (`bad-placement-trap`, `bad-placement-loop`,
//! `bad-placement-unknown`) choosing the behaviour with `[config] mode`. `init` and
//! `on-pool-change` behave, so only the decision itself is broken.

use poolxmpp_sdk::placement::{Placement, PoolView};
use poolxmpp_sdk::Config;

/// What the answer to `choose-node` is when this mode is on.
pub const UNKNOWN_NODE: &str = "no-such-node";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Trap,
    Loop,
    Unknown,
}

pub struct BadPlacement {
    mode: Mode,
}

impl Placement for BadPlacement {
    fn init(config: &Config) -> Result<Self, String> {
        let mode = match config.get("mode") {
            Some("trap") => Mode::Trap,
            Some("loop") => Mode::Loop,
            Some("unknown") => Mode::Unknown,
            other => return Err(format!("mode must be trap, loop or unknown, not {other:?}")),
        };
        Ok(BadPlacement { mode })
    }

    fn choose_node(&mut self, user: &str, view: &PoolView) -> Option<String> {
        poolxmpp_sdk::debug!(
            "misbehaving ({:?}) placing {user} among {} nodes",
            self.mode,
            view.nodes.len()
        );
        match self.mode {
            Mode::Trap => panic!("bad-placement-trap: trapping on purpose"),
            Mode::Loop => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Unknown => Some(UNKNOWN_NODE.to_string()),
        }
    }
}

poolxmpp_sdk::export_placement!(BadPlacement);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use poolxmpp_sdk::testing::{node, view};

    #[test]
    fn mode_comes_from_config() {
        assert_eq!(
            BadPlacement::init(&Config::from([("mode", "loop")])).unwrap().mode,
            Mode::Loop
        );
        assert!(BadPlacement::init(&Config::from([("mode", "nice")])).is_err());
        assert!(BadPlacement::init(&Config::default()).is_err());
    }

    #[test]
    fn unknown_names_a_node_outside_the_view() {
        let v = view([node("n1", 0)]);
        let mut p = BadPlacement::init(&Config::from([("mode", "unknown")])).unwrap();
        let answer = p.choose_node("a@l", &v).unwrap_or_default();
        assert_eq!(answer, UNKNOWN_NODE);
        assert!(!v.accepts(&answer));
    }

    #[test]
    #[should_panic(expected = "trapping on purpose")]
    fn trap_panics() {
        let mut p = BadPlacement::init(&Config::from([("mode", "trap")])).unwrap();
        p.choose_node("a@l", &view([node("n1", 0)]));
    }
}
