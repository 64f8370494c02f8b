//! Stream negotiation after TLS: header checks, SASL (RFC 6120 §6), the restart, and
//! resource binding (§7). Returns a bound session or the stream error that ends it.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use tokio::io::AsyncBufRead;

use super::admission::{self, Deadline};
use super::bound::Bound;
use super::resumption::NotResumed;
use super::sm::{self, Nonza};
use super::{new_stream_id, stream_header, Frontend};
use crate::auth::{offered_mechanisms, ChannelBindings, SaslExchange, SaslFailure, Step};
use crate::pool::placement::LoginRoute;
use crate::stanza::{error_reply, iq_result, Condition};
use crate::stream::acks::NS_SM;
use crate::stream::csi::NS_CSI;
use crate::stream::{
    Outbound, OutboundTx, ReadError, StreamError, StreamErrorCondition, StreamEvent, StreamHeader, XmlStreamReader,
};
use crate::xml::{Element, NS_CLIENT, NS_STREAMS};

pub use crate::xml::NS_SASL;
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";

/// SASL failures tolerated on one stream before it is closed (RFC 6120 §6.4.5).
const MAX_SASL_ATTEMPTS: u32 = 3;

fn stream_err(condition: StreamErrorCondition, text: &str) -> ReadError {
    ReadError::Stream(StreamError::new(condition, text))
}

/// The next event, unless the negotiation deadline passes first (`<connection-timeout/>`).
pub async fn next_event<R: AsyncBufRead + Unpin>(
    reader: &mut XmlStreamReader<R>,
    deadline: Deadline,
) -> Result<StreamEvent, ReadError> {
    match deadline.run(admission::waiting_for_client(reader.next())).await {
        Ok(r) => r,
        Err(admission::Expired) => Err(admission::expired().into()),
    }
}

pub async fn expect_header<R: AsyncBufRead + Unpin>(
    reader: &mut XmlStreamReader<R>,
    deadline: Deadline,
) -> Result<StreamHeader, ReadError> {
    loop {
        match next_event(reader, deadline).await? {
            StreamEvent::Header(h) => return Ok(h),
            StreamEvent::Whitespace => continue,
            _ => {
                return Err(stream_err(
                    StreamErrorCondition::NotWellFormed,
                    "expected a stream header",
                ))
            }
        }
    }
}

/// Validate a received header (RFC 6120 §4.7, §4.9.3); returns the served domain.
pub fn check_header(front: &Frontend, header: &StreamHeader) -> Result<String, ReadError> {
    if header.name != "stream" || header.ns != NS_STREAMS {
        return Err(stream_err(
            StreamErrorCondition::InvalidNamespace,
            "the stream namespace must be http://etherx.jabber.org/streams",
        ));
    }
    if header.default_ns.as_deref() != Some(NS_CLIENT) {
        return Err(stream_err(
            StreamErrorCondition::InvalidNamespace,
            "the content namespace must be jabber:client",
        ));
    }
    let major = header
        .version
        .as_deref()
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse::<u32>().ok());
    if major != Some(1) {
        return Err(stream_err(
            StreamErrorCondition::UnsupportedVersion,
            "only XMPP 1.0 streams are supported",
        ));
    }
    let domain = match header.to.as_deref() {
        Some(to) => to.to_ascii_lowercase(),
        None => front.ctx.config.domains[0].name.clone(),
    };
    if !front.hosts(&domain) {
        return Err(stream_err(
            StreamErrorCondition::HostUnknown,
            "this domain is not served here",
        ));
    }
    Ok(domain)
}

/// Read a header, answer with ours; header errors still get our header first (§4.9.1.2).
async fn open_stream<R: AsyncBufRead + Unpin>(
    front: &Frontend,
    reader: &mut XmlStreamReader<R>,
    tx: &OutboundTx,
    deadline: Deadline,
    expected_domain: Option<&str>,
) -> Result<String, ReadError> {
    let header = expect_header(reader, deadline).await;
    let checked = header.and_then(|h| {
        let domain = check_header(front, &h)?;
        match expected_domain {
            Some(d) if d != domain => Err(stream_err(
                StreamErrorCondition::HostUnknown,
                "the domain changed on restart",
            )),
            _ => Ok(domain),
        }
    });
    let domain_for_header = match &checked {
        Ok(d) => d.clone(),
        Err(_) => expected_domain.unwrap_or(&front.ctx.config.domains[0].name).to_string(),
    };
    if !matches!(checked, Err(ReadError::Closed) | Err(ReadError::Io(_))) {
        send(tx, stream_header(&domain_for_header, &new_stream_id())).await;
    }
    checked
}

