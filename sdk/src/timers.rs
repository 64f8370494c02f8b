//! Timers: ask the host to call [`Feature::on_event`](crate::Feature::on_event) with
//! [`Event::Timer`](crate::Event::Timer) after a delay — for expiries (a room's
//! lifetime, an item's), retries and clean-ups.
//!
//! The host keeps timers in its store, so they survive a reload of the plugin (whichever
//! version is serving when one is due gets it), a restart of the node and, in a pool, the
//! death of the node that set them (a survivor adopts them). Each setting fires at most
//! once. Setting a name again replaces its timer, so a name per thing (`expire/<room>`)
//! keeps one timer per thing.
//!
//! ```
//! use poolxmpp_sdk::{testing, timers, Event};
//! testing::reset();
//! timers::set("expire/room1", 60_000, b"room1").unwrap();
//! testing::with_host(|h| h.now_ms = 60_000);
//! let due = testing::due_timers();
//! assert!(matches!(&due[0], Event::Timer(t) if t.name == "expire/room1" && t.payload == b"room1"));
//! ```

use crate::host;
use crate::storage::StorageError;

/// Call back with `name` and `payload` after `after_ms` milliseconds (names up to 256
/// bytes, payloads up to 64 KiB, delays up to 366 days, 100,000 timers per plugin).
pub fn set(name: &str, after_ms: u64, payload: &[u8]) -> Result<(), StorageError> {
    Ok(host::set_timer(name, after_ms, payload)?)
}

/// Remove a timer; returns whether it was set.
pub fn cancel(name: &str) -> Result<bool, StorageError> {
    Ok(host::cancel_timer(name)?)
}
