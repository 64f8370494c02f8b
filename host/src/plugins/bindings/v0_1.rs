//! Contract 0.1 (`wit/v0.1.0`), frozen: components built for it load and work unchanged.
//! Its imports delegate to the latest version's (one implementation, in `imports`); the
//! conversions here translate what differs — strings where 0.2 has options, enums and
//! variants, and XML without the root's `xmlns`, as 0.1 defined it.

worlds!("../wit/v0.1.0");

use feature::poolxmpp::plugin::{clock, log, metrics, pool, presence, roster, router, storage, types};

use super::latest;
use crate::plugins::imports::PluginState;
use crate::stanza::Condition;

// --- Imports: each delegates to the latest version's implementation. ---

impl types::Host for PluginState {}

impl log::Host for PluginState {
    async fn write(&mut self, level: types::LogLevel, message: String) {
        use types::LogLevel as L;
        let level = match level {
            L::Trace => latest::types::LogLevel::Trace,
            L::Debug => latest::types::LogLevel::Debug,
            L::Info => latest::types::LogLevel::Info,
            L::Warn => latest::types::LogLevel::Warn,
            L::Error => latest::types::LogLevel::Error,
        };
        latest::log::Host::write(self, level, message).await
    }
}

impl clock::Host for PluginState {
    async fn now_ms(&mut self) -> u64 {
        latest::clock::Host::now_ms(self).await
    }
}

impl metrics::Host for PluginState {
    async fn increment(&mut self, name: String, delta: u64) {
        latest::metrics::Host::increment(self, name, delta).await
    }

    async fn observe(&mut self, name: String, value: f64) {
        latest::metrics::Host::observe(self, name, value).await
    }
}

/// 0.1's storage error was a string.
fn storage_error(e: latest::types::StorageError) -> String {
    use latest::types::StorageError as E;
    match e {
        E::Unavailable(why) => why,
        E::TooLarge(limit) => format!("value over {limit} bytes"),
        E::ShuttingDown => "server is shutting down".into(),
        E::Fenced => "this node no longer owns the key".into(),
    }
}

