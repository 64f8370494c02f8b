//! Hostile cases: see the list in `tests/hostile.rs`.
//!
//! Delivery: a client that stops reading must cost nobody else anything (issue 10, item 4);
//! a stanza accepted is never silently lost on its way through offline storage (item 7);
//! resources per account are capped and the offline quota holds under concurrent senders
//! (item 10).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

use crate::support::raw::{next_id, RawConn, READ_TIMEOUT};
use crate::support::witness::{witness_jid, WITNESS_RESOURCE};
use crate::support::xml::{Element, NS_BIND, NS_PING, NS_STANZAS_ERR};
use crate::support::{password, rt, with_server, ServerOptions, Store, TestServer, DOMAIN};

fn jid(local: &str) -> String {
    format!("{local}@{DOMAIN}")
}

/// Resident memory of a process, in bytes (`VmRSS` in `/proc/PID/status`).
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Samples a process's RSS every 50 ms on a thread of its own until stopped; the peak.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss(pid).unwrap_or(0)));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(now) = rss(pid) {
                    p.fetch_max(now, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssWatch {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn peak(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.peak();
    }
}

/// The witness's checks after the bad behaviour: ping answered, a message to itself routed.
async fn witness_still_fine(witness: &mut RawConn) -> Result<()> {
    witness
        .ping(DOMAIN)
        .await
        .context("the witness's XEP-0199 ping after the test")?;
    let body = format!("witness still alive {}", next_id("w"));
    witness.message(&witness_jid(), &body).await?;
    witness
        .expect_message(&body)
        .await
        .context("the witness's message to itself after the test")?;
    Ok(())
}

/// Does the server still route to this full JID? An IQ to a resource that is not bound is
/// answered `<service-unavailable/>` (RFC 6121 §8.5.3.1); one that is bound gets no answer
/// from the server. Waits up to `within` for the session to be gone.
async fn wait_session_gone(prober: &mut RawConn, full_jid: &str, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let id = next_id("probe");
        prober
            .send(format!(
                "<iq type='get' id='{id}' to='{full_jid}'><ping xmlns='{NS_PING}'/></iq>"
            ))
            .await?;
        let reply = prober
            .wait_for(Duration::from_secs(1), "probe reply", |e| {
                e.local == "iq" && e.attr("id") == Some(&id)
            })
            .await;
        if let Ok(reply) = reply {
            if reply.attr("type") == Some("error") {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{full_jid} is still routed to {within:?} after its TCP connection was closed");
        }
    }
}

fn stanza_error(e: &Element) -> Option<String> {
    (e.attr("type") == Some("error"))
        .then(|| e.find("error"))
        .flatten()
        .and_then(|err| err.elements().find(|c| c.ns == NS_STANZAS_ERR && c.local != "text"))
        .map(|c| c.local.clone())
}

const MIB: u64 = 1024 * 1024;

/// Item 4. carol logs in, sends presence and stops reading (a small TCP window, so it
/// backs up fast); alice floods her with 600 messages of 100 KB, far past her send queue.
/// Throughout, alice's own pings are answered; carol's stream is closed by the server with
/// `<policy-violation/>` and her queue freed, so the server's memory never grows by much
/// more than one queue; when alice drops her TCP connection her session ends at once; the
/// witness carries on. Before the fix, the overflow path awaited carol's full queue inside
/// alice's session task: alice's pings went unanswered and ~50 MB stayed pinned.
#[test]
fn a_client_that_stops_reading_freezes_nobody() {
    let mut opts = ServerOptions::new(Store::Sqlite);
    // Few offline messages: past the overflow the flood bounces instead of filling storage.
    opts.offline_quota = 10;
    // carol only reads again after the flood; give the server's last write to her time.
    opts.extra_limits.push("send_timeout_secs = 120".into());
    with_server(opts, |srv: &mut TestServer| {
        let pid = srv.pid().context("server pid")?;
        let addr = srv.starttls;
        rt().block_on(async move {
            let mut witness = RawConn::login(addr, DOMAIN, "bob", password("bob"), WITNESS_RESOURCE).await?;
            witness.ping(DOMAIN).await?;
            let mut carol = RawConn::connect_small_window(addr, 4096)
                .await?
                .login_over(DOMAIN, "carol", password("carol"), "stuck")
                .await?;
            carol
                .ping(DOMAIN)
                .await
                .context("carol's ping before she stops reading")?;
            let mut alice = RawConn::login(addr, DOMAIN, "alice", password("alice"), "flood").await?;
            alice.ping(DOMAIN).await?;

            let baseline = rss(pid).context("server RSS")?;
            let mut watch = RssWatch::start(pid);
            let body = "x".repeat(100 * 1024);
            let to = jid("carol");
            let mut slowest = Duration::ZERO;
            for batch in 0..12 {
                let mut burst = String::new();
                for i in 0..50 {
                    burst.push_str(&format!(
                        "<message type='chat' id='f{batch}-{i}' to='{to}'><body>{body}</body></message>"
                    ));
                }
                tokio::time::timeout(Duration::from_secs(30), alice.send(burst))
                    .await
                    .with_context(|| format!("the server stopped reading alice's stream (batch {batch})"))??;
                let rtt = alice
                    .ping(DOMAIN)
                    .await
                    .with_context(|| format!("alice's ping after batch {batch} of her flood"))?;
                slowest = slowest.max(rtt);
                // Bounces pile up in the backlog; only their count matters here.
                alice.backlog.retain(|e| e.local != "message");
            }
            let peak = watch.peak();
            eprintln!(
                "[delivery] RSS baseline {} MiB, peak during the flood {} MiB, slowest ping {slowest:?}",
                baseline / MIB,
                peak / MIB
            );

            // carol reads again: what was in flight, then the stream error and the close.
            let report = carol.expect_stream_error(READ_TIMEOUT).await;
            report.assert_condition(&["policy-violation"], "the client that stopped reading")?;

            // alice drops her TCP connection without a word: her session ends promptly.
            drop(alice);
            wait_session_gone(
                &mut witness,
                &format!("{}/flood", jid("alice")),
                Duration::from_secs(10),
            )
            .await?;

            // 60 MB went to a client that reads nothing; the server held at most about one
            // send queue (1 MiB) of it at a time, plus parsing buffers and the allocator's slack.
            let after = rss(pid).context("server RSS")?;
            eprintln!("[delivery] RSS after {} MiB", after / MIB);
            ensure!(
                peak < baseline + 32 * MIB,
                "server RSS grew from {} MiB to {} MiB while one client did not read",
                baseline / MIB,
                peak / MIB
            );
            ensure!(
                after < baseline + 32 * MIB,
                "server RSS stayed at {} MiB (from {} MiB) after the client that did not read was closed",
                after / MIB,
                baseline / MIB
            );
            witness_still_fine(&mut witness).await
        })?;
        ensure!(srv.is_running(), "the server process exited");
        Ok(())
    });
}

/// Item 7. A message with exactly `max_attributes` attributes (and an extension element
/// with as many, in a prefixed namespace the serializer re-declares) is accepted for an
/// offline user; the server stamps `from`, stores it, and must deliver it at login. Before
/// the fix it was read back under the wire limits, failed, and was deleted unseen.
#[test]
fn a_message_with_the_most_attributes_survives_offline_storage() {
    let max_attributes = 64;
    let opts = ServerOptions::new(Store::Sqlite);
    with_server(opts, |srv| {
        let addr = srv.starttls;
        rt().block_on(async move {
            let mut alice = RawConn::login(addr, DOMAIN, "alice", password("alice"), "attrs").await?;
            alice.ping(DOMAIN).await?;
            let body = format!("all the attributes {}", next_id("a"));
            // type, id, to + the rest: exactly the limit on <message/>.
            let extra: String = (0..max_attributes - 3).map(|i| format!(" a{i}='{i}'")).collect();
            // xmlns:p + the rest on the extension element.
            let ext: String = (0..max_attributes - 1).map(|i| format!(" b{i}='{i}'")).collect();
            alice
                .send(format!(
                    "<message type='chat' id='m1' to='{}'{extra}><body>{body}</body><p:x xmlns:p='urn:example:attrs'{ext}/></message>",
                    jid("carol")
                ))
                .await?;
            // The message was accepted: no stream error, and no stanza error either.
            alice.ping(DOMAIN).await.context("alice's stream after the message")?;
            if let Some(e) = alice.backlog.iter().find(|e| stanza_error(e).is_some()) {
                bail!("the sender got an error for an accepted message: {e}");
            }

            let mut carol = RawConn::login(addr, DOMAIN, "carol", password("carol"), "late").await?;
            let got = carol
                .expect_message(&body)
                .await
                .context("the stored message with the most attributes, at login")?;
            ensure!(
                got.attr("a60") == Some("60") && got.attr("from").is_some(),
                "the message arrived without its attributes: {got}"
            );
            let x = got
                .child("x", "urn:example:attrs")
                .with_context(|| format!("the extension element is missing: {got}"))?;
            ensure!(x.attr("b62") == Some("62"), "the extension lost its attributes: {x}");
            Ok(())
        })
    });
}

/// Item 10: binding past `max_resources_per_account` is refused with the RFC 6120
/// §7.6.2.1 error; the account's sessions carry on; once one leaves, the bind succeeds.
#[test]
fn binding_past_the_resource_cap_is_refused() {
    let mut opts = ServerOptions::new(Store::Sqlite);
    opts.extra_limits.push("max_resources_per_account = 3".into());
    with_server(opts, |srv| {
        let addr = srv.starttls;
        rt().block_on(async move {
            let mut sessions = Vec::new();
            for r in ["r1", "r2", "r3"] {
                sessions.push(RawConn::login(addr, DOMAIN, "alice", password("alice"), r).await?);
            }
            let (mut fourth, _) = RawConn::connect_tls(addr, DOMAIN).await?;
            ensure!(fourth.auth_plain("alice", password("alice")).await?.is_success());
            fourth.open_stream(DOMAIN).await?;
            fourth.read_features().await?;
            let bind = |id: &str| {
                format!("<iq type='set' id='{id}'><bind xmlns='{NS_BIND}'><resource>r4</resource></bind></iq>")
            };
            fourth.send(bind("b1")).await?;
            let reply = fourth
                .wait_for(READ_TIMEOUT, "the reply to a fourth bind", |e| {
                    e.attr("id") == Some("b1")
                })
                .await?;
            ensure!(
                stanza_error(&reply).as_deref() == Some("resource-constraint"),
                "RFC 6120 7.6.2.1: a bind past the cap must get <resource-constraint/>, got {reply}"
            );
            let error_type = reply.find("error").and_then(|e| e.attr("type"));
            ensure!(
                error_type == Some("wait"),
                "resource-constraint is of type wait: {reply}"
            );
            for (i, s) in sessions.iter_mut().enumerate() {
                s.ping(DOMAIN)
                    .await
                    .with_context(|| format!("session r{} after the refused bind", i + 1))?;
            }
            // One leaves; the same stream may bind now.
            let mut r3 = sessions.pop().expect("three sessions");
            r3.send("</stream:stream>").await?;
            let _ = r3.expect_stream_error(READ_TIMEOUT).await;
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut attempt = 2;
            loop {
                let id = format!("b{attempt}");
                fourth.send(bind(&id)).await?;
                let reply = fourth
                    .wait_for(READ_TIMEOUT, "the reply to a bind after one session left", |e| {
                        e.attr("id") == Some(&id)
                    })
                    .await?;
                if reply.attr("type") == Some("result") {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "bind still refused after a session left: {reply}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
                attempt += 1;
            }
            fourth.ping(DOMAIN).await?;
            for s in sessions.iter_mut() {
                s.ping(DOMAIN).await?;
            }
            Ok(())
        })
    });
}

/// Item 10: eight connections send to an offline user at once, each as fast as it can.
/// The stored messages never exceed the quota (counted at login), every message is either
/// stored or refused with `<resource-constraint/>` (never silence), and the quota fills.
fn concurrent_senders_respect_the_offline_quota(store: Store) {
    const QUOTA: usize = 5;
    const SENDERS: usize = 8;
    const EACH: usize = 20;
    let mut opts = ServerOptions::new(store);
    opts.offline_quota = QUOTA as i64;
    opts.extra_limits
        .push(format!("max_resources_per_account = {}", SENDERS + 1));
    with_server(opts, |srv| {
        let addr = srv.starttls;
        rt().block_on(async move {
            let mut senders = Vec::new();
            for i in 0..SENDERS {
                let mut c = RawConn::login(addr, DOMAIN, "alice", password("alice"), &format!("s{i}")).await?;
                c.ping(DOMAIN).await?;
                senders.push(c);
            }
            let to = jid("carol");
            let tasks: Vec<_> = senders
                .into_iter()
                .enumerate()
                .map(|(i, mut c)| {
                    let to = to.clone();
                    tokio::spawn(async move {
                        let burst: String = (0..EACH)
                            .map(|k| {
                                format!("<message type='chat' id='q{i}-{k}' to='{to}'><body>q{i}-{k}</body></message>")
                            })
                            .collect();
                        c.send(burst).await?;
                        // Bounces are queued before the next stanza is read, so the pong comes after them.
                        c.ping(DOMAIN).await?;
                        let refused = c
                            .backlog
                            .iter()
                            .filter(|e| e.local == "message" && stanza_error(e).is_some())
                            .map(|e| (stanza_error(e).unwrap_or_default(), e.raw.clone()))
                            .collect::<Vec<_>>();
                        anyhow::Ok(refused)
                    })
                })
                .collect();
            let mut refused = Vec::new();
            for t in tasks {
                refused.extend(t.await??);
            }
            if let Some((cond, e)) = refused.iter().find(|(c, _)| c != "resource-constraint") {
                bail!("a sender over the quota got <{cond}/> instead of <resource-constraint/>: {e}");
            }
            let mut carol = RawConn::login(addr, DOMAIN, "carol", password("carol"), "count").await?;
            // Offline messages are queued at initial presence, before the ping is read.
            carol.ping(DOMAIN).await?;
            let stored = carol.backlog.iter().filter(|e| e.local == "message").count();
            ensure!(
                stored <= QUOTA,
                "{stored} offline messages were stored with a quota of {QUOTA} ({} senders at once)",
                SENDERS
            );
            ensure!(
                stored + refused.len() == SENDERS * EACH,
                "{} messages sent, {stored} stored and {} refused: the rest vanished",
                SENDERS * EACH,
                refused.len()
            );
            ensure!(stored == QUOTA, "the quota of {QUOTA} did not fill: {stored} stored");
            Ok(())
        })
    });
}

#[test]
fn concurrent_senders_respect_the_offline_quota_sqlite() {
    concurrent_senders_respect_the_offline_quota(Store::Sqlite);
}

#[test]
fn concurrent_senders_respect_the_offline_quota_postgres() {
    concurrent_senders_respect_the_offline_quota(Store::Postgres);
}

/// XEP-0198 (issue 17): a client that enables stream management and then acknowledges
/// nothing cannot make the server keep what it was sent for ever: past `send_queue_bytes`
/// of unacknowledged stanzas its stream is closed with `<policy-violation/>`, and what it
/// never acknowledged is stored offline, not lost. Its sender and a witness carry on.
#[test]
fn a_client_that_never_acknowledges_is_closed_and_loses_nothing() {
    const MESSAGES: usize = 40;
    let mut opts = ServerOptions::new(Store::Sqlite);
    opts.extra_limits.push("send_queue_bytes = 65536".into());
    with_server(opts, |srv: &mut TestServer| {
        let addr = srv.starttls;
        rt().block_on(async move {
            let mut witness = RawConn::login(addr, DOMAIN, "bob", password("bob"), WITNESS_RESOURCE).await?;
            let mut carol = RawConn::login(addr, DOMAIN, "carol", password("carol"), "silent").await?;
            carol.send("<enable xmlns='urn:xmpp:sm:3'/>").await?;
            carol
                .wait_for(READ_TIMEOUT, "<enabled/>", |e| e.local == "enabled")
                .await?;
            let mut alice = RawConn::login(addr, DOMAIN, "alice", password("alice"), "sender").await?;
            let body = "y".repeat(4096);
            let to = format!("{}/silent", jid("carol"));
            for i in 0..MESSAGES {
                alice
                    .send(format!(
                        "<message type='chat' id='u{i}' to='{to}'><body>{i} {body}</body></message>"
                    ))
                    .await?;
            }
            alice.ping(DOMAIN).await.context("the sender carries on")?;
            // carol reads everything (and the server's <r/>), answering nothing.
            let report = carol.expect_stream_error(READ_TIMEOUT).await;
            report.assert_condition(&["policy-violation"], "a client that never acknowledges")?;
            witness.ping(DOMAIN).await.context("the witness carries on")?;

            // Nothing lost: every message she never acknowledged is offline for her.
            let mut again = RawConn::login(addr, DOMAIN, "carol", password("carol"), "back").await?;
            again.send("<presence/>").await?;
            let bodies = again.collect_bodies(Duration::from_secs(2)).await;
            let mut got: Vec<usize> = bodies
                .iter()
                .filter_map(|b| b.split(' ').next()?.parse().ok())
                .collect();
            got.sort_unstable();
            got.dedup();
            ensure!(
                got == (0..MESSAGES).collect::<Vec<_>>(),
                "unacknowledged messages stored offline: got {got:?}"
            );
            Ok(())
        })
    });
}
