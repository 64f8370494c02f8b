//! Stanzas: reading what arrived, building replies, sending them.
//!
//! The host hands a plugin a [`Stanza`] record (a pre-parsed header plus the XML) and
//! routes whatever the plugin passes to [`send`]. The helpers here cover the patterns
//! nearly every plugin repeats: parse the payload, answer an IQ, bounce an error, reply
//! to a message with the addresses swapped.

pub use crate::bindings::types::{
    Condition, ErrorType, IqType, MessageType, PresenceType, SendError, Stanza, StanzaError, StanzaType,
};
use crate::host;
use crate::jid;
use crate::xml::{Element, XmlError, NS_CLIENT};

/// Namespace of stanza error conditions (RFC 6120 §8.3.3).
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

impl Stanza {
    /// Build the record the host would pass for this XML (for tests, and for plugins that
    /// keep stanzas in storage). The XML is a `jabber:client` stanza; its root may leave
    /// the namespace undeclared.
    pub fn from_xml(xml: &str) -> Result<Stanza, XmlError> {
        let e = Element::parse_in(xml, NS_CLIENT)?;
        Ok(Stanza::from_element(&e))
    }

    /// The record for an element.
    pub fn from_element(e: &Element) -> Stanza {
        let attr = |n: &str| e.get_attr(n).map(str::to_string);
        Stanza {
            type_: StanzaType::of(e),
            from: attr("from").unwrap_or_default(),
            to: attr("to"),
            id: attr("id"),
            xml: e.to_xml(),
        }
    }

    /// The whole stanza as an element tree.
    pub fn element(&self) -> Result<Element, XmlError> {
        Element::parse_in(&self.xml, NS_CLIENT)
    }

    /// An IQ's payload: its first child element.
    pub fn payload(&self) -> Result<Option<Element>, XmlError> {
        Ok(self.element()?.elements().next().cloned())
    }

    pub fn is_message(&self) -> bool {
        matches!(self.type_, StanzaType::Message(_))
    }
    pub fn is_presence(&self) -> bool {
        matches!(self.type_, StanzaType::Presence(_))
    }
    pub fn is_iq(&self) -> bool {
        matches!(self.type_, StanzaType::Iq(_))
    }

    /// An IQ that asks for something (`get` or `set`) and therefore needs an answer.
    pub fn is_request(&self) -> bool {
        matches!(self.type_, StanzaType::Iq(IqType::Get | IqType::Set))
    }

    /// A stanza of type `error`, of any kind: never to be answered with an error.
    pub fn is_error(&self) -> bool {
        matches!(
            self.type_,
            StanzaType::Message(MessageType::Error)
                | StanzaType::Presence(PresenceType::Error)
                | StanzaType::Iq(IqType::Error)
        )
    }

    /// The sender's bare JID.
    pub fn from_bare(&self) -> &str {
        jid::bare(&self.from)
    }

    /// The addressee's bare JID, if the stanza had a `to`.
    pub fn to_bare(&self) -> Option<&str> {
        self.to.as_deref().map(jid::bare)
    }

    /// A message's `<body/>` text, if any.
    pub fn body(&self) -> Option<String> {
        let e = self.element().ok()?;
        e.get_child("body", NS_CLIENT).map(Element::text_content)
    }
}

impl StanzaType {
    /// The typed `type` of a `message`, `presence` or `iq` element, read as the RFCs say:
    /// no `type` is `normal` for messages and `available` for presence; an unknown
    /// message type is `normal`. (The host never hands over IQs or presence with a type
    /// the RFCs leave undefined; read here, such an IQ is `error` and such a presence
    /// `available`.)
    pub fn of(e: &Element) -> StanzaType {
        let t = e.get_attr("type");
        match e.name.as_str() {
            "presence" => StanzaType::Presence(match t {
                Some("unavailable") => PresenceType::Unavailable,
                Some("subscribe") => PresenceType::Subscribe,
                Some("subscribed") => PresenceType::Subscribed,
                Some("unsubscribe") => PresenceType::Unsubscribe,
                Some("unsubscribed") => PresenceType::Unsubscribed,
                Some("probe") => PresenceType::Probe,
                Some("error") => PresenceType::Error,
                _ => PresenceType::Available,
            }),
            "iq" => StanzaType::Iq(match t {
                Some("get") => IqType::Get,
                Some("set") => IqType::Set,
                Some("result") => IqType::Result,
                _ => IqType::Error,
            }),
            _ => StanzaType::Message(match t {
                Some("chat") => MessageType::Chat,
                Some("groupchat") => MessageType::Groupchat,
                Some("headline") => MessageType::Headline,
                Some("error") => MessageType::Error,
                _ => MessageType::Normal,
            }),
        }
    }
}

