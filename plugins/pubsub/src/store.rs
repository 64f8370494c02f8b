//! What a PEP service keeps, in the plugin's storage (shared by the pool, so any node
//! serves any account and nothing acknowledged is lost with a node):
//!
//! - `nodes/{owner}`: the names of the owner's nodes (which a contact coming online
//!   needs without reading every node);
//! - `m/{node}/{owner}`: a node's [`Meta`], its configuration and its items' ids;
//! - `i/{node}/{item}/{owner}`: one item's payload.
//!
//! Node names and item ids are escaped (`%` and `/`), and every key ends in
//! `/{owner}`, so the host's account removal takes the records with the account. An
//! item is written before the meta record names it, and the meta record changes only by
//! compare-and-swap: concurrent publishers (two resources on two nodes) never lose each
//! other's items, and a reader never sees an id whose payload is missing.

use poolxmpp_sdk::storage::{self, HostError, StorageError};
use poolxmpp_sdk::StanzaError;
use serde::{Deserialize, Serialize};

use crate::config::NodeConfig;

/// One item as the meta record lists it, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRef {
    pub id: String,
    pub published_ms: u64,
    /// The payload's size, for the node's byte budget.
    #[serde(default)]
    pub bytes: usize,
}

/// A node: its configuration and its items (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub config: NodeConfig,
    pub items: Vec<ItemRef>,
}

impl Meta {
    pub fn new(config: NodeConfig) -> Meta {
        Meta {
            config,
            items: Vec::new(),
        }
    }

    /// Put `item` last (replacing an item of the same id) and return the ids that fall
    /// out of what the node keeps.
    pub fn publish(&mut self, item: ItemRef, max_bytes: usize) -> Vec<String> {
        self.items.retain(|i| i.id != item.id);
        self.items.push(item);
        self.trim(max_bytes)
    }

    /// Drop the oldest items beyond what the configuration keeps, and beyond `max_bytes`
    /// of payloads in all (the newest item always stays); their ids.
    pub fn trim(&mut self, max_bytes: usize) -> Vec<String> {
        let mut over = self.items.len().saturating_sub(self.config.kept());
        let mut total: usize = self.items[over..].iter().map(|i| i.bytes).sum();
        while total > max_bytes && over + 1 < self.items.len() {
            total -= self.items[over].bytes;
            over += 1;
        }
        self.items.drain(..over).map(|i| i.id).collect()
    }

    pub fn last(&self) -> Option<&ItemRef> {
        self.items.last()
    }

    pub fn has(&self, id: &str) -> bool {
        self.items.iter().any(|i| i.id == id)
    }
}

/// `%` and `/` escaped, so a name cannot reach into another key's space.
fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

fn nodes_key(owner: &str) -> String {
    format!("nodes/{owner}")
}

fn meta_key(owner: &str, node: &str) -> String {
    format!("m/{}/{owner}", escape(node))
}

fn item_key(owner: &str, node: &str, id: &str) -> String {
    format!("i/{}/{}/{owner}", escape(node), escape(id))
}

fn unavailable(e: impl std::fmt::Display) -> StanzaError {
    poolxmpp_sdk::log::warn(&format!("pubsub: storage: {e}"));
    StanzaError::internal_server_error().with_text("storage is unavailable; try again")
}

/// A meta record as read, with the bytes a compare-and-swap expects.
pub struct Read {
    pub meta: Meta,
    bytes: Vec<u8>,
}

pub fn meta(owner: &str, node: &str) -> Result<Option<Read>, StanzaError> {
    let Some(bytes) = storage::get_bytes(&meta_key(owner, node)).map_err(unavailable)? else {
        return Ok(None);
    };
    let meta = serde_json::from_slice(&bytes).map_err(|e| unavailable(format!("{owner} {node}: {e}")))?;
    Ok(Some(Read { meta, bytes }))
}

/// Replace the meta record read as `before` (none: absent) with `after` (none: delete);
/// false when another writer changed it in between.
pub fn swap_meta(owner: &str, node: &str, before: Option<&Read>, after: Option<&Meta>) -> Result<bool, StanzaError> {
    let new = after.map(|m| serde_json::to_vec(m).expect("a meta record serializes"));
    storage::compare_and_swap(
        &meta_key(owner, node),
        before.map(|r| r.bytes.as_slice()),
        new.as_deref(),
    )
    .map_err(unavailable)
}

