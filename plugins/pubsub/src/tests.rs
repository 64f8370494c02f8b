//! The plugin against the SDK's stand-in host: publishing, retrieving, access models,
//! notifications filtered by entity caps, the last item at a resource's initial
//! presence, and the owner's operations.

use super::*;
use poolxmpp_sdk::host::{ResourcePresence, RosterItem, Subscription};
use poolxmpp_sdk::{testing, Condition, UserPresence};

const ALICE: &str = "alice@l";
const PHONE: &str = "alice@l/phone";
const BOB: &str = "bob@l";
const BOB_PC: &str = "bob@l/pc";
const CAROL: &str = "carol@l";
const CAROL_PC: &str = "carol@l/pc";
const MOOD: &str = "http://jabber.org/protocol/mood";

fn plugin() -> Pep {
    testing::reset();
    Pep::new(&Config::from([
        ("max_items", "5"),
        ("max_item_bytes", "2000"),
        ("max_nodes", "3"),
    ]))
    .unwrap()
}

/// `user`'s available resources, each with these caps features.
fn online(user: &str, resources: &[(&str, &[&str])]) {
    let rs = resources
        .iter()
        .map(|(j, features)| {
            let mut features: Vec<String> = features.iter().map(|f| f.to_string()).collect();
            features.sort();
            ResourcePresence {
                jid: j.to_string(),
                presence: Some("<presence xmlns='jabber:client'/>".into()),
                priority: 0,
                features,
            }
        })
        .collect();
    testing::with_host(|h| h.resources.insert(user.to_string(), rs));
}

fn roster(user: &str, items: &[(&str, Subscription, &[&str])]) {
    let items = items
        .iter()
        .map(|(j, s, g)| RosterItem {
            jid: j.to_string(),
            name: None,
            subscription: *s,
            ask: false,
            groups: g.iter().map(|g| g.to_string()).collect(),
        })
        .collect();
    testing::with_host(|h| h.rosters.insert(user.to_string(), items));
}

fn iq(from: &str, to: Option<&str>, type_: &str, body: &str) -> Stanza {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    Stanza::from_xml(&format!("<iq from='{from}'{to} type='{type_}' id='q1'>{body}</iq>")).unwrap()
}

fn pubsub(from: &str, to: Option<&str>, type_: &str, inner: &str) -> Stanza {
    iq(
        from,
        to,
        type_,
        &format!("<pubsub xmlns='http://jabber.org/protocol/pubsub'>{inner}</pubsub>"),
    )
}

fn owner_op(from: &str, type_: &str, inner: &str) -> Stanza {
    iq(
        from,
        None,
        type_,
        &format!("<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>{inner}</pubsub>"),
    )
}

fn mood(id: &str, what: &str) -> String {
    format!("<publish node='{MOOD}'><item id='{id}'><mood xmlns='{MOOD}'><{what}/></mood></item></publish>")
}

fn options(fields: &[(&str, &str)]) -> String {
    let mut x = String::from(
        "<publish-options><x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>\
         <value>http://jabber.org/protocol/pubsub#publish-options</value></field>",
    );
    for (var, value) in fields {
        x.push_str(&format!("<field var='{var}'><value>{value}</value></field>"));
    }
    x.push_str("</x></publish-options>");
    x
}

/// Handle `s`; everything sent (the reply first), or the error.
fn run(p: &mut Pep, s: Stanza) -> Result<Vec<Element>, StanzaError> {
    testing::take_sent();
    let r = p.handle_stanza(s);
    let sent = testing::take_sent();
    match r {
        Ok(()) => {
            assert_eq!(sent[0].get_attr("type"), Some("result"), "{}", sent[0].to_xml());
            Ok(sent)
        }
        Err(e) => {
            assert!(sent.is_empty());
            Err(e)
        }
    }
}

fn ok(p: &mut Pep, s: Stanza) -> Vec<Element> {
    run(p, s).unwrap_or_else(|e| panic!("{e:?}"))
}

