//! Contract 0.2 (`wit/v0.2.0`), the latest: what the host is written against.

worlds!("../wit/v0.2.0", "poolxmpp:plugin/interest" => interest);

/// A feature and a filter in one component (new in 0.2, so outside the worlds every version
/// has); its imports are the feature world's.
pub mod feature_filter {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2.0",
        world: "feature-filter",
        imports: { default: async },
        exports: { default: async },
        with: {
            "poolxmpp:plugin/types": super::feature::poolxmpp::plugin::types,
            "poolxmpp:plugin/log": super::feature::poolxmpp::plugin::log,
            "poolxmpp:plugin/clock": super::feature::poolxmpp::plugin::clock,
            "poolxmpp:plugin/metrics": super::feature::poolxmpp::plugin::metrics,
            "poolxmpp:plugin/storage": super::feature::poolxmpp::plugin::storage,
            "poolxmpp:plugin/roster": super::feature::poolxmpp::plugin::roster,
            "poolxmpp:plugin/presence": super::feature::poolxmpp::plugin::presence,
            "poolxmpp:plugin/router": super::feature::poolxmpp::plugin::router,
            "poolxmpp:plugin/pool": super::feature::poolxmpp::plugin::pool,
            "poolxmpp:plugin/timers": super::feature::poolxmpp::plugin::timers,
            "poolxmpp:plugin/interest": super::feature::poolxmpp::plugin::interest,
        },
    });
}

pub use feature::poolxmpp::plugin::{
    clock, interest, log, metrics, pool, presence, roster, router, storage, timers, types,
};
