//! A filter's interest set: the users it has rules for.
//!
//! A filter whose manifest says `interest = "declared"` is consulted only for stanzas
//! whose sender (outbound) or recipient (inbound) is in this set; messages between other
//! users never cross into the plugin. The host keeps the set in its store and in every
//! node's memory, so it is the same on every node of a pool and survives reloads. Declare a
//! user when their first rule is made, and take them out when their last one goes (a
//! privacy list plugin does it in the IQ handler that stores the lists).
//!
//! ```
//! use poolxmpp_sdk::{interest, testing};
//! testing::reset();
//! interest::set("alice@example.org", true).unwrap();
//! assert!(interest::has("alice@example.org"));
//! ```

use crate::host;

/// Say whether `user` (a bare JID) has rules.
pub fn set(user: &str, has_rules: bool) -> Result<(), crate::storage::StorageError> {
    Ok(host::set_interest(user, has_rules)?)
}

/// Whether `user` is in the set.
pub fn has(user: &str) -> bool {
    host::has_interest(user)
}
