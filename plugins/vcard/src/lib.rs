//! XEP-0054 vcard-temp as a poolxmpp feature plugin.
//!
//! The host hands this plugin every IQ whose payload is in `vcard-temp` and that is
//! addressed to a local account's bare JID (IQs without `to` arrive with `to` set to the
//! sender's bare JID). A `get` returns the stored vCard, or an empty one (XEP-0054 §3.1);
//! a `set` from the account itself replaces it (§3.2). vCards live only in host storage,
//! under `vcard/<bare jid>`, so they survive reloads, restarts and failover.
//!
//! It also answers `<query xmlns='urn:poolxmpp:plugin:vcard'/>` with the `build` value of
//! its manifest, so an operator (or a hot-reload test) can see which build is serving.
//!
//! XEP-0153 (vCard-based avatars in presence) is not implemented.

use poolxmpp_sdk::{iq_result, jid, send, storage, Config, Element, Feature, IqType, Stanza, StanzaError, StanzaType};

pub const NS_VCARD: &str = "vcard-temp";
pub const NS_BUILD: &str = "urn:poolxmpp:plugin:vcard";
/// Larger vCards are refused with `not-acceptable`: vCards are for names and small
/// avatars, and the host's storage is for many small records.
pub const MAX_VCARD_BYTES: usize = 64 * 1024;

pub struct VCard {
    build: String,
}

fn key(bare: &str) -> String {
    format!("vcard/{}", jid::normalize_bare(bare))
}

impl VCard {
    fn get(&self, request: &Stanza, owner: &str) -> Result<Element, StanzaError> {
        let stored = storage::get_string(&key(owner))?;
        let vcard = match stored {
            Some(xml) => Element::parse(&xml).map_err(|e| {
                poolxmpp_sdk::error!("stored vCard of {owner} is corrupt: {e}");
                StanzaError::internal_server_error()
            })?,
            None => Element::new("vCard", NS_VCARD),
        };
        Ok(iq_result(request, Some(vcard)))
    }

    fn set(&self, request: &Stanza, owner: &str, vcard: &Element) -> Result<Element, StanzaError> {
        if !jid::same_bare(request.from_bare(), owner) {
            return Err(StanzaError::forbidden().with_text("only the account itself may change its vCard"));
        }
        let xml = vcard.to_xml();
        if xml.len() > MAX_VCARD_BYTES {
            return Err(
                StanzaError::not_acceptable().with_text(format!("vCards are limited to {MAX_VCARD_BYTES} bytes"))
            );
        }
        storage::put_string(&key(owner), &xml)?;
        poolxmpp_sdk::debug!("stored the vCard of {owner} ({} bytes)", xml.len());
        Ok(iq_result(request, None))
    }

    fn build_info(&self, request: &Stanza) -> Element {
        let query = Element::new("query", NS_BUILD)
            .child(Element::new("build", NS_BUILD).text(self.build.as_str()))
            .child(Element::new("version", NS_BUILD).text(env!("CARGO_PKG_VERSION")));
        iq_result(request, Some(query))
    }
}

impl Feature for VCard {
    fn init(config: &Config) -> Result<Self, String> {
        let build = config.get_or("build", env!("CARGO_PKG_VERSION")).to_string();
        poolxmpp_sdk::info!("vcard plugin build {build} ready");
        Ok(VCard { build })
    }

    fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError> {
        // Results and errors need no answer; messages and presence are not ours.
        if !stanza.is_request() {
            return Ok(());
        }
        // Cheap size check before parsing: an oversize set cannot become an acceptable vCard.
        if stanza.type_ == StanzaType::Iq(IqType::Set) && stanza.xml.len() > MAX_VCARD_BYTES + 4096 {
            return Err(
                StanzaError::not_acceptable().with_text(format!("vCards are limited to {MAX_VCARD_BYTES} bytes"))
            );
        }
        let payload = stanza.payload()?.ok_or_else(StanzaError::bad_request)?;
        // The account the vCard belongs to: the `to` of the request (the host fills in the
        // sender's bare JID when the client sent none, and normalises it: `ａｌｉｃｅ@x` is `alice@x`).
        let owner = stanza.to_bare().unwrap_or(stanza.from_bare()).to_string();
        let set = stanza.type_ == StanzaType::Iq(IqType::Set);
        let reply = match (payload.ns.as_str(), payload.name.as_str(), set) {
            (NS_VCARD, "vCard", false) => self.get(&stanza, &owner)?,
            (NS_VCARD, "vCard", true) => self.set(&stanza, &owner, &payload)?,
            (NS_BUILD, "query", false) => self.build_info(&stanza),
            (NS_VCARD, _, _) | (NS_BUILD, _, _) => return Err(StanzaError::bad_request()),
            _ => return Err(StanzaError::service_unavailable()),
        };
        send(&reply).map_err(|e| {
            poolxmpp_sdk::warn!("cannot send the reply: {e}");
            StanzaError::internal_server_error()
        })
    }
}

