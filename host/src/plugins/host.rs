//! What plugins may use of their node, handed to the runtime once the node's context
//! exists (the context holds the plugin runtime, so this is the one late link, typed to
//! the layers below instead of a back-pointer to the composition root).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

use crate::context::Context;
use crate::store::StoreError;

/// The host capabilities of every plugin instance: storage, roster and presence reads and
/// sending through the node's context; ownership through the pool, when there is one.
#[derive(Clone, Default)]
pub struct HostCaps {
    pub ctx: Weak<Context>,
    /// The runtime itself, for what only it knows (which addresses a plugin speaks for).
    pub plugins: Weak<super::Plugins>,
    pub ownership: Option<Arc<dyn Ownership>>,
}

/// Who owns a key in the pool (rendezvous hashing with fencing, see `pool::ownership`).
pub trait Ownership: Send + Sync {
    fn node_id(&self) -> &str;
    fn owner_of<'a>(&'a self, key: &'a str) -> Pin<Box<dyn Future<Output = Result<String, StoreError>> + Send + 'a>>;
}
