//! The table of bound client sessions: who is connected, with which resources, which of
//! them are available, at what priority, and how to reach each.
//!
//! In a pool the table also mirrors the sessions of the other nodes (their changes arrive
//! over pool links), so the router decides RFC 6121 delivery from one table wherever a
//! resource lives, and [`Resource::send`] forwards to the node that serves it. Changes to
//! local sessions are announced as [`SessionChange`]s to the [`Peers`] the pool attaches;
//! the table never builds link frames itself.
//!
//! Every lookup is a short critical section on a std `RwLock` — never held across an
//! `.await` — so routing never waits on a slow client.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use serde::{Deserialize, Serialize};

use crate::stream::{Outbound, OutboundTx, StreamError, StreamErrorCondition};
use crate::xml::Element;

/// One bound client session as the services see it: who it is, whether it is available,
/// whom it sent directed presence. Its connection (write queue, kill switch, read loop)
/// stays with `c2s`; the services read and update this half only.
#[derive(Debug, Clone)]
pub struct Session {
    pub jid: jid::FullJid,
    /// The bare JID as the session table keys it.
    pub bare: String,
    /// The table entry's id (a newer session on the same resource has another).
    pub id: u64,
    /// The client's address (per-address throttles, e.g. XEP-0077 password changes).
    pub peer: IpAddr,
    /// Has sent initial presence and not since gone unavailable.
    pub available: bool,
    /// Its last available presence while available (what the features are told of its
    /// capabilities when it goes).
    pub last_presence: Option<Arc<Element>>,
    /// Entities that got directed available presence and must hear our unavailable
    /// (RFC 6121 §4.6.3).
    pub directed: HashSet<String>,
    /// Stanzas handed to features and not answered yet, which paces a client bursting at
    /// a feature (see [`crate::features::FeatureCalls`]).
    pub feature_calls: crate::features::FeatureCalls,
}

/// How the table reaches the other nodes of a pool; the pool implements it over its links.
pub trait Peers: Send + Sync {
    /// Forward `stanza` to the session `bare/resource` that `node` serves. A `tracked` one
    /// (a message) is kept until `node` confirms it, and comes back if it never does.
    fn forward(&self, node: &str, bare: &str, resource: &str, stanza: &Element, tracked: bool)
        -> Result<(), PeerError>;
    /// Forward one stanza to several sessions `node` serves, in one batch: each copy gets
    /// its target's `to`. Not tracked (for groupchat, headlines, presence and IQs, whose
    /// loss with a dying node is not made up for by offline storage anyway).
    fn forward_many(&self, node: &str, stanza: &Element, targets: Vec<FanOutTarget>) -> Result<(), PeerError>;
    /// Ask `node` to end its session `bare/resource`.
    fn kick(&self, node: &str, bare: &str, resource: &str, reason: KickReason) -> Result<(), PeerError>;
    /// One of this node's sessions changed: the other nodes' mirrors follow.
    fn announce(&self, change: SessionChange);
    /// A message was just stored offline for `bare`: a node where that account is online
    /// delivers it now (it may have come online between routing and storing).
    fn offline_stored(&self, bare: &str);
}

/// One copy of a fanned-out stanza: the session it is for and the `to` it carries (the
/// recipient as the sender named it, bare or full).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FanOutTarget {
    pub bare: String,
    pub resource: String,
    pub to: String,
}

/// A change to one of this node's sessions, as the other nodes' mirrors need it.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionChange {
    Up {
        bare: String,
        resource: String,
    },
    /// Its presence (`None`: unavailable) and with it its priority.
    Presence {
        bare: String,
        resource: String,
        presence: Option<String>,
        priority: i8,
    },
    /// It asked for the roster, so it receives roster pushes.
    Interested {
        bare: String,
        resource: String,
    },
    /// It enabled or disabled message carbons (XEP-0280).
    Carbons {
        bare: String,
        resource: String,
        enabled: bool,
    },
    Down {
        bare: String,
        resource: String,
    },
}

/// Another node could not be reached: no link to it, or its link is congested.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PeerError {
    #[error("no link to node {0}")]
    NotConnected(String),
    #[error("the link to node {0} is congested")]
    Congested(String),
}

