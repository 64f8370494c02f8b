//! Roster IQs (RFC 6121 §2) on an in-process node: answers, pushes to the interested
//! resources, versions, and what removing an item does to the subscriptions.

use crate::roster::NS_ROSTER;
use crate::store::Subscription;
use crate::testkit::Node;

/// §2.1.6, §2.3.2: a roster set is answered to the resource that sent it, then pushed to
/// every interested resource (those that asked for the roster, available or not) and to
/// no other.
#[tokio::test]
async fn a_roster_set_is_answered_then_pushed_to_every_interested_resource() {
    let node = Node::new().await;
    let a = node.user("a").await;
    let mut a1 = node.interested(&a, "1").await;
    let mut a2 = node.online(&a, "2", 0).await;
    let mut a3 = node.connect(&a, "3");
    a3.roster_get().await;
    a1.received();

    a1.send("<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='c@x/r' name='C'><group>Friends</group></item></query></iq>")
        .await;
    let got = a1.received_stanzas();
    let lines: Vec<String> = got.iter().map(crate::testkit::summary).collect();
    assert_eq!(lines, ["iq result from -", "push c@x none"]);
    assert_eq!(got[0].get_attr("id"), Some("s1"));
    let version = node.ctx.store.roster_version(&a).await.unwrap().to_string();
    let pushed = got[1].get_child("query", NS_ROSTER).expect("a query");
    assert_eq!(pushed.get_attr("ver"), Some(version.as_str()));
    assert_eq!(a3.received(), ["push c@x none"]);
    assert!(a2.received().is_empty(), "not interested");

    let item = node.ctx.store.roster_item(&a, "c@x").await.unwrap().expect("stored");
    assert_eq!(item.name.as_deref(), Some("C"));
    assert_eq!(item.groups, ["Friends"]);
    assert_eq!(item.subscription, Subscription::None);
}

/// §2.6.3: a client that has the current version gets an empty result; one that does not
/// gets the roster and its version.
#[tokio::test]
async fn a_roster_get_with_the_current_version_is_answered_empty() {
    let node = Node::new().await;
    let a = node.user("a").await;
    let b = node.user("b").await;
    node.relate(&a, &b, Subscription::To).await;
    let mut a1 = node.connect(&a, "1");
    let full = a1.roster_get().await;
    let query = full.get_child("query", NS_ROSTER).expect("the roster");
    let version = query.get_attr("ver").expect("a version").to_string();
    let items: Vec<_> = query
        .elements()
        .map(|i| {
            (
                i.get_attr("jid").unwrap().to_string(),
                i.get_attr("subscription").unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(items, [(b.clone(), "to".to_string())]);

    a1.send(&format!(
        "<iq type='get' id='r2'><query xmlns='jabber:iq:roster' ver='{version}'/></iq>"
    ))
    .await;
    let got = a1.received_stanzas();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].get_attr("type"), Some("result"));
    assert!(got[0].elements().next().is_none(), "up to date: no items");
}

/// §2.5.2: removing a `both` item cancels both subscriptions. The user is answered and
/// pushed the removal; the contact hears `unsubscribe` (and withdraws its presence from
/// the user), then sees the user go unavailable, then hears `unsubscribed`, with a push
/// after each change of its own item.
#[tokio::test]
async fn removing_an_item_cancels_the_subscriptions_both_ways() {
    let node = Node::new().await;
    let a = node.user("a").await;
    let b = node.user("b").await;
    node.relate(&a, &b, Subscription::Both).await;
    let mut a1 = node.interested(&a, "1").await;
    let mut b1 = node.interested(&b, "1").await;
    a1.received();

    a1.send(
        "<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='b@x' subscription='remove'/></query></iq>",
    )
    .await;
    assert_eq!(
        a1.received(),
        ["iq result from -", "push b@x remove", "presence unavailable from b@x/1"]
    );
    assert_eq!(
        b1.received(),
        [
            "presence unsubscribe from a@x",
            "push a@x to",
            "presence unavailable from a@x/1",
            "presence unsubscribed from a@x",
            "push a@x none",
        ]
    );
    assert!(node.ctx.store.roster_item(&a, &b).await.unwrap().is_none());
    let left = node
        .ctx
        .store
        .roster_item(&b, &a)
        .await
        .unwrap()
        .expect("b keeps its item");
    assert_eq!((left.subscription, left.ask), (Subscription::None, false));

    // Nothing to remove any more.
    a1.send(
        "<iq type='set' id='rm2'><query xmlns='jabber:iq:roster'><item jid='b@x' subscription='remove'/></query></iq>",
    )
    .await;
    assert_eq!(a1.received(), ["iq error item-not-found from -"]);
}
