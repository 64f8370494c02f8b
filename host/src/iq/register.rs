//! XEP-0077 in-band registration: account creation before authentication, password change
//! and cancellation after. Off unless `[features] registration = true`.

use std::net::IpAddr;
use std::sync::Arc;

use crate::context::Context;
use crate::limits::register::StreamRegistration;
use crate::sessions::Session;
use crate::stanza::{error_reply, error_reply_as, iq_result, Condition, Outcome, StanzaError};
use crate::store::StoreError;
use crate::stream::{Outbound, OutboundTx};
use crate::xml::Element;

pub use crate::xml::NS_REGISTER;

fn form() -> Element {
    Element::new("query", NS_REGISTER)
        .child(Element::new("instructions", NS_REGISTER).text("Choose a username and password."))
        .child(Element::new("username", NS_REGISTER))
        .child(Element::new("password", NS_REGISTER))
}

fn field(q: &Element, name: &str) -> Option<String> {
    q.get_child(name, NS_REGISTER).map(|e| e.text_content())
}

/// Validate and create an account; the outcome as a stanza condition.
async fn create(ctx: &Context, domain: &str, username: &str, password: &str) -> Result<(), Condition> {
    let jid = jid::BareJid::new(&format!("{username}@{domain}")).map_err(|_| Condition::JidMalformed)?;
    let creds = crate::auth::derive_credentials(password).map_err(|_| Condition::NotAcceptable)?;
    match ctx.store.create_account(&jid.to_string(), domain, &creds).await {
        Ok(()) => {
            tracing::info!(%jid, "account registered in-band");
            Ok(())
        }
        Err(StoreError::AccountExists) => Err(Condition::Conflict),
        Err(e) => {
            tracing::error!(error = %e, "in-band registration failed");
            Err(Condition::InternalServerError)
        }
    }
}

/// The stanza error for a throttled registration or password change.
fn throttled(iq: &Element, refused: crate::limits::register::Refused) -> Element {
    let (error_type, text) = refused.error();
    error_reply_as(iq, error_type, Condition::PolicyViolation, Some(text), None)
}

/// A registration IQ on an unauthenticated stream from `ip`; `stream` remembers what this
/// stream registered (XEP-0077 §11: throttled per stream and per address).
pub async fn pre_auth(
    ctx: &Arc<Context>,
    iq: &Element,
    domain: &str,
    ip: IpAddr,
    stream: &mut StreamRegistration,
    tx: &OutboundTx,
) {
    let query = iq.get_child("query", NS_REGISTER);
    let reply = match (iq.get_attr("type"), query) {
        (Some("get"), Some(_)) => iq_result(iq, Some(form())),
        (Some("set"), Some(q)) => match (field(q, "username"), field(q, "password")) {
            (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => {
                match ctx.register_throttle.registration(stream, ip) {
                    Err(refused) => {
                        tracing::info!(%ip, ?refused, "in-band registration refused");
                        throttled(iq, refused)
                    }
                    Ok(()) => match create(ctx, domain, &u, &p).await {
                        Ok(()) => {
                            stream.succeeded();
                            iq_result(iq, None)
                        }
                        Err(c) => error_reply(iq, c, None),
                    },
                }
            }
            _ => error_reply(iq, Condition::NotAcceptable, Some("username and password are required")),
        },
        _ => error_reply(iq, Condition::ServiceUnavailable, None),
    };
    let _ = tx.send(Outbound::Raw(reply.to_stream_xml().into())).await;
}

/// Password change or account removal by the logged-in user.
pub async fn authenticated(ctx: &Arc<Context>, client: &mut Session, iq: &Element, query: &Element) -> Outcome {
    let reply_ok = || crate::delivery::deliver_to_full(ctx, &iq_result(iq, None));
    if iq.get_attr("type") == Some("get") {
        let q = Element::new("query", NS_REGISTER)
            .child(Element::new("registered", NS_REGISTER))
            .child(
                Element::new("username", NS_REGISTER)
                    .text(client.jid.node().map(|n| n.to_string()).unwrap_or_default()),
            );
        crate::delivery::deliver_to_full(ctx, &iq_result(iq, Some(q)));
        return Ok(());
    }
    if query.has_child("remove", NS_REGISTER) {
        // XEP-0077 §3.2: the result first, then every session of the account is closed.
        return crate::account::remove(ctx, &client.bare, reply_ok)
            .await
            .map_err(|_| Condition::InternalServerError.into());
    }
    match field(query, "password") {
        Some(_)
            if ctx
                .register_throttle
                .password_change(&client.bare, client.peer)
                .is_err() =>
        {
            tracing::info!(jid = %client.bare, ip = %client.peer, "password change refused: too often");
            let refused = crate::limits::register::Refused::TooOften;
            crate::delivery::deliver_to_full(ctx, &throttled(iq, refused));
            Ok(())
        }
        Some(p) if !p.is_empty() => {
            let creds = crate::auth::derive_credentials(&p).map_err(|_| StanzaError::from(Condition::NotAcceptable))?;
            ctx.store
                .set_credentials(&client.bare, &creds)
                .await
                .map_err(|_| StanzaError::from(Condition::InternalServerError))?;
            reply_ok();
            Ok(())
        }
        _ => Err(Condition::BadRequest.into()),
    }
}
