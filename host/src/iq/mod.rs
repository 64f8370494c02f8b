//! IQs the server answers itself (RFC 6120 §8.2.3, RFC 6121 §8.5.2.1.3): to the domain
//! (disco, version, ping), to the sender's own account (roster, session, disco), and to
//! another account's bare JID on that account's behalf.

pub mod register;

use std::sync::Arc;

use crate::context::Context;
use crate::delivery::deliver_to_full;
use crate::features::FeatureCalls;
use crate::sessions::Session;
use crate::stanza::{iq_payload, iq_result, Condition, IqType, Outcome, StanzaError};
use crate::xml::Element;

pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
pub const NS_VERSION: &str = "jabber:iq:version";
pub const NS_PING: &str = "urn:xmpp:ping";
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
use crate::delivery::carbons::NS_CARBONS;

/// Features the server advertises in disco#info (XEP-0030).
const SERVER_FEATURES: &[&str] = &[
    NS_DISCO_INFO,
    NS_DISCO_ITEMS,
    NS_VERSION,
    NS_PING,
    "msgoffline",
    "jabber:iq:roster",
    "urn:xmpp:features:rosterver",
    "urn:xmpp:features:pre-approval",
    NS_CARBONS,
];

/// A get or set needs exactly one payload; results and errors need no answer (`None`).
fn request_payload(iq: &Element) -> Result<Option<&Element>, StanzaError> {
    match IqType::of(iq) {
        Some(t) if t.is_request() => {}
        Some(_) => return Ok(None),
        None => return Err(StanzaError::with_text(Condition::BadRequest, "an IQ needs a type")),
    }
    if iq.get_attr("id").is_none() {
        return Err(StanzaError::with_text(Condition::BadRequest, "an IQ needs an id"));
    }
    match iq_payload(iq) {
        Some(payload) => Ok(Some(payload)),
        None => Err(StanzaError::with_text(
            Condition::BadRequest,
            "a get or set carries exactly one child",
        )),
    }
}

fn answer(ctx: &Context, iq: &Element, payload: Option<Element>) -> Outcome {
    deliver_to_full(ctx, &iq_result(iq, payload));
    Ok(())
}

fn identity(category: &str, kind: &str, name: Option<&str>) -> Element {
    let mut e = Element::new("identity", NS_DISCO_INFO)
        .attr("category", category)
        .attr("type", kind);
    if let Some(n) = name {
        e.set_attr("name", n);
    }
    e
}

fn feature(var: &str) -> Element {
    Element::new("feature", NS_DISCO_INFO).attr("var", var)
}

/// An IQ addressed to a hosted domain.
pub async fn handle_for_server(ctx: &Arc<Context>, client: &mut Session, iq: &Element) -> Outcome {
    let Some(payload) = request_payload(iq)? else {
        // A result or an error: perhaps the answer to the server's own caps query.
        ctx.caps.answered(&client.jid.to_string(), iq);
        return Ok(());
    };
    let get = iq.get_attr("type") == Some("get");
    match (payload.ns.as_str(), payload.name.as_str(), get) {
        (NS_DISCO_INFO, "query", true) if payload.get_attr("node").is_none() => {
            let mut q = Element::new("query", NS_DISCO_INFO).child(identity("server", "im", Some("poolxmpp")));
            for f in SERVER_FEATURES {
                q = q.child(feature(f));
            }
            if ctx.config.features.registration {
                q = q.child(feature(register::NS_REGISTER));
            }
            for f in &ctx.features.disco_features() {
                q = q.child(feature(f));
            }
            answer(ctx, iq, Some(q))
        }
        (NS_DISCO_ITEMS, "query", true) => {
            // Component services run by plugins on this domain (XEP-0030 §4).
            let domain = iq.get_attr("to").unwrap_or_default().to_ascii_lowercase();
            let mut q = Element::new("query", NS_DISCO_ITEMS);
            let suffix = format!(".{domain}");
            let mut services: Vec<String> = ctx
                .features
                .addresses()
                .into_iter()
                .filter(|a| a.ends_with(&suffix))
                .collect();
            services.sort();
            for a in services {
                q = q.child(Element::new("item", NS_DISCO_ITEMS).attr("jid", a.as_str()));
            }
            answer(ctx, iq, Some(q))
        }
        (NS_VERSION, "query", true) => {
            let q = Element::new("query", NS_VERSION)
                .child(Element::new("name", NS_VERSION).text("poolxmpp"))
                .child(Element::new("version", NS_VERSION).text(env!("CARGO_PKG_VERSION")));
            answer(ctx, iq, Some(q))
        }
        (NS_PING, "ping", true) => answer(ctx, iq, None),
        (NS_SESSION, "session", false) => answer(ctx, iq, None),
        (NS_CARBONS, "enable" | "disable", false) => {
            ctx.sessions
                .set_carbons(&client.bare, client.id, payload.name == "enable");
            answer(ctx, iq, None)
        }
        (register::NS_REGISTER, "query", _) if ctx.config.features.registration => {
            register::authenticated(ctx, client, iq, payload).await
        }
        _ => to_feature_or_unavailable(ctx, iq.clone(), Some(&client.feature_calls)).await,
    }
}

