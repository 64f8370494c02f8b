//! Roster management (RFC 6121 §2): get with versioning, set, remove, and pushes to every
//! interested resource. The subscription state machine lives in [`subscription`].

pub mod subscription;

use std::sync::Arc;

use crate::context::Context;
use crate::sessions::Session;
use crate::stanza::{iq_payload, iq_result, Condition, Outcome, StanzaError, SubscriptionType};
use crate::store::{RosterItem, StoreError};
use crate::xml::{Element, NS_CLIENT};

pub const NS_ROSTER: &str = "jabber:iq:roster";

/// The `<item/>` element for an item (or for a removal).
pub fn item_element(item: &RosterItem, removed: bool) -> Element {
    let mut e = Element::new("item", NS_ROSTER).attr("jid", item.contact.as_str());
    if removed {
        return e.attr("subscription", "remove");
    }
    if let Some(name) = &item.name {
        e.set_attr("name", name.as_str());
    }
    e.set_attr("subscription", item.subscription.as_str());
    if item.ask {
        e.set_attr("ask", "subscribe");
    }
    if item.approved {
        e.set_attr("approved", "true");
    }
    for g in &item.groups {
        e = e.child(Element::new("group", NS_ROSTER).text(g.as_str()));
    }
    e
}

/// Push a changed item to each interested resource of `owner` (§2.1.6).
pub fn push(ctx: &Context, owner: &str, item: &RosterItem, removed: bool, version: i64) {
    let query = Element::new("query", NS_ROSTER)
        .attr("ver", version.to_string())
        .child(item_element(item, removed));
    for r in ctx.sessions.resources(owner).into_iter().filter(|r| r.interested) {
        let iq = Element::new("iq", NS_CLIENT)
            .attr("type", "set")
            .attr("id", format!("push-{}", uuid::Uuid::new_v4().simple()))
            .attr("to", format!("{owner}/{}", r.resource))
            .child(query.clone());
        r.send(Arc::new(iq));
    }
}

/// Change one item of `owner`'s roster atomically (see
/// [`Store::update_roster_item`](crate::store::Store::update_roster_item)) without
/// pushing it: for the rules that deliver something to the user before the push (RFC
/// 6121 §3.1.6). A new item beyond `limits.roster_max_items` is refused with
/// [`StoreError::RosterFull`](crate::store::StoreError::RosterFull): every path that adds
/// an item comes through here, and the store checks the count atomically.
pub async fn update<F>(
    ctx: &Context,
    owner: &str,
    contact: &str,
    change: F,
) -> Result<crate::store::ItemUpdate, crate::store::StoreError>
where
    F: FnOnce(Option<&RosterItem>) -> Option<RosterItem> + Send,
{
    ctx.store
        .update_roster_item(owner, contact, ctx.config.limits.roster_max_items, change)
        .await
}

/// Push what an update wrote, if it wrote anything.
pub fn push_written(ctx: &Context, owner: &str, update: &crate::store::ItemUpdate) {
    if let Some((item, version)) = &update.written {
        push(ctx, owner, item, false, *version);
    }
}

/// Why a roster set's item is refused (RFC 6121 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemRefusal {
    EmptyOrDuplicateGroup,
    TooManyGroups,
    NameTooLong,
    GroupTooLong,
}

impl ItemRefusal {
    fn condition(self) -> (Condition, &'static str) {
        match self {
            ItemRefusal::EmptyOrDuplicateGroup => (Condition::BadRequest, "empty or duplicate group"),
            ItemRefusal::TooManyGroups => (Condition::NotAcceptable, "too many groups"),
            ItemRefusal::NameTooLong => (Condition::NotAcceptable, "name too long"),
            ItemRefusal::GroupTooLong => (Condition::NotAcceptable, "group name too long"),
        }
    }
}

/// The client-controlled part of an item (name and groups), checked against the limits
/// before anything is stored. The group count is checked first, so a hostile item with
/// thousands of groups costs no more than the limit to look at.
fn client_fields(
    item_el: &Element,
    limits: &crate::config::LimitsConfig,
) -> Result<(Option<String>, Vec<String>), ItemRefusal> {
    let name = item_el.get_attr("name").filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.len() > limits.roster_max_name_bytes) {
        return Err(ItemRefusal::NameTooLong);
    }
    let group_els: Vec<&Element> = item_el.elements().filter(|e| e.is("group", NS_ROSTER)).collect();
    if group_els.len() > limits.roster_max_groups {
        return Err(ItemRefusal::TooManyGroups);
    }
    let mut groups: Vec<String> = Vec::with_capacity(group_els.len());
    for g in group_els {
        let group = g.text_content();
        if group.len() > limits.roster_max_name_bytes {
            return Err(ItemRefusal::GroupTooLong);
        }
        if group.is_empty() || groups.contains(&group) {
            return Err(ItemRefusal::EmptyOrDuplicateGroup);
        }
        groups.push(group);
    }
    Ok((name.map(str::to_string), groups))
}

