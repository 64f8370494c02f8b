//! A filter plugin: messages whose body contains a configured word bounce back to their
//! sender with `policy-violation` (type `modify`); everything else passes.
//!
//! The words come from the manifest: `[config] words = "spam,scam"` (comma-separated,
//! matched case-insensitively as substrings of every `<body/>`).

use poolxmpp_sdk::{Config, Direction, Element, Filter, Stanza, StanzaError, Verdict, NS_CLIENT};

pub struct WordFilter {
    /// Lowercased.
    words: Vec<String>,
    /// `[config] trap_word`: a body containing it makes the filter trap, so tests can see
    /// what the host does with a failing filter (fail-open, or `fail_closed`).
    trap_word: Option<String>,
}

impl WordFilter {
    /// The configured word `body` contains, if any.
    fn offending(&self, body: &str) -> Option<&str> {
        let body = body.to_lowercase();
        self.words
            .iter()
            .find(|w| body.contains(w.as_str()))
            .map(String::as_str)
    }
}

impl Filter for WordFilter {
    fn init(config: &Config) -> Result<Self, String> {
        let words: Vec<String> = config.list("words").iter().map(|w| w.to_lowercase()).collect();
        poolxmpp_sdk::info!("filtering {} words", words.len());
        let trap_word = config.get("trap_word").map(str::to_lowercase);
        // With `interest = "declared"` in the manifest, only these users' stanzas (sent by
        // them, or reaching them) are filtered; everyone else's never reach the plugin.
        for user in config.list("users") {
            poolxmpp_sdk::interest::set(&user, true).map_err(|e| e.to_string())?;
        }
        Ok(WordFilter { words, trap_word })
    }

    fn check(&mut self, _direction: Direction, stanza: Stanza) -> Verdict {
        // Only messages carry bodies; errors are never bounced (no bounce loops).
        if !stanza.is_message() || stanza.is_error() || self.words.is_empty() {
            return Verdict::Allow;
        }
        let Ok(message) = stanza.element() else {
            return Verdict::Allow;
        };
        if let Some(trap) = &self.trap_word {
            let bodies = message
                .elements()
                .filter(|e| e.is("body", NS_CLIENT))
                .map(Element::text_content);
            if bodies.map(|b| b.to_lowercase()).any(|b| b.contains(trap.as_str())) {
                panic!("word-filter: trapping on purpose on {trap:?}");
            }
        }
        let hit = message
            .elements()
            .filter(|e| e.is("body", NS_CLIENT))
            .map(Element::text_content)
            .find_map(|body| self.offending(&body).map(str::to_string));
        match hit {
            Some(word) => {
                poolxmpp_sdk::debug!("bouncing a message from {} containing {word:?}", stanza.from);
                Verdict::Bounce(
                    StanzaError::policy_violation()
                        .with_text(format!("messages containing \"{word}\" are not allowed")),
                )
            }
            None => Verdict::Allow,
        }
    }
}

poolxmpp_sdk::export_filter!(WordFilter);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: &str) -> Verdict {
        let mut f = WordFilter::init(&Config::from([("words", "spam, Scam")])).unwrap();
        let xml = format!("<message from='a@l/r' to='b@l' type='chat'><body>{body}</body></message>");
        f.check(Direction::Outbound, Stanza::from_xml(&xml).unwrap())
    }

    #[test]
    fn bounces_configured_words_case_insensitively() {
        match check("this is SPAMmy") {
            Verdict::Bounce(e) => {
                assert_eq!(e.condition, poolxmpp_sdk::Condition::PolicyViolation);
                assert_eq!(e.error_type(), poolxmpp_sdk::ErrorType::Modify);
            }
            v => panic!("expected a bounce, got {v:?}"),
        }
        assert!(matches!(check("a scam"), Verdict::Bounce(_)));
    }

    #[test]
    fn allows_everything_else() {
        assert!(matches!(check("hello"), Verdict::Allow));
        let mut f = WordFilter::init(&Config::from([("words", "spam")])).unwrap();
        let presence = Stanza::from_xml("<presence from='a@l/r'><status>spam</status></presence>").unwrap();
        assert!(matches!(f.check(Direction::Inbound, presence), Verdict::Allow));
        let error = Stanza::from_xml("<message type='error'><body>spam</body></message>").unwrap();
        assert!(matches!(f.check(Direction::Inbound, error), Verdict::Allow));
    }
}
