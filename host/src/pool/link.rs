//! Pool links: one mutually authenticated TLS connection per pair of nodes, carrying
//! length-prefixed JSON frames (a 4-byte big-endian length, then the frame).
//!
//! One per pair without races: the node with the smaller id dials, the other only
//! accepts (the mesh task dials every live node with a larger id). Each side checks the
//! other's `Hello` against its certificate (a node cannot pose as another) and against
//! the membership table (a fenced or dead epoch cannot link). Sending never waits: each
//! link has a bounded queue, and a full queue is reported to the caller (back-pressure),
//! who decides — for a message, offline storage — rather than letting memory grow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::pki::{self, LinkTls};
use crate::sessions::{FanOutTarget, Peers, SessionChange};
use crate::sessions::{KickReason, PeerError};
use crate::tasks::Tasks;
use crate::xml::Element;

/// Large enough for the biggest stanza a client may send, plus framing.
pub const MAX_FRAME: usize = 1024 * 1024;
/// Frames queued per link before senders are told the link is congested.
const QUEUE: usize = 8192;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// What nodes tell each other.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "t", rename_all = "kebab-case")]
pub enum Frame {
    /// First frame each way: who I am, under which epoch.
    Hello { node: String, epoch: i64 },
    /// A stanza for the session `bare/resource` on the receiving node. `seq` > 0 asks for
    /// an [`Frame::Ack`] once the receiver has taken responsibility for it (queued to the
    /// session or stored offline); until then the sender keeps a copy.
    Stanza {
        bare: String,
        resource: String,
        xml: String,
        #[serde(default)]
        seq: u64,
    },
    /// One stanza for several sessions on the receiving node (a plugin's fan-out): each
    /// copy gets its target's `to`. Never tracked.
    FanOut { xml: String, targets: Vec<FanOutTarget> },
    /// A stanza for a keyed feature's address (`room@conference.example.org`) whose key
    /// the receiving node owns, after `hops` forwards (at most two: a sender's view of
    /// the owner may be a beat behind). Tracked like a message (`seq`).
    Keyed {
        xml: String,
        hops: u8,
        #[serde(default)]
        seq: u64,
    },
    /// A filter's interest set changed (the store has it already): `user` has rules for
    /// `plugin`'s filter, or no longer has.
    Interest {
        plugin: String,
        user: String,
        has_rules: bool,
    },
    /// Every tracked stanza up to `seq` on this link is taken care of.
    Ack { seq: u64 },
    /// A message was just stored offline for `bare`: a node where that account is
    /// already online should deliver it now.
    OfflineStored { bare: String },
    /// A session was bound on the sending node.
    SessionUp { bare: String, resource: String },
    /// Its presence changed (`None`: unavailable) and with it its priority.
    SessionPresence {
        bare: String,
        resource: String,
        presence: Option<String>,
        priority: i8,
    },
    /// It asked for the roster, so it receives roster pushes.
    SessionInterested { bare: String, resource: String },
    /// It enabled or disabled message carbons (XEP-0280).
    SessionCarbons {
        bare: String,
        resource: String,
        enabled: bool,
    },
    /// It ended.
    SessionDown { bare: String, resource: String },
    /// Close this session of the receiving node, for `reason`.
    Kick {
        bare: String,
        resource: String,
        #[serde(default)]
        reason: KickReason,
    },
}

/// What the links report to the node.
#[derive(Debug)]
pub enum LinkEvent {
    Up {
        node: String,
    },
    /// The link is gone; `undelivered` are the tracked stanzas it never acknowledged, for
    /// the node to route again (messages to offline storage, keyed stanzas to the key's
    /// next owner).
    Down {
        node: String,
        undelivered: Vec<Tracked>,
    },
    Frame {
        node: String,
        frame: Frame,
    },
}

/// A stanza kept by its sender until the receiving node acknowledges it.
#[derive(Debug, Clone, PartialEq)]
pub enum Tracked {
    /// A message for an account (its bare JID), as forwarded.
    Message { bare: String, xml: String },
    /// A stanza for a keyed feature's address.
    Keyed { xml: String },
}

