//! Hostile cases: see the list in `tests/hostile.rs`.
//!
//! Rosters without bounds (issue 10, item 5): the item cap holds on every path that adds an
//! item, groups and names are capped, pending requests per user are capped, and a maximal
//! roster is still answered. Account removal (item 8): XEP-0077 `<remove/>` and `poolxmpp
//! user del` end every session of the account and cancel its subscriptions, so the next
//! holder of the name inherits nothing.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use crate::support::raw::{next_id, RawConn, READ_TIMEOUT};
use crate::support::xml::{escape, Element, NS_STANZAS_ERR};
use crate::support::{password, python, rt, server_binary, with_server, ServerOptions, Store, TestServer, DOMAIN};

const NS_ROSTER: &str = "jabber:iq:roster";
const NS_REGISTER: &str = "jabber:iq:register";
/// How long to watch for something that must not arrive.
const QUIET: Duration = Duration::from_millis(1500);

fn opts(limits: &[&str]) -> ServerOptions {
    let mut o = ServerOptions::new(Store::Sqlite);
    o.extra_limits = limits.iter().map(|l| l.to_string()).collect();
    o
}

fn jid(local: &str) -> String {
    format!("{local}@{DOMAIN}")
}

/// Log in `local` with initial presence and ask for the roster (so it gets pushes).
async fn login(srv: &TestServer, local: &str, resource: &str) -> Result<RawConn> {
    let mut c = RawConn::login(srv.starttls, DOMAIN, local, password(local), resource).await?;
    roster_get(&mut c).await?;
    Ok(c)
}

/// The defined condition of a stanza error, if `e` is one.
fn error_condition(e: &Element) -> Option<String> {
    if e.attr("type") != Some("error") {
        return None;
    }
    e.elements()
        .find(|c| c.local == "error")?
        .elements()
        .find(|c| c.ns == NS_STANZAS_ERR && c.local != "text")
        .map(|c| c.local.clone())
}

/// Send an IQ and return its reply (result or error).
async fn iq(c: &mut RawConn, itype: &str, payload: &str) -> Result<Element> {
    let id = next_id("iq");
    c.send(format!("<iq type='{itype}' id='{id}'>{payload}</iq>")).await?;
    c.wait_for(READ_TIMEOUT, &format!("reply to iq {id}"), |e| {
        e.local == "iq" && e.attr("id") == Some(&id) && matches!(e.attr("type"), Some("result" | "error"))
    })
    .await
}

/// The roster's items: (jid, element).
async fn roster_get(c: &mut RawConn) -> Result<Vec<Element>> {
    let reply = iq(c, "get", &format!("<query xmlns='{NS_ROSTER}'/>")).await?;
    ensure!(reply.attr("type") == Some("result"), "roster get failed: {reply}");
    Ok(reply
        .child("query", NS_ROSTER)
        .map(|q| q.elements().filter(|e| e.local == "item").cloned().collect())
        .unwrap_or_default())
}

async fn roster_jids(c: &mut RawConn) -> Result<Vec<String>> {
    Ok(roster_get(c)
        .await?
        .iter()
        .filter_map(|i| i.attr("jid").map(str::to_string))
        .collect())
}

/// A roster set of one item; returns the reply.
async fn roster_set(c: &mut RawConn, contact: &str, name: Option<&str>, groups: &[String]) -> Result<Element> {
    let name = name.map(|n| format!(" name='{}'", escape(n))).unwrap_or_default();
    let groups: String = groups.iter().map(|g| format!("<group>{}</group>", escape(g))).collect();
    iq(
        c,
        "set",
        &format!("<query xmlns='{NS_ROSTER}'><item jid='{contact}'{name}>{groups}</item></query>"),
    )
    .await
}

fn expect_error(reply: &Element, condition: &str, what: &str) -> Result<()> {
    match error_condition(reply) {
        Some(c) if c == condition => Ok(()),
        other => bail!("{what}: expected a <{condition}/> error, got {other:?}: {reply}"),
    }
}

fn expect_result(reply: &Element, what: &str) -> Result<()> {
    ensure!(
        reply.attr("type") == Some("result"),
        "{what}: expected a result, got {reply}"
    );
    Ok(())
}

async fn presence(c: &mut RawConn, to: &str, ptype: &str) -> Result<String> {
    let id = next_id("sub");
    c.send(format!("<presence to='{to}' type='{ptype}' id='{id}'/>"))
        .await?;
    Ok(id)
}

