//! A feature plugin that owns the component address `echo.{domain}` (manifest
//! `addresses`) and sends every message body back to its sender. It answers service
//! discovery for itself (XEP-0030), so clients can find it in the server's disco#items.

use poolxmpp_sdk::{
    iq_result, reply, send, Config, Element, Feature, IqType, Stanza, StanzaError, StanzaType, NS_CLIENT,
};

const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const NS_DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";

pub struct Echo;

impl Echo {
    fn echo(&self, message: &Stanza) -> Result<(), StanzaError> {
        let Some(body) = message.body() else {
            return Ok(()); // chat states, receipts, ...: nothing to echo
        };
        let StanzaType::Message(kind) = message.type_ else {
            return Ok(());
        };
        let answer = reply(message, "message")
            .attr("type", kind.as_str())
            .child(Element::new("body", NS_CLIENT).text(body));
        send(&answer).map_err(|e| {
            poolxmpp_sdk::warn!("cannot echo to {}: {e}", message.from);
            StanzaError::internal_server_error()
        })
    }

    fn iq(&self, iq: &Stanza) -> Result<(), StanzaError> {
        let payload = iq.payload()?.ok_or_else(StanzaError::bad_request)?;
        let get = iq.type_ == StanzaType::Iq(IqType::Get);
        let answer = match (payload.ns.as_str(), payload.name.as_str(), get) {
            (NS_DISCO_INFO, "query", true) => Element::new("query", NS_DISCO_INFO)
                .child(
                    Element::new("identity", NS_DISCO_INFO)
                        .attr("category", "component")
                        .attr("type", "generic")
                        .attr("name", "Echo"),
                )
                .child(Element::new("feature", NS_DISCO_INFO).attr("var", NS_DISCO_INFO)),
            (NS_DISCO_ITEMS, "query", true) => Element::new("query", NS_DISCO_ITEMS),
            _ => return Err(StanzaError::service_unavailable()),
        };
        send(&iq_result(iq, Some(answer))).map_err(|_| StanzaError::internal_server_error())
    }
}

impl Feature for Echo {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(Echo)
    }

    fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError> {
        // Never answer errors or IQ results.
        if stanza.is_error() {
            return Ok(());
        }
        if stanza.is_message() {
            self.echo(&stanza)
        } else if stanza.is_request() {
            self.iq(&stanza)
        } else {
            Ok(())
        }
    }
}

poolxmpp_sdk::export_feature!(Echo);

// The in-memory host of `poolxmpp_sdk::testing` exists on native targets only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use poolxmpp_sdk::testing;

    #[test]
    fn echoes_bodies() {
        testing::reset();
        let m = Stanza::from_xml(
            "<message from='a@l/r' to='echo.l' type='chat' id='m1'><body>hi &amp; bye</body></message>",
        )
        .unwrap();
        Echo.handle_stanza(m).unwrap();
        let sent = testing::take_sent();
        assert_eq!(
            sent[0].to_stream_xml(),
            "<message from='echo.l' to='a@l/r' id='m1' type='chat'><body>hi &amp; bye</body></message>"
        );
    }

    #[test]
    fn answers_disco_and_refuses_the_rest() {
        testing::reset();
        let q = format!("<iq from='a@l/r' to='echo.l' type='get' id='d'><query xmlns='{NS_DISCO_INFO}'/></iq>");
        Echo.handle_stanza(Stanza::from_xml(&q).unwrap()).unwrap();
        let sent = testing::take_sent();
        let identity = sent[0]
            .get_child("query", NS_DISCO_INFO)
            .unwrap()
            .get_child("identity", NS_DISCO_INFO);
        assert_eq!(identity.unwrap().get_attr("name"), Some("Echo"));
        let v = "<iq from='a@l/r' to='echo.l' type='get' id='v'><query xmlns='jabber:iq:version'/></iq>";
        assert_eq!(
            Echo.handle_stanza(Stanza::from_xml(v).unwrap()).unwrap_err().condition,
            poolxmpp_sdk::Condition::ServiceUnavailable
        );
    }
}
