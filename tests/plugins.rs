//! Plugin runtime end to end: components built by `poolxmpp plugin build` (and
//! componentize-py), loaded from the plugins directory by the real binary, driven by
//! slixmpp (vCard) and raw sockets (containment, filters, echo).

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use support::raw::RawConn;
use support::{password, plugins, with_server, ServerOptions, Store, TestServer, DOMAIN};

fn jid(local: &str) -> String {
    format!("{local}@{DOMAIN}")
}

async fn login(srv: &TestServer, local: &str, resource: &str) -> Result<RawConn> {
    RawConn::login(srv.starttls, DOMAIN, local, password(local), resource).await
}

/// Start a server whose plugins directory holds `names`.
fn with_plugins(names: &[&str], body: impl FnOnce(&mut TestServer, &Path) -> Result<()>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin_dir = dir.path().join("plugins");
    if let Err(e) = plugins::install(&plugin_dir, names) {
        panic!("{e:#}");
    }
    let mut opts = ServerOptions::new(Store::Sqlite);
    opts.plugins_dir = Some(plugin_dir.clone());
    with_server(opts, |srv| body(srv, &plugin_dir));
}

/// Two raw clients exchange a message both ways: proof the connections are alive.
async fn exchange(a: &mut RawConn, b: &mut RawConn, tag: &str) -> Result<()> {
    let body = format!("carol to eve {tag}");
    a.message(&format!("{}/raw", jid("eve")), &body).await?;
    b.expect_message(&body).await?;
    let body = format!("eve to carol {tag}");
    b.message(&format!("{}/raw", jid("carol")), &body).await?;
    a.expect_message(&body).await?;
    Ok(())
}

/// Issue 3, must-show 1 and 2: vCards through slixmpp, then a hot reload that changes
/// visible behaviour while clients stay connected, then a corrupt component that is
/// rejected while the running version keeps serving.
#[test]
fn vcard_and_hot_reload() {
    with_plugins(&["vcard"], |srv, dir| {
        let rt = support::rt();
        let (mut carol, mut eve) = rt.block_on(async {
            let carol = login(srv, "carol", "raw").await?;
            let eve = login(srv, "eve", "raw").await?;
            anyhow::Ok((carol, eve))
        })?;
        rt.block_on(exchange(&mut carol, &mut eve, "before"))?;
        srv.scenario("vcard", Some(1))
            .context("vCard set/get before the reload")?;

        // A new version: same component, a manifest with a new version and build label.
        let manifest = std::fs::read_to_string(dir.join("vcard.toml"))?;
        ensure!(
            manifest.contains("build = \"0.1.0\""),
            "unexpected manifest:\n{manifest}"
        );
        let mark = srv.log().len();
        plugins::replace(
            &dir.join("vcard.toml"),
            manifest
                .replace("build = \"0.1.0\"", "build = \"hot-reloaded\"")
                .replace("version = \"0.1.0\"", "version = \"0.2.0\"")
                .as_bytes(),
        )?;
        srv.wait_log(mark, "plugin loaded", Duration::from_secs(20))?;
        rt.block_on(exchange(&mut carol, &mut eve, "after reload"))?;
        srv.scenario("vcard", Some(2)).context("vCards after the reload")?;

        // A corrupt component is refused; the running version keeps serving.
        let mark = srv.log().len();
        plugins::replace(&dir.join("vcard.wasm"), b"\0asm this is not a component")?;
        srv.wait_log(mark, "plugin rejected", Duration::from_secs(20))?;
        srv.scenario("vcard", Some(2))
            .context("vCards after a corrupt component was dropped in")?;
        rt.block_on(async {
            exchange(&mut carol, &mut eve, "after corrupt").await?;
            carol.ping(DOMAIN).await?;
            eve.ping(DOMAIN).await?;
            anyhow::Ok(())
        })?;
        let list = srv.cli_ok(&["plugin", "list"])?;
        ensure!(
            list.contains("\"vcard\"") && list.contains("\"active\"") && list.contains("\"0.2.0\""),
            "plugin list should show vcard 0.2.0 active:\n{list}"
        );
        Ok(())
    });
}

fn is_error_from(e: &support::xml::Element, from: &str) -> bool {
    e.local == "message" && e.attr("type") == Some("error") && e.attr("from") == Some(from)
}

fn condition(e: &support::xml::Element) -> String {
    e.find("error")
        .and_then(|err| err.elements().next())
        .map(|c| c.local.clone())
        .unwrap_or_default()
}

