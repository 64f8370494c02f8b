//! poolxmpp: an XMPP server (RFC 6120/6121) built to run as a pool of nodes.
//!
//! Module map (see ARCHITECTURE.md for the layers; `layers.rs` checks them in `cargo test`):
//! - [`cli`], [`config`], [`daemon`]: the binary's edge — arguments, the TOML file, start-up and shutdown.
//! - [`server`]: the composition root; [`context`]: what the RFC 6121 services share.
//! - [`listener`], [`tls`], [`stream`], [`xml`]: sockets, TLS, framing under hard limits, the element tree.
//! - [`c2s`], [`auth`]: the client stream state machine, SASL and binding.
//! - [`router`], [`sessions`], [`presence`], [`roster`], [`iq`], [`stanza`]: where stanzas go and the RFC 6121 rules
//!   (`delivery::rules` and `roster::subscription::rules` hold them as plain, table-tested decisions).
//! - [`account`]: account removal (XEP-0077 `<remove/>`, `poolxmpp user del`).
//! - [`caps`]: XEP-0115 entity capabilities, verified and shared by the pool.
//! - [`features`]: the feature runtime as the core sees it; [`plugins`]: the WebAssembly component
//!   runtime behind it (wasmtime), hot reload, containment.
//! - [`pool`]: membership, links, ownership, placement; [`limits`]: counters and throttles.
//! - [`tasks`]: tracked tasks and the shutdown signal they end on.
//! - [`store`]: SQLite/PostgreSQL persistence, and (`store::pool`) every query on the pool's PostgreSQL tables.
//!
//! Modules are `pub(crate)` unless the integration tests or the benches reach into them, so
//! the compiler reports what nothing uses.

pub(crate) mod account;
pub(crate) mod auth;
pub(crate) mod c2s;
pub(crate) mod caps;
pub mod cli;
pub mod config;
pub(crate) mod context;
pub mod daemon;
pub(crate) mod delivery;
pub(crate) mod features;
pub(crate) mod iq;
pub(crate) mod limits;
pub(crate) mod listener;
pub mod plugins;
pub mod pool;
pub(crate) mod presence;
pub(crate) mod roster;
pub(crate) mod router;
pub(crate) mod server;
pub(crate) mod sessions;
pub(crate) mod stanza;
pub mod store;
pub(crate) mod stream;
pub mod tasks;
pub(crate) mod tls;
pub mod xml;

#[cfg(test)]
mod layers;
// The in-process node the services' tests share; test code, so `layers` leaves it out.
#[cfg(test)]
mod testkit;
