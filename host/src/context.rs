//! What the RFC 6121 core of one node shares: configuration, the store, the session table,
//! the features (the plugin runtime, seen through [`Features`]) and the small state the
//! services keep. Router, presence, roster, server IQs and account removal take a
//! `&Context` (never the composition root), so they see only this: connections, TLS and
//! admission live in `c2s::Frontend` above, and the pool is seen only through the session
//! table's `sessions::Peers`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::config::Config;
use crate::features::Features;
use crate::limits::register::RegisterThrottle;
use crate::limits::Unthrottled;
use crate::sessions::Sessions;
use crate::store::Store;

pub struct Context {
    pub config: Config,
    pub store: Store,
    pub sessions: Sessions,
    /// The feature runtime (the plugins), as the core sees it.
    pub features: Arc<dyn Features>,
    /// Accounts whose offline messages are being delivered on this node, and whether
    /// another delivery was asked for meanwhile (see `delivery::offline::deliver_offline`).
    pub offline_delivery: Mutex<HashMap<String, bool>>,
    /// `limits.unthrottled_addresses`, read once for every per-address limit of the node.
    pub unthrottled: Unthrottled,
    /// XEP-0077 registration and password-change rates (`limits.registrations_per_ip`, …).
    pub register_throttle: RegisterThrottle,
    /// What resources' entity capabilities (XEP-0115) stand for.
    pub caps: crate::caps::Caps,
    pub started: Instant,
}

impl Context {
    pub fn new(config: Config, store: Store, features: Arc<dyn Features>) -> Context {
        let unthrottled = Unthrottled::new(&config.limits.unthrottled_addresses);
        let register_throttle = RegisterThrottle::new(&config.limits, unthrottled.clone());
        Context {
            config,
            store,
            sessions: Sessions::default(),
            features,
            offline_delivery: Default::default(),
            unthrottled,
            register_throttle,
            caps: Default::default(),
            started: Instant::now(),
        }
    }

    /// Is this domain served here?
    pub fn hosts(&self, domain: &str) -> bool {
        self.config.is_hosted(domain)
    }
}