/// Issue 3, must-show 3: a looping, a trapping and an allocating plugin each answer with
/// an error in bounded time, others (a second client, the echo plugin) are unaffected, and
/// the breaker switches each bad plugin off after repeated failures — from several senders
/// (issue 10 item 6: one sender's failures only get that sender refused).
#[test]
fn containment_of_bad_plugins() {
    with_plugins(&["bad-loop", "bad-trap", "bad-alloc", "echo"], |srv, _dir| {
        let rt = support::rt();
        rt.block_on(async {
            let mut alice = login(srv, "alice", "raw").await?;
            let mut bob = login(srv, "bob", "raw").await?;
            let mut carol = login(srv, "carol", "raw").await?;
            for service in ["loop", "trap", "alloc"] {
                let addr = format!("{service}.{DOMAIN}");
                // max_failures = 3 in their manifests: three failures, then the breaker.
                for attempt in 1..=3 {
                    let started = Instant::now();
                    alice.message(&addr, &format!("attempt {attempt}")).await?;
                    let reply = alice
                        .wait_for(Duration::from_secs(10), &format!("error from {addr}"), |e| {
                            is_error_from(e, &addr)
                        })
                        .await?;
                    ensure!(
                        condition(&reply) == "internal-server-error",
                        "{addr} attempt {attempt}: expected internal-server-error, got {}",
                        reply.raw
                    );
                    ensure!(
                        started.elapsed() < Duration::from_secs(5),
                        "{addr}: error took {:?}",
                        started.elapsed()
                    );
                }
                // Alice alone is refused for a cool-down; bob and carol still reach the
                // plugin, and their failures (three senders) switch it off for everyone.
                for (who, want) in [
                    ("alice", "resource-constraint"),
                    ("bob", "internal-server-error"),
                    ("carol", "internal-server-error"),
                    ("alice", "service-unavailable"),
                ] {
                    let client = match who {
                        "alice" => &mut alice,
                        "bob" => &mut bob,
                        _ => &mut carol,
                    };
                    client.message(&addr, &format!("{who} after alice's failures")).await?;
                    let reply = client
                        .wait_for(Duration::from_secs(10), &format!("error from {addr} to {who}"), |e| {
                            is_error_from(e, &addr)
                        })
                        .await?;
                    ensure!(
                        condition(&reply) == want,
                        "{addr}: {who} expected {want}, got {}",
                        reply.raw
                    );
                }
                // Everyone else carries on.
                alice
                    .message(&format!("{}/raw", jid("bob")), &format!("still here after {service}"))
                    .await?;
                bob.expect_message(&format!("still here after {service}")).await?;
                let echo = format!("echo.{DOMAIN}");
                alice.message(&echo, &format!("echo after {service}")).await?;
                alice.expect_message(&format!("echo after {service}")).await?;
            }
            anyhow::Ok(())
        })?;
        let list = srv.cli_ok(&["plugin", "list"])?;
        ensure!(
            list.matches("disabled").count() >= 3,
            "three plugins should be switched off:\n{list}"
        );
        Ok(())
    });
}

/// The filter example bounces messages with configured words and lets the rest through.
#[test]
fn word_filter_bounces_and_allows() {
    with_plugins(&["word-filter"], |srv, _dir| {
        support::rt().block_on(async {
            let mut alice = login(srv, "alice", "raw").await?;
            let mut bob = login(srv, "bob", "raw").await?;
            let to = format!("{}/raw", jid("bob"));
            alice.message(&to, "buy cheap SPAM now").await?;
            let reply = alice.expect_message_error("policy-violation bounce").await?;
            ensure!(condition(&reply) == "policy-violation", "got {}", reply.raw);
            alice.message(&to, "hello bob").await?;
            let got = bob.expect_message("hello bob").await?;
            ensure!(!got.raw.contains("SPAM"), "the filtered message must not arrive");
            anyhow::Ok(())
        })
    });
}

