//! A feature plugin that writes one log line per event it is told of (user online and
//! offline with the resource's caps features, nodes joining and leaving, its own timers),
//! tagged with the `build` of its manifest, and sets timers on request: a message to
//! `probe.{domain}` with the body `timer NAME MS` sets timer `NAME` due in `MS` ms and
//! answers `timer NAME set`. The integration tests read the log lines.

use poolxmpp_sdk::{reply, send, timers, Config, Element, Event, Feature, Stanza, StanzaError, NS_CLIENT};

pub struct Probe {
    build: String,
}

impl Probe {
    fn command(&self, stanza: &Stanza, body: &str) -> Result<(), StanzaError> {
        let mut words = body.split_whitespace();
        let (Some("timer"), Some(name), Some(ms)) = (words.next(), words.next(), words.next()) else {
            return Err(StanzaError::bad_request().with_text("say: timer NAME MS"));
        };
        let ms: u64 = ms
            .parse()
            .map_err(|_| StanzaError::bad_request().with_text("MS: a number"))?;
        timers::set(name, ms, self.build.as_bytes())?;
        let answer = reply(stanza, "message")
            .attr("type", "chat")
            .child(Element::new("body", NS_CLIENT).text(format!("timer {name} set")));
        send(&answer).map_err(|e| {
            poolxmpp_sdk::warn!("cannot answer: {e}");
            StanzaError::internal_server_error()
        })
    }
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
}