async fn send(tx: &OutboundTx, s: String) {
    let _ = tx.send(Outbound::Raw(s.into())).await;
}

/// Who a stream authenticated as.
pub struct Authenticated {
    pub username: String,
    pub domain: String,
}

/// The first stream after TLS: header, features, SASL. The caller restarts the reader.
pub async fn authenticate_stream<R: AsyncBufRead + Unpin>(
    front: &Arc<Frontend>,
    reader: &mut XmlStreamReader<R>,
    tx: &OutboundTx,
    peer: SocketAddr,
    bindings: &ChannelBindings,
    deadline: Deadline,
) -> Result<Authenticated, ReadError> {
    let domain = open_stream(front, reader, tx, deadline, None).await?;
    send(tx, pre_auth_features(front, bindings)).await;
    let username = authenticate(front, reader, tx, peer, &domain, bindings, deadline).await?;
    Ok(Authenticated { username, domain })
}

/// The restarted stream after SASL: header, the pool's placement, resource binding.
pub async fn bind_stream<R: AsyncBufRead + Unpin>(
    front: &Arc<Frontend>,
    reader: &mut XmlStreamReader<R>,
    tx: &OutboundTx,
    user: &Authenticated,
    peer: SocketAddr,
    deadline: Deadline,
) -> Result<Bound, ReadError> {
    let Authenticated { username, domain } = user;
    open_stream(front, reader, tx, deadline, Some(domain.as_str())).await?;
    // In a redirecting pool, a user whose home is another node goes there (RFC 6120
    // §4.9.3.19). Only now: placement is never revealed before authentication.
    let bare = format!("{username}@{domain}");
    let route = {
        admission::readmit(front, deadline).await?;
        login_route(front, &bare).await
    };
    match route {
        LoginRoute::Here => {}
        LoginRoute::Elsewhere(home) => {
            tracing::info!(user = %bare, %home, "redirecting to the user's home node");
            return Err(StreamError::see_other_host(home, "your home node in this pool").into());
        }
        LoginRoute::Nowhere => {
            return Err(StreamError::new(
                StreamErrorCondition::InternalServerError,
                "no node of the pool takes users now; try again later",
            )
            .into());
        }
    }
    // XEP-0352 client state indication, XEP-0198 stream management.
    let mut session_features = format!("<csi xmlns='{NS_CSI}'/>");
    if front.ctx.config.features.stream_management {
        session_features.push_str(&format!("<sm xmlns='{NS_SM}'/>"));
    }
    send(
        tx,
        format!(
            "<stream:features><bind xmlns='{NS_BIND}'/><session xmlns='{NS_SESSION}'><optional/></session>\
             <ver xmlns='urn:xmpp:features:rosterver'/><sub xmlns='urn:xmpp:features:pre-approval'/>{session_features}</stream:features>"
        ),
    )
    .await;
    bind(front, reader, tx.clone(), username, domain, peer, deadline).await
}

/// Serve here, send elsewhere, or (the redirector only) nowhere to send.
async fn login_route(front: &Frontend, bare: &str) -> LoginRoute {
    let Some(placement) = &front.placement else {
        return LoginRoute::Here;
    };
    match &front.pool {
        // A pool node redirects only while it is live.
        Some(pool) if pool.epoch().is_none() => LoginRoute::Here,
        Some(pool) => placement.route_login(bare, pool.config.redirect).await,
        None => placement.route_login(bare, true).await,
    }
}

fn pre_auth_features(front: &Frontend, bindings: &ChannelBindings) -> String {
    let mut f = format!("<stream:features><mechanisms xmlns='{NS_SASL}'>");
    for m in offered_mechanisms(true, bindings) {
        f.push_str(&format!("<mechanism>{m}</mechanism>"));
    }
    f.push_str("</mechanisms>");
    // XEP-0440: which channel-binding types the -PLUS mechanisms can use here.
    f.push_str("<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>");
    for t in bindings.types() {
        f.push_str(&format!("<channel-binding type='{t}'/>"));
    }
    f.push_str("</sasl-channel-binding>");
    if front.ctx.config.features.registration {
        f.push_str("<register xmlns='http://jabber.org/features/iq-register'/>");
    }
    f.push_str("</stream:features>");
    f
}

