//! Contract 0.2 (`wit/v0.2.0`), the latest: what the host is written against.

worlds!("../wit/v0.2.0");

pub use feature::poolxmpp::plugin::{clock, log, metrics, pool, presence, roster, router, storage, timers, types};