/// Tracked stanzas sent on one link and not yet acknowledged.
#[derive(Default)]
struct Unacked {
    next_seq: u64,
    pending: std::collections::VecDeque<(u64, Tracked)>,
}

impl Unacked {
    /// Keep `tracked` until acknowledged; its sequence number.
    fn keep(&mut self, tracked: Tracked) -> u64 {
        self.next_seq += 1;
        self.pending.push_back((self.next_seq, tracked));
        self.next_seq
    }
}

struct Peer {
    /// Tells this connection apart from a later one to the same node.
    serial: u64,
    epoch: i64,
    tx: mpsc::Sender<Frame>,
    unacked: Arc<Mutex<Unacked>>,
}

impl Peer {
    fn undelivered(&self) -> Vec<Tracked> {
        let mut u = self.unacked.lock().expect("unacked lock");
        u.pending.drain(..).map(|(_, tracked)| tracked).collect()
    }
}

pub struct Links {
    node_id: String,
    tls: LinkTls,
    peers: Mutex<HashMap<String, Peer>>,
    dialing: Mutex<std::collections::HashSet<String>>,
    events: mpsc::UnboundedSender<LinkEvent>,
    serial: std::sync::atomic::AtomicU64,
    /// Where the links' tasks run: handshakes and dials stop on its signal, each link's
    /// reader ends on it and its writer after flushing what was queued.
    tasks: Tasks,
}

/// Validates a peer's `Hello`: is this node live in the pool under this epoch?
pub type EpochCheck =
    Arc<dyn Fn(String, i64) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send>> + Send + Sync>;
/// This node's current epoch, `None` while fenced (a fenced node accepts no links).
pub type MyEpoch = Arc<dyn Fn() -> Option<i64> + Send + Sync>;

impl Links {
    pub fn new(node_id: &str, tls: LinkTls, tasks: Tasks) -> (Arc<Links>, mpsc::UnboundedReceiver<LinkEvent>) {
        let (events, rx) = mpsc::unbounded_channel();
        let links = Arc::new(Links {
            node_id: node_id.to_string(),
            tls,
            peers: Mutex::new(HashMap::new()),
            dialing: Mutex::new(Default::default()),
            events,
            serial: Default::default(),
            tasks,
        });
        (links, rx)
    }

    /// Queue a frame for a node without waiting.
    pub fn send(&self, node: &str, frame: Frame) -> Result<(), PeerError> {
        let peers = self.peers.lock().expect("links lock");
        let peer = peers
            .get(node)
            .ok_or_else(|| PeerError::NotConnected(node.to_string()))?;
        peer.tx.try_send(frame).map_err(|e| queue_error(node, e))
    }

    /// Forward a stanza to a session on `node`. A `tracked` stanza (a message) is kept
    /// until the peer acknowledges it, so a link that breaks first hands it back in
    /// [`LinkEvent::Down`] instead of losing it.
    pub fn send_stanza(
        &self,
        node: &str,
        bare: &str,
        resource: &str,
        xml: String,
        tracked: bool,
    ) -> Result<(), PeerError> {
        let peers = self.peers.lock().expect("links lock");
        let peer = peers
            .get(node)
            .ok_or_else(|| PeerError::NotConnected(node.to_string()))?;
        let permit = peer.tx.try_reserve().map_err(|e| queue_error(node, e))?;
        let seq = if tracked {
            peer.unacked.lock().expect("unacked lock").keep(Tracked::Message {
                bare: bare.to_string(),
                xml: xml.clone(),
            })
        } else {
            0
        };
        permit.send(Frame::Stanza {
            bare: bare.to_string(),
            resource: resource.to_string(),
            xml,
            seq,
        });
        Ok(())
    }

