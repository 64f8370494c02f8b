//! Hostile cases: see the list in `tests/hostile.rs`. This module: XML that is not
//! (namespace-)well-formed is refused and never routed (issue 10, item 2), what the server
//! forwards is namespace-well-formed on its own, one stanza cannot make its tree expensive
//! (item 1), and only UTF-8 is accepted (item 10).
//!
//! What the server sends is checked with an independent strict parser (`xml`, i.e. xml-rs),
//! since the test client's own parser (`support::xml`) is lenient about prefixes and
//! characters.

use anyhow::{bail, ensure, Context, Result};

use crate::support::raw::{next_id, RawConn, READ_TIMEOUT};
use crate::support::witness::{expect_error, logged_in, opened_plain, with_witness, witness_jid, Ctx, FORBIDDEN};
use crate::support::xml::NS_BIND;
use crate::support::{password, rt, with_server, ServerOptions, Store, DOMAIN};

/// Log in as alice and send `stanza`; the stream must end with one of `accepted`.
async fn refused(ctx: Ctx, stanza: &str, accepted: &[&str], what: &str) -> Result<()> {
    let mut c = logged_in(ctx, &next_id("bad")).await?;
    c.send(stanza.as_bytes()).await?;
    expect_error(c, accepted, what).await
}

/// Each case: alice sends it to the witness, with the forbidden body; alice's stream ends
/// with `<not-well-formed/>` and nothing reaches the witness (checked by `with_witness`).
async fn all_refused(ctx: Ctx, cases: &[(&str, String)]) -> Result<()> {
    for (what, stanza) in cases {
        refused(ctx, stanza, &["not-well-formed"], what).await?;
    }
    Ok(())
}

fn message_with(body_tag_extra: &str, body: &str) -> String {
    format!(
        "<message to='{}' type='chat' id='{}'><body{body_tag_extra}>{FORBIDDEN}{body}</body></message>",
        witness_jid(),
        next_id("m")
    )
}

#[test]
fn unbound_and_reserved_prefixes_are_refused_and_never_routed() {
    with_witness(ServerOptions::new(Store::Sqlite), |ctx| async move {
        let w = witness_jid();
        let cases = vec![
            ("attribute with an unbound prefix", message_with(" evil:x='1'", "")),
            (
                "Xml:lang (an unbound prefix, not xml)",
                message_with(" Xml:lang='en'", ""),
            ),
            ("xmlns:xml with another URI", message_with(" xmlns:xml='urn:x'", "")),
            ("xmlns:xmlns declared", message_with(" xmlns:xmlns='urn:x'", "")),
            (
                "a prefix bound to the xmlns namespace",
                message_with(" xmlns:p='http://www.w3.org/2000/xmlns/'", ""),
            ),
            (
                "another prefix bound to the xml namespace",
                message_with(" xmlns:p='http://www.w3.org/XML/1998/namespace'", ""),
            ),
            (
                "the default namespace set to the xml namespace",
                message_with(" xmlns='http://www.w3.org/XML/1998/namespace'", ""),
            ),
            ("an empty prefixed namespace", message_with(" xmlns:p=''", "")),
            ("an element in the xml: prefix", message_with("", "<xml:foo/>")),
            ("an element in the xmlns: prefix", message_with("", "<xmlns:foo/>")),
            (
                "one attribute twice through two prefixes",
                message_with(" xmlns:a='urn:same' xmlns:b='urn:same' a:x='1' b:x='2'", ""),
            ),
            (
                "an unbound prefix in a directed presence",
                format!("<presence to='{w}'><status evil:x='1'>{FORBIDDEN}</status></presence>"),
            ),
            (
                "an unbound prefix in an iq to a full JID",
                format!("<iq type='get' id='q1' to='{w}'><query xmlns='urn:x:{FORBIDDEN}' evil:y='1'/></iq>"),
            ),
        ];
        all_refused(ctx, &cases).await
    });
}

