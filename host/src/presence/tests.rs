//! RFC 6121 §4 on an in-process node: who receives a user's presence, and in which order
//! a resource coming online hears of the world.

use std::sync::Arc;

use crate::features::{BoxFuture, Direction, Event, Feature, Features, Verdict};
use crate::store::Subscription;
use crate::testkit::{Client, Node, DOMAIN};
use crate::xml::Element;

/// A user `u` with one contact per subscription state, each online with one resource:
/// `both`, `from` (sees u's presence), `to` (u sees theirs) and `none`.
struct World {
    node: Node,
    u: String,
    /// (subscription of u's item, the contact's bare JID, its resource `/1`).
    contacts: Vec<(Subscription, String, Client)>,
}

impl World {
    async fn new() -> World {
        let node = Node::new().await;
        let u = node.user("u").await;
        let mut contacts = Vec::new();
        for (name, subscription) in [
            ("both", Subscription::Both),
            ("from", Subscription::From),
            ("to", Subscription::To),
            ("none", Subscription::None),
        ] {
            let contact = node.user(name).await;
            node.relate(&u, &contact, subscription).await;
            let client = node.online(&contact, "1", 0).await;
            contacts.push((subscription, contact, client));
        }
        World { node, u, contacts }
    }

    /// What each contact received, by name, empty ones included.
    fn contacts_received(&mut self) -> Vec<(String, Vec<String>)> {
        self.contacts
            .iter_mut()
            .map(|(_, bare, client)| (bare.clone(), client.received()))
            .collect()
    }

    /// The lines `line` makes for each contact whose subscription passes `gets`.
    fn expect_contacts(&self, gets: impl Fn(Subscription) -> bool, line: &str) -> Vec<(String, Vec<String>)> {
        self.contacts
            .iter()
            .map(|(subscription, bare, _)| {
                let lines = if gets(*subscription) {
                    vec![line.to_string()]
                } else {
                    vec![]
                };
                (bare.clone(), lines)
            })
            .collect()
    }
}

/// §4.2.2, §4.3, §3.1.3, XEP-0160: at initial presence the resource gets its own
/// presence back first, then the presence of the contacts it is subscribed to (`to`,
/// `both`: the probes), then subscription requests that waited for it, then the messages
/// stored while it was offline. Its presence goes to the contacts subscribed to it.
#[tokio::test]
async fn initial_presence_brings_echo_then_contacts_then_requests_then_messages() {
    let mut w = World::new().await;
    let stranger = w.node.user("stranger").await;
    let mut s = w.node.online(&stranger, "1", 0).await;
    s.send(&format!("<presence to='{}' type='subscribe'/>", w.u)).await;
    let none = w.contacts[3].1.clone();
    w.contacts[3]
        .2
        .send(&format!(
            "<message to='{}' type='chat'><body>while away</body></message>",
            w.u
        ))
        .await;
    assert_eq!(w.node.offline(&w.u).await.len(), 1);
    s.received();

    let mut u = w.node.connect(&w.u, "r");
    u.presence(1).await;
    assert_eq!(
        u.received(),
        [
            "presence from u@x/r".to_string(),
            "presence from both@x/1".into(),
            "presence from to@x/1".into(),
            format!("presence subscribe from {stranger}"),
            format!("message chat from {none}/1: while away (delayed)"),
        ]
    );
    let expected = w.expect_contacts(Subscription::has_from, "presence from u@x/r");
    assert_eq!(w.contacts_received(), expected);
    assert!(s.received().is_empty(), "a stranger is not sent presence");
    assert!(w.node.offline(&w.u).await.is_empty());
}

/// §4.5.2: unavailable presence goes to the contacts subscribed to the user (`from`,
/// `both`), to the user's other available resources (not to one that never sent initial
/// presence), and back to the resource that sent it. A session that ends without it has
/// it sent on its behalf, to the same people.
#[tokio::test]
async fn unavailable_goes_to_subscribers_other_resources_and_the_sender() {
    let mut w = World::new().await;
    let mut r1 = w.node.online(&w.u, "1", 1).await;
    let mut r2 = w.node.online(&w.u, "2", 0).await;
    let mut silent = w.node.connect(&w.u, "3");
    r1.received();
    w.contacts_received();

    r1.send("<presence type='unavailable'/>").await;
    let line = "presence unavailable from u@x/1";
    assert_eq!(r1.received(), [line]);
    assert_eq!(r2.received(), [line]);
    assert!(silent.received().is_empty());
    let expected = w.expect_contacts(Subscription::has_from, line);
    assert_eq!(w.contacts_received(), expected);

    // The stream of r2 ends without a word: the same, on its behalf (r1 is no longer
    // available, so it hears nothing).
    r2.disconnect().await;
    let line = "presence unavailable from u@x/2";
    let expected = w.expect_contacts(Subscription::has_from, line);
    assert_eq!(w.contacts_received(), expected);
    assert!(r1.received().is_empty());
    assert!(silent.received().is_empty());
}

