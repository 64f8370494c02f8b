//! Getting a stanza to where it goes, and errors back to whoever sent it: addressing
//! ([`target`]), RFC 6121 §8.5 delivery of messages ([`rules`], carried out by
//! [`deliver_message`]), offline storage ([`offline`]), error replies ([`bounce`]) and the
//! hand-over to features ([`crate::features`]). The services (presence, roster, IQs) and the router all
//! deliver through here; the router on top decides which service a stanza is for.

use std::sync::Arc;
use std::time::Duration;

use jid::Jid;

use crate::context::Context;
use crate::features::{finish, Answer, Direction, Done, Feature, FeatureCalls, Refusal, Verdict};
use crate::stanza::{error_reply, error_reply_as, may_bounce, Condition, Kind, MessageType};
use crate::xml::{Element, NS_CLIENT};

pub mod carbons;
pub mod fan_out;
pub mod offline;
pub mod rules;

/// What the router made of a `to` address.
pub enum Target {
    /// An address a feature owns (a component domain such as `conference.example.org`).
    Feature(Arc<dyn Feature>),
    /// Addressed to a hosted domain itself (or, for IQs, to no one: the server answers).
    Context,
    /// A local account, bare or full.
    Local { bare: String, resource: Option<String> },
    /// A domain we do not host. Without server-to-server links this is unreachable.
    Remote,
}

pub fn target(ctx: &Context, to: &Jid) -> Target {
    let domain = to.domain().as_str();
    if let Some(feature) = ctx.features.for_address(domain) {
        return Target::Feature(feature);
    }
    if !ctx.hosts(domain) {
        return Target::Remote;
    }
    match to.node() {
        None => Target::Context,
        Some(_) => Target::Local {
            bare: bare_part(to).to_string(),
            resource: to.resource().map(|r| r.as_str().to_string()),
        },
    }
}

const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
const NS_HINTS: &str = "urn:xmpp:hints";

/// Whether a message for an account with no available resource is kept offline: something a
/// person reads, or an extension the sender's client wants delivered later (receipts,
/// markers, encrypted payloads), but not a bare chat state or thread (XEP-0160 §3: typing
/// notifications would fill the user's quota with noise), and never against the sender's
/// `<no-store/>` hint; `<store/>` keeps anything (XEP-0334).
fn worth_keeping(message: &Element) -> bool {
    if message.has_child("no-store", NS_HINTS) {
        return false;
    }
    if message.has_child("store", NS_HINTS) {
        return true;
    }
    message.elements().any(|c| {
        if &*c.ns == NS_CLIENT {
            c.name == "body" || c.name == "subject"
        } else {
            &*c.ns != NS_CHATSTATES && &*c.ns != NS_HINTS
        }
    })
}

/// The bare JID of `to` as text, borrowed from the normalized JID (no `BareJid` allocated
/// and formatted on every routed stanza).
fn bare_part(to: &Jid) -> &str {
    let jid = to.as_str();
    match to.resource() {
        Some(r) => &jid[..jid.len() - r.as_str().len() - 1],
        None => jid,
    }
}

/// How long a client's stanza for a feature may wait, for the session's own calls to be
/// answered and then for room in the feature's queue, before it is refused with
/// `<resource-constraint/>` after all (a feature that does not keep up must not hold the
/// client's stream for longer).
const FEATURE_CALL_WAIT: Duration = Duration::from_secs(10);

/// Hand a stanza to the feature that claims it; its refusal becomes the sender's error
/// reply. Never waits for the feature, so a feature sending to itself cannot deadlock.
pub fn dispatch_to_feature(ctx: &Arc<Context>, feature: &dyn Feature, stanza: Element) {
    let submitted = feature.submit(&stanza);
    answered(ctx, stanza, submitted, || {});
}

/// [`dispatch_to_feature`] for a stanza another node of the pool forwarded (`hops` times)
/// to this one for a keyed feature. `handled` runs once the feature has handled it (or
/// refused it, or passed it on): the forwarding node keeps the stanza until then, so one
/// that this node dies holding goes to the key's next owner instead of being lost.
pub fn dispatch_forwarded_to_feature(
    ctx: &Arc<Context>,
    feature: &dyn Feature,
    stanza: Element,
    hops: u8,
    handled: impl FnOnce() + Send + 'static,
) {
    let submitted = feature.submit_forwarded(&stanza, hops);
    answered(ctx, stanza, submitted, handled);
}