impl storage::Host for PluginState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, String> {
        latest::storage::Host::get(self, key).await.map_err(storage_error)
    }

    async fn put(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        latest::storage::Host::put(self, key, value)
            .await
            .map_err(storage_error)
    }

    async fn delete(&mut self, key: String) -> Result<bool, String> {
        latest::storage::Host::delete(self, key).await.map_err(storage_error)
    }

    async fn scan(
        &mut self,
        prefix: String,
        start_after: Option<String>,
        limit: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, String> {
        latest::storage::Host::scan(self, prefix, start_after, limit)
            .await
            .map_err(storage_error)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, String> {
        latest::storage::Host::compare_and_swap(self, key, expected, new)
            .await
            .map_err(storage_error)
    }
}

fn roster_item(item: latest::types::RosterItem) -> types::RosterItem {
    use latest::types::Subscription as S;
    types::RosterItem {
        jid: item.jid,
        name: item.name,
        subscription: match item.subscription {
            S::None => "none",
            S::To => "to",
            S::From => "from",
            S::Both => "both",
        }
        .to_string(),
        ask: item.ask,
        groups: item.groups,
    }
}

impl roster::Host for PluginState {
    async fn items(&mut self, user: String) -> Vec<types::RosterItem> {
        let items = latest::roster::Host::items(self, user).await;
        items.into_iter().map(roster_item).collect()
    }

    async fn item(&mut self, user: String, contact: String) -> Option<types::RosterItem> {
        latest::roster::Host::item(self, user, contact).await.map(roster_item)
    }
}

impl presence::Host for PluginState {
    async fn resources(&mut self, user: String) -> Vec<types::ResourcePresence> {
        let resources = latest::presence::Host::resources(self, user).await;
        resources
            .into_iter()
            .map(|r| types::ResourcePresence {
                jid: r.jid,
                available: r.presence.is_some(),
                priority: r.priority,
                presence_xml: r.presence.map(|xml| stream_form(&xml)).unwrap_or_default(),
            })
            .collect()
    }
}

impl router::Host for PluginState {
    async fn send(&mut self, xml: String) -> Result<(), String> {
        use latest::types::SendError as E;
        latest::router::Host::send(self, xml).await.map_err(|e| match e {
            E::Malformed(why) => why,
            E::ForbiddenFrom(from) => format!("this plugin may not send as {from}"),
            E::Unreachable(to) => format!("{to} is not reachable from here"),
            E::ShuttingDown => "server is shutting down".into(),
        })
    }
}

impl pool::Host for PluginState {
    async fn node_id(&mut self) -> String {
        latest::pool::Host::node_id(self).await
    }

    async fn owner_of(&mut self, key: String) -> String {
        latest::pool::Host::owner_of(self, key).await
    }
}

/// A stanza serialized by [`crate::xml::Element::to_xml`] (root `xmlns` declared, as 0.2
/// hands it) in 0.1's form, as a child of a `jabber:client` stream: the serializer writes
/// the declaration right after the root's name, so removing it there is exact.
fn stream_form(xml: &str) -> String {
    const DECL: &str = " xmlns='jabber:client'";
    let name_end = xml.find([' ', '/', '>']).unwrap_or(xml.len());
    match xml[name_end..].strip_prefix(DECL) {
        Some(rest) => format!("{}{rest}", &xml[..name_end]),
        None => xml.to_string(),
    }
}

// --- Exports: what the host calls, converted from and to the latest types. ---

/// A 0.1 plugin's stanza error: the condition was a string, anything undefined is
/// `undefined-condition`.
pub fn stanza_error(err: types::StanzaError) -> latest::types::StanzaError {
    latest::types::StanzaError {
        condition: super::condition_to_wit(Condition::from_name(&err.condition)),
        type_: Some(error_type(err.type_)),
        text: err.text,
        application: None,
    }
}

fn error_type(t: types::ErrorType) -> latest::types::ErrorType {
    use types::ErrorType as T;
    match t {
        T::Auth => latest::types::ErrorType::Auth,
        T::Cancel => latest::types::ErrorType::Cancel,
        T::Continue => latest::types::ErrorType::Continue,
        T::Modify => latest::types::ErrorType::Modify,
        T::Wait => latest::types::ErrorType::Wait,
    }
}

pub fn direction(d: latest::types::Direction) -> types::Direction {
    match d {
        latest::types::Direction::Inbound => types::Direction::Inbound,
        latest::types::Direction::Outbound => types::Direction::Outbound,
    }
}

pub fn verdict(v: types::Verdict) -> latest::types::Verdict {
    match v {
        types::Verdict::Allow => latest::types::Verdict::Allow,
        types::Verdict::Drop => latest::types::Verdict::Drop,
        types::Verdict::Bounce(err) => latest::types::Verdict::Bounce(stanza_error(err)),
    }
}

/// Events 0.1 knows, in its shape (users by bare JID); timers are not delivered to a 0.1
/// plugin (it cannot set any).
pub fn event(e: &latest::types::Event) -> Option<types::Event> {
    use latest::types::Event as E;
    let bare = |jid: &str| jid.split_once('/').map_or(jid, |(b, _)| b).to_string();
    Some(match e {
        E::UserOnline(user) => types::Event::UserOnline(bare(&user.jid)),
        E::UserOffline(user) => types::Event::UserOffline(bare(&user.jid)),
        E::NodeJoined(node) => types::Event::NodeJoined(node.clone()),
        E::NodeLeft(node) => types::Event::NodeLeft(node.clone()),
        E::OwnershipGained(owned) => types::Event::OwnershipGained(owned.key.clone()),
        E::OwnershipLost(owned) => types::Event::OwnershipLost(owned.key.clone()),
        E::Timer(_) | E::RulesChanged(_) => return None,
    })
}

pub fn pool_view(view: &latest::types::PoolView) -> types::PoolView {
    types::PoolView {
        nodes: view
            .nodes
            .iter()
            .map(|n| types::NodeView {
                id: n.id.clone(),
                address: n.address.clone(),
                sessions: n.sessions,
                contacts_here: n.contacts_here,
                accepting: n.accepting,
            })
            .collect(),
    }
}

/// 0.1's `choose-node` answered a string; an empty one was no choice.
pub fn chosen(node: String) -> Option<String> {
    (!node.is_empty()).then_some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_form_drops_only_the_roots_client_declaration() {
        assert_eq!(
            stream_form("<presence xmlns='jabber:client' from='a@b/c'><x xmlns='jabber:client'/></presence>"),
            "<presence from='a@b/c'><x xmlns='jabber:client'/></presence>"
        );
        assert_eq!(stream_form("<presence xmlns='jabber:client'/>"), "<presence/>");
        assert_eq!(stream_form("<presence/>"), "<presence/>");
    }

    #[test]
    fn undefined_conditions_of_old_plugins_become_undefined_condition() {
        let err = stanza_error(types::StanzaError {
            type_: types::ErrorType::Cancel,
            condition: "no-such-thing".into(),
            text: None,
        });
        assert_eq!(err.condition, latest::types::Condition::UndefinedCondition);
        let err = stanza_error(types::StanzaError {
            type_: types::ErrorType::Modify,
            condition: "not-acceptable".into(),
            text: Some("why".into()),
        });
        assert_eq!(err.condition, latest::types::Condition::NotAcceptable);
        assert_eq!(err.type_, Some(latest::types::ErrorType::Modify));
    }
}
