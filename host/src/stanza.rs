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

/// A message's `type` (RFC 6121 §5.2.2), read once where a stanza is routed. A missing or
/// unknown value is `normal`, as the RFC says a receiver must take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    Normal,
    Chat,
    Groupchat,
    Headline,
    Error,
}

impl MessageType {
    pub fn of(message: &Element) -> MessageType {
        match message.get_attr("type") {
            Some("chat") => MessageType::Chat,
            Some("groupchat") => MessageType::Groupchat,
            Some("headline") => MessageType::Headline,
            Some("error") => MessageType::Error,
            _ => MessageType::Normal,
        }
    }

    #[cfg(test)]
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Normal => "normal",
            MessageType::Chat => "chat",
            MessageType::Groupchat => "groupchat",
            MessageType::Headline => "headline",
            MessageType::Error => "error",
        }
    }
}

/// An IQ's `type` (RFC 6120 §8.2.3). Anything else is not an IQ the server may process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqType {
    Get,
    Set,
    Result,
    Error,
}

impl IqType {
    pub fn of(iq: &Element) -> Option<IqType> {
        match iq.get_attr("type")? {
            "get" => Some(IqType::Get),
            "set" => Some(IqType::Set),
            "result" => Some(IqType::Result),
            "error" => Some(IqType::Error),
            _ => None,
        }
    }

    /// A request, which must be answered (RFC 6120 §8.2.3).
    pub fn is_request(self) -> bool {
        matches!(self, IqType::Get | IqType::Set)
    }
}

/// A presence's `type` (RFC 6121 §4.7.1 and §3): availability, subscriptions, probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceType {
    /// No `type`: available.
    Available,
    Unavailable,
    Subscription(SubscriptionType),
    Probe,
    Error,
}

/// The four subscription stanzas (RFC 6121 §3), the inputs of the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionType {
    Subscribe,
    Subscribed,
    Unsubscribe,
    Unsubscribed,
}

impl PresenceType {
    /// `None` for a `type` RFC 6121 does not define (the stanza is refused).
    pub fn of(presence: &Element) -> Option<PresenceType> {
        Some(match presence.get_attr("type") {
            // Not an RFC 6121 value, but old clients send it and it can only mean this.
            None | Some("available") => PresenceType::Available,
            Some("unavailable") => PresenceType::Unavailable,
            Some("probe") => PresenceType::Probe,
            Some("error") => PresenceType::Error,
            Some(other) => PresenceType::Subscription(SubscriptionType::parse(other)?),
        })
    }
}

impl SubscriptionType {
    #[cfg(test)]
    pub const ALL: [SubscriptionType; 4] = [
        SubscriptionType::Subscribe,
        SubscriptionType::Subscribed,
        SubscriptionType::Unsubscribe,
        SubscriptionType::Unsubscribed,
    ];

    pub fn parse(value: &str) -> Option<SubscriptionType> {
        match value {
            "subscribe" => Some(SubscriptionType::Subscribe),
            "subscribed" => Some(SubscriptionType::Subscribed),
            "unsubscribe" => Some(SubscriptionType::Unsubscribe),
            "unsubscribed" => Some(SubscriptionType::Unsubscribed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionType::Subscribe => "subscribe",
            SubscriptionType::Subscribed => "subscribed",
            SubscriptionType::Unsubscribe => "unsubscribe",
            SubscriptionType::Unsubscribed => "unsubscribed",
        }
    }
}

/// The stanza error types of RFC 6120 §8.3.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// The defined stanza error conditions (RFC 6120 §8.3.3), with their usual error type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // `undefined-condition` is the RFC's name
pub enum Condition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    Gone,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    Redirect,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    SubscriptionRequired,
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
            Condition::Gone => "gone",
            Condition::InternalServerError => "internal-server-error",
            Condition::ItemNotFound => "item-not-found",
            Condition::JidMalformed => "jid-malformed",
            Condition::NotAcceptable => "not-acceptable",
            Condition::NotAllowed => "not-allowed",
            Condition::NotAuthorized => "not-authorized",
            Condition::PolicyViolation => "policy-violation",
            Condition::RecipientUnavailable => "recipient-unavailable",
            Condition::Redirect => "redirect",
            Condition::RegistrationRequired => "registration-required",
            Condition::RemoteServerNotFound => "remote-server-not-found",
            Condition::RemoteServerTimeout => "remote-server-timeout",
            Condition::ResourceConstraint => "resource-constraint",
            Condition::ServiceUnavailable => "service-unavailable",
            Condition::SubscriptionRequired => "subscription-required",
            Condition::UndefinedCondition => "undefined-condition",
            Condition::UnexpectedRequest => "unexpected-request",
        }
    }

    /// The condition with this element name; anything else is `undefined-condition`
    /// (only defined conditions go on the wire, RFC 6120 §8.3.3).
    pub fn from_name(name: &str) -> Condition {
        Condition::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .unwrap_or(Condition::UndefinedCondition)
    }

    pub const ALL: [Condition; 22] = [
        Condition::BadRequest,
        Condition::Conflict,
        Condition::FeatureNotImplemented,
        Condition::Forbidden,
        Condition::Gone,
        Condition::InternalServerError,
        Condition::ItemNotFound,
        Condition::JidMalformed,
        Condition::NotAcceptable,
        Condition::NotAllowed,
        Condition::NotAuthorized,
        Condition::PolicyViolation,
        Condition::RecipientUnavailable,
        Condition::Redirect,
        Condition::RegistrationRequired,
        Condition::RemoteServerNotFound,
        Condition::RemoteServerTimeout,
        Condition::ResourceConstraint,
        Condition::ServiceUnavailable,
        Condition::SubscriptionRequired,
        Condition::UndefinedCondition,
        Condition::UnexpectedRequest,
    ];

    /// The error type RFC 6120 §8.3.3 pairs with each condition.
    pub fn error_type(self) -> ErrorType {
        use Condition::*;
        match self {
            BadRequest | Gone | JidMalformed | NotAcceptable | NotAllowed | PolicyViolation | Redirect => {
                ErrorType::Modify
            }
            Forbidden | NotAuthorized | RegistrationRequired | SubscriptionRequired => ErrorType::Auth,
            RecipientUnavailable | RemoteServerTimeout | ResourceConstraint | UnexpectedRequest => ErrorType::Wait,
            Conflict
            | FeatureNotImplemented
            | InternalServerError
            | ItemNotFound
            | RemoteServerNotFound
            | ServiceUnavailable
            | UndefinedCondition => ErrorType::Cancel,
        }
    }
}