/// The presence error answering the presence with `id`.
async fn presence_error(c: &mut RawConn, id: &str, what: &str) -> Result<String> {
    let e = c
        .wait_for(READ_TIMEOUT, what, |e| {
            e.local == "presence" && e.attr("id") == Some(id) && e.attr("type") == Some("error")
        })
        .await?;
    error_condition(&e).with_context(|| format!("{what}: presence error without a condition: {e}"))
}

/// Read for `QUIET` and fail if a presence matching `pred` arrived.
async fn expect_no_presence(c: &mut RawConn, what: &str, pred: impl Fn(&Element) -> bool) -> Result<()> {
    match c.wait_for(QUIET, what, |e| e.local == "presence" && pred(e)).await {
        Ok(e) => bail!("{what}: {e}"),
        Err(_) => Ok(()),
    }
}

/// XEP-0077 registration on a fresh, unauthenticated TLS stream.
async fn register(srv: &TestServer, local: &str, pw: &str) -> Result<()> {
    let (mut c, _) = RawConn::connect_tls(srv.starttls, DOMAIN).await?;
    let reply = iq(
        &mut c,
        "set",
        &format!(
            "<query xmlns='{NS_REGISTER}'><username>{local}</username><password>{}</password></query>",
            escape(pw)
        ),
    )
    .await?;
    expect_result(&reply, &format!("registering {local} in-band"))
}

#[test]
fn roster_cap_holds_for_subscribe_and_pre_approval() {
    with_server(opts(&["roster_max_items = 5"]), |srv| {
        rt().block_on(async {
            let mut alice = login(srv, "alice", "a").await?;
            let mut bob = login(srv, "bob", "b").await?;
            // Five items, by subscribing to five (non-existent) contacts.
            for i in 0..5 {
                presence(&mut alice, &jid(&format!("nobody{i}")), "subscribe").await?;
            }
            let filled = roster_jids(&mut alice).await?;
            ensure!(filled.len() == 5, "five subscriptions must make five items: {filled:?}");

            // A sixth contact by subscribe: refused, not stored, not routed.
            let id = presence(&mut alice, &jid("bob"), "subscribe").await?;
            let cond = presence_error(&mut alice, &id, "the error for a subscribe beyond roster_max_items").await?;
            ensure!(
                cond == "not-allowed",
                "a subscribe beyond the cap must get <not-allowed/>, got <{cond}/>"
            );
            expect_no_presence(
                &mut bob,
                "a subscribe refused for a full roster reached its contact",
                |e| e.attr("type") == Some("subscribe"),
            )
            .await?;

            // A sixth contact by pre-approval (RFC 6121 §3.4): refused likewise.
            let id = presence(&mut alice, &jid("carol"), "subscribed").await?;
            let cond = presence_error(&mut alice, &id, "the error for a pre-approval beyond roster_max_items").await?;
            ensure!(
                cond == "not-allowed",
                "a pre-approval beyond the cap must get <not-allowed/>, got <{cond}/>"
            );

            // Approving a stranger's request would add a sixth item: refused, request kept.
            presence(&mut bob, &jid("alice"), "subscribe").await?;
            alice
                .wait_for(READ_TIMEOUT, "bob's subscription request", |e| {
                    e.local == "presence" && e.attr("type") == Some("subscribe")
                })
                .await?;
            let id = presence(&mut alice, &jid("bob"), "subscribed").await?;
            let cond = presence_error(&mut alice, &id, "the error for an approval beyond roster_max_items").await?;
            ensure!(
                cond == "not-allowed",
                "an approval beyond the cap must get <not-allowed/>, got <{cond}/>"
            );

            // And the roster set path, as before.
            let reply = roster_set(&mut alice, &jid("eve"), None, &[]).await?;
            expect_error(&reply, "not-allowed", "a roster set beyond roster_max_items")?;

            let after = roster_jids(&mut alice).await?;
            ensure!(
                after == filled,
                "nothing may be stored beyond the cap: before {filled:?}, after {after:?}"
            );
            alice.ping(DOMAIN).await?;
            Ok(())
        })
    });
}

