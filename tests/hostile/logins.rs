//! Hostile cases: see the list in `tests/hostile.rs`.
//!
//! Logins (issue 10, items 3, 9 and parts of 10): strangers holding connections open do not
//! stop other logins, negotiation has one deadline from accept, aborted SASL exchanges count
//! as failures, unauthenticated connections are capped per address, in-band registration
//! and password changes are throttled, an authzid naming oneself in another case is fine, and
//! stream errors arrive readable (graceful close) — before TLS too.
//!
//! Every test client comes from loopback; binding client sockets to other 127.0.0.x
//! addresses makes them different client addresses to the server.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use tokio::io::AsyncWriteExt;

use crate::support::raw::{self, next_id, RawConn, StreamErrorReport, READ_TIMEOUT};
use crate::support::witness::{logged_in, opened_plain, opened_tls, with_witness};
use crate::support::xml::{Element, Event, NS_SASL, NS_STANZAS_ERR, NS_STREAM};
use crate::support::{password, ServerOptions, Store, DOMAIN};

/// `limits.unauthenticated_per_ip` in these tests.
const CAP: usize = 8;
/// `limits.concurrent_logins` in these tests: far fewer than the strangers.
const PERMITS: usize = 4;

/// A client address other than the witness's 127.0.0.1.
fn addr(n: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, n))
}

/// Few admission permits, a small per-address cap, no address exempt from it.
fn opts() -> ServerOptions {
    let mut o = ServerOptions::new(Store::Sqlite);
    o.extra_limits = vec![
        format!("concurrent_logins = {PERMITS}"),
        "login_queue_ms = 1000".into(),
        format!("unauthenticated_per_ip = {CAP}"),
        "unthrottled_addresses = []".into(),
    ];
    o
}

fn sasl(payload: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(payload);
    format!("<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{b64}</auth>")
}

