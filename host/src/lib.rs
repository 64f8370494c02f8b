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
//! - [`plugins`]: the WebAssembly component runtime (wasmtime), hot reload, containment.
//! - [`pool`]: membership, links, ownership, placement; [`limits`]: counters and throttles.
//! - [`tasks`]: tracked tasks and the shutdown signal they end on.
//! - [`store`]: SQLite/PostgreSQL persistence, and (`store::pool`) every query on the pool's PostgreSQL tables.

pub mod account;
pub mod auth;
pub mod c2s;
pub mod cli;
pub mod config;
pub mod context;
pub mod daemon;
pub mod delivery;
pub mod features;
pub mod iq;
pub mod limits;
pub mod listener;
pub mod plugins;
pub mod pool;
pub mod presence;
pub mod roster;
pub mod router;
pub mod server;
pub mod sessions;
pub mod stanza;
pub mod store;
pub mod stream;
pub mod tasks;
pub mod tls;
pub mod xml;

#[cfg(test)]
mod layers;
// The in-process node the services' tests share; test code, so `layers` leaves it out.
#[cfg(test)]
mod testkit;