#[test]
fn characters_outside_xml_are_refused_and_never_routed() {
    with_witness(ServerOptions::new(Store::Sqlite), |ctx| async move {
        let w = witness_jid();
        let mut cases = Vec::new();
        for (name, c) in [
            ("U+0000", '\u{0}'),
            ("U+0001", '\u{1}'),
            ("U+000C", '\u{C}'),
            ("U+FFFE", '\u{FFFE}'),
        ] {
            cases.push((name, message_with("", &c.to_string())));
        }
        cases.push(("&#1;", message_with("", "&#1;")));
        cases.push(("&#xFFFE;", message_with("", "&#xFFFE;")));
        cases.push(("&#1; in an attribute", message_with(" id='a&#1;'", "")));
        cases.push(("raw U+0001 in an attribute", message_with(" id='a\u{1}'", "")));
        cases.push(("&#xFFFF; in an attribute", message_with(" id='&#xFFFF;'", "")));
        cases.push(("]]> in character data", message_with("", "]]>")));
        cases.push((
            "an XML declaration inside the stream",
            format!("<?xml version='1.0'?><message to='{w}'><body>{FORBIDDEN}</body></message>"),
        ));
        all_refused(ctx, &cases).await
    });
}

#[test]
fn names_that_are_not_xml_names_are_refused_and_never_routed() {
    with_witness(ServerOptions::new(Store::Sqlite), |ctx| async move {
        let w = witness_jid();
        let m = |inner: &str| format!("<message to='{w}' type='chat'>{inner}<body>{FORBIDDEN}</body></message>");
        let cases = vec![
            ("element name bo=dy", m("<bo=dy/>")),
            ("element name 1body", m("<1body/>")),
            ("element name with two colons", m("<a:b:c xmlns:a='urn:a'/>")),
            ("element name with an empty prefix", m("<:x/>")),
            ("element name with an empty local part", m("<a: xmlns:a='urn:a'/>")),
            ("attribute name 1a", m("<x 1a='v'/>")),
            ("attribute name with two colons", m("<x xmlns:a='urn:a' a:b:c='v'/>")),
        ];
        all_refused(ctx, &cases).await
    });
}

/// Parse `stanza` alone, as a receiver with only the stream's default declarations would,
/// with xml-rs in its strict (namespace-aware) mode; return (local name, namespace, value)
/// of every attribute seen.
fn strictly_parsed(stanza: &str) -> Result<Vec<(String, Option<String>, String)>> {
    use xmlrs::reader::{EventReader, XmlEvent};
    let doc = format!(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>{stanza}</stream:stream>"
    );
    let mut attrs = Vec::new();
    for event in EventReader::new(doc.as_bytes()) {
        match event.with_context(|| format!("not namespace-well-formed on its own: {stanza}"))? {
            XmlEvent::StartElement { attributes, .. } => {
                for a in attributes {
                    attrs.push((a.name.local_name, a.name.namespace, a.value));
                }
            }
            XmlEvent::EndDocument => return Ok(attrs),
            _ => {}
        }
    }
    bail!("document did not end: {stanza}")
}

/// Log in as alice with a stream header of our own (after SASL), bind `resource`.
async fn login_with_header(ctx: Ctx, header: &str, resource: &str) -> Result<RawConn> {
    let (mut c, _) = RawConn::connect_tls(ctx.starttls, DOMAIN).await?;
    ensure!(
        c.auth_plain("alice", password("alice")).await?.is_success(),
        "alice's login"
    );
    c.open_stream_with(header).await?;
    c.read_features().await?;
    let id = next_id("bind");
    c.send(format!(
        "<iq type='set' id='{id}'><bind xmlns='{NS_BIND}'><resource>{resource}</resource></bind></iq>"
    ))
    .await?;
    let reply = c
        .wait_for(READ_TIMEOUT, "bind result", |e| e.attr("id") == Some(&id))
        .await?;
    ensure!(reply.attr("type") == Some("result"), "bind failed: {reply}");
    c.send("<presence/>").await?;
    c.ping(DOMAIN).await?;
    Ok(c)
}

