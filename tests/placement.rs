//! Placement and the redirect server (issue 5): real pool nodes, the real stand-alone
//! redirector (`poolxmpp redirect`), strategy plugins built by `poolxmpp plugin build`,
//! and slixmpp clients that follow `<see-other-host/>`.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use support::pool::{each_arrived_once, login_following, must, TestPool, HEARTBEAT_MS, LEASE_MS};
use support::TestServer;

/// Accounts beyond the harness's defaults, so placement has users to spread.
fn extra_accounts(prefix: &str, n: usize) -> Vec<(String, String)> {
    (1..=n)
        .map(|i| (format!("{prefix}{i}@{}", support::DOMAIN), format!("pw-{prefix}{i}")))
        .collect()
}

/// A pool of `n` nodes whose first node also creates `accounts`.
fn pool_with(n: usize, accounts: &[(String, String)]) -> Result<TestPool> {
    TestPool::start_with(n, &|_, opts, _| {
        opts.accounts.extend(accounts.iter().cloned());
        Ok(())
    })
}

/// Install the built plugin `component` into `dir` under the name `name`, with extra
/// `[config]` entries: an operator's deploy (manifest first, each file renamed into place).
fn install_strategy(dir: &Path, component: &str, name: &str, config: &[(&str, &str)]) -> Result<()> {
    let built = support::plugins::built()?;
    let text = std::fs::read_to_string(built.join(format!("{component}.toml")))?;
    let mut manifest: toml::Table = text.parse()?;
    manifest.insert("name".into(), name.into());
    let table = manifest
        .entry("config")
        .or_insert_with(|| toml::Value::Table(Default::default()));
    for (k, v) in config {
        table
            .as_table_mut()
            .context("[config] is not a table")?
            .insert(k.to_string(), toml::Value::String(v.to_string()));
    }
    std::fs::create_dir_all(dir)?;
    support::plugins::replace(
        &dir.join(format!("{name}.toml")),
        toml::to_string(&manifest)?.as_bytes(),
    )?;
    support::plugins::replace(
        &dir.join(format!("{name}.wasm")),
        &std::fs::read(built.join(format!("{component}.wasm")))?,
    )
}

/// Start the redirector with `component` installed as its strategy plugin `strategy`;
/// returns it and its plugins directory (to replace the strategy later).
fn redirector_with_strategy(
    pool: &TestPool,
    component: &str,
    config: &[(&str, &str)],
) -> Result<(TestServer, std::path::PathBuf)> {
    let plugins = pool.dir.path().join("redirector-plugins");
    install_strategy(&plugins, component, "strategy", config)?;
    let redirector = pool.redirector(&["strategy = \"strategy\""], Some(&plugins))?;
    Ok((redirector, plugins))
}

/// Run a slixmpp scenario against the redirector with these accounts.
fn scenario_via(
    redirector: &TestServer,
    scenario: &str,
    accounts: &[(String, String)],
    extra: &[String],
) -> Result<String> {
    let mut args = redirector.scenario_args_for(scenario, accounts);
    args.extend(extra.iter().cloned());
    support::python::run_scenario(&args, redirector.dir(), support::SCENARIO_TIMEOUT)
}

/// `PLACED user host:port` lines of the placed_login scenario.
fn placements(out: &str) -> HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.strip_prefix("PLACED "))
        .filter_map(|l| l.split_once(' '))
        .map(|(u, a)| (u.to_string(), a.to_string()))
        .collect()
}

/// Must show 1: slixmpp clients connecting to the redirector land on their home nodes
/// (as `pool status --users` records them); replacing the strategy plugin by hot reload
/// changes where new logins go, while sessions already up keep working.
#[test]
fn redirector_places_clients_and_strategy_reloads() {
    must(|| {
        let first = extra_accounts("p", 6);
        let later = extra_accounts("q", 4);
        let all: Vec<_> = first.iter().chain(&later).cloned().collect();
        let pool = pool_with(3, &all)?;
        let (redirector, plugins) = redirector_with_strategy(&pool, "placement-hashing", &[])?;

        let out = scenario_via(&redirector, "placed_login", &first, &[])?;
        let placed = placements(&out);
        ensure!(placed.len() == first.len(), "not every user was placed: {out}");
        let homes = pool.homes()?;
        for (user, addr) in &placed {
            let node = pool
                .node_at(addr)
                .with_context(|| format!("{user} landed on {addr}, not a node"))?;
            let home = homes
                .iter()
                .find(|h| &h.0 == user)
                .with_context(|| format!("no home for {user}"))?;
            ensure!(home.1 == node, "{user} landed on {node} but its home is {}", home.1);
            ensure!(home.2 == "strategy", "{user} placed by {:?}, not the plugin", home.2);
        }
        let used: std::collections::HashSet<_> = placed.values().collect();
        ensure!(used.len() >= 2, "hashing put all six users on one node: {placed:?}");

        // Two sessions that must survive the strategy change.
        let rt = support::rt();
        let (p1, p2) = (&first[0], &first[1]);
        let (mut a, mut b) = rt.block_on(async {
            let (a, _) = login_following(redirector.starttls, &p1.0, &p1.1).await?;
            let (b, _) = login_following(redirector.starttls, &p2.0, &p2.1).await?;
            anyhow::Ok((a, b))
        })?;
        rt.block_on(async {
            a.message(&p2.0, "before the reload").await?;
            b.expect_message("before the reload").await?;
            anyhow::Ok(())
        })?;

        let mark = redirector.log().len();
        install_strategy(&plugins, "pin-placement", "strategy", &[("node", "n3")])?;
        redirector.wait_log(mark, "plugin loaded", Duration::from_secs(30))?;

        let out = scenario_via(&redirector, "placed_login", &later, &[])?;
        for (user, addr) in placements(&out) {
            ensure!(
                pool.node_at(&addr).as_deref() == Some("n3"),
                "after the reload {user} should land on n3, got {addr}"
            );
        }
        rt.block_on(async {
            b.message(&p1.0, "after the reload").await?;
            a.expect_message("after the reload").await?;
            anyhow::Ok(())
        })?;
        // The users placed before keep their homes (sticky while their node lives).
        let again = pool.homes()?;
        for h in homes.iter().filter(|h| placed.contains_key(&h.0)) {
            ensure!(again.contains(h), "{} lost its home after the reload", h.0);
        }
        Ok(())
    });
}

