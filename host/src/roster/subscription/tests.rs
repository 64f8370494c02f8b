//! The subscription shell end to end (RFC 6121 §3, Appendix A): two local users, `a@x`
//! and `b@x`, each online with one interested resource `/1` and each in one of the states
//! of Appendix A towards the other. `a` sends a subscription stanza; the same stanza is
//! then inbound for `b`. Both tables of `rules.rs` are the reference (A.2 for `a`'s half,
//! A.3 for `b`'s, and for `a` again when `b`'s server answers on `b`'s behalf): from their
//! rows the test derives what each resource must be sent, in order — roster pushes,
//! subscription stanzas and presence — and the states both rosters must end in, then
//! checks them against the outboxes and the store. Every pair of states is run: the
//! consistent ones (`a`'s `to` is `b`'s `from`, `a`'s pending-out is `b`'s pending-in) and
//! the others, which two servers out of step (or a stanza lost between them) produce.

use std::collections::BTreeSet;

use super::rules::tests::{name, state, Row, APPENDIX_A2, APPENDIX_A3, STATES};
use super::rules::Effect;
use crate::stanza::SubscriptionType;
use crate::store::RosterItem;
use crate::testkit::{Client, Node};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    A,
    B,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn bare(self) -> &'static str {
        match self {
            Side::A => "a@x",
            Side::B => "b@x",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The state `b` is in when `a` is in `a_state` and the two agree: the same relationship
/// seen from the other end.
fn mirror(a_state: &str) -> String {
    let (item, pending_in) = state(a_state);
    let mirrored = RosterItem {
        subscription: crate::store::Subscription::None
            .with_to(item.subscription.has_from())
            .with_from(item.subscription.has_to()),
        ask: pending_in,
        ..item
    };
    name(&mirrored, item.ask)
}

/// What the rows say happens: each side's state as it goes, and the lines each side's
/// resource is sent, in order.
struct Model {
    states: [String; 2],
    /// A pre-approval (§3.4): the one change the state names of Appendix A do not show.
    approved: [bool; 2],
    wire: [Vec<String>; 2],
    /// The rows gone through: (`"A.2"` or `"A.3"`, index in the table).
    used: BTreeSet<(&'static str, usize)>,
}

impl Model {
    fn new(a_state: &str, b_state: &str) -> Model {
        Model {
            states: [a_state.to_string(), b_state.to_string()],
            approved: [false; 2],
            wire: [Vec::new(), Vec::new()],
            used: BTreeSet::new(),
        }
    }

    /// `side`'s row of `table` for `kind`: its state moves on, its effects are returned.
    fn step(&mut self, table: (&'static str, &'static [Row]), kind: SubscriptionType, side: Side) -> &'static [Effect] {
        let from = &self.states[side.index()];
        let (index, (_, _, after, effects)) = table
            .1
            .iter()
            .enumerate()
            .find(|(_, (k, f, _, _))| *k == kind && f == from)
            .unwrap_or_else(|| panic!("no row for {kind:?} in {from}"));
        self.used.insert((table.0, index));
        self.states[side.index()] = after.to_string();
        effects
    }

    fn send(&mut self, line: String, to: Side) {
        self.wire[to.index()].push(line);
    }

    fn push(&mut self, owner: Side) {
        let (item, _) = state(&self.states[owner.index()]);
        let mut line = format!("push {} {}", owner.other().bare(), item.subscription.as_str());
        if item.ask {
            line.push_str(" ask");
        }
        if self.approved[owner.index()] {
            line.push_str(" approved");
        }
        self.send(line, owner);
    }

    /// `user` sends `kind` to the other side (Appendix A.2).
    fn outbound(&mut self, user: Side, kind: SubscriptionType) {
        let contact = user.other();
        let effects = self.step(("A.2", APPENDIX_A2), kind, user);
        // A `subscribed` that is pushed but not routed is a pre-approval.
        if kind == SubscriptionType::Subscribed && !effects.contains(&Effect::Route) && effects.contains(&Effect::Push)
        {
            self.approved[user.index()] = true;
        }
        for effect in effects {
            match effect {
                Effect::Push => self.push(user),
                Effect::RemovePendingIn => {}
                Effect::UnavailableToContact => {
                    self.send(format!("presence unavailable from {}/1", user.bare()), contact)
                }
                Effect::PresenceToContact => self.send(format!("presence from {}/1", user.bare()), contact),
                Effect::Route => self.inbound(contact, kind),
                other => panic!("{other:?} is not part of the sender's half"),
            }
        }
    }

    /// `kind` from the other side reaches `owner` (Appendix A.3).
    fn inbound(&mut self, owner: Side, kind: SubscriptionType) {
        let contact = owner.other();
        let effects = self.step(("A.3", APPENDIX_A3), kind, owner);
        for effect in effects {
            match effect {
                Effect::Push => self.push(owner),
                Effect::DeliverToUser => {
                    self.send(format!("presence {} from {}", kind.as_str(), contact.bare()), owner)
                }
                // The server answers for `owner`: that answer is inbound for the contact.
                Effect::Reply(reply) => self.inbound(contact, *reply),
                Effect::PresenceToContact => self.send(format!("presence from {}/1", owner.bare()), contact),
                Effect::UnavailableToContact => {
                    self.send(format!("presence unavailable from {}/1", owner.bare()), contact)
                }
                Effect::StorePendingIn | Effect::RemovePendingIn => {}
                Effect::Route => panic!("an inbound stanza is not routed on"),
            }
        }
    }
}

/// Two users in states of Appendix A towards each other, online, interested, with
/// nothing queued.
struct Pair {
    node: Node,
    clients: [Client; 2],
}

impl Pair {
    async fn new(a_state: &str, b_state: &str) -> Pair {
        let node = Node::new().await;
        let a = node.user("a").await;
        let b = node.user("b").await;
        for (owner, contact, state_name) in [(&a, &b, a_state), (&b, &a, b_state)] {
            let (item, pending_in) = state(state_name);
            node.set_item(
                owner,
                &RosterItem {
                    contact: contact.clone(),
                    ..item
                },
            )
            .await;
            if pending_in {
                node.set_pending_in(owner, contact).await;
            }
        }
        let mut a1 = node.interested(&a, "1").await;
        let b1 = node.interested(&b, "1").await;
        a1.received();
        Pair {
            node,
            clients: [a1, b1],
        }
    }

    /// `owner`'s relationship in the store, named as Appendix A names it, and whether a
    /// pre-approval is recorded.
    async fn stored(&self, owner: Side) -> (String, bool) {
        let store = &self.node.ctx.store;
        let item = store
            .roster_item(owner.bare(), owner.other().bare())
            .await
            .expect("roster read")
            .expect("the item is still there");
        let pending = store
            .has_pending_in(owner.bare(), owner.other().bare())
            .await
            .expect("pending read");
        (name(&item, pending), item.approved)
    }
}

/// `a` sends each subscription stanza with the two users in each pair of states (9 × 9 ×
/// 4 runs), which goes through every row of Appendix A.2 and A.3.
#[tokio::test]
async fn appendix_a_end_to_end() {
    let mut used = BTreeSet::new();
    for kind in SubscriptionType::ALL {
        for a_state in STATES {
            for b_state in STATES {
                let mut model = Model::new(a_state, b_state);
                model.outbound(Side::A, kind);
                used.append(&mut model.used);

                let mut pair = Pair::new(a_state, b_state).await;
                pair.clients[0]
                    .send(&format!("<presence to='b@x' type='{}'/>", kind.as_str()))
                    .await;
                let context = format!("a sends {} in state {a_state}, b in {b_state}", kind.as_str());
                for side in [Side::A, Side::B] {
                    assert_eq!(
                        pair.clients[side.index()].received(),
                        model.wire[side.index()],
                        "{context}: what {} received",
                        side.bare()
                    );
                    let expected = (model.states[side.index()].clone(), model.approved[side.index()]);
                    assert_eq!(
                        pair.stored(side).await,
                        expected,
                        "{context}: {}'s state afterwards",
                        side.bare()
                    );
                }
            }
        }
    }
    assert_eq!(used.len(), APPENDIX_A2.len() + APPENDIX_A3.len(), "every row ran");
}

/// The model above checked against a few rows stated by hand (the two users agreeing on
/// their states), with the orders the RFC requires: §3.1.5/§3.1.6 (the contact approves:
/// the user gets the `subscribed` before the push, then the contact's presence),
/// §3.2.2/§3.2.3 (the contact cancels: its unavailable presence first, then the
/// `unsubscribed`, then the push), §3.1.3 (a request from a contact already subscribed is
/// answered for the user), A.3.1 (a request already waiting is not delivered twice).
#[tokio::test]
async fn some_rows_by_hand() {
    let cases: &[(&str, SubscriptionType, &[&str], &[&str])] = &[
        (
            "None +In",
            SubscriptionType::Subscribed,
            &["push b@x from"],
            &["presence subscribed from a@x", "push a@x to", "presence from a@x/1"],
        ),
        (
            "From",
            SubscriptionType::Unsubscribed,
            &["push b@x none"],
            &[
                "presence unavailable from a@x/1",
                "presence unsubscribed from a@x",
                "push a@x none",
            ],
        ),
        ("To", SubscriptionType::Subscribe, &[], &[]),
        (
            "None",
            SubscriptionType::Subscribe,
            &["push b@x none ask"],
            &["presence subscribe from a@x"],
        ),
        ("None", SubscriptionType::Subscribed, &["push b@x none approved"], &[]),
        // A.3.1: a request that is already waiting for `b` is not delivered again.
        ("None +Out", SubscriptionType::Subscribe, &[], &[]),
    ];
    for (a_state, kind, to_a, to_b) in cases {
        let mut pair = Pair::new(a_state, &mirror(a_state)).await;
        pair.clients[0]
            .send(&format!("<presence to='b@x' type='{}'/>", kind.as_str()))
            .await;
        assert_eq!(pair.clients[0].received(), *to_a, "a, {kind:?} in {a_state}");
        assert_eq!(pair.clients[1].received(), *to_b, "b, {kind:?} in {a_state}");
    }
    // `b` is in `From` when `a` is in `To`: `a`'s repeated request is answered by the
    // server for `b`, and `a`, already subscribed, ignores the answer (§3.1.6).
    assert_eq!(mirror("To"), "From");
    assert_eq!(mirror("None +Out"), "None +In");
    assert_eq!(mirror("To +In"), "From +Out");
}

/// A whole life, by hand: request, approval, the other way round, then cancellation from
/// each side, with every push and presence in order on both sides.
#[tokio::test]
async fn a_subscription_from_request_to_cancellation() {
    let node = Node::new().await;
    let a = node.user("a").await;
    let b = node.user("b").await;
    let mut a1 = node.interested(&a, "1").await;
    let mut b1 = node.interested(&b, "1").await;

    // §3.1: a asks; b has no item for a yet, so b gets the request and no push.
    a1.send("<presence to='b@x' type='subscribe'/>").await;
    assert_eq!(a1.received(), ["push b@x none ask"]);
    assert_eq!(b1.received(), ["presence subscribe from a@x"]);
    assert_eq!(node.ctx.store.pending_in(&b).await.unwrap().len(), 1);

    // b approves: b's new item, then a hears it before its push, then b's presence.
    b1.send("<presence to='a@x' type='subscribed'/>").await;
    assert_eq!(b1.received(), ["push a@x from"]);
    assert_eq!(
        a1.received(),
        ["presence subscribed from b@x", "push b@x to", "presence from b@x/1"]
    );
    assert!(node.ctx.store.pending_in(&b).await.unwrap().is_empty());

    // And the other way round.
    b1.send("<presence to='a@x' type='subscribe'/>").await;
    assert_eq!(b1.received(), ["push a@x from ask"]);
    assert_eq!(a1.received(), ["presence subscribe from b@x"]);
    a1.send("<presence to='b@x' type='subscribed'/>").await;
    assert_eq!(a1.received(), ["push b@x both"]);
    assert_eq!(
        b1.received(),
        ["presence subscribed from a@x", "push a@x both", "presence from a@x/1"]
    );

    // §3.3: a no longer wants b's presence. b hears it, is pushed, and its presence is
    // withdrawn from a.
    a1.send("<presence to='b@x' type='unsubscribe'/>").await;
    assert_eq!(a1.received(), ["push b@x from", "presence unavailable from b@x/1"]);
    assert_eq!(b1.received(), ["presence unsubscribe from a@x", "push a@x to"]);

    // §3.2: a cancels b's subscription: b sees a go unavailable first.
    a1.send("<presence to='b@x' type='unsubscribed'/>").await;
    assert_eq!(a1.received(), ["push b@x none"]);
    assert_eq!(
        b1.received(),
        [
            "presence unavailable from a@x/1",
            "presence unsubscribed from a@x",
            "push a@x none"
        ]
    );
}

/// §3.4: a pre-approved request is approved by the server at once; the user never sees it.
#[tokio::test]
async fn a_pre_approved_request_is_approved_at_once() {
    let node = Node::new().await;
    let a = node.user("a").await;
    let b = node.user("b").await;
    let mut a1 = node.interested(&a, "1").await;
    let mut b1 = node.interested(&b, "1").await;

    a1.send("<presence to='b@x' type='subscribed'/>").await;
    assert_eq!(a1.received(), ["push b@x none approved"]);
    assert!(b1.received().is_empty(), "a pre-approval is not routed");

    b1.send("<presence to='a@x' type='subscribe'/>").await;
    assert_eq!(a1.received(), ["push b@x from"]);
    assert_eq!(
        b1.received(),
        [
            "push a@x none ask",
            "presence subscribed from a@x",
            "push a@x to",
            "presence from a@x/1"
        ]
    );
    assert!(node.ctx.store.pending_in(&a).await.unwrap().is_empty());
}

/// Pushes go to interested resources only (§2.1.6); subscription stanzas and presence to
/// every available resource, and not to one that sent no initial presence (§4.2.3);
/// the user's unavailable presence comes from each of its available resources.
#[tokio::test]
async fn pushes_go_to_interested_resources_and_stanzas_to_available_ones() {
    let node = Node::new().await;
    let a = node.user("a").await;
    let b = node.user("b").await;
    node.relate(&a, &b, crate::store::Subscription::Both).await;
    let mut a1 = node.interested(&a, "1").await;
    let mut a2 = node.online(&a, "2", 0).await;
    let mut b1 = node.interested(&b, "1").await;
    let mut b2 = node.online(&b, "2", 0).await;
    let mut b3 = node.connect(&b, "3");
    b3.roster_get().await;
    for c in [&mut a1, &mut a2, &mut b1, &mut b2, &mut b3] {
        c.received();
    }

    a1.send("<presence to='b@x' type='unsubscribed'/>").await;
    assert_eq!(a1.received(), ["push b@x to"]);
    assert!(a2.received().is_empty());
    let seen = [
        "presence unavailable from a@x/1",
        "presence unavailable from a@x/2",
        "presence unsubscribed from a@x",
    ];
    assert_eq!(b1.received(), [&seen[..], &["push a@x from"]].concat());
    assert_eq!(b2.received(), seen);
    assert_eq!(b3.received(), ["push a@x from"]);
}

/// Requests from strangers: kept for the user with no roster item created (§3.1.3); past
/// `limits.pending_subscriptions_max`, refused with `<resource-constraint/>`; to an
/// account that does not exist, answered `unsubscribed` for it.
#[tokio::test]
async fn requests_from_strangers() {
    let node = Node::with(|c| c.limits.pending_subscriptions_max = 1).await;
    let u = node.user("u").await;
    let s1 = node.user("s1").await;
    let s2 = node.user("s2").await;
    let mut u1 = node.interested(&u, "1").await;
    let mut first = node.online(&s1, "1", 0).await;
    let mut second = node.online(&s2, "1", 0).await;
    first.roster_get().await;
    second.roster_get().await;

    first.send("<presence to='u@x' type='subscribe'/>").await;
    assert_eq!(first.received(), ["push u@x none ask"]);
    assert_eq!(u1.received(), ["presence subscribe from s1@x"]);
    assert!(node.ctx.store.roster(&u).await.unwrap().is_empty());

    second.send("<presence to='u@x' type='subscribe'/>").await;
    // Refused, not kept: the sender's item is not left pending.
    assert_eq!(
        second.received(),
        [
            "push u@x none ask",
            "presence error resource-constraint from u@x",
            "push u@x none"
        ]
    );
    let item = node.ctx.store.roster_item(&s2, &u).await.unwrap().expect("item");
    assert!(!item.ask);
    assert!(u1.received().is_empty());
    assert_eq!(node.ctx.store.pending_in(&u).await.unwrap().len(), 1);

    first.send("<presence to='nobody@x' type='subscribe'/>").await;
    assert_eq!(
        first.received(),
        [
            "push nobody@x none ask",
            "presence unsubscribed from nobody@x",
            "push nobody@x none"
        ]
    );
}

/// §3.4 and Appendix A.2.4 (note 1): `unsubscribed` cancels a pre-approval on the user's side
/// only; the contact never knew of it, so it is not routed.
#[tokio::test]
async fn cancelling_a_pre_approval_is_not_routed() {
    let node = Node::new().await;
    let a = node.user("a").await;
    let b = node.user("b").await;
    let mut a1 = node.interested(&a, "1").await;
    let mut b1 = node.interested(&b, "1").await;

    a1.send("<presence to='b@x' type='subscribed'/>").await;
    assert_eq!(a1.received(), ["push b@x none approved"]);
    a1.send("<presence to='b@x' type='unsubscribed'/>").await;
    assert_eq!(a1.received(), ["push b@x none"]);
    assert!(
        b1.received().is_empty(),
        "neither the pre-approval nor its cancellation is routed"
    );

    // The request that follows waits for the user's answer again.
    b1.send("<presence to='a@x' type='subscribe'/>").await;
    assert_eq!(a1.received(), ["presence subscribe from b@x"]);
}
