//! XEP-0049 private XML storage as a poolxmpp feature plugin.
//!
//! An account stores XML fragments in `<query xmlns='jabber:iq:private'/>`, each keyed by
//! its element name and namespace (legacy bookmarks `storage:bookmarks`, client
//! preferences), and reads them back; nobody else may (§3: `forbidden`). A fragment in
//! `jabber:client` or `jabber:iq:private` is `not-acceptable` (§3.2).
//!
//! Storage: `x/{namespace}/{name}/{owner}` (escaped) per fragment, and `names/{owner}`
//! (JSON) listing them, which bounds how many an account keeps. Every key ends in the
//! owner, so the host's account removal takes the fragments with the account.

use poolxmpp_sdk::{iq_result, send, storage, Config, Element, Feature, IqType, Stanza, StanzaError, StanzaType};

pub const NS_PRIVATE: &str = "jabber:iq:private";

pub struct Private {
    max_bytes: usize,
    max_fragments: usize,
}

fn escape(s: &str) -> String {
    s.replace('%', "%25").replace('/', "%2F")
}

fn fragment_key(owner: &str, e: &Element) -> String {
    format!("x/{}/{}/{owner}", escape(e.ns.as_str()), escape(&e.name))
}

fn names_key(owner: &str) -> String {
    format!("names/{owner}")
}

impl Private {
    fn get(&self, owner: &str, query: &Element) -> Result<Element, StanzaError> {
        let mut out = Element::new("query", NS_PRIVATE);
        for asked in query.elements() {
            let stored = storage::get_string(&fragment_key(owner, asked))?;
            let fragment = match stored.map(|x| Element::parse(&x)) {
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    poolxmpp_sdk::error!("private: a stored fragment of {owner} is corrupt: {e}");
                    return Err(StanzaError::internal_server_error());
                }
                // §3.3: nothing stored: the empty element asked for.
                None => Element::new(&asked.name, asked.ns.as_str()),
            };
            out.push(fragment);
        }
        Ok(out)
    }

    fn set(&self, owner: &str, query: &Element) -> Result<(), StanzaError> {
        let fragments: Vec<&Element> = query.elements().collect();
        let mut xmls = Vec::new();
        for f in &fragments {
            let xml = f.to_xml();
            if xml.len() > self.max_bytes {
                return Err(
                    StanzaError::not_acceptable().with_text(format!("a fragment is at most {} bytes", self.max_bytes))
                );
            }
            xmls.push(xml);
        }
        self.note(owner, &fragments)?;
        for (f, xml) in fragments.iter().zip(&xmls) {
            storage::put_string(&fragment_key(owner, f), xml)?;
        }
        Ok(())
    }

    /// Add the fragments' names to the owner's list, refusing what would pass the bound.
    fn note(&self, owner: &str, fragments: &[&Element]) -> Result<(), StanzaError> {
        let key = names_key(owner);
        for _ in 0..16 {
            let before = storage::get_bytes(&key)?;
            let mut names: Vec<String> = match &before {
                Some(b) => serde_json::from_slice(b).map_err(|_| StanzaError::internal_server_error())?,
                None => Vec::new(),
            };
            let was = names.len();
            for f in fragments {
                let name = format!("{} {}", f.ns.as_str(), f.name);
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            if names.len() == was {
                return Ok(());
            }
            if names.len() > self.max_fragments {
                return Err(StanzaError::resource_constraint()
                    .with_text(format!("at most {} fragments per account", self.max_fragments)));
            }
            let after = serde_json::to_vec(&names).expect("names serialize");
            if storage::compare_and_swap(&key, before.as_deref(), Some(&after))? {
                return Ok(());
            }
        }
        Err(StanzaError::resource_constraint().with_text("too many concurrent changes; try again"))
    }
}

impl Feature for Private {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Private {
            max_bytes: config.parse("max_bytes")?.unwrap_or(64 * 1024),
            max_fragments: config.parse("max_fragments")?.unwrap_or(64),
        })
    }

    fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError> {
        let StanzaType::Iq(type_ @ (IqType::Get | IqType::Set)) = stanza.type_ else {
            return Ok(());
        };
        // A request without `to` arrives addressed to the sender's own bare JID.
        let owner = stanza.to_bare().unwrap_or(stanza.from_bare()).to_string();
        if owner != stanza.from_bare() {
            return Err(StanzaError::forbidden().with_text("private storage is the account's own"));
        }
        let query = stanza.payload()?.ok_or_else(StanzaError::bad_request)?;
        if !query.is("query", NS_PRIVATE) {
            return Err(StanzaError::bad_request());
        }
        let children: Vec<&Element> = query.elements().collect();
        if children.is_empty() {
            return Err(StanzaError::bad_request().with_text("name the fragment to get or set"));
        }
        if children
            .iter()
            .any(|c| c.ns == NS_PRIVATE || c.ns == poolxmpp_sdk::NS_CLIENT || c.ns.as_str().is_empty())
        {
            return Err(StanzaError::not_acceptable().with_text("a fragment needs a namespace of its own"));
        }
        let answer = match type_ {
            IqType::Get => Some(self.get(&owner, &query)?),
            _ => {
                self.set(&owner, &query)?;
                None
            }
        };
        send(&iq_result(&stanza, answer)).map_err(|_| StanzaError::internal_server_error())
    }
}