/// [`dispatch_to_feature`] for a stanza from a local client, which waits instead of being
/// refused: while the session has [`crate::features::FEATURE_CALLS_PER_SESSION`] calls
/// unanswered, then while the feature's queue is full (in turn with other clients), both
/// within [`FEATURE_CALL_WAIT`]. So a burst is paced by the feature, through the client's
/// TCP stream, and one client holds only its share of the queue every sender uses. Only the
/// client's read loop waits; the feature never waits on it (its answers are queued without
/// waiting), so this cannot deadlock either.
pub async fn dispatch_from_client(ctx: &Arc<Context>, calls: &FeatureCalls, feature: &dyn Feature, stanza: Element) {
    let deadline = tokio::time::Instant::now() + FEATURE_CALL_WAIT;
    // The semaphore is never closed; a timeout means the feature is not keeping up.
    let Ok(Ok(permit)) = tokio::time::timeout_at(deadline, calls.acquire()).await else {
        return bounce_refusal(ctx, &stanza, &Refusal::Busy);
    };
    let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
    let stanza = Arc::new(stanza);
    let (ctx_done, original) = (ctx.clone(), stanza.clone());
    let done: Done = Box::new(move |outcome| {
        drop(permit);
        if let Err(refusal) = outcome {
            bounce_refusal(&ctx_done, &original, &refusal);
        }
    });
    feature.submit_waiting(&stanza, wait, done).await;
}

/// Wait for a submitted stanza's answer (at once if it is ready); a refusal becomes the
/// sender's error reply; then `then` runs.
fn answered(
    ctx: &Arc<Context>,
    stanza: Element,
    submitted: Result<Answer, Refusal>,
    then: impl FnOnce() + Send + 'static,
) {
    let ctx = ctx.clone();
    finish(
        submitted,
        Box::new(move |outcome| {
            if let Err(refusal) = outcome {
                bounce_refusal(&ctx, &stanza, &refusal);
            }
            then();
        }),
    );
}

/// Run the filters at one point (DESIGN §2) over a stanza: whether it may go on. A refusal
/// is answered to its sender here; a drop is silent. `sent_by`: the feature that sent it.
pub async fn passes_filter(ctx: &Context, direction: Direction, stanza: &Element, sent_by: Option<&str>) -> bool {
    match ctx.features.filter(direction, stanza, sent_by).await {
        Verdict::Pass => true,
        Verdict::Drop => false,
        Verdict::Refuse(refusal) => {
            bounce_refusal(ctx, stanza, &refusal);
            false
        }
    }
}

/// Both filter points for a stanza the server sends on a local user's behalf (presence
/// copies: broadcasts, probe answers, unavailable on leaving), as for a client's own
/// stanza: outbound for its `from`, inbound for the hosted account `to` names when that
/// point runs here. Privacy lists block presence-out at the sender and presence-in at the
/// recipient (XEP-0016 §2.1). The stanza carries both addresses.
pub async fn passes_filters_for(
    ctx: &Context,
    kind: Kind,
    stanza: &Element,
    (bare, resource): (&str, Option<&str>),
) -> bool {
    if ctx.features.would_filter(Direction::Outbound, stanza, None)
        && !passes_filter(ctx, Direction::Outbound, stanza, None).await
    {
        return false;
    }
    !ctx.features.would_filter(Direction::Inbound, stanza, None)
        || !inbound_here(ctx, kind, bare, resource)
        || passes_filter(ctx, Direction::Inbound, stanza, None).await
}

/// Presence the server sends on the local user `owner`'s behalf to the hosted account
/// `(bare, resource)` (`to`, its address as given), as it is to be delivered: `stanza`
/// itself when no filter has rules for either end; else a copy addressed to `to`, if it
/// passes both filter points ([`passes_filters_for`]) — addressed, it is judged for the
/// right recipient on any node it is forwarded to as well; none when it does not pass.
pub async fn judged_presence(
    ctx: &Context,
    stanza: &Arc<Element>,
    owner: &str,
    to: &str,
    (bare, resource): (&str, Option<&str>),
) -> Option<Arc<Element>> {
    if !ctx.features.would_filter_for(owner) && !ctx.features.would_filter_for(bare) {
        return Some(stanza.clone());
    }
    let mut copy = (**stanza).clone();
    copy.set_attr("to", to);
    passes_filters_for(ctx, Kind::Presence, &copy, (bare, resource))
        .await
        .then(|| Arc::new(copy))
}

/// Presence from the local user `user` to every available resource of the local account
/// `contact` (a broadcast's copy), judged ([`judged_presence`]).
pub async fn presence_to_contact(ctx: &Context, stanza: &Arc<Element>, user: &str, contact: &str) {
    if let Some(stanza) = judged_presence(ctx, stanza, user, contact, (contact, None)).await {
        deliver_to_available(ctx, contact, &stanza);
    }
}