/// Issue 12: a component built for contract 0.1 before 0.2 existed (a committed binary)
/// loads beside a 0.2 one, and both answer messages, IQs and errors.
#[test]
fn contract_versions_side_by_side() {
    with_plugins(&["echo"], |srv, dir| {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/plugins");
        let mark = srv.log().len();
        std::fs::copy(fixtures.join("echo-0.1.0.toml"), dir.join("echo-v0_1.toml"))?;
        plugins::replace(
            &dir.join("echo-v0_1.wasm"),
            &std::fs::read(fixtures.join("echo-0.1.0.wasm"))?,
        )?;
        srv.wait_log(mark, "plugin loaded", Duration::from_secs(30))?;
        let list = srv.cli_ok(&["plugin", "list"])?;
        ensure!(
            list.contains("\"contract\": \"0.1.0\"") && list.contains("\"contract\": \"0.2.0\""),
            "both contract versions should be listed:\n{list}"
        );
        support::rt().block_on(async {
            let mut alice = login(srv, "alice", "raw").await?;
            for service in ["echo", "echo01"] {
                let addr = format!("{service}.{DOMAIN}");
                alice.message(&addr, &format!("hello {service}")).await?;
                let got = alice.expect_message(&format!("hello {service}")).await?;
                ensure!(got.attr("from") == Some(addr.as_str()), "reply: {}", got.raw);
                let info = alice
                    .iq_get(&addr, "<query xmlns='http://jabber.org/protocol/disco#info'/>")
                    .await?;
                ensure!(
                    info.attr("type") == Some("result"),
                    "{service} disco#info: {}",
                    info.raw
                );
                let refused = alice.iq_get(&addr, "<query xmlns='jabber:iq:version'/>").await?;
                ensure!(
                    refused.attr("type") == Some("error") && condition(&refused) == "service-unavailable",
                    "{service} should refuse jabber:iq:version: {}",
                    refused.raw
                );
            }
            anyhow::Ok(())
        })
    });
}

/// Issue 12: user events reach a plugin that asked for them, and a timer set before a hot
/// reload fires in the new version.
#[test]
fn events_and_a_timer_across_a_hot_reload() {
    with_plugins(&["event-probe"], |srv, dir| {
        let rt = support::rt();
        let mark = srv.log().len();
        let mut alice = rt.block_on(login(srv, "alice", "ev"))?;
        srv.wait_log(
            mark,
            "event user-online alice@localhost/ev features= build=first",
            Duration::from_secs(10),
        )?;
        rt.block_on(async {
            alice.message(&format!("probe.{DOMAIN}"), "timer t1 4000").await?;
            alice.expect_message("timer t1 set").await?;
            anyhow::Ok(())
        })?;
        let mark = srv.log().len();
        let manifest = std::fs::read_to_string(dir.join("event-probe.toml"))?;
        plugins::replace(
            &dir.join("event-probe.toml"),
            manifest.replace("build = \"first\"", "build = \"second\"").as_bytes(),
        )?;
        srv.wait_log(mark, "plugin loaded", Duration::from_secs(20))?;
        srv.wait_log(
            mark,
            "event timer t1 set-by=first build=second",
            Duration::from_secs(15),
        )?;
        let mark = srv.log().len();
        rt.block_on(async {
            alice
                .send("<presence type='unavailable'><status>bye</status></presence>")
                .await?;
            anyhow::Ok(())
        })?;
        srv.wait_log(
            mark,
            "event user-offline alice@localhost/ev features= build=second",
            Duration::from_secs(10),
        )?;
        // Reading a user's roster needs a grant the probe's manifest does not give.
        rt.block_on(async {
            alice.send("<presence/>").await?;
            alice
                .message(&format!("probe.{DOMAIN}"), "roster alice@localhost")
                .await?;
            alice.expect_message("roster alice@localhost has 0 items").await?;
            anyhow::Ok(())
        })?;
        srv.wait_log(mark, "a read its manifest does not grant", Duration::from_secs(5))?;
        Ok(())
    });
}

/// Issue 12: entity capabilities (XEP-0115) from real slixmpp clients reach the plugins
/// with the user events; the server asked the first client for its disco#info, believed
/// the answer because it hashed to the advertised `ver`, and did not ask the second client
/// with the same capabilities again.
#[test]
fn caps_features_reach_the_user_events() {
    with_plugins(&["event-probe"], |srv, _dir| {
        srv.scenario("caps_online", None)?;
        // The last user-offline is logged just after the scenario's last logout.
        srv.wait_log(0, "event user-offline bob@localhost/caps", Duration::from_secs(10))?;
        let log = srv.log();
        for kind in ["user-online", "user-offline"] {
            let lines: Vec<&str> = log
                .lines()
                .filter(|l| l.contains(&format!("event {kind} ")) && l.contains("/caps "))
                .collect();
            ensure!(
                lines.len() == 2
                    && lines
                        .iter()
                        .all(|l| l.contains("http://jabber.org/protocol/disco#info")),
                "{kind} events should carry the clients' caps features:\n{}",
                lines.join("\n")
            );
        }
        let asked = log.matches("asking a resource for its entity capabilities").count();
        ensure!(asked == 1, "the server asked {asked} times for one set of capabilities");
        ensure!(
            log.contains("entity capabilities verified"),
            "no verified caps in the log"
        );
        Ok(())
    });
}

