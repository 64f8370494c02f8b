//! Several instances of one plugin version (manifest `instances`), and which one a call
//! goes to. Instances share nothing but the plugin's storage, so every call about one key
//! goes to the same instance: a key's calls keep their order and its in-memory state lives
//! in one place, while calls about different keys run side by side.
//!
//! The key of a call: for a stanza, the bare JID it is addressed to when that has a local
//! part (a room, a pubsub node, a user's account), else its sender's bare JID (requests to
//! the service itself, in order per sender); for a filter check, the user it concerns (as
//! for interest sets); for a user event, the user's bare JID; for an ownership event, its
//! key; for a timer, its name up to the first `#` (so `room@conference.example.org#expiry`
//! reaches the room's instance); for a placement choice, the user. Pool changes, node
//! events, a change of every user's rules and calls without a key reach every instance,
//! or the first.

use std::borrow::Cow;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};

use super::address::bare_jid;
use super::queue::Runner;
use super::types;
use crate::features::Direction;
use crate::xml::Element;

/// The most instances a manifest may ask for: beyond the cores a node has, more instances
/// only cost memory.
pub const MAX_INSTANCES: usize = 16;

/// One version's instances, at least one.
pub struct Runners(Vec<Runner>);

impl Runners {
    pub fn new(runners: Vec<Runner>) -> Runners {
        assert!(!runners.is_empty(), "a plugin version runs at least one instance");
        Runners(runners)
    }

    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// The instance serving `key`; the first for no key.
    pub fn for_key(&self, key: Option<&str>) -> &Runner {
        match (self.0.len(), key) {
            (1, _) | (_, None) => &self.0[0],
            (n, Some(key)) => &self.0[index(key, n)],
        }
    }

    /// The instance for a stanza handed to the feature (see the module's doc).
    pub fn for_stanza(&self, stanza: &Element) -> &Runner {
        if self.0.len() == 1 {
            return &self.0[0];
        }
        self.for_key(stanza_key(stanza).as_deref())
    }

    /// The instance for a filter's check of a stanza at one point.
    pub fn for_check(&self, direction: Direction, stanza: &Element) -> &Runner {
        if self.0.len() == 1 {
            return &self.0[0];
        }
        self.for_key(concerned(direction, stanza).and_then(bare_jid).as_deref())
    }

    /// The instances an event goes to: the one of its key, or all of them.
    pub fn for_event(&self, event: &types::Event) -> &[Runner] {
        if self.0.len() == 1 {
            return &self.0;
        }
        let key = match event {
            types::Event::UserOnline(u) | types::Event::UserOffline(u) => bare_jid(&u.jid).map(Cow::into_owned),
            types::Event::OwnershipGained(o) | types::Event::OwnershipLost(o) => Some(o.key.clone()),
            types::Event::Timer(t) => Some(t.name.split('#').next().unwrap_or_default().to_string()),
            types::Event::RulesChanged(user) => user.as_deref().and_then(bare_jid).map(Cow::into_owned),
            types::Event::NodeJoined(_) | types::Event::NodeLeft(_) => None,
        };
        match key {
            Some(key) => std::slice::from_ref(self.for_key(Some(&key))),
            None => &self.0,
        }
    }

    pub fn all(&self) -> &[Runner] {
        &self.0
    }

    /// Why calls are refused, if some instance's breaker has switched it off.
    pub fn disabled(&self) -> Option<String> {
        self.0.iter().find_map(|r| r.health().disabled())
    }
}

/// A stanza's key: the bare JID it is addressed to when that has a local part (a keyed
/// plugin's key), else its sender's.
fn stanza_key(stanza: &Element) -> Option<String> {
    super::keyed::key_of(stanza).or_else(|| stanza.get_attr("from").and_then(bare_jid).map(Cow::into_owned))
}

/// The address a filter point is about: the sender leaving (outbound), the recipient
/// arriving (inbound; the sender's own account when there is no `to`).
pub fn concerned(direction: Direction, stanza: &Element) -> Option<&str> {
    match direction {
        Direction::Outbound => stanza.get_attr("from"),
        Direction::Inbound => stanza.get_attr("to").or_else(|| stanza.get_attr("from")),
    }
}

/// Which of `n` instances serves `key`: the same for the same key, for the life of the
/// version (the hasher's keys are fixed).
fn index(key: &str, n: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % n as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_always_maps_to_the_same_instance_and_keys_spread() {
        let n = 4;
        let first: Vec<usize> = (0..200)
            .map(|i| index(&format!("room{i}@muc.example.org"), n))
            .collect();
        let again: Vec<usize> = (0..200)
            .map(|i| index(&format!("room{i}@muc.example.org"), n))
            .collect();
        assert_eq!(first, again);
        for slot in 0..n {
            let share = first.iter().filter(|&&i| i == slot).count();
            assert!(share > 20, "instance {slot} got only {share} of 200 keys");
        }
    }

    #[test]
    fn a_stanza_is_keyed_by_its_addressee_or_else_its_sender() {
        let stanza = |to: &str| {
            Element::parse(&format!(
                "<message xmlns='jabber:client' from='Alice@Example.org/phone' to='{to}'/>"
            ))
            .unwrap()
        };
        let key = |to: &str| stanza_key(&stanza(to));
        assert_eq!(
            key("Room@MUC.example.org/nick").as_deref(),
            Some("room@muc.example.org")
        );
        assert_eq!(key("muc.example.org").as_deref(), Some("alice@example.org"));
    }
}