impl MessageType {
    /// The value of the `type` attribute.
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

/// Start a reply to `request`: an element `name` with `from` and `to` swapped and the
/// same `id`. Used for IQ results and message replies.
pub fn reply(request: &Stanza, name: &str) -> Element {
    let mut e = Element::new(name, NS_CLIENT);
    if let Some(to) = &request.to {
        e.set_attr("from", to.as_str());
    }
    if !request.from.is_empty() {
        e.set_attr("to", request.from.as_str());
    }
    if let Some(id) = &request.id {
        e.set_attr("id", id.as_str());
    }
    e
}

/// The `type='result'` answer to an IQ request, with an optional payload.
pub fn iq_result(request: &Stanza, payload: Option<Element>) -> Element {
    let mut e = reply(request, "iq").attr("type", "result");
    if let Some(p) = payload {
        e.push(p);
    }
    e
}

/// An error reply to `request` (RFC 6120 §8.3): addresses swapped, original children kept,
/// an `<error/>` appended. Plugins usually just return the [`StanzaError`] from
/// `handle_stanza` and let the host build this; use it for answers sent later.
pub fn error_reply(request: &Element, error: &StanzaError) -> Element {
    let mut e = request.clone();
    e.swap_addresses();
    e.set_attr("type", "error");
    e.push(error.to_element());
    e
}

/// Send a stanza through the host's router. It needs a `to`, and a `from` the plugin may
/// speak for (its component address, or a local user's bare JID for IQ-answering plugins).
pub fn send(stanza: &Element) -> Result<(), SendError> {
    host::send(&stanza.to_xml())
}

/// Send one stanza to many recipients in one host call (a room's occupants, a node's
/// subscribers): the host sets `to` to each in turn (the stanza's own `to` is ignored),
/// checks and parses the stanza once, and batches the copies per pool node. Returns how
/// many recipients it was routed to (invalid or unreachable ones are skipped); at most
/// 10,000 per call.
pub fn send_many(stanza: &Element, recipients: &[String]) -> Result<u32, SendError> {
    host::send_many(&stanza.to_xml(), recipients)
}

impl Condition {
    /// The condition's element name, e.g. `item-not-found`.
    pub fn name(self) -> &'static str {
        use Condition::*;
        match self {
            BadRequest => "bad-request",
            Conflict => "conflict",
            FeatureNotImplemented => "feature-not-implemented",
            Forbidden => "forbidden",
            Gone => "gone",
            InternalServerError => "internal-server-error",
            ItemNotFound => "item-not-found",
            JidMalformed => "jid-malformed",
            NotAcceptable => "not-acceptable",
            NotAllowed => "not-allowed",
            NotAuthorized => "not-authorized",
            PolicyViolation => "policy-violation",
            RecipientUnavailable => "recipient-unavailable",
            Redirect => "redirect",
            RegistrationRequired => "registration-required",
            RemoteServerNotFound => "remote-server-not-found",
            RemoteServerTimeout => "remote-server-timeout",
            ResourceConstraint => "resource-constraint",
            ServiceUnavailable => "service-unavailable",
            SubscriptionRequired => "subscription-required",
            UndefinedCondition => "undefined-condition",
            UnexpectedRequest => "unexpected-request",
        }
    }