/// Why another node asks for one of our sessions to be closed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum KickReason {
    /// A newer session took the resource on the asking node (RFC 6120 §7.7.2.2).
    #[default]
    Conflict,
    /// The account was removed (XEP-0077 §3.2).
    AccountRemoved,
}

impl KickReason {
    /// The stream error the session is closed with.
    pub fn stream_error(self) -> StreamError {
        match self {
            KickReason::Conflict => StreamError::new(StreamErrorCondition::Conflict, "replaced by a new connection"),
            KickReason::AccountRemoved => StreamError::new(StreamErrorCondition::NotAuthorized, "account removed"),
        }
    }
}

/// Stanzas handed to a session on this node, and stanzas forwarded to another node's
/// session: process-wide counters (one node per process) for `poolxmpp stats`. Every
/// stanza ends in exactly one local hand-over (forwarded ones on the receiving node), so
/// summed over a pool, `forwarded / local` is the fraction that crossed a link.
pub static LOCAL_SENDS: AtomicU64 = AtomicU64::new(0);
pub static FORWARDS: AtomicU64 = AtomicU64::new(0);

/// Where a bound resource is served.
#[derive(Clone)]
pub enum Location {
    /// On this node: its write queue, and a wake-up for its reader when something else
    /// ends the session (a conflict, shutdown, fencing).
    Local {
        tx: OutboundTx,
        kill: Arc<tokio::sync::Notify>,
    },
    /// On another node of the pool, reached through the pool's [`Peers`].
    Remote { node: Arc<str>, peers: Arc<dyn Peers> },
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local { .. } => f.write_str("Local"),
            Location::Remote { node, .. } => write!(f, "Remote({node})"),
        }
    }
}

/// A snapshot of one bound resource.
#[derive(Debug, Clone)]
pub struct Resource {
    pub id: u64,
    pub bare: Arc<str>,
    pub resource: String,
    pub at: Location,
    /// The last available presence broadcast by this resource; `None` until initial presence
    /// (RFC 6121 §4.2) and again after unavailable.
    pub presence: Option<Arc<Element>>,
    pub priority: i8,
    /// Requested the roster, so it gets roster pushes (RFC 6121 §2.1.6 "interested resource").
    pub interested: bool,
    /// Enabled message carbons: it gets copies of the account's chats with its other
    /// resources (XEP-0280).
    pub carbons: bool,
}

impl Resource {
    pub fn available(&self) -> bool {
        self.presence.is_some()
    }

    pub fn is_local(&self) -> bool {
        matches!(self.at, Location::Local { .. })
    }

    /// The node serving a remote resource.
    pub fn node(&self) -> Option<&str> {
        match &self.at {
            Location::Local { .. } => None,
            Location::Remote { node, .. } => Some(node),
        }
    }

    /// The write queue of a local session.
    pub fn local_tx(&self) -> Option<&OutboundTx> {
        match &self.at {
            Location::Local { tx, .. } => Some(tx),
            Location::Remote { .. } => None,
        }
    }

    /// End the session: a local one is closed with `err`; a remote one is asked to close
    /// by its node (a newer session took its resource).
    pub fn close(&self, err: StreamError) {
        self.kick(err, KickReason::Conflict);
    }

    /// End the session wherever it is served: a local one is closed with `err`, a remote
    /// one by its node, which closes it with `reason`'s stream error.
    pub fn kick(&self, err: StreamError, reason: KickReason) {
        match &self.at {
            Location::Local { tx, kill } => {
                tx.close(Some(err));
                kill.notify_one();
            }
            Location::Remote { node, peers } => {
                if let Err(e) = peers.kick(node, &self.bare, &self.resource, reason) {
                    tracing::warn!(resource = %self.resource, error = %e, "cannot ask the other node to close a replaced session");
                }
            }
        }
    }

