//! The attacker's cases (issue 10): inputs any account holder, or a stranger on the
//! network, could use to exhaust the server's memory, disconnect or freeze other users, block
//! logins or lose accepted data. Each case drives the real binary over real sockets (a raw
//! client where the defect is at the byte level, slixmpp where a real client's behaviour is
//! the point), and each failed on the code before its fix.
//!
//! One module per area, so the cases of one defect sit together:
//! - `xml`: namespace amplification, XML that is not (namespace-)well-formed, encodings, closing.
//! - `logins`: admission permits, the negotiation deadline, per-address caps, registration.
//! - `delivery`: clients that stop reading or acknowledging, stored stanzas re-read, quotas,
//!   resources.
//! - `accounts`: roster bounds, account removal.
//! - `plugins`: one sender cannot open a plugin's breaker for all; inputs bounded before a
//!   plugin's parser; plugins see normalised JIDs.

mod support;

#[path = "hostile/accounts.rs"]
mod accounts;
#[path = "hostile/delivery.rs"]
mod delivery;
#[path = "hostile/logins.rs"]
mod logins;
#[path = "hostile/plugins.rs"]
mod plugins;
#[path = "hostile/xml.rs"]
mod xml;