    /// The error type RFC 6120 §8.3.3 gives the condition (the host uses the same when a
    /// [`StanzaError`] has none).
    pub fn default_type(self) -> ErrorType {
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

impl ErrorType {
    /// The value of the `type` attribute.
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

impl From<Condition> for StanzaError {
    fn from(condition: Condition) -> Self {
        StanzaError::new(condition)
    }
}

impl StanzaError {
    /// An error with a defined `condition`, of the type RFC 6120 gives it.
    pub fn new(condition: Condition) -> Self {
        StanzaError {
            condition,
            type_: None,
            text: None,
            application: None,
        }
    }

    /// Use another error type than the condition's usual one.
    pub fn with_type(mut self, type_: ErrorType) -> Self {
        self.type_ = Some(type_);
        self
    }

    /// Add human-readable text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Add an application-specific condition (RFC 6120 §8.3.4), an element in its own
    /// namespace, e.g. pubsub's `<unsupported xmlns='http://jabber.org/protocol/pubsub#errors'/>`.
    pub fn with_application(mut self, condition: &Element) -> Self {
        self.application = Some(condition.to_xml());
        self
    }

    /// The error type the host will write: the one given, else the condition's.
    pub fn error_type(&self) -> ErrorType {
        self.type_.unwrap_or(self.condition.default_type())
    }

    pub fn bad_request() -> Self {
        Self::new(Condition::BadRequest)
    }
    pub fn conflict() -> Self {
        Self::new(Condition::Conflict)
    }
    pub fn feature_not_implemented() -> Self {
        Self::new(Condition::FeatureNotImplemented)
    }
    pub fn forbidden() -> Self {
        Self::new(Condition::Forbidden)
    }
    pub fn internal_server_error() -> Self {
        Self::new(Condition::InternalServerError)
    }
    pub fn item_not_found() -> Self {
        Self::new(Condition::ItemNotFound)
    }
    pub fn not_acceptable() -> Self {
        Self::new(Condition::NotAcceptable)
    }
    pub fn not_allowed() -> Self {
        Self::new(Condition::NotAllowed)
    }
    pub fn policy_violation() -> Self {
        Self::new(Condition::PolicyViolation)
    }
    pub fn resource_constraint() -> Self {
        Self::new(Condition::ResourceConstraint)
    }
    pub fn service_unavailable() -> Self {
        Self::new(Condition::ServiceUnavailable)
    }

    /// The `<error/>` element for this error.
    pub fn to_element(&self) -> Element {
        let mut e = Element::new("error", NS_CLIENT)
            .attr("type", self.error_type().as_str())
            .child(Element::new(self.condition.name(), NS_STANZAS));
        if let Some(t) = &self.text {
            e.push(Element::new("text", NS_STANZAS).attr("xml:lang", "en").text(t.as_str()));
        }
        if let Some(app) = self.application.as_deref().and_then(|x| Element::parse(x).ok()) {
            e.push(app);
        }
        e
    }
}

impl From<XmlError> for StanzaError {
    /// A stanza the plugin cannot parse is the sender's fault.
    fn from(e: XmlError) -> Self {
        StanzaError::bad_request().with_text(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_headers_and_builds_replies() {
        let s = Stanza::from_xml("<iq from='a@b/r' to='a@b' type='get' id='1'><query xmlns='urn:x'/></iq>").unwrap();
        assert!(s.is_request());
        assert_eq!(s.from_bare(), "a@b");
        assert_eq!(s.payload().unwrap().unwrap().ns, "urn:x");
        assert_eq!(s.type_, StanzaType::Iq(IqType::Get));
        assert_eq!(s.to_bare(), Some("a@b"));
        assert!(s.xml.starts_with("<iq xmlns='jabber:client'"), "{}", s.xml);
        let r = iq_result(&s, None);
        assert_eq!(r.to_stream_xml(), "<iq from='a@b' to='a@b/r' id='1' type='result'/>");
    }

    #[test]
    fn builds_error_replies() {
        let e = Element::parse_in("<message from='x@y/z' to='echo.y'><body>hi</body></message>", NS_CLIENT).unwrap();
        let r = error_reply(&e, &StanzaError::policy_violation().with_text("no"));
        assert_eq!(
            r.to_stream_xml(),
            "<message to='x@y/z' from='echo.y' type='error'><body>hi</body><error type='modify'>\
             <policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>no</text></error></message>"
        );
        let mut m = Element::message("a", "b", "chat");
        m.swap_addresses();
        assert_eq!(m.get_attr("from"), Some("b"));
    }

    #[test]
    fn body_of_a_message() {
        let s = Stanza::from_xml("<message to='e'><body>a &amp; b</body></message>").unwrap();
        assert_eq!(s.body().as_deref(), Some("a & b"));
        assert!(s.is_message());
        assert_eq!(s.type_, StanzaType::Message(MessageType::Normal));
        assert_eq!((s.id.as_deref(), s.to_bare()), (None, Some("e")));
    }

    #[test]
    fn errors_take_their_conditions_type_unless_given() {
        let e = StanzaError::item_not_found();
        assert_eq!(e.error_type(), ErrorType::Cancel);
        assert_eq!(e.clone().with_type(ErrorType::Wait).error_type(), ErrorType::Wait);
        let app = Element::new("unsupported", "http://jabber.org/protocol/pubsub#errors").attr("feature", "publish");
        let x = StanzaError::feature_not_implemented()
            .with_application(&app)
            .to_element();
        assert!(x
            .get_child("unsupported", "http://jabber.org/protocol/pubsub#errors")
            .is_some());
    }
}
