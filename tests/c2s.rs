//! End-to-end client-to-server tests: the real `poolxmpp` binary, real sockets, and a
//! real third-party client (slixmpp, via tests/py/scenarios.py), on SQLite and on
//! PostgreSQL. Raw-socket tests cover what slixmpp cannot do (SCRAM-*-PLUS with
//! TLS 1.3 channel binding) and exact stream-feature checks.

mod support;

use anyhow::{bail, ensure, Context, Result};
use support::raw::{Cb, RawConn, SaslOutcome};
use support::xml::{NS_BIND, NS_SASL, NS_TLS};
use support::{password, with_server, ServerOptions, Store, TestServer, DOMAIN, DOMAIN2};

/// One test per (slixmpp scenario, store): `sqlite::roster`, `postgres::roster`, ...
macro_rules! scenario_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[test]
                fn $name() {
                    super::run_scenario(super::Store::Sqlite, stringify!($name));
                }
            )*
            #[test]
            fn restart() {
                super::restart_scenario(super::Store::Sqlite);
            }
            #[test]
            fn sasl_plus() {
                super::sasl_plus(super::Store::Sqlite);
            }
            #[test]
            fn cli_user_management() {
                super::cli_user_management(super::Store::Sqlite);
            }
            #[test]
            fn offline_quota() {
                super::offline_quota(super::Store::Sqlite);
            }
            #[test]
            fn simultaneous_subscriptions() {
                super::simultaneous_subscriptions(super::Store::Sqlite);
            }
        }
        mod postgres {
            $(
                #[test]
                fn $name() {
                    super::run_scenario(super::Store::Postgres, stringify!($name));
                }
            )*
            #[test]
            fn restart() {
                super::restart_scenario(super::Store::Postgres);
            }
            #[test]
            fn sasl_plus() {
                super::sasl_plus(super::Store::Postgres);
            }
            #[test]
            fn cli_user_management() {
                super::cli_user_management(super::Store::Postgres);
            }
            #[test]
            fn offline_quota() {
                super::offline_quota(super::Store::Postgres);
            }
            #[test]
            fn simultaneous_subscriptions() {
                super::simultaneous_subscriptions(super::Store::Postgres);
            }
        }
    };
}

scenario_tests!(
    login,
    roster,
    subscription,
    presence,
    messages,
    offline,
    conflict,
    multidomain,
    subscription_order,
    unavailable_echo,
    roster_remove,
    initial_presence_order
);

fn run_scenario(store: Store, scenario: &str) {
    with_server(ServerOptions::new(store), |srv| {
        srv.scenario(scenario, None)?;
        Ok(())
    });
}

/// XEP-0198 with slixmpp on one node: enable, acknowledgements both ways, resumption after
/// a dropped TCP connection (what arrived meanwhile, what was in flight either way),
/// `<failed/>` for an unknown id, and a session not resumed within its wait ending with
/// what it never acknowledged in offline storage.
#[test]
fn stream_management() {
    let mut opts = ServerOptions::new(Store::Sqlite);
    opts.extra_limits.push("resume_timeout_secs = 3".into());
    with_server(opts, |srv| {
        srv.scenario("stream_management", None)?;
        Ok(())
    });
}

/// XEP-0280 with slixmpp on one node: received and sent copies to the resources that
/// enabled carbons, none of private messages, headlines or to disabled resources.
#[test]
fn carbons() {
    run_scenario(Store::Sqlite, "carbons");
}

/// XEP-0352 with slixmpp: while alice is inactive, bob's presence updates (coalesced) and
/// chat states wait; his message brings them first; `<active/>` brings the rest.
#[test]
fn csi() {
    run_scenario(Store::Sqlite, "csi");
}

/// offline_quota = 3: messages beyond it bounce instead of being stored.
fn offline_quota(store: Store) {
    let mut opts = ServerOptions::new(store);
    opts.offline_quota = 3;
    with_server(opts, |srv| {
        srv.scenario("offline_quota", None)?;
        Ok(())
    });
}

/// Pairs of users doing the RFC 6121 §3.1 handshake with each other at the same moment,
/// all on this one node: every item must end as `both` (issue 11; the roster item's
/// read-modify-write raced the concurrent inbound half).
fn simultaneous_subscriptions(store: Store) {
    const PAIRS: usize = 30;
    let mut opts = ServerOptions::new(store);
    opts.accounts
        .extend((0..2 * PAIRS).map(|i| (format!("pair{i:02}@{DOMAIN}"), format!("pair-pw-{i}"))));
    with_server(opts, |srv| {
        srv.scenario("simultaneous_subscriptions", None)?;
        Ok(())
    });
}