/// Whether the inbound filter point for a stanza to the hosted account `bare` runs on
/// this node. It runs on the recipient's node: here, unless every session the stanza can
/// reach is on other nodes, which judge it when it arrives over the link
/// (`pool::node`). An account with no session (offline storage, errors) and an IQ to a
/// bare JID (answered by the server for the account) are judged here. When an account's
/// sessions span nodes, a copy forwarded to another node is judged at both ends.
pub fn inbound_here(ctx: &Context, kind: Kind, bare: &str, resource: Option<&str>) -> bool {
    if let Some(r) = resource.and_then(|res| ctx.sessions.resource(bare, res)) {
        return r.is_local();
    }
    if kind == Kind::Iq && resource.is_none() {
        return true;
    }
    let resources = ctx.sessions.resources(bare);
    resources.is_empty() || resources.iter().any(|r| r.is_local())
}

/// The sender's error for a stanza a feature (or a filter) refused.
pub fn bounce_refusal(ctx: &Context, original: &Element, refusal: &Refusal) {
    let (condition, text) = match refusal {
        Refusal::Error {
            error_type,
            condition,
            text,
            application,
        } => {
            if may_bounce(original) {
                let reply = error_reply_as(
                    original,
                    *error_type,
                    *condition,
                    text.as_deref(),
                    application.as_deref(),
                );
                deliver_reply(ctx, reply);
            }
            return;
        }
        Refusal::Busy => (Condition::ResourceConstraint, None),
        Refusal::SenderBlocked => (
            Condition::ResourceConstraint,
            Some("this service keeps failing on your requests; try again later"),
        ),
        Refusal::TooLarge => (Condition::PolicyViolation, Some("too large for this service")),
        Refusal::Unavailable => (Condition::ServiceUnavailable, None),
        Refusal::Failed => (Condition::InternalServerError, None),
    };
    bounce(ctx, original, condition, text);
}

/// Deliver presence to every available resource of a local account (§4.2.3: presence is
/// for resources that sent initial presence).
pub fn deliver_to_available(ctx: &Context, bare: &str, stanza: &Arc<Element>) {
    for r in ctx.sessions.resources(bare).into_iter().filter(|r| r.available()) {
        r.send(stanza.clone());
    }
}

/// Send an error reply for `original` back to its sender, unless the stanza must not be
/// answered with an error.
pub fn bounce(ctx: &Context, original: &Element, condition: Condition, text: Option<&str>) {
    if !may_bounce(original) {
        return;
    }
    deliver_reply(ctx, error_reply(original, condition, text));
}

/// Deliver an error reply: to a local session, or back into the feature that sent the original.
fn deliver_reply(ctx: &Context, reply: Element) {
    let feature = reply
        .get_attr("to")
        .and_then(|t| Jid::new(t).ok())
        .and_then(|to| ctx.features.for_address(to.domain().as_str()));
    match feature {
        // Errors to a feature are informational; nobody answers them, so no bounce loop.
        Some(f) => {
            let _ = f.submit(&reply);
        }
        None => deliver_to_full(ctx, &reply),
    }
}

/// Deliver a server-generated stanza to the full JID in its `to`, if that session exists.
pub fn deliver_to_full(ctx: &Context, stanza: &Element) {
    let Some(to) = stanza.get_attr("to").and_then(|t| Jid::new(t).ok()) else {
        return;
    };
    let Some(resource) = to.resource() else { return };
    ctx.sessions
        .send_to(bare_part(&to), resource.as_str(), Arc::new(stanza.clone()));
}

/// RFC 6121 §8.5.2 / §8.5.3 for `<message/>`, decided by [`rules`]. A resource on another
/// node that cannot be reached (its link is down or congested) counts as absent, so the
/// message falls back to the next rule and, in the end, to offline storage: never lost
/// silently when it is worth keeping.
pub async fn deliver_message(ctx: &Arc<Context>, bare: &str, resource: Option<&str>, stanza: Element) {
    let message = MessageType::of(&stanza);
    let stanza = Arc::new(stanza);
    if let Some(resource) = resource {
        if ctx.sessions.send_to(bare, resource, stanza.clone()) {
            carbons::copy(ctx, bare, &[resource], &stanza, carbons::Direction::Received);
            return;
        }
        match rules::to_absent_resource(message) {
            rules::AbsentResource::AsBare => {}
            rules::AbsentResource::Ignore => return,
            rules::AbsentResource::Bounce(condition) => return bounce(ctx, &stanza, condition, None),
        }
    }
    let resources = ctx.sessions.resources(bare);
    let mut plan = rules::to_bare(message, &candidates(&resources));
    if let rules::ToBare::Deliver(chosen) = &plan {
        let mut delivered = false;
        for &i in chosen {
            delivered |= resources[i].send(stanza.clone());
        }
        if delivered {
            let got_it: Vec<&str> = chosen.iter().map(|&i| resources[i].resource.as_str()).collect();
            carbons::copy(ctx, bare, &got_it, &stanza, carbons::Direction::Received);
            return;
        }
        // None of them could take it: as if the account had no resource.
        plan = rules::to_bare(message, &[]);
    }
    match plan {
        rules::ToBare::Deliver(_) | rules::ToBare::Ignore => {}
        rules::ToBare::Bounce(condition) => bounce(ctx, &stanza, condition, None),
        rules::ToBare::Offline => store_offline(ctx, bare, Arc::unwrap_or_clone(stanza)).await,
    }
}

