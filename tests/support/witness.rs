//! The witness harness the hostile-input suites share: a well-behaved, logged-in client
//! (bob) stays connected while a test sends bad input; afterwards it must still get a
//! XEP-0199 ping answered and a message routed back to itself, nothing from a rejected
//! stream may reach it, and the server process must still be running.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::{bail, ensure, Context, Result};

use super::raw::{next_id, RawConn, READ_TIMEOUT};
use super::{password, rt, with_server, ServerOptions, DOMAIN};

pub const WITNESS_RESOURCE: &str = "witness";
/// Body of stanzas that must never be routed.
pub const FORBIDDEN: &str = "must-not-be-delivered";

#[derive(Clone, Copy)]
pub struct Ctx {
    pub starttls: SocketAddr,
    pub direct_tls: SocketAddr,
    /// The server process, to read its memory use.
    pub pid: Option<u32>,
}

pub fn witness_jid() -> String {
    format!("bob@{DOMAIN}/{WITNESS_RESOURCE}")
}

/// Run `test` against a fresh server while the witness is connected, then check the
/// witness and the server are fine.
pub fn with_witness<F, Fut>(opts: ServerOptions, test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    with_server(opts, |srv| {
        let ctx = Ctx {
            starttls: srv.starttls,
            direct_tls: srv.direct_tls,
            pid: srv.pid(),
        };
        rt().block_on(async {
            let mut witness = RawConn::login(ctx.starttls, DOMAIN, "bob", password("bob"), WITNESS_RESOURCE)
                .await
                .context("witness login")?;
            witness.ping(DOMAIN).await.context("witness ping before the test")?;

            test(ctx).await?;

            witness
                .ping(DOMAIN)
                .await
                .context("the well-behaved witness client's XEP-0199 ping after the bad input")?;
            let body = format!("witness still alive {}", next_id("w"));
            witness.message(&witness_jid(), &body).await?;
            witness
                .expect_message(&body)
                .await
                .context("the witness's message to itself after the bad input")?;
            // Give anything wrongly routed a moment to show up, then look for it.
            let _ = witness.ping(DOMAIN).await;
            if let Some(leak) = witness.backlog.iter().find(|e| e.raw.contains(FORBIDDEN)) {
                bail!("a stanza from a rejected stream was routed to the witness: {leak}");
            }
            Ok(())
        })?;
        ensure!(srv.is_running(), "the server process exited");
        Ok(())
    });
}

/// Plain TCP, stream opened, features read: ready for pre-TLS input.
pub async fn opened_plain(ctx: Ctx) -> Result<RawConn> {
    let mut c = RawConn::connect(ctx.starttls).await?;
    c.open_stream(DOMAIN).await?;
    c.read_features().await?;
    Ok(c)
}

/// After STARTTLS, stream restarted, features read, not authenticated.
pub async fn opened_tls(ctx: Ctx) -> Result<RawConn> {
    let (c, _) = RawConn::connect_tls(ctx.starttls, DOMAIN).await?;
    Ok(c)
}

/// Authenticated (alice) with a bound resource and initial presence.
pub async fn logged_in(ctx: Ctx, resource: &str) -> Result<RawConn> {
    let mut c = RawConn::login(ctx.starttls, DOMAIN, "alice", password("alice"), resource).await?;
    c.ping(DOMAIN).await?;
    Ok(c)
}

pub async fn expect_error(mut c: RawConn, accepted: &[&str], what: &str) -> Result<()> {
    let report = c.expect_stream_error(READ_TIMEOUT).await;
    report.assert_condition(accepted, what)
}