poolxmpp_sdk::export_feature!(VCard);

// The in-memory host of `poolxmpp_sdk::testing` exists on native targets only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use poolxmpp_sdk::{testing, Condition};

    fn plugin() -> VCard {
        testing::reset();
        VCard::init(&Config::from([("build", "b1")])).unwrap()
    }

    fn iq(from: &str, to: &str, kind: &str, payload: &str) -> Stanza {
        Stanza::from_xml(&format!(
            "<iq from='{from}' to='{to}' type='{kind}' id='q1'>{payload}</iq>"
        ))
        .unwrap()
    }

    fn one_reply() -> Element {
        let mut sent = testing::take_sent();
        assert_eq!(sent.len(), 1, "{sent:?}");
        sent.remove(0)
    }

    #[test]
    fn get_without_a_stored_vcard_is_empty() {
        let mut p = plugin();
        p.handle_stanza(iq("bob@l/r", "alice@l", "get", "<vCard xmlns='vcard-temp'/>"))
            .unwrap();
        let r = one_reply();
        assert_eq!(
            r.to_stream_xml(),
            "<iq from='alice@l' to='bob@l/r' id='q1' type='result'><vCard xmlns='vcard-temp'/></iq>"
        );
    }

    #[test]
    fn owner_sets_then_anyone_gets() {
        let mut p = plugin();
        let card = "<vCard xmlns='vcard-temp'><FN>Alice &amp; Co</FN><NICKNAME>al</NICKNAME></vCard>";
        p.handle_stanza(iq("alice@l/phone", "alice@l", "set", card)).unwrap();
        let r = one_reply();
        assert_eq!(r.get_attr("type"), Some("result"));
        assert!(r.children.is_empty());
        assert_eq!(testing::stored("vcard/alice@l").as_deref(), Some(card));

        p.handle_stanza(iq("bob@l/r", "Alice@L", "get", "<vCard xmlns='vcard-temp'/>"))
            .unwrap();
        let r = one_reply();
        let v = r.get_child("vCard", NS_VCARD).unwrap();
        assert_eq!(v.get_child("FN", NS_VCARD).unwrap().text_content(), "Alice & Co");
    }

    #[test]
    fn others_may_not_set() {
        let mut p = plugin();
        let err = p
            .handle_stanza(iq(
                "bob@l/r",
                "alice@l",
                "set",
                "<vCard xmlns='vcard-temp'><FN>x</FN></vCard>",
            ))
            .unwrap_err();
        assert_eq!(err.condition, Condition::Forbidden);
        assert!(testing::take_sent().is_empty());
        assert_eq!(testing::stored("vcard/alice@l"), None);
    }

    #[test]
    fn oversize_is_not_acceptable() {
        let mut p = plugin();
        let big = format!(
            "<vCard xmlns='vcard-temp'><DESC>{}</DESC></vCard>",
            "x".repeat(MAX_VCARD_BYTES)
        );
        let err = p.handle_stanza(iq("alice@l/r", "alice@l", "set", &big)).unwrap_err();
        assert_eq!(err.condition, Condition::NotAcceptable);
        assert_eq!(testing::stored("vcard/alice@l"), None);
    }

    #[test]
    fn reports_its_build() {
        let mut p = plugin();
        p.handle_stanza(iq("bob@l/r", "l", "get", "<query xmlns='urn:poolxmpp:plugin:vcard'/>"))
            .unwrap();
        let r = one_reply();
        let q = r.get_child("query", NS_BUILD).unwrap();
        assert_eq!(q.get_child("build", NS_BUILD).unwrap().text_content(), "b1");
    }

    #[test]
    fn ignores_results_and_refuses_other_payloads() {
        let mut p = plugin();
        p.handle_stanza(iq("bob@l/r", "alice@l", "result", "")).unwrap();
        let err = p
            .handle_stanza(iq("bob@l/r", "alice@l", "get", "<x xmlns='urn:other'/>"))
            .unwrap_err();
        assert_eq!(err.condition, Condition::ServiceUnavailable);
        assert!(testing::take_sent().is_empty());
    }
}
