//! Filter plugins: a verdict on every stanza at the two filter points (as it leaves its
//! sender, and as it reaches its recipient's node). Privacy lists, blocking, word filters.
//!
//! Implement [`Filter`] and export it with [`export_filter!`](crate::export_filter):
//!
//! ```
//! use poolxmpp_sdk::{Config, Direction, Filter, Stanza, Verdict};
//!
//! struct AllowAll;
//!
//! impl Filter for AllowAll {
//!     fn init(_config: &Config) -> Result<Self, String> {
//!         Ok(AllowAll)
//!     }
//!
//!     fn check(&mut self, _direction: Direction, _stanza: Stanza) -> Verdict {
//!         Verdict::Allow
//!     }
//! }
//!
//! poolxmpp_sdk::export_filter!(AllowAll);
//! ```
//!
//! A filter sits on every stanza's path, so keep `check` cheap: look at
//! [`Stanza::kind`](crate::Stanza) and the header before parsing XML. If a filter traps
//! or times out the host lets the stanza through, so a broken filter cannot stop
//! messaging.

use crate::bindings::types::{Direction, Stanza, Verdict};
use crate::config::Config;
use crate::instance;

/// A filter plugin. One value lives per instance, built by `init`.
pub trait Filter: Sized + 'static {
    /// Build the filter from the manifest's `[config]`. An error rejects this version.
    fn init(config: &Config) -> Result<Self, String>;

    /// Decide what happens to `stanza`: [`Verdict::Allow`], [`Verdict::Drop`] silently, or
    /// [`Verdict::Bounce`] with an error for the sender.
    fn check(&mut self, direction: Direction, stanza: Stanza) -> Verdict;
}

/// What the export macro calls; not part of the API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    pub fn init<T: Filter>(config: Vec<(String, String)>) -> Result<(), String> {
        crate::log::install_panic_hook();
        instance::set(T::init(&Config(config))?);
        Ok(())
    }

    pub fn check<T: Filter>(direction: Direction, stanza: Stanza) -> Verdict {
        // Not initialised cannot happen (the host inits first); allowing matches the
        // host's own policy for a failing filter.
        instance::with(|p: &mut T| p.check(direction, stanza)).unwrap_or(Verdict::Allow)
    }
}

/// Export a [`Filter`] implementation as this component's `filter-plugin`. Use it once,
/// at the top level of a `cdylib` crate.
#[macro_export]
#[rustfmt::skip] // rustfmt does not format this body stably (`with_types_in` is not Rust syntax)
macro_rules! export_filter {
    ($plugin:ty) => {
        // Exports exist only in the component: a native build (unit tests, clippy of the
        // workspace) must not emit symbols named like `poolxmpp:plugin/...#handle-stanza`,
        // which native linkers reject.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct PoolxmppFilterExport;

            impl $crate::bindings::filter::exports::poolxmpp::plugin::filter_plugin::Guest for PoolxmppFilterExport {
                fn init(config: $crate::bindings::types::Config) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::filter::__private::init::<$plugin>(config)
                }

                fn check(direction: $crate::Direction, stanza: $crate::Stanza) -> $crate::Verdict {
                    $crate::filter::__private::check::<$plugin>(direction, stanza)
                }
            }

            $crate::bindings::filter::export!(PoolxmppFilterExport with_types_in $crate::bindings::filter);
        };
    };
}
