//! Contract 0.2 (`wit/v0.2.0`), the latest: what the host is written against.

worlds!("../wit/v0.2.0", "poolxmpp:plugin/interest" => interest);

pub use feature::poolxmpp::plugin::{
    clock, interest, log, metrics, pool, presence, roster, router, storage, timers, types,
};
