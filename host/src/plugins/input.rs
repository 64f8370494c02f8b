//! What a plugin is handed: a stanza from the host's own parsed tree (so only XML the
//! host's reader accepted), re-serialized and bounded in size, with its `to` and `from`
//! normalised (RFC 7622 via the `jid` crate) in the header *and* in the XML, so a plugin
//! that keys storage on an address sees the same account the router resolved
//! (`ａｌｉｃｅ@localhost` is `alice@localhost`). Also who sent it, for the breaker.

use std::borrow::Cow;

use super::address::{bare_jid, normalised as normalised_address};
use super::bindings::{latest, v0_1, Version};
use super::instance::Fault;
use crate::stanza::{IqType, Kind, MessageType, PresenceType, SubscriptionType};
use crate::xml::Element;

/// A stanza as the contract version of its plugin defines it.
pub enum Handed {
    V0_1(v0_1::feature::poolxmpp::plugin::types::Stanza),
    Latest(latest::types::Stanza),
}

/// The boundary's view of one stanza, ready to queue.
pub struct Prepared {
    pub stanza: Handed,
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
    /// Convert a stanza for a plugin built for `version`, or refuse it with
    /// [`Fault::TooLarge`] if its serialization exceeds the bound (escaping can make it
    /// larger than what was read).
    pub fn prepare(&self, stanza: &Element, version: Version) -> Result<Prepared, Fault> {
        let stanza = normalised(stanza);
        let sender = stanza.get_attr("from").and_then(|f| self.sender_key(f));
        let attr = |n: &str| stanza.get_attr(n).map(str::to_string);
        let handed = match version {
            Version::V0_2 => {
                let xml = stanza.to_xml();
                self.check_size(&xml)?;
                Handed::Latest(latest::types::Stanza {
                    type_: stanza_type(&stanza),
                    from: attr("from").unwrap_or_default(),
                    to: attr("to"),
                    id: attr("id"),
                    xml,
                })
            }
            Version::V0_1 => {
                use v0_1::feature::poolxmpp::plugin::types as old;
                let xml = stanza.to_stream_xml();
                self.check_size(&xml)?;
                let kind = match stanza.name.as_str() {
                    "message" => old::StanzaKind::Message,
                    "presence" => old::StanzaKind::Presence,
                    _ => old::StanzaKind::Iq,
                };
                Handed::V0_1(old::Stanza {
                    kind,
                    from: attr("from").unwrap_or_default(),
                    to: attr("to").unwrap_or_default(),
                    type_: attr("type").unwrap_or_default(),
                    id: attr("id").unwrap_or_default(),
                    xml,
                })
            }
        };
        Ok(Prepared { stanza: handed, sender })
    }

    fn check_size(&self, xml: &str) -> Result<(), Fault> {
        if xml.len() > self.max_bytes {
            return Err(Fault::TooLarge(xml.len()));
        }
        Ok(())
    }

    fn sender_key(&self, from: &str) -> Option<String> {
        let bare = bare_jid(from)?;
        let domain = bare.split_once('@').map_or(&*bare, |(_, domain)| domain);
        Some(match self.domains.iter().any(|d| d == domain) {
            true => bare.into_owned(),
            false => domain.to_string(),
        })
    }
}

/// The typed header of a stanza the router accepted. Types the RFCs leave undefined do
/// not get this far for IQs and presence (the router refuses them); a message's unknown
/// type is `normal`, as a receiver must take it.
fn stanza_type(stanza: &Element) -> latest::types::StanzaType {
    use latest::types::{IqType as WIq, MessageType as WMsg, PresenceType as WPres, StanzaType as T};
    match Kind::of(stanza) {
        Some(Kind::Presence) => T::Presence(match PresenceType::of(stanza) {
            Some(PresenceType::Available) | None => WPres::Available,
            Some(PresenceType::Unavailable) => WPres::Unavailable,
            Some(PresenceType::Probe) => WPres::Probe,
            Some(PresenceType::Error) => WPres::Error,
            Some(PresenceType::Subscription(s)) => match s {
                SubscriptionType::Subscribe => WPres::Subscribe,
                SubscriptionType::Subscribed => WPres::Subscribed,
                SubscriptionType::Unsubscribe => WPres::Unsubscribe,
                SubscriptionType::Unsubscribed => WPres::Unsubscribed,
            },
        }),
        Some(Kind::Iq) => T::Iq(match IqType::of(stanza) {
            Some(IqType::Get) => WIq::Get,
            Some(IqType::Set) => WIq::Set,
            Some(IqType::Result) => WIq::Result,
            Some(IqType::Error) | None => WIq::Error,
        }),
        _ => T::Message(match MessageType::of(stanza) {
            MessageType::Normal => WMsg::Normal,
            MessageType::Chat => WMsg::Chat,
            MessageType::Groupchat => WMsg::Groupchat,
            MessageType::Headline => WMsg::Headline,
            MessageType::Error => WMsg::Error,
        }),
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
        if let Some(Cow::Owned(canonical)) = normalised_address(value) {
            if canonical != value {
                out.to_mut().set_attr(name, canonical);
            }
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
        let p = intake(1 << 20).prepare(&iq, Version::LATEST).unwrap();
        let Handed::Latest(s) = p.stanza else {
            panic!("not the latest version")
        };
        assert_eq!(s.to.as_deref(), Some("alice@localhost"));
        assert!(s.xml.contains("to='alice@localhost'"), "{}", s.xml);
        assert_eq!(p.sender.as_deref(), Some("bob@localhost"));
    }

    #[test]
    fn remote_senders_are_counted_by_domain_and_oversize_is_refused() {
        let m = Element::new("message", NS_CLIENT)
            .attr("from", "mallory@evil.example/x")
            .attr("to", "echo.localhost")
            .child(Element::new("body", NS_CLIENT).text("\"".repeat(100)));
        let p = intake(1 << 20).prepare(&m, Version::LATEST).unwrap();
        assert_eq!(p.sender.as_deref(), Some("evil.example"));
        // 100 quotes read as 100 bytes are written as 600.
        assert!(matches!(intake(300).prepare(&m, Version::LATEST), Err(Fault::TooLarge(n)) if n > 600));
    }

    #[test]
    fn each_version_gets_its_own_form() {
        let m = Element::new("message", NS_CLIENT)
            .attr("from", "bob@localhost/r")
            .attr("to", "echo.localhost")
            .child(Element::new("body", NS_CLIENT).text("hi"));
        let Handed::Latest(new) = intake(1 << 20).prepare(&m, Version::V0_2).unwrap().stanza else {
            panic!("not 0.2")
        };
        assert!(new.xml.starts_with("<message xmlns='jabber:client'"), "{}", new.xml);
        assert!(matches!(
            new.type_,
            latest::types::StanzaType::Message(latest::types::MessageType::Normal)
        ));
        assert_eq!(new.id, None);
        let Handed::V0_1(old) = intake(1 << 20).prepare(&m, Version::V0_1).unwrap().stanza else {
            panic!("not 0.1")
        };
        assert!(old.xml.starts_with("<message from="), "{}", old.xml);
        assert_eq!((old.type_.as_str(), old.id.as_str()), ("", ""));
    }
}
