//! The table of bound client sessions on this node: who is connected, with which
//! resources, which of them are available, at what priority, and how to reach each.
//!
//! Every lookup is a short critical section on a std `RwLock` — never held across an
//! `.await` — so routing never waits on a slow client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::stream::{Outbound, OutboundTx};
use crate::xml::Element;

/// A snapshot of one bound resource.
#[derive(Debug, Clone)]
pub struct Resource {
    pub id: u64,
    pub resource: String,
    pub tx: OutboundTx,
    /// Wakes the session's reader when something else ends the session (a conflict, shutdown).
    pub kill: Arc<tokio::sync::Notify>,
    /// The last available presence broadcast by this resource; `None` until initial presence
    /// (RFC 6121 §4.2) and again after unavailable.
    pub presence: Option<Arc<Element>>,
    pub priority: i8,
    /// Requested the roster, so it gets roster pushes (RFC 6121 §2.1.6 "interested resource").
    pub interested: bool,
}

impl Resource {
    pub fn available(&self) -> bool {
        self.presence.is_some()
    }

    /// Queue a stanza without waiting. A full queue means the client stopped reading; it is
    /// told so and disconnected rather than allowed to hold server memory.
    pub fn send(&self, stanza: Arc<Element>) -> bool {
        match self.tx.try_send(Outbound::Stanza(stanza)) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(resource = %self.resource, "send queue full; closing the stream");
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let err = crate::stream::StreamError::new(
                        crate::stream::StreamErrorCondition::PolicyViolation,
                        "too many unread stanzas",
                    );
                    let _ = tx.send(Outbound::Close(Some(err))).await;
                });
                false
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[derive(Default)]
pub struct Sessions {
    by_bare: RwLock<HashMap<String, Vec<Resource>>>,
    next_id: AtomicU64,
}

impl Sessions {
    pub fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Bind a resource; returns the session it replaced, if the resource was taken
    /// (RFC 6120 §7.7.2.2: the newest session wins, the old one gets `<conflict/>`).
    pub fn bind(
        &self,
        bare: &str,
        resource: &str,
        id: u64,
        tx: OutboundTx,
        kill: Arc<tokio::sync::Notify>,
    ) -> Option<Resource> {
        let mut map = self.by_bare.write().expect("sessions lock");
        let list = map.entry(bare.to_string()).or_default();
        let old = list.iter().position(|r| r.resource == resource).map(|i| list.remove(i));
        list.push(Resource {
            id,
            resource: resource.to_string(),
            tx,
            kill,
            presence: None,
            priority: 0,
            interested: false,
        });
        old
    }

    /// Remove a session; returns its last state, if it was still bound.
    pub fn unbind(&self, bare: &str, id: u64) -> Option<Resource> {
        let mut map = self.by_bare.write().expect("sessions lock");
        let list = map.get_mut(bare)?;
        let pos = list.iter().position(|r| r.id == id)?;
        let removed = list.remove(pos);
        if list.is_empty() {
            map.remove(bare);
        }
        Some(removed)
    }

    fn update(&self, bare: &str, id: u64, f: impl FnOnce(&mut Resource)) {
        let mut map = self.by_bare.write().expect("sessions lock");
        if let Some(r) = map.get_mut(bare).and_then(|l| l.iter_mut().find(|r| r.id == id)) {
            f(r);
        }
    }

    pub fn set_presence(&self, bare: &str, id: u64, presence: Option<Arc<Element>>, priority: i8) {
        self.update(bare, id, |r| {
            r.presence = presence;
            r.priority = priority;
        });
    }

    pub fn set_interested(&self, bare: &str, id: u64) {
        self.update(bare, id, |r| r.interested = true);
    }

    pub fn resources(&self, bare: &str) -> Vec<Resource> {
        let map = self.by_bare.read().expect("sessions lock");
        map.get(bare).cloned().unwrap_or_default()
    }

    pub fn resource(&self, bare: &str, resource: &str) -> Option<Resource> {
        let map = self.by_bare.read().expect("sessions lock");
        map.get(bare)?.iter().find(|r| r.resource == resource).cloned()
    }

    pub fn is_online(&self, bare: &str) -> bool {
        self.by_bare.read().expect("sessions lock").contains_key(bare)
    }

    pub fn count(&self) -> usize {
        self.by_bare.read().expect("sessions lock").values().map(Vec::len).sum()
    }

    /// Every bound session, for shutdown.
    pub fn all(&self) -> Vec<Resource> {
        let map = self.by_bare.read().expect("sessions lock");
        map.values().flatten().cloned().collect()
    }
}