    /// Forward a stanza for a keyed feature's address to the node owning its key, kept
    /// until that node acknowledges it (see [`Frame::Keyed`]).
    pub fn send_keyed(&self, node: &str, xml: String, hops: u8) -> Result<(), PeerError> {
        let peers = self.peers.lock().expect("links lock");
        let peer = peers
            .get(node)
            .ok_or_else(|| PeerError::NotConnected(node.to_string()))?;
        let permit = peer.tx.try_reserve().map_err(|e| queue_error(node, e))?;
        let seq = peer
            .unacked
            .lock()
            .expect("unacked lock")
            .keep(Tracked::Keyed { xml: xml.clone() });
        permit.send(Frame::Keyed { xml, hops, seq });
        Ok(())
    }

    /// Queue a frame for every linked node (session changes).
    pub fn broadcast(&self, frame: &Frame) {
        let peers = self.peers.lock().expect("links lock");
        for (node, peer) in peers.iter() {
            if peer.tx.try_send(frame.clone()).is_err() {
                tracing::warn!(%node, "link congested: dropping a session update; the link will be reset");
            }
        }
    }

    pub fn connected(&self) -> Vec<(String, i64)> {
        let peers = self.peers.lock().expect("links lock");
        peers.iter().map(|(n, p)| (n.clone(), p.epoch)).collect()
    }

    /// Close the link to a node (it died, or its epoch is no longer the pool's).
    pub fn drop_peer(&self, node: &str) {
        let removed = self.peers.lock().expect("links lock").remove(node);
        if let Some(peer) = removed {
            let _ = self.events.send(LinkEvent::Down {
                node: node.to_string(),
                undelivered: peer.undelivered(),
            });
        }
    }

