//! What plugins may use of their node, handed to the runtime once the node's context
//! exists (the context holds the plugin runtime, so this is the one late link, typed to
//! the layers below instead of a back-pointer to the composition root).

use std::sync::{Arc, Weak};

use crate::context::Context;
use crate::features::BoxFuture;
use crate::sessions::PeerError;
use crate::store::StoreError;
use crate::xml::Element;

/// The host capabilities of every plugin instance: storage, roster and presence reads and
/// sending through the node's context; ownership through the pool, when there is one.
#[derive(Clone, Default)]
pub struct HostCaps {
    pub ctx: Weak<Context>,
    /// The runtime itself, for what only it knows (which addresses a plugin speaks for).
    pub plugins: Weak<super::Plugins>,
    pub ownership: Option<Arc<dyn Ownership>>,
}

/// Who holds a key, as this node's pool sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// This node, under the fencing token `fence`; `gained` when this lookup took the key
    /// (it was free, or its holder's epoch had ended).
    Here { fence: u64, gained: bool },
    /// Another live node (or the node preferred for it, which takes it on the first
    /// stanza).
    There { node: String },
}

/// The pool as plugins see it: who owns a key (rendezvous hashing with fencing, see
/// `pool::ownership`), forwarding a keyed stanza to its owner, and the epoch fenced writes
/// are checked against.
pub trait Ownership: Send + Sync {
    fn node_id(&self) -> &str;
    /// The epoch fenced writes are made under: the one this node serves under, or while
    /// fenced the last one (the store refuses those writes: that epoch has ended).
    fn write_epoch(&self) -> i64;
    /// Who holds `key`, taking it when it is free and this node is the preferred owner.
    fn resolve<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Holder, StoreError>>;
    /// Hand a stanza for a keyed address to the node owning its key; `hops` counts the
    /// forwards so far (the receiver forwards at most once more).
    fn forward_keyed(&self, node: &str, stanza: &Element, hops: u8) -> Result<(), PeerError>;
    /// Tell the other nodes that a filter's interest set changed (already in the store).
    fn announce_interest(&self, plugin: &str, user: &str, has_rules: bool);
}