fn sasl_failure(failure: SaslFailure, text: Option<&str>) -> String {
    let mut f = format!("<failure xmlns='{NS_SASL}'><{}/>", failure.condition());
    if let Some(t) = text {
        f.push_str(&format!("<text xml:lang='en'>{}</text>", crate::xml::escape(t)));
    }
    f.push_str("</failure>");
    f
}

fn decode_sasl_payload(e: &Element) -> Result<Vec<u8>, SaslFailure> {
    let text = e.text_content();
    let text = text.trim();
    if text == "=" || text.is_empty() {
        return Ok(Vec::new());
    }
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| SaslFailure::MalformedRequest)
}

/// The SASL exchange loop; returns the authenticated local part.
async fn authenticate<R: AsyncBufRead + Unpin>(
    front: &Arc<Frontend>,
    reader: &mut XmlStreamReader<R>,
    tx: &OutboundTx,
    peer: SocketAddr,
    domain: &str,
    bindings: &ChannelBindings,
    deadline: Deadline,
) -> Result<String, ReadError> {
    let offered = offered_mechanisms(true, bindings);
    let mut failures = 0;
    let mut exchange: Option<SaslExchange> = None;
    let mut registration = crate::limits::register::StreamRegistration::default();
    loop {
        let stanza = match next_event(reader, deadline).await? {
            StreamEvent::Stanza(s) => s,
            StreamEvent::Whitespace => continue,
            StreamEvent::End => return Err(ReadError::Closed),
            StreamEvent::Header(_) => return Err(stream_err(StreamErrorCondition::NotWellFormed, "unexpected header")),
        };
        let step = if stanza.is("auth", NS_SASL) {
            let mechanism = stanza.get_attr("mechanism").unwrap_or_default().to_string();
            if !front.auth_limiter.allowed(peer.ip()) {
                tracing::info!(ip = %peer.ip(), "authentication refused: too many failures from this address");
                Step::Failure(SaslFailure::TemporaryAuthFailure)
            } else if !offered.contains(&mechanism.as_str()) {
                Step::Failure(SaslFailure::InvalidMechanism)
            } else {
                // The credential lookup (and PLAIN's key derivation) runs in the steps.
                admission::readmit(front, deadline).await?;
                match SaslExchange::start(&front.ctx.store, domain, &mechanism, bindings.clone()) {
                    Err(f) => Step::Failure(f),
                    Ok(mut ex) => {
                        let step = match decode_sasl_payload(&stanza) {
                            Ok(data) if data.is_empty() => Step::Challenge(Vec::new()),
                            Ok(data) => ex.step(&data),
                            Err(f) => Step::Failure(f),
                        };
                        exchange = Some(ex);
                        step
                    }
                }
            }
        } else if stanza.is("response", NS_SASL) {
            match (exchange.as_mut(), decode_sasl_payload(&stanza)) {
                (Some(ex), Ok(data)) => {
                    admission::readmit(front, deadline).await?;
                    ex.step(&data)
                }
                (None, _) => Step::Failure(SaslFailure::MalformedRequest),
                (_, Err(f)) => Step::Failure(f),
            }
        } else if stanza.is("abort", NS_SASL) {
            // Counted like any failure, so aborting cannot retry without limit.
            Step::Failure(SaslFailure::Aborted)
        } else if stanza.is("iq", NS_CLIENT) && front.ctx.config.features.registration {
            crate::iq::register::pre_auth(&front.ctx, &stanza, domain, peer.ip(), &mut registration, tx).await;
            continue;
        } else {
            return Err(stream_err(StreamErrorCondition::NotAuthorized, "authenticate first"));
        };
        match step {
            Step::Challenge(data) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
                send(tx, format!("<challenge xmlns='{NS_SASL}'>{b64}</challenge>")).await;
            }
            Step::Success { username, data } => {
                let body = match data {
                    Some(d) if !d.is_empty() => base64::engine::general_purpose::STANDARD.encode(&d),
                    _ => String::new(),
                };
                send(tx, format!("<success xmlns='{NS_SASL}'>{body}</success>")).await;
                tracing::info!(user = %username, %domain, "authenticated");
                return Ok(username);
            }
            Step::Failure(failure) => {
                exchange = None;
                if failure != SaslFailure::TemporaryAuthFailure {
                    front.auth_limiter.record_failure(peer.ip());
                }
                failures += 1;
                tracing::info!(ip = %peer.ip(), condition = failure.condition(), "authentication failed");
                let text = (failure == SaslFailure::TemporaryAuthFailure)
                    .then_some("too many failed attempts; try again later");
                send(tx, sasl_failure(failure, text)).await;
                if failures >= MAX_SASL_ATTEMPTS {
                    return Err(stream_err(
                        StreamErrorCondition::PolicyViolation,
                        "too many failed authentication attempts",
                    ));
                }
            }
        }
    }
}