/// Must show 4: a strategy that traps, loops or names a node that does not exist makes
/// the redirector fall back to hashing (recorded and counted), and the client still gets in.
#[test]
fn failing_strategies_fall_back_to_hashing() {
    must(|| {
        let users = extra_accounts("f", 3);
        let pool = pool_with(2, &users)?;
        let (redirector, plugins) = redirector_with_strategy(&pool, "bad-placement-trap", &[])?;
        let rt = support::rt();
        let modes = ["bad-placement-trap", "bad-placement-loop", "bad-placement-unknown"];
        for (i, ((jid, pw), mode)) in users.iter().zip(modes).enumerate() {
            if i > 0 {
                let mark = redirector.log().len();
                install_strategy(&plugins, mode, "strategy", &[])?;
                redirector.wait_log(mark, "plugin loaded", Duration::from_secs(30))?;
            }
            let started = std::time::Instant::now();
            let (mut conn, at) = rt.block_on(login_following(redirector.starttls, jid, pw))?;
            ensure!(
                started.elapsed() < Duration::from_secs(10),
                "{mode}: the login took {:?}",
                started.elapsed()
            );
            ensure!(pool.node_at(&at.to_string()).is_some(), "{mode}: landed on {at}");
            rt.block_on(conn.ping(support::DOMAIN))?;
            let homes = pool.homes()?;
            let home = homes.iter().find(|h| &h.0 == jid).context("no home recorded")?;
            ensure!(home.2 == "hashing", "{mode}: placed by {:?}", home.2);
            eprintln!("{mode}: fell back ({})", home.3);
        }
        let stats: serde_json::Value = serde_json::from_str(&redirector.cli_ok(&["stats"])?)?;
        ensure!(
            stats["placement"]["fallbacks"].as_u64() == Some(3),
            "three fall-backs expected: {stats}"
        );
        redirector.wait_log(0, "falling back to hashing", Duration::from_secs(1))?;
        Ok(())
    });
}

/// Must show 2: after a node is killed, its users coming back through the redirector land
/// on survivors, and the messages sent to them meanwhile reach them there.
#[test]
fn failover_through_the_redirector() {
    must(|| {
        let users = extra_accounts("r", 6);
        let mut pool = pool_with(3, &users)?;
        let redirector = pool.redirector(&[], None)?;
        let rt = support::rt();
        let mut conns = Vec::new();
        for (jid, pw) in &users {
            let (c, at) = rt.block_on(login_following(redirector.starttls, jid, pw))?;
            conns.push((
                jid.clone(),
                pw.clone(),
                c,
                pool.node_at(&at.to_string()).context("landed nowhere")?,
            ));
        }
        // Kill the node with the most of them; someone elsewhere writes to them.
        let mut per_node: HashMap<String, usize> = HashMap::new();
        for (_, _, _, node) in &conns {
            *per_node.entry(node.clone()).or_default() += 1;
        }
        let victim = per_node
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(n, _)| n.clone())
            .unwrap();
        let idx = pool
            .nodes
            .iter()
            .position(|n| n.opts.pool.as_ref().unwrap().node_id == victim)
            .unwrap();
        let (victims, mut others): (Vec<_>, Vec<_>) = conns.into_iter().partition(|c| c.3 == victim);
        ensure!(!others.is_empty(), "every user landed on {victim}");
        pool.nodes[idx].kill();
        pool.wait_state(&victim, "dead", Duration::from_millis(LEASE_MS + 5_000))?;
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        let mut sent = Vec::new();
        rt.block_on(async {
            let sender = &mut others[0].2;
            for (jid, ..) in &victims {
                for k in 0..5 {
                    let body = format!("while {victim} was down: {jid} #{k}");
                    sender.message(jid, &body).await?;
                    sent.push(body);
                }
            }
            sender.ping(support::DOMAIN).await?;
            anyhow::Ok(())
        })?;
        let mut received = Vec::new();
        for (jid, pw, _, _) in &victims {
            let (mut c, at) = rt.block_on(login_following(redirector.starttls, jid, pw))?;
            let node = pool.node_at(&at.to_string()).context("landed nowhere")?;
            ensure!(node != victim, "{jid} was sent to the dead node");
            received.extend(rt.block_on(c.collect_bodies(Duration::from_secs(2))));
        }
        each_arrived_once(&sent, &received)
    });
}

