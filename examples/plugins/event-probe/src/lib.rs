//! A feature plugin that writes one log line per event it is told of (user online and
//! offline with the resource's caps features, nodes joining and leaving, its own timers),
//! tagged with the `build` of its manifest, and sets timers on request: a message to
//! `probe.{domain}` with the body `timer NAME MS` sets timer `NAME` due in `MS` ms and
//! answers `timer NAME set`; `fanout PREFIX ACCOUNTS RESOURCES` sends one headline, in one
//! `send-many` call, to `PREFIX{a}@domain/r{r}` for every account `a` < ACCOUNTS and
//! resource `r` < RESOURCES, and answers `fanout routed N`; `each PREFIX ACCOUNTS RESOURCES`
//! sends the same headline to the same recipients with one `send` call each and answers
//! `each routed N`, so the load tool (`poolxmpp-load fanout`) can weigh one batched call
//! against the calls it replaces. The integration tests read the log lines and count the
//! copies.

use poolxmpp_sdk::stanza::SendError;
use poolxmpp_sdk::{
    jid, reply, send, send_many, timers, Config, Element, Event, Feature, Stanza, StanzaError, NS_CLIENT,
};

pub struct Probe {
    build: String,
}

impl Probe {
    fn command(&self, stanza: &Stanza, body: &str) -> Result<(), StanzaError> {
        let words: Vec<&str> = body.split_whitespace().collect();
        let number = |w: &str| -> Result<u64, StanzaError> {
            w.parse()
                .map_err(|_| StanzaError::bad_request().with_text("not a number"))
        };
        let said = match words.as_slice() {
            ["timer", name, ms] => {
                timers::set(name, number(ms)?, self.build.as_bytes())?;
                format!("timer {name} set")
            }
            // Its manifest grants no roster reads: the answer is always empty.
            ["roster", user] => format!(
                "roster {user} has {} items",
                poolxmpp_sdk::host::roster_items(user).len()
            ),
            [how @ ("fanout" | "each"), prefix, accounts, resources] => {
                let from = stanza.to.clone().unwrap_or_default();
                let to = recipients(&from, prefix, number(accounts)?, number(resources)?);
                let copy = Element::new("message", NS_CLIENT)
                    .attr("from", from.as_str())
                    .attr("type", "headline")
                    .child(Element::new("body", NS_CLIENT).text("fanned out"));
                let sent = match *how {
                    "fanout" => send_many(&copy, &to),
                    _ => send_each(copy, &to),
                };
                let routed = sent.map_err(|e| {
                    poolxmpp_sdk::warn!("{how} failed: {e}");
                    StanzaError::internal_server_error()
                })?;
                format!("{how} routed {routed}")
            }
            _ => {
                return Err(StanzaError::bad_request().with_text(
                    "say: timer NAME MS, fanout PREFIX ACCOUNTS RESOURCES or each PREFIX ACCOUNTS RESOURCES",
                ))
            }
        };
        let answer = reply(stanza, "message")
            .attr("type", "chat")
            .child(Element::new("body", NS_CLIENT).text(said));
        send(&answer).map_err(|e| {
            poolxmpp_sdk::warn!("cannot answer: {e}");
            StanzaError::internal_server_error()
        })
    }
}

/// `PREFIX{a}@domain/r{r}` for every account `a` < `accounts` and resource `r` < `resources`,
/// where `domain` is the one `from` (`probe.{domain}`) serves: the same list for both fan-out
/// commands, so they differ only in how the copies are handed to the host.
fn recipients(from: &str, prefix: &str, accounts: u64, resources: u64) -> Vec<String> {
    let domain = jid::domain(from).split_once('.').map_or("", |(_, d)| d);
    (0..accounts)
        .flat_map(move |a| (0..resources).map(move |r| format!("{prefix}{a}@{domain}/r{r}")))
        .collect()
}

/// What a plugin without `send-many` does: one `send` per recipient, each serializing and
/// the host parsing and checking the stanza again. Stops at the first refusal.
fn send_each(mut copy: Element, recipients: &[String]) -> Result<u32, SendError> {
    for to in recipients {
        copy.set_attr("to", to.as_str());
        send(&copy)?;
    }
    Ok(recipients.len() as u32)
}