#[test]
fn roster_groups_and_names_are_capped() {
    let limits = ["roster_max_groups = 3", "roster_max_name_bytes = 20"];
    with_server(opts(&limits), |srv| {
        rt().block_on(async {
            let mut alice = login(srv, "alice", "a").await?;
            let groups = |n: usize| (0..n).map(|i| format!("g{i}")).collect::<Vec<_>>();

            let reply = roster_set(&mut alice, &jid("bob"), None, &groups(4)).await?;
            expect_error(
                &reply,
                "not-acceptable",
                "an item with more groups than roster_max_groups",
            )?;
            let reply = roster_set(&mut alice, &jid("bob"), Some(&"n".repeat(21)), &[]).await?;
            expect_error(
                &reply,
                "not-acceptable",
                "an item name longer than roster_max_name_bytes",
            )?;
            let reply = roster_set(&mut alice, &jid("bob"), None, &["g".repeat(21)]).await?;
            expect_error(
                &reply,
                "not-acceptable",
                "a group name longer than roster_max_name_bytes",
            )?;
            ensure!(
                roster_jids(&mut alice).await?.is_empty(),
                "a refused roster set must store nothing"
            );

            let reply = roster_set(&mut alice, &jid("bob"), Some(&"n".repeat(20)), &groups(3)).await?;
            expect_result(&reply, "an item exactly at the limits")?;
            let items = roster_get(&mut alice).await?;
            ensure!(
                items.len() == 1 && items[0].elements().filter(|g| g.local == "group").count() == 3,
                "the item at the limits must be stored with its three groups: {items:?}"
            );
            Ok(())
        })
    });
}

/// `roster_max_groups` and `roster_max_name_bytes` by default (examples/poolxmpp.toml).
const DEFAULT_MAX_GROUPS: usize = 16;
const DEFAULT_MAX_NAME_BYTES: usize = 256;

/// With the default group and name limits, a roster at `roster_max_items` whose every
/// item carries the most groups of the longest names is still answered in full.
#[test]
fn maximal_roster_is_answered() {
    const ITEMS: usize = 40;
    with_server(opts(&[&format!("roster_max_items = {ITEMS}")]), |srv| {
        rt().block_on(async {
            let mut alice = login(srv, "alice", "a").await?;
            let groups = |n: usize| {
                (0..n)
                    .map(|i| format!("{i:03}{}", "g".repeat(DEFAULT_MAX_NAME_BYTES - 3)))
                    .collect::<Vec<_>>()
            };
            let reply = roster_set(&mut alice, &jid("c-x"), None, &groups(DEFAULT_MAX_GROUPS + 1)).await?;
            expect_error(
                &reply,
                "not-acceptable",
                "one group more than the default roster_max_groups",
            )?;
            let name = "n".repeat(DEFAULT_MAX_NAME_BYTES);
            for i in 0..ITEMS {
                let reply = roster_set(
                    &mut alice,
                    &jid(&format!("c{i}")),
                    Some(&name),
                    &groups(DEFAULT_MAX_GROUPS),
                )
                .await?;
                expect_result(&reply, &format!("maximal item {i}"))?;
            }
            let items = roster_get(&mut alice).await?;
            ensure!(
                items.len() == ITEMS,
                "the maximal roster has {} items, not {ITEMS}",
                items.len()
            );
            for item in &items {
                let n = item.elements().filter(|g| g.local == "group").count();
                ensure!(
                    n == DEFAULT_MAX_GROUPS,
                    "an item came back with {n} groups: {}",
                    item.attr("jid").unwrap_or("")
                );
            }
            alice.ping(DOMAIN).await?;
            Ok(())
        })
    });
}

#[test]
fn pending_subscription_requests_are_capped() {
    with_server(opts(&["pending_subscriptions_max = 3"]), |srv| {
        rt().block_on(async {
            let senders = ["bob", "carol", "eve"];
            for s in senders {
                let mut c = login(srv, s, "s").await?;
                presence(&mut c, &jid("alice"), "subscribe").await?;
                c.ping(DOMAIN).await?;
            }
            // One stranger too many: refused, and told so.
            let dave = format!("dave@{}", crate::support::DOMAIN2);
            let mut d = RawConn::login(srv.starttls, crate::support::DOMAIN2, "dave", password("dave"), "d").await?;
            let id = presence(&mut d, &jid("alice"), "subscribe").await?;
            let e = d
                .wait_for(READ_TIMEOUT, "the error for one pending request too many", |e| {
                    e.local == "presence" && e.attr("type") == Some("error") && e.attr("id") == Some(&id)
                })
                .await?;
            ensure!(
                error_condition(&e).as_deref() == Some("resource-constraint"),
                "one pending request too many must get <resource-constraint/>: {e}"
            );

            // The victim gets the three stored requests at login, not the refused one.
            let mut alice = RawConn::login(srv.starttls, DOMAIN, "alice", password("alice"), "a").await?;
            for s in senders {
                alice
                    .wait_for(READ_TIMEOUT, &format!("the stored request from {s}"), |e| {
                        e.local == "presence" && e.attr("type") == Some("subscribe") && e.attr("from") == Some(&jid(s))
                    })
                    .await?;
            }
            expect_no_presence(&mut alice, "a request refused for too many pending was stored", |e| {
                e.attr("type") == Some("subscribe") && e.attr("from") == Some(&dave)
            })
            .await?;
            Ok(())
        })
    });
}