/// An IQ with no `to` or addressed to the sender's own bare JID.
pub async fn handle_for_account(ctx: &Arc<Context>, client: &mut Session, iq: &Element) -> Outcome {
    let Some(payload) = request_payload(iq)? else {
        return Ok(());
    };
    let get = iq.get_attr("type") == Some("get");
    if let Some(feature) = about_account_items(ctx, payload, get) {
        let iq = addressed_to_account(iq, client);
        return to_feature(ctx, iq, Some(feature), Some(&client.feature_calls)).await;
    }
    match (payload.ns.as_str(), payload.name.as_str(), get) {
        (crate::roster::NS_ROSTER, "query", _) => crate::roster::handle_iq(ctx, client, iq).await,
        // RFC 3921 session establishment: a no-op kept for old clients.
        (NS_SESSION, "session", false) => reply_to_self(ctx, client, iq, None),
        (NS_PING, "ping", true) => reply_to_self(ctx, client, iq, None),
        // XEP-0280 §4: carbons are enabled per session, with no `to` (or the account's).
        (NS_CARBONS, "enable" | "disable", false) => {
            ctx.sessions
                .set_carbons(&client.bare, client.id, payload.name == "enable");
            reply_to_self(ctx, client, iq, None)
        }
        (NS_DISCO_INFO, "query", true) => reply_to_self(ctx, client, iq, Some(account_info(ctx))),
        (NS_DISCO_ITEMS, "query", true) => reply_to_self(ctx, client, iq, Some(Element::new("query", NS_DISCO_ITEMS))),
        // XEP-0077 §3.2: a cancellation with the home server carries no `to`.
        (register::NS_REGISTER, "query", _) if ctx.config.features.registration => {
            register::authenticated(ctx, client, iq, payload).await
        }
        _ => to_feature_or_unavailable(ctx, addressed_to_account(iq, client), Some(&client.feature_calls)).await,
    }
}

/// The IQ as plugins see it: about the account it is for, a missing `to` meaning the
/// sender's own bare JID (RFC 6120 §10.3.3).
fn addressed_to_account(iq: &Element, client: &Session) -> Element {
    let mut iq = iq.clone();
    if iq.get_attr("to").is_none() {
        iq.set_attr("to", client.jid.to_bare().to_string());
    }
    iq
}

/// An account's disco#info: the account itself, and what the features serve on every
/// account's behalf (PEP, XEP-0163 §6.1).
fn account_info(ctx: &Context) -> Element {
    let (identities, features) = ctx.features.account_disco();
    let mut q = Element::new("query", NS_DISCO_INFO).child(identity("account", "registered", None));
    for (category, kind) in &identities {
        q = q.child(identity(category, kind, None));
    }
    q = q.child(feature(NS_DISCO_INFO)).child(feature(NS_DISCO_ITEMS));
    for f in &features {
        q = q.child(feature(f));
    }
    q
}

