//! Stream management (XEP-0198) on a client stream: the nonzas (`enable`, `resume`, `r`,
//! `a`) read from the client, the answers written back, and the counts a connection keeps.
//!
//! The outbound count and the unacknowledged stanzas are the writer's
//! ([`crate::stream::acks::AckLog`]); the inbound count is the read loop's. A resumable
//! session outlives its connection as a [`super::resumption::Parked`] one.

use std::sync::Arc;
use std::time::Duration;

use crate::stream::acks::{AckLog, Seq, TooHigh, NS_SM};
use crate::stream::{StreamError, StreamErrorCondition};
use crate::xml::{escape, Element};

const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The id a client resumes a session by: random, unguessable, and only ever valid for the
/// account that enabled it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResumeId(String);

impl ResumeId {
    /// A new id; in a pool it names the node holding the session (`node.random`), so
    /// another node a client resumes at can send it there.
    pub fn new(node: Option<&str>) -> ResumeId {
        let random = uuid::Uuid::new_v4().simple();
        ResumeId(match node {
            Some(node) => format!("{node}.{random}"),
            None => random.to_string(),
        })
    }

    /// The pool node that holds the session, as the id names it.
    pub fn node(&self) -> Option<&str> {
        self.0.split_once('.').map(|(node, _)| node)
    }