/// Issue 12: a fail-closed filter that traps blocks the stanza (the sender gets
/// service-unavailable, the recipient nothing); what it can judge passes as before.
#[test]
fn a_fail_closed_filter_that_traps_blocks_the_stanza() {
    with_plugins(&["word-filter-closed"], |srv, _dir| {
        support::rt().block_on(async {
            let mut alice = login(srv, "alice", "raw").await?;
            let mut bob = login(srv, "bob", "raw").await?;
            let to = format!("{}/raw", jid("bob"));
            alice.message(&to, "this goes boom").await?;
            let reply = alice.expect_message_error("the error for a blocked message").await?;
            ensure!(condition(&reply) == "service-unavailable", "got {}", reply.raw);
            alice.message(&to, "a quiet hello").await?;
            bob.expect_message("a quiet hello").await?;
            let bodies = bob.collect_bodies(Duration::from_millis(300)).await;
            ensure!(
                !bodies.iter().any(|b| b.contains("boom")),
                "the blocked message must not arrive: {bodies:?}"
            );
            anyhow::Ok(())
        })?;
        srv.wait_log(
            0,
            "fail-closed filter failed; blocking the stanza",
            Duration::from_secs(5),
        )?;
        Ok(())
    });
}

/// Issue 12, must-show 1: a filter with a declared interest set (`interest = "declared"`,
/// rules for alice only) judges what alice sends and what reaches her, and is never
/// invoked for messages between users without rules: the host's counters show its calls
/// unchanged and the messages skipped.
#[test]
fn a_filter_is_not_invoked_for_users_without_rules() {
    with_plugins(&["word-filter-scoped"], |srv, _dir| {
        let counters = |srv: &TestServer| -> Result<(u64, u64)> {
            let list: serde_json::Value = serde_json::from_str(&srv.cli_ok(&["plugin", "list"])?)?;
            let stats = list
                .as_array()
                .and_then(|l| l.iter().find(|p| p["name"] == "word-filter-scoped"))
                .map(|p| p["stats"].clone())
                .context("the scoped filter in plugin list")?;
            Ok((
                stats["calls"].as_u64().unwrap_or(0),
                stats["skipped"].as_u64().unwrap_or(0),
            ))
        };
        const OTHERS: usize = 20;
        support::rt().block_on(async {
            let mut alice = login(srv, "alice", "raw").await?;
            let _bob = login(srv, "bob", "raw").await?;
            let mut carol = login(srv, "carol", "raw").await?;
            // alice has rules: her spam is refused, and spam to her too.
            alice.message(&format!("{}/raw", jid("bob")), "spam from alice").await?;
            let refused = alice.expect_message_error("alice's refused message").await?;
            ensure!(condition(&refused) == "policy-violation", "got {}", refused.raw);
            carol
                .message(&format!("{}/raw", jid("alice")), "spam for alice")
                .await?;
            let refused = carol.expect_message_error("the refused message to alice").await?;
            ensure!(condition(&refused) == "policy-violation", "got {}", refused.raw);
            anyhow::Ok(())
        })?;
        let (calls_before, skipped_before) = counters(srv)?;
        ensure!(calls_before >= 2, "alice's stanzas were judged: {calls_before} calls");
        support::rt().block_on(async {
            let mut bob = login(srv, "bob", "raw2").await?;
            let mut carol = login(srv, "carol", "raw2").await?;
            for i in 0..OTHERS {
                bob.message(&format!("{}/raw2", jid("carol")), &format!("spam {i} between others"))
                    .await?;
            }
            for i in 0..OTHERS {
                carol.expect_message(&format!("spam {i} between others")).await?;
            }
            anyhow::Ok(())
        })?;
        let (calls, skipped) = counters(srv)?;
        ensure!(
            calls == calls_before,
            "the filter was invoked for users without rules: {calls_before} -> {calls} calls"
        );
        ensure!(
            skipped >= skipped_before + 2 * OTHERS as u64,
            "each message skipped at both points: {skipped_before} -> {skipped}"
        );
        Ok(())
    });
}

