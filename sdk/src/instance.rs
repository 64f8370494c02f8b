//! The one plugin value an instance holds between calls.
//!
//! The WIT exports are free functions, but plugins want state (parsed config, caches), so
//! the export macros keep the value `init` built here and hand `&mut` of it to each call.
//! A component instance is single-threaded and the host never re-enters it while a call
//! runs, so a thread-local `RefCell` is all the synchronisation needed.

use std::any::Any;
use std::cell::RefCell;

thread_local! {
    static PLUGIN: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Keep the plugin value built by `init`, replacing any earlier one.
pub(crate) fn set<T: 'static>(plugin: T) {
    PLUGIN.with(|p| *p.borrow_mut() = Some(Box::new(plugin)));
}

/// Run `f` on the plugin value; `None` if `init` has not succeeded.
pub(crate) fn with<T: 'static, R>(f: impl FnOnce(&mut T) -> R) -> Option<R> {
    PLUGIN.with(|p| {
        let mut slot = p.borrow_mut();
        slot.as_mut().and_then(|b| b.downcast_mut::<T>()).map(f)
    })
}
