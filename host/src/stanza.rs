//! Stanza-level helpers: kinds, addressing and the one place where a stanza error
//! (RFC 6120 §8.3) is built.

use crate::xml::{Element, NS_CLIENT};

pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Message,
    Presence,
    Iq,
}

impl Kind {
    pub fn of(e: &Element) -> Option<Kind> {
        if e.ns != NS_CLIENT {
            return None;
        }
        match e.name.as_str() {
            "message" => Some(Kind::Message),
            "presence" => Some(Kind::Presence),
            "iq" => Some(Kind::Iq),
            _ => None,
        }
    }
}

/// Stanza error conditions we emit, with their default error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    RemoteServerNotFound,
    ResourceConstraint,
    ServiceUnavailable,
    UndefinedCondition,
    UnexpectedRequest,
}

impl Condition {
    pub fn name(self) -> &'static str {
        match self {
            Condition::BadRequest => "bad-request",
            Condition::Conflict => "conflict",
            Condition::FeatureNotImplemented => "feature-not-implemented",
            Condition::Forbidden => "forbidden",
            Condition::InternalServerError => "internal-server-error",
            Condition::ItemNotFound => "item-not-found",
            Condition::JidMalformed => "jid-malformed",
            Condition::NotAcceptable => "not-acceptable",
            Condition::NotAllowed => "not-allowed",
            Condition::NotAuthorized => "not-authorized",
            Condition::PolicyViolation => "policy-violation",
            Condition::RecipientUnavailable => "recipient-unavailable",
            Condition::RemoteServerNotFound => "remote-server-not-found",
            Condition::ResourceConstraint => "resource-constraint",
            Condition::ServiceUnavailable => "service-unavailable",
            Condition::UndefinedCondition => "undefined-condition",
            Condition::UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 pairs with each condition.
    pub fn error_type(self) -> &'static str {
        match self {
            Condition::BadRequest
            | Condition::JidMalformed
            | Condition::NotAcceptable
            | Condition::NotAllowed
            | Condition::UnexpectedRequest => "modify",
            Condition::Conflict
            | Condition::FeatureNotImplemented
            | Condition::ItemNotFound
            | Condition::RemoteServerNotFound
            | Condition::ServiceUnavailable => "cancel",
            Condition::Forbidden | Condition::NotAuthorized | Condition::PolicyViolation => "auth",
            Condition::InternalServerError | Condition::UndefinedCondition => "cancel",
            Condition::RecipientUnavailable | Condition::ResourceConstraint => "wait",
        }
    }
}

/// Whether a stanza of this shape may be answered with an error. Errors are never
/// answered with errors (RFC 6120 §8.3.1), nor are IQ results.
pub fn may_bounce(e: &Element) -> bool {
    match e.get_attr("type") {
        Some("error") => false,
        Some("result") => e.name != "iq",
        _ => true,
    }
}

/// Build the error reply to `original`: addresses swapped, `type='error'`, the original
/// payload kept (RFC 6120 §8.3.1 allows it and clients use it to match the request).
pub fn error_reply(original: &Element, condition: Condition, text: Option<&str>) -> Element {
    error_reply_raw(original, condition.error_type(), condition.name(), text)
}

/// As [`error_reply`], for conditions given by name (e.g. by a plugin).
pub fn error_reply_raw(original: &Element, error_type: &str, condition: &str, text: Option<&str>) -> Element {
    let mut reply = Element::new(&original.name, NS_CLIENT);
    if let Some(id) = original.get_attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(from) = original.get_attr("to") {
        reply.set_attr("from", from);
    }
    if let Some(to) = original.get_attr("from") {
        reply.set_attr("to", to);
    }
    reply.set_attr("type", "error");
    if original.name == "iq" {
        reply.children = original.children.clone();
    }
    let mut error = Element::new("error", NS_CLIENT).attr("type", error_type);
    error = error.child(Element::new(condition, NS_STANZAS));
    if let Some(text) = text {
        error = error.child(Element::new("text", NS_STANZAS).attr("xml:lang", "en").text(text));
    }
    reply.children.push(crate::xml::Node::Element(error));
    reply
}

/// An IQ result with the same id, addresses swapped, and an optional payload.
pub fn iq_result(request: &Element, payload: Option<Element>) -> Element {
    let mut reply = Element::new("iq", NS_CLIENT).attr("type", "result");
    if let Some(id) = request.get_attr("id") {
        reply.set_attr("id", id);
    }
    if let Some(from) = request.get_attr("to") {
        reply.set_attr("from", from);
    }
    if let Some(to) = request.get_attr("from") {
        reply.set_attr("to", to);
    }
    if let Some(p) = payload {
        reply = reply.child(p);
    }
    reply
}

/// The single payload element of an IQ get/set, if it has exactly one (RFC 6120 §8.2.3).
pub fn iq_payload(iq: &Element) -> Option<&Element> {
    let mut it = iq.elements();
    let first = it.next()?;
    it.next().is_none().then_some(first)
}
