//! RFC 6121 §8.5 carried out end to end on an in-process node: a client sends, the router
//! and delivery decide, and the test reads what each resource was queued, what the store
//! kept and what the sender got back. `delivery::rules` has the same decisions as a table
//! of plain values; this is the same table over real sessions and storage.

use crate::testkit::{Client, Node};

/// The recipient's resources: name and priority of initial presence (`None`: bound, but
/// no initial presence sent).
#[derive(Debug, Clone, Copy)]
enum Resources {
    NoResource,
    One,
    TopTie,
    FiveAndOne,
    OnlyNegative,
    NoInitialPresence,
}

impl Resources {
    fn list(self) -> &'static [(&'static str, Option<i8>)] {
        match self {
            Resources::NoResource => &[],
            Resources::One => &[("r1", Some(0))],
            Resources::TopTie => &[("r1", Some(5)), ("r2", Some(5))],
            Resources::FiveAndOne => &[("r1", Some(5)), ("r2", Some(1))],
            Resources::OnlyNegative => &[("r1", Some(-1))],
            Resources::NoInitialPresence => &[("r1", None)],
        }
    }
}

/// How the message is addressed: the bare JID, or a full JID (bound or not).
#[derive(Debug, Clone, Copy)]
enum To {
    Bare,
    Full(&'static str),
}

/// What becomes of the message.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// These resources get it, and nobody else.
    Delivered(&'static [&'static str]),
    /// Kept in offline storage.
    Offline,
    /// The sender gets this error back.
    Refused(&'static str),
    /// Gone without a word.
    Dropped,
}

/// Everything one message caused: what each of the recipient's resources received, what
/// the sender received, and what offline storage holds for the recipient.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    resources: Vec<(String, Vec<String>)>,
    sender: Vec<String>,
    offline: Vec<String>,
}

const TYPES: [&str; 5] = ["normal", "chat", "groupchat", "headline", "error"];

/// §8.5.2 (bare JID) and §8.5.3 (full JID), one row per recipient and addressing, one
/// column per message type. A full JID names a bound resource (`r1`, or `r2` where it has
/// the lower priority: a full JID beats priorities) or one that is not bound (`gone`).
#[tokio::test]
async fn message_delivery_table() {
    use Outcome::*;
    use Resources::*;
    const SVC: Outcome = Refused("service-unavailable");
    const R1: Outcome = Delivered(&["r1"]);
    const R2: Outcome = Delivered(&["r2"]);
    const R1R2: Outcome = Delivered(&["r1", "r2"]);
    let table: &[(Resources, To, [Outcome; 5])] = &[
        //                                 normal   chat     groupchat headline error
        (NoResource, To::Bare, [Offline, Offline, SVC, Dropped, Dropped]),
        (NoResource, To::Full("gone"), [SVC, Offline, SVC, SVC, Dropped]),
        (One, To::Bare, [R1, R1, SVC, R1, Dropped]),
        (One, To::Full("r1"), [R1, R1, R1, R1, R1]),
        (One, To::Full("gone"), [SVC, R1, SVC, SVC, Dropped]),
        // Equal top priorities: all of them (§8.5.2.1.1).
        (TopTie, To::Bare, [R1R2, R1R2, SVC, R1R2, Dropped]),
        (TopTie, To::Full("r2"), [R2, R2, R2, R2, R2]),
        (TopTie, To::Full("gone"), [SVC, R1R2, SVC, SVC, Dropped]),
        // The highest priority only; headlines to every non-negative resource.
        (FiveAndOne, To::Bare, [R1, R1, SVC, R1R2, Dropped]),
        (FiveAndOne, To::Full("r2"), [R2, R2, R2, R2, R2]),
        (FiveAndOne, To::Full("gone"), [SVC, R1, SVC, SVC, Dropped]),
        // A negative priority never gets what is sent to the bare JID: as if offline.
        (OnlyNegative, To::Bare, [Offline, Offline, SVC, Dropped, Dropped]),
        (OnlyNegative, To::Full("r1"), [R1, R1, R1, R1, R1]),
        (OnlyNegative, To::Full("gone"), [SVC, Offline, SVC, SVC, Dropped]),
        // Connected without initial presence: not available (§8.5.2), but a connected
        // resource still gets what is sent to its full JID (§8.5.3.1).
        (NoInitialPresence, To::Bare, [Offline, Offline, SVC, Dropped, Dropped]),
        (NoInitialPresence, To::Full("r1"), [R1, R1, R1, R1, R1]),
        (NoInitialPresence, To::Full("gone"), [SVC, Offline, SVC, SVC, Dropped]),
    ];
    let node = Node::new().await;
    let a = node.user("a").await;
    let mut sender = node.connect(&a, "s");
    let mut case = 0;
    for (resources, to, outcomes) in table {
        for (message_type, outcome) in TYPES.into_iter().zip(outcomes) {
            case += 1;
            let b = node.user(&format!("b{case}")).await;
            let mut clients: Vec<Client> = Vec::new();
            for (name, priority) in resources.list() {
                clients.push(match priority {
                    Some(p) => node.online(&b, name, *p).await,
                    None => node.connect(&b, name),
                });
            }
            // Each other's presence, from coming online.
            clients.iter_mut().for_each(|c| drop(c.received()));
            let address = match to {
                To::Bare => b.clone(),
                To::Full(resource) => format!("{b}/{resource}"),
            };
            let body = format!("case {case}");
            sender
                .send(&format!(
                    "<message to='{address}' type='{message_type}'><body>{body}</body></message>"
                ))
                .await;

            let line = format!("message {message_type} from {a}/s: {body}");
            let expected = Seen {
                resources: resources
                    .list()
                    .iter()
                    .map(|(name, _)| {
                        let got = matches!(outcome, Delivered(names) if names.contains(name));
                        (name.to_string(), if got { vec![line.clone()] } else { vec![] })
                    })
                    .collect(),
                sender: match outcome {
                    Refused(condition) => vec![format!("message error {condition} from {address}")],
                    _ => vec![],
                },
                offline: match outcome {
                    Offline => vec![line.clone()],
                    _ => vec![],
                },
            };
            let seen = Seen {
                resources: clients
                    .iter_mut()
                    .map(|c| (c.session.jid.resource().to_string(), c.received()))
                    .collect(),
                sender: sender.received(),
                offline: node.offline(&b).await,
            };
            assert_eq!(seen, expected, "{message_type} to {to:?} with {resources:?}");
        }
    }
}