/// Carol's new password after she is removed and the name registered again.
const NEW_CAROL_PW: &str = "carol-second-holder";

/// Phase 1 of the `account_removal` scenario (removal while carol has two resources and bob
/// is subscribed both ways), then the name registered again, then phase 2.
fn removal_scenario(srv: &mut TestServer, remove_cmd: Option<String>) -> Result<()> {
    let mut args = srv.scenario_args("account_removal");
    if let Some(cmd) = remove_cmd {
        args.push("--remove-cmd".into());
        args.push(cmd);
    }
    python::run_scenario(&args, srv.dir(), crate::support::SCENARIO_TIMEOUT).context("phase 1: the removal")?;
    ensure!(srv.is_running(), "the server died during the removal");
    rt().block_on(register(srv, "carol", NEW_CAROL_PW))
        .context("the removed name must be free to register again")?;
    let accounts = vec![
        (jid("bob"), password("bob").to_string()),
        (jid("carol"), NEW_CAROL_PW.to_string()),
    ];
    let mut args = srv.scenario_args_for("account_removal", &accounts);
    args.extend(["--phase".to_string(), "2".to_string()]);
    python::run_scenario(&args, srv.dir(), crate::support::SCENARIO_TIMEOUT).context("phase 2: the next holder")?;
    Ok(())
}

#[test]
fn account_removal_in_band_ends_sessions_and_subscriptions() {
    let mut o = opts(&[]);
    o.registration = true;
    with_server(o, |srv| removal_scenario(srv, None));
}

#[test]
fn user_del_on_a_running_server_ends_sessions_and_subscriptions() {
    let mut o = opts(&[]);
    o.registration = true;
    with_server(o, |srv| {
        let cmd = format!(
            "'{}' --config '{}' user del {}",
            server_binary().display(),
            srv.config_path.display(),
            jid("carol")
        );
        removal_scenario(srv, Some(cmd))
    });
}

/// With no server running, `user del` alone leaves the store consistent: the contact's
/// roster no longer lists the account and the name's next holder inherits nothing.
#[test]
fn user_del_without_a_server_cleans_contacts_rosters() {
    let mut o = opts(&[]);
    o.registration = true;
    with_server(o, |srv| {
        rt().block_on(async {
            let mut bob = login(srv, "bob", "b").await?;
            let mut carol = login(srv, "carol", "c").await?;
            presence(&mut bob, &jid("carol"), "subscribe").await?;
            carol
                .wait_for(READ_TIMEOUT, "bob's request", |e| e.attr("type") == Some("subscribe"))
                .await?;
            presence(&mut carol, &jid("bob"), "subscribed").await?;
            presence(&mut carol, &jid("bob"), "subscribe").await?;
            bob.wait_for(READ_TIMEOUT, "carol's request", |e| e.attr("type") == Some("subscribe"))
                .await?;
            presence(&mut bob, &jid("carol"), "subscribed").await?;
            bob.ping(DOMAIN).await?;
            carol.ping(DOMAIN).await?;
            let items = roster_get(&mut bob).await?;
            ensure!(
                items.iter().any(|i| i.attr("subscription") == Some("both")),
                "bob and carol must be subscribed both ways first: {items:?}"
            );
            Ok::<_, anyhow::Error>(())
        })?;
        srv.stop();
        srv.cli_ok(&["user", "del", &jid("carol")])?;
        srv.start_again()?;
        rt().block_on(async {
            register(srv, "carol", NEW_CAROL_PW).await?;
            let mut carol = RawConn::login(srv.starttls, DOMAIN, "carol", NEW_CAROL_PW, "new").await?;
            ensure!(
                roster_get(&mut carol).await?.is_empty(),
                "the next holder must start with an empty roster"
            );
            let mut bob = login(srv, "bob", "b").await?;
            let items = roster_jids(&mut bob).await?;
            ensure!(
                !items.contains(&jid("carol")),
                "bob's roster must not list the removed carol: {items:?}"
            );
            expect_no_presence(&mut carol, "presence from a contact of the removed account", |e| {
                e.attr("from").is_some_and(|f| f.starts_with("bob@"))
            })
            .await?;
            Ok(())
        })
    });
}