#[test]
fn a_prefix_from_the_senders_stream_header_is_declared_where_it_is_forwarded() {
    with_witness(ServerOptions::new(Store::Sqlite), |ctx| async move {
        let header = format!(
            "<?xml version='1.0'?><stream:stream to='{DOMAIN}' version='1.0' xml:lang='en' \
             xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' xmlns:evil='urn:evil'>"
        );
        let mut alice = login_with_header(ctx, &header, "hdr").await?;
        let mut carol = RawConn::login(ctx.starttls, DOMAIN, "carol", password("carol"), "r").await?;
        carol.ping(DOMAIN).await?;

        // A message to carol using the prefix only alice's stream header declares.
        alice
            .send(format!(
                "<message to='carol@{DOMAIN}/r' type='chat'><body evil:x='1'>via header</body>\
                 <evil:thing evil:y='2'/></message>"
            ))
            .await?;
        let got = carol.expect_message("via header").await?;
        let attrs = strictly_parsed(&got.raw)?;
        for (local, value) in [("x", "1"), ("y", "2")] {
            ensure!(
                attrs
                    .iter()
                    .any(|(l, ns, v)| l == local && ns.as_deref() == Some("urn:evil") && v == value),
                "the attribute evil:{local} did not arrive in urn:evil: {}",
                got.raw
            );
        }

        // An error reply echoing the payload alone must declare what it uses too.
        let id = next_id("echo");
        alice
            .send(format!(
                "<iq type='get' id='{id}' to='{DOMAIN}'><query xmlns='urn:example:unknown' evil:z='3'/></iq>"
            ))
            .await?;
        let reply = alice
            .wait_for(READ_TIMEOUT, "the error reply", |e| e.attr("id") == Some(&id))
            .await?;
        ensure!(reply.attr("type") == Some("error"), "expected an error reply: {reply}");
        strictly_parsed(&reply.raw)?;
        alice.ping(DOMAIN).await?;
        Ok(())
    });
}

/// The server's peak resident memory (VmHWM) in MiB.
fn peak_rss_mib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/PID/status")?;
    Ok(kib / 1024)
}

/// What the tree of one stanza may cost the server, at most, in this test (with its
/// baseline: wasmtime, the store, the test's connections).
const MAX_PEAK_MIB: u64 = 200;

#[test]
fn an_inherited_namespace_costs_its_bytes_once() {
    with_witness(ServerOptions::new(Store::Sqlite), |ctx| async move {
        let pid = ctx.pid.context("server pid")?;
        let mut alice = logged_in(ctx, "amp").await?;
        let me = format!("alice@{DOMAIN}/amp");
        // Issue 10's stanza: 131 KB, a 64 KiB default namespace over 16,384 empty children.
        let ns = format!("urn:{}", "n".repeat(64 * 1024));
        let children = "<a/>".repeat(16_384);
        for i in 0..3 {
            alice
                .send(format!(
                    "<message to='{me}' type='chat'><body>amplified {i}</body><x xmlns='{ns}'>{children}</x></message>"
                ))
                .await?;
            let echo = alice.expect_message(&format!("amplified {i}")).await?;
            let x = echo.find("x").context("the payload")?;
            ensure!(
                x.ns == ns && x.elements().count() == 16_384,
                "payload changed on the way"
            );
        }
        alice.ping(DOMAIN).await?;
        let peak = peak_rss_mib(pid)?;
        eprintln!("peak RSS after three 131 KB stanzas: {peak} MiB");
        ensure!(
            peak < MAX_PEAK_MIB,
            "after three 131 KB stanzas the server's peak RSS is {peak} MiB (limit {MAX_PEAK_MIB})"
        );

        // At the size limit (256 KiB) the tree would cost more than the budget allows.
        let children = "<a/>".repeat((256 * 1024 - ns.len() - 200) / 4);
        let stanza = format!("<message to='{me}'><x xmlns='{ns}'>{children}</x></message>");
        refused(
            ctx,
            &stanza,
            &["policy-violation"],
            "a 256 KiB stanza of empty elements",
        )
        .await?;
        let peak = peak_rss_mib(pid)?;
        ensure!(
            peak < MAX_PEAK_MIB,
            "after a 256 KiB stanza the server's peak RSS is {peak} MiB (limit {MAX_PEAK_MIB})"
        );

        // A prefixed namespace declared once and used by every child is shared in the tree
        // but written out once per child (16,384 × 64 KiB = 1 GiB for each recipient's
        // queue): the budget counts what serializing costs, so it is refused up front.
        let children = "<p:a/>".repeat(16_384);
        let stanza = format!("<message to='{me}'><x xmlns:p='{ns}'>{children}</x></message>");
        refused(
            ctx,
            &stanza,
            &["policy-violation"],
            "a 64 KiB prefixed namespace that serializing would repeat per child",
        )
        .await?;
        let peak = peak_rss_mib(pid)?;
        ensure!(
            peak < MAX_PEAK_MIB,
            "after a stanza that serializes to 1 GiB the server's peak RSS is {peak} MiB (limit {MAX_PEAK_MIB})"
        );
        Ok(())
    });
}

