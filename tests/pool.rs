//! The server pool (issue 4): several real `poolxmpp serve` processes on distinct loopback
//! addresses sharing one PostgreSQL started by the harness.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use support::pool::{
    each_arrived_once, jid, login, login_or_redirect, must, node_options, TestPool, HEARTBEAT_MS, LEASE_MS,
};
use support::TestServer;

/// Pool tests run side by side, except those that saturate the machine (the reconnect
/// storm, 200 logins at once): beside another test's nodes they would starve one of them of
/// its lease renewals on two cores, and it would rightly fence itself.
static MACHINE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared_machine() -> std::sync::RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|e| e.into_inner())
}

fn whole_machine() -> std::sync::RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|e| e.into_inner())
}

/// Membership: three nodes join and show as live; a second process claiming a live node's
/// id is refused with a clear error; a node killed with SIGKILL is declared dead once its
/// lease expires; restarted, it rejoins under a new epoch.
#[test]
fn membership_leases_and_rejoin() {
    let _machine = shared_machine();
    must(|| {
        let mut pool = TestPool::start(3)?;
        for node in ["n1", "n2", "n3"] {
            let (state, epoch) = pool.node_state(node)?;
            ensure!(state == "live" && epoch == 1, "{node}: {state} epoch {epoch}");
        }

        // An impostor: n1's id and credentials, another address. It must give up.
        let dir = pool.nodes[0]
            .opts
            .pool
            .as_ref()
            .unwrap()
            .tls_dir
            .parent()
            .unwrap()
            .to_path_buf();
        let mut dup = node_options(&dir, &pool.pg, 3)?;
        dup.pool.as_mut().unwrap().node_id = "n1".into();
        let err = match TestServer::start(dup) {
            Ok(_) => bail!("a second process with node id n1 was allowed to start"),
            Err(e) => format!("{e:#}"),
        };
        ensure!(err.contains("in use by a live node"), "unexpected refusal: {err}");

        pool.nodes[2].kill();
        let took = pool.wait_state("n3", "dead", Duration::from_millis(LEASE_MS + 5_000))?;
        eprintln!("n3 declared dead {took:?} after SIGKILL (lease {LEASE_MS} ms)");
        ensure!(pool.node_state("n1")?.0 == "live" && pool.node_state("n2")?.0 == "live");

        pool.nodes[2].start_again()?;
        let (state, epoch) = pool.node_state("n3")?;
        ensure!(state == "live" && epoch == 2, "restarted n3: {state} epoch {epoch}");
        Ok(())
    });
}

/// SIGTERM to a pool node with a client on it: the client is told `<system-shutdown/>`,
/// the process exits within its grace periods, its lease is given back at once (`left`,
/// not waiting to be declared dead), and its session's directory row is gone — the
/// directory loop finished what the session's end queued before the node left.
#[test]
fn sigterm_leaves_the_pool_cleanly() {
    let _machine = shared_machine();
    must(|| {
        let mut pool = TestPool::start(2)?;
        let rt = support::rt();
        let (mut alice, mut bob) = rt.block_on(async {
            let mut alice = login(&pool.nodes[0], "alice").await?;
            let mut bob = login(&pool.nodes[1], "bob").await?;
            wait_routable(&mut alice, &mut bob, &format!("{}/raw", jid("bob"))).await?;
            anyhow::Ok((alice, bob))
        })?;
        let signalled = Instant::now();
        ensure!(pool.nodes[1].stop(), "n2 did not exit within 10 s of SIGTERM");
        let took = signalled.elapsed();
        eprintln!("n2 exited {took:?} after SIGTERM");
        ensure!(took < Duration::from_secs(7), "n2 took {took:?} to exit after SIGTERM");
        ensure!(
            !pool.nodes[1].log().contains("did not finish"),
            "a task of n2 outlived its grace period:\n{}",
            pool.nodes[1].log_tail(40)
        );
        rt.block_on(async {
            let report = bob.expect_stream_error(Duration::from_secs(5)).await;
            report.assert_condition(&["system-shutdown"], "bob's stream on n2")
        })?;
        let (state, _) = pool.node_state("n2")?;
        ensure!(state == "left", "n2 after SIGTERM: {state}, not left");
        let wheres = pool.nodes[0].cli_ok(&["pool", "where", &jid("bob")])?;
        ensure!(
            !wheres.contains(" n2 "),
            "n2's session is still in the directory: {wheres}"
        );
        // n1 carries on: alice still gets answers.
        rt.block_on(alice.ping(support::DOMAIN))?;
        Ok(())
    });
}

/// Wait (bounded) until `from`'s node knows `to`'s session: an IQ to its full JID
/// reaches it. Session updates travel over pool links asynchronously.
async fn wait_routable(from: &mut support::raw::RawConn, to: &mut support::raw::RawConn, to_jid: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut n = 0;
    while Instant::now() < deadline {
        n += 1;
        let id = format!("probe{n}");
        from.send(format!(
            "<iq type='get' id='{id}' to='{to_jid}'><query xmlns='jabber:iq:version'/></iq>"
        ))
        .await?;
        let got = to
            .wait_for(Duration::from_millis(500), "forwarded probe", |e| {
                e.local == "iq" && e.attr("id") == Some(id.as_str())
            })
            .await;
        if got.is_ok() {
            return Ok(());
        }
    }
    bail!("{to_jid} never became routable from the other node")
}