/// Issue 12: inbound filtering on the offline path. A message stored for bob while he had
/// no rules is judged again when it is delivered: after a reload gave bob rules, the
/// stored spam is refused to its sender (policy-violation) and never reaches bob, while the
/// other stored message does.
#[test]
fn offline_messages_are_filtered_when_delivered() {
    with_plugins(&["word-filter-scoped"], |srv, dir| {
        let rt = support::rt();
        let mut carol = rt.block_on(async {
            let mut carol = login(srv, "carol", "raw").await?;
            for body in ["spam kept for bob", "a kept hello for bob"] {
                carol.message(&jid("bob"), body).await?;
            }
            // Both stored: a ping round trip orders them before the reload.
            carol.ping(DOMAIN).await?;
            anyhow::Ok(carol)
        })?;
        let manifest_path = dir.join("word-filter-scoped.toml");
        let manifest = std::fs::read_to_string(&manifest_path)?;
        let mark = srv.log().len();
        plugins::replace(
            &manifest_path,
            manifest
                .replace(
                    "users = \"alice@localhost\"",
                    "users = \"alice@localhost,bob@localhost\"",
                )
                .as_bytes(),
        )?;
        srv.wait_log(mark, "plugin loaded", Duration::from_secs(20))?;
        srv.wait_log(mark, "filtering 1 words", Duration::from_secs(5))?;
        rt.block_on(async {
            let mut bob = login(srv, "bob", "raw").await?;
            bob.expect_message("a kept hello for bob").await?;
            let refused = carol.expect_message_error("the refused offline message").await?;
            ensure!(condition(&refused) == "policy-violation", "got {}", refused.raw);
            let bodies = bob.collect_bodies(Duration::from_millis(300)).await;
            ensure!(
                !bodies.iter().any(|b| b.contains("spam")),
                "spam reached bob: {bodies:?}"
            );
            anyhow::Ok(())
        })?;
        Ok(())
    });
}

/// Issue 12: a feature and a filter in one plugin (world `feature-filter`): the blocklist
/// example answers the XEP-0191 IQs it claims and enforces what they stored, from one
/// instance: once alice blocks bob, bob's message to her is refused with
/// service-unavailable, hers to him with not-acceptable, and carol still reaches her.
#[test]
fn a_feature_filter_plugin_answers_and_enforces_blocking() {
    with_plugins(&["blocklist"], |srv, _dir| {
        support::rt().block_on(async {
            let mut alice = login(srv, "alice", "raw").await?;
            let mut bob = login(srv, "bob", "raw").await?;
            let mut carol = login(srv, "carol", "raw").await?;
            let done = alice.iq("set", None, &support::block(&jid("bob"))).await?;
            ensure!(done.attr("type") == Some("result"), "block: {}", done.raw);
            bob.message(&format!("{}/raw", jid("alice")), "bob to alice").await?;
            let refused = bob.expect_message_error("bob's refused message").await?;
            ensure!(condition(&refused) == "service-unavailable", "got {}", refused.raw);
            alice.message(&format!("{}/raw", jid("bob")), "alice to bob").await?;
            let refused = alice.expect_message_error("alice's refused message").await?;
            ensure!(condition(&refused) == "not-acceptable", "got {}", refused.raw);
            carol
                .message(&format!("{}/raw", jid("alice")), "carol to alice")
                .await?;
            alice.expect_message("carol to alice").await?;
            let list = alice.iq("get", None, "<blocklist xmlns='urn:xmpp:blocking'/>").await?;
            ensure!(list.raw.contains(&jid("bob")), "blocklist: {}", list.raw);
            let bodies = alice.collect_bodies(Duration::from_millis(300)).await;
            ensure!(
                !bodies.iter().any(|b| b.contains("bob to alice")),
                "blocked message arrived: {bodies:?}"
            );
            anyhow::Ok(())
        })?;
        Ok(())
    });
}

/// Issue 3, must-show 4: the Python (componentize-py) plugin answers a stanza.
#[test]
fn python_plugin_answers() {
    with_plugins(&["python-echo"], |srv, _dir| {
        support::rt().block_on(async {
            let mut alice = login(srv, "alice", "raw").await?;
            alice.message(&format!("pyecho.{DOMAIN}"), "hello from rust").await?;
            let got = alice.expect_message("hello from rust").await?;
            ensure!(
                got.attr("from").is_some_and(|f| f.starts_with("pyecho.")),
                "reply: {}",
                got.raw
            );
            anyhow::Ok(())
        })
    });
}