poolxmpp_sdk::export_feature!(Private);

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use poolxmpp_sdk::{testing, Condition};

    fn plugin() -> Private {
        testing::reset();
        Private::init(&Config::from([("max_bytes", "200"), ("max_fragments", "2")])).unwrap()
    }

    fn iq(from: &str, to: Option<&str>, kind: &str, inner: &str) -> Stanza {
        let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
        Stanza::from_xml(&format!(
            "<iq from='{from}'{to} type='{kind}' id='q1'><query xmlns='jabber:iq:private'>{inner}</query></iq>"
        ))
        .unwrap()
    }

    fn answer(p: &mut Private, s: Stanza) -> Result<Element, StanzaError> {
        testing::take_sent();
        p.handle_stanza(s)?;
        let mut sent = testing::take_sent();
        assert_eq!(sent.len(), 1);
        Ok(sent.remove(0))
    }

    #[test]
    fn fragments_are_stored_per_name_and_namespace_and_read_back() {
        let mut p = plugin();
        let bookmarks = "<storage xmlns='storage:bookmarks'><conference jid='r@c.l' autojoin='true'/></storage>";
        answer(&mut p, iq("alice@l/a", None, "set", bookmarks)).unwrap();
        let got = answer(
            &mut p,
            iq(
                "alice@l/b",
                Some("alice@l"),
                "get",
                "<storage xmlns='storage:bookmarks'/>",
            ),
        )
        .unwrap();
        let storage = got
            .get_child("query", NS_PRIVATE)
            .unwrap()
            .get_child("storage", "storage:bookmarks")
            .unwrap();
        assert_eq!(storage.elements().next().unwrap().get_attr("jid"), Some("r@c.l"));
        // Nothing stored: the empty element asked for.
        let got = answer(&mut p, iq("alice@l/a", None, "get", "<prefs xmlns='exodus:prefs'/>")).unwrap();
        let prefs = got
            .get_child("query", NS_PRIVATE)
            .unwrap()
            .get_child("prefs", "exodus:prefs")
            .unwrap();
        assert!(prefs.elements().next().is_none());
    }

    #[test]
    fn others_bad_fragments_and_limits_are_refused() {
        let mut p = plugin();
        let e = answer(
            &mut p,
            iq(
                "bob@l/b",
                Some("alice@l"),
                "get",
                "<storage xmlns='storage:bookmarks'/>",
            ),
        )
        .unwrap_err();
        assert_eq!(e.condition, Condition::Forbidden);
        let e = answer(&mut p, iq("alice@l/a", None, "set", "<x xmlns='jabber:iq:private'/>")).unwrap_err();
        assert_eq!(e.condition, Condition::NotAcceptable);
        let e = answer(&mut p, iq("alice@l/a", None, "set", "")).unwrap_err();
        assert_eq!(e.condition, Condition::BadRequest);
        let big = format!("<a xmlns='a'>{}</a>", "z".repeat(300));
        assert_eq!(
            answer(&mut p, iq("alice@l/a", None, "set", &big))
                .unwrap_err()
                .condition,
            Condition::NotAcceptable
        );
        answer(&mut p, iq("alice@l/a", None, "set", "<a xmlns='a'/>")).unwrap();
        answer(&mut p, iq("alice@l/a", None, "set", "<b xmlns='b'/>")).unwrap();
        answer(&mut p, iq("alice@l/a", None, "set", "<a xmlns='a'>again</a>")).unwrap();
        let e = answer(&mut p, iq("alice@l/a", None, "set", "<c xmlns='c'/>")).unwrap_err();
        assert_eq!(e.condition, Condition::ResourceConstraint);
        assert!(testing::stored("x/c/c/alice@l").is_none());
        assert_eq!(
            testing::stored("x/a/a/alice@l").as_deref(),
            Some("<a xmlns='a'>again</a>")
        );
    }
}
