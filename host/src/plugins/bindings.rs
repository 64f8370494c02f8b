//! Host-side bindings generated from `wit/` for each world.

pub mod feature {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "feature",
        imports: { default: async },
        exports: { default: async },
    });
}

pub mod filter {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "filter",
        imports: { default: async },
        exports: { default: async },
        with: {
            "poolxmpp:plugin/types": super::feature::poolxmpp::plugin::types,
            "poolxmpp:plugin/log": super::feature::poolxmpp::plugin::log,
            "poolxmpp:plugin/clock": super::feature::poolxmpp::plugin::clock,
            "poolxmpp:plugin/metrics": super::feature::poolxmpp::plugin::metrics,
            "poolxmpp:plugin/storage": super::feature::poolxmpp::plugin::storage,
            "poolxmpp:plugin/roster": super::feature::poolxmpp::plugin::roster,
        },
    });
}

pub mod placement {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "placement",
        imports: { default: async },
        exports: { default: async },
        with: {
            "poolxmpp:plugin/types": super::feature::poolxmpp::plugin::types,
            "poolxmpp:plugin/log": super::feature::poolxmpp::plugin::log,
            "poolxmpp:plugin/clock": super::feature::poolxmpp::plugin::clock,
            "poolxmpp:plugin/storage": super::feature::poolxmpp::plugin::storage,
            "poolxmpp:plugin/roster": super::feature::poolxmpp::plugin::roster,
        },
    });
}