    /// Queue a stanza without waiting; `false` if it could not be queued. A full local
    /// queue means the client stopped reading; it is told so and disconnected rather than
    /// allowed to hold server memory. A remote session's stanza goes over the pool link.
    pub fn send(&self, stanza: Arc<Element>) -> bool {
        let tx = match &self.at {
            Location::Local { tx, .. } => tx,
            Location::Remote { node, peers } => {
                // Messages are tracked until the other node confirms them: if it dies
                // first, they come back as offline messages instead of vanishing.
                let tracked = stanza.name == "message";
                return match peers.forward(node, &self.bare, &self.resource, &stanza, tracked) {
                    Ok(()) => {
                        FORWARDS.fetch_add(1, Ordering::Relaxed);
                        true
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot forward a stanza");
                        false
                    }
                };
            }
        };
        match tx.try_send(Outbound::Stanza(stanza)) {
            Ok(()) => {
                LOCAL_SENDS.fetch_add(1, Ordering::Relaxed);
                true
            }
            // Full: the outbox has already closed that stream (the client is not reading)
            // and freed its queue; nobody waits for it. The caller routes elsewhere.
            Err(e) => {
                tracing::debug!(resource = %self.resource, error = %e, "stanza not queued");
                false
            }
        }
    }
}

/// Add a freshly bound resource (not yet available) to an account's list, sharing the
/// account's bare JID allocation with its other resources.
fn push_new(list: &mut Vec<Resource>, bare: &str, resource: &str, id: u64, at: Location) {
    let shared_bare = list.first().map(|r| r.bare.clone()).unwrap_or_else(|| Arc::from(bare));
    list.push(Resource {
        id,
        bare: shared_bare,
        resource: resource.to_string(),
        at,
        presence: None,
        priority: 0,
        interested: false,
        carbons: false,
    });
}

#[derive(Default)]
pub struct Sessions {
    by_bare: RwLock<HashMap<String, Vec<Resource>>>,
    next_id: AtomicU64,
    /// Set when this node is in a pool: local changes are announced to it.
    peers: OnceLock<Arc<dyn Peers>>,
    /// Set when this node is in a pool: local binds and unbinds for the shared directory.
    directory: OnceLock<tokio::sync::mpsc::UnboundedSender<DirectoryChange>>,
}

/// The account already has as many resources as `limits.max_resources_per_account` allows
/// (RFC 6120 §7.6.2.1: answered with `<resource-constraint/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many resources bound for this account")]
pub struct TooManyResources;

/// A change to this node's entries in the shared session directory (`pool_sessions`).
#[derive(Debug)]
pub enum DirectoryChange {
    Bound { bare: String, resource: String },
    Unbound { bare: String, resource: String },
}

impl Sessions {
    pub fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn attach_peers(&self, peers: Arc<dyn Peers>) {
        let _ = self.peers.set(peers);
    }

    pub fn attach_directory(&self, tx: tokio::sync::mpsc::UnboundedSender<DirectoryChange>) {
        let _ = self.directory.set(tx);
    }

    fn record(&self, change: impl FnOnce() -> DirectoryChange) {
        if let Some(tx) = self.directory.get() {
            let _ = tx.send(change());
        }
    }

    /// Tell the other nodes a message was stored offline for `bare` (see [`Peers::offline_stored`]).
    pub fn announce_offline_stored(&self, bare: &str) {
        if let Some(peers) = self.peers.get() {
            peers.offline_stored(bare);
        }
    }

    fn announce(&self, change: impl FnOnce() -> SessionChange) {
        if let Some(peers) = self.peers.get() {
            peers.announce(change());
        }
    }

    /// Bind a local resource; returns the session it replaced, if the resource was taken
    /// here or on another node (RFC 6120 §7.7.2.2: the newest session wins, the old one
    /// gets `<conflict/>`). Refused when the account already has `max_resources` other
    /// resources (0: no cap), counting those on other nodes of the pool too.
    pub fn bind(
        &self,
        bare: &str,
        resource: &str,
        id: u64,
        tx: OutboundTx,
        kill: Arc<tokio::sync::Notify>,
        max_resources: usize,
    ) -> Result<Option<Resource>, TooManyResources> {
        let old = self.insert(bare, resource, id, Location::Local { tx, kill }, max_resources)?;
        self.announce(|| SessionChange::Up {
            bare: bare.to_string(),
            resource: resource.to_string(),
        });
        self.record(|| DirectoryChange::Bound {
            bare: bare.to_string(),
            resource: resource.to_string(),
        });
        Ok(old)
    }