/// Accounts, rosters, subscriptions and stored messages survive a server restart.
fn restart_scenario(store: Store) {
    with_server(ServerOptions::new(store), |srv| {
        srv.scenario("restart", Some(1)).context("phase 1 (before restart)")?;
        srv.restart().context("restarting the server")?;
        srv.scenario("restart", Some(2)).context("phase 2 (after restart)")?;
        Ok(())
    });
}

/// SCRAM-SHA-1-PLUS / SCRAM-SHA-256-PLUS with tls-exporter (RFC 9266) and
/// tls-server-end-point (RFC 5929), plus the downgrade protections of RFC 5802 §6.
fn sasl_plus(store: Store) {
    // Several deliberate failures below; keep the per-IP limiter out of the way.
    let mut opts = ServerOptions::new(store);
    opts.auth_failures_per_minute = 100;
    with_server(opts, |srv| {
        support::rt().block_on(async {
            let addr = srv.starttls;
            let (probe, features) = RawConn::connect_tls(addr, DOMAIN).await?;
            let mechs = probe.mechanisms();
            for m in [
                "SCRAM-SHA-1-PLUS",
                "SCRAM-SHA-256-PLUS",
                "SCRAM-SHA-1",
                "SCRAM-SHA-256",
                "PLAIN",
            ] {
                ensure!(mechs.iter().any(|x| x == m), "{m} not offered after TLS: {mechs:?}");
            }
            // XEP-0440 advertises the usable channel-binding types.
            let cb_types: Vec<String> = features
                .find("sasl-channel-binding")
                .map(|e| {
                    e.elements()
                        .filter_map(|c| c.attr("type").map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            drop(probe);

            // Every check runs; all problems are reported together.
            let mut problems: Vec<String> = Vec::new();
            for mech in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] {
                for cb in [Cb::TlsExporter, Cb::TlsServerEndPoint] {
                    let label = format!("{mech} with {cb:?} (advertised types {cb_types:?})");
                    let (mut c, _) = RawConn::connect_tls(addr, DOMAIN).await?;
                    match c.auth_scram(mech, "alice", password("alice"), cb).await {
                        Ok(SaslOutcome::Success) => {
                            let jid = c.bind(DOMAIN, Some("plus")).await.with_context(|| label.clone())?;
                            ensure!(jid == format!("alice@{DOMAIN}/plus"), "{label}: bound {jid}");
                            c.ping(DOMAIN).await.with_context(|| label.clone())?;
                        }
                        Ok(SaslOutcome::Failure(cond, e)) => {
                            problems.push(format!("{label}: correct credentials refused: <{cond}/> {e}"))
                        }
                        Err(e) => problems.push(format!("{label}: {e:#}")),
                    }
                }
            }

            // Wrong channel-binding data must not authenticate (RFC 5802 §5.1 'c').
            let (mut c, _) = RawConn::connect_tls(addr, DOMAIN).await?;
            let out = c
                .auth_scram("SCRAM-SHA-256-PLUS", "alice", password("alice"), Cb::WrongData)
                .await?;
            if out.is_success() {
                problems.push(
                    "SCRAM-SHA-256-PLUS with forged tls-exporter data was accepted (channel binding not checked)"
                        .into(),
                );
            }

            // Downgrade protection (RFC 5802 §6): gs2 flag 'y' means "I support channel
            // binding but think you don't"; a server that offers -PLUS must fail it.
            let (mut c, _) = RawConn::connect_tls(addr, DOMAIN).await?;
            let out = c
                .auth_scram("SCRAM-SHA-256", "alice", password("alice"), Cb::ClientSupportsOnly)
                .await?;
            if out.is_success() {
                problems.push(
                    "RFC 5802 §6: SCRAM-SHA-256 with gs2 flag 'y' succeeded although the server advertises -PLUS \
                     (downgrade not detected)"
                        .into(),
                );
            }
            if !problems.is_empty() {
                bail!("channel binding problems:\n  - {}", problems.join("\n  - "));
            }

            // Plain SCRAM without channel binding ('n') still works.
            let (mut c, _) = RawConn::connect_tls(addr, DOMAIN).await?;
            let out = c
                .auth_scram("SCRAM-SHA-256", "alice", password("alice"), Cb::None)
                .await?;
            ensure!(out.is_success(), "SCRAM-SHA-256 with gs2 'n' failed: {out:?}");
            c.bind(DOMAIN, None).await?;
            c.ping(DOMAIN).await?;
            Ok(())
        })
    });
}

/// `poolxmpp user add|passwd|del|list` against the running server's store.
fn cli_user_management(store: Store) {
    with_server(ServerOptions::new(store), |srv| {
        let list = srv.cli_ok(&["user", "list"])?;
        for jid in [
            format!("alice@{DOMAIN}"),
            format!("bob@{DOMAIN}"),
            format!("dave@{DOMAIN2}"),
        ] {
            ensure!(
                list.lines().any(|l| l.trim() == jid),
                "`user list` lacks {jid}:\n{list}"
            );
        }
        let only_d2 = srv.cli_ok(&["user", "list", DOMAIN2])?;
        ensure!(
            only_d2.contains(&format!("dave@{DOMAIN2}")) && !only_d2.contains(&format!("alice@{DOMAIN}")),
            "`user list {DOMAIN2}` must list only that domain:\n{only_d2}"
        );

        let frank = format!("frank@{DOMAIN}");
        srv.cli_ok(&["user", "add", &frank, "first-pw"])?;
        // A duplicate add must fail and must not change the password.
        let dup = srv.cli(&["user", "add", &frank, "other-pw"])?;
        ensure!(!dup.status.success(), "`user add` of an existing account succeeded");
        // The config flag may also come after the subcommand (global flag).
        let out = std::process::Command::new(support::server_binary())
            .args(["user", "list", "--config"])
            .arg(&srv.config_path)
            .output()?;
        ensure!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&frank),
            "`user list --config FILE` failed: {out:?}"
        );
        // Unknown domain is refused.
        let bad = srv.cli(&["user", "add", "x@not-hosted.example", "pw"])?;
        ensure!(!bad.status.success(), "`user add` on an unhosted domain succeeded");

        let addr = srv.starttls;
        support::rt().block_on(async {
            // The running server sees the new account immediately.
            let mut c = login_ok(addr, "frank", "first-pw").await.context("login after `user add`")?;
            // Give frank a roster item so we can check it is removed with the account.
            let id = support::raw::next_id("r");
            c.send(format!(
                "<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'><item jid='alice@{DOMAIN}' name='A'/></query></iq>"
            ))
            .await?;
            c.wait_for(support::raw::READ_TIMEOUT, "roster set result", |e| e.attr("id") == Some(&id))
                .await?;
            c.send("</stream:stream>").await?;
            Ok::<_, anyhow::Error>(())
        })?;

        srv.cli_ok(&["user", "passwd", &frank, "second-pw"])?;
        support::rt().block_on(async {
            login_fails(addr, "frank", "first-pw")
                .await
                .context("old password after `user passwd`")?;
            login_ok(addr, "frank", "second-pw")
                .await
                .context("new password after `user passwd`")?;
            Ok::<_, anyhow::Error>(())
        })?;
        let missing = srv.cli(&["user", "passwd", &format!("nobody@{DOMAIN}"), "x"])?;
        ensure!(
            !missing.status.success(),
            "`user passwd` of a missing account succeeded"
        );

        srv.cli_ok(&["user", "del", &frank])?;
        let list = srv.cli_ok(&["user", "list"])?;
        ensure!(!list.contains(&frank), "deleted account still listed:\n{list}");
        support::rt().block_on(async {
            login_fails(addr, "frank", "second-pw")
                .await
                .context("login after `user del`")
        })?;

        // Re-created account starts empty (the roster went with the old account).
        srv.cli_ok(&["user", "add", &frank, "third-pw"])?;
        support::rt().block_on(async {
            let mut c = login_ok(addr, "frank", "third-pw").await?;
            let id = support::raw::next_id("r");
            c.send(format!(
                "<iq type='get' id='{id}'><query xmlns='jabber:iq:roster'/></iq>"
            ))
            .await?;
            let r = c
                .wait_for(support::raw::READ_TIMEOUT, "roster get result", |e| {
                    e.attr("id") == Some(&id)
                })
                .await?;
            let items = r.find("query").map(|q| q.elements().count()).unwrap_or(0);
            ensure!(
                items == 0,
                "re-created account inherited the deleted account's roster: {r}"
            );
            Ok(())
        })?;
        Ok(())
    });
}