/// A stanza error a service answers with. Services return it instead of sending it: the
/// router alone turns it into the error reply (`delivery::bounce`), so every error reply
/// is built and addressed in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StanzaError {
    pub condition: Condition,
    /// Human-readable detail for the sender (`<text xml:lang='en'>`).
    pub text: Option<&'static str>,
}

impl StanzaError {
    pub fn with_text(condition: Condition, text: &'static str) -> StanzaError {
        StanzaError {
            condition,
            text: Some(text),
        }
    }
}

impl From<Condition> for StanzaError {
    fn from(condition: Condition) -> StanzaError {
        StanzaError { condition, text: None }
    }
}

/// What a service made of a stanza: handled (whatever it sent on the way), or the error
/// the sender gets.
pub type Outcome = Result<(), StanzaError>;

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
    error_reply_as(original, condition.error_type(), condition, text, None)
}

/// As [`error_reply`], with the error type given (a feature may choose another than the
/// condition's usual one) and an application-specific condition (RFC 6120 §8.3.4).
pub fn error_reply_as(
    original: &Element,
    error_type: ErrorType,
    condition: Condition,
    text: Option<&str>,
    application: Option<&Element>,
) -> Element {
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
    let mut error = Element::new("error", NS_CLIENT).attr("type", error_type.as_str());
    error = error.child(Element::new(condition.name(), NS_STANZAS));
    if let Some(text) = text {
        error = error.child(Element::new("text", NS_STANZAS).attr("xml:lang", "en").text(text));
    }
    if let Some(application) = application {
        error = error.child(application.clone());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_type(name: &str, t: Option<&str>) -> Element {
        let e = Element::new(name, NS_CLIENT);
        match t {
            Some(t) => e.attr("type", t),
            None => e,
        }
    }

    #[test]
    fn types_are_read_as_the_rfcs_say() {
        assert_eq!(MessageType::of(&with_type("message", None)), MessageType::Normal);
        assert_eq!(
            MessageType::of(&with_type("message", Some("bogus"))),
            MessageType::Normal
        );
        assert_eq!(MessageType::of(&with_type("message", Some("chat"))), MessageType::Chat);
        assert_eq!(IqType::of(&with_type("iq", Some("get"))), Some(IqType::Get));
        assert_eq!(IqType::of(&with_type("iq", Some("bogus"))), None);
        assert_eq!(
            PresenceType::of(&with_type("presence", None)),
            Some(PresenceType::Available)
        );
        assert_eq!(
            PresenceType::of(&with_type("presence", Some("unsubscribed"))),
            Some(PresenceType::Subscription(SubscriptionType::Unsubscribed))
        );
        assert_eq!(PresenceType::of(&with_type("presence", Some("bogus"))), None);
        for t in SubscriptionType::ALL {
            assert_eq!(SubscriptionType::parse(t.as_str()), Some(t));
        }
    }

    #[test]
    fn conditions_are_the_rfc_6120_set() {
        for c in Condition::ALL {
            assert_eq!(Condition::from_name(c.name()), c);
        }
        assert_eq!(Condition::from_name("no-such-thing"), Condition::UndefinedCondition);
        assert_eq!(Condition::ItemNotFound.error_type(), ErrorType::Cancel);
        assert_eq!(Condition::ResourceConstraint.error_type(), ErrorType::Wait);
    }
}
