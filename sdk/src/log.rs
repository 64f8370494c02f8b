//! Logging into the host's log, tagged with the plugin's name.
//!
//! Plugins have no useful stdout, so this is how they explain themselves. The macros take
//! `format!` arguments: `poolxmpp_sdk::info!("stored vCard for {jid}")`.

use crate::host::{self, LogLevel};

pub fn trace(message: &str) {
    host::log(LogLevel::Trace, message)
}
pub fn debug(message: &str) {
    host::log(LogLevel::Debug, message)
}
pub fn info(message: &str) {
    host::log(LogLevel::Info, message)
}
pub fn warn(message: &str) {
    host::log(LogLevel::Warn, message)
}
pub fn error(message: &str) {
    host::log(LogLevel::Error, message)
}

/// Log at trace level with `format!` arguments.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log::trace(&::std::format!($($arg)*)) };
}
/// Log at debug level with `format!` arguments.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log::debug(&::std::format!($($arg)*)) };
}
/// Log at info level with `format!` arguments.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::info(&::std::format!($($arg)*)) };
}
/// Log at warn level with `format!` arguments.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::warn(&::std::format!($($arg)*)) };
}
/// Log at error level with `format!` arguments.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::error(&::std::format!($($arg)*)) };
}

/// Route panic messages to the host log, so a trapping plugin says why. Installed by the
/// export macros before `init`.
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| error(&format!("panic: {info}"))));
}