#[test]
fn only_utf8_is_accepted() {
    with_witness(ServerOptions::new(Store::Sqlite), |ctx| async move {
        for enc in ["UTF-16", "ISO-8859-1", "utf-16le", "US-ASCII"] {
            let mut c = RawConn::connect(ctx.starttls).await?;
            c.send(format!(
                "<?xml version='1.0' encoding='{enc}'?><stream:stream to='{DOMAIN}' version='1.0' \
                 xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
            ))
            .await?;
            expect_error(
                c,
                &["unsupported-encoding"],
                &format!("encoding='{enc}' (RFC 6120 §11.6)"),
            )
            .await?;
        }
        // UTF-8, in any case, is fine; so is no encoding at all (opened_plain).
        let mut c = RawConn::connect(ctx.starttls).await?;
        c.send(format!(
            "<?xml version='1.0' encoding='utf-8'?><stream:stream to='{DOMAIN}' version='1.0' \
             xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        ))
        .await?;
        c.read_header().await?;
        c.read_features().await?;
        opened_plain(ctx).await?;
        Ok(())
    });
}

/// A subscription request stored before the rules existed (so not namespace-well-formed)
/// must not be re-sent as it was at each login, where it would disconnect a strict client
/// before it could answer; the request itself stands.
#[test]
fn a_poisoned_stored_subscription_request_is_not_resent_raw() {
    with_server(ServerOptions::new(Store::Sqlite), |srv| {
        ensure!(srv.stop(), "the server did not stop");
        rt().block_on(async {
            let store = poolxmpp::store::Store::open("sqlite", &srv.data_dir, 1).await?;
            store
                .add_pending_in(
                    &format!("bob@{DOMAIN}"),
                    &format!("alice@{DOMAIN}"),
                    &format!(
                        "<presence from='alice@{DOMAIN}' to='bob@{DOMAIN}' type='subscribe'>\
                         <status evil:x='1'>{FORBIDDEN}</status></presence>"
                    ),
                    100,
                )
                .await?;
            anyhow::Ok(())
        })?;
        srv.start_again()?;
        rt().block_on(async {
            let mut bob = RawConn::login(srv.starttls, DOMAIN, "bob", password("bob"), "r").await?;
            let request = bob
                .wait_for(READ_TIMEOUT, "the stored subscription request", |e| {
                    e.local == "presence" && e.attr("type") == Some("subscribe")
                })
                .await?;
            strictly_parsed(&request.raw)?;
            ensure!(
                request.attr("from") == Some(&format!("alice@{DOMAIN}")),
                "the request is not from alice: {request}"
            );
            ensure!(
                !request.raw.contains(FORBIDDEN),
                "the poisoned content was re-sent: {request}"
            );
            bob.ping(DOMAIN).await?;
            Ok(())
        })
    });
}