/// Resource binding (RFC 6120 §7), and the RFC 3921 session IQ some old clients still send.
async fn bind<R: AsyncBufRead + Unpin>(
    front: &Arc<Frontend>,
    reader: &mut XmlStreamReader<R>,
    tx: OutboundTx,
    username: &str,
    domain: &str,
    peer: SocketAddr,
    deadline: Deadline,
) -> Result<Bound, ReadError> {
    loop {
        let stanza = match next_event(reader, deadline).await? {
            StreamEvent::Stanza(s) => s,
            StreamEvent::Whitespace => continue,
            StreamEvent::End => return Err(ReadError::Closed),
            StreamEvent::Header(_) => return Err(stream_err(StreamErrorCondition::NotWellFormed, "unexpected header")),
        };
        // XEP-0198: a client resumes a session instead of binding one; enabling comes after.
        if let Some(nonza) = Nonza::read(&stanza) {
            match nonza {
                Ok(Nonza::Resume { previd, h }) if front.ctx.config.features.stream_management => {
                    let bare = format!("{username}@{domain}");
                    match super::resumption::resume(front, &bare, &previd, h, &tx).await {
                        Ok(bound) => return Ok(bound),
                        Err(NotResumed::Failed(failed)) => send(&tx, failed).await,
                        // RFC 6120 §4.9.3.19, as for a user whose home is another node.
                        Err(NotResumed::Elsewhere(address)) => {
                            return Err(StreamError::see_other_host(
                                address,
                                "your session is on another node of this pool",
                            )
                            .into())
                        }
                    }
                }
                Ok(_) => send(&tx, sm::failed("unexpected-request", None)).await,
                Err(e) => return Err(stream_err(StreamErrorCondition::BadFormat, e.0)),
            }
            continue;
        }
        let Some(request) = stanza.get_child("bind", NS_BIND).filter(|_| stanza.is("iq", NS_CLIENT)) else {
            return Err(stream_err(StreamErrorCondition::NotAuthorized, "bind a resource first"));
        };
        if stanza.get_attr("type") != Some("set") {
            send(&tx, error_reply(&stanza, Condition::BadRequest, None).to_stream_xml()).await;
            continue;
        }
        let requested = request
            .get_child("resource", NS_BIND)
            .map(|r| r.text_content().trim().to_string())
            .filter(|r| !r.is_empty());
        let resource = requested.unwrap_or_else(|| format!("poolxmpp-{}", &new_stream_id()[..12]));
        let full = match jid::FullJid::new(&format!("{username}@{domain}/{resource}")) {
            Ok(j) => j,
            Err(_) => {
                send(
                    &tx,
                    error_reply(&stanza, Condition::BadRequest, Some("invalid resource")).to_stream_xml(),
                )
                .await;
                continue;
            }
        };
        let registered = {
            admission::readmit(front, deadline).await?;
            Bound::register(front, full, tx.clone(), peer.ip())
        };
        let bound = match registered {
            Ok(bound) => bound,
            Err(too_many) => {
                // RFC 6120 §7.6.2.1: the account's sessions stay as they are.
                tracing::info!(user = %username, "bind refused: too many resources");
                let text = too_many.to_string();
                send(
                    &tx,
                    error_reply(&stanza, Condition::ResourceConstraint, Some(&text)).to_stream_xml(),
                )
                .await;
                continue;
            }
        };
        let payload =
            Element::new("bind", NS_BIND).child(Element::new("jid", NS_BIND).text(bound.session.jid.to_string()));
        let mut reply = iq_result(&stanza, Some(payload));
        reply.remove_attr("from");
        reply.remove_attr("to");
        send(&tx, reply.to_stream_xml()).await;
        return Ok(bound);
    }
}
