//! XEP-0115 entity capabilities, read by the host: what a resource's `<c/>` in presence
//! stands for. The server asks a resource for its disco#info only for a `ver` the pool
//! has not seen, believes the answer only when it hashes to that `ver` (§5.4), and keeps
//! `ver` → features in memory and in the shared store, so each `ver` is asked for once
//! per pool. Plugins get the features with the user events and presence reads (PEP needs
//! `+notify`).
//!
//! Bounded against clients that lie or flood: one query in flight per resource and a few
//! hundred in all, answers of at most [`MAX_FEATURES`] features, answers that do not hash
//! to their `ver` never kept, and a query given up after [`QUERY_TIMEOUT`].

pub mod verify;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::sessions::Sessions;
use crate::store::Store;
use crate::xml::{Element, NS_CLIENT};

pub const NS_CAPS: &str = "http://jabber.org/protocol/caps";
/// How long the server waits for a resource's disco#info answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// More features than this make an answer unbelievable (real clients have tens).
pub const MAX_FEATURES: usize = 1024;
const MAX_KNOWN: usize = 4096;
const MAX_PENDING: usize = 256;
/// Ids of the server's caps queries start with this.
const ID_PREFIX: &str = "caps-";

/// A presence's `<c/>` (§4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapsRef {
    pub hash: String,
    pub node: String,
    pub ver: String,
}

impl CapsRef {
    pub fn of(presence: &Element) -> Option<CapsRef> {
        let c = presence.get_child("c", NS_CAPS)?;
        Some(CapsRef {
            // Legacy caps (no `hash`, §8.4) cannot be verified and are not read.
            hash: c.get_attr("hash")?.to_ascii_lowercase(),
            node: c.get_attr("node").unwrap_or_default().to_string(),
            ver: c.get_attr("ver")?.to_string(),
        })
    }

    /// The key of the shared cache: the hash function and the `ver`.
    fn key(&self) -> String {
        format!("{}:{}", self.hash, self.ver)
    }
}

type Features = Arc<[String]>;

/// What the node knows and is asking about.
#[derive(Default)]
pub struct Caps {
    /// `hash:ver` → features, verified here or by another node of the pool.
    known: Mutex<HashMap<String, Features>>,
    /// Queries in flight: id → (the resource asked, where its answer goes).
    pending: Mutex<HashMap<String, (String, oneshot::Sender<Element>)>>,
    next_id: AtomicU64,
}

impl Caps {
    /// The features of a presence's caps, if this node knows them (no store, no query).
    pub fn cached(&self, presence: &Element) -> Option<Features> {
        let caps = CapsRef::of(presence)?;
        self.known.lock().expect("caps lock").get(&caps.key()).cloned()
    }

    /// The features of a presence's caps if this node or the pool knows them (memory,
    /// then the shared store; no query): how a plugin sees the caps of another node's
    /// session, which that node learnt and stored.
    pub async fn known(&self, store: &Store, presence: &Element) -> Option<Features> {
        let caps = CapsRef::of(presence)?;
        self.known_by_key(store, caps.key()).await
    }

    async fn known_by_key(&self, store: &Store, key: String) -> Option<Features> {
        if let Some(f) = self.known.lock().expect("caps lock").get(&key).cloned() {
            return Some(f);
        }
        match store.caps_get(&key).await {
            Ok(Some(joined)) => {
                let f: Features = joined
                    .split('\n')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect();
                self.remember(key, f.clone());
                Some(f)
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "caps lookup failed");
                None
            }
        }
    }

    /// The features of the resource `jid` (full) that sent `presence`: known here, in
    /// the shared store, or learnt by asking the resource if it is local. Empty when it
    /// has no caps or they cannot be learnt (no answer, an answer that does not verify).
    pub async fn features(&self, store: &Store, sessions: &Sessions, jid: &str, presence: &Element) -> Features {
        let Some(caps) = CapsRef::of(presence) else {
            return Arc::from([]);
        };
        let key = caps.key();
        if let Some(f) = self.known_by_key(store, key.clone()).await {
            return f;
        }
        match self.ask(sessions, jid, &caps).await {
            Some(f) => {
                if let Err(e) = store.caps_put(&key, &f.join("\n")).await {
                    tracing::warn!(error = %e, "cannot keep verified caps");
                }
                self.remember(key, f.clone());
                f
            }
            None => Arc::from([]),
        }
    }

    /// Ask a local resource for the disco#info behind its caps and verify the answer.
    async fn ask(&self, sessions: &Sessions, jid: &str, caps: &CapsRef) -> Option<Features> {
        let (bare, resource) = jid.split_once('/')?;
        let domain = bare.split_once('@').map_or(bare, |(_, d)| d);
        let id = format!("{ID_PREFIX}{}", self.next_id.fetch_add(1, Relaxed));
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("caps lock");
            if pending.len() >= MAX_PENDING || pending.values().any(|(who, _)| who == jid) {
                return None;
            }
            pending.insert(id.clone(), (jid.to_string(), tx));
        }
        let query = Element::new("iq", NS_CLIENT)
            .attr("type", "get")
            .attr("id", id.as_str())
            .attr("from", domain)
            .attr("to", jid)
            .child(Element::new("query", verify::NS_DISCO_INFO).attr("node", format!("{}#{}", caps.node, caps.ver)));
        tracing::debug!(%jid, ver = %caps.ver, "asking a resource for its entity capabilities");
        let answer = if sessions.send_to(bare, resource, Arc::new(query)) {
            tokio::time::timeout(QUERY_TIMEOUT, rx).await.ok().and_then(Result::ok)
        } else {
            None
        };
        self.pending.lock().expect("caps lock").remove(&id);
        let answer = answer?;
        let query = answer
            .get_child("query", verify::NS_DISCO_INFO)
            .filter(|_| answer.get_attr("type") == Some("result"))?;
        if query.elements().count() > MAX_FEATURES + 64 {
            tracing::debug!(%jid, "caps answer too large");
            return None;
        }
        match verify::verify(query, &caps.hash, &caps.ver) {
            Ok(v) => {
                tracing::debug!(%jid, ver = %caps.ver, features = v.features.len(), "entity capabilities verified");
                Some(v.features.into())
            }
            Err(why) => {
                tracing::debug!(%jid, ver = %caps.ver, %why, "caps answer not believed");
                None
            }
        }
    }

    fn remember(&self, key: String, features: Features) {
        let mut known = self.known.lock().expect("caps lock");
        if known.len() >= MAX_KNOWN && !known.contains_key(&key) {
            // Forget an arbitrary entry: the store still has it.
            if let Some(k) = known.keys().next().cloned() {
                known.remove(&k);
            }
        }
        known.insert(key, features);
    }

    /// An IQ result or error a resource addressed to the server: true if it answers one
    /// of our caps queries (and was taken), so nothing else should handle it.
    pub fn answered(&self, from: &str, iq: &Element) -> bool {
        let Some(id) = iq.get_attr("id").filter(|id| id.starts_with(ID_PREFIX)) else {
            return false;
        };
        let mut pending = self.pending.lock().expect("caps lock");
        match pending.get(id) {
            Some((who, _)) if who == from => {}
            _ => return false,
        }
        if let Some((_, tx)) = pending.remove(id) {
            let _ = tx.send(iq.clone());
        }
        true
    }
}
