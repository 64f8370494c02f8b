//! The host's imports, behind plain functions.
//!
//! On `wasm32` these call the WIT imports. On any other target (a plugin's `cargo test`,
//! or `cargo clippy --workspace` building plugins natively) they talk to an in-memory
//! stand-in instead, so plugin logic is unit-testable without a server; see
//! [`crate::testing`]. Everything else in the SDK goes through this module, so it is the
//! only place that knows the difference.

pub use crate::bindings::types::{
    LogLevel, Ownership, ResourcePresence, RosterItem, SendError, StorageError, Subscription,
};

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{LogLevel, Ownership, ResourcePresence, RosterItem, SendError, StorageError};
    use crate::bindings::feature::poolxmpp::plugin::{
        clock, interest, log, metrics, pool, presence, roster, router, storage, timers,
    };

    pub fn log(level: LogLevel, message: &str) {
        log::write(level, message)
    }
    pub fn now_ms() -> u64 {
        clock::now_ms()
    }
    pub fn started_ms() -> u64 {
        clock::started_ms()
    }
    pub fn set_timer(name: &str, after_ms: u64, payload: &[u8]) -> Result<(), StorageError> {
        timers::set(name, after_ms, payload)
    }
    pub fn cancel_timer(name: &str) -> Result<bool, StorageError> {
        timers::cancel(name)
    }
    pub fn increment(name: &str, delta: u64) {
        metrics::increment(name, delta)
    }
    pub fn observe(name: &str, value: f64) {
        metrics::observe(name, value)
    }
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        storage::get(key)
    }
    pub fn put(key: &str, value: &[u8]) -> Result<(), StorageError> {
        storage::put(key, value)
    }
    pub fn delete(key: &str) -> Result<bool, StorageError> {
        storage::delete(key)
    }
    pub fn scan(prefix: &str, start_after: Option<&str>, limit: u32) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        storage::scan(prefix, start_after, limit)
    }
    pub fn compare_and_swap(key: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, StorageError> {
        storage::compare_and_swap(key, expected, new)
    }
    pub fn roster_items(user: &str) -> Vec<RosterItem> {
        roster::items(user)
    }
    pub fn roster_item(user: &str, contact: &str) -> Option<RosterItem> {
        roster::item(user, contact)
    }
    pub fn resources(user: &str) -> Vec<ResourcePresence> {
        presence::resources(user)
    }
    pub fn send(xml: &str) -> Result<(), SendError> {
        router::send(xml)
    }
    pub fn send_many(xml: &str, recipients: &[String]) -> Result<u32, SendError> {
        router::send_many(xml, recipients)
    }
    pub fn node_id() -> String {
        pool::node_id()
    }
    pub fn owner_of(key: &str) -> String {
        pool::owner_of(key)
    }
    pub fn owned(key: &str) -> Option<Ownership> {
        pool::owned(key)
    }
    pub fn set_interest(user: &str, has_rules: bool) -> Result<(), StorageError> {
        interest::set(user, has_rules)
    }
    pub fn has_interest(user: &str) -> bool {
        interest::has(user)
    }
    pub fn put_fenced(owned: &Ownership, key: &str, value: &[u8]) -> Result<(), StorageError> {
        storage::put_fenced(owned, key, value)
    }
    pub fn delete_fenced(owned: &Ownership, key: &str) -> Result<bool, StorageError> {
        storage::delete_fenced(owned, key)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{LogLevel, Ownership, ResourcePresence, RosterItem, SendError, StorageError};
    use crate::testing::with_host;

    pub fn log(level: LogLevel, message: &str) {
        with_host(|h| h.logs.push((level, message.to_string())))
    }
    pub fn now_ms() -> u64 {
        with_host(|h| h.now_ms)
    }
    pub fn started_ms() -> u64 {
        with_host(|h| h.started_ms)
    }
    pub fn set_timer(name: &str, after_ms: u64, payload: &[u8]) -> Result<(), StorageError> {
        with_host(|h| {
            let due = h.now_ms.saturating_add(after_ms);
            h.timers.insert(name.to_string(), (due, payload.to_vec()));
            Ok(())
        })
    }
    pub fn cancel_timer(name: &str) -> Result<bool, StorageError> {
        with_host(|h| Ok(h.timers.remove(name).is_some()))
    }
    pub fn increment(name: &str, delta: u64) {
        with_host(|h| *h.counters.entry(name.to_string()).or_default() += delta)
    }
    pub fn observe(_name: &str, _value: f64) {}
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        with_host(|h| Ok(h.storage.get(key).cloned()))
    }
    pub fn put(key: &str, value: &[u8]) -> Result<(), StorageError> {
        with_host(|h| {
            h.storage.insert(key.to_string(), value.to_vec());
            Ok(())
        })
    }
    pub fn delete(key: &str) -> Result<bool, StorageError> {
        with_host(|h| Ok(h.storage.remove(key).is_some()))
    }
    pub fn scan(prefix: &str, start_after: Option<&str>, limit: u32) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        with_host(|h| {
            Ok(h.storage
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .filter(|(k, _)| start_after.is_none_or(|s| k.as_str() > s))
                .take(limit as usize)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        })
    }
    pub fn compare_and_swap(key: &str, expected: Option<&[u8]>, new: Option<&[u8]>) -> Result<bool, StorageError> {
        with_host(|h| {
            if h.storage.get(key).map(Vec::as_slice) != expected {
                return Ok(false);
            }
            match new {
                Some(v) => h.storage.insert(key.to_string(), v.to_vec()),
                None => h.storage.remove(key),
            };
            Ok(true)
        })
    }
    pub fn roster_items(user: &str) -> Vec<RosterItem> {
        with_host(|h| h.rosters.get(user).cloned().unwrap_or_default())
    }
    pub fn roster_item(user: &str, contact: &str) -> Option<RosterItem> {
        roster_items(user).into_iter().find(|i| i.jid == contact)
    }
    pub fn resources(user: &str) -> Vec<ResourcePresence> {
        with_host(|h| h.resources.get(user).cloned().unwrap_or_default())
    }
    pub fn send(xml: &str) -> Result<(), SendError> {
        crate::Element::parse_in(xml, crate::xml::NS_CLIENT).map_err(|e| SendError::Malformed(e.to_string()))?;
        with_host(|h| h.sent.push(xml.to_string()));
        Ok(())
    }
    /// As the host does: one copy per valid recipient, its `to` set, in order.
    pub fn send_many(xml: &str, recipients: &[String]) -> Result<u32, SendError> {
        let stanza =
            crate::Element::parse_in(xml, crate::xml::NS_CLIENT).map_err(|e| SendError::Malformed(e.to_string()))?;
        let mut n = 0;
        for to in recipients.iter().filter(|r| !r.is_empty()) {
            let mut copy = stanza.clone();
            copy.set_attr("to", to.as_str());
            with_host(|h| h.sent.push(copy.to_xml()));
            n += 1;
        }
        Ok(n)
    }
    pub fn node_id() -> String {
        "local".to_string()
    }
    pub fn owner_of(_key: &str) -> String {
        "local".to_string()
    }
    /// As on a single node: every key is held, under the fence `MockHost::fences` gives
    /// it (1 unless a test moved it, as a new owner elsewhere would).
    pub fn owned(key: &str) -> Option<Ownership> {
        let fence = with_host(|h| h.fences.get(key).copied().unwrap_or(1));
        Some(Ownership {
            key: key.to_string(),
            fence,
        })
    }
    pub fn set_interest(user: &str, has_rules: bool) -> Result<(), StorageError> {
        with_host(|h| match has_rules {
            true => h.interest.insert(user.to_string()),
            false => h.interest.remove(user),
        });
        Ok(())
    }
    pub fn has_interest(user: &str) -> bool {
        with_host(|h| h.interest.contains(user))
    }
    fn fence_holds(owned: &Ownership) -> Result<(), StorageError> {
        match owned.fence == owned_fence(&owned.key) {
            true => Ok(()),
            false => Err(StorageError::Fenced),
        }
    }
    fn owned_fence(key: &str) -> u64 {
        with_host(|h| h.fences.get(key).copied().unwrap_or(1))
    }
    pub fn put_fenced(owned: &Ownership, key: &str, value: &[u8]) -> Result<(), StorageError> {
        fence_holds(owned)?;
        put(key, value)
    }
    pub fn delete_fenced(owned: &Ownership, key: &str) -> Result<bool, StorageError> {
        fence_holds(owned)?;
        delete(key)
    }
}

pub use imp::*;