/// §4.6.3: whoever got directed presence from a user outside the subscription gets the
/// user's unavailable presence too, from an explicit unavailable or from a session that
/// ends; and only once, if a directed unavailable was sent already.
#[tokio::test]
async fn directed_presence_is_followed_by_unavailable() {
    let node = Node::new().await;
    let u = node.user("u").await;
    let d = node.user("d").await;
    let e = node.user("e").await;
    let f = node.user("f").await;
    let mut d1 = node.online(&d, "1", 0).await;
    let mut e1 = node.online(&e, "1", 0).await;
    let mut e2 = node.online(&e, "2", 0).await;
    let mut f1 = node.online(&f, "1", 0).await;
    e1.received();

    let mut u1 = node.online(&u, "1", 0).await;
    u1.send(&format!("<presence to='{d}/1'/>")).await;
    u1.send(&format!("<presence to='{e}'/>")).await;
    u1.send(&format!("<presence to='{f}/1'/>")).await;
    u1.send(&format!("<presence to='{f}/1' type='unavailable'/>")).await;
    assert_eq!(d1.received(), ["presence from u@x/1"]);
    assert_eq!(e1.received(), ["presence from u@x/1"]);
    assert_eq!(e2.received(), ["presence from u@x/1"]);
    assert_eq!(
        f1.received(),
        ["presence from u@x/1", "presence unavailable from u@x/1"]
    );

    u1.send("<presence type='unavailable'/>").await;
    assert_eq!(d1.received(), ["presence unavailable from u@x/1"]);
    assert_eq!(e1.received(), ["presence unavailable from u@x/1"]);
    assert_eq!(e2.received(), ["presence unavailable from u@x/1"]);
    assert!(f1.received().is_empty(), "told once already");

    // The same when the session ends instead.
    let mut u2 = node.online(&u, "2", 0).await;
    u2.send(&format!("<presence to='{d}/1'/>")).await;
    assert_eq!(d1.received(), ["presence from u@x/2"]);
    u2.disconnect().await;
    assert_eq!(d1.received(), ["presence unavailable from u@x/2"]);

    // Even without initial presence: directed presence alone is remembered.
    let mut u3 = node.connect(&u, "3");
    u3.send(&format!("<presence to='{d}/1'/>")).await;
    assert_eq!(d1.received(), ["presence from u@x/3"]);
    u3.disconnect().await;
    assert_eq!(d1.received(), ["presence unavailable from u@x/3"]);
}

/// §4.3: a probe is answered with the contact's presence only when the user is subscribed
/// to it (`to`, `both`); otherwise nothing (§4.3.2 lets the server stay silent).
#[tokio::test]
async fn probes_are_answered_for_to_and_both_only() {
    let mut w = World::new().await;
    let stranger = w.node.user("stranger").await;
    let _s = w.node.online(&stranger, "1", 0).await;
    let mut u = w.node.online(&w.u, "r", 0).await;
    w.contacts_received();
    let mut answered = Vec::new();
    let contacts: Vec<(Subscription, String)> = w.contacts.iter().map(|(s, b, _)| (*s, b.clone())).collect();
    for (subscription, bare) in contacts.iter().map(|(s, b)| (Some(*s), b)).chain([(None, &stranger)]) {
        u.send(&format!("<presence to='{bare}' type='probe'/>")).await;
        let got = u.received();
        if !got.is_empty() {
            assert_eq!(got, [format!("presence from {bare}/1")]);
            answered.push(subscription);
        }
    }
    assert_eq!(answered, [Some(Subscription::Both), Some(Subscription::To)]);
    assert!(
        w.contacts_received().iter().all(|(_, got)| got.is_empty()),
        "probes are not delivered"
    );
}

/// §4.7.2.1: a resource with a negative priority is still available: it gets the
/// probes' answers and its contacts' presence, and its own goes out; it only never gets
/// what is sent to the bare JID, stored messages included (they wait for another one).
#[tokio::test]
async fn a_negative_priority_resource_still_gets_presence() {
    let mut w = World::new().await;
    w.contacts[0]
        .2
        .send("<message to='u@x' type='chat'><body>kept</body></message>")
        .await;
    let mut u = w.node.connect(&w.u, "low");
    u.presence(-1).await;
    assert_eq!(
        u.received(),
        [
            "presence from u@x/low",
            "presence from both@x/1",
            "presence from to@x/1"
        ]
    );
    let expected = w.expect_contacts(Subscription::has_from, "presence from u@x/low");
    assert_eq!(w.contacts_received(), expected);
    assert_eq!(w.node.offline(&w.u).await, ["message chat from both@x/1: kept"]);

    // A contact's change of presence reaches it.
    w.contacts[0].2.send("<presence><show>away</show></presence>").await;
    assert_eq!(u.received(), ["presence from both@x/1"]);
    w.contacts[2].2.send("<presence type='unavailable'/>").await;
    assert_eq!(u.received(), ["presence unavailable from to@x/1"]);
    w.contacts[1].2.send("<presence><show>away</show></presence>").await;
    assert!(u.received().is_empty(), "a `from` contact's presence is not u's to see");
}

