//! What a plugin is handed: a stanza from the host's own parsed tree (so only XML the
//! host's reader accepted), re-serialized and bounded in size, with its `to` and `from`
//! normalised (RFC 7622 via the `jid` crate) in the header *and* in the XML, so a plugin
//! that keys storage on an address sees the same account the router resolved
//! (`ａｌｉｃｅ@localhost` is `alice@localhost`). Also who sent it, for the breaker.

use std::borrow::Cow;

use jid::Jid;

use super::instance::Fault;
use super::types;
use crate::xml::Element;

/// The boundary's view of one stanza, ready to queue.
pub struct Prepared {
    pub stanza: types::Stanza,
    /// Whose input this is, for the per-sender breaker: the sender's bare JID when it is a
    /// hosted domain's, else the sending domain (a remote server speaks for all its users).
    pub sender: Option<String>,
}

/// The host's side of the boundary: the size bound and the hosted domains.
#[derive(Debug, Clone)]
pub struct Intake {
    /// `[limits] plugin_stanza_bytes`.
    pub max_bytes: usize,
    /// Hosted domains, lower-case.
    pub domains: Vec<String>,
}

impl Intake {
    /// Convert a stanza for the boundary, or refuse it with [`Fault::TooLarge`] if its
    /// serialization exceeds the bound (escaping can make it larger than what was read).
    pub fn prepare(&self, stanza: &Element) -> Result<Prepared, Fault> {
        let stanza = normalised(stanza);
        let xml = stanza.to_stream_xml();
        if xml.len() > self.max_bytes {
            return Err(Fault::TooLarge(xml.len()));
        }
        let kind = match stanza.name.as_str() {
            "message" => types::StanzaKind::Message,
            "presence" => types::StanzaKind::Presence,
            _ => types::StanzaKind::Iq,
        };
        let attr = |n: &str| stanza.get_attr(n).unwrap_or_default().to_string();
        let sender = stanza
            .get_attr("from")
            .and_then(|f| Jid::new(f).ok())
            .map(|from| self.sender_key(&from));
        Ok(Prepared {
            stanza: types::Stanza {
                kind,
                from: attr("from"),
                to: attr("to"),
                type_: attr("type"),
                id: attr("id"),
                xml,
            },
            sender,
        })
    }

    fn sender_key(&self, from: &Jid) -> String {
        let domain = from.domain().as_str();
        if self.domains.iter().any(|d| d == domain) {
            from.to_bare().to_string()
        } else {
            domain.to_string()
        }
    }
}

/// The stanza with `to` and `from` in their normalised form; borrowed when they already
/// are (nearly always: the host stamps `from`, and clients mostly write canonical JIDs).
/// An address that does not parse is left alone (the router has already refused those a
/// client sent).
fn normalised(stanza: &Element) -> Cow<'_, Element> {
    let mut out = Cow::Borrowed(stanza);
    for name in ["to", "from"] {
        let Some(value) = stanza.get_attr(name) else { continue };
        let Ok(jid) = Jid::new(value) else { continue };
        let canonical = jid.to_string();
        if canonical != value {
            out.to_mut().set_attr(name, canonical);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::NS_CLIENT;

    fn intake(max_bytes: usize) -> Intake {
        Intake {
            max_bytes,
            domains: vec!["localhost".into()],
        }
    }

    #[test]
    fn addresses_reach_the_plugin_normalised_in_header_and_xml() {
        let iq = Element::new("iq", NS_CLIENT)
            .attr("from", "bob@localhost/r")
            .attr("to", "ａｌｉｃｅ@LocalHost")
            .attr("type", "get")
            .child(Element::new("vCard", "vcard-temp"));
        let p = intake(1 << 20).prepare(&iq).unwrap();
        assert_eq!(p.stanza.to, "alice@localhost");
        assert!(p.stanza.xml.contains("to='alice@localhost'"), "{}", p.stanza.xml);
        assert_eq!(p.sender.as_deref(), Some("bob@localhost"));
    }

    #[test]
    fn remote_senders_are_counted_by_domain_and_oversize_is_refused() {
        let m = Element::new("message", NS_CLIENT)
            .attr("from", "mallory@evil.example/x")
            .attr("to", "echo.localhost")
            .child(Element::new("body", NS_CLIENT).text("\"".repeat(100)));
        let p = intake(1 << 20).prepare(&m).unwrap();
        assert_eq!(p.sender.as_deref(), Some("evil.example"));
        // 100 quotes read as 100 bytes are written as 600.
        assert!(matches!(intake(300).prepare(&m), Err(Fault::TooLarge(n)) if n > 600));
    }
}
