//! Defects found by trying real clients as a new user would (issue 11: xmpp.js, go-sendxmpp,
//! any client asking the user to trust a certificate, an operator debugging a client). Each
//! case drives the real binary over sockets; the defects sit at the byte level, so the
//! client is the raw one, doing exactly what the real client does.

mod support;

use std::time::Duration;

use anyhow::{bail, ensure, Context};
use base64::Engine as _;

use support::raw::{next_id, Cb, RawConn, SaslOutcome, READ_TIMEOUT};
use support::xml::{NS_SASL, NS_TLS};
use support::{password, rt, with_server, ServerOptions, Store, DOMAIN};

/// xmpp.js's challenge parser loses any value holding `"`; rsasl put one in about one
/// server nonce in four, so about one login in four failed (and counted against the
/// address's failure budget). Every server nonce is now free of `"`, and logins succeed.
#[test]
fn scram_server_nonces_hold_no_quote() {
    with_server(ServerOptions::new(Store::Sqlite), |srv| {
        let addr = srv.starttls;
        rt().block_on(async move {
            let b64 = base64::engine::general_purpose::STANDARD;
            for round in 0..40 {
                let mechanism = if round % 2 == 0 { "SCRAM-SHA-1" } else { "SCRAM-SHA-256" };
                let (mut c, _) = RawConn::connect_tls(addr, DOMAIN).await?;
                let cnonce = format!("xmppjs{round}");
                let first = b64.encode(format!("n,,n=alice,r={cnonce}"));
                c.send(format!(
                    "<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{first}</auth>"
                ))
                .await?;
                let challenge = c.next_element(READ_TIMEOUT, "SASL challenge").await?;
                ensure!(challenge.local == "challenge", "expected a challenge, got {challenge}");
                let server_first = String::from_utf8(b64.decode(challenge.text().trim())?)?;
                let nonce = server_first
                    .split(',')
                    .find_map(|a| a.strip_prefix("r="))
                    .with_context(|| format!("no nonce in {server_first}"))?;
                let ours = nonce
                    .strip_prefix(&cnonce)
                    .context("the nonce must extend the client's")?;
                ensure!(
                    !ours.contains('"'),
                    "{mechanism}: a server nonce with a quote: {server_first}"
                );
            }
            // And whole logins, one after another, all succeed (none is counted as a failure).
            for round in 0..10 {
                let mechanism = if round % 2 == 0 { "SCRAM-SHA-1" } else { "SCRAM-SHA-256" };
                let (mut c, _) = RawConn::connect_tls(addr, DOMAIN).await?;
                match c.auth_scram(mechanism, "alice", password("alice"), Cb::None).await? {
                    SaslOutcome::Success => {}
                    other => bail!("{mechanism} login {round} failed: {other:?}"),
                }
            }
            Ok(())
        })
    });
}

/// go-xmpp (go-sendxmpp) always sends a newline after `<starttls/>`. That whitespace is
/// dropped and the TLS handshake goes on; before, the connection closed silently after
/// `<proceed/>`.
#[test]
fn whitespace_after_starttls_is_dropped() {
    with_server(ServerOptions::new(Store::Sqlite), |srv| {
        let addr = srv.starttls;
        rt().block_on(async move {
            for trailing in ["\n", " \r\n\t "] {
                let mut c = RawConn::connect(addr).await?;
                c.open_stream(DOMAIN).await?;
                c.read_features().await?;
                c.starttls_then(DOMAIN, trailing)
                    .await
                    .with_context(|| format!("STARTTLS followed by {trailing:?}"))?;
                c.open_stream(DOMAIN).await?;
                c.read_features().await?;
                match c.auth_plain("alice", password("alice")).await? {
                    SaslOutcome::Success => {}
                    other => bail!("login after STARTTLS + {trailing:?} failed: {other:?}"),
                }
            }
            Ok(())
        })
    });
}

/// Anything but whitespace pipelined after `<starttls/>` would be plaintext injected into the
/// TLS stream (CVE-2011-1431): refused with a stream error while the stream can still carry
/// one, and the reason is logged.
#[test]
fn data_pipelined_after_starttls_is_refused_with_a_stream_error() {
    with_server(ServerOptions::new(Store::Sqlite), |srv| {
        let addr = srv.starttls;
        rt().block_on(async move {
            let mut c = RawConn::connect(addr).await?;
            c.open_stream(DOMAIN).await?;
            c.read_features().await?;
            let injected = format!("<message to='bob@{DOMAIN}'><body>{}</body></message>", next_id("inj"));
            c.send(format!("<starttls xmlns='{NS_TLS}'/>{injected}")).await?;
            let report = c.expect_stream_error(READ_TIMEOUT).await;
            report.assert_condition(&["policy-violation"], "bytes pipelined after <starttls/>")?;
            ensure!(
                !report.transcript.contains("<proceed"),
                "no <proceed/> may follow injected bytes: {}",
                report.transcript
            );
            Ok(())
        })?;
        ensure!(
            srv.log().contains("data pipelined after <starttls/>"),
            "the refusal's reason is logged"
        );
        Ok(())
    });
}

