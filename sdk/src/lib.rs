//! # poolxmpp-sdk
//!
//! Write poolxmpp plugins — WebAssembly components the server loads, hot-reloads and
//! contains — in a few dozen lines of Rust. See `README.md` for the walk from an empty
//! crate to a loaded plugin.
//!
//! - [`Feature`] / [`export_feature!`]: services that own addresses or IQ namespaces.
//! - [`Filter`] / [`export_filter!`]: a verdict on every stanza.
//! - [`Placement`] / [`export_placement!`]: which pool node becomes a user's home, with
//!   the host's own hashing helpers ([`placement`]).
//! - [`Element`]: a small XML tree to read stanzas and build replies ([`xml`]).
//! - [`stanza`]: replies, errors and [`send`]; [`jid`]: taking addresses apart.
//! - [`storage`]: the plugin's key/value store, as text or JSON; [`log`]: the host log.
//! - [`timers`]: callbacks after a delay that survive reloads, restarts and failover;
//!   [`time`]: XEP-0082 timestamps.
//! - [`testing`] (native targets only): an in-memory host for unit tests.
//!
//! The generated bindings are in [`bindings`] for anything not wrapped here.

// The export macros and the generated bindings name this crate by its absolute path,
// which must also resolve inside the crate itself.
extern crate self as poolxmpp_sdk;

pub mod bindings;
pub mod config;
pub mod feature;
pub mod filter;
pub mod form;
pub mod host;
mod instance;
pub mod interest;
pub mod jid;
pub mod log;
pub mod placement;
pub mod pool;
pub mod stanza;
pub mod storage;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod time;
pub mod timers;
pub mod xml;

pub use bindings::types::{
    Condition, Direction, ErrorType, Event, IqType, MessageType, PresenceType, Stanza, StanzaError, StanzaType,
    TimerFired, UserPresence, Verdict,
};
pub use config::Config;
pub use feature::Feature;
pub use filter::Filter;
pub use placement::Placement;
pub use stanza::{error_reply, iq_result, reply, send, send_many};
pub use xml::{Element, Namespace, Node, NS_CLIENT};

/// The host's clock: milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    host::now_ms()
}

/// The examples in README.md, compiled as doctests so the guide cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