/// Replies to IQs without `to` come from the account's bare JID (or nowhere) to the sender.
fn reply_to_self(ctx: &Context, client: &Session, iq: &Element, payload: Option<Element>) -> Outcome {
    let mut reply = iq_result(iq, payload);
    if iq.get_attr("to").is_none() {
        reply.remove_attr("from");
    }
    reply.set_attr("to", client.jid.to_string());
    deliver_to_full(ctx, &reply);
    Ok(())
}

/// An IQ to another local account's bare JID, answered on its behalf; `calls` are the
/// sending session's feature calls when a local client sent it.
pub async fn handle_for_other_account(
    ctx: &Arc<Context>,
    bare: &str,
    iq: &Element,
    calls: Option<&FeatureCalls>,
) -> Outcome {
    let Some(payload) = request_payload(iq)? else {
        return Ok(());
    };
    match ctx.store.account_exists(bare).await {
        Ok(true) => {}
        Ok(false) => return Err(Condition::ServiceUnavailable.into()),
        Err(e) => {
            tracing::error!(error = %e, "account lookup failed");
            return Err(Condition::InternalServerError.into());
        }
    }
    let get = iq.get_attr("type") == Some("get");
    if let Some(feature) = about_account_items(ctx, payload, get) {
        return to_feature(ctx, iq.clone(), Some(feature), calls).await;
    }
    match (payload.ns.as_str(), payload.name.as_str(), get) {
        (crate::roster::NS_ROSTER, _, _) => Err(Condition::Forbidden.into()),
        (NS_DISCO_INFO, "query", true) => answer(ctx, iq, Some(account_info(ctx))),
        (NS_DISCO_ITEMS, "query", true) => answer(ctx, iq, Some(Element::new("query", NS_DISCO_ITEMS))),
        _ => to_feature_or_unavailable(ctx, iq.clone(), calls).await,
    }
}

/// An IQ whose payload namespace a feature claims goes to that feature; anything else gets
/// `service-unavailable` (RFC 6120 §8.4).
/// A local client's IQ (`calls` its session's feature calls) waits for the feature as its
/// other stanzas do (`delivery::dispatch_from_client`); one from elsewhere is queued or
/// refused at once.
async fn to_feature_or_unavailable(ctx: &Arc<Context>, iq: Element, calls: Option<&FeatureCalls>) -> Outcome {
    let feature = iq_payload(&iq).and_then(|p| ctx.features.for_iq_namespace(&p.ns));
    to_feature(ctx, iq, feature, calls).await
}

/// The feature that answers this request to an account, if it is a disco query one
/// answers: disco#items of the account, or disco#info about one of its nodes (a `node`
/// attribute); the account's own disco#info is the server's to answer.
fn about_account_items(ctx: &Context, payload: &Element, get: bool) -> Option<Arc<dyn crate::features::Feature>> {
    let disco = payload.name == "query"
        && (payload.ns == NS_DISCO_ITEMS || (payload.ns == NS_DISCO_INFO && payload.get_attr("node").is_some()));
    if !get || !disco {
        return None;
    }
    ctx.features.for_account_items()
}

/// `iq` to `feature` (or `service-unavailable` without one), waiting for it as
/// [`to_feature_or_unavailable`] says.
async fn to_feature(
    ctx: &Arc<Context>,
    iq: Element,
    feature: Option<Arc<dyn crate::features::Feature>>,
    calls: Option<&FeatureCalls>,
) -> Outcome {
    match (feature, calls) {
        (Some(f), Some(calls)) => {
            crate::delivery::dispatch_from_client(ctx, calls, &*f, iq).await;
            Ok(())
        }
        (Some(f), None) => {
            crate::delivery::dispatch_to_feature(ctx, &*f, iq);
            Ok(())
        }
        (None, _) => Err(Condition::ServiceUnavailable.into()),
    }
}