/// §4.6.3 with §4.5.2: a subscriber the resource also sent directed presence to is told
/// once that it is gone, not by the broadcast and again as a directed recipient.
#[tokio::test]
async fn a_subscriber_that_also_got_directed_presence_is_told_once() {
    let node = Node::new().await;
    let u = node.user("u").await;
    let s = node.user("s").await;
    node.relate(&u, &s, Subscription::From).await;
    let mut s1 = node.online(&s, "1", 0).await;
    let mut u1 = node.online(&u, "1", 0).await;
    s1.received();
    u1.received();
    u1.send(&format!("<presence to='{s}/1'/>")).await;
    u1.send(&format!("<presence to='{s}'/>")).await;
    assert_eq!(s1.received(), ["presence from u@x/1", "presence from u@x/1"]);

    u1.send("<presence type='unavailable'/>").await;
    assert_eq!(s1.received(), ["presence unavailable from u@x/1"]);
}

/// A filter with rules for one user: presence between `user` and `hidden` is dropped at
/// both points (XEP-0016's presence-out from the user, presence-in to the user); the rest
/// passes. What the privacy plugin does, without wasm.
struct HidesPresence {
    user: String,
    hidden: String,
}

impl HidesPresence {
    fn concerned(direction: Direction, stanza: &Element) -> Option<&str> {
        let addr = match direction {
            Direction::Outbound => stanza.get_attr("from"),
            Direction::Inbound => stanza.get_attr("to").or_else(|| stanza.get_attr("from")),
        }?;
        Some(addr.split('/').next().unwrap_or(addr))
    }
}

impl Features for HidesPresence {
    fn for_address(&self, _: &str) -> Option<Arc<dyn Feature>> {
        None
    }
    fn for_iq_namespace(&self, _: &str) -> Option<Arc<dyn Feature>> {
        None
    }
    fn addresses(&self) -> Vec<String> {
        Vec::new()
    }
    fn disco_features(&self) -> Vec<String> {
        Vec::new()
    }
    fn would_filter(&self, direction: Direction, stanza: &Element, _: Option<&str>) -> bool {
        Self::concerned(direction, stanza) == Some(self.user.as_str())
    }
    fn would_filter_for(&self, user: &str) -> bool {
        user == self.user
    }
    fn filter<'a>(&'a self, direction: Direction, stanza: &'a Element, _: Option<&'a str>) -> BoxFuture<'a, Verdict> {
        let other = match direction {
            Direction::Outbound => stanza.get_attr("to"),
            Direction::Inbound => stanza.get_attr("from"),
        };
        let hidden = other.is_some_and(|o| o.split('/').next() == Some(self.hidden.as_str()));
        let verdict = match stanza.name == "presence" && hidden {
            true => Verdict::Drop,
            false => Verdict::Pass,
        };
        Box::pin(std::future::ready(verdict))
    }
    fn notify(&self, _: Event) {}
}

/// The presence the server sends on a user's behalf passes the filter points like the
/// user's own stanzas: a broadcast's copy per contact, the answers to the probes at
/// initial presence, a contact's presence reaching the user, the unavailable at the end.
/// A filter hiding `hidden` from `u` both ways leaves `seen` untouched.
#[tokio::test]
async fn presence_the_server_sends_passes_the_filters() {
    let u = format!("u@{DOMAIN}");
    let hidden = format!("hidden@{DOMAIN}");
    let filter = HidesPresence {
        user: u.clone(),
        hidden: hidden.clone(),
    };
    let node = Node::with_features(|_| {}, Arc::new(filter)).await;
    node.user("u").await;
    node.user("hidden").await;
    let seen = node.user("seen").await;
    for contact in [&seen, &hidden] {
        node.relate(&u, contact, Subscription::Both).await;
        node.relate(contact, &u, Subscription::Both).await;
    }
    let mut seen1 = node.online(&seen, "1", 0).await;
    let mut hidden1 = node.online(&hidden, "1", 0).await;
    seen1.received();
    hidden1.received();

    let mut u1 = node.connect(&u, "1");
    u1.presence(0).await;
    assert_eq!(
        u1.received(),
        ["presence from u@x/1", "presence from seen@x/1"],
        "probe answers judged"
    );
    assert_eq!(seen1.received(), ["presence from u@x/1"]);
    assert!(hidden1.received().is_empty(), "broadcast copy judged: presence-out");

    hidden1.send("<presence><show>away</show></presence>").await;
    seen1.send("<presence><show>away</show></presence>").await;
    assert_eq!(u1.received(), ["presence from seen@x/1"], "presence-in judged");
    assert_eq!(seen1.received(), ["presence from seen@x/1"], "its own echo");
    hidden1.received();

    u1.send("<presence type='unavailable'/>").await;
    assert_eq!(seen1.received(), ["presence unavailable from u@x/1"]);
    assert!(hidden1.received().is_empty());
}