/// The account's resources as the §8.5 rules see them (same order, so a chosen index is
/// an index into `resources`).
pub(crate) fn candidates(resources: &[crate::sessions::Resource]) -> Vec<rules::Candidate> {
    resources
        .iter()
        .map(|r| rules::Candidate {
            available: r.available(),
            priority: r.priority,
        })
        .collect()
}

/// Route a message again that a session took into its queue but never wrote: after a
/// hand-off, a closed stream or a write failure.
pub async fn redeliver(ctx: &Arc<Context>, stanza: Element) {
    let Some(to) = stanza.get_attr("to").and_then(|t| Jid::new(t).ok()) else {
        return;
    };
    let bare = to.to_bare().to_string();
    let resource = to.resource().map(|r| r.as_str().to_string());
    deliver_message(ctx, &bare, resource.as_deref(), stanza).await;
}

/// Keep a message for an account that has no resource to take it (XEP-0160).
pub async fn store_offline(ctx: &Arc<Context>, bare: &str, stanza: Element) {
    match ctx.store.account_exists(bare).await {
        Ok(true) => {}
        Ok(false) => return bounce(ctx, &stanza, Condition::ServiceUnavailable, None),
        Err(e) => {
            tracing::error!(error = %e, "account lookup failed");
            return bounce(ctx, &stanza, Condition::InternalServerError, None);
        }
    }
    if !worth_keeping(&stanza) {
        return;
    }
    let quota = ctx.config.limits.offline_quota;
    match ctx.store.store_offline(bare, &stanza.to_stream_xml(), quota).await {
        Ok(true) => {
            // The account may have come online (here or on another node) between the
            // routing decision and the store: whoever serves it now picks this up.
            ctx.sessions.announce_offline_stored(bare);
            offline::offline_stored(ctx, bare);
        }
        Ok(false) => bounce(
            ctx,
            &stanza,
            Condition::ResourceConstraint,
            Some("offline storage is full"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "storing an offline message failed");
            bounce(ctx, &stanza, Condition::InternalServerError, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::bare_part;
    use jid::Jid;

    #[test]
    fn what_is_kept_offline() {
        use crate::xml::{Element, NS_CLIENT};
        let message = |children: &[(&str, &str)]| {
            children
                .iter()
                .fold(Element::new("message", NS_CLIENT), |m, (name, ns)| {
                    m.child(Element::new(name, ns))
                })
        };
        let states = super::NS_CHATSTATES;
        let hints = super::NS_HINTS;
        for (children, kept) in [
            (vec![("body", NS_CLIENT)], true),
            (vec![("subject", NS_CLIENT)], true),
            (vec![("thread", NS_CLIENT)], false),
            (vec![("composing", states)], false),
            (vec![("active", states), ("thread", NS_CLIENT)], false),
            (vec![("body", NS_CLIENT), ("active", states)], true),
            (vec![("received", "urn:xmpp:receipts")], true),
            (vec![("encrypted", "eu.siacs.conversations.axolotl")], true),
            (vec![("body", NS_CLIENT), ("no-store", hints)], false),
            (vec![("composing", states), ("store", hints)], true),
            (vec![("no-permanent-store", hints)], false),
        ] {
            assert_eq!(super::worth_keeping(&message(&children)), kept, "{children:?}");
        }
    }

    #[test]
    fn the_bare_part_is_the_jid_without_its_resource() {
        for (jid, bare) in [
            ("a@x/r", "a@x"),
            ("a@x", "a@x"),
            ("A@X/Res/with/slashes", "a@x"),
            ("x/r", "x"),
        ] {
            let jid = Jid::new(jid).unwrap();
            assert_eq!(bare_part(&jid), bare);
            assert_eq!(bare_part(&jid), jid.to_bare().as_str());
        }
    }
}