/// A burst from one client is paced by the plugin, not refused: 2,000 messages sent in one
/// write (past the plugin's queue of 1,024) all come back as echoes, in order, from the
/// Rust, the Python and the JavaScript echo. The surplus used to be refused with
/// `<resource-constraint/>` while the plugin was healthy (issue 12, must-show 3).
#[test]
fn a_burst_from_one_client_is_answered_in_full() {
    const BURST: usize = 2000;
    with_plugins(&["echo", "python-echo", "js-echo"], |srv, _dir| {
        support::rt().block_on(async {
            let mut alice = login(srv, "alice", "raw").await?;
            for service in ["echo", "pyecho", "jsecho"] {
                let to = format!("{service}.{DOMAIN}");
                let burst: String = (0..BURST)
                    .map(|i| format!("<message type='chat' id='burst-{i}' to='{to}'><body>burst {i}</body></message>"))
                    .collect();
                let started = Instant::now();
                alice.send(burst).await?;
                // Generous: a release build answers in well under a second.
                let deadline = started + Duration::from_secs(120);
                for i in 0..BURST {
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1));
                    // Skips the login's own presence coming back.
                    let reply = alice
                        .wait_for(left, &format!("{service}: echo {i} of the burst"), |e| {
                            e.local == "message"
                        })
                        .await?;
                    ensure!(
                        reply.local == "message"
                            && reply.attr("type") != Some("error")
                            && reply.attr("from") == Some(to.as_str())
                            && reply.find("body").map(|b| b.text()) == Some(format!("burst {i}")),
                        "{service}: echo {i} of {BURST}: {}",
                        reply.raw
                    );
                }
                eprintln!("{service}: {BURST} echoes in {:?} (debug build)", started.elapsed());
            }
            anyhow::Ok(())
        })
    });
}

/// The same for IQs a plugin answers for an account (a claimed payload namespace): 2,000
/// vCard gets in one write, all answered with results, none refused.
#[test]
fn a_burst_of_iqs_for_a_plugin_namespace_is_answered_in_full() {
    const BURST: usize = 2000;
    with_plugins(&["vcard"], |srv, _dir| {
        support::rt().block_on(async {
            let mut alice = login(srv, "alice", "raw").await?;
            let burst: String = (0..BURST)
                .map(|i| format!("<iq type='get' id='vc-{i}'><vCard xmlns='vcard-temp'/></iq>"))
                .collect();
            alice.send(burst).await?;
            let deadline = Instant::now() + Duration::from_secs(120);
            for i in 0..BURST {
                let left = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1));
                let reply = alice
                    .wait_for(left, &format!("answer {i} of the burst"), |e| e.local == "iq")
                    .await?;
                ensure!(
                    reply.attr("type") == Some("result") && reply.attr("id") == Some(format!("vc-{i}").as_str()),
                    "answer {i} of {BURST}: {}",
                    reply.raw
                );
            }
            anyhow::Ok(())
        })
    });
}

/// The JavaScript (jco, QuickJS) plugin echoes a body that needs escaping, answers
/// disco#info and disco#items for itself, and refuses other queries with
/// service-unavailable.
#[test]
fn js_plugin_answers() {
    const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
    const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
    with_plugins(&["js-echo"], |srv, _dir| {
        support::rt().block_on(async {
            let service = format!("jsecho.{DOMAIN}");
            let mut alice = login(srv, "alice", "raw").await?;
            let body = "hello from rust: <b> & 'q' \u{e9}\u{1f600}";
            alice.message(&service, body).await?;
            let got = alice.expect_message(body).await?;
            ensure!(
                got.attr("from") == Some(service.as_str()) && got.attr("type") == Some("chat"),
                "reply: {}",
                got.raw
            );

            let info = alice
                .iq_get(&service, &format!("<query xmlns='{NS_DISCO_INFO}'/>"))
                .await?;
            let identity = info
                .child("query", NS_DISCO_INFO)
                .and_then(|q| q.child("identity", NS_DISCO_INFO));
            ensure!(
                info.attr("type") == Some("result")
                    && identity.is_some_and(|i| i.attr("name") == Some("JavaScript echo")),
                "disco#info: {}",
                info.raw
            );
            let items = alice
                .iq_get(&service, &format!("<query xmlns='{NS_DISCO_ITEMS}'/>"))
                .await?;
            ensure!(
                items.attr("type") == Some("result") && items.child("query", NS_DISCO_ITEMS).is_some(),
                "disco#items: {}",
                items.raw
            );
            let version = alice.iq_get(&service, "<query xmlns='jabber:iq:version'/>").await?;
            ensure!(
                version.attr("type") == Some("error") && condition(&version) == "service-unavailable",
                "jabber:iq:version: {}",
                version.raw
            );
            anyhow::Ok(())
        })
    });
}

