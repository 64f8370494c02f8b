//! An in-process node for tests of the RFC 6121 services: a real [`Context`] over an
//! in-memory SQLite store and no features, clients bound straight into the session table
//! with an outbox that no writer drains to a socket, and stanzas sent as a client's stream
//! would send them (`from` stamped, then [`router::route_from_client`]). No sockets, TLS or
//! WebAssembly. What a client received is read back in order ([`Client::received`]), and
//! [`summary`] turns each stanza into one line, so a test states a whole exchange as a list.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::{Config, DomainConfig};
use crate::context::Context;
use crate::features::{Features, NoFeatures};
use crate::sessions::Session;
use crate::store::{RosterItem, ScramKeys, Store, StoredCredentials, Subscription};
use crate::stream::writer::{channel, Inbox, QueueLimits};
use crate::stream::Outbound;
use crate::xml::{Element, NS_CLIENT};
use crate::{presence, router};

/// The node's one hosted domain: users are `name@x`.
pub const DOMAIN: &str = "x";

pub struct Node {
    pub ctx: Arc<Context>,
}

impl Node {
    pub async fn new() -> Node {
        Node::with(|_| {}).await
    }

    /// A node whose configuration (limits, mostly) `configure` changes first.
    pub async fn with(configure: impl FnOnce(&mut Config)) -> Node {
        Node::with_features(configure, Arc::new(NoFeatures)).await
    }

    /// A node with these features (a fake filter, say) instead of none.
    pub async fn with_features(configure: impl FnOnce(&mut Config), features: Arc<dyn Features>) -> Node {
        let mut config = Config {
            domains: vec![DomainConfig {
                name: DOMAIN.to_string(),
                tls_cert: None,
                tls_key: None,
            }],
            ..Config::default()
        };
        configure(&mut config);
        // A fresh in-memory database per node, named so that the pool's connections all
        // open the same one (sqlx's `Any` driver re-reads the URL per connection, so a
        // plain `sqlite::memory:` would give each connection a database of its own). It
        // lives while a connection is open; the data directory is not used.
        static NODES: AtomicUsize = AtomicUsize::new(0);
        let n = NODES.fetch_add(1, Ordering::Relaxed);
        let spec = format!("sqlite:file:testkit-{n}?mode=memory&cache=shared");
        let store = Store::open(&spec, Path::new("."), 2).await.expect("an in-memory store");
        Node {
            ctx: Arc::new(Context::new(config, store, features)),
        }
    }

    /// Create the account `name@x`; returns its bare JID.
    pub async fn user(&self, name: &str) -> String {
        let bare = format!("{name}@{DOMAIN}");
        // Nobody logs in here, so the keys need not be derived from a password.
        let keys = ScramKeys {
            salt: vec![0; 16],
            iterations: 1,
            stored_key: vec![0; 20],
            server_key: vec![0; 20],
        };
        let creds = StoredCredentials {
            sha1: keys.clone(),
            sha256: keys,
        };
        self.ctx
            .store
            .create_account(&bare, DOMAIN, &creds)
            .await
            .expect("a new account");
        bare
    }

    /// Bind `bare/resource`: connected, without initial presence yet.
    pub fn connect(&self, bare: &str, resource: &str) -> Client {
        let (tx, inbox) = channel(QueueLimits::default());
        let id = self.ctx.sessions.new_id();
        let kill = Arc::new(tokio::sync::Notify::new());
        let replaced = self.ctx.sessions.bind(bare, resource, id, tx, kill, 0).expect("bound");
        assert!(replaced.is_none(), "{bare}/{resource} was bound already");
        let jid = jid::FullJid::new(&format!("{bare}/{resource}")).expect("a full JID");
        Client {
            session: Session {
                jid,
                bare: bare.to_string(),
                id,
                peer: Ipv4Addr::LOCALHOST.into(),
                available: false,
                last_presence: None,
                directed: HashSet::new(),
                feature_calls: Default::default(),
            },
            inbox,
            ctx: self.ctx.clone(),
        }
    }

    /// [`Node::connect`], then initial presence at `priority`; what that brought in (its
    /// echo, contacts' presence, stored requests and messages) is read and dropped.
    pub async fn online(&self, bare: &str, resource: &str, priority: i8) -> Client {
        let mut client = self.connect(bare, resource);
        client.presence(priority).await;
        client.received();
        client
    }

    /// [`Node::online`] at priority 0, then a roster get: an available, interested resource
    /// (RFC 6121 §2.1.6), the usual party to a subscription exchange.
    pub async fn interested(&self, bare: &str, resource: &str) -> Client {
        let mut client = self.online(bare, resource, 0).await;
        client.roster_get().await;
        client
    }

    /// Write `owner`'s item for `contact` straight into the store (no pushes, no routing).
    pub async fn set_item(&self, owner: &str, item: &RosterItem) {
        self.ctx
            .store
            .put_roster_item(owner, item, 1000)
            .await
            .expect("item written");
    }

    /// Make `user` and `contact` each other's roster items, `user`'s with `subscription`
    /// and `contact`'s with its mirror (`to` on one side is `from` on the other).
    pub async fn relate(&self, user: &str, contact: &str, subscription: Subscription) {
        let mirror = Subscription::None
            .with_to(subscription.has_from())
            .with_from(subscription.has_to());
        for (owner, other, subscription) in [(user, contact, subscription), (contact, user, mirror)] {
            let item = RosterItem {
                subscription,
                ..RosterItem::new(other)
            };
            self.set_item(owner, &item).await;
        }
    }

