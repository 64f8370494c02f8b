//! XEP-0202 entity time, answered by the server: `<time><tzo/><utc/></time>` for an IQ
//! get to a hosted domain or from a user about their own account (the host hands this
//! plugin IQs with no `to` as addressed to the sender's bare JID). The server keeps UTC,
//! so `tzo` is `Z`-equivalent `+00:00`. Another account's bare JID has no clock of its
//! own (its clients answer at their full JIDs): `service-unavailable`, as RFC 6121
//! §8.5.2.1.3 has the server answer IQs it does not handle for an account.

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

/// Milliseconds since the Unix epoch as an XEP-0082 DateTime in UTC, with milliseconds:
/// `2026-12-01T19:00:00.123Z`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

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
    fn formats_utc_as_xep_0082() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc(1_796_151_600_123), "2026-12-01T19:00:00.123Z");
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
