//! Stanzas: reading what arrived, building replies, sending them.
//!
//! The host hands a plugin a [`Stanza`] record (a pre-parsed header plus the XML) and
//! routes whatever the plugin passes to [`send`]. The helpers here cover the patterns
//! nearly every plugin repeats: parse the payload, answer an IQ, bounce an error, reply
//! to a message with the addresses swapped.

pub use crate::bindings::types::{ErrorType, Stanza, StanzaError, StanzaKind};
use crate::host;
use crate::jid;
use crate::xml::{Element, XmlError, NS_CLIENT};

/// Namespace of stanza error conditions (RFC 6120 §8.3.3).
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

impl Stanza {
    /// Build the record the host would pass for this XML (for tests, and for plugins that
    /// keep stanzas in storage). The XML is a `jabber:client` stanza.
    pub fn from_xml(xml: &str) -> Result<Stanza, XmlError> {
        let e = Element::parse_in(xml, NS_CLIENT)?;
        Ok(Stanza::from_element(&e))
    }

    /// The record for an element.
    pub fn from_element(e: &Element) -> Stanza {
        let kind = match e.name.as_str() {
            "message" => StanzaKind::Message,
            "presence" => StanzaKind::Presence,
            _ => StanzaKind::Iq,
        };
        let attr = |n: &str| e.get_attr(n).unwrap_or_default().to_string();
        Stanza {
            kind,
            from: attr("from"),
            to: attr("to"),
            type_: attr("type"),
            id: attr("id"),
            xml: e.to_stream_xml(),
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
        self.kind == StanzaKind::Message
    }
    pub fn is_presence(&self) -> bool {
        self.kind == StanzaKind::Presence
    }
    pub fn is_iq(&self) -> bool {
        self.kind == StanzaKind::Iq
    }

    /// An IQ that asks for something (`get` or `set`) and therefore needs an answer.
    pub fn is_request(&self) -> bool {
        self.is_iq() && (self.type_ == "get" || self.type_ == "set")
    }

    /// The sender's bare JID.
    pub fn from_bare(&self) -> &str {
        jid::bare(&self.from)
    }

    /// The addressee's bare JID (empty if the stanza had no `to`).
    pub fn to_bare(&self) -> &str {
        jid::bare(&self.to)
    }

    /// A message's `<body/>` text, if any.
    pub fn body(&self) -> Option<String> {
        let e = self.element().ok()?;
        e.get_child("body", NS_CLIENT).map(Element::text_content)
    }
}

/// Start a reply to `request`: an element `name` with `from` and `to` swapped and the
/// same `id`. Used for IQ results and message replies.
pub fn reply(request: &Stanza, name: &str) -> Element {
    let mut e = Element::new(name, NS_CLIENT);
    if !request.to.is_empty() {
        e.set_attr("from", request.to.as_str());
    }
    if !request.from.is_empty() {
        e.set_attr("to", request.from.as_str());
    }
    if !request.id.is_empty() {
        e.set_attr("id", request.id.as_str());
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
pub fn send(stanza: &Element) -> Result<(), String> {
    host::send(&stanza.to_stream_xml())
}

impl StanzaError {
    /// An error of `type_` with a defined `condition` such as `item-not-found`.
    pub fn new(type_: ErrorType, condition: &str) -> Self {
        StanzaError {
            type_,
            condition: condition.to_string(),
            text: None,
        }
    }

    /// Add human-readable text.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    pub fn bad_request() -> Self {
        Self::new(ErrorType::Modify, "bad-request")
    }
    pub fn conflict() -> Self {
        Self::new(ErrorType::Cancel, "conflict")
    }
    pub fn feature_not_implemented() -> Self {
        Self::new(ErrorType::Cancel, "feature-not-implemented")
    }
    pub fn forbidden() -> Self {
        Self::new(ErrorType::Auth, "forbidden")
    }
    pub fn internal_server_error() -> Self {
        Self::new(ErrorType::Cancel, "internal-server-error")
    }
    pub fn item_not_found() -> Self {
        Self::new(ErrorType::Cancel, "item-not-found")
    }
    pub fn not_acceptable() -> Self {
        Self::new(ErrorType::Modify, "not-acceptable")
    }
    pub fn not_allowed() -> Self {
        Self::new(ErrorType::Cancel, "not-allowed")
    }
    pub fn policy_violation() -> Self {
        Self::new(ErrorType::Modify, "policy-violation")
    }
    pub fn resource_constraint() -> Self {
        Self::new(ErrorType::Wait, "resource-constraint")
    }
    pub fn service_unavailable() -> Self {
        Self::new(ErrorType::Cancel, "service-unavailable")
    }

    /// The `<error/>` element for this error.
    pub fn to_element(&self) -> Element {
        let kind = match self.type_ {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        };
        let mut e = Element::new("error", NS_CLIENT)
            .attr("type", kind)
            .child(Element::new(&self.condition, NS_STANZAS));
        if let Some(t) = &self.text {
            e.push(Element::new("text", NS_STANZAS).text(t.as_str()));
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
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no</text></error></message>"
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
    }
}