/// Issue 10 item 3: strangers holding many unauthenticated connections — idle TCP, idle
/// TLS streams, streams that abort, SCRAM exchanges left half-way, unfinished direct-TLS
/// handshakes — hold no admission permit, so a new login goes through. Beyond the
/// per-address cap, a connection is refused at once with `<policy-violation/>`.
/// Whitespace keepalives are no negotiation step: strangers who only send whitespace after
/// TLS give their login permits back like idle ones, so a new login goes through.
#[test]
fn whitespace_keepalives_do_not_hold_login_permits() {
    with_witness(opts(), |ctx| async move {
        let mut talkers = Vec::new();
        for _ in 0..2 * PERMITS {
            let (mut c, _) = RawConn::connect_tls_from(ctx.starttls, DOMAIN, addr(8)).await?;
            talkers.push(tokio::spawn(async move {
                // Bounded: 10 s of a space every 100 ms.
                for _ in 0..100 {
                    if c.send(" ").await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }));
        }
        // Longer than a permit is kept while the client makes us wait.
        tokio::time::sleep(Duration::from_millis(800)).await;
        let mut alice = logged_in(ctx, "past-whitespace")
            .await
            .context("login while strangers send whitespace keepalives after TLS")?;
        alice.ping(DOMAIN).await?;
        for t in talkers {
            t.abort();
        }
        Ok(())
    });
}

#[test]
fn strangers_holding_connections_do_not_stop_logins() {
    with_witness(opts(), |ctx| async move {
        let mut held: Vec<RawConn> = Vec::new();
        let mut raw_held = Vec::new();

        // 64 idle TCP connections from one address: CAP get in, the rest are refused.
        let mut tcp = Vec::new();
        for _ in 0..64 {
            tcp.push(RawConn::connect_from(ctx.starttls, addr(2)).await?);
        }
        for (i, c) in tcp.iter_mut().enumerate().skip(CAP) {
            c.expect_stream_error(READ_TIMEOUT).await.assert_condition(
                &["policy-violation"],
                &format!("idle TCP connection {i} over the per-address cap"),
            )?;
        }
        held.extend(tcp.into_iter().take(CAP));

        // Idle TLS streams (features read, then silence).
        for _ in 0..CAP {
            held.push(RawConn::connect_tls_from(ctx.starttls, DOMAIN, addr(3)).await?.0);
        }
        // Streams that aborted an exchange (once: three would close them).
        for _ in 0..CAP {
            let (mut c, _) = RawConn::connect_tls_from(ctx.starttls, DOMAIN, addr(4)).await?;
            c.send(format!("<abort xmlns='{NS_SASL}'/>")).await?;
            let f = c.next_element(READ_TIMEOUT, "SASL failure after <abort/>").await?;
            ensure!(f.is("failure", NS_SASL), "expected <failure/> after <abort/>, got {f}");
            held.push(c);
        }
        // SCRAM exchanges stopped after the server's challenge.
        for _ in 0..CAP {
            let (mut c, _) = RawConn::connect_tls_from(ctx.starttls, DOMAIN, addr(5)).await?;
            let first = base64::engine::general_purpose::STANDARD.encode("n,,n=alice,r=0123456789abcdef");
            c.send(format!(
                "<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>"
            ))
            .await?;
            let ch = c.next_element(READ_TIMEOUT, "SCRAM challenge").await?;
            ensure!(ch.is("challenge", NS_SASL), "expected a SCRAM challenge, got {ch}");
            held.push(c);
        }
        // Direct-TLS handshakes left unfinished: a TLS record header, then silence.
        for _ in 0..CAP {
            let mut s = raw::tcp_from(ctx.direct_tls, addr(6)).await?;
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await?;
            raw_held.push(s);
        }

        // Forty strangers against four permits: a new login still goes through, from the
        // witness's address and from a fresh one.
        let mut alice = logged_in(ctx, "after-strangers")
            .await
            .context("login while strangers hold unauthenticated connections")?;
        alice.ping(DOMAIN).await?;
        let (mut carol, _) = RawConn::connect_tls_from(ctx.starttls, DOMAIN, addr(7)).await?;
        match carol.auth_plain("carol", password("carol")).await? {
            raw::SaslOutcome::Success => {}
            raw::SaslOutcome::Failure(cond, e) => bail!("carol's login failed: <{cond}/> {e}"),
        }
        carol.bind(DOMAIN, Some("fresh-address")).await?;
        carol.ping(DOMAIN).await?;

        // The cap counts connections still negotiating: one of addr(3)'s streams going
        // away makes room for another from that address.
        let report = RawConn::connect_from(ctx.starttls, addr(3))
            .await?
            .expect_stream_error(READ_TIMEOUT)
            .await;
        report.assert_condition(&["policy-violation"], "a TLS-port connection over the per-address cap")?;
        let idx = CAP; // the first addr(3) stream in `held`
        drop(held.remove(idx));
        let mut again = None;
        let until = Instant::now() + READ_TIMEOUT;
        while again.is_none() && Instant::now() < until {
            // The server notices the close on its next read; retry until it has.
            match RawConn::connect_tls_from(ctx.starttls, DOMAIN, addr(3)).await {
                Ok((c, _)) => again = Some(c),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        ensure!(again.is_some(), "no room for addr(3) after one of its streams closed");
        drop(held);
        drop(raw_held);
        Ok(())
    });
}

/// Sends `keepalive` every `every` until the server ends the stream; fails if it is still
/// open after `limit` (the deadline was renewed by the traffic).
async fn keep_talking(
    mut c: RawConn,
    keepalive: &str,
    every: Duration,
    limit: Duration,
    what: &str,
) -> Result<StreamErrorReport> {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        ensure!(
            start.elapsed() < limit,
            "{what}: still open after {limit:?} of keepalives, so the negotiation deadline was renewed by traffic; saw {seen:?}"
        );
        if c.send(keepalive).await.is_err() {
            break;
        }
        match c.next_event(every).await {
            Ok(Some(Event::Element(e))) if e.is("error", NS_STREAM) => {
                // The rest (closing tag, close) is the report's business.
                let mut report = c.expect_stream_error(READ_TIMEOUT).await;
                report.error = Some(e);
                return Ok(report);
            }
            Ok(Some(Event::Element(e))) => seen.push(e.raw.clone()),
            Ok(Some(other)) => seen.push(format!("{other:?}")),
            Ok(None) => break,
            Err(_) => {}
        }
    }
    Ok(c.expect_stream_error(READ_TIMEOUT).await)
}

/// Issue 10 item 3: negotiation has one deadline from accept. Whitespace keepalives (before
/// and after TLS) and repeated `<abort/>`s do not extend it.
#[test]
fn negotiation_deadline_is_not_renewed_by_traffic() {
    let mut o = opts();
    o.extra_limits.push("auth_timeout_secs = 3".into());
    with_witness(o, |ctx| async move {
        let every = Duration::from_millis(300);
        let limit = Duration::from_secs(15);
        let plain = opened_plain(ctx).await?;
        let tls = opened_tls(ctx).await?;
        let aborts = opened_tls(ctx).await?;
        let abort = format!("<abort xmlns='{NS_SASL}'/>");
        let (plain, tls, aborts) = tokio::join!(
            keep_talking(plain, " ", every, limit, "whitespace before TLS"),
            keep_talking(tls, " ", every, limit, "whitespace after TLS"),
            keep_talking(aborts, &abort, every, limit, "<abort/> after <abort/>"),
        );
        plain?.assert_condition(&["connection-timeout"], "whitespace before TLS past the deadline")?;
        tls?.assert_condition(&["connection-timeout"], "whitespace after TLS past the deadline")?;
        // Three aborts close it as failed attempts, or the deadline does.
        aborts?.assert_condition(&["policy-violation", "connection-timeout"], "repeated <abort/>")?;
        Ok(())
    });
}

/// Issue 10 item 3: an `<abort/>` is a failed attempt, on its stream and for its address's
/// failure budget (`auth_failures_per_minute`, 5 in the test server).
#[test]
fn aborted_exchanges_count_as_failures() {
    with_witness(opts(), |ctx| async move {
        let abort = format!("<abort xmlns='{NS_SASL}'/>");
        let (mut first, _) = RawConn::connect_tls_from(ctx.starttls, DOMAIN, addr(8)).await?;
        for i in 0..2 {
            first.send(&abort).await?;
            let f = first.next_element(READ_TIMEOUT, "failure after <abort/>").await?;
            ensure!(
                f.is("failure", NS_SASL) && f.child("aborted", NS_SASL).is_some(),
                "abort {i}: expected <failure><aborted/></failure>, got {f}"
            );
        }
        first.send(&abort).await?;
        first
            .expect_stream_error(READ_TIMEOUT)
            .await
            .assert_condition(&["policy-violation"], "the third <abort/> on one stream")?;

        // Three aborts so far from this address; two more use up its budget of five.
        let (mut second, _) = RawConn::connect_tls_from(ctx.starttls, DOMAIN, addr(8)).await?;
        for _ in 0..2 {
            second.send(&abort).await?;
            second.next_element(READ_TIMEOUT, "failure after <abort/>").await?;
        }
        match second.auth_plain("alice", password("alice")).await? {
            raw::SaslOutcome::Failure(cond, _) if cond == "temporary-auth-failure" => {}
            other => bail!("after five aborts from one address, expected <temporary-auth-failure/>, got {other:?}"),
        }
        Ok(())
    });
}

/// Send a XEP-0077 registration (or password change) and return the reply.
async fn register(c: &mut RawConn, username: Option<&str>, pw: &str) -> Result<Element> {
    let id = next_id("reg");
    let user = username
        .map(|u| format!("<username>{u}</username>"))
        .unwrap_or_default();
    c.send(format!(
        "<iq type='set' id='{id}' to='{DOMAIN}'><query xmlns='jabber:iq:register'>{user}<password>{pw}</password></query></iq>"
    ))
    .await?;
    c.wait_for(READ_TIMEOUT, "registration reply", |e| {
        e.local == "iq" && e.attr("id") == Some(&id)
    })
    .await
}

fn stanza_condition(reply: &Element) -> Option<String> {
    reply
        .find("error")?
        .elements()
        .find(|c| c.ns == NS_STANZAS_ERR && c.local != "text")
        .map(|c| c.local.clone())
}

fn expect_result(reply: &Element, what: &str) -> Result<()> {
    ensure!(
        reply.attr("type") == Some("result"),
        "{what}: expected a result, got {reply}"
    );
    Ok(())
}

fn expect_refused(reply: &Element, what: &str) -> Result<()> {
    ensure!(
        reply.attr("type") == Some("error") && stanza_condition(reply).as_deref() == Some("policy-violation"),
        "{what}: expected <policy-violation/>, got {reply}"
    );
    Ok(())
}

/// Issue 10 item 9: one registration per stream, a rate per address, and password changes
/// throttled per account.
#[test]
fn registration_and_password_changes_are_throttled() {
    let mut o = opts();
    o.registration = true;
    o.extra_limits.extend([
        "registrations_per_ip = 2".to_string(),
        "password_changes_per_account = 1".to_string(),
    ]);
    with_witness(o, |ctx| async move {
        let (mut a, _) = RawConn::connect_tls_from(ctx.starttls, DOMAIN, addr(10)).await?;
        expect_result(&register(&mut a, Some("newbie1"), "pw-1").await?, "first registration")?;
        expect_refused(
            &register(&mut a, Some("newbie2"), "pw-2").await?,
            "a second registration on the same stream",
        )?;
        let (mut b, _) = RawConn::connect_tls_from(ctx.starttls, DOMAIN, addr(10)).await?;
        expect_result(
            &register(&mut b, Some("newbie2"), "pw-2").await?,
            "a second registration from the address, on a new stream",
        )?;
        let (mut c, _) = RawConn::connect_tls_from(ctx.starttls, DOMAIN, addr(10)).await?;
        expect_refused(
            &register(&mut c, Some("newbie3"), "pw-3").await?,
            "a third registration from the address (registrations_per_ip = 2)",
        )?;
        let (mut d, _) = RawConn::connect_tls_from(ctx.starttls, DOMAIN, addr(11)).await?;
        expect_result(&register(&mut d, Some("newbie3"), "pw-3").await?, "another address")?;

        // Password changes: one per account per window.
        let mut n1 = RawConn::login(ctx.starttls, DOMAIN, "newbie1", "pw-1", "r").await?;
        expect_result(&register(&mut n1, None, "pw-1b").await?, "first password change")?;
        expect_refused(&register(&mut n1, None, "pw-1c").await?, "a second password change")?;
        drop(n1);
        RawConn::login(ctx.starttls, DOMAIN, "newbie1", "pw-1b", "r2")
            .await
            .context("login with the changed password")?;
        Ok(())
    });
}

/// Issue 10 item 10: an authzid naming the authenticated account in another case (or in
/// fullwidth letters) is the same account after normalisation.
#[test]
fn authzid_is_compared_after_normalisation() {
    with_witness(opts(), |ctx| async move {
        for authzid in ["ALICE@localhost", "Alice", "alice@LOCALHOST", "\u{FF41}lice@localhost"] {
            let mut c = opened_tls(ctx).await?;
            c.send(sasl(&format!("{authzid}\0alice\0{}", password("alice"))))
                .await?;
            let r = c.next_element(READ_TIMEOUT, "SASL result").await?;
            ensure!(
                r.is("success", NS_SASL),
                "authzid {authzid:?} for alice: expected <success/>, got {r}"
            );
            let jid = c.bind(DOMAIN, Some("authzid")).await?;
            ensure!(jid.starts_with("alice@localhost/"), "bound as {jid}");
        }
        let mut c = opened_tls(ctx).await?;
        c.send(sasl(&format!("bob@localhost\0alice\0{}", password("alice"))))
            .await?;
        let r = c.next_element(READ_TIMEOUT, "SASL result").await?;
        ensure!(
            r.is("failure", NS_SASL) && r.child("invalid-authzid", NS_SASL).is_some(),
            "alice asking to act as bob: expected <invalid-authzid/>, got {r}"
        );
        Ok(())
    });
}

/// Send `big` in one go; the client must read `<policy-violation/>` and `</stream:stream>`,
/// and the server must not reset the connection: it reads what we still send (so all of
/// `big`, and one more write after its error, go through) until we close.
async fn oversized(mut c: RawConn, big: &str, what: &str) -> Result<()> {
    let written = c.send_tolerant(big.as_bytes()).await;
    let report = c.expect_stream_error(READ_TIMEOUT).await;
    report.assert_condition(&["policy-violation"], what)?;
    let after = c.send(" ").await;
    ensure!(
        written == big.len() && after.is_ok(),
        "{what}: the server reset the connection instead of closing gracefully (RFC 6120 4.4): we wrote \
         {written} of {} bytes, and a write after its error gave {after:?}; a reset can destroy the error",
        big.len()
    );
    Ok(())
}

/// Issue 10 item 10: a stanza far over the limit, sent in one go, gets a readable
/// `<policy-violation/>` and `</stream:stream>` — not a TCP reset that destroys them —
/// after authentication and before TLS.
#[test]
fn oversized_stanza_error_is_readable() {
    const LIMIT: usize = 65_536;
    let mut o = opts();
    o.max_stanza_bytes = LIMIT;
    with_witness(o, |ctx| async move {
        for round in 0..5 {
            let c = logged_in(ctx, &format!("big{round}")).await?;
            let big = format!(
                "<message to='bob@localhost'><body>{}</body></message>",
                "x".repeat(4 * LIMIT)
            );
            oversized(c, &big, &format!("round {round}: 4x the stanza limit after auth")).await?;
            let p = opened_plain(ctx).await?;
            let big = format!("<x>{}</x>", "y".repeat(4 * 16 * 1024));
            oversized(
                p,
                &big,
                &format!("round {round}: 4x the unauthenticated limit before TLS"),
            )
            .await?;
        }
        Ok(())
    });
}

/// Issue 10 item 10: before TLS, the client's `</stream:stream>` is answered with ours
/// (RFC 6120 §4.4), not a bare TCP close.
#[test]
fn closing_tag_before_tls_is_answered() {
    with_witness(opts(), |ctx| async move {
        let mut c = opened_plain(ctx).await?;
        c.send("</stream:stream>").await?;
        match c.next_event(READ_TIMEOUT).await? {
            Some(Event::StreamEnd) => Ok(()),
            other => bail!(
                "RFC 6120 4.4: expected </stream:stream> in reply to ours, got {other:?} (closed: {:?})\n  transcript: {}",
                c.closed(),
                c.transcript()
            ),
        }
    });
}
