//! The pool as a plugin sees it: which node owns a key, and this node's hold on one.
//!
//! A keyed plugin (manifest `keyed = true`) is handed every stanza for `key@address` on
//! the key's single owner node, and told [`Event::OwnershipGained`](crate::Event) and
//! [`Event::OwnershipLost`](crate::Event) with the key's fencing token. Write the key's
//! state with [`crate::storage::put_fenced_bytes`] under that token, so that a node that
//! was presumed dead and comes back cannot overwrite what the new owner wrote.
//!
//! ```
//! use poolxmpp_sdk::{pool, storage, testing};
//! testing::reset();
//! let held = pool::owned("room@conference.l").unwrap();
//! storage::put_fenced_bytes(&held, "room/state", b"v1").unwrap();
//! // Another node takes the room over: the old token no longer writes.
//! testing::with_host(|h| h.fences.insert("room@conference.l".into(), 2));
//! assert!(storage::put_fenced_bytes(&held, "room/state", b"v2").unwrap_err().is_fenced());
//! ```

pub use crate::host::Ownership;

use crate::host;

/// This node's id (`local` on a node without a pool).
pub fn node_id() -> String {
    host::node_id()
}

/// The id of the node owning `key`.
pub fn owner_of(key: &str) -> String {
    host::owner_of(key)
}

/// This node's hold on `key` with its fencing token, taking the key if it is free and this
/// node is its preferred owner; none when another node owns it.
pub fn owned(key: &str) -> Option<Ownership> {
    host::owned(key)
}
