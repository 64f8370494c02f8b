//! The plugin against the SDK's stand-in host: IQs, pushes, the filter, events.

use super::*;
use poolxmpp_sdk::host::{ResourcePresence, RosterItem, Subscription};
use poolxmpp_sdk::{interest, testing, Condition, UserPresence};

const ALICE: &str = "alice@l";
const PHONE: &str = "alice@l/phone";
const LAPTOP: &str = "alice@l/laptop";

fn plugin() -> Privacy {
    testing::reset();
    Privacy::new(&Config::from([("max_items", "4"), ("max_lists", "3")])).unwrap()
}

/// `user`'s connected (available) resources.
fn online(user: &str, fulls: &[&str]) {
    let rs = fulls
        .iter()
        .map(|j| ResourcePresence {
            jid: j.to_string(),
            presence: Some("<presence xmlns='jabber:client'/>".into()),
            priority: 0,
            features: Vec::new(),
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

fn iq(from: &str, type_: &str, body: &str) -> Stanza {
    Stanza::from_xml(&format!("<iq from='{from}' type='{type_}' id='q1'>{body}</iq>")).unwrap()
}

fn privacy(from: &str, type_: &str, inner: &str) -> Stanza {
    iq(
        from,
        type_,
        &format!("<query xmlns='jabber:iq:privacy'>{inner}</query>"),
    )
}

/// Handle `s`; everything sent (the reply first), or the error.
fn run(p: &mut Privacy, s: Stanza) -> Result<Vec<Element>, StanzaError> {
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

fn ok(p: &mut Privacy, s: Stanza) -> Vec<Element> {
    run(p, s).unwrap_or_else(|e| panic!("{e:?}"))
}

fn err(p: &mut Privacy, s: Stanza) -> Condition {
    run(p, s).unwrap_err().condition
}

fn set_list(p: &mut Privacy, from: &str, name: &str, items: &str) -> Vec<Element> {
    ok(p, privacy(from, "set", &format!("<list name='{name}'>{items}</list>")))
}

fn deny_jid(j: &str, order: u32) -> String {
    format!("<item type='jid' value='{j}' action='deny' order='{order}'/>")
}

fn msg(from: &str, to: &str) -> Stanza {
    Stanza::from_xml(&format!(
        "<message from='{from}' to='{to}' type='chat'><body>hi</body></message>"
    ))
    .unwrap()
}

fn presence(from: &str, to: &str, type_: Option<&str>) -> Stanza {
    let t = type_.map(|t| format!(" type='{t}'")).unwrap_or_default();
    Stanza::from_xml(&format!("<presence from='{from}' to='{to}'{t}/>")).unwrap()
}

fn out(p: &mut Privacy, s: Stanza) -> Verdict {
    p.check(Direction::Outbound, s)
}

fn inb(p: &mut Privacy, s: Stanza) -> Verdict {
    p.check(Direction::Inbound, s)
}

fn bounce(v: Verdict) -> StanzaError {
    match v {
        Verdict::Bounce(e) => e,
        other => panic!("not a bounce: {other:?}"),
    }
}

fn query_of(e: &Element) -> &Element {
    e.get_child("query", list::NS_PRIVACY).expect("a privacy query")
}

fn names(p: &mut Privacy, from: &str) -> Vec<(String, String)> {
    let sent = ok(p, privacy(from, "get", ""));
    query_of(&sent[0])
        .elements()
        .map(|e| (e.name.clone(), e.get_attr("name").unwrap_or_default().to_string()))
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_string(), b.to_string())
}

// ---- XEP-0016 IQs ----

#[test]
fn names_and_lists() {
    let mut p = plugin();
    assert!(names(&mut p, PHONE).is_empty());
    set_list(&mut p, PHONE, "b", &deny_jid("x@l", 5));
    set_list(&mut p, PHONE, "a", &(deny_jid("z@l", 9) + &deny_jid("y@l", 2)));
    ok(&mut p, privacy(PHONE, "set", "<active name='a'/>"));
    ok(&mut p, privacy(PHONE, "set", "<default name='b'/>"));
    assert_eq!(
        names(&mut p, PHONE),
        vec![
            pair("active", "a"),
            pair("default", "b"),
            pair("list", "a"),
            pair("list", "b")
        ]
    );
    // Another session has no active list.
    assert_eq!(names(&mut p, LAPTOP)[0], pair("default", "b"));
    let sent = ok(&mut p, privacy(PHONE, "get", "<list name='a'/>"));
    let l = query_of(&sent[0]).get_child("list", list::NS_PRIVACY).unwrap();
    assert_eq!(l.get_attr("name"), Some("a"));
    let values: Vec<_> = l.elements().map(|i| i.get_attr("value").unwrap().to_string()).collect();
    assert_eq!(values, vec!["y@l", "z@l"]);
    assert_eq!(
        err(&mut p, privacy(PHONE, "get", "<list name='nope'/>")),
        Condition::ItemNotFound
    );
    assert_eq!(
        err(&mut p, privacy(PHONE, "get", "<list name='a'/><list name='b'/>")),
        Condition::BadRequest
    );
    assert_eq!(err(&mut p, privacy(PHONE, "get", "<list/>")), Condition::BadRequest);
}

#[test]
fn malformed_sets_are_refused_and_change_nothing() {
    let mut p = plugin();
    let cases = [
        "<active/><default/>",
        "",
        "<list name='l'><item action='deny' order='1'/><item action='deny' order='1'/></list>",
        "<list name='l'><item type='jid' value='a@b' order='1'/></list>",
        "<list name='l'><item type='other' value='a' action='deny' order='1'/></list>",
        "<list name='l'><item action='deny' order='1'><body/></item></list>",
        "<list><item action='deny' order='1'/></list>",
        "<bogus/>",
    ];
    for c in cases {
        assert_eq!(err(&mut p, privacy(PHONE, "set", c)), Condition::BadRequest, "{c}");
    }
    let five: String = (1..=5).map(|o| deny_jid("x@l", o)).collect();
    let e = run(&mut p, privacy(PHONE, "set", &format!("<list name='l'>{five}</list>"))).unwrap_err();
    assert_eq!(e.condition, Condition::NotAcceptable);
    assert!(e.text.unwrap().contains("at most 4 items"));
    assert!(testing::stored("user/alice@l").is_none());
    assert!(!interest::has(ALICE));
    for name in ["a", "b", "c"] {
        set_list(&mut p, PHONE, name, &deny_jid("x@l", 1));
    }
    let e = run(
        &mut p,
        privacy(PHONE, "set", &format!("<list name='d'>{}</list>", deny_jid("x@l", 1))),
    )
    .unwrap_err();
    assert_eq!(e.condition, Condition::NotAcceptable);
    assert!(e.text.unwrap().contains("at most 3 lists"));
    // Replacing an existing one is not a new list.
    set_list(&mut p, PHONE, "c", &deny_jid("y@l", 1));
}

#[test]
fn requests_about_another_account_are_forbidden_and_responses_ignored() {
    let mut p = plugin();
    let s = Stanza::from_xml(
        "<iq from='alice@l/phone' to='bob@l' type='get' id='1'><query xmlns='jabber:iq:privacy'/></iq>",
    )
    .unwrap();
    assert_eq!(err(&mut p, s), Condition::Forbidden);
    let to_server =
        Stanza::from_xml("<iq from='alice@l/phone' to='l' type='get' id='1'><query xmlns='jabber:iq:privacy'/></iq>")
            .unwrap();
    ok(&mut p, to_server);
    for t in ["result", "error"] {
        assert!(p.handle_stanza(iq(PHONE, t, "")).is_ok());
        assert!(testing::take_sent().is_empty());
    }
}

#[test]
fn active_list_set_decline_and_unknown() {
    let mut p = plugin();
    assert_eq!(
        err(&mut p, privacy(PHONE, "set", "<active name='x'/>")),
        Condition::ItemNotFound
    );
    set_list(&mut p, PHONE, "strict", &deny_jid("bob@l", 1));
    ok(&mut p, privacy(PHONE, "set", "<active name='strict'/>"));
    assert!(matches!(out(&mut p, msg(PHONE, "bob@l")), Verdict::Bounce(_)));
    // Only this session's.
    assert_eq!(out(&mut p, msg(LAPTOP, "bob@l")), Verdict::Allow);
    ok(&mut p, privacy(PHONE, "set", "<active/>"));
    assert_eq!(out(&mut p, msg(PHONE, "bob@l")), Verdict::Allow);
}

#[test]
fn default_list_set_decline_and_conflict() {
    let mut p = plugin();
    set_list(&mut p, PHONE, "a", &deny_jid("bob@l", 1));
    set_list(&mut p, PHONE, "b", &deny_jid("carol@l", 1));
    assert_eq!(
        err(&mut p, privacy(PHONE, "set", "<default name='x'/>")),
        Condition::ItemNotFound
    );
    online(ALICE, &[PHONE]);
    ok(&mut p, privacy(PHONE, "set", "<default name='a'/>"));
    assert!(matches!(out(&mut p, msg(LAPTOP, "bob@l")), Verdict::Bounce(_)));
    // The laptop comes online without an active list: the default applies to it.
    online(ALICE, &[PHONE, LAPTOP]);
    assert_eq!(
        err(&mut p, privacy(PHONE, "set", "<default name='b'/>")),
        Condition::Conflict
    );
    assert_eq!(err(&mut p, privacy(PHONE, "set", "<default/>")), Condition::Conflict);
    // Setting the same default again changes nothing and is no conflict.
    ok(&mut p, privacy(PHONE, "set", "<default name='a'/>"));
    // Once the laptop has its own active list, the default is no longer in use there.
    ok(&mut p, privacy(LAPTOP, "set", "<active name='b'/>"));
    ok(&mut p, privacy(PHONE, "set", "<default name='b'/>"));
    assert!(matches!(out(&mut p, msg(PHONE, "carol@l")), Verdict::Bounce(_)));
    ok(&mut p, privacy(PHONE, "set", "<default/>"));
    assert_eq!(out(&mut p, msg(PHONE, "carol@l")), Verdict::Allow);
    assert!(!names(&mut p, PHONE).iter().any(|(k, _)| k == "default"));
}

#[test]
fn removing_lists() {
    let mut p = plugin();
    set_list(&mut p, PHONE, "a", &deny_jid("bob@l", 1));
    set_list(&mut p, PHONE, "b", &deny_jid("carol@l", 1));
    assert_eq!(
        err(&mut p, privacy(PHONE, "set", "<list name='x'/>")),
        Condition::ItemNotFound
    );
    online(ALICE, &[PHONE, LAPTOP]);
    ok(&mut p, privacy(LAPTOP, "set", "<active name='a'/>"));
    assert_eq!(
        err(&mut p, privacy(PHONE, "set", "<list name='a'/>")),
        Condition::Conflict
    );
    ok(&mut p, privacy(PHONE, "set", "<active name='b'/>"));
    ok(&mut p, privacy(PHONE, "set", "<default name='b'/>"));
    // The default is in use by nobody else (the laptop has its active list), so it may go.
    // The phone's own active list may be removed too.
    ok(&mut p, privacy(PHONE, "set", "<list name='b'/>"));
    assert_eq!(names(&mut p, PHONE), vec![pair("list", "a")]);
    assert_eq!(out(&mut p, msg(PHONE, "carol@l")), Verdict::Allow);
    // A default another resource uses cannot go.
    ok(&mut p, privacy(LAPTOP, "set", "<active/>"));
    ok(&mut p, privacy(LAPTOP, "set", "<default name='a'/>"));
    assert_eq!(
        err(&mut p, privacy(PHONE, "set", "<list name='a'/>")),
        Condition::Conflict
    );
    online(ALICE, &[PHONE]);
    ok(&mut p, privacy(PHONE, "set", "<list name='a'/>"));
    assert!(names(&mut p, PHONE).is_empty());
    assert!(!interest::has(ALICE));
    assert!(testing::stored("user/alice@l").is_none());
}

#[test]
fn changes_push_the_list_to_every_resource() {
    let mut p = plugin();
    online(ALICE, &[PHONE, LAPTOP]);
    let sent = set_list(&mut p, PHONE, "a", &deny_jid("bob@l", 1));
    assert_eq!(sent.len(), 3, "the result and two pushes");
    let mut to: Vec<&str> = sent[1..].iter().map(|e| e.get_attr("to").unwrap()).collect();
    to.sort();
    assert_eq!(to, vec![LAPTOP, PHONE]);
    for push in &sent[1..] {
        assert_eq!(push.get_attr("from"), Some(ALICE));
        assert_eq!(push.get_attr("type"), Some("set"));
        assert!(push.get_attr("id").unwrap().starts_with("push-"));
        let l = query_of(push).get_child("list", list::NS_PRIVACY).unwrap();
        assert_eq!(l.get_attr("name"), Some("a"));
        assert_eq!(l.elements().count(), 0);
    }
    assert_ne!(sent[1].get_attr("id"), sent[2].get_attr("id"));
    let sent = ok(&mut p, privacy(PHONE, "set", "<list name='a'/>"));
    assert_eq!(sent.len(), 3);
    // Active and default changes push nothing.
    set_list(&mut p, PHONE, "a", &deny_jid("bob@l", 1));
    assert_eq!(ok(&mut p, privacy(PHONE, "set", "<active name='a'/>")).len(), 1);
}

#[test]
fn interest_follows_the_rules() {
    let mut p = plugin();
    set_list(&mut p, PHONE, "a", &deny_jid("bob@l", 1));
    assert!(interest::has(ALICE));
    set_list(&mut p, PHONE, "b", &deny_jid("bob@l", 1));
    ok(&mut p, privacy(PHONE, "set", "<list name='a'/>"));
    assert!(interest::has(ALICE));
    ok(&mut p, privacy(PHONE, "set", "<list name='b'/>"));
    assert!(!interest::has(ALICE));
}

// ---- the filter ----

#[test]
fn active_beats_default_and_bare_addressees_get_the_default() {
    let mut p = plugin();
    set_list(&mut p, PHONE, "def", &deny_jid("bob@l", 1));
    set_list(&mut p, PHONE, "act", &deny_jid("carol@l", 1));
    ok(&mut p, privacy(PHONE, "set", "<default name='def'/>"));
    ok(&mut p, privacy(PHONE, "set", "<active name='act'/>"));
    assert_eq!(out(&mut p, msg(PHONE, "bob@l")), Verdict::Allow);
    assert!(matches!(out(&mut p, msg(PHONE, "carol@l")), Verdict::Bounce(_)));
    assert!(matches!(out(&mut p, msg(LAPTOP, "bob@l")), Verdict::Bounce(_)));
    // Inbound to the phone: its active list; to the bare JID or the laptop: the default.
    assert_eq!(inb(&mut p, msg("bob@l/x", PHONE)), Verdict::Allow);
    assert!(matches!(inb(&mut p, msg("carol@l/x", PHONE)), Verdict::Bounce(_)));
    assert!(matches!(inb(&mut p, msg("bob@l/x", ALICE)), Verdict::Bounce(_)));
    assert_eq!(inb(&mut p, msg("carol@l/x", ALICE)), Verdict::Allow);
    assert!(matches!(inb(&mut p, msg("bob@l/x", LAPTOP)), Verdict::Bounce(_)));
}

#[test]
fn no_list_self_server_and_errors_are_allowed() {
    let mut p = plugin();
    assert_eq!(out(&mut p, msg(PHONE, "bob@l")), Verdict::Allow);
    set_list(&mut p, PHONE, "all", "<item action='deny' order='1'/>");
    ok(&mut p, privacy(PHONE, "set", "<default name='all'/>"));
    assert!(matches!(out(&mut p, msg(PHONE, "bob@l")), Verdict::Bounce(_)));
    assert_eq!(out(&mut p, msg(PHONE, LAPTOP)), Verdict::Allow);
    assert_eq!(out(&mut p, msg(PHONE, "l")), Verdict::Allow);
    assert_eq!(inb(&mut p, msg("l", PHONE)), Verdict::Allow);
    let no_to =
        Stanza::from_xml("<iq from='alice@l/phone' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>").unwrap();
    assert_eq!(out(&mut p, no_to), Verdict::Allow);
    let error =
        Stanza::from_xml("<message from='bob@l/x' to='alice@l' type='error'><error type='cancel'/></message>").unwrap();
    assert_eq!(inb(&mut p, error), Verdict::Allow);
    let error = Stanza::from_xml("<iq from='alice@l/phone' to='bob@l' type='error' id='1'/>").unwrap();
    assert_eq!(out(&mut p, error), Verdict::Allow);
}

#[test]
fn deny_outcomes_by_kind_and_direction() {
    let mut p = plugin();
    set_list(&mut p, PHONE, "all", "<item action='deny' order='1'/>");
    ok(&mut p, privacy(PHONE, "set", "<default name='all'/>"));
    let e = bounce(out(&mut p, msg(PHONE, "bob@l")));
    assert_eq!(e.condition, Condition::NotAcceptable);
    assert!(e.application.is_none(), "not from the blocklist");
    let get = |from: &str, to: &str, t: &str| {
        Stanza::from_xml(&format!(
            "<iq from='{from}' to='{to}' type='{t}' id='1'><x xmlns='urn:x'/></iq>"
        ))
        .unwrap()
    };
    assert_eq!(
        bounce(out(&mut p, get(PHONE, "bob@l", "get"))).condition,
        Condition::NotAcceptable
    );
    assert_eq!(out(&mut p, get(PHONE, "bob@l", "result")), Verdict::Drop);
    assert_eq!(out(&mut p, presence(PHONE, "bob@l", None)), Verdict::Drop);
    assert_eq!(
        bounce(inb(&mut p, msg("bob@l/x", PHONE))).condition,
        Condition::ServiceUnavailable
    );
    assert_eq!(
        bounce(inb(&mut p, get("bob@l/x", PHONE, "set"))).condition,
        Condition::ServiceUnavailable
    );
    assert_eq!(inb(&mut p, get("bob@l/x", PHONE, "result")), Verdict::Drop);
    assert_eq!(inb(&mut p, presence("bob@l/x", PHONE, None)), Verdict::Drop);
    assert_eq!(inb(&mut p, presence("bob@l", ALICE, Some("subscribe"))), Verdict::Drop);
}

#[test]
fn presence_notifications_versus_subscription_presence() {
    let mut p = plugin();
    set_list(
        &mut p,
        PHONE,
        "p",
        "<item type='jid' value='bob@l' action='deny' order='1'><presence-in/><presence-out/></item>\
         <item type='jid' value='eve@l' action='deny' order='2'/>",
    );
    ok(&mut p, privacy(PHONE, "set", "<default name='p'/>"));
    assert_eq!(inb(&mut p, presence("bob@l/x", PHONE, None)), Verdict::Drop);
    assert_eq!(
        inb(&mut p, presence("bob@l/x", PHONE, Some("unavailable"))),
        Verdict::Drop
    );
    assert_eq!(out(&mut p, presence(PHONE, "bob@l", None)), Verdict::Drop);
    for t in ["subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"] {
        assert_eq!(inb(&mut p, presence("bob@l", ALICE, Some(t))), Verdict::Allow, "{t}");
        assert_eq!(out(&mut p, presence(PHONE, "bob@l", Some(t))), Verdict::Allow, "{t}");
        assert_eq!(inb(&mut p, presence("eve@l", ALICE, Some(t))), Verdict::Drop, "{t}");
    }
    assert_eq!(inb(&mut p, msg("bob@l/x", PHONE)), Verdict::Allow);
}

#[test]
fn group_and_subscription_items_read_the_roster() {
    let mut p = plugin();
    roster(
        ALICE,
        &[
            ("boss@l", Subscription::Both, &["Work"]),
            ("fan@l", Subscription::From, &[]),
            ("pal@l", Subscription::Both, &["Friends"]),
        ],
    );
    set_list(
        &mut p,
        PHONE,
        "r",
        "<item type='group' value='Work' action='deny' order='1'><message/></item>\
         <item type='subscription' value='from' action='deny' order='2'/>\
         <item type='subscription' value='none' action='deny' order='3'><iq/></item>",
    );
    ok(&mut p, privacy(PHONE, "set", "<default name='r'/>"));
    assert!(matches!(inb(&mut p, msg("boss@l/x", PHONE)), Verdict::Bounce(_)));
    assert_eq!(inb(&mut p, presence("boss@l/x", PHONE, None)), Verdict::Allow);
    assert!(matches!(inb(&mut p, msg("fan@l/x", PHONE)), Verdict::Bounce(_)));
    assert_eq!(inb(&mut p, msg("pal@l/x", PHONE)), Verdict::Allow);
    let ping = |from: &str| {
        Stanza::from_xml(&format!(
            "<iq from='{from}' to='alice@l/phone' type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .unwrap()
    };
    // Not in the roster: subscription none.
    assert!(matches!(inb(&mut p, ping("stranger@l/x")), Verdict::Bounce(_)));
    assert_eq!(inb(&mut p, ping("pal@l/x")), Verdict::Allow);
}

#[test]
fn an_unreadable_record_fails_closed() {
    let mut p = plugin();
    storage::put_string("user/alice@l", "not json").unwrap();
    assert_eq!(
        bounce(inb(&mut p, msg("bob@l/x", PHONE))).condition,
        Condition::ServiceUnavailable
    );
    assert_eq!(
        err(
            &mut p,
            privacy(PHONE, "set", &format!("<list name='a'>{}</list>", deny_jid("b@l", 1)))
        ),
        Condition::InternalServerError
    );
    assert_eq!(testing::stored("user/alice@l").as_deref(), Some("not json"));
}

// ---- XEP-0191 over the default list ----

fn blocking(from: &str, type_: &str, xml: &str) -> Stanza {
    iq(from, type_, xml)
}

fn block(jids: &[&str]) -> String {
    let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
    format!("<block xmlns='urn:xmpp:blocking'>{items}</block>")
}

fn unblock(jids: &[&str]) -> String {
    let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
    format!("<unblock xmlns='urn:xmpp:blocking'>{items}</unblock>")
}

fn blocklist(p: &mut Privacy, from: &str) -> Vec<String> {
    let sent = ok(p, blocking(from, "get", "<blocklist xmlns='urn:xmpp:blocking'/>"));
    let l = sent[0].get_child("blocklist", NS_BLOCKING).unwrap();
    l.elements().map(|i| i.get_attr("jid").unwrap().to_string()).collect()
}

#[test]
fn blocking_creates_blocked_contacts_as_the_default() {
    let mut p = plugin();
    ok(&mut p, blocking(PHONE, "set", &block(&["Bob@L", "eve@l/x"])));
    assert!(interest::has(ALICE));
    assert_eq!(
        names(&mut p, PHONE),
        vec![pair("default", "Blocked contacts"), pair("list", "Blocked contacts")]
    );
    assert_eq!(blocklist(&mut p, PHONE), vec!["bob@l", "eve@l/x"]);
    let sent = ok(&mut p, privacy(PHONE, "get", "<list name='Blocked contacts'/>"));
    let l = query_of(&sent[0]).get_child("list", list::NS_PRIVACY).unwrap();
    let item = l.elements().next().unwrap();
    assert_eq!(
        (
            item.get_attr("type"),
            item.get_attr("value"),
            item.get_attr("action"),
            item.get_attr("order")
        ),
        (Some("jid"), Some("bob@l"), Some("deny"), Some("1"))
    );
    assert_eq!(item.elements().count(), 0);
    // Both ways, and outbound messages carry the blocking error.
    let e = bounce(out(&mut p, msg(PHONE, "bob@l")));
    assert_eq!(e.condition, Condition::NotAcceptable);
    assert!(e.application.unwrap().contains("urn:xmpp:blocking:errors"));
    assert_eq!(
        bounce(inb(&mut p, msg("bob@l/x", ALICE))).condition,
        Condition::ServiceUnavailable
    );
    assert_eq!(inb(&mut p, msg("eve@l/y", ALICE)), Verdict::Allow);
    assert!(matches!(inb(&mut p, msg("eve@l/x", ALICE)), Verdict::Bounce(_)));
}

#[test]
fn blocking_puts_new_items_first_in_an_existing_default() {
    let mut p = plugin();
    set_list(
        &mut p,
        PHONE,
        "mine",
        "<item type='jid' value='bob@l' action='allow' order='10'/>\
         <item type='jid' value='x@l' action='deny' order='20'><message/></item>",
    );
    ok(&mut p, privacy(PHONE, "set", "<default name='mine'/>"));
    assert!(blocklist(&mut p, PHONE).is_empty(), "a message-only deny is no block");
    ok(&mut p, blocking(PHONE, "set", &block(&["bob@l", "carol@l"])));
    // Blocking an already blocked JID changes nothing.
    assert_eq!(ok(&mut p, blocking(PHONE, "set", &block(&["bob@l"]))).len(), 1);
    let sent = ok(&mut p, privacy(PHONE, "get", "<list name='mine'/>"));
    let l = query_of(&sent[0]).get_child("list", list::NS_PRIVACY).unwrap();
    let items: Vec<(String, String, String)> = l
        .elements()
        .map(|i| {
            let a = |n| i.get_attr(n).unwrap().to_string();
            (a("order"), a("value"), a("action"))
        })
        .collect();
    let t = |o: &str, v: &str, a: &str| (o.to_string(), v.to_string(), a.to_string());
    assert_eq!(
        items,
        vec![
            t("1", "bob@l", "deny"),
            t("2", "carol@l", "deny"),
            t("3", "bob@l", "allow"),
            t("4", "x@l", "deny")
        ]
    );
    assert!(bounce(out(&mut p, msg(PHONE, "bob@l"))).application.is_some());
    assert_eq!(names(&mut p, PHONE).len(), 2, "no Blocked contacts list");
    // The list is full (max_items = 4).
    assert_eq!(
        err(&mut p, blocking(PHONE, "set", &block(&["dave@l"]))),
        Condition::NotAcceptable
    );
}

#[test]
fn block_requests_are_checked() {
    let mut p = plugin();
    assert_eq!(err(&mut p, blocking(PHONE, "set", &block(&[]))), Condition::BadRequest);
    assert_eq!(
        err(&mut p, blocking(PHONE, "set", &block(&["a b@l"]))),
        Condition::JidMalformed
    );
    assert_eq!(
        err(
            &mut p,
            blocking(PHONE, "set", "<block xmlns='urn:xmpp:blocking'><item/></block>")
        ),
        Condition::BadRequest
    );
    assert_eq!(
        err(&mut p, blocking(PHONE, "get", "<block xmlns='urn:xmpp:blocking'/>")),
        Condition::BadRequest
    );
    assert!(testing::stored("user/alice@l").is_none());
}

#[test]
fn unblock_some_then_all() {
    let mut p = plugin();
    online(ALICE, &[PHONE]);
    ok(&mut p, blocking(PHONE, "set", &block(&["bob@l", "carol@l", "dave@l"])));
    let sent = ok(&mut p, blocking(PHONE, "set", &unblock(&["carol@l", "nobody@l"])));
    assert_eq!(blocklist(&mut p, PHONE), vec!["bob@l", "dave@l"]);
    assert_eq!(
        sent.len(),
        2,
        "the result and the list push (no one retrieved the blocklist yet)"
    );
    // The phone retrieved it: it gets the unblock push, with no items for all.
    let sent = ok(&mut p, blocking(PHONE, "set", &unblock(&[])));
    let unblocks: Vec<&Element> = sent
        .iter()
        .filter_map(|e| e.get_child("unblock", NS_BLOCKING))
        .collect();
    assert_eq!(unblocks.len(), 1);
    assert_eq!(unblocks[0].elements().count(), 0);
    assert!(blocklist(&mut p, PHONE).is_empty());
    assert!(
        names(&mut p, PHONE).is_empty(),
        "Blocked contacts and the default are gone"
    );
    assert!(!interest::has(ALICE));
    assert_eq!(out(&mut p, msg(PHONE, "bob@l")), Verdict::Allow);
    // Unblocking with nothing blocked is fine.
    assert_eq!(ok(&mut p, blocking(PHONE, "set", &unblock(&[]))).len(), 1);
}

#[test]
fn unblocking_keeps_a_default_of_another_name() {
    let mut p = plugin();
    set_list(
        &mut p,
        PHONE,
        "mine",
        "<item type='jid' value='ok@l' action='allow' order='1'/>",
    );
    ok(&mut p, privacy(PHONE, "set", "<default name='mine'/>"));
    ok(&mut p, blocking(PHONE, "set", &block(&["bob@l"])));
    ok(&mut p, blocking(PHONE, "set", &unblock(&[])));
    assert_eq!(
        names(&mut p, PHONE),
        vec![pair("default", "mine"), pair("list", "mine")]
    );
    assert!(interest::has(ALICE));
}

#[test]
fn block_pushes_go_to_resources_that_retrieved_the_blocklist() {
    let mut p = plugin();
    online(ALICE, &[PHONE, LAPTOP]);
    blocklist(&mut p, PHONE);
    let sent = ok(&mut p, blocking(LAPTOP, "set", &block(&["bob@l"])));
    let blocks: Vec<&Element> = sent.iter().filter(|e| e.has_child("block", NS_BLOCKING)).collect();
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].get_attr("to"), Some(PHONE));
    assert_eq!(blocks[0].get_attr("from"), Some(ALICE));
    let item = blocks[0]
        .get_child("block", NS_BLOCKING)
        .unwrap()
        .elements()
        .next()
        .unwrap();
    assert_eq!(item.get_attr("jid"), Some("bob@l"));
    let list_pushes = sent.iter().filter(|e| e.has_child("query", list::NS_PRIVACY)).count();
    assert_eq!(list_pushes, 2, "the default list changed: pushed to both");
    // The phone goes offline: no more pushes for it.
    p.on_event(Event::UserOffline(UserPresence {
        jid: PHONE.into(),
        presence: "<presence xmlns='jabber:client' type='unavailable'/>".into(),
        features: Vec::new(),
    }));
    assert!(testing::stored("seen/alice@l/phone").is_none());
    let sent = ok(&mut p, blocking(LAPTOP, "set", &block(&["carol@l"])));
    assert!(!sent.iter().any(|e| e.has_child("block", NS_BLOCKING)));
}

#[test]
fn editing_the_default_list_pushes_block_and_unblock() {
    let mut p = plugin();
    online(ALICE, &[PHONE]);
    blocklist(&mut p, PHONE);
    set_list(&mut p, PHONE, "d", &deny_jid("bob@l", 1));
    ok(&mut p, privacy(PHONE, "set", "<default name='d'/>"));
    let sent = set_list(&mut p, PHONE, "d", &deny_jid("carol@l", 1));
    let jid_of = |name: &str| {
        sent.iter()
            .filter_map(|e| e.get_child(name, NS_BLOCKING))
            .flat_map(|b| b.elements().map(|i| i.get_attr("jid").unwrap().to_string()))
            .collect::<Vec<_>>()
    };
    assert_eq!(jid_of("block"), vec!["carol@l"]);
    assert_eq!(jid_of("unblock"), vec!["bob@l"]);
}

#[test]
fn blocking_sends_unavailable_presence_to_contacts_who_see_the_user() {
    let mut p = plugin();
    online(ALICE, &[PHONE, LAPTOP]);
    roster(
        ALICE,
        &[
            ("bob@l", Subscription::Both, &[]),
            ("carol@l", Subscription::To, &[]),
            ("dan@other", Subscription::From, &[]),
        ],
    );
    let sent = ok(
        &mut p,
        blocking(PHONE, "set", &block(&["bob@l", "carol@l", "other", "stranger@l"])),
    );
    let mut unavailable: Vec<(String, String)> = sent
        .iter()
        .filter(|e| e.name == "presence")
        .map(|e| {
            assert_eq!(e.get_attr("type"), Some("unavailable"));
            pair(e.get_attr("from").unwrap(), e.get_attr("to").unwrap())
        })
        .collect();
    unavailable.sort();
    assert_eq!(
        unavailable,
        vec![
            pair(LAPTOP, "bob@l"),
            pair(LAPTOP, "dan@other"),
            pair(PHONE, "bob@l"),
            pair(PHONE, "dan@other")
        ]
    );
}

// ---- events ----

#[test]
fn rules_changed_drops_the_cache() {
    testing::reset();
    let config = Config::from([("max_items", "4"), ("max_lists", "3")]);
    let mut here = Privacy::new(&config).unwrap();
    let mut there = Privacy::new(&config).unwrap();
    assert_eq!(inb(&mut there, msg("bob@l/x", ALICE)), Verdict::Allow);
    assert!(there.store.cached(ALICE));
    ok(&mut here, blocking(PHONE, "set", &block(&["bob@l"])));
    assert_eq!(inb(&mut there, msg("bob@l/x", ALICE)), Verdict::Allow, "still cached");
    there.on_event(Event::RulesChanged(Some(ALICE.into())));
    assert!(!there.store.cached(ALICE));
    assert!(matches!(inb(&mut there, msg("bob@l/x", ALICE)), Verdict::Bounce(_)));
    ok(&mut here, blocking(PHONE, "set", &unblock(&[])));
    there.on_event(Event::RulesChanged(None));
    assert!(!there.store.cached(ALICE));
    assert_eq!(inb(&mut there, msg("bob@l/x", ALICE)), Verdict::Allow);
}

#[test]
fn going_offline_ends_the_active_list() {
    let mut p = plugin();
    set_list(&mut p, PHONE, "a", &deny_jid("bob@l", 1));
    ok(&mut p, privacy(PHONE, "set", "<active name='a'/>"));
    p.on_event(Event::UserOffline(UserPresence {
        jid: PHONE.into(),
        presence: "<presence xmlns='jabber:client' type='unavailable'/>".into(),
        features: Vec::new(),
    }));
    assert_eq!(out(&mut p, msg(PHONE, "bob@l")), Verdict::Allow);
    assert!(names(&mut p, PHONE).iter().all(|(k, _)| k != "active"));
}

#[test]
fn config_is_read() {
    assert!(Privacy::new(&Config::from([("max_items", "x")])).is_err());
    let p = Privacy::new(&Config::default()).unwrap();
    assert_eq!((p.max_items, p.max_lists), (250, 50));
}

// ---- presence-out taking effect ----

fn unavailable_sent(sent: &[Element]) -> Vec<(String, String)> {
    let mut v: Vec<_> = sent
        .iter()
        .filter(|e| e.name == "presence" && e.get_attr("type") == Some("unavailable"))
        .map(|e| pair(e.get_attr("from").unwrap(), e.get_attr("to").unwrap()))
        .collect();
    v.sort();
    v
}

#[test]
fn a_new_active_list_denying_presence_out_sends_unavailable() {
    let mut p = plugin();
    online(ALICE, &[PHONE, LAPTOP]);
    roster(
        ALICE,
        &[
            ("bob@l", Subscription::Both, &["Work"]),
            ("carol@l", Subscription::To, &["Work"]),
            ("dan@l", Subscription::From, &[]),
        ],
    );
    set_list(
        &mut p,
        PHONE,
        "invisible-to-work",
        "<item type='group' value='Work' action='deny' order='1'><presence-out/></item>",
    );
    let sent = ok(&mut p, privacy(PHONE, "set", "<active name='invisible-to-work'/>"));
    // Carol does not see Alice's presence anyway (subscription to); Dan is not in Work.
    assert_eq!(unavailable_sent(&sent), vec![pair(PHONE, "bob@l")]);
    // Already in effect: nothing more.
    let sent = ok(&mut p, privacy(PHONE, "set", "<active name='invisible-to-work'/>"));
    assert!(unavailable_sent(&sent).is_empty());
    // Declining it shows the phone again (the client sends presence), nothing to send.
    let sent = ok(&mut p, privacy(PHONE, "set", "<active/>"));
    assert!(unavailable_sent(&sent).is_empty());
}

#[test]
fn a_new_default_denying_presence_out_hides_the_resources_it_applies_to() {
    let mut p = plugin();
    online(ALICE, &[PHONE, LAPTOP]);
    roster(ALICE, &[("bob@l", Subscription::Both, &[])]);
    set_list(&mut p, PHONE, "open", "<item action='allow' order='1'/>");
    set_list(
        &mut p,
        PHONE,
        "hide",
        "<item type='jid' value='bob@l' action='deny' order='1'><presence-out/></item>",
    );
    ok(&mut p, privacy(LAPTOP, "set", "<active name='open'/>"));
    let sent = ok(&mut p, privacy(PHONE, "set", "<default name='hide'/>"));
    assert_eq!(unavailable_sent(&sent), vec![pair(PHONE, "bob@l")]);
    // Editing the laptop's active list to hide from Bob too.
    let sent = set_list(
        &mut p,
        PHONE,
        "open",
        "<item type='subscription' value='both' action='deny' order='1'><presence-out/></item>",
    );
    assert_eq!(unavailable_sent(&sent), vec![pair(LAPTOP, "bob@l")]);
}

// ---- presence again, and what other nodes know ----

#[test]
fn unblocking_sends_current_presence_to_contacts_who_see_the_user() {
    let mut p = plugin();
    online(ALICE, &[PHONE]);
    roster(
        ALICE,
        &[("bob@l", Subscription::Both, &[]), ("carol@l", Subscription::To, &[])],
    );
    ok(&mut p, blocking(PHONE, "set", &block(&["bob@l", "carol@l"])));
    let sent = ok(&mut p, blocking(PHONE, "set", &unblock(&[])));
    let shown: Vec<(String, String)> = sent
        .iter()
        .filter(|e| e.name == "presence")
        .map(|e| {
            assert_eq!(e.get_attr("type"), None, "available: {}", e.to_xml());
            pair(e.get_attr("from").unwrap(), e.get_attr("to").unwrap())
        })
        .collect();
    assert_eq!(
        shown,
        vec![pair(PHONE, "bob@l")],
        "XEP-0191 3.4: only a contact who may see the user"
    );
}

#[test]
fn an_active_list_on_another_node_is_seen_by_conflict_checks() {
    let mut here = plugin();
    let config = Config::from([("max_items", "4"), ("max_lists", "3")]);
    let mut there = Privacy::new(&config).unwrap();
    online(ALICE, &[PHONE, LAPTOP]);
    set_list(&mut here, PHONE, "a", &deny_jid("bob@l", 1));
    // The laptop's session is served by the other node, which notes its active list.
    ok(&mut there, privacy(LAPTOP, "set", "<active name='a'/>"));
    assert_eq!(testing::stored("active/alice@l/laptop").as_deref(), Some("a"));
    assert_eq!(
        err(&mut here, privacy(PHONE, "set", "<list name='a'/>")),
        Condition::Conflict
    );
    // Its session ends there: the note goes, and the list may be removed here.
    there.on_event(Event::UserOffline(UserPresence {
        jid: LAPTOP.into(),
        presence: "<presence xmlns='jabber:client' type='unavailable'/>".into(),
        features: Vec::new(),
    }));
    assert_eq!(testing::stored("active/alice@l/laptop"), None);
    online(ALICE, &[PHONE]);
    ok(&mut here, privacy(PHONE, "set", "<list name='a'/>"));
}

#[test]
fn an_active_list_set_before_initial_presence_survives_it() {
    let mut p = plugin();
    set_list(&mut p, PHONE, "a", &deny_jid("bob@l", 1));
    ok(&mut p, privacy(PHONE, "set", "<active name='a'/>"));
    let online = |jid: &str| {
        Event::UserOnline(UserPresence {
            jid: jid.into(),
            presence: "<presence xmlns='jabber:client'/>".into(),
            features: Vec::new(),
        })
    };
    p.on_event(online(PHONE));
    assert!(matches!(out(&mut p, msg(PHONE, "bob@l")), Verdict::Bounce(_)));
    // A note left by a node that died with an earlier laptop session is dropped.
    storage::put_string("active/alice@l/laptop", "a").unwrap();
    p.on_event(online(LAPTOP));
    assert_eq!(testing::stored("active/alice@l/laptop"), None);
}
