//! Host-side bindings of every supported contract version (Zed's model: a frozen WIT folder
//! and a module per version).
//!
//! - [`latest`] (`wit/v0.2.0`): what the host is written against. [`super::imports`]
//!   implements its imports; calls carry its types.
//! - [`v0_1`] (`wit/v0.1.0`, frozen): its imports delegate to the latest ones and its
//!   exports are called through conversions, so a component built for 0.1 loads and works
//!   unchanged without a second implementation.
//!
//! A component's version is read from what it exports ([`Version::of`]); one linker per
//! world holds the imports of every version, so either links.

/// The three worlds of one contract version, from its WIT folder. `filter` and
/// `placement` reuse the `feature` world's interfaces, so a version has one set of types
/// and one implementation of each import.
macro_rules! worlds {
    // `$shared`: interfaces a version's filter world imports beyond 0.1's, bound to the
    // feature world's (so one host implementation serves both worlds).
    ($path:literal $(, $shared:literal => $module:ident)*) => {
        pub mod feature {
            wasmtime::component::bindgen!({
                path: $path,
                world: "feature",
                imports: { default: async },
                exports: { default: async },
            });
        }

        pub mod filter {
            wasmtime::component::bindgen!({
                path: $path,
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
                    $($shared: super::feature::poolxmpp::plugin::$module,)*
                },
            });
        }

        pub mod placement {
            wasmtime::component::bindgen!({
                path: $path,
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
    };
}

pub mod v0_1;
pub mod v0_2;

pub use v0_2 as latest;

use wasmtime::component::Component;
use wasmtime::Engine;

/// The package every version's interfaces are in.
const PACKAGE: &str = "poolxmpp:plugin";

/// A contract version the host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V0_1,
    V0_2,
}

impl Version {
    /// The oldest version still loaded; components built for anything older are refused.
    pub const MIN: Version = Version::V0_1;
    pub const LATEST: Version = Version::V0_2;

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_1 => "0.1.0",
            Version::V0_2 => "0.2.0",
        }
    }

    fn parse(s: &str) -> Option<Version> {
        match s {
            "0.1.0" => Some(Version::V0_1),
            "0.2.0" => Some(Version::V0_2),
            _ => None,
        }
    }

    /// The contract version a component was built for: the version of the
    /// `poolxmpp:plugin/…` interface it exports. A component exporting none, or exporting
    /// a version this host does not know, gets an error naming what it found.
    pub fn of(component: &Component, engine: &Engine) -> Result<Version, String> {
        let ty = component.component_type();
        let mut found = Vec::new();
        for (name, _) in ty.exports(engine) {
            let Some(rest) = name.strip_prefix(PACKAGE).and_then(|r| r.strip_prefix('/')) else {
                continue;
            };
            match rest.split_once('@') {
                Some((_, v)) => found.push(v.to_string()),
                None => found.push(String::new()),
            }
        }
        let mut versions = found.iter().filter_map(|v| Version::parse(v));
        match versions.next() {
            Some(v) if versions.all(|w| w == v) => Ok(v),
            Some(_) => Err(format!("it exports several contract versions ({})", found.join(", "))),
            None if found.is_empty() => Err(format!("it exports no {PACKAGE} interface")),
            None => Err(format!(
                "it was built for contract version {}; this server serves {} to {}",
                found.join(", "),
                Version::MIN.as_str(),
                Version::LATEST.as_str()
            )),
        }
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

use crate::stanza::{Condition, ErrorType};

/// One list of the RFC 6120 conditions, both directions between the host's enum and the
/// contract's (their variants have the same names).
macro_rules! conditions {
    ($($c:ident),* $(,)?) => {
        pub fn condition_to_wit(c: Condition) -> latest::types::Condition {
            match c { $(Condition::$c => latest::types::Condition::$c),* }
        }

        pub fn condition_from_wit(c: latest::types::Condition) -> Condition {
            match c { $(latest::types::Condition::$c => Condition::$c),* }
        }
    };
}

conditions!(
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    Gone,
    InternalServerError,
    ItemNotFound,
    JidMalformed,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    PolicyViolation,
    RecipientUnavailable,
    Redirect,
    RegistrationRequired,
    RemoteServerNotFound,
    RemoteServerTimeout,
    ResourceConstraint,
    ServiceUnavailable,
    SubscriptionRequired,
    UndefinedCondition,
    UnexpectedRequest,
);

pub fn error_type_from_wit(t: latest::types::ErrorType) -> ErrorType {
    use latest::types::ErrorType as T;
    match t {
        T::Auth => ErrorType::Auth,
        T::Cancel => ErrorType::Cancel,
        T::Continue => ErrorType::Continue,
        T::Modify => ErrorType::Modify,
        T::Wait => ErrorType::Wait,
    }
}
