//! The XML trace of a connection: every stanza read and every batch of bytes written,
//! logged under the target [`TARGET`] at `trace` level. Off unless an operator asks for it
//! (`[log] level = "info,poolxmpp::xml=trace"`); the `c2s` span around each line names the
//! peer and, once bound, the JID. Secrets (SASL responses, registration passwords) are
//! redacted before they reach the log.

use crate::xml::{Element, Node, NS_REGISTER, NS_SASL};

/// The tracing target of the XML trace.
pub const TARGET: &str = "poolxmpp::xml";

const REDACTED: &str = "[redacted]";

fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::TRACE)
}

/// A stanza (or stream-level element) the peer sent.
pub fn received(e: &Element) {
    if enabled() {
        tracing::trace!(target: TARGET, "in: {}", redacted(e).to_stream_xml());
    }
}

/// A stream header the peer sent (already parsed: shown by its attributes).
pub fn received_header(to: Option<&str>, from: Option<&str>, version: Option<&str>) {
    if enabled() {
        tracing::trace!(target: TARGET, ?to, ?from, ?version, "in: <stream:stream>");
    }
}

/// Bytes about to be written to the peer. What we send holds no client secret: SASL
/// challenges and success data are derived values, not passwords.
pub fn sent(bytes: &str) {
    if enabled() {
        tracing::trace!(target: TARGET, "out: {bytes}");
    }
}

/// `e` with what must not be logged replaced by [`REDACTED`].
fn redacted(e: &Element) -> std::borrow::Cow<'_, Element> {
    let secret = |el: &Element| {
        (&*el.ns == NS_SASL && matches!(el.name.as_str(), "auth" | "response"))
            || (el.name == "password" && &*el.ns == NS_REGISTER)
    };
    let holds_secret = secret(e)
        || e.elements()
            .filter(|c| &*c.ns == NS_REGISTER)
            .any(|q| q.elements().any(secret));
    if !holds_secret {
        return std::borrow::Cow::Borrowed(e);
    }
    let mut copy = e.clone();
    blank(&mut copy, &secret);
    std::borrow::Cow::Owned(copy)
}

fn blank(e: &mut Element, secret: &dyn Fn(&Element) -> bool) {
    if secret(e) {
        e.children = vec![Node::Text(REDACTED.to_string())];
        return;
    }
    for child in &mut e.children {
        if let Node::Element(c) = child {
            blank(c, secret);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted() {
        let auth = Element::new("auth", NS_SASL)
            .attr("mechanism", "PLAIN")
            .text("AGFsaWNlAHB3");
        let shown = redacted(&auth).to_stream_xml();
        assert!(!shown.contains("AGFsaWNlAHB3") && shown.contains(REDACTED), "{shown}");
        let register = Element::new("iq", "jabber:client").child(
            Element::new("query", NS_REGISTER)
                .child(Element::new("username", NS_REGISTER).text("alice"))
                .child(Element::new("password", NS_REGISTER).text("hunter2")),
        );
        let shown = redacted(&register).to_stream_xml();
        assert!(!shown.contains("hunter2") && shown.contains("alice"), "{shown}");
        let message = Element::new("message", "jabber:client").child(Element::new("body", "jabber:client").text("hi"));
        assert!(matches!(redacted(&message), std::borrow::Cow::Borrowed(_)));
    }
}