/// A roster IQ from the account's own client.
pub async fn handle_iq(ctx: &Arc<Context>, client: &Session, iq: &Element) -> Outcome {
    let Some(query) = iq_payload(iq).filter(|q| q.is("query", NS_ROSTER)) else {
        return Err(Condition::BadRequest.into());
    };
    match iq.get_attr("type") {
        Some("get") => get(ctx, client, iq, query).await.map_err(internal),
        Some("set") => set(ctx, client, iq, query).await,
        _ => Ok(()),
    }
}

/// A store failure, logged here; the sender gets `<internal-server-error/>`.
fn internal(e: StoreError) -> StanzaError {
    tracing::error!(error = %e, "roster operation failed");
    Condition::InternalServerError.into()
}

fn reply(ctx: &Context, client: &Session, iq: &Element, payload: Option<Element>) {
    let mut reply = iq_result(iq, payload);
    reply.remove_attr("from");
    reply.set_attr("to", client.jid.to_string());
    crate::delivery::deliver_to_full(ctx, &reply);
}

async fn get(
    ctx: &Arc<Context>,
    client: &Session,
    iq: &Element,
    query: &Element,
) -> Result<(), crate::store::StoreError> {
    ctx.sessions.set_interested(&client.bare, client.id);
    let version = ctx.store.roster_version(&client.bare).await?;
    // §2.6.3: an up-to-date client gets an empty result and then pushes only.
    if query.get_attr("ver") == Some(version.to_string().as_str()) {
        reply(ctx, client, iq, None);
        return Ok(());
    }
    let mut out = Element::new("query", NS_ROSTER).attr("ver", version.to_string());
    for item in ctx.store.roster(&client.bare).await? {
        out = out.child(item_element(&item, false));
    }
    reply(ctx, client, iq, Some(out));
    Ok(())
}

async fn set(ctx: &Arc<Context>, client: &Session, iq: &Element, query: &Element) -> Outcome {
    let items: Vec<&Element> = query.elements().filter(|e| e.is("item", NS_ROSTER)).collect();
    // §2.3.3: exactly one item per set.
    let [item_el] = items.as_slice() else {
        return Err(StanzaError::with_text(
            Condition::BadRequest,
            "a roster set carries exactly one item",
        ));
    };
    let contact = match item_el.get_attr("jid").map(jid::Jid::new) {
        Some(Ok(j)) => j.to_bare().to_string(),
        _ => return Err(StanzaError::with_text(Condition::BadRequest, "invalid or missing jid")),
    };
    if contact == client.bare && item_el.get_attr("subscription") != Some("remove") {
        // Allowed by the RFC but meaningless; many servers refuse it to avoid loops.
        return Err(StanzaError::with_text(Condition::NotAllowed, "you cannot add yourself"));
    }
    if item_el.get_attr("subscription") == Some("remove") {
        return remove(ctx, client, iq, &contact).await;
    }
    let (name, groups) = match client_fields(item_el, &ctx.config.limits) {
        Ok(fields) => fields,
        Err(refusal) => {
            let (condition, text) = refusal.condition();
            return Err(StanzaError::with_text(condition, text));
        }
    };
    // The client controls name and groups only; subscription state is the server's, and
    // may be changing at this moment (the item is changed in place, atomically).
    let (item, version) = match update(ctx, &client.bare, &contact, |item| {
        let mut item = item.cloned().unwrap_or_else(|| RosterItem::new(&contact));
        item.name = name;
        item.groups = groups;
        Some(item)
    })
    .await
    {
        Ok(crate::store::ItemUpdate {
            written: Some(written), ..
        }) => written,
        // Not reached: the change above always writes.
        Ok(_) => {
            reply(ctx, client, iq, None);
            return Ok(());
        }
        Err(StoreError::RosterFull) => {
            return Err(StanzaError::with_text(Condition::NotAllowed, "roster is full"));
        }
        Err(e) => return Err(internal(e)),
    };
    reply(ctx, client, iq, None);
    push(ctx, &client.bare, &item, false, version);
    Ok(())
}

/// §2.5: removing an item cancels subscriptions both ways first.
async fn remove(ctx: &Arc<Context>, client: &Session, iq: &Element, contact: &str) -> Outcome {
    let Some(item) = ctx.store.roster_item(&client.bare, contact).await.map_err(internal)? else {
        return Err(Condition::ItemNotFound.into());
    };
    let pending_in = ctx
        .store
        .remove_pending_in(&client.bare, contact)
        .await
        .map_err(internal)?;
    reply(ctx, client, iq, None);
    if let Some(version) = ctx
        .store
        .delete_roster_item(&client.bare, contact)
        .await
        .map_err(internal)?
    {
        push(ctx, &client.bare, &item, true, version);
    }
    if item.subscription.has_to() || item.ask {
        subscription::send_from_server(ctx, &client.bare, contact, SubscriptionType::Unsubscribe).await;
    }
    if item.subscription.has_from() || pending_in {
        // As for a client's own `unsubscribed`: a contact that was subscribed first gets
        // unavailable presence from the user's resources (§3.2.2), or its client would
        // show the user online for good.
        if item.subscription.has_from() {
            subscription::cancel_presence(ctx, &client.bare, contact).await;
        }
        subscription::send_from_server(ctx, &client.bare, contact, SubscriptionType::Unsubscribed).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