    fn insert(
        &self,
        bare: &str,
        resource: &str,
        id: u64,
        at: Location,
        max_resources: usize,
    ) -> Result<Option<Resource>, TooManyResources> {
        let mut map = self.by_bare.write().expect("sessions lock");
        let list = map.entry(bare.to_string()).or_default();
        let others = list.iter().filter(|r| r.resource != resource).count();
        if max_resources > 0 && others >= max_resources {
            return Err(TooManyResources);
        }
        let old = list.iter().position(|r| r.resource == resource).map(|i| list.remove(i));
        push_new(list, bare, resource, id, at);
        Ok(old)
    }

    /// Mirror a session bound on another node. A local session on the same resource is
    /// left to the binding node's `Kick`, which arrives separately.
    pub fn bind_remote(&self, node: &str, bare: &str, resource: &str) {
        let Some(peers) = self.peers.get().cloned() else { return };
        let at = Location::Remote {
            node: Arc::from(node),
            peers,
        };
        let id = self.new_id();
        let mut map = self.by_bare.write().expect("sessions lock");
        let list = map.entry(bare.to_string()).or_default();
        if list.iter().any(|r| r.resource == resource && r.is_local()) {
            return;
        }
        list.retain(|r| r.resource != resource);
        push_new(list, bare, resource, id, at);
    }

    /// Apply a change to a mirrored session of `node`.
    pub fn update_remote(&self, node: &str, bare: &str, resource: &str, f: impl FnOnce(&mut Resource)) {
        let mut map = self.by_bare.write().expect("sessions lock");
        if let Some(r) = map
            .get_mut(bare)
            .and_then(|l| l.iter_mut().find(|r| r.resource == resource && r.node() == Some(node)))
        {
            f(r);
        }
    }

    /// Forget a mirrored session of `node`; returns it if it was there.
    pub fn unbind_remote(&self, node: &str, bare: &str, resource: &str) -> Option<Resource> {
        let mut map = self.by_bare.write().expect("sessions lock");
        let list = map.get_mut(bare)?;
        let pos = list
            .iter()
            .position(|r| r.resource == resource && r.node() == Some(node))?;
        let removed = list.remove(pos);
        if list.is_empty() {
            map.remove(bare);
        }
        Some(removed)
    }

    /// Forget every mirrored session of `node` (its link went down or it died).
    pub fn forget_node(&self, node: &str) -> Vec<Resource> {
        let mut map = self.by_bare.write().expect("sessions lock");
        let mut gone = Vec::new();
        map.retain(|_, list| {
            list.retain(|r| {
                let theirs = r.node() == Some(node);
                if theirs {
                    gone.push(r.clone());
                }
                !theirs
            });
            !list.is_empty()
        });
        gone
    }

    /// Send a local session to another node: leave the table first, so stanzas routed from
    /// now on find the user's other resources or offline storage, then end the stream
    /// with `err` after what is already queued. Returns whether it was still bound.
    pub fn hand_off(&self, r: &Resource, err: StreamError) -> bool {
        if self.unbind(&r.bare, r.id).is_none() {
            return false;
        }
        r.close(err);
        true
    }

    /// Remove a local session; returns its last state, if it was still bound.
    pub fn unbind(&self, bare: &str, id: u64) -> Option<Resource> {
        let removed = {
            let mut map = self.by_bare.write().expect("sessions lock");
            let list = map.get_mut(bare)?;
            let pos = list.iter().position(|r| r.id == id && r.is_local())?;
            let removed = list.remove(pos);
            if list.is_empty() {
                map.remove(bare);
            }
            removed
        };
        self.announce(|| SessionChange::Down {
            bare: bare.to_string(),
            resource: removed.resource.clone(),
        });
        self.record(|| DirectoryChange::Unbound {
            bare: bare.to_string(),
            resource: removed.resource.clone(),
        });
        Some(removed)
    }

    /// Change a local session; returns its resource name if it is still bound.
    fn update(&self, bare: &str, id: u64, f: impl FnOnce(&mut Resource)) -> Option<String> {
        let mut map = self.by_bare.write().expect("sessions lock");
        let r = map
            .get_mut(bare)
            .and_then(|l| l.iter_mut().find(|r| r.id == id && r.is_local()))?;
        f(r);
        Some(r.resource.clone())
    }