/// Must show 5: draining a node with connected slixmpp clients moves every one of them to
/// other nodes (they follow `<see-other-host/>`), no message sent meanwhile is lost, and
/// the drained node ends with no sessions.
#[test]
fn drain_moves_every_session_without_loss() {
    must(|| {
        let users = extra_accounts("d", 8);
        let pool = pool_with(3, &users)?;
        let redirector = pool.redirector(&[], None)?;
        // Drain the home of the first user: some users are there, others elsewhere.
        let rt = support::rt();
        let (first, pw) = &users[0];
        let (conn, at) = rt.block_on(login_following(redirector.starttls, first, pw))?;
        drop(conn);
        let drained = pool.node_at(&at.to_string()).context("landed nowhere")?;
        let drained_node = pool
            .nodes
            .iter()
            .find(|n| n.opts.pool.as_ref().unwrap().node_id == drained)
            .unwrap();
        let drain_cmd = format!(
            "{} --config {} pool drain {drained}",
            support::server_binary().display(),
            drained_node.config_path.display()
        );
        let out = scenario_via(
            &redirector,
            "drain",
            &users,
            &["--drain-cmd".into(), drain_cmd, "--drained".into(), at.to_string()],
        )?;
        let summary = out
            .lines()
            .find(|l| l.starts_with("DRAINED"))
            .context("no drain summary")?;
        eprintln!("{summary}");
        let stats: serde_json::Value = serde_json::from_str(&drained_node.cli_ok(&["stats"])?)?;
        ensure!(
            stats["sessions"].as_u64() == Some(0),
            "{drained} still has sessions: {stats}"
        );
        ensure!(
            stats["placement"]["moved_sessions"].as_u64().unwrap_or(0) > 0,
            "no session was moved: {stats}"
        );
        // New logins avoid the drained node; undrain lets it take users again.
        let (_, at) = rt.block_on(login_following(drained_node.starttls, first, pw))?;
        ensure!(
            pool.node_at(&at.to_string()) != Some(drained.clone()),
            "a drained node served a login"
        );
        drained_node.cli_ok(&["pool", "undrain", &drained])?;
        Ok(())
    });
}

/// Live sessions move only when the operator asks: `pool rebalance` makes a node above the
/// mean send users to the homes the strategy chooses now (`<see-other-host/>`), where they
/// log in; the others keep their sessions.
#[test]
fn rebalance_moves_users_above_the_mean() {
    must(|| {
        let users = extra_accounts("b", 6);
        let pool = pool_with(2, &users)?;
        let (redirector, _) = redirector_with_strategy(&pool, "pin-placement", &[("node", "n1")])?;
        let rt = support::rt();
        let mut conns = Vec::new();
        for (jid, pw) in &users {
            let (c, at) = rt.block_on(login_following(redirector.starttls, jid, pw))?;
            ensure!(
                pool.node_at(&at.to_string()).as_deref() == Some("n1"),
                "{jid} not pinned to n1"
            );
            conns.push((jid.clone(), pw.clone(), c));
        }
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS));
        pool.nodes[0].cli_ok(&["pool", "rebalance"])?;
        let n2 = pool.nodes[1].starttls;
        // The request is seen within a heartbeat; moves are paced at 20 a second.
        std::thread::sleep(Duration::from_millis(2 * HEARTBEAT_MS + 1_000));
        let mut moved = 0;
        for (jid, pw, c) in &mut conns {
            // A moved session has a stream error waiting (after its own presence echo);
            // a kept one has nothing more to read.
            let error = loop {
                match rt.block_on(c.next_event(Duration::from_millis(300))).ok().flatten() {
                    Some(support::xml::Event::Element(e)) if e.local == "error" => break Some(e),
                    Some(_) => continue,
                    None => break None,
                }
            };
            match error {
                Some(e) => {
                    let target = e.elements().find(|x| x.local == "see-other-host").map(|x| x.text());
                    ensure!(target == Some(n2.to_string()), "{jid}: {e}");
                    let (mut again, at) = rt.block_on(login_following(n2, jid, pw))?;
                    ensure!(at == n2, "{jid} was moved to n2 but served at {at}");
                    rt.block_on(again.ping(support::DOMAIN))?;
                    moved += 1;
                }
                None => {
                    rt.block_on(c.ping(support::DOMAIN))?;
                }
            }
        }
        eprintln!("rebalance moved {moved} of {}", conns.len());
        ensure!(
            (1..=3).contains(&moved),
            "expected up to half of the six users to move, moved {moved}"
        );
        Ok(())
    });
}
