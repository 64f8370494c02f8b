//! An in-memory stand-in for the host, for unit-testing plugins natively (`cargo test`).
//!
//! Only compiled for non-wasm targets. Each test thread gets its own host (storage, sent
//! stanzas, logs, rosters), so tests run in parallel without interfering; call [`reset`]
//! to start over within one test. [`node`], [`view`] and [`set_roster`] build what a
//! placement strategy is called with.
//!
//! ```
//! use poolxmpp_sdk::{testing, storage};
//! testing::reset();
//! storage::put_string("k", "v").unwrap();
//! assert_eq!(testing::stored("k").as_deref(), Some("v"));
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use crate::host::{LogLevel, ResourcePresence, RosterItem, Subscription};
use crate::placement::{NodeView, PoolView};
use crate::xml::{Element, NS_CLIENT};

/// What the stand-in host remembers.
#[derive(Default)]
pub struct MockHost {
    pub storage: BTreeMap<String, Vec<u8>>,
    /// Stanzas passed to `router.send`, serialized, oldest first.
    pub sent: Vec<String>,
    pub logs: Vec<(LogLevel, String)>,
    pub counters: HashMap<String, u64>,
    pub rosters: HashMap<String, Vec<RosterItem>>,
    pub resources: HashMap<String, Vec<ResourcePresence>>,
    pub now_ms: u64,
    /// What `clock.started-ms` answers.
    pub started_ms: u64,
    /// Timers set and not cancelled: name → (due time, payload). [`due_timers`] takes
    /// those due at `now_ms`, as the host would fire them.
    pub timers: BTreeMap<String, (u64, Vec<u8>)>,
    /// The current fencing token of keys (1 when absent): raise one to play a newer owner
    /// elsewhere, and fenced writes under the old token fail.
    pub fences: HashMap<String, u64>,
    /// The users `interest::set` declared rules for.
    pub interest: std::collections::BTreeSet<String>,
}

thread_local! {
    static HOST: RefCell<MockHost> = RefCell::new(MockHost::default());
}

/// Run `f` on this thread's stand-in host.
pub fn with_host<R>(f: impl FnOnce(&mut MockHost) -> R) -> R {
    HOST.with(|h| f(&mut h.borrow_mut()))
}

/// Forget everything: empty storage, no sent stanzas, no logs.
pub fn reset() {
    with_host(|h| *h = MockHost::default());
}

/// Take the stanzas sent so far, parsed.
pub fn take_sent() -> Vec<Element> {
    with_host(|h| std::mem::take(&mut h.sent))
        .iter()
        .map(|x| Element::parse_in(x, NS_CLIENT).expect("sent stanzas are checked when sent"))
        .collect()
}

/// Take the timers due at the stand-in's `now_ms`, earliest first, as the `timer`
/// events the host would send.
pub fn due_timers() -> Vec<crate::Event> {
    let mut due: Vec<(u64, String, Vec<u8>)> = with_host(|h| {
        let names: Vec<String> = h
            .timers
            .iter()
            .filter(|(_, (at, _))| *at <= h.now_ms)
            .map(|(n, _)| n.clone())
            .collect();
        names
            .into_iter()
            .filter_map(|n| h.timers.remove(&n).map(|(at, p)| (at, n, p)))
            .collect()
    });
    due.sort();
    due.into_iter()
        .map(|(_, name, payload)| crate::Event::Timer(crate::bindings::types::TimerFired { name, payload }))
        .collect()
}

/// The value under a storage key, as text.
pub fn stored(key: &str) -> Option<String> {
    with_host(|h| h.storage.get(key).map(|v| String::from_utf8_lossy(v).into_owned()))
}

/// The log lines written so far.
pub fn logs() -> Vec<(LogLevel, String)> {
    with_host(|h| h.logs.clone())
}

/// Give `user` a roster of `contacts` (bare JIDs, mutual subscriptions), as
/// `host::roster_items` will return it.
pub fn set_roster(user: &str, contacts: &[&str]) {
    let items = contacts
        .iter()
        .map(|jid| RosterItem {
            jid: jid.to_string(),
            name: None,
            subscription: Subscription::Both,
            ask: false,
            groups: Vec::new(),
        })
        .collect();
    with_host(|h| h.rosters.insert(user.to_string(), items));
}

/// An accepting node with `sessions` sessions and none of the user's contacts; change the
/// rest with struct update syntax: `NodeView { accepting: false, ..node("a", 3) }`.
pub fn node(id: &str, sessions: u32) -> NodeView {
    NodeView {
        id: id.to_string(),
        address: format!("{id}.pool.test:5222"),
        sessions,
        contacts_here: 0,
        accepting: true,
    }
}

/// A pool view of these nodes.
pub fn view(nodes: impl IntoIterator<Item = NodeView>) -> PoolView {
    PoolView {
        nodes: nodes.into_iter().collect(),
    }
}
