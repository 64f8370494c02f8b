//! Deliberately broken feature plugins, for testing the host's containment: each stanza
//! makes the instance loop forever, trap, or allocate until the memory limit stops it.
//! The host must answer the sender with an error, recreate the instance, and after
//! `max_failures` in a row switch the plugin off, while everything else keeps working.
//!
//! One component, three manifests (`bad-loop`, `bad-trap`, `bad-alloc`) choosing the
//! behaviour with `[config] mode`.

use poolxmpp_sdk::{Config, Feature, Stanza, StanzaError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Loop,
    Trap,
    Alloc,
}

pub struct Bad {
    mode: Mode,
}

impl Feature for Bad {
    fn init(config: &Config) -> Result<Self, String> {
        let mode = match config.get("mode") {
            Some("loop") => Mode::Loop,
            Some("trap") => Mode::Trap,
            Some("alloc") => Mode::Alloc,
            other => return Err(format!("mode must be loop, trap or alloc, not {other:?}")),
        };
        Ok(Bad { mode })
    }

    fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError> {
        poolxmpp_sdk::debug!("misbehaving ({:?}) on a stanza from {}", self.mode, stanza.from);
        match self.mode {
            Mode::Loop => {
                let mut n = 0u64;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            Mode::Trap => panic!("bad-trap: trapping on purpose"),
            Mode::Alloc => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    // Touch every page so the memory is really used.
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
        }
    }
}

poolxmpp_sdk::export_feature!(Bad);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_comes_from_config() {
        assert_eq!(Bad::init(&Config::from([("mode", "trap")])).unwrap().mode, Mode::Trap);
        assert!(Bad::init(&Config::from([("mode", "nice")])).is_err());
        assert!(Bad::init(&Config::default()).is_err());
    }
}