/// Issue 12, Build "concurrency where it is safe": a plugin run as four instances side by
/// side (manifest `instances = 4`; the room probe as `rooms-spread`). Two clients send
/// interleaved messages to eight rooms; every room's counter (a read-modify-write in the
/// plugin's storage) counts 1 to 20 with no gap or repeat, each client sees its rooms'
/// counts rise (per-key order), and no instance holds all eight rooms in memory (the
/// rooms were spread over the instances).
#[test]
fn several_instances_keep_each_keys_order() {
    with_plugins(&["rooms-spread"], |srv, _dir| {
        const ROOMS: usize = 8;
        const ROUNDS: usize = 10;
        let room = |r: usize| format!("room{r}@spread.{DOMAIN}");
        let list: serde_json::Value = serde_json::from_str(&srv.cli_ok(&["plugin", "list"])?)?;
        let instances = list.as_array().and_then(|l| l.first()).map(|p| p["instances"].clone());
        ensure!(
            instances == Some(4.into()),
            "plugin list should show 4 instances:\n{list:#}"
        );
        support::rt().block_on(async {
            let mut clients = [login(srv, "alice", "raw").await?, login(srv, "bob", "raw").await?];
            for _ in 0..ROUNDS {
                for r in 0..ROOMS {
                    for c in clients.iter_mut() {
                        c.message(&room(r), "where").await?;
                    }
                }
            }
            let mut counts: Vec<Vec<u64>> = vec![Vec::new(); ROOMS];
            for c in clients.iter_mut() {
                let mut last = [0u64; ROOMS];
                for _ in 0..ROOMS * ROUNDS {
                    let answer = c
                        .wait_for(Duration::from_secs(20), "a room's count", |e| {
                            e.local == "message" && e.find("body").is_some_and(|b| b.text().starts_with("owner "))
                        })
                        .await?;
                    let from = answer.attr("from").unwrap_or_default().to_string();
                    let r = (0..ROOMS)
                        .find(|&r| room(r) == from)
                        .context("an answer from an unknown room")?;
                    let count: u64 = answer
                        .find("body")
                        .map(|b| b.text())
                        .unwrap_or_default()
                        .rsplit(' ')
                        .next()
                        .unwrap_or_default()
                        .parse()?;
                    ensure!(
                        count > last[r],
                        "room {r}: count {count} after {} for one client",
                        last[r]
                    );
                    last[r] = count;
                    counts[r].push(count);
                }
            }
            for (r, seen) in counts.iter_mut().enumerate() {
                seen.sort_unstable();
                let want: Vec<u64> = (1..=(2 * ROUNDS) as u64).collect();
                ensure!(*seen == want, "room {r}: counts {seen:?}, want 1..={}", 2 * ROUNDS);
            }
            for r in 0..ROOMS {
                clients[0].message(&room(r), "rooms").await?;
                let held = clients[0]
                    .wait_for(Duration::from_secs(20), "rooms held", |e| {
                        e.find("body").is_some_and(|b| b.text().starts_with("rooms "))
                    })
                    .await?;
                let held: usize = held.find("body").map(|b| b.text()).unwrap_or_default()[6..].parse()?;
                ensure!(
                    held < ROOMS,
                    "one instance holds {held} of the {ROOMS} rooms: no spread"
                );
            }
            anyhow::Ok(())
        })
    });
}

/// Issue 13: the bundled muc plugin (keyed, two instances) driven by slixmpp's xep_0045,
/// xep_0249 and xep_0421, on one server. Scenario `muc`: creation of a locked room, an
/// instant room, entering, messages, a nickname conflict and change, a private message,
/// self-ping, leaving. Scenario `muc_admin`: a reserved room through the configuration
/// form, password, history, subject, voice in a moderated room, stanza-id and occupant-id,
/// invitations mediated and direct, members-only, the member and ban lists, kick, ban,
/// destroy.
#[test]
fn muc_rooms_with_slixmpp() {
    with_plugins(&["muc", "vcard"], |srv, _dir| {
        srv.scenario("muc", None)?;
        srv.scenario("muc_admin", None).map(drop)
    });
}

/// Issue 15: the bundled privacy plugin (XEP-0016 and XEP-0191 in one `feature-filter`,
/// one rule store) driven by slixmpp's xep_0191 and xep_0016 on one server. Scenario
/// `blocking`: the blocklist and its pushes, unavailable presence to a newly blocked
/// contact and presence again when unblocked, messages refused both ways with the XEP's
/// errors, presence withheld both ways, a blocked sender's message to an offline user not
/// stored, unblock all. Scenario `privacy_lists`: lists stored, listed and pushed, an
/// active list per session, a default list for every other session and for offline
/// storage, jid / subscription / fall-through items, presence-out, conflict,
/// item-not-found, malformed lists refused.
#[test]
fn privacy_lists_and_blocking_with_slixmpp() {
    with_plugins(&["privacy"], |srv, _dir| {
        srv.scenario("blocking", None)?;
        srv.scenario("privacy_lists", None).map(drop)
    });
}

