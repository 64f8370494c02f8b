//! Account removal, the one implementation behind XEP-0077 `<remove/>`, the admin socket's
//! `remove-account` and `poolxmpp user del`.
//!
//! XEP-0077 §3.2: the server terminates every session of the account (`<not-authorized/>`)
//! and cancels its presence subscriptions. The store does its part in one transaction
//! ([`Store::remove_account`]): the account's own data, and the items and requests naming
//! it in other users' data, so whoever registers the name next inherits no subscription and
//! appears in nobody's roster under the old holder's name. A running server then tells
//! those concerned ([`announce`]): each contact gets `unsubscribe`/`unsubscribed` on the
//! account's behalf (RFC 6121 §3.3, §3.2) and unavailable presence where it had presence,
//! its interested resources a roster push removing the item, and every session of the
//! account — on this node or another of the pool — is closed.

use std::sync::Arc;

use crate::context::Context;
use crate::delivery::deliver_to_available;
use crate::presence::send_unavailable_presence;
use crate::sessions::KickReason;
use crate::store::{RemovedAccount, Store, StoreError};
use crate::xml::{Element, NS_CLIENT};

/// The store side alone, for when no server runs on the store (`poolxmpp user del` with no
/// daemon answering): nobody is online to tell, and the store is consistent afterwards.
pub async fn remove_stored(store: &Store, bare: &str) -> Result<RemovedAccount, StoreError> {
    store.remove_account(bare).await
}

/// Remove `bare` on a running server. `before_close` runs once the removal is committed and
/// before any session is closed: the IQ path answers the request there, so its result
/// reaches the requesting resource before the stream error.
pub async fn remove(ctx: &Arc<Context>, bare: &str, before_close: impl FnOnce()) -> Result<(), StoreError> {
    let removed = remove_stored(&ctx.store, bare).await?;
    tracing::info!(
        jid = %bare,
        contacts = removed.contacts.len(),
        requests = removed.requested.len(),
        "account removed"
    );
    before_close();
    announce(ctx, bare, &removed).await;
    Ok(())
}

/// Tell contacts and close the account's sessions (after [`remove_stored`]).
pub async fn announce(ctx: &Context, bare: &str, removed: &RemovedAccount) {
    // Contacts first, while the account's sessions are still in the table, so their
    // unavailable presence can be sent on their behalf.
    for c in &removed.contacts {
        let sub = c.item.subscription;
        // The contact received the account's presence (or asked to): cancelled (§3.2).
        if sub.has_to() || c.item.ask {
            deliver_to_available(ctx, &c.owner, &subscription(bare, &c.owner, "unsubscribed"));
            if sub.has_to() {
                send_unavailable_presence(ctx, bare, &c.owner).await;
            }
        }
        // The account received the contact's presence, or had asked to: unsubscribed (§3.3).
        if sub.has_from() || removed.requested.contains(&c.owner) {
            deliver_to_available(ctx, &c.owner, &subscription(bare, &c.owner, "unsubscribe"));
        }
        crate::roster::push(ctx, &c.owner, &c.item, true, c.version);
    }
    // A request without a roster item at the recipient (they never answered): withdrawn.
    for owner in removed
        .requested
        .iter()
        .filter(|o| !removed.contacts.iter().any(|c| &c.owner == *o))
    {
        deliver_to_available(ctx, owner, &subscription(bare, owner, "unsubscribe"));
    }
    for r in ctx.sessions.resources(bare) {
        r.kick(KickReason::AccountRemoved.stream_error(), KickReason::AccountRemoved);
    }
}

fn subscription(from: &str, to: &str, ptype: &str) -> Arc<Element> {
    Arc::new(
        Element::new("presence", NS_CLIENT)
            .attr("from", from)
            .attr("to", to)
            .attr("type", ptype),
    )
}