fn err(p: &mut Pep, s: Stanza) -> StanzaError {
    run(p, s).unwrap_err()
}

fn application(e: &StanzaError) -> String {
    e.application.clone().unwrap_or_default()
}

/// The item ids a retrieval returned, in order.
fn ids(reply: &Element) -> Vec<String> {
    reply
        .get_child("pubsub", ns::PUBSUB)
        .and_then(|p| p.get_child("items", ns::PUBSUB))
        .map(|items| {
            items
                .elements()
                .filter_map(|i| i.get_attr("id").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Where notifications went: the host records a `send-many` as one stanza per recipient.
fn recipients(sent: &[Element]) -> Vec<String> {
    let mut to: Vec<String> = sent[1..]
        .iter()
        .filter(|m| m.name == "message")
        .filter_map(|m| m.get_attr("to").map(str::to_string))
        .collect();
    to.sort();
    to
}

fn contacts() {
    roster(
        ALICE,
        &[
            (BOB, Subscription::Both, &[]),
            (CAROL, Subscription::From, &["Friends"]),
        ],
    );
    roster(BOB, &[(ALICE, Subscription::Both, &[])]);
    roster(CAROL, &[(ALICE, Subscription::To, &[])]);
}

#[test]
fn a_publish_is_stored_answered_and_notified_to_resources_that_asked_by_caps() {
    let mut p = plugin();
    contacts();
    let notify = format!("{MOOD}+notify");
    online(ALICE, &[(PHONE, &[&notify])]);
    online(BOB, &[(BOB_PC, &[&notify]), ("bob@l/old", &[])]);
    online(CAROL, &[(CAROL_PC, &["urn:other+notify"])]);
    let sent = ok(&mut p, pubsub(PHONE, None, "set", &mood("m1", "happy")));
    let published = sent[0].get_child("pubsub", ns::PUBSUB).unwrap();
    assert_eq!(
        published
            .get_child("publish", ns::PUBSUB)
            .unwrap()
            .elements()
            .next()
            .unwrap()
            .get_attr("id"),
        Some("m1")
    );
    // The owner's and bob's resources with +notify; not bob's old client, not carol's.
    assert_eq!(recipients(&sent), vec![PHONE.to_string(), BOB_PC.to_string()]);
    let note = &sent[1];
    assert_eq!(note.get_attr("from"), Some(ALICE));
    assert_eq!(note.get_attr("type"), Some("headline"));
    let item = note
        .get_child("event", ns::EVENT)
        .and_then(|e| e.get_child("items", ns::EVENT))
        .and_then(|i| i.get_child("item", ns::EVENT))
        .unwrap();
    assert!(item.get_child("mood", MOOD).unwrap().has_child("happy", MOOD));
    // Bob (presence subscription) retrieves it; a stranger may not.
    let got = ok(
        &mut p,
        pubsub(BOB_PC, Some(ALICE), "get", &format!("<items node='{MOOD}'/>")),
    );
    assert_eq!(ids(&got[0]), vec!["m1"]);
    let e = err(
        &mut p,
        pubsub("eve@l/x", Some(ALICE), "get", &format!("<items node='{MOOD}'/>")),
    );
    assert_eq!(e.condition, Condition::NotAuthorized);
    assert!(application(&e).contains("presence-subscription-required"));
    // Alice's item for carol is `from`: carol receives alice's presence, so may retrieve.
    assert!(run(
        &mut p,
        pubsub(CAROL_PC, Some(ALICE), "get", &format!("<items node='{MOOD}'/>"))
    )
    .is_ok());
}

#[test]
fn only_the_owner_publishes_and_payloads_are_checked() {
    let mut p = plugin();
    let e = err(&mut p, pubsub(BOB_PC, Some(ALICE), "set", &mood("x", "sad")));
    assert_eq!(e.condition, Condition::Forbidden);
    let two = format!("<publish node='{MOOD}'><item><a xmlns='x'/><b xmlns='x'/></item></publish>");
    assert!(application(&err(&mut p, pubsub(PHONE, None, "set", &two))).contains("invalid-payload"));
    let none = format!("<publish node='{MOOD}'/>");
    assert!(application(&err(&mut p, pubsub(PHONE, None, "set", &none))).contains("item-required"));
    let big = format!(
        "<publish node='{MOOD}'><item><a xmlns='x'>{}</a></item></publish>",
        "z".repeat(3000)
    );
    let e = err(&mut p, pubsub(PHONE, None, "set", &big));
    assert_eq!(e.condition, Condition::NotAcceptable);
    assert!(application(&e).contains("payload-too-big"));
    let nameless = "<publish><item><a xmlns='x'/></item></publish>";
    assert!(application(&err(&mut p, pubsub(PHONE, None, "set", nameless))).contains("nodeid-required"));
    // Nothing of it was stored.
    assert!(testing::with_host(|h| h.storage.is_empty()));
}

#[test]
fn max_items_trims_the_oldest_and_ids_replace() {
    let mut p = plugin();
    let opts = options(&[("pubsub#max_items", "2"), ("pubsub#persist_items", "true")]);
    for id in ["a", "b", "a", "c"] {
        ok(
            &mut p,
            pubsub(PHONE, None, "set", &format!("{}{opts}", mood(id, "happy"))),
        );
    }
    let got = ok(&mut p, pubsub(PHONE, None, "get", &format!("<items node='{MOOD}'/>")));
    assert_eq!(ids(&got[0]), vec!["a", "c"]);
    let got = ok(
        &mut p,
        pubsub(PHONE, None, "get", &format!("<items node='{MOOD}' max_items='1'/>")),
    );
    assert_eq!(ids(&got[0]), vec!["c"]);
    let got = ok(
        &mut p,
        pubsub(
            PHONE,
            None,
            "get",
            &format!("<items node='{MOOD}'><item id='a'/></items>"),
        ),
    );
    assert_eq!(ids(&got[0]), vec!["a"]);
    // The trimmed item's record is gone too.
    assert!(testing::with_host(|h| !h
        .storage
        .keys()
        .any(|k| k.starts_with("i/") && k.contains("/b/"))));
    // A generated id when none is given.
    let sent = ok(
        &mut p,
        pubsub(
            PHONE,
            None,
            "set",
            &format!("<publish node='{MOOD}'><item><mood xmlns='{MOOD}'/></item></publish>"),
        ),
    );
    let item = sent[0]
        .get_child("pubsub", ns::PUBSUB)
        .unwrap()
        .get_child("publish", ns::PUBSUB)
        .unwrap();
    assert!(item
        .elements()
        .next()
        .unwrap()
        .get_attr("id")
        .is_some_and(|i| !i.is_empty()));
}

#[test]
fn publish_options_create_then_guard_the_node() {
    let mut p = plugin();
    contacts();
    // XEP-0223 private storage: whitelist, persisted.
    let private = options(&[("pubsub#persist_items", "true"), ("pubsub#access_model", "whitelist")]);
    let node = "storage:bookmarks";
    let publish = |opts: &str| {
        format!("<publish node='{node}'><item id='current'><storage xmlns='storage:bookmarks'/></item></publish>{opts}")
    };
    ok(&mut p, pubsub(PHONE, None, "set", &publish(&private)));
    let e = err(
        &mut p,
        pubsub(BOB_PC, Some(ALICE), "get", &format!("<items node='{node}'/>")),
    );
    assert_eq!(e.condition, Condition::NotAllowed);
    assert!(application(&e).contains("closed-node"));
    // Same options again: fine. Different: precondition-not-met, nothing changed.
    ok(&mut p, pubsub(PHONE, None, "set", &publish(&private)));
    let open = options(&[("pubsub#access_model", "open")]);
    let e = err(&mut p, pubsub(PHONE, None, "set", &publish(&open)));
    assert_eq!(e.condition, Condition::Conflict);
    assert!(application(&e).contains("precondition-not-met"));
    assert!(run(
        &mut p,
        pubsub(BOB_PC, Some(ALICE), "get", &format!("<items node='{node}'/>"))
    )
    .is_err());
}

#[test]
fn roster_access_lets_allowed_groups_in() {
    let mut p = plugin();
    contacts();
    let opts = options(&[
        ("pubsub#access_model", "roster"),
        ("pubsub#roster_groups_allowed", "Friends"),
    ]);
    ok(
        &mut p,
        pubsub(PHONE, None, "set", &format!("{}{opts}", mood("m", "happy"))),
    );
    assert!(run(
        &mut p,
        pubsub(CAROL_PC, Some(ALICE), "get", &format!("<items node='{MOOD}'/>"))
    )
    .is_ok());
    let e = err(
        &mut p,
        pubsub(BOB_PC, Some(ALICE), "get", &format!("<items node='{MOOD}'/>")),
    );
    assert!(application(&e).contains("not-in-roster-group"));
}

#[test]
fn retract_purge_and_delete_notify_and_remove_everything() {
    let mut p = plugin();
    contacts();
    let notify = format!("{MOOD}+notify");
    online(BOB, &[(BOB_PC, &[&notify])]);
    let opts = options(&[("pubsub#max_items", "5")]);
    for id in ["a", "b", "c"] {
        ok(
            &mut p,
            pubsub(PHONE, None, "set", &format!("{}{opts}", mood(id, "happy"))),
        );
    }
    let sent = ok(
        &mut p,
        pubsub(
            PHONE,
            None,
            "set",
            &format!("<retract node='{MOOD}' notify='true'><item id='a'/></retract>"),
        ),
    );
    let retract = sent[1]
        .get_child("event", ns::EVENT)
        .unwrap()
        .get_child("items", ns::EVENT)
        .unwrap();
    assert_eq!(
        retract.get_child("retract", ns::EVENT).unwrap().get_attr("id"),
        Some("a")
    );
    let e = err(
        &mut p,
        pubsub(
            PHONE,
            None,
            "set",
            &format!("<retract node='{MOOD}'><item id='a'/></retract>"),
        ),
    );
    assert_eq!(e.condition, Condition::ItemNotFound);
    let sent = ok(&mut p, owner_op(PHONE, "set", &format!("<purge node='{MOOD}'/>")));
    assert!(sent[1]
        .get_child("event", ns::EVENT)
        .unwrap()
        .has_child("purge", ns::EVENT));
    let got = ok(&mut p, pubsub(PHONE, None, "get", &format!("<items node='{MOOD}'/>")));
    assert!(ids(&got[0]).is_empty());
    let sent = ok(&mut p, owner_op(PHONE, "set", &format!("<delete node='{MOOD}'/>")));
    assert_eq!(recipients(&sent), vec![BOB_PC.to_string()]);
    assert!(sent[1]
        .get_child("event", ns::EVENT)
        .unwrap()
        .has_child("delete", ns::EVENT));
    assert_eq!(
        err(&mut p, pubsub(PHONE, None, "get", &format!("<items node='{MOOD}'/>"))).condition,
        Condition::ItemNotFound
    );
    assert!(
        testing::with_host(|h| h.storage.is_empty()),
        "{:?}",
        testing::with_host(|h| h.storage.keys().cloned().collect::<Vec<_>>())
    );
    // Someone else's node cannot be purged or deleted.
    ok(&mut p, pubsub(PHONE, None, "set", &mood("x", "sad")));
    let other = iq(
        BOB_PC,
        Some(ALICE),
        "set",
        &format!("<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><delete node='{MOOD}'/></pubsub>"),
    );
    assert_eq!(err(&mut p, other).condition, Condition::Forbidden);
}

#[test]
fn configure_shows_and_changes_the_node() {
    let mut p = plugin();
    ok(&mut p, pubsub(PHONE, None, "set", &mood("a", "happy")));
    let got = ok(&mut p, owner_op(PHONE, "get", &format!("<configure node='{MOOD}'/>")));
    let form = got[0]
        .get_child("pubsub", ns::OWNER)
        .and_then(|p| p.get_child("configure", ns::OWNER))
        .and_then(|c| c.get_child("x", ns::DATA))
        .unwrap();
    assert_eq!(form.get_attr("type"), Some("form"));
    let submit = format!(
        "<configure node='{MOOD}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
         <field var='pubsub#access_model'><value>open</value></field></x></configure>"
    );
    ok(&mut p, owner_op(PHONE, "set", &submit));
    assert!(run(
        &mut p,
        pubsub("eve@l/x", Some(ALICE), "get", &format!("<items node='{MOOD}'/>"))
    )
    .is_ok());
    let bad = submit.replace("open", "authorize");
    assert_eq!(
        err(&mut p, owner_op(PHONE, "set", &bad)).condition,
        Condition::NotAcceptable
    );
    // Explicit creation: a conflict when it exists; the node count is bounded.
    let e = err(&mut p, pubsub(PHONE, None, "set", &format!("<create node='{MOOD}'/>")));
    assert_eq!(e.condition, Condition::Conflict);
    ok(&mut p, pubsub(PHONE, None, "set", "<create node='n2'/>"));
    ok(&mut p, pubsub(PHONE, None, "set", "<create node='n3'/>"));
    assert_eq!(
        err(&mut p, pubsub(PHONE, None, "set", "<create node='n4'/>")).condition,
        Condition::NotAllowed
    );
    // Subscriptions are implicit (presence) in this increment: said so, not ignored.
    let e = err(
        &mut p,
        pubsub(
            BOB_PC,
            Some(ALICE),
            "set",
            &format!("<subscribe node='{MOOD}' jid='{BOB}'/>"),
        ),
    );
    assert_eq!(e.condition, Condition::FeatureNotImplemented);
}

#[test]
fn a_resource_coming_online_gets_the_last_items_it_asks_for() {
    let mut p = plugin();
    contacts();
    ok(&mut p, pubsub(PHONE, None, "set", &mood("m1", "happy")));
    ok(&mut p, pubsub(PHONE, None, "set", &mood("m2", "sad")));
    let whitelisted = options(&[("pubsub#access_model", "whitelist")]);
    ok(
        &mut p,
        pubsub(
            PHONE,
            None,
            "set",
            &format!("<publish node='secret'><item id='s'><s xmlns='secret'/></item></publish>{whitelisted}"),
        ),
    );
    testing::take_sent();
    let arrive = |p: &mut Pep, full: &str, features: &[&str]| {
        let mut features: Vec<String> = features.iter().map(|f| f.to_string()).collect();
        features.sort();
        p.on_event(Event::UserOnline(UserPresence {
            jid: full.into(),
            presence: "<presence xmlns='jabber:client'/>".into(),
            features,
        }));
        testing::take_sent()
    };
    let sent = arrive(&mut p, BOB_PC, &[&format!("{MOOD}+notify"), "secret+notify"]);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].get_attr("to"), Some(BOB_PC));
    let item = sent[0]
        .get_child("event", ns::EVENT)
        .and_then(|e| e.get_child("items", ns::EVENT))
        .and_then(|i| i.get_child("item", ns::EVENT))
        .unwrap();
    assert_eq!(item.get_attr("id"), Some("m2"));
    assert!(sent[0].has_child("delay", ns::DELAY));
    // Without +notify nothing; the owner's own resource gets its own whitelisted node.
    assert!(arrive(&mut p, BOB_PC, &[]).is_empty());
    assert_eq!(arrive(&mut p, PHONE, &["secret+notify"]).len(), 1);
    // A stranger gets nothing.
    assert!(arrive(&mut p, "eve@l/x", &[&format!("{MOOD}+notify")]).is_empty());
}

#[test]
fn disco_lists_the_nodes_a_requester_may_see() {
    let mut p = plugin();
    contacts();
    ok(&mut p, pubsub(PHONE, None, "set", &mood("m1", "happy")));
    let private = options(&[("pubsub#access_model", "whitelist")]);
    ok(
        &mut p,
        pubsub(
            PHONE,
            None,
            "set",
            &format!("<publish node='secret'><item id='s'><s xmlns='secret'/></item></publish>{private}"),
        ),
    );
    let disco = |from: &str, inner: &str| iq(from, Some(ALICE), "get", inner);
    let nodes = |reply: &Element| -> Vec<String> {
        let q = reply.get_child("query", ns::DISCO_ITEMS).unwrap();
        q.elements()
            .filter_map(|i| i.get_attr("node").map(str::to_string))
            .collect()
    };
    let items = "<query xmlns='http://jabber.org/protocol/disco#items'/>";
    assert_eq!(
        nodes(&ok(&mut p, disco(PHONE, items))[0]),
        vec![MOOD.to_string(), "secret".into()]
    );
    assert_eq!(nodes(&ok(&mut p, disco(BOB_PC, items))[0]), vec![MOOD.to_string()]);
    assert!(nodes(&ok(&mut p, disco("eve@l/x", items))[0]).is_empty());
    let info = |node: &str| format!("<query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/>");
    let got = ok(&mut p, disco(BOB_PC, &info(MOOD)));
    let q = got[0].get_child("query", ns::DISCO_INFO).unwrap();
    assert_eq!(
        q.get_child("identity", ns::DISCO_INFO).unwrap().get_attr("type"),
        Some("leaf")
    );
    assert_eq!(
        err(&mut p, disco(BOB_PC, &info("secret"))).condition,
        Condition::ItemNotFound
    );
    let got = ok(
        &mut p,
        disco(
            BOB_PC,
            &format!("<query xmlns='http://jabber.org/protocol/disco#items' node='{MOOD}'/>"),
        ),
    );
    let q = got[0].get_child("query", ns::DISCO_ITEMS).unwrap();
    assert_eq!(
        q.elements().filter_map(|i| i.get_attr("name")).collect::<Vec<_>>(),
        ["m1"]
    );
}

#[test]
fn a_node_keeps_a_bounded_number_of_bytes_and_answers_within_a_budget() {
    testing::reset();
    let mut p = Pep::new(&Config::from([
        ("max_items", "256"),
        ("max_item_bytes", "200000"),
        ("max_node_bytes", "500000"),
    ]))
    .unwrap();
    let opts = options(&[("pubsub#max_items", "max")]);
    for i in 0..4 {
        let body = "z".repeat(150_000);
        let publish = format!("<publish node='big'><item id='b{i}'><a xmlns='x'>{body}</a></item></publish>{opts}");
        ok(&mut p, pubsub(PHONE, None, "set", &publish));
    }
    // 4 x 150 kB > 500 kB: the oldest went, from the meta record and from storage.
    let got = ok(&mut p, pubsub(PHONE, None, "get", "<items node='big'/>"));
    // b1, b2 and b3 are kept; the reply's 256 KiB hold the newest only.
    assert_eq!(ids(&got[0]), vec!["b3"]);
    let set = got[0]
        .get_child("pubsub", ns::PUBSUB)
        .unwrap()
        .get_child("set", ns::RSM)
        .unwrap();
    assert_eq!(set.get_child("count", ns::RSM).unwrap().text_content(), "3");
    assert!(testing::with_host(|h| !h
        .storage
        .keys()
        .any(|k| k.starts_with("i/big/b0/"))));
}