pub fn put_item(owner: &str, node: &str, id: &str, payload: &str) -> Result<(), StanzaError> {
    match storage::put_bytes(&item_key(owner, node, id), payload.as_bytes()) {
        Ok(()) => Ok(()),
        Err(StorageError::Host(HostError::TooLarge(max))) => Err(StanzaError::not_acceptable()
            .with_text(format!("an item's payload is at most {max} bytes"))
            .with_application(&poolxmpp_sdk::Element::new("payload-too-big", crate::ns::ERRORS))),
        Err(e) => Err(unavailable(e)),
    }
}

pub fn item(owner: &str, node: &str, id: &str) -> Result<Option<String>, StanzaError> {
    storage::get_string(&item_key(owner, node, id)).map_err(unavailable)
}

/// Delete items that left a node; a failure only leaves a record no meta names (the next
/// publish under its id overwrites it, the account's removal deletes it).
pub fn forget_items<'a>(owner: &str, node: &str, ids: impl IntoIterator<Item = &'a String>) {
    for id in ids {
        if let Err(e) = storage::delete(&item_key(owner, node, id)) {
            poolxmpp_sdk::log::warn(&format!("pubsub: {owner} {node} {id}: {e}"));
        }
    }
}

/// The names of `owner`'s nodes.
pub fn nodes(owner: &str) -> Result<Vec<String>, StanzaError> {
    Ok(storage::get_json(&nodes_key(owner))
        .map_err(unavailable)?
        .unwrap_or_default())
}

/// Add `node` to (or remove it from) `owner`'s node names; `limit` bounds how many an
/// owner may have (`not-allowed` past it, XEP-0060 §8.1.1's policy error).
pub fn note_node(owner: &str, node: &str, exists: bool, limit: usize) -> Result<(), StanzaError> {
    let key = nodes_key(owner);
    for _ in 0..16 {
        let before = storage::get_bytes(&key).map_err(unavailable)?;
        let mut names: Vec<String> = match &before {
            Some(b) => serde_json::from_slice(b).map_err(unavailable)?,
            None => Vec::new(),
        };
        let present = names.iter().any(|n| n == node);
        match (exists, present) {
            (true, true) | (false, false) => return Ok(()),
            (true, false) if names.len() >= limit => {
                return Err(StanzaError::not_allowed().with_text(format!("at most {limit} nodes per account")))
            }
            (true, false) => names.push(node.to_string()),
            (false, true) => names.retain(|n| n != node),
        }
        let after = (!names.is_empty()).then(|| serde_json::to_vec(&names).expect("names serialize"));
        if storage::compare_and_swap(&key, before.as_deref(), after.as_deref()).map_err(unavailable)? {
            return Ok(());
        }
    }
    Err(StanzaError::resource_constraint().with_text("too many concurrent changes; try again"))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn keys_end_with_the_owner_and_names_cannot_escape() {
        assert_eq!(meta_key("a@l", "x/y%"), "m/x%2Fy%25/a@l");
        assert_eq!(item_key("a@l", "n", "1/2"), "i/n/1%2F2/a@l");
        assert_ne!(item_key("a@l", "n/1", "2"), item_key("a@l", "n", "1/2"));
    }

    #[test]
    fn publishing_replaces_an_id_and_trims_the_oldest() {
        let mut m = Meta::new(NodeConfig {
            max_items: 2,
            ..NodeConfig::default()
        });
        let at = |id: &str, t| ItemRef {
            id: id.into(),
            published_ms: t,
            bytes: 10,
        };
        assert!(m.publish(at("a", 1), 100).is_empty());
        assert!(m.publish(at("b", 2), 100).is_empty());
        assert!(m.publish(at("a", 3), 100).is_empty());
        assert_eq!(m.publish(at("c", 4), 100), vec!["b".to_string()]);
        assert_eq!(m.items.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        // The byte budget trims too, but never the newest item.
        assert_eq!(m.trim(15), vec!["a".to_string()]);
        assert!(m.trim(5).is_empty());
        assert!(m.publish(at("d", 5), 100).is_empty());
        m.config.persist_items = false;
        assert_eq!(m.trim(100), vec!["c".to_string()]);
    }

    #[test]
    fn node_names_are_noted_once_and_bounded() {
        poolxmpp_sdk::testing::reset();
        note_node("a@l", "n1", true, 2).unwrap();
        note_node("a@l", "n1", true, 2).unwrap();
        note_node("a@l", "n2", true, 2).unwrap();
        assert!(note_node("a@l", "n3", true, 2).is_err());
        note_node("a@l", "n1", false, 2).unwrap();
        assert_eq!(nodes("a@l").unwrap(), vec!["n2".to_string()]);
    }
}
