//! The raw bindings wit-bindgen generates from `wit/v0.2.0` (contract 0.2), one module per
//! world.
//!
//! Plugin authors rarely need these: the rest of the SDK wraps them. They are public so a
//! plugin can reach an import the SDK does not wrap yet.
//!
//! Every world is generated with `pub_export_macro`, which makes wit-bindgen put only the
//! *imports* of each world in this crate's type section and move the exports into the
//! `export!` macro. That is what lets one SDK serve all worlds: a plugin that exports only
//! `feature-plugin` does not inherit an obligation to export `filter-plugin` or
//! `placement-plugin` too — and lets a component export two worlds' interfaces, as the
//! `feature-filter` world does (`export_feature_filter!` uses the `feature` and `filter`
//! export macros together; the component's type is their union).

/// The `feature` world: MUC, pubsub, vCard and other services that own stanzas.
pub mod feature {
    wit_bindgen::generate!({
        path: "../wit/v0.2.0",
        world: "poolxmpp:plugin/feature",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "::poolxmpp_sdk::bindings::feature",
        runtime_path: "::poolxmpp_sdk::bindings::rt",
        // So plugins compare headers directly: `stanza.type_ == StanzaType::Iq(IqType::Set)`.
        additional_derives: [PartialEq],
        generate_all,
    });
}

/// The `filter` world: its shared interfaces are the `feature` world's, so both worlds see
/// one set of types.
pub mod filter {
    wit_bindgen::generate!({
        path: "../wit/v0.2.0",
        world: "poolxmpp:plugin/filter",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "::poolxmpp_sdk::bindings::filter",
        runtime_path: "::poolxmpp_sdk::bindings::rt",
        with: {
            "poolxmpp:plugin/types@0.2.0": crate::bindings::feature::poolxmpp::plugin::types,
            "poolxmpp:plugin/log@0.2.0": crate::bindings::feature::poolxmpp::plugin::log,
            "poolxmpp:plugin/clock@0.2.0": crate::bindings::feature::poolxmpp::plugin::clock,
            "poolxmpp:plugin/metrics@0.2.0": crate::bindings::feature::poolxmpp::plugin::metrics,
            "poolxmpp:plugin/storage@0.2.0": crate::bindings::feature::poolxmpp::plugin::storage,
            "poolxmpp:plugin/roster@0.2.0": crate::bindings::feature::poolxmpp::plugin::roster,
            "poolxmpp:plugin/interest@0.2.0": crate::bindings::feature::poolxmpp::plugin::interest,
        },
    });
}

/// The `placement` world: strategies choosing a user's home node. Its shared interfaces are
/// the `feature` world's too, so `pool-view` and the roster types are one set of types.
pub mod placement {
    wit_bindgen::generate!({
        path: "../wit/v0.2.0",
        world: "poolxmpp:plugin/placement",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "::poolxmpp_sdk::bindings::placement",
        runtime_path: "::poolxmpp_sdk::bindings::rt",
        with: {
            "poolxmpp:plugin/types@0.2.0": crate::bindings::feature::poolxmpp::plugin::types,
            "poolxmpp:plugin/log@0.2.0": crate::bindings::feature::poolxmpp::plugin::log,
            "poolxmpp:plugin/clock@0.2.0": crate::bindings::feature::poolxmpp::plugin::clock,
            "poolxmpp:plugin/storage@0.2.0": crate::bindings::feature::poolxmpp::plugin::storage,
            "poolxmpp:plugin/roster@0.2.0": crate::bindings::feature::poolxmpp::plugin::roster,
        },
    });
}

/// The wit-bindgen runtime, re-exported so code expanded in plugin crates by the export
/// macros resolves without a direct `wit-bindgen` dependency.
#[doc(hidden)]
pub use wit_bindgen::rt;

/// The contract's shared types (`stanza`, `stanza-error`, `event`, ...).
pub use feature::poolxmpp::plugin::types;
