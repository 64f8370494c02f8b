//! XEP-0202 entity time, answered by the server: `<time><tzo/><utc/></time>` for an IQ
//! get to a hosted domain or from a user about their own account (the host hands this
//! plugin IQs with no `to` as addressed to the sender's bare JID). The server keeps UTC,
//! so `tzo` is `Z`-equivalent `+00:00`. Another account's bare JID has no clock of its
//! own (its clients answer at their full JIDs): `service-unavailable`, as RFC 6121
//! §8.5.2.1.3 has the server answer IQs it does not handle for an account.

use poolxmpp_sdk::time::utc;
use poolxmpp_sdk::{iq_result, jid, now_ms, send, Config, Element, Feature, IqType, Stanza, StanzaError, StanzaType};

pub const NS_TIME: &str = "urn:xmpp:time";

pub struct EntityTime;

impl Feature for EntityTime {
    fn init(_config: &Config) -> Result<Self, String> {
        Ok(EntityTime)
    }

    fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError> {
        if !stanza.is_request() {
            return Ok(()); // results and errors are never answered
        }
        if let Some(to) = stanza.to_bare() {
            if jid::node(to).is_some() && !jid::same_bare(to, stanza.from_bare()) {
                return Err(StanzaError::service_unavailable());
            }
        }
        let payload = stanza.payload()?.ok_or_else(StanzaError::bad_request)?;
        if !payload.is("time", NS_TIME) {
            return Err(StanzaError::service_unavailable());
        }
        if stanza.type_ != StanzaType::Iq(IqType::Get) {
            return Err(StanzaError::not_allowed().with_text("the server's time cannot be set"));
        }
        let time = Element::new("time", NS_TIME)
            .child(Element::new("tzo", NS_TIME).text("+00:00"))
            .child(Element::new("utc", NS_TIME).text(utc(now_ms())));
        send(&iq_result(&stanza, Some(time))).map_err(|e| {
            poolxmpp_sdk::warn!("cannot answer an entity time query: {e}");
            StanzaError::internal_server_error()
        })
    }
}

poolxmpp_sdk::export_feature!(EntityTime);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use poolxmpp_sdk::{testing, Condition};

    fn iq(from: &str, to: &str, kind: &str, payload: &str) -> Stanza {
        Stanza::from_xml(&format!(
            "<iq from='{from}' to='{to}' type='{kind}' id='t1'>{payload}</iq>"
        ))
        .unwrap()
    }

    #[test]
    fn the_server_answers_and_other_accounts_do_not() {
        testing::reset();
        testing::with_host(|h| h.now_ms = 1_796_151_600_123);
        let q = "<time xmlns='urn:xmpp:time'/>";
        EntityTime.handle_stanza(iq("a@l/r", "l", "get", q)).unwrap();
        let sent = testing::take_sent();
        let time = sent[0].get_child("time", NS_TIME).unwrap();
        assert_eq!(
            time.get_child("utc", NS_TIME).unwrap().text_content(),
            "2026-12-01T19:00:00.123Z"
        );
        assert_eq!(time.get_child("tzo", NS_TIME).unwrap().text_content(), "+00:00");
        EntityTime.handle_stanza(iq("a@l/r", "a@l", "get", q)).unwrap();
        assert_eq!(testing::take_sent().len(), 1);
        let err = EntityTime.handle_stanza(iq("a@l/r", "b@l", "get", q)).unwrap_err();
        assert_eq!(err.condition, Condition::ServiceUnavailable);
        let err = EntityTime.handle_stanza(iq("a@l/r", "l", "set", q)).unwrap_err();
        assert_eq!(err.condition, Condition::NotAllowed);
    }
}