    /// Store a subscription request from `contact` waiting for `owner`'s answer.
    pub async fn set_pending_in(&self, owner: &str, contact: &str) {
        let request = format!("<presence from='{contact}' to='{owner}' type='subscribe'/>");
        self.ctx
            .store
            .add_pending_in(owner, contact, &request, 1000)
            .await
            .expect("request stored");
    }

    /// The messages stored offline for `bare`, oldest first, as summaries.
    pub async fn offline(&self, bare: &str) -> Vec<String> {
        let stored = self
            .ctx
            .store
            .offline_messages(bare, 0, 1000)
            .await
            .expect("offline messages");
        stored
            .iter()
            .map(|(_, xml, _)| summary(&Element::parse_in(xml, NS_CLIENT).expect("a stored stanza")))
            .collect()
    }
}

/// One bound client: its session as the services see it, and its outbox's far end.
pub struct Client {
    pub session: Session,
    inbox: Inbox,
    ctx: Arc<Context>,
}

impl Client {
    pub fn jid(&self) -> String {
        self.session.jid.to_string()
    }

    /// Send `xml` (one stanza, in `jabber:client`) as this client: `from` stamped to its
    /// full JID as its stream does (RFC 6120 §8.1.2.1), then routed. Returns once routing
    /// is done; nothing it delivers is left in flight.
    pub async fn send(&mut self, xml: &str) {
        let mut stanza = Element::parse_in(xml, NS_CLIENT).expect("a well-formed stanza");
        stanza.set_attr("from", self.jid());
        router::route_from_client(&self.ctx, &mut self.session, stanza).await;
    }

    /// Broadcast available presence with this priority (initial presence the first time).
    pub async fn presence(&mut self, priority: i8) {
        self.send(&format!("<presence><priority>{priority}</priority></presence>"))
            .await;
    }

    /// Ask for the roster, which makes this an interested resource (RFC 6121 §2.1.6), and
    /// read the answer.
    pub async fn roster_get(&mut self) -> Element {
        self.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
            .await;
        let mut got = self.received_stanzas();
        assert_eq!(got.len(), 1, "one roster result: {got:?}");
        got.remove(0)
    }

    /// The session ends without unavailable presence, as `c2s::bound` ends it: out of the
    /// table, then unavailable sent on its behalf (RFC 6121 §4.5.2).
    pub async fn disconnect(mut self) {
        self.ctx.sessions.unbind(&self.session.bare, self.session.id);
        if self.session.available || !self.session.directed.is_empty() {
            presence::went_offline(&self.ctx, &mut self.session).await;
        }
    }

    /// Every stanza queued for this client since the last call, in order.
    pub fn received_stanzas(&mut self) -> Vec<Element> {
        self.inbox
            .take_queued()
            .into_iter()
            .map(|item| match item {
                Outbound::Stanza(stanza) => (*stanza).clone(),
                other => panic!("{}: expected only stanzas, got {other:?}", self.session.jid),
            })
            .collect()
    }

    /// [`Client::received_stanzas`] as [`summary`] lines.
    pub fn received(&mut self) -> Vec<String> {
        self.received_stanzas().iter().map(summary).collect()
    }
}

/// One line for a stanza, with what the tests look at:
/// - `message chat from a@x/1: hi` (with ` (delayed)` for a XEP-0203 stamp),
/// - `presence from a@x/1`, `presence unavailable from a@x/1`, `presence subscribe from a@x`,
/// - `push b@x to ask` (a roster push: the item's JID, subscription, `ask`, `approved`),
/// - `iq result from x`,
/// - and for stanza errors, `message error service-unavailable from b@x/gone`.
pub fn summary(e: &Element) -> String {
    let kind = e.get_attr("type");
    let from = e.get_attr("from").unwrap_or("-");
    let condition = e
        .get_child("error", NS_CLIENT)
        .and_then(|error| error.elements().next())
        .filter(|_| kind == Some("error"));
    if let Some(condition) = condition {
        return format!("{} error {} from {from}", e.name, condition.name);
    }
    match e.name.as_str() {
        "message" => {
            let body = e
                .get_child("body", NS_CLIENT)
                .map(|b| b.text_content())
                .unwrap_or_default();
            let delayed = if e.has_child("delay", "urn:xmpp:delay") {
                " (delayed)"
            } else {
                ""
            };
            format!("message {} from {from}: {body}{delayed}", kind.unwrap_or("normal"))
        }
        "presence" => match kind {
            None => format!("presence from {from}"),
            Some(kind) => format!("presence {kind} from {from}"),
        },
        "iq" => {
            let push = e
                .get_child("query", crate::roster::NS_ROSTER)
                .filter(|_| kind == Some("set"))
                .and_then(|q| q.elements().next());
            match push {
                Some(item) => {
                    let mut line = format!(
                        "push {} {}",
                        item.get_attr("jid").unwrap_or("?"),
                        item.get_attr("subscription").unwrap_or("none")
                    );
                    if item.get_attr("ask") == Some("subscribe") {
                        line.push_str(" ask");
                    }
                    if item.get_attr("approved") == Some("true") {
                        line.push_str(" approved");
                    }
                    line
                }
                None => format!("iq {} from {from}", kind.unwrap_or("?")),
            }
        }
        other => format!("{other}?"),
    }
}