async fn login_ok(addr: std::net::SocketAddr, user: &str, pw: &str) -> Result<RawConn> {
    RawConn::login(addr, DOMAIN, user, pw, "cli").await
}

async fn login_fails(addr: std::net::SocketAddr, user: &str, pw: &str) -> Result<()> {
    let (mut c, _) = RawConn::connect_tls(addr, DOMAIN).await?;
    match c.auth_plain(user, pw).await? {
        SaslOutcome::Success => bail!("login of {user} with {pw:?} unexpectedly succeeded"),
        SaslOutcome::Failure(cond, e) => {
            ensure!(
                cond == "not-authorized",
                "RFC 6120 6.5.10: expected <not-authorized/>, got {e}"
            );
            Ok(())
        }
    }
}

/// SIGTERM with clients at every stage (two bound sessions, one authenticated-to-be after
/// TLS, one still in plaintext): every stream is told `<system-shutdown/>` and closed, and
/// the process exits within the daemon's grace period (5 s for connections) — it waits
/// for its connection tasks to end rather than polling a session count.
#[test]
fn sigterm_tells_every_stream_system_shutdown() {
    with_server(ServerOptions::new(Store::Sqlite), |srv| {
        let addr = srv.starttls;
        let pid = srv.pid().context("the server runs")?;
        let rt = support::rt();
        let clients = rt.block_on(async {
            let alice = RawConn::login(addr, DOMAIN, "alice", password("alice"), "shutdown").await?;
            let mut bob = RawConn::login(addr, DOMAIN, "bob", password("bob"), "shutdown").await?;
            bob.ping(DOMAIN).await?;
            let (negotiating, _) = RawConn::connect_tls(addr, DOMAIN).await?;
            let mut plaintext = RawConn::connect(addr).await?;
            plaintext.open_stream(DOMAIN).await?;
            plaintext.read_features().await?;
            anyhow::Ok(vec![
                ("bound alice", alice),
                ("bound bob", bob),
                ("negotiating after TLS", negotiating),
                ("plaintext before STARTTLS", plaintext),
            ])
        })?;
        let signalled = std::time::Instant::now();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        ensure!(status.success(), "kill -TERM {pid} failed");
        rt.block_on(async {
            // Read all at once, as real clients would: each answers its close while the
            // server lingers for it.
            let readers: Vec<_> = clients
                .into_iter()
                .map(|(what, mut c)| {
                    tokio::spawn(async move { (what, c.expect_stream_error(std::time::Duration::from_secs(8)).await) })
                })
                .collect();
            for reader in readers {
                let (what, report) = reader.await?;
                report.assert_condition(&["system-shutdown"], what)?;
            }
            anyhow::Ok(())
        })?;
        while srv.is_running() && signalled.elapsed() < std::time::Duration::from_secs(9) {
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let took = signalled.elapsed();
        eprintln!("exited {took:?} after SIGTERM");
        ensure!(
            !srv.is_running(),
            "still running {took:?} after SIGTERM; log:\n{}",
            srv.log_tail(40)
        );
        ensure!(
            took < std::time::Duration::from_secs(6),
            "SIGTERM to exit took {took:?}, longer than the 5 s grace period; log:\n{}",
            srv.log_tail(40)
        );
        let log = srv.log();
        ensure!(
            !log.contains("did not finish"),
            "a task outlived the grace period:\n{}",
            srv.log_tail(40)
        );
        Ok(())
    });
}

/// Stream headers and features before TLS, after TLS and after SASL (RFC 6120 §4.7,
/// §5.3.1, §5.4.3.3, §6.4.6, §7), and on the direct TLS port (XEP-0368).
#[test]
fn stream_features_at_each_stage() {
    with_server(ServerOptions::new(Store::Sqlite), |srv| {
        support::rt().block_on(features_check(srv))
    });
}

async fn features_check(srv: &TestServer) -> Result<()> {
    let mut c = RawConn::connect(srv.starttls).await?;
    let header = c.open_stream(DOMAIN).await?;
    ensure!(
        header.attr("from") == Some(DOMAIN),
        "RFC 6120 4.7.1: header 'from' must be {DOMAIN}: {header}"
    );
    ensure!(
        header.attr("id").is_some_and(|id| !id.is_empty()),
        "RFC 6120 4.7.3: header needs a stream id: {header}"
    );
    ensure!(
        header.attr("version") == Some("1.0"),
        "RFC 6120 4.7.5: version must be 1.0: {header}"
    );
    ensure!(
        header.attr("xmlns") == Some("jabber:client"),
        "RFC 6120 4.8.2: content namespace must be jabber:client: {header}"
    );
    let f = c.read_features().await?;
    let tls = f
        .child("starttls", NS_TLS)
        .with_context(|| format!("RFC 6120 5.3.1: STARTTLS not offered: {f}"))?;
    if tls.child("required", NS_TLS).is_none() {
        eprintln!("NOTE: RFC 6120 5.4.1: TLS is mandatory here, <starttls/> SHOULD contain <required/>");
    }
    let pre_tls_mechs: Vec<String> = f
        .child("mechanisms", NS_SASL)
        .map(|m| m.elements().map(|e| e.text()).collect())
        .unwrap_or_default();
    ensure!(
        !pre_tls_mechs.iter().any(|m| m == "PLAIN"),
        "PLAIN must never be offered before TLS: {f}"
    );
    c.starttls(DOMAIN).await?;
    let header2 = c.open_stream(DOMAIN).await?;
    ensure!(
        header2.attr("id") != header.attr("id"),
        "RFC 6120 4.7.3: a restarted stream needs a new id ({header2})"
    );
    let f = c.read_features().await?;
    ensure!(
        f.child("starttls", NS_TLS).is_none(),
        "RFC 6120 5.4.3.3: STARTTLS must not be offered again after TLS: {f}"
    );
    let mechs = c.mechanisms();
    for m in ["SCRAM-SHA-1", "SCRAM-SHA-256", "PLAIN"] {
        ensure!(mechs.iter().any(|x| x == m), "{m} not offered after TLS: {mechs:?}");
    }
    match c.auth_scram("SCRAM-SHA-1", "bob", password("bob"), Cb::None).await? {
        SaslOutcome::Success => {}
        SaslOutcome::Failure(cond, e) => bail!("SCRAM-SHA-1 login failed: <{cond}/> {e}"),
    }
    c.open_stream(DOMAIN).await?;
    let f = c.read_features().await?;
    ensure!(
        f.child("mechanisms", NS_SASL).is_none(),
        "RFC 6120 6.4.6: SASL must not be offered again after success: {f}"
    );
    ensure!(
        f.child("bind", NS_BIND).is_some(),
        "RFC 6120 7.2: bind not offered: {f}"
    );
    // bind() re-opens the stream itself, so do the bind IQ by hand here.
    let id = support::raw::next_id("bind");
    c.send(format!("<iq type='set' id='{id}'><bind xmlns='{NS_BIND}'/></iq>"))
        .await?;
    let r = c
        .wait_for(support::raw::READ_TIMEOUT, "bind result", |e| e.attr("id") == Some(&id))
        .await?;
    let jid = r.find("jid").map(|j| j.text()).unwrap_or_default();
    let resource = jid.strip_prefix(&format!("bob@{DOMAIN}/")).unwrap_or("");
    ensure!(
        !resource.is_empty(),
        "RFC 6120 7.6: the server must generate a resource when none is requested: {r}"
    );
    c.ping(DOMAIN).await?;

    // XEP-0368 direct TLS: no STARTTLS, SASL straight away.
    let mut d = RawConn::connect_direct_tls(srv.direct_tls, DOMAIN).await?;
    d.open_stream(DOMAIN).await?;
    let f = d.read_features().await?;
    ensure!(
        f.child("starttls", NS_TLS).is_none(),
        "direct TLS must not offer STARTTLS: {f}"
    );
    ensure!(
        d.mechanisms().iter().any(|m| m == "SCRAM-SHA-256"),
        "direct TLS: SCRAM-SHA-256 not offered: {f}"
    );
    match d.auth_plain("bob", password("bob")).await? {
        SaslOutcome::Success => {}
        SaslOutcome::Failure(cond, e) => bail!("direct TLS PLAIN login failed: <{cond}/> {e}"),
    }
    d.bind(DOMAIN, Some("direct")).await?;
    d.ping(DOMAIN).await?;
    Ok(())
}