    /// Point a local session at another write queue, keeping everything else it is (its
    /// presence, its place among the account's resources): a connection lost under stream
    /// management parks its session on a holding queue, and a resumption moves it to the
    /// new connection's. `false` if the session is no longer bound (a newer one took its
    /// resource, or it was kicked).
    pub fn retarget(&self, bare: &str, id: u64, tx: OutboundTx) -> bool {
        self.update(bare, id, |r| {
            if let Location::Local { tx: old, .. } = &mut r.at {
                *old = tx;
            }
        })
        .is_some()
    }

    pub fn set_presence(&self, bare: &str, id: u64, presence: Option<Arc<Element>>, priority: i8) {
        let xml = presence.as_ref().map(|p| p.to_stream_xml());
        if let Some(resource) = self.update(bare, id, |r| {
            r.presence = presence;
            r.priority = priority;
        }) {
            self.announce(|| SessionChange::Presence {
                bare: bare.to_string(),
                resource,
                presence: xml,
                priority,
            });
        }
    }

    /// XEP-0280: the session enabled (or disabled) carbons.
    pub fn set_carbons(&self, bare: &str, id: u64, enabled: bool) {
        if let Some(resource) = self.update(bare, id, |r| r.carbons = enabled) {
            self.announce(|| SessionChange::Carbons {
                bare: bare.to_string(),
                resource,
                enabled,
            });
        }
    }

    pub fn set_interested(&self, bare: &str, id: u64) {
        if let Some(resource) = self.update(bare, id, |r| r.interested = true) {
            self.announce(|| SessionChange::Interested {
                bare: bare.to_string(),
                resource,
            });
        }
    }

    pub fn resources(&self, bare: &str) -> Vec<Resource> {
        let map = self.by_bare.read().expect("sessions lock");
        map.get(bare).cloned().unwrap_or_default()
    }

    /// Queue a stanza for one bound resource (see [`Resource::send`]) without copying its
    /// entry out of the table: the path of every message to a full JID. `false` if the
    /// resource is not bound or could not take it.
    pub fn send_to(&self, bare: &str, resource: &str, stanza: Arc<Element>) -> bool {
        let map = self.by_bare.read().expect("sessions lock");
        map.get(bare)
            .and_then(|list| list.iter().find(|r| r.resource == resource))
            .is_some_and(|r| r.send(stanza))
    }

    /// Hand one stanza for several of `node`'s sessions to it in one batch (see
    /// [`Peers::forward_many`]); false if it could not be handed over.
    pub fn forward_many(&self, node: &str, stanza: &Element, targets: Vec<FanOutTarget>) -> bool {
        let Some(peers) = self.peers.get() else { return false };
        let n = targets.len() as u64;
        match peers.forward_many(node, stanza, targets) {
            Ok(()) => {
                FORWARDS.fetch_add(n, Ordering::Relaxed);
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot forward a fan-out");
                false
            }
        }
    }

    pub fn resource(&self, bare: &str, resource: &str) -> Option<Resource> {
        let map = self.by_bare.read().expect("sessions lock");
        map.get(bare)?.iter().find(|r| r.resource == resource).cloned()
    }

    pub fn is_online(&self, bare: &str) -> bool {
        self.by_bare.read().expect("sessions lock").contains_key(bare)
    }

    /// Sessions of other nodes mirrored here.
    pub fn mirrored(&self) -> usize {
        let map = self.by_bare.read().expect("sessions lock");
        map.values().flatten().filter(|r| !r.is_local()).count()
    }

    /// Sessions served by this node.
    pub fn count(&self) -> usize {
        let map = self.by_bare.read().expect("sessions lock");
        map.values().flatten().filter(|r| r.is_local()).count()
    }

    /// Every session served by this node, for shutdown, fencing and pool snapshots.
    pub fn all(&self) -> Vec<Resource> {
        let map = self.by_bare.read().expect("sessions lock");
        map.values().flatten().filter(|r| r.is_local()).cloned().collect()
    }
}