/// The generated self-signed certificate names the domain in its subject (clients show it
/// when asking the user to trust it); it read `CN=rcgen self signed cert`.
#[test]
fn generated_certificate_names_the_domain() {
    with_server(ServerOptions::new(Store::Sqlite), |srv| {
        let addr = srv.starttls;
        rt().block_on(async move {
            let (c, _) = RawConn::connect_tls(addr, DOMAIN).await?;
            let der = c.server_certificate()?;
            let contains = |pat: &[u8]| der.windows(pat.len()).any(|w| w == pat);
            ensure!(
                !contains(b"rcgen self signed cert"),
                "rcgen's default subject is still there"
            );
            // commonName (OID 2.5.4.3) as a UTF8String holding the domain.
            let mut cn = vec![0x06, 0x03, 0x55, 0x04, 0x03, 0x0C, DOMAIN.len() as u8];
            cn.extend_from_slice(DOMAIN.as_bytes());
            ensure!(contains(&cn), "the subject's CN is not {DOMAIN}");
            Ok(())
        })
    });
}

/// `[log] level = "info,poolxmpp::xml=trace"` logs each connection's stanzas in and out,
/// under a span naming the peer and the bound JID, with the SASL data redacted.
#[test]
fn xml_trace_shows_each_connections_stanzas() {
    let mut opts = ServerOptions::new(Store::Sqlite);
    opts.log_level = Some("info,poolxmpp::xml=trace".into());
    with_server(opts, |srv| {
        let addr = srv.starttls;
        let body = next_id("traced");
        rt().block_on({
            let body = body.clone();
            async move {
                let mut c = RawConn::login(addr, DOMAIN, "alice", password("alice"), "trace").await?;
                let me = format!("alice@{DOMAIN}/trace");
                c.message(&me, &body).await?;
                c.expect_message(&body).await?;
                Ok::<_, anyhow::Error>(())
            }
        })?;
        let log = srv.log();
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(&body)).collect();
        ensure!(
            lines.iter().any(|l| l.contains("in: <message")),
            "the stanza read is traced: {lines:#?}"
        );
        ensure!(
            lines.iter().any(|l| l.contains("out: ")),
            "the stanza written is traced: {lines:#?}"
        );
        ensure!(
            lines.iter().all(|l| l.contains("jid=alice@")),
            "each line names the connection's JID: {lines:#?}"
        );
        let plain = base64::engine::general_purpose::STANDARD.encode(format!("\0alice\0{}", password("alice")));
        ensure!(!log.contains(&plain), "the PLAIN credentials reached the log");
        ensure!(log.contains("[redacted]"), "the SASL payload is shown redacted");
        Ok(())
    });
}

/// `[log] level = "debug"` is the server's debug log: plugins still compile (wasmtime and
/// cranelift run) but their debug lines stay out; ours are there. `RUST_LOG` is not set.
#[test]
fn debug_level_keeps_dependency_noise_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugin_dir = dir.path().join("plugins");
    if let Err(e) = support::plugins::install(&plugin_dir, &["vcard"]) {
        panic!("{e:#}");
    }
    let mut opts = ServerOptions::new(Store::Sqlite);
    opts.plugins_dir = Some(plugin_dir);
    opts.log_level = Some("debug".into());
    with_server(opts, |srv| {
        let addr = srv.starttls;
        rt().block_on(async move {
            let mut c = RawConn::login(addr, DOMAIN, "alice", password("alice"), "dbg").await?;
            c.ping(DOMAIN).await?;
            Ok::<_, anyhow::Error>(())
        })?;
        // Give the log a moment to be flushed by the server.
        std::thread::sleep(Duration::from_millis(200));
        let log = srv.log();
        let noisy: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" cranelift") || l.contains(" wasmtime") || l.contains(" sqlx"))
            .filter(|l| l.contains("DEBUG") || l.contains("TRACE") || l.contains(" INFO"))
            .take(5)
            .collect();
        ensure!(noisy.is_empty(), "dependency lines in the debug log: {noisy:#?}");
        ensure!(
            log.lines().any(|l| l.contains("DEBUG") && l.contains("poolxmpp")),
            "the server's own debug lines are missing"
        );
        Ok(())
    });
}