/// A refusal keeps the error type RFC 6120 §8.3.3 gives the condition.
#[tokio::test]
async fn a_refused_message_is_answered_with_a_cancel_error() {
    let node = Node::new().await;
    let a = node.user("a").await;
    let b = node.user("b").await;
    let mut sender = node.connect(&a, "s");
    sender
        .send(&format!("<message id='m1' to='{b}/gone'><body>hi</body></message>"))
        .await;
    let got = sender.received_stanzas();
    assert_eq!(got.len(), 1);
    let error = got[0].get_child("error", crate::xml::NS_CLIENT).expect("an error");
    assert_eq!(error.get_attr("type"), Some("cancel"));
    assert_eq!(got[0].get_attr("id"), Some("m1"));
    assert_eq!(got[0].get_attr("to"), Some(format!("{a}/s").as_str()));
}

/// XEP-0160 under `limits.offline_quota`: a message beyond the quota is refused with
/// `<resource-constraint/>` (type `wait`), and the messages already kept are delivered
/// intact, in order and stamped, at the next initial presence.
#[tokio::test]
async fn offline_storage_refuses_beyond_its_quota_and_loses_nothing() {
    let node = Node::with(|c| c.limits.offline_quota = 2).await;
    let a = node.user("a").await;
    let b = node.user("b").await;
    let mut sender = node.connect(&a, "s");
    for body in ["one", "two", "three"] {
        sender
            .send(&format!("<message to='{b}' type='chat'><body>{body}</body></message>"))
            .await;
    }
    let refused = sender.received_stanzas();
    assert_eq!(
        refused.iter().map(crate::testkit::summary).collect::<Vec<_>>(),
        [format!("message error resource-constraint from {b}")]
    );
    let error = refused[0].get_child("error", crate::xml::NS_CLIENT).expect("an error");
    assert_eq!(error.get_attr("type"), Some("wait"));
    let text = error
        .get_child("text", crate::stanza::NS_STANZAS)
        .map(|t| t.text_content());
    assert_eq!(text.as_deref(), Some("offline storage is full"));
    assert!(refused[0]
        .get_child("body", crate::xml::NS_CLIENT)
        .is_none_or(|b| b.text_content() == "three"));
    assert_eq!(
        node.offline(&b).await,
        [
            format!("message chat from {a}/s: one"),
            format!("message chat from {a}/s: two")
        ]
    );

    let mut recipient = node.connect(&b, "r");
    recipient.presence(0).await;
    assert_eq!(
        recipient.received(),
        [
            format!("presence from {b}/r"),
            format!("message chat from {a}/s: one (delayed)"),
            format!("message chat from {a}/s: two (delayed)"),
        ]
    );
    assert!(node.offline(&b).await.is_empty(), "delivered, so no longer stored");
}

