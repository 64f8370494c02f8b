//! Feature plugins: services that own addresses (`conference.{domain}`) or IQ namespaces
//! (`vcard-temp`) and answer the stanzas the host hands them.
//!
//! Implement [`Feature`] and export it with [`export_feature!`](crate::export_feature):
//!
//! ```
//! use poolxmpp_sdk::{Config, Feature, Stanza, StanzaError};
//!
//! struct Hello;
//!
//! impl Feature for Hello {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(Hello)
//!     }
//!
//!     fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError> {
//!         if stanza.is_request() {
//!             return Err(StanzaError::service_unavailable());
//!         }
//!         Ok(())
//!     }
//! }
//!
//! poolxmpp_sdk::export_feature!(Hello);
//! ```

use crate::bindings::types::{Event, Stanza, StanzaError};
use crate::config::Config;
use crate::instance;

/// A feature plugin. One value lives per instance, built by `init`; the host calls one
/// method at a time, in the order stanzas were routed.
pub trait Feature: Sized + 'static {
    /// Build the plugin from the manifest's `[config]`. Rebuild any in-memory caches from
    /// storage here. An error rejects this plugin version; the host keeps the previous one.
    fn init(config: &Config) -> Result<Self, String>;

    /// Handle one stanza the plugin claims. Send replies with [`crate::send`]. An `Err`
    /// makes the host answer the sender with that error (unless the stanza is itself an
    /// error or an IQ result, which must never be answered).
    fn handle_stanza(&mut self, stanza: Stanza) -> Result<(), StanzaError>;

    /// React to something around the plugin (a user came online, ownership moved, ...).
    fn on_event(&mut self, _event: Event) {}
}

/// What the export macro calls; not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    pub fn init<T: Feature>(config: Vec<(String, String)>) -> Result<(), String> {
        crate::log::install_panic_hook();
        instance::set(T::init(&Config(config))?);
        Ok(())
    }

    pub fn handle_stanza<T: Feature>(stanza: Stanza) -> Result<(), StanzaError> {
        instance::with(|p: &mut T| p.handle_stanza(stanza))
            .unwrap_or_else(|| Err(StanzaError::internal_server_error().with_text("plugin not initialised")))
    }

    pub fn on_event<T: Feature>(event: Event) {
        instance::with(|p: &mut T| p.on_event(event));
    }
}

/// Export a [`Feature`] implementation as this component's `feature-plugin`. Use it once,
/// at the top level of a `cdylib` crate.
#[macro_export]
#[rustfmt::skip] // rustfmt does not format this body stably (`with_types_in` is not Rust syntax)
macro_rules! export_feature {
    ($plugin:ty) => {
        // Exports exist only in the component: a native build (unit tests, clippy of the
        // workspace) must not emit symbols named like `poolxmpp:plugin/...#handle-stanza`,
        // which native linkers reject.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct PoolxmppFeatureExport;
            $crate::__feature_guest!(PoolxmppFeatureExport, $plugin);
            $crate::bindings::feature::export!(PoolxmppFeatureExport with_types_in $crate::bindings::feature);
        };
    };
}

/// The `feature-plugin` exports of `$plugin` on the struct `$export`; for the export macros.
#[doc(hidden)]
#[macro_export]
#[rustfmt::skip]
macro_rules! __feature_guest {
    ($export:ident, $plugin:ty) => {
        impl $crate::bindings::feature::exports::poolxmpp::plugin::feature_plugin::Guest for $export {
            fn init(config: $crate::bindings::types::Config) -> ::std::result::Result<(), ::std::string::String> {
                $crate::feature::__private::init::<$plugin>(config)
            }

            fn handle_stanza(stanza: $crate::Stanza) -> ::std::result::Result<(), $crate::StanzaError> {
                $crate::feature::__private::handle_stanza::<$plugin>(stanza)
            }

            fn on_event(event: $crate::Event) {
                $crate::feature::__private::on_event::<$plugin>(event)
            }
        }
    };
}

/// Export a type that is both a [`Feature`] and a [`crate::Filter`] as this component's
/// `feature-plugin` and `filter-plugin` (world `feature-filter` in the manifest): one
/// instance answers the stanzas it claims and judges stanzas at the filter points, from
/// one state — what privacy lists and blocking need. `Feature::init` makes the instance
/// (the filter's `init` adds nothing). Use it once, at the top level of a `cdylib` crate.
#[macro_export]
#[rustfmt::skip] // rustfmt does not format this body stably (`with_types_in` is not Rust syntax)
macro_rules! export_feature_filter {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct PoolxmppFeatureExport;
            struct PoolxmppFilterExport;

            $crate::__feature_guest!(PoolxmppFeatureExport, $plugin);

            impl $crate::bindings::filter::exports::poolxmpp::plugin::filter_plugin::Guest for PoolxmppFilterExport {
                fn init(_config: $crate::bindings::types::Config) -> ::std::result::Result<(), ::std::string::String> {
                    ::std::result::Result::Ok(()) // made by the feature's init
                }

                fn check(direction: $crate::Direction, stanza: $crate::Stanza) -> $crate::Verdict {
                    $crate::filter::__private::check::<$plugin>(direction, stanza)
                }
            }

            $crate::bindings::feature::export!(PoolxmppFeatureExport with_types_in $crate::bindings::feature);
            $crate::bindings::filter::export!(PoolxmppFilterExport with_types_in $crate::bindings::filter);
        };
    };
}