    /// Accept links from peers.
    pub async fn listen(self: Arc<Self>, listener: TcpListener, my_epoch: MyEpoch, check: EpochCheck) {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.server.clone());
        loop {
            let (tcp, addr) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "pool link accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let links = self.clone();
            let acceptor = acceptor.clone();
            let check = check.clone();
            let my_epoch = my_epoch.clone();
            self.tasks.spawn_until_signal("pool link handshake", async move {
                let Some(epoch) = my_epoch() else { return };
                let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                    let _ = tcp.set_nodelay(true);
                    let mut tls = acceptor.accept(tcp).await.map_err(|e| format!("TLS: {e}"))?;
                    let cert = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first().cloned())
                        .ok_or("no client certificate")?;
                    let (node, peer_epoch) = match read_frame(&mut tls).await? {
                        Frame::Hello { node, epoch } => (node, epoch),
                        other => return Err(format!("expected hello, got {other:?}")),
                    };
                    if !pki::cert_names_node(&cert, &node) {
                        return Err(format!("certificate does not belong to node {node:?}"));
                    }
                    if node >= links.node_id {
                        // One link per pair: the smaller id dials.
                        return Err(format!("node {node:?} must wait for {} to dial it", links.node_id));
                    }
                    if !check(node.clone(), peer_epoch).await {
                        return Err(format!("node {node:?} epoch {peer_epoch} is not live in the pool"));
                    }
                    write_frame(
                        &mut tls,
                        &Frame::Hello {
                            node: links.node_id.clone(),
                            epoch,
                        },
                    )
                    .await?;
                    Ok::<_, String>((tls, node, peer_epoch))
                })
                .await;
                match accepted {
                    Ok(Ok((tls, node, peer_epoch))) => links.register(node, peer_epoch, tls),
                    Ok(Err(reason)) => tracing::warn!(%addr, %reason, "refused a pool link"),
                    Err(_) => tracing::warn!(%addr, "refused a pool link: handshake timed out"),
                }
            });
        }
    }

    /// Dial a node with a larger id, unless linked or already dialing.
    pub fn dial(self: &Arc<Self>, node: String, epoch: i64, addr: String, my_epoch: i64) {
        if node <= self.node_id || self.peers.lock().expect("links lock").contains_key(&node) {
            return;
        }
        if !self.dialing.lock().expect("links lock").insert(node.clone()) {
            return;
        }
        let links = self.clone();
        self.tasks.spawn_until_signal("pool link dial", async move {
            let result = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
                let name = pki::server_name(&node).map_err(|e| e.to_string())?;
                let tcp = TcpStream::connect(&addr)
                    .await
                    .map_err(|e| format!("connect {addr}: {e}"))?;
                let _ = tcp.set_nodelay(true);
                let connector = tokio_rustls::TlsConnector::from(links.tls.client.clone());
                let mut tls = connector.connect(name, tcp).await.map_err(|e| format!("TLS: {e}"))?;
                write_frame(
                    &mut tls,
                    &Frame::Hello {
                        node: links.node_id.clone(),
                        epoch: my_epoch,
                    },
                )
                .await?;
                match read_frame(&mut tls).await? {
                    Frame::Hello { node: n, epoch: e } if n == node && e == epoch => Ok(tls),
                    other => Err(format!("unexpected hello {other:?}")),
                }
            })
            .await;
            links.dialing.lock().expect("links lock").remove(&node);
            match result {
                Ok(Ok(tls)) => links.register(node, epoch, tls),
                Ok(Err(reason)) => tracing::warn!(%node, %addr, %reason, "cannot link to node"),
                Err(_) => tracing::warn!(%node, %addr, "cannot link to node: handshake timed out"),
            }
        });
    }

    fn register<S>(self: &Arc<Self>, node: String, epoch: i64, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let serial = self.serial.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel::<Frame>(QUEUE);
        let unacked = Arc::new(Mutex::new(Unacked::default()));
        let replaced = self.peers.lock().expect("links lock").insert(
            node.clone(),
            Peer {
                serial,
                epoch,
                tx,
                unacked: unacked.clone(),
            },
        );
        if let Some(old) = replaced {
            let _ = self.events.send(LinkEvent::Down {
                node: node.clone(),
                undelivered: old.undelivered(),
            });
        }
        tracing::info!(%node, epoch, "pool link up");
        let _ = self.events.send(LinkEvent::Up { node: node.clone() });
        let (mut reader, mut writer) = tokio::io::split(stream);
        let writer_node = node.clone();
        // Ends when the peer entry (the queue's sender) is gone, after what was queued.
        self.tasks.spawn("pool link writer", async move {
            while let Some(frame) = rx.recv().await {
                if let Err(e) = write_frame(&mut writer, &frame).await {
                    tracing::warn!(node = %writer_node, error = %e, "pool link write failed");
                    break;
                }
            }
            let _ = writer.shutdown().await;
        });
        let links = self.clone();
        let stop = self.tasks.signalled();
        self.tasks.spawn("pool link reader", async move {
            tokio::pin!(stop);
            loop {
                let read = tokio::select! {
                    read = read_frame(&mut reader) => read,
                    () = &mut stop => Err("this node is shutting down".to_string()),
                };
                match read {
                    Ok(Frame::Ack { seq }) => {
                        let mut u = unacked.lock().expect("unacked lock");
                        while u.pending.front().is_some_and(|(s, _)| *s <= seq) {
                            u.pending.pop_front();
                        }
                    }
                    Ok(frame) => {
                        // A link dropped by this node (its peer's epoch ended) may still
                        // deliver old bytes: they must not be acted on.
                        let current = links.peers.lock().expect("links lock").get(&node).map(|p| p.serial);
                        if current != Some(serial) {
                            break;
                        }
                        let _ = links.events.send(LinkEvent::Frame {
                            node: node.clone(),
                            frame,
                        });
                    }
                    Err(reason) => {
                        tracing::info!(%node, %reason, "pool link down");
                        break;
                    }
                }
            }
            let mut peers = links.peers.lock().expect("links lock");
            if peers.get(&node).is_some_and(|p| p.serial == serial) {
                let peer = peers.remove(&node).expect("checked above");
                drop(peers);
                let _ = links.events.send(LinkEvent::Down {
                    node,
                    undelivered: peer.undelivered(),
                });
            }
        });
    }
}