/// Issue 14, first increment: PEP (XEP-0163) through slixmpp, served by the bundled
/// pubsub plugin. Scenario `pep`: the account's disco#info, publish with auto-create,
/// notifications only to resources whose entity caps ask for the node, retrieval by a
/// contact and refusal of a stranger, a private (whitelist) node made by publish-options
/// and guarded by them, max_items trimming, retract, purge and delete notifications, the
/// last item for a contact's resource coming online. Scenario `private_storage`: XEP-0049
/// (the `private` plugin), where clients without XEP-0402 keep their bookmarks.
#[test]
fn pep_and_private_storage_with_slixmpp() {
    with_plugins(&["pubsub", "private"], |srv, _dir| {
        srv.scenario("pep", None)?;
        srv.scenario("private_storage", None).map(drop)
    });
}

/// Issue 15, must-show 4 (the PEP path): with the privacy and pubsub plugins together, a
/// blocked contact gets none of the user's PEP notifications and cannot retrieve her
/// items, and she gets no errors for what was withheld; unblocked, he is notified again.
#[test]
fn blocking_covers_pep() {
    with_plugins(&["pubsub", "privacy"], |srv, _dir| {
        srv.scenario("pep_blocking", None).map(drop)
    });
}

/// Issue 15, must-show 3: the privacy plugin fails closed. alice blocks bob through the
/// real plugin; then a broken build of it is deployed under the same name (a component
/// that traps on every message it is asked about: the word filter told to trap on the
/// empty word, with the privacy manifest's `interest = "declared"` and `fail_closed`).
/// alice is still in the plugin's interest set (kept in the store, by plugin name), so
/// bob's message to her reaches the broken filter, which traps: bob gets
/// service-unavailable, alice nothing, the operator a log line. Users without rules do
/// not cross the boundary and keep talking.
#[test]
fn a_trapping_privacy_plugin_fails_closed() {
    with_plugins(&["privacy"], |srv, dir| {
        let rt = support::rt();
        let (mut alice, mut bob, mut carol, mut eve) = rt.block_on(async {
            let alice = login(srv, "alice", "raw").await?;
            let bob = login(srv, "bob", "raw").await?;
            let carol = login(srv, "carol", "raw").await?;
            let eve = login(srv, "eve", "raw").await?;
            anyhow::Ok((alice, bob, carol, eve))
        })?;
        rt.block_on(async {
            let done = alice.iq("set", None, &support::block(&jid("bob"))).await?;
            ensure!(done.attr("type") == Some("result"), "block: {}", done.raw);
            bob.message(&format!("{}/raw", jid("alice")), "while the plugin works")
                .await?;
            let refused = bob.expect_message_error("refused by the working plugin").await?;
            ensure!(condition(&refused) == "service-unavailable", "got {}", refused.raw);
            anyhow::Ok(())
        })?;

        let broken = tempfile::tempdir()?;
        plugins::install(broken.path(), &["word-filter-closed"])?;
        let manifest = "name = \"privacy\"\nworld = \"filter\"\nversion = \"0.1.1\"\n\
            description = \"a broken build of the privacy plugin\"\n\
            interest = \"declared\"\nfail_closed = true\n\
            [limits]\ntimeout_ms = 200\nmax_failures = 100\n\
            [config]\nwords = \"spam\"\ntrap_word = \"\"\n";
        let mark = srv.log().len();
        plugins::replace(
            &dir.join("privacy.wasm"),
            &std::fs::read(broken.path().join("word-filter-closed.wasm"))?,
        )?;
        plugins::replace(&dir.join("privacy.toml"), manifest.as_bytes())?;
        srv.wait_log(mark, "plugin loaded", Duration::from_secs(20))?;

        rt.block_on(async {
            bob.message(&format!("{}/raw", jid("alice")), "while the plugin traps")
                .await?;
            let refused = bob.expect_message_error("refused by the failing plugin").await?;
            ensure!(condition(&refused) == "service-unavailable", "got {}", refused.raw);
            let bodies = alice.collect_bodies(Duration::from_millis(500)).await;
            ensure!(
                !bodies.iter().any(|b| b.contains("while the plugin")),
                "a blocked contact's message reached alice: {bodies:?}"
            );
            exchange(&mut carol, &mut eve, "beside a failing privacy plugin").await
        })?;
        srv.wait_log(
            mark,
            "fail-closed filter failed; blocking the stanza",
            Duration::from_secs(5),
        )?;
        Ok(())
    });
}