impl Feature for Probe {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Probe {
            build: config.get_or("build", "unset").to_string(),
        })
    }

    fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError> {
        if !stanza.is_message() || stanza.is_error() {
            return Ok(());
        }
        match stanza.body() {
            Some(body) => self.command(&stanza, &body),
            None => Ok(()),
        }
    }

    fn on_event(&mut self, event: Event) {
        let build = &self.build;
        match event {
            Event::UserOnline(u) => {
                poolxmpp_sdk::info!(
                    "event user-online {} features={} build={build}",
                    u.jid,
                    u.features.join(",")
                )
            }
            Event::UserOffline(u) => {
                poolxmpp_sdk::info!(
                    "event user-offline {} features={} build={build}",
                    u.jid,
                    u.features.join(",")
                )
            }
            Event::NodeJoined(node) => poolxmpp_sdk::info!("event node-joined {node} build={build}"),
            Event::NodeLeft(node) => poolxmpp_sdk::info!("event node-left {node} build={build}"),
            Event::Timer(t) => poolxmpp_sdk::info!(
                "event timer {} set-by={} build={build}",
                t.name,
                String::from_utf8_lossy(&t.payload)
            ),
            // Not keyed, not a filter: never told of ownership (see the room-probe
            // example) or of rules (the blocklist example).
            Event::OwnershipGained(_) | Event::OwnershipLost(_) | Event::RulesChanged(_) => {}
        }
    }
}

poolxmpp_sdk::export_feature!(Probe);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use poolxmpp_sdk::testing;

    #[test]
    fn sets_timers_on_request() {
        testing::reset();
        let mut p = Probe::init(&Config::from([("build", "b1")])).unwrap();
        let m = Stanza::from_xml("<message from='a@l/r' to='probe.l' type='chat'><body>timer t1 500</body></message>")
            .unwrap();
        p.handle_stanza(m).unwrap();
        assert_eq!(
            testing::take_sent()[0]
                .get_child("body", NS_CLIENT)
                .unwrap()
                .text_content(),
            "timer t1 set"
        );
        testing::with_host(|h| h.now_ms = 500);
        let due = testing::due_timers();
        assert!(matches!(&due[0], Event::Timer(t) if t.name == "t1" && t.payload == b"b1"));
        p.on_event(due[0].clone());
        assert!(testing::logs()
            .iter()
            .any(|(_, l)| l.contains("event timer t1 set-by=b1 build=b1")));
    }

    #[test]
    fn fans_out_in_one_call() {
        testing::reset();
        let mut p = Probe::init(&Config::default()).unwrap();
        let m =
            Stanza::from_xml("<message from='a@l/r' to='probe.l' type='chat'><body>fanout fan 2 3</body></message>")
                .unwrap();
        p.handle_stanza(m).unwrap();
        let sent = testing::take_sent();
        let tos: Vec<&str> = sent[..6].iter().map(|e| e.get_attr("to").unwrap()).collect();
        assert_eq!(
            tos,
            [
                "fan0@l/r0",
                "fan0@l/r1",
                "fan0@l/r2",
                "fan1@l/r0",
                "fan1@l/r1",
                "fan1@l/r2"
            ]
        );
        assert_eq!(
            sent[6].get_child("body", NS_CLIENT).unwrap().text_content(),
            "fanout routed 6"
        );
    }

    #[test]
    fn sends_each_copy_in_its_own_call() {
        testing::reset();
        let mut p = Probe::init(&Config::default()).unwrap();
        let m = Stanza::from_xml("<message from='a@l/r' to='probe.l' type='chat'><body>each fan 2 1</body></message>")
            .unwrap();
        p.handle_stanza(m).unwrap();
        let sent = testing::take_sent();
        let tos: Vec<&str> = sent[..2].iter().map(|e| e.get_attr("to").unwrap()).collect();
        assert_eq!(tos, ["fan0@l/r0", "fan1@l/r0"]);
        assert_eq!(
            sent[2].get_child("body", NS_CLIENT).unwrap().text_content(),
            "each routed 2"
        );
    }
}