/// The session table's view of the other nodes: stanzas, kicks and session changes become
/// frames here, so the table never builds them.
impl Peers for Links {
    fn forward(
        &self,
        node: &str,
        bare: &str,
        resource: &str,
        stanza: &Element,
        tracked: bool,
    ) -> Result<(), PeerError> {
        self.send_stanza(node, bare, resource, stanza.to_stream_xml(), tracked)
    }

    fn forward_many(&self, node: &str, stanza: &Element, targets: Vec<FanOutTarget>) -> Result<(), PeerError> {
        let xml = stanza.to_stream_xml();
        // Frames stay well under MAX_FRAME: a batch is cut where its targets would pass half.
        let budget = MAX_FRAME / 2 - xml.len().min(MAX_FRAME / 4);
        let mut batch = Vec::new();
        let mut size = 0;
        for t in targets {
            let cost = t.bare.len() + t.resource.len() + t.to.len() + 40;
            if !batch.is_empty() && size + cost > budget {
                let targets = std::mem::take(&mut batch);
                self.send(
                    node,
                    Frame::FanOut {
                        xml: xml.clone(),
                        targets,
                    },
                )?;
                size = 0;
            }
            size += cost;
            batch.push(t);
        }
        if !batch.is_empty() {
            self.send(node, Frame::FanOut { xml, targets: batch })?;
        }
        Ok(())
    }

    fn kick(&self, node: &str, bare: &str, resource: &str, reason: KickReason) -> Result<(), PeerError> {
        self.send(
            node,
            Frame::Kick {
                bare: bare.to_string(),
                resource: resource.to_string(),
                reason,
            },
        )
    }

    fn announce(&self, change: SessionChange) {
        self.broadcast(&Frame::from(change));
    }

    fn offline_stored(&self, bare: &str) {
        self.broadcast(&Frame::OfflineStored { bare: bare.to_string() });
    }
}

impl From<SessionChange> for Frame {
    fn from(change: SessionChange) -> Frame {
        match change {
            SessionChange::Up { bare, resource } => Frame::SessionUp { bare, resource },
            SessionChange::Presence {
                bare,
                resource,
                presence,
                priority,
            } => Frame::SessionPresence {
                bare,
                resource,
                presence,
                priority,
            },
            SessionChange::Interested { bare, resource } => Frame::SessionInterested { bare, resource },
            SessionChange::Carbons {
                bare,
                resource,
                enabled,
            } => Frame::SessionCarbons {
                bare,
                resource,
                enabled,
            },
            SessionChange::Down { bare, resource } => Frame::SessionDown { bare, resource },
        }
    }
}

/// A link queue that would not take a frame: full (back-pressure) or gone.
fn queue_error<T>(node: &str, e: mpsc::error::TrySendError<T>) -> PeerError {
    match e {
        mpsc::error::TrySendError::Full(_) => PeerError::Congested(node.to_string()),
        mpsc::error::TrySendError::Closed(_) => PeerError::NotConnected(node.to_string()),
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> Result<(), String> {
    let body = serde_json::to_vec(frame).map_err(|e| e.to_string())?;
    if body.len() > MAX_FRAME {
        return Err(format!("frame of {} bytes exceeds the limit", body.len()));
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    w.write_all(&buf).await.map_err(|e| e.to_string())?;
    w.flush().await.map_err(|e| e.to_string())
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Frame, String> {
    let len = r.read_u32().await.map_err(|e| e.to_string())? as usize;
    if len > MAX_FRAME {
        return Err(format!("garbled frame: announced length {len} exceeds the limit"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("garbled frame: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_garbage_is_refused() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let f = Frame::SessionPresence {
            bare: "a@l".into(),
            resource: "r".into(),
            presence: Some("<presence/>".into()),
            priority: 5,
        };
        write_frame(&mut a, &f).await.unwrap();
        assert_eq!(read_frame(&mut b).await.unwrap(), f);
        a.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        assert!(read_frame(&mut b).await.unwrap_err().contains("garbled"));
        a.write_all(&[0, 0, 0, 3, b'x', b'y', b'z']).await.unwrap();
        assert!(read_frame(&mut b).await.unwrap_err().contains("garbled"));
    }
}