/// Users on different nodes exchange messages to full and bare JIDs; when a node is killed,
/// a message to its user is kept offline and delivered when the user logs in on a survivor,
/// which they can do at once.
#[test]
fn messages_across_nodes_and_failover() {
    let _machine = shared_machine();
    must(|| {
        let mut pool = TestPool::start(3)?;
        let rt = support::rt();
        let (mut alice, mut bob, mut carol) = rt.block_on(async {
            let alice = login(&pool.nodes[0], "alice").await?;
            let bob = login(&pool.nodes[1], "bob").await?;
            let carol = login(&pool.nodes[2], "carol").await?;
            anyhow::Ok((alice, bob, carol))
        })?;
        rt.block_on(async {
            wait_routable(&mut alice, &mut bob, &format!("{}/raw", jid("bob"))).await?;
            wait_routable(&mut carol, &mut alice, &format!("{}/raw", jid("alice"))).await?;
            alice.message(&format!("{}/raw", jid("bob")), "full n1->n2").await?;
            bob.expect_message("full n1->n2").await?;
            alice.message(&jid("bob"), "bare n1->n2").await?;
            bob.expect_message("bare n1->n2").await?;
            carol.message(&jid("alice"), "bare n3->n1").await?;
            alice.expect_message("bare n3->n1").await?;
            bob.message(&jid("carol"), "bare n2->n3").await?;
            carol.expect_message("bare n2->n3").await?;
            anyhow::Ok(())
        })?;

        // The shared directory knows where everyone is.
        let wheres = |pool: &TestPool| pool.nodes[0].cli_ok(&["pool", "where", &jid("bob")]);
        ensure!(
            wheres(&pool)?.contains("bob@localhost/raw n2 epoch 1"),
            "directory: {}",
            wheres(&pool)?
        );

        // n2 dies with bob on it. Once n1 has seen the link drop, a message to bob is
        // kept offline; bob logs in on n1 at once (before n2's lease expires) and gets it.
        pool.nodes[1].kill();
        drop(bob);
        pool.nodes[0].wait_log(0, "pool link down", Duration::from_secs(10))?;
        let _bob_on_n1 = rt.block_on(async {
            alice.message(&jid("bob"), "while n2 is dead").await?;
            let mut bob = login(&pool.nodes[0], "bob").await?;
            bob.expect_message("while n2 is dead").await?;
            alice
                .message(&format!("{}/raw", jid("bob")), "bob is back on n1")
                .await?;
            bob.expect_message("bob is back on n1").await?;
            anyhow::Ok(bob)
        })?;
        pool.wait_state("n2", "dead", Duration::from_millis(LEASE_MS + 5_000))?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !wheres(&pool)?.contains("bob@localhost/raw n1 epoch 1") || wheres(&pool)?.contains(" n2 ") {
            ensure!(
                Instant::now() < deadline,
                "directory after failover: {}",
                wheres(&pool)?
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    });
}

/// Issue 12, must-show 1: XEP-0012 and XEP-0202 answered to slixmpp by the bundled
/// last-activity and entity-time plugins on a two-node pool; bob logs out on n2 and alice,
/// on n1, is told when and with which status.
#[test]
fn last_activity_and_time_across_two_nodes() {
    let _machine = shared_machine();
    must(|| {
        let (pool, _plugins) = pool_with_plugins(2, &["last-activity", "entity-time"], &[])?;
        pool.nodes[1].wait_log(0, "pool link up", Duration::from_secs(10))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        pool.scenario("last_activity_and_time")?;
        Ok(())
    });
}

/// Issue 12: node events reach a plugin on every node, and a timer set on a node that is
/// killed is adopted and fired by the survivor.
#[test]
fn node_events_and_timers_survive_a_nodes_death() {
    let _machine = shared_machine();
    must(|| {
        let (mut pool, _plugins) = pool_with_plugins(2, &["event-probe"], &[])?;
        pool.nodes[0].wait_log(0, "event node-joined n2", Duration::from_secs(10))?;
        pool.nodes[1].wait_log(0, "event node-joined n1", Duration::from_secs(10))?;
        let rt = support::rt();
        rt.block_on(async {
            let mut alice = login(&pool.nodes[1], "alice").await?;
            alice
                .message(&format!("probe.{}", support::DOMAIN), "timer on-n2 6000")
                .await?;
            alice.expect_message("timer on-n2 set").await?;
            anyhow::Ok(())
        })?;
        pool.nodes[1].kill();
        pool.nodes[0].wait_log(0, "event node-left n2", Duration::from_millis(LEASE_MS + 5_000))?;
        pool.nodes[0].wait_log(
            0,
            "adopted the plugin timers of a node that left",
            Duration::from_secs(5),
        )?;
        pool.nodes[0].wait_log(0, "event timer on-n2 set-by=first", Duration::from_secs(15))?;
        Ok(())
    });
}

/// Issue 12, must-show 1: one `send-many` call from a plugin reaches 200 sessions spread
/// over three nodes (20 accounts x 10 resources, round-robin), each copy addressed to its
/// recipient; the copies for the other two nodes travel in one batch per node.
#[test]
fn one_fan_out_call_reaches_200_sessions_on_three_nodes() {
    const ACCOUNTS: usize = 20;
    const RESOURCES: usize = 10;
    const PASSWORD: &str = "fan-pw";
    let _machine = whole_machine();
    must(|| {
        let (pool, _plugins) = pool_with_plugins(3, &["event-probe"], &["max_resources_per_account = 0"])?;
        for a in 0..ACCOUNTS {
            pool.nodes[0].cli_ok(&["user", "add", &format!("fan{a}@{}", support::DOMAIN), PASSWORD])?;
        }
        pool.nodes[2].wait_log(0, "pool link up", Duration::from_secs(10))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        let rt = support::rt();
        rt.block_on(async {
            let mut logins = tokio::task::JoinSet::new();
            for i in 0..ACCOUNTS * RESOURCES {
                let (a, r) = (i / RESOURCES, i % RESOURCES);
                let addr = pool.nodes[i % 3].starttls;
                logins.spawn(async move {
                    let c = support::raw::RawConn::login(
                        addr,
                        support::DOMAIN,
                        &format!("fan{a}"),
                        PASSWORD,
                        &format!("r{r}"),
                    )
                    .await
                    .with_context(|| format!("login of fan{a}/r{r}"));
                    (i, c)
                });
            }
            let mut clients = Vec::new();
            while let Some(done) = logins.join_next().await {
                let (i, c) = done?;
                clients.push((i, c?));
            }
            clients.sort_by_key(|(i, _)| *i);
            let mut clients: Vec<_> = clients.into_iter().map(|(_, c)| c).collect();
            // Every session is in every node's table before the call.
            tokio::time::sleep(Duration::from_millis(2 * HEARTBEAT_MS)).await;
            let mut alice = login(&pool.nodes[0], "alice").await?;
            let command = format!("fanout fan {ACCOUNTS} {RESOURCES}");
            alice.message(&format!("probe.{}", support::DOMAIN), &command).await?;
            alice
                .expect_message(&format!("fanout routed {}", ACCOUNTS * RESOURCES))
                .await?;
            for (i, c) in clients.iter_mut().enumerate() {
                let (a, r) = (i / RESOURCES, i % RESOURCES);
                let got = c
                    .expect_message("fanned out")
                    .await
                    .with_context(|| format!("fan{a}/r{r}"))?;
                let want = format!("fan{a}@{}/r{r}", support::DOMAIN);
                ensure!(got.attr("to") == Some(want.as_str()), "copy for {want}: {}", got.raw);
            }
            anyhow::Ok(())
        })?;
        Ok(())
    });
}

/// Issue 12, must-show 1 (owner routing with fencing): stanzas for one key sent to each
/// of three nodes all reach the key's single owner (the room-probe plugin answers with the
/// node that served it and a counter kept with fenced writes); after SIGKILL of the owner
/// a survivor is told `ownership-gained` under a new fencing token without waiting for a
/// stanza, and serves the key with its state; after a node was stopped (SIGSTOP) past its
/// lease, its key moves, and when it resumes it is told `ownership-lost` and its late
/// write under the old token is refused by the store.
#[test]
fn keyed_stanzas_reach_one_owner_with_fencing() {
    use poolxmpp::pool::ownership::preferred_owner;
    let _machine = shared_machine();
    must(|| {
        let room = |want_all: &str, want_after: &str, not: &str| -> String {
            (0..10_000)
                .map(|i| format!("room{i}@rooms.{}", support::DOMAIN))
                .find(|k| {
                    preferred_owner(k, ["n1", "n2", "n3"]) == Some(want_all)
                        && preferred_owner(k, ["n1", "n2"]) == Some(want_after)
                        && k != not
                })
                .expect("some key hashes so")
        };
        // Owned by n3, then n1 once n3 is gone; owned by n2 throughout, then n1.
        let killed_room = room("n3", "n1", "");
        let stopped_room = room("n2", "n2", &killed_room);
        let (mut pool, _plugins) = pool_with_plugins(3, &["room-probe"], &[])?;
        pool.nodes[2].wait_log(0, "pool link up", Duration::from_secs(10))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        let rt = support::rt();
        let mut clients = rt.block_on(async {
            let mut clients = Vec::new();
            for (i, local) in ["alice", "bob", "carol"].into_iter().enumerate() {
                clients.push(login(&pool.nodes[i], local).await?);
            }
            for (room, owner) in [(&killed_room, "n3"), (&stopped_room, "n2")] {
                for (n, c) in clients.iter_mut().enumerate() {
                    c.message(room, "where").await?;
                    c.expect_message(&format!("owner {owner} fence 1 count {}", n + 1))
                        .await
                        .with_context(|| format!("{room} from node {}", n + 1))?;
                }
            }
            anyhow::Ok(clients)
        })?;
        let lease = Duration::from_millis(LEASE_MS + 5_000);
        let log_from = pool.nodes[0].log().len();
        pool.nodes[2].kill();
        pool.nodes[0].wait_log(
            log_from,
            &format!("event ownership-gained {killed_room} fence=2 node=n1"),
            lease,
        )?;
        rt.block_on(async {
            for (n, c) in clients[..2].iter_mut().enumerate() {
                c.message(&killed_room, "where").await?;
                c.expect_message(&format!("owner n1 fence 2 count {}", 4 + n)).await?;
            }
            anyhow::Ok(())
        })?;
        let pid = pool.nodes[1].pid().context("n2 runs")?.to_string();
        let (log0, log1) = (pool.nodes[0].log().len(), pool.nodes[1].log().len());
        let signal = |sig: &str| std::process::Command::new("kill").args([sig, &pid]).status();
        ensure!(signal("-STOP")?.success(), "cannot stop n2");
        let gained = pool.nodes[0].wait_log(
            log0,
            &format!("event ownership-gained {stopped_room} fence=2 node=n1"),
            lease,
        );
        ensure!(signal("-CONT")?.success(), "cannot resume n2");
        gained?;
        pool.nodes[1].wait_log(log1, &format!("event ownership-lost {stopped_room} fence=1"), lease)?;
        pool.nodes[1].wait_log(
            log1,
            &format!("fenced write refused {stopped_room} fence=1"),
            Duration::from_secs(5),
        )?;
        rt.block_on(async {
            clients[0].message(&stopped_room, "where").await?;
            // 3 before, so n2's late "999" did not land.
            clients[0].expect_message("owner n1 fence 2 count 4").await?;
            anyhow::Ok(())
        })?;
        Ok(())
    });
}

/// Issue 13: a room survives the death of its owner node without kicking anyone. alice (n1),
/// bob (n2) and carol (n3) are in a room n3 owns. n3 is killed (SIGKILL) while alice and bob
/// keep sending counted messages, each waiting for its own copy or an error: n1 takes the
/// room over and resumes it from the store; alice and bob stay in (no kick, no rejoin, same
/// nicknames) and carol, whose node died with the room's, leaves with status 333. Every
/// message is either received once by both and in the history eve gets on joining, or
/// bounced to its sender and received by nobody. Then n2 dies too, a node that only served
/// an occupant: bob leaves the room (333), no ghost.
#[test]
fn a_room_survives_its_owners_death() {
    use poolxmpp::pool::ownership::preferred_owner;
    let _machine = shared_machine();
    must(|| {
        let service = format!("conference.{}", support::DOMAIN);
        let room = (0..10_000)
            .map(|i| format!("lounge{i}@{service}"))
            .find(|k| {
                preferred_owner(k, ["n1", "n2", "n3"]) == Some("n3") && preferred_owner(k, ["n1", "n2"]) == Some("n1")
            })
            .expect("some room hashes so");
        let (mut pool, _plugins) = pool_with_plugins(3, &["muc"], &[])?;
        pool.nodes[2].wait_log(0, "pool link up", Duration::from_secs(10))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        let rt = support::rt();
        let nicks = ["Alice", "Bob", "Carol"];
        let mut clients = rt.block_on(async {
            let mut clients = Vec::new();
            for (i, local) in ["alice", "bob", "carol"].into_iter().enumerate() {
                clients.push(login(&pool.nodes[i], local).await?);
            }
            muc_join(&mut clients[0], &room, "Alice", &["201"]).await?;
            let configured = clients[0]
                .iq(
                    "set",
                    Some(&room),
                    "<query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query>",
                )
                .await?;
            ensure!(configured.attr("type") == Some("result"), "instant room: {}", configured.raw);
            for i in 1..3 {
                muc_join(&mut clients[i], &room, nicks[i], &[]).await?;
            }
            muc_say(&mut clients[1], &room, "hello from bob").await?;
            for c in clients.iter_mut() {
                c.expect_message("hello from bob").await?;
            }
            anyhow::Ok(clients)
        })?;

        let log_from = pool.nodes[0].log().len();
        // A burst bob does not wait for: n3 dies with some of it sent, handled, or in
        // flight on the links.
        let burst = rt.block_on(async {
            let mut burst = Vec::new();
            // Six, so that everything said in the room fits its history of 20.
            for k in 0..6 {
                let body = format!("count burst {k}");
                burst.push((muc_say(&mut clients[1], &room, &body).await?, body));
            }
            anyhow::Ok(burst)
        })?;
        pool.nodes[2].kill();
        // carol's connection died with n3.
        let _carol = clients.pop().expect("three clients");
        let (delivered, bounced) = rt.block_on(async {
            let (mut delivered, mut bounced, mut waited) = (Vec::new(), Vec::new(), Vec::new());
            for n in 0..12 {
                let from = n % 2;
                let body = format!("count {n} from {}", nicks[from]);
                let sent = Instant::now();
                let id = muc_say(&mut clients[from], &room, &body).await?;
                let wait = Duration::from_millis(LEASE_MS + 15_000);
                let answer = clients[from]
                    .wait_for(wait, &format!("{body:?} or its error"), |e| {
                        e.local == "message"
                            && (e.find("body").map(|b| b.text()) == Some(body.clone())
                                || (e.attr("type") == Some("error") && e.attr("id") == Some(id.as_str())))
                    })
                    .await?;
                waited.push(sent.elapsed().as_millis());
                match answer.attr("type") {
                    Some("error") => bounced.push(body),
                    _ => delivered.push((from, body)),
                }
                tokio::time::sleep(Duration::from_millis(LEASE_MS / 8)).await;
            }
            for (id, body) in &burst {
                let answer = clients[1]
                    .wait_for(
                        Duration::from_millis(LEASE_MS + 15_000),
                        &format!("{body:?} or its error"),
                        |e| {
                            e.local == "message"
                                && (e.find("body").map(|b| b.text()).as_ref() == Some(body)
                                    || (e.attr("type") == Some("error") && e.attr("id") == Some(id.as_str())))
                        },
                    )
                    .await?;
                match answer.attr("type") {
                    Some("error") => bounced.push(body.clone()),
                    _ => delivered.push((1, body.clone())),
                }
            }
            eprintln!("across the take-over, each message's round trip (ms): {waited:?}");
            anyhow::Ok((delivered, bounced))
        })?;
        eprintln!("{} delivered, bounced {bounced:?}", delivered.len());
        pool.nodes[0].wait_log(log_from, &format!("room {room} resumed"), Duration::from_secs(5))?;
        rt.block_on(async {
            for (i, c) in clients.iter_mut().enumerate() {
                let gone = c
                    .wait_for(READ, "carol's leaving", |e| {
                        e.local == "presence"
                            && e.attr("from") == Some(&format!("{room}/Carol"))
                            && e.attr("type") == Some("unavailable")
                    })
                    .await
                    .with_context(|| format!("at {}", nicks[i]))?;
                ensure!(
                    gone.raw.contains("code='333'") || gone.raw.contains("code=\"333\""),
                    "carol's leaving: {}",
                    gone.raw
                );
            }
            // Nobody was kicked or had to rejoin: their own presence never came back
            // unavailable, and their nicknames still speak.
            for (i, c) in clients.iter_mut().enumerate() {
                let own = format!("{room}/{}", nicks[i]);
                let kicked: Vec<&str> = c
                    .backlog
                    .iter()
                    .filter(|e| {
                        e.local == "presence"
                            && e.attr("from") == Some(own.as_str())
                            && e.attr("type") == Some("unavailable")
                    })
                    .map(|e| e.raw.as_str())
                    .collect();
                ensure!(kicked.is_empty(), "{} was taken out of the room: {kicked:?}", nicks[i]);
            }
            muc_say(&mut clients[0], &room, "after from alice").await?;
            let heard = clients[1].expect_message("after from alice").await?;
            ensure!(
                heard.attr("from") == Some(format!("{room}/Alice").as_str()),
                "{}",
                heard.raw
            );
            for (i, c) in clients.iter_mut().enumerate() {
                // Each got the other's messages (its own copies were read above).
                let mut bodies = c.collect_bodies(Duration::from_millis(500)).await;
                bodies.retain(|b| b.starts_with("count "));
                let mut want: Vec<String> = delivered
                    .iter()
                    .filter(|(from, _)| *from != i)
                    .map(|(_, b)| b.clone())
                    .collect();
                bodies.sort();
                want.sort();
                ensure!(
                    bodies == want,
                    "{} got {bodies:?}, the room delivered {want:?}",
                    nicks[i]
                );
            }
            // The history the room resumed with, and what it kept since.
            let mut eve = login(&pool.nodes[0], "eve").await?;
            muc_join(&mut eve, &room, "Eve", &[]).await?;
            let mut history = eve.collect_bodies(Duration::from_millis(500)).await;
            history.retain(|b| b.starts_with("count "));
            let mut want: Vec<String> = delivered.iter().map(|(_, b)| b.clone()).collect();
            history.sort();
            want.sort();
            ensure!(history == want, "eve's history {history:?}, delivered {want:?}");
            anyhow::Ok(())
        })?;

        // A node that only serves an occupant dies: bob leaves the room, no ghost.
        pool.nodes[1].kill();
        rt.block_on(async {
            let gone = clients[0]
                .wait_for(Duration::from_millis(LEASE_MS + 10_000), "bob's leaving", |e| {
                    e.local == "presence"
                        && e.attr("from") == Some(&format!("{room}/Bob"))
                        && e.attr("type") == Some("unavailable")
                })
                .await?;
            ensure!(gone.raw.contains("333"), "bob's leaving: {}", gone.raw);
            anyhow::Ok(())
        })?;
        Ok(())
    });
}

const READ: Duration = Duration::from_secs(10);

/// Enter `room` as `nick` and wait for the room's presence for us (status 110 and
/// `codes`).
async fn muc_join(c: &mut support::raw::RawConn, room: &str, nick: &str, codes: &[&str]) -> Result<()> {
    c.send(format!(
        "<presence to='{room}/{nick}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
    ))
    .await?;
    let own = format!("{room}/{nick}");
    let p = c
        .wait_for(READ, &format!("{nick}'s entry into {room}"), |e| {
            e.local == "presence" && e.attr("from") == Some(own.as_str()) && e.raw.contains("110")
        })
        .await?;
    ensure!(p.attr("type").is_none(), "{nick} could not enter: {}", p.raw);
    for code in codes {
        ensure!(
            p.raw.contains(&format!("code='{code}'")),
            "{nick}'s entry lacks {code}: {}",
            p.raw
        );
    }
    Ok(())
}

/// A groupchat message to `room`; its id.
async fn muc_say(c: &mut support::raw::RawConn, room: &str, body: &str) -> Result<String> {
    let id = support::raw::next_id("gc");
    c.send(format!(
        "<message type='groupchat' id='{id}' to='{room}'><body>{}</body></message>",
        support::xml::escape(body)
    ))
    .await?;
    Ok(id)
}

/// Issue 12: a filter's interest set is the same on every node, a change of a user's
/// rules reaches the filter's cache on every node (`rules-changed`), and the inbound
/// filter point runs on the recipient's node. alice/raw (on n1) blocks carol, then bob,
/// with the blocklist plugin, which puts her in its interest set on n1; n2 learns both
/// over the link. bob (on n2) messages alice/desk, also on n2: judged there with her
/// current list, and refused — without the set it would be skipped as a message between
/// users without rules, and without the event judged by n2's stale cache. bob then messages
/// alice/raw: n2 leaves the inbound point to n1, alice's node, which refuses it (n1's
/// filter calls grow, n2's do not).
#[test]
fn interest_sets_reach_every_node() {
    let _machine = shared_machine();
    must(|| {
        let (pool, _plugins) = pool_with_plugins(2, &["blocklist"], &[])?;
        pool.nodes[1].wait_log(0, "pool link up", Duration::from_secs(10))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        let calls = |node: usize| -> Result<u64> {
            let list: serde_json::Value = serde_json::from_str(&pool.nodes[node].cli_ok(&["plugin", "list"])?)?;
            Ok(list[0]["stats"]["calls"].as_u64().unwrap_or(0))
        };
        support::rt().block_on(async {
            let addr = pool.nodes[1].starttls;
            let mut alice = login(&pool.nodes[0], "alice").await?;
            let mut desk =
                support::raw::RawConn::login(addr, support::DOMAIN, "alice", support::password("alice"), "desk")
                    .await?;
            let mut bob = login(&pool.nodes[1], "bob").await?;
            // alice has rules (she blocks carol), and n2's blocklist caches them when it
            // judges bob's first message to alice/desk, which passes.
            let done = alice.iq("set", None, &support::block(&jid("carol"))).await?;
            ensure!(done.attr("type") == Some("result"), "block: {}", done.raw);
            tokio::time::sleep(Duration::from_millis(500)).await;
            bob.message(&format!("{}/desk", jid("alice")), "before").await?;
            desk.expect_message("before").await?;
            // Blocking bob changes her rules on n1; n2 is told (rules-changed) and drops
            // its cached copy, so bob's next message is judged by the new list.
            let done = alice.iq("set", None, &support::block(&jid("bob"))).await?;
            ensure!(done.attr("type") == Some("result"), "block: {}", done.raw);
            // The announcement travels the link; give it a moment, then bob tries.
            tokio::time::sleep(Duration::from_millis(500)).await;
            for (to, client) in [("desk", &mut desk), ("raw", &mut alice)] {
                let before = (calls(0)?, calls(1)?);
                bob.message(&format!("{}/{to}", jid("alice")), "bob to alice").await?;
                let refused = bob.expect_message_error("bob's refused message").await?;
                ensure!(
                    refused.raw.contains("service-unavailable"),
                    "to {to}: got {}",
                    refused.raw
                );
                let bodies = client.collect_bodies(Duration::from_millis(500)).await;
                ensure!(
                    !bodies.iter().any(|b| b.contains("bob to alice")),
                    "blocked message arrived at alice/{to}: {bodies:?}"
                );
                let (n1, n2) = (calls(0)? - before.0, calls(1)? - before.1);
                let judged_on = if to == "desk" { (0, 1) } else { (1, 0) };
                ensure!(
                    (n1, n2) == judged_on,
                    "to alice/{to}: filter calls on n1/n2 {n1}/{n2}, want {judged_on:?}"
                );
            }
            anyhow::Ok(())
        })?;
        Ok(())
    });
}

/// A pool whose nodes all load the built plugins `names` from one plugins directory (the
/// returned one, to keep while the pool runs), with `limits` lines added to their config.
fn pool_with_plugins(n: usize, names: &[&str], limits: &[&str]) -> Result<(TestPool, tempfile::TempDir)> {
    let plugins = tempfile::tempdir()?;
    support::plugins::install(plugins.path(), names)?;
    let dir = plugins.path().to_path_buf();
    let pool = TestPool::start_with(n, &|_, opts, _| {
        opts.plugins_dir = Some(dir.clone());
        opts.extra_limits.extend(limits.iter().map(|l| l.to_string()));
        Ok(())
    })?;
    Ok((pool, plugins))
}

impl TestPool {
    /// Run a slixmpp scenario with its clients spread round-robin over the live nodes.
    fn scenario(&self, name: &str) -> Result<String> {
        let mut args = self.nodes[0].scenario_args(name);
        for node in &self.nodes {
            args.push("--node".into());
            args.push(format!(
                "{}:{}:{}",
                node.starttls.ip(),
                node.starttls.port(),
                node.direct_tls.port()
            ));
        }
        support::python::run_scenario(&args, self.nodes[0].dir(), support::SCENARIO_TIMEOUT)
            .with_context(|| format!("scenario {name} over {} nodes", self.nodes.len()))
    }
}

/// Uniform behaviour: the foundation's slixmpp scenarios pass with their users (and an
/// account's resources) spread over three nodes: logins, roster pushes to a resource on
/// another node, the subscription handshake, presence broadcast and unavailable on
/// disconnect, messages to bare and full JIDs, offline delivery, resource conflicts, two
/// hosted domains.
#[test]
fn foundation_scenarios_across_three_nodes() {
    let _machine = shared_machine();
    must(|| {
        let pool = TestPool::start(3)?;
        // Links come up within a heartbeat or two of the last join.
        pool.nodes[2].wait_log(0, "pool link up", Duration::from_secs(10))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        for name in [
            "login",
            "roster",
            "subscription",
            "presence",
            "messages",
            "offline",
            "conflict",
            "multidomain",
            "carbons",
        ] {
            pool.scenario(name)?;
        }
        Ok(())
    });
}

/// Issue 17: stream management and client state indication with the clients spread over
/// three nodes: a session resumed on its node while its contacts are on others (what they
/// sent meanwhile crossed a link into the holding queue), and a session not resumed in
/// time whose unacknowledged message, forwarded from another node, ends in offline storage.
#[test]
fn stream_management_and_csi_across_three_nodes() {
    let _machine = shared_machine();
    must(|| {
        let pool = TestPool::start_with(3, &|_, opts, _| {
            opts.extra_limits.push("resume_timeout_secs = 3".into());
            Ok(())
        })?;
        pool.nodes[2].wait_log(0, "pool link up", Duration::from_secs(10))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        for name in ["stream_management", "csi"] {
            pool.scenario(name)?;
        }
        Ok(())
    });
}

/// Issue 13: the MUC scenarios with their occupants spread over three nodes (each client
/// on the next node): rooms, messages, nicknames, private messages, self-ping and leaving;
/// the configuration form, password, history, voice, invitations, members-only, kick, ban
/// and destroy — each room on its one owner node, reached from all three.
#[test]
fn muc_scenarios_across_three_nodes() {
    let _machine = shared_machine();
    must(|| {
        let (pool, _plugins) = pool_with_plugins(3, &["muc", "vcard"], &[])?;
        pool.nodes[2].wait_log(0, "pool link up", Duration::from_secs(10))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        for name in ["muc", "muc_admin"] {
            pool.scenario(name)?;
        }
        Ok(())
    });
}

/// Issue 15, must-show 2: the privacy plugin's scenarios with each client on the next of
/// three nodes: the blocker's two resources, the blocked contact and a third user on
/// different nodes, so a block set on one node is enforced for stanzas arriving at
/// another (the interest set and `rules-changed` travel the links), pushes reach the
/// other node's resource, an active list is judged on its session's node, a default list
/// everywhere, and a conflict is seen across nodes.
#[test]
fn privacy_scenarios_across_three_nodes() {
    let _machine = shared_machine();
    must(|| {
        let (pool, _plugins) = pool_with_plugins(3, &["privacy"], &[])?;
        pool.nodes[2].wait_log(0, "pool link up", Duration::from_secs(10))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        for name in ["blocking", "privacy_lists"] {
            pool.scenario(name)?;
        }
        Ok(())
    });
}

/// Issue 14, must-show 2: the PEP scenario with each client on the next of three nodes:
/// the publisher, its contacts and a stranger on different nodes, so notifications fan
/// out to other nodes' sessions by their entity caps (learnt where each session lives and
/// shared through the pool), items published on one node are read on another, and the
/// last item reaches a contact coming online elsewhere.
#[test]
fn pep_scenario_across_three_nodes() {
    let _machine = shared_machine();
    must(|| {
        let (pool, _plugins) = pool_with_plugins(3, &["pubsub"], &[])?;
        pool.nodes[2].wait_log(0, "pool link up", Duration::from_secs(10))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        pool.scenario("pep").map(drop)
    });
}

/// A raw client's available presence with entity capabilities (XEP-0115) naming
/// `features`, and the disco#info query answering the server's question about them.
fn caps_presence(features: &[&str]) -> (String, String) {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut sorted = features.to_vec();
    sorted.sort();
    let mut s = String::from("client/pc//poolxmpp-raw<");
    for f in &sorted {
        s.push_str(f);
        s.push('<');
    }
    let ver = base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(s.as_bytes()));
    let node = "https://poolxmpp.test/raw";
    let presence = format!(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='{node}' ver='{ver}'/></presence>"
    );
    let mut query = format!(
        "<query xmlns='http://jabber.org/protocol/disco#info' node='{node}#{ver}'>\
         <identity category='client' type='pc' name='poolxmpp-raw'/>"
    );
    for f in &sorted {
        query.push_str(&format!("<feature var='{f}'/>"));
    }
    query.push_str("</query>");
    (presence, query)
}

/// Send available presence with caps for `features` and answer the server's disco#info
/// query about them (it asks once per `ver` it does not know yet).
async fn announce_caps(c: &mut support::raw::RawConn, features: &[&str]) -> Result<()> {
    let (presence, query) = caps_presence(features);
    c.send(presence).await?;
    let asked = c
        .wait_for(Duration::from_secs(10), "the server's caps query", |e| {
            e.local == "iq" && e.attr("type") == Some("get") && e.find("query").is_some()
        })
        .await?;
    let id = asked.attr("id").unwrap_or_default().to_string();
    let from = asked.attr("from").unwrap_or_default().to_string();
    c.send(format!("<iq type='result' id='{id}' to='{from}'>{query}</iq>"))
        .await
}

/// Issue 14, must-show 3: alice sends a burst of PEP publishes to n3 (pipelined, not
/// waiting for answers) and n3 is SIGKILLed right after, with publishes answered, handled
/// and in flight. Every publish alice got a result for is stored:
/// read back from a survivor, none is missing. Bob, on n1 with `+notify` in his caps,
/// keeps getting notifications of what alice publishes after logging in again elsewhere.
#[test]
fn acknowledged_pep_publishes_survive_their_nodes_death() {
    let _machine = shared_machine();
    const NODE: &str = "urn:xmpp:tmp:count";
    const BEFORE: usize = 40;
    const DURING: usize = 40;
    must(|| {
        let (mut pool, _plugins) = pool_with_plugins(3, &["pubsub"], &[])?;
        pool.nodes[2].wait_log(0, "pool link up", Duration::from_secs(10))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        let rt = support::rt();
        let (alice_bare, bob_bare) = (jid("alice"), jid("bob"));
        rt.block_on(async {
            let mut alice = login(&pool.nodes[2], "alice").await?;
            let mut bob = login(&pool.nodes[0], "bob").await?;
            subscribe_both(&mut alice, &alice_bare, &mut bob, &bob_bare).await?;
            announce_caps(&mut bob, &[&format!("{NODE}+notify")]).await?;
            // A first publish, answered and notified: the node exists and bob's caps are known.
            let keep = "<publish-options><x xmlns='jabber:x:data' type='submit'>\
                <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
                <field var='pubsub#max_items'><value>max</value></field></x></publish-options>";
            let publish = |id: &str| {
                format!(
                    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{NODE}'>\
                     <item id='{id}'><n xmlns='{NODE}'>{id}</n></item></publish>{keep}</pubsub>"
                )
            };
            let first = alice.iq("set", None, &publish("first")).await?;
            ensure!(first.attr("type") == Some("result"), "the first publish: {}", first.raw);
            let item_is = |e: &support::xml::Element, id: &str| {
                e.local == "message" && e.find("item").and_then(|i| i.attr("id")) == Some(id)
            };
            bob.wait_for(Duration::from_secs(10), "the notification of the first publish", |e| {
                item_is(e, "first")
            })
            .await?;

            // A burst of pipelined publishes; n3 dies with part of it answered, part handled
            // and unanswered, part unread.
            let mut sent = Vec::new();
            let mut acked = vec!["first".to_string()];
            for i in 0..BEFORE + DURING {
                if i == BEFORE {
                    // The kill comes once the burst is being answered.
                    let quarter = format!("p{}", BEFORE / 4);
                    let answered = alice
                        .wait_for(Duration::from_secs(10), "an answer within the burst", |e| {
                            e.local == "iq" && e.attr("id") == Some(quarter.as_str())
                        })
                        .await?;
                    ensure!(answered.attr("type") == Some("result"), "a publish: {}", answered.raw);
                    acked.push(quarter);
                    pool.nodes[2].kill();
                }
                if i >= BEFORE {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let id = format!("p{i}");
                if alice
                    .send(format!("<iq type='set' id='{id}'>{}</iq>", publish(&id)))
                    .await
                    .is_err()
                {
                    break;
                }
                sent.push(id);
            }
            // Whatever answers reached alice before her node died.
            while let Ok(Some(support::xml::Event::Element(e))) = alice.next_event(Duration::from_secs(2)).await {
                if e.local == "iq" && e.attr("type") == Some("result") {
                    acked.extend(e.attr("id").map(str::to_string));
                }
            }
            acked.extend(
                alice
                    .backlog
                    .iter()
                    .filter(|e| e.local == "iq" && e.attr("type") == Some("result"))
                    .filter_map(|e| e.attr("id").map(str::to_string)),
            );
            acked.sort();
            acked.dedup();
            eprintln!("{} publishes sent, {} acknowledged before n3 died", sent.len() + 1, acked.len());
            ensure!(acked.len() > 1, "some publishes were acknowledged before the kill");

            // Alice again, on a survivor: every acknowledged item is there.
            let mut alice = login(&pool.nodes[1], "alice").await?;
            let items = alice
                .iq(
                    "get",
                    None,
                    &format!("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{NODE}'/></pubsub>"),
                )
                .await?;
            ensure!(items.attr("type") == Some("result"), "items from a survivor: {}", items.raw);
            let stored: Vec<String> = items
                .find("items")
                .map(|i| i.elements().filter_map(|e| e.attr("id").map(str::to_string)).collect())
                .unwrap_or_default();
            let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(id)).collect();
            ensure!(lost.is_empty(), "acknowledged publishes lost: {lost:?} (stored {stored:?})");
            eprintln!("{} items stored, every acknowledged one among them", stored.len());

            // Notifications to bob (on a survivor) go on.
            let after = alice.iq("set", None, &publish("after")).await?;
            ensure!(after.attr("type") == Some("result"), "a publish on the survivor: {}", after.raw);
            bob.wait_for(Duration::from_secs(10), "the notification of a publish after the failover", |e| {
                item_is(e, "after")
            })
            .await?;
            anyhow::Ok(())
        })?;
        Ok(())
    });
}

/// Mutual presence subscription between two raw clients (RFC 6121 §3), then both
/// re-send available presence so each sees the other.
async fn subscribe_both(
    a: &mut support::raw::RawConn,
    a_bare: &str,
    b: &mut support::raw::RawConn,
    b_bare: &str,
) -> Result<()> {
    subscribe_one_way(a, a_bare, b, b_bare).await?;
    subscribe_one_way(b, b_bare, a, a_bare).await?;
    a.send("<presence/>").await?;
    b.send("<presence/>").await?;
    Ok(())
}

/// `from` asks `to` for a subscription, `to` approves.
async fn subscribe_one_way(
    from: &mut support::raw::RawConn,
    from_bare: &str,
    to: &mut support::raw::RawConn,
    to_bare: &str,
) -> Result<()> {
    from.send(format!("<presence to='{to_bare}' type='subscribe'/>"))
        .await?;
    to.wait_for(Duration::from_secs(10), "subscription request", |e| {
        e.local == "presence" && e.attr("type") == Some("subscribe")
    })
    .await?;
    to.send(format!("<presence to='{from_bare}' type='subscribed'/>"))
        .await?;
    from.wait_for(Duration::from_secs(10), "subscription approval", |e| {
        e.local == "presence" && e.attr("type") == Some("subscribed")
    })
    .await?;
    Ok(())
}

/// Issue 4, must-show 2: while clients on all three nodes exchange messages, n2 is
/// killed with SIGKILL. Its user's contact sees unavailable presence within the lease plus
/// a margin; messages sent to that user during the outage reach them when they log in on
/// a survivor; counting sent against received (stored ones included): none lost, none
/// duplicated.
#[test]
fn failover_loses_nothing() {
    let _machine = shared_machine();
    const BEFORE: usize = 100;
    const DURING: usize = 100;
    must(|| {
        let mut pool = TestPool::start(3)?;
        let rt = support::rt();
        rt.block_on(async {
            let mut alice = login(&pool.nodes[0], "alice").await?;
            let mut bob = login(&pool.nodes[1], "bob").await?;
            let mut carol = login(&pool.nodes[2], "carol").await?;
            wait_routable(&mut alice, &mut bob, &format!("{}/raw", jid("bob"))).await?;
            wait_routable(&mut bob, &mut alice, &format!("{}/raw", jid("alice"))).await?;
            wait_routable(&mut carol, &mut alice, &format!("{}/raw", jid("alice"))).await?;
            subscribe_both(&mut alice, &jid("alice"), &mut bob, &jid("bob")).await?;
            alice
                .wait_for(Duration::from_secs(10), "bob's presence", |e| {
                    e.local == "presence"
                        && e.attr("type").is_none()
                        && e.attr("from") == Some(&format!("{}/raw", jid("bob")))
                })
                .await?;

            // Traffic on all nodes: alice (n1) and carol (n3) write to bob (n2), bob to
            // alice; halfway through, n2 is killed.
            let mut sent_to_bob = Vec::new();
            let mut killed_at = Instant::now();
            for i in 0..BEFORE + DURING {
                if i == BEFORE {
                    pool.nodes[1].kill();
                    killed_at = Instant::now();
                }
                let (sender, tag) = if i % 2 == 0 {
                    (&mut alice, "alice")
                } else {
                    (&mut carol, "carol")
                };
                let body = format!("{tag} to bob #{i}");
                sender.message(&jid("bob"), &body).await?;
                sent_to_bob.push(body);
                if i < BEFORE {
                    bob.message(&jid("alice"), &format!("bob to alice #{i}")).await?;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }

            // Bob's stream from the dead node: what reached him before it died.
            let mut received = bob.collect_bodies(Duration::from_secs(2)).await;
            // Alice hears that bob is gone within the lease plus a margin.
            alice
                .wait_for(
                    Duration::from_millis(LEASE_MS + 5_000),
                    "bob's unavailable presence",
                    |e| {
                        e.local == "presence"
                            && e.attr("type") == Some("unavailable")
                            && e.attr("from") == Some(&format!("{}/raw", jid("bob")))
                    },
                )
                .await?;
            eprintln!(
                "alice saw bob unavailable {:?} after the kill (lease {LEASE_MS} ms)",
                killed_at.elapsed()
            );
            // Everything bob sent before the kill reached alice.
            for i in 0..BEFORE {
                alice.expect_message(&format!("bob to alice #{i}")).await?;
            }

            // Bob comes back on a survivor and gets the rest from offline storage.
            let mut bob = login(&pool.nodes[2], "bob").await?;
            received.extend(bob.collect_bodies(Duration::from_secs(3)).await);
            each_arrived_once(&sent_to_bob, &received)?;
            anyhow::Ok(())
        })?;
        Ok(())
    });
}

/// Issue 4, must-show 3: n3 is cut off from PostgreSQL and from its peers (TCP proxies
/// that stop forwarding). It fences itself — its clients' streams end with
/// `<system-shutdown/>` — before the survivors declare it dead; messages sent to its user
/// meanwhile wait offline and arrive, once each, when the user logs in on a survivor.
/// Healed, n3 rejoins under a new epoch and serves again.
#[test]
fn partitioned_node_fences_itself() {
    let _machine = shared_machine();
    const DURING: usize = 50;
    must(|| {
        let proxies = std::cell::RefCell::new(Vec::new());
        let mut pool = TestPool::start_with(3, &|i, opts, pg| {
            if i == 2 {
                let pg_addr: SocketAddr = format!(
                    "127.0.0.1:{}",
                    pg.url().rsplit(':').next().unwrap().split('/').next().unwrap()
                )
                .parse()?;
                let db = support::proxy::Proxy::start(opts.ip, pg_addr)?;
                opts.shared_store = Some(pg.url().replace(&pg_addr.to_string(), &db.addr.to_string()));
                let node = opts.pool.as_mut().unwrap();
                let link = support::proxy::Proxy::start(opts.ip, node.link)?;
                node.advertise = Some(link.addr);
                proxies.borrow_mut().extend([db, link]);
            }
            Ok(())
        })?;
        let proxies = proxies.into_inner();
        let rt = support::rt();
        rt.block_on(async {
            let mut alice = login(&pool.nodes[0], "alice").await?;
            let mut bob = login(&pool.nodes[2], "bob").await?;
            wait_routable(&mut alice, &mut bob, &format!("{}/raw", jid("bob"))).await?;
            wait_routable(&mut bob, &mut alice, &format!("{}/raw", jid("alice"))).await?;
            subscribe_both(&mut alice, &jid("alice"), &mut bob, &jid("bob")).await?;

            for p in &proxies {
                p.blackhole();
            }
            let cut_at = Instant::now();
            let mut sent = Vec::new();
            for i in 0..DURING {
                let body = format!("during the partition #{i}");
                alice.message(&jid("bob"), &body).await?;
                sent.push(body);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // The isolated node stops serving before its lease can run out elsewhere.
            let report = bob.expect_stream_error(Duration::from_millis(LEASE_MS + 3_000)).await;
            report.assert_condition(&["system-shutdown"], "bob's stream on the fenced node")?;
            eprintln!("n3 fenced itself {:?} after the cut", cut_at.elapsed());
            alice
                .wait_for(
                    Duration::from_millis(LEASE_MS + 5_000),
                    "bob's unavailable presence",
                    |e| {
                        e.local == "presence"
                            && e.attr("type") == Some("unavailable")
                            && e.attr("from") == Some(&format!("{}/raw", jid("bob")))
                    },
                )
                .await?;
            eprintln!("alice saw bob unavailable {:?} after the cut", cut_at.elapsed());
            ensure!(pool.node_state("n3")?.0 == "dead", "n3 should be declared dead");

            let mut bob = login(&pool.nodes[1], "bob").await?;
            let received = bob.collect_bodies(Duration::from_secs(3)).await;
            each_arrived_once(&sent, &received)?;

            // Healed: n3 rejoins under a new epoch and serves again.
            for p in &proxies {
                p.heal();
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (state, epoch) = pool.node_state("n3")?;
                if state == "live" && epoch == 2 {
                    break;
                }
                ensure!(Instant::now() < deadline, "n3 did not rejoin: {state} epoch {epoch}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let mut carol = login(&pool.nodes[2], "carol").await?;
            wait_routable(&mut alice, &mut carol, &format!("{}/raw", jid("carol"))).await?;
            alice
                .message(&format!("{}/raw", jid("carol")), "after the heal")
                .await?;
            carol.expect_message("after the heal").await?;
            anyhow::Ok(())
        })?;
        let _ = &mut pool;
        Ok(())
    });
}

/// Open a TLS connection to a node's pool port with `config` (as node `server_id`).
async fn tls_to_link(
    addr: SocketAddr,
    server_id: &str,
    config: std::sync::Arc<rustls::ClientConfig>,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = poolxmpp::pool::pki::server_name(server_id).map_err(std::io::Error::other)?;
    tokio_rustls::TlsConnector::from(config).connect(name, tcp).await
}

/// A length-prefixed frame with raw JSON (or garbage).
fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// Issue 4, bad input on pool links: no client certificate, a certificate from another CA,
/// a valid certificate presented under another node's id, and a garbled frame after a
/// valid hello are each refused with a clear log line; the pool carries on.
#[test]
fn pool_links_refuse_strangers_and_garbage() {
    let _machine = shared_machine();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    must(|| {
        let pool = TestPool::start(2)?;
        let n2 = &pool.nodes[1];
        let n2_link = n2.opts.pool.as_ref().unwrap().link;
        let tls_dir = n2.opts.pool.as_ref().unwrap().tls_dir.clone();
        let other = tempfile::tempdir()?;
        let out = std::process::Command::new(support::server_binary())
            .args(["pool", "init", "--dir"])
            .arg(other.path())
            .args(["--nodes", "n0"])
            .output()?;
        ensure!(out.status.success(), "second pool init failed");
        let ours = poolxmpp::pool::pki::LinkTls::load(&tls_dir, "n1")?;
        let theirs = poolxmpp::pool::pki::LinkTls::load(other.path(), "n0")?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut std::fs::read(tls_dir.join("ca.crt"))?.as_slice()) {
            roots.add(cert?)?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut anonymous = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        anonymous.alpn_protocols = vec![poolxmpp::pool::pki::ALPN.to_vec()];

        let rt = support::rt();
        rt.block_on(async {
            // 1. No client certificate: the handshake (or the first read) fails.
            if let Ok(mut s) = tls_to_link(n2_link, "n2", std::sync::Arc::new(anonymous)).await {
                let _ = s.write_all(&raw_frame(br#"{"t":"hello","node":"n1","epoch":1}"#)).await;
                let mut buf = [0u8; 16];
                ensure!(
                    !matches!(s.read(&mut buf).await, Ok(n) if n > 0),
                    "a peer without a certificate got an answer"
                );
            }
            // 2. A certificate from another pool's CA.
            if let Ok(mut s) = tls_to_link(n2_link, "n2", theirs.client.clone()).await {
                let _ = s.write_all(&raw_frame(br#"{"t":"hello","node":"n0","epoch":1}"#)).await;
                let mut buf = [0u8; 16];
                ensure!(
                    !matches!(s.read(&mut buf).await, Ok(n) if n > 0),
                    "a peer with a foreign certificate got an answer"
                );
            }
            // 3. n1's certificate, claiming to be n0.
            let mut s = tls_to_link(n2_link, "n2", ours.client.clone()).await?;
            s.write_all(&raw_frame(br#"{"t":"hello","node":"n0","epoch":1}"#))
                .await?;
            let mut buf = [0u8; 16];
            ensure!(
                !matches!(s.read(&mut buf).await, Ok(n) if n > 0),
                "a certificate for n1 was accepted as n0"
            );
            // 4. A valid hello, then garbage.
            let mut s = tls_to_link(n2_link, "n2", ours.client.clone()).await?;
            s.write_all(&raw_frame(br#"{"t":"hello","node":"n1","epoch":1}"#))
                .await?;
            let mut len = [0u8; 4];
            s.read_exact(&mut len).await?;
            let mut hello = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut hello).await?;
            s.write_all(&raw_frame(b"this is not a frame")).await?;
            s.write_all(&[0xff; 64]).await?;
            let _ = s.read(&mut buf).await;
            anyhow::Ok(())
        })?;
        n2.wait_log(0, "certificate does not belong to node", Duration::from_secs(5))?;
        n2.wait_log(0, "garbled frame", Duration::from_secs(5))?;
        ensure!(
            n2.log().matches("refused a pool link").count() >= 3,
            "refusals:\n{}",
            n2.log_tail(30)
        );

        // The pool carries on: n1 re-establishes its link and messages flow.
        rt.block_on(async {
            let mut alice = login(&pool.nodes[0], "alice").await?;
            let mut bob = login(&pool.nodes[1], "bob").await?;
            wait_routable(&mut alice, &mut bob, &format!("{}/raw", jid("bob"))).await?;
            alice.message(&format!("{}/raw", jid("bob")), "still linked").await?;
            bob.expect_message("still linked").await?;
            anyhow::Ok(())
        })?;
        Ok(())
    });
}

/// Issue 4, ownership for distributed features: a key is taken only from a holder whose
/// epoch is no longer live, and every change of hands raises the fencing token, so the
/// presumed-dead owner is recognisably stale.
#[test]
fn ownership_moves_on_failover_with_fencing() {
    let _machine = shared_machine();
    use poolxmpp::pool::ownership::{claim, still_owner};
    must(|| {
        let mut pool = TestPool::start(3)?;
        let rt = support::rt();
        let db = rt.block_on(poolxmpp::store::pool::PoolDb::connect(
            &pool.pg.url(),
            2,
            Duration::from_secs(30),
        ))?;
        let key = "room@conference.localhost";
        rt.block_on(async {
            let first = claim(&db, key, "n2", 1).await?;
            ensure!(first.node_id == "n2" && first.fence == 1, "{first:?}");
            let other = claim(&db, key, "n1", 1).await?;
            ensure!(other == first, "a live owner keeps its key: {other:?}");
            let again = claim(&db, key, "n2", 1).await?;
            ensure!(again == first, "re-claiming your own key changes nothing: {again:?}");
            anyhow::Ok(())
        })?;
        pool.nodes[1].kill();
        pool.wait_state("n2", "dead", Duration::from_millis(LEASE_MS + 5_000))?;
        rt.block_on(async {
            let taken = claim(&db, key, "n1", 1).await?;
            ensure!(
                taken.node_id == "n1" && taken.fence == 2,
                "a survivor takes the key: {taken:?}"
            );
            ensure!(
                !still_owner(&db, key, "n2", 1, 1).await?,
                "the dead owner must be stale"
            );
            ensure!(still_owner(&db, key, "n1", 1, 2).await?);
            anyhow::Ok(())
        })?;
        pool.nodes[1].start_again()?;
        rt.block_on(async {
            let back = claim(&db, key, "n2", 2).await?;
            ensure!(
                back.node_id == "n1" && back.fence == 2,
                "a rejoined node does not snatch a live owner's key: {back:?}"
            );
            anyhow::Ok(())
        })?;
        Ok(())
    });
}

/// Log in, retrying (with jitter) as long as the server refuses with the retryable
/// `<resource-constraint/>`. Returns the number of refusals, or the first other failure.
async fn login_with_retry(
    addr: SocketAddr,
    user: &str,
    resource: &str,
    deadline: Instant,
) -> Result<(support::raw::RawConn, u32)> {
    let mut refusals = 0;
    loop {
        match support::raw::RawConn::login(addr, support::DOMAIN, user, STORM_PASSWORD, resource).await {
            Ok(c) => return Ok((c, refusals)),
            Err(e) if format!("{e:#}").contains("resource-constraint") && Instant::now() < deadline => {
                refusals += 1;
                let jitter = (resource.len() as u64 * 37 + refusals as u64 * 101) % 400;
                tokio::time::sleep(Duration::from_millis(200 + jitter)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

const STORM_PASSWORD: &str = "storm-pw";
const STORM_USERS: usize = 100;
const STORM_SESSIONS: usize = 2_000;

/// Issue 4, must-show 4: a node holding 2,000 sessions is killed and all its clients
/// reconnect to the survivors at once. Every client is back within a bounded time, no
/// login fails except with the retryable `<resource-constraint/>` of admission control,
/// and PostgreSQL stays within its connection limit.
#[test]
fn reconnect_storm_after_a_node_dies() {
    let _machine = whole_machine();
    // 2,000 client sockets in this process: take the hard open-file limit, as the server does.
    poolxmpp::daemon::raise_open_file_limit();
    must(|| {
        // 100 accounts x 20 resources = 2,000 sessions: more than the default resource cap
        // allows, which is not what this test is about (0: no cap).
        let mut pool = TestPool::start_with(3, &|_, opts, _| {
            opts.extra_limits.push("max_resources_per_account = 0".into());
            Ok(())
        })?;
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let node = &pool.nodes[0];
                    scope.spawn(move || -> Result<()> {
                        for i in (t..STORM_USERS).step_by(8) {
                            node.cli_ok(&["user", "add", &format!("storm{i}@{}", support::DOMAIN), STORM_PASSWORD])?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles.into_iter().try_for_each(|h| h.join().expect("account thread"))
        })?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let victim = pool.nodes[2].starttls;
        let survivors = [pool.nodes[0].starttls, pool.nodes[1].starttls];
        let pg_url = pool.pg.url();
        let sessions = rt.block_on(async {
            let limiter = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
            let mut tasks = Vec::new();
            for i in 0..STORM_SESSIONS {
                let limiter = limiter.clone();
                tasks.push(tokio::spawn(async move {
                    let _slot = limiter.acquire().await;
                    let deadline = Instant::now() + Duration::from_secs(120);
                    login_with_retry(victim, &format!("storm{}", i % STORM_USERS), &format!("r{i}"), deadline).await
                }));
            }
            let mut sessions = Vec::new();
            for t in tasks {
                sessions.push(t.await??.0);
            }
            anyhow::Ok(sessions)
        })?;
        ensure!(sessions.len() == STORM_SESSIONS);

        pool.nodes[2].kill();
        drop(sessions);
        let killed_at = Instant::now();
        rt.block_on(async move {
            let db = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&pg_url).await?;
            let limit: String = sqlx::query_scalar("SHOW max_connections").fetch_one(&db).await?;
            let watch_db = db.clone();
            let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let watching = done.clone();
            let watcher = tokio::spawn(async move {
                let mut max = 0i64;
                while !watching.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(n) = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
                        .fetch_one(&watch_db)
                        .await
                    {
                        max = max.max(n);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                max
            });
            // Everyone at once: no client-side pacing beyond the server's answers.
            let mut tasks = Vec::new();
            for i in 0..STORM_SESSIONS {
                let addr = survivors[i % 2];
                tasks.push(tokio::spawn(async move {
                    let deadline = Instant::now() + Duration::from_secs(120);
                    login_with_retry(addr, &format!("storm{}", i % STORM_USERS), &format!("r{i}"), deadline).await
                }));
            }
            let mut refusals = 0u32;
            let mut back = Vec::new();
            for t in tasks {
                let (conn, r) = t.await??;
                refusals += r;
                back.push(conn);
            }
            let all_back = killed_at.elapsed();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let max = watcher.await?;
            let limit: i64 = limit.parse()?;
            eprintln!(
                "storm: {STORM_SESSIONS} clients back on the survivors {all_back:?} after the kill; {refusals} retryable refusals; \
                 at most {max} PostgreSQL connections (limit {limit})"
            );
            ensure!(max <= limit, "PostgreSQL connections {max} exceeded its limit {limit}");
            ensure!(all_back < Duration::from_secs(120));
            drop(back);
            anyhow::Ok(())
        })?;
        Ok(())
    });
}

/// Issue 5 (first part): with `redirect = true`, a user authenticated on a node that is
/// not their home gets `<see-other-host/>` naming the home's client address, only after
/// SASL, and logging in there works; a user at home is served directly; a client that
/// keeps coming back instead of following is served after `loop_limit` redirects; when the
/// home node dies, a new home is chosen among the survivors.
#[test]
fn redirect_to_home_node() {
    let _machine = shared_machine();
    must(|| {
        let mut pool = TestPool::start_with(2, &|_, opts, _| {
            opts.pool.as_mut().unwrap().redirect = true;
            Ok(())
        })?;
        pool.nodes[1].wait_log(0, "pool link up", Duration::from_secs(10))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        let home = |local: &str| {
            poolxmpp::pool::ownership::preferred_owner(&jid(local), ["n1", "n2"])
                .unwrap()
                .to_string()
        };
        let users = ["alice", "bob", "carol", "eve"];
        let away = users.iter().find(|u| home(u) == "n2").context("no user homed on n2")?;
        let at_home = users.iter().find(|u| home(u) == "n1").context("no user homed on n1")?;
        let n1 = pool.nodes[0].starttls;
        let n2 = pool.nodes[1].starttls;
        let rt = support::rt();
        rt.block_on(async {
            let target = login_or_redirect(n1, away).await?;
            ensure!(
                target == Some(n2.to_string()),
                "{away} on n1: expected see-other-host {n2}, got {target:?}"
            );
            ensure!(login_or_redirect(n2, away).await?.is_none(), "{away} is served at home");
            // A client that never follows the redirect: sent away once more (loop_limit = 2
            // within a minute), then served where it keeps coming back to.
            ensure!(login_or_redirect(n1, away).await?.is_some(), "{away}: second redirect");
            ensure!(
                login_or_redirect(n1, away).await?.is_none(),
                "{away}: a third attempt at n1 within a minute is served there"
            );
            ensure!(
                login_or_redirect(n1, at_home).await?.is_none(),
                "{at_home} is served at home"
            );
            anyhow::Ok(())
        })?;
        // The home dies: the user gets a new home among the survivors.
        pool.nodes[1].kill();
        pool.wait_state("n2", "dead", Duration::from_millis(LEASE_MS + 5_000))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        rt.block_on(async {
            ensure!(
                login_or_redirect(n1, away).await?.is_none(),
                "{away} is now served on n1"
            );
            anyhow::Ok(())
        })?;
        Ok(())
    });
}