    pub fn from_client(s: &str) -> ResumeId {
        ResumeId(s.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Stream management as one connection has it enabled.
#[derive(Debug)]
pub struct Sm {
    /// Stanzas handled from the client: the `h` we report.
    pub inbound: Seq,
    /// What the writer sent and the client has not acknowledged.
    pub log: Arc<AckLog>,
    /// Set when the session may be resumed, with how long it waits for that.
    pub resumable: Option<(ResumeId, Duration)>,
}

impl Sm {
    /// One more stanza from the client was handled (routed).
    pub fn handled_one(&mut self) {
        self.inbound = self.inbound.wrapping_add(1);
    }
}

/// A stream management element from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Nonza {
    Enable { resume: bool, max: Option<u64> },
    Resume { previd: String, h: Seq },
    Request,
    Ack { h: Seq },
}

/// Why a stream management element was not understood.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

impl Nonza {
    /// `None` when `e` is not in the stream management namespace.
    pub fn read(e: &Element) -> Option<Result<Nonza, Malformed>> {
        if &*e.ns != NS_SM {
            return None;
        }
        Some(match e.name.as_str() {
            "enable" => Ok(Nonza::Enable {
                resume: matches!(e.get_attr("resume"), Some("true" | "1")),
                max: e.get_attr("max").and_then(|m| m.parse().ok()),
            }),
            "resume" => match (e.get_attr("previd"), h_of(e)) {
                (Some(previd), Some(h)) => Ok(Nonza::Resume {
                    previd: previd.to_string(),
                    h,
                }),
                _ => Err(Malformed("<resume/> needs previd and h")),
            },
            "r" => Ok(Nonza::Request),
            "a" => match h_of(e) {
                Some(h) => Ok(Nonza::Ack { h }),
                None => Err(Malformed("<a/> needs h")),
            },
            _ => Err(Malformed("unknown stream management element")),
        })
    }
}

fn h_of(e: &Element) -> Option<Seq> {
    e.get_attr("h")?.parse().ok()
}

/// `<enabled/>`, with the id and the wait we grant when the session is resumable, and in
/// a pool where to reconnect to resume it (`location`, this node).
pub fn enabled(resumable: Option<&(ResumeId, Duration)>, location: Option<&str>) -> String {
    let location = location
        .map(|l| format!(" location='{}'", escape(l)))
        .unwrap_or_default();
    match resumable {
        Some((id, wait)) => format!(
            "<enabled xmlns='{NS_SM}' id='{}' resume='true' max='{}'{location}/>",
            escape(id.as_str()),
            wait.as_secs()
        ),
        None => format!("<enabled xmlns='{NS_SM}'/>"),
    }
}

pub fn resumed(h: Seq, previd: &ResumeId) -> String {
    format!(
        "<resumed xmlns='{NS_SM}' h='{h}' previd='{}'/>",
        escape(previd.as_str())
    )
}

/// `<r/>`: the server asks the client how many stanzas it has handled.
pub fn request() -> String {
    format!("<r xmlns='{NS_SM}'/>")
}

pub fn ack(h: Seq) -> String {
    format!("<a xmlns='{NS_SM}' h='{h}'/>")
}

/// `<failed/>` with a stanza error condition, and our `h` where the client's session is
/// known (XEP-0198 §4: so it learns which of its stanzas we handled).
pub fn failed(condition: &str, h: Option<Seq>) -> String {
    let h = h.map(|h| format!(" h='{h}'")).unwrap_or_default();
    format!("<failed xmlns='{NS_SM}'{h}><{condition} xmlns='{NS_STANZAS}'/></failed>")
}

/// The stream error for an acknowledgement of stanzas never sent (XEP-0198 §4).
pub fn too_high(e: TooHigh) -> StreamError {
    StreamError::new(StreamErrorCondition::UndefinedCondition, e.to_string()).with_application(format!(
        "<handled-count-too-high xmlns='{NS_SM}' h='{}' send-count='{}'/>",
        e.h, e.sent
    ))
}

/// How long a resumable session waits for its client: ours, or less if the client asks.
pub fn resume_wait(configured: Duration, asked: Option<u64>) -> Duration {
    match asked {
        Some(secs) if secs > 0 => configured.min(Duration::from_secs(secs)),
        _ => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(xml: &str) -> Option<Result<Nonza, Malformed>> {
        Nonza::read(&Element::parse(xml).unwrap())
    }

    #[test]
    fn reads_the_clients_elements() {
        assert_eq!(
            parse("<enable xmlns='urn:xmpp:sm:3' resume='true' max='60'/>"),
            Some(Ok(Nonza::Enable {
                resume: true,
                max: Some(60)
            }))
        );
        assert_eq!(
            parse("<enable xmlns='urn:xmpp:sm:3'/>"),
            Some(Ok(Nonza::Enable {
                resume: false,
                max: None
            }))
        );
        assert_eq!(
            parse("<resume xmlns='urn:xmpp:sm:3' previd='x' h='4294967295'/>"),
            Some(Ok(Nonza::Resume {
                previd: "x".into(),
                h: u32::MAX
            }))
        );
        assert_eq!(parse("<r xmlns='urn:xmpp:sm:3'/>"), Some(Ok(Nonza::Request)));
        assert_eq!(parse("<a xmlns='urn:xmpp:sm:3' h='7'/>"), Some(Ok(Nonza::Ack { h: 7 })));
        assert!(matches!(parse("<a xmlns='urn:xmpp:sm:3' h='-1'/>"), Some(Err(_))));
        assert!(matches!(parse("<resume xmlns='urn:xmpp:sm:3' h='1'/>"), Some(Err(_))));
        assert_eq!(parse("<r xmlns='urn:xmpp:sm:2'/>"), None);
    }

    #[test]
    fn answers_are_what_the_xep_shows() {
        let id = ResumeId::from_client("abc");
        assert_eq!(
            enabled(Some(&(id.clone(), Duration::from_secs(300))), None),
            "<enabled xmlns='urn:xmpp:sm:3' id='abc' resume='true' max='300'/>"
        );
        assert_eq!(
            enabled(Some(&(id.clone(), Duration::from_secs(9))), Some("127.0.0.2:5222")),
            "<enabled xmlns='urn:xmpp:sm:3' id='abc' resume='true' max='9' location='127.0.0.2:5222'/>"
        );
        assert_eq!(ResumeId::new(Some("n2")).node(), Some("n2"));
        assert_eq!(ResumeId::new(None).node(), None);
        assert_eq!(
            failed("item-not-found", Some(3)),
            "<failed xmlns='urn:xmpp:sm:3' h='3'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></failed>"
        );
        assert!(too_high(TooHigh { h: 9, sent: 2 })
            .to_xml()
            .contains("<handled-count-too-high xmlns='urn:xmpp:sm:3' h='9' send-count='2'/>"));
        assert_eq!(resume_wait(Duration::from_secs(300), Some(60)), Duration::from_secs(60));
        assert_eq!(
            resume_wait(Duration::from_secs(300), Some(6000)),
            Duration::from_secs(300)
        );
        assert_eq!(resume_wait(Duration::from_secs(300), Some(0)), Duration::from_secs(300));
    }
}