/// Only what a person reads is kept offline (XEP-0160 §3): a message without body or
/// subject, or any extension, is dropped rather than stored.
#[tokio::test]
async fn an_empty_message_is_not_kept_offline() {
    let node = Node::new().await;
    let a = node.user("a").await;
    let b = node.user("b").await;
    let mut sender = node.connect(&a, "s");
    sender
        .send(&format!("<message to='{b}' type='chat'><thread>t1</thread></message>"))
        .await;
    assert!(sender.received().is_empty());
    assert!(node.offline(&b).await.is_empty());
}

/// Addresses with no account behind them: an unknown local user and the server itself get
/// `<service-unavailable/>`, a domain not hosted here `<remote-server-not-found/>`.
#[tokio::test]
async fn messages_without_an_account_behind_the_address_are_refused() {
    let node = Node::new().await;
    let a = node.user("a").await;
    let mut sender = node.connect(&a, "s");
    for (to, condition) in [
        ("nobody@x", "service-unavailable"),
        ("nobody@x/r", "service-unavailable"),
        ("x", "service-unavailable"),
        ("b@elsewhere.example", "remote-server-not-found"),
    ] {
        sender
            .send(&format!("<message to='{to}' type='chat'><body>hi</body></message>"))
            .await;
        assert_eq!(
            sender.received(),
            [format!("message error {condition} from {to}")],
            "to {to}"
        );
    }
    assert!(node.offline("nobody@x").await.is_empty());
}

/// IQs (§8.5.2.1.3, §8.5.3): to a bound full JID they reach that resource; to a full JID
/// that is not bound, `<service-unavailable/>`; to a bare JID the server answers on the
/// account's behalf and no resource sees them; to the domain, the server answers.
#[tokio::test]
async fn iq_routing() {
    let node = Node::new().await;
    let a = node.user("a").await;
    let b = node.user("b").await;
    let mut sender = node.online(&a, "s", 0).await;
    let mut r1 = node.online(&b, "r1", 5).await;
    let mut r2 = node.online(&b, "r2", 0).await;
    r1.received(); // r2's presence
    let disco = "<query xmlns='http://jabber.org/protocol/disco#info'/>";
    let ping = "<ping xmlns='urn:xmpp:ping'/>";

    sender
        .send(&format!("<iq type='get' id='1' to='{b}/r2'>{ping}</iq>"))
        .await;
    assert_eq!(r2.received(), [format!("iq get from {a}/s")]);
    assert!(r1.received().is_empty());
    assert!(sender.received().is_empty());

    sender
        .send(&format!("<iq type='get' id='2' to='{b}/gone'>{ping}</iq>"))
        .await;
    assert_eq!(
        sender.received(),
        [format!("iq error service-unavailable from {b}/gone")]
    );

    sender
        .send(&format!("<iq type='get' id='3' to='{b}'>{disco}</iq>"))
        .await;
    let answer = sender.received_stanzas();
    assert_eq!(answer.len(), 1);
    assert_eq!(crate::testkit::summary(&answer[0]), format!("iq result from {b}"));
    let identity = answer[0]
        .get_child("query", crate::iq::NS_DISCO_INFO)
        .and_then(|q| q.get_child("identity", crate::iq::NS_DISCO_INFO))
        .expect("an identity");
    assert_eq!(identity.get_attr("category"), Some("account"));
    assert!(r1.received().is_empty() && r2.received().is_empty());

    // Someone else's roster is not anyone else's business.
    sender
        .send(&format!(
            "<iq type='get' id='4' to='{b}'><query xmlns='jabber:iq:roster'/></iq>"
        ))
        .await;
    assert_eq!(sender.received(), [format!("iq error forbidden from {b}")]);

    sender
        .send(&format!("<iq type='get' id='5' to='{b}'>{ping}</iq>"))
        .await;
    assert_eq!(sender.received(), [format!("iq error service-unavailable from {b}")]);

    sender
        .send(&format!("<iq type='get' id='6' to='nobody@x'>{disco}</iq>"))
        .await;
    assert_eq!(sender.received(), ["iq error service-unavailable from nobody@x"]);

    sender.send(&format!("<iq type='get' id='7' to='x'>{ping}</iq>")).await;
    assert_eq!(sender.received(), ["iq result from x"]);
}
